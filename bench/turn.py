"""CPU and statements per chat turn, in process: the bench's shoppers played straight
through `Assistant.handle`, then through the HTTP app (`POST /api/chat` over ASGI, no
socket), on the demo catalog.

    .venv/bin/python bench/turn.py [--messages 1500] [--repeat 3]
        [--database-url postgresql+psycopg://...] [--profile FILE]

It reports, per round, the median over `--repeat` rounds of: CPU ms per turn (process
time), statements per turn (an engine event counts them), and for the HTTP round the CPU
the app adds around the turn. Shoppers are those of `bench/load.py` without purchases, so
each round plays the same turns; each round uses new users.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from load_shoppers import Player, Shopper, load_dialogues, shoppers


def _steps(shopper: Shopper) -> list[Any]:
    return [s for s in shopper.steps if s.kind in ("say", "press")]


Send = Callable[[Shopper, str | None, str | None], Awaitable[list[dict]]]


async def play(stream: Any, messages: int, send: Send) -> int:
    """Play shoppers until `messages` turns were taken; `send(shopper, action, text)`
    answers one turn with its messages as JSON."""
    done = 0
    while done < messages:
        shopper = next(stream)
        last: list[dict] = []
        last_cards: list[dict] = []
        for step in _steps(shopper):
            action = Player._action(step, last, last_cards)
            if step.kind == "press" and action is None:
                break
            last = await send(shopper, action, None if action else step.text or "")
            cards = [c for m in last for c in m["cards"]]
            last_cards = cards or last_cards
            done += 1
    return done


def direct(assistant: Any) -> Send:
    """Turns straight through the assistant (nothing awaits: no event loop work)."""
    async def send(shopper: Shopper, action: str | None, text: str | None) -> list[dict]:
        reply = assistant.handle(user_key=f"web:{shopper.user}", text=text, action=action,
                                 market=shopper.market, locale=shopper.locale)
        return reply.model_dump(mode="json")["messages"]
    return send


async def play_http(app: Any, stream: Any, messages: int) -> int:
    """The same through the ASGI app, one request at a time."""
    import httpx

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        async def send(shopper: Shopper, action: str | None, text: str | None) -> list[dict]:
            body = {"user": shopper.user, "market": shopper.market,
                    **({"action": action} if action else {"text": text}),
                    **({"locale": shopper.locale} if shopper.locale else {})}
            response = await client.post("/api/chat", json=body)
            assert response.status_code == 200, response.text
            return response.json()["messages"]
        return await play(stream, messages, send)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--database-url", help="default: a new SQLite file")
    parser.add_argument("--profile", help="write a cProfile of the direct rounds here")
    parser.add_argument("--kinds", default="direct,http",
                        help="which rounds to play, comma-separated: direct, http")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="vitrine-turn-"))
    os.environ["VITRINE_DATABASE_URL"] = args.database_url or f"sqlite:///{workdir}/turn.db"
    os.environ["VITRINE_RATE_LIMIT_MESSAGES"] = "1000000"
    os.environ.setdefault("VITRINE_LOG_LEVEL", "WARNING")
    from sqlalchemy import event

    from core.settings import get_settings
    from vitrine.app import create_app
    from vitrine.runtime import build_runtime, has_merchants, seed_demo

    runtime = build_runtime(get_settings())
    if not has_merchants(runtime.engine):
        seed_demo(runtime)
    statements = [0]

    @event.listens_for(runtime.engine, "before_cursor_execute")
    def _count(*_: Any) -> None:
        statements[0] += 1

    app = create_app(runtime)
    dialogues = load_dialogues()
    figures: dict[str, list[float]] = {"direct_ms": [], "direct_statements": [],
                                       "http_ms": [], "http_statements": []}
    profile = cProfile.Profile() if args.profile else None
    asyncio.run(play(shoppers(dialogues, prefix="warm", seed=1, buy_share=0,
                              more_share=0.3), 300, direct(runtime.assistant)))
    for round_ in range(args.repeat):
        for kind in args.kinds.split(","):
            stream = shoppers(dialogues, prefix=f"{kind}-{round_}", seed=7, buy_share=0,
                              more_share=0.3)
            statements[0] = 0
            start = time.process_time()
            if kind == "direct":
                if profile:
                    profile.enable()
                done = asyncio.run(play(stream, args.messages, direct(runtime.assistant)))
                if profile:
                    profile.disable()
            else:
                done = asyncio.run(play_http(app, stream, args.messages))
            spent = time.process_time() - start
            figures[f"{kind}_ms"].append(spent * 1000 / done)
            figures[f"{kind}_statements"].append(statements[0] / done)
    runtime.close()
    median = {k: round(statistics.median(v), 3) for k, v in figures.items() if v}
    if "http_ms" in median and "direct_ms" in median:
        median["http_added_ms"] = round(median["http_ms"] - median["direct_ms"], 3)
    for name, value in median.items():
        print(f"{name:20} {value:8.3f}   rounds: {figures.get(name, [])}")
    if profile:
        profile.dump_stats(args.profile)
    if args.json:
        Path(args.json).write_text(json.dumps({"median": median, "rounds": figures}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
