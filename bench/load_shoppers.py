"""The shoppers of `bench/load.py` and the small HTTP/1.1 client they speak through.

Each shopper plays one of the scripted dialogues of `tests/data/dialogues/dialogues.jsonl`
under a user of its own, then maybe asks for more like a card, or buys one and pays it
through the sandbox provider's signed webhook (see `bench/load.py`'s docstring).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DIALOGUES = ROOT / "tests" / "data" / "dialogues" / "dialogues.jsonl"
SECRET = "bench-load-sandbox-secret"  # the server under load is given it as its sandbox's
PIX_PREFIX = "000201"  # an EMV "copia e cola" payload starts with its format indicator



# -- a small HTTP/1.1 keep-alive client ------------------------------------------------------


class HttpConnection:
    """One keep-alive connection to the server; requests on it go one at a time."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"",
                      headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """Send one request and read the whole answer: (status, body)."""
        for attempt in range(2):
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            try:
                return await self._exchange(method, path, body, headers or {})
            except (ConnectionError, asyncio.IncompleteReadError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    async def _exchange(self, method: str, path: str, body: bytes,
                        headers: dict[str, str]) -> tuple[int, bytes]:
        assert self.reader is not None and self.writer is not None
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}",
                f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        status_line = await self.reader.readuntil(b"\r\n")
        status = int(status_line.split(b" ", 2)[1])
        length, chunked, close = 0, False, False
        while (line := await self.reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.decode("latin-1").partition(":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value:
                chunked = True
            elif name == "connection" and value == "close":
                close = True
        if chunked:
            parts = []
            while size := int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16):
                parts.append(await self.reader.readexactly(size))
                await self.reader.readexactly(2)
            await self.reader.readuntil(b"\r\n")
            data = b"".join(parts)
        else:
            data = await self.reader.readexactly(length)
        if close:
            self.close()
        return status, data

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


# -- what shoppers do ------------------------------------------------------------------------


@dataclass
class Step:
    """One request of a shopper's script, and what makes its answer right."""

    kind: str  # "say", "press", "buy", "confirm", "webhook", "webhook_again", "after_paid"
    text: str | None = None
    press: dict[str, Any] | None = None
    cards_min: int = 0


@dataclass
class Shopper:
    user: str
    market: str
    locale: str | None
    steps: list[Step]


def load_dialogues() -> list[dict]:
    """The scripted dialogues, each a shopper's conversation."""
    out = []
    for line in DIALOGUES.read_text("utf-8").splitlines():
        if line.strip():
            item = json.loads(line)
            if "turns" in item:
                out.append(item)
    return out


def shoppers(dialogues: list[dict], *, prefix: str, seed: int, buy_share: float,
             more_share: float) -> Iterator[Shopper]:
    """An endless, reproducible stream of shoppers, each playing a dialogue then maybe
    asking for more like a card or buying one."""
    rng = random.Random(seed)
    order = list(range(len(dialogues)))
    n = 0
    while True:
        rng.shuffle(order)
        for index in order:
            d = dialogues[index]
            steps = []
            for turn in d["turns"]:
                cards_min = int(turn.get("expect", {}).get("cards_min", 0))
                if "say" in turn:
                    steps.append(Step("say", text=turn["say"], cards_min=cards_min))
                else:
                    steps.append(Step("press", press=turn["press"], cards_min=cards_min))
            if rng.random() < more_share:
                steps.append(Step("press", press={"card": 1, "button": "more"}))
            if d["market"] == "BR" and rng.random() < buy_share:
                steps.append(Step("say", text="presente para minha mãe até R$200",
                                  cards_min=1))
                steps += [Step("buy"), Step("confirm"), Step("webhook")]
                if rng.random() < 0.5:
                    steps.append(Step("webhook_again"))
                steps.append(Step("after_paid", text="obrigado!"))
            n += 1
            yield Shopper(user=f"{prefix}-{n}", market=d["market"], locale=d.get("locale"),
                          steps=steps)


# -- what a run counted -------------------------------------------------------------------


@dataclass
class Tally:
    chat_ms: list[float] = field(default_factory=list)
    # The same by what was sent: "text", "command" ("/forget"), or a button's verb ("buy").
    chat_ms_by_kind: dict[str, list[float]] = field(default_factory=dict)
    webhook_ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)
    purchases: int = 0

    def error(self, what: str, detail: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1
        if len(self.error_samples) < 8:
            self.error_samples.append(f"{what}: {detail[:300]}")


def _kind(payload: dict[str, str]) -> str:
    if "action" in payload:
        return payload["action"].partition(":")[0]
    return "command" if payload.get("text", "").startswith("/") else "text"


# -- playing ---------------------------------------------------------------------------------


class Player:
    """Plays shoppers over `concurrency` new connections, or over the open `connections`
    given, until the budget is spent."""

    def __init__(self, *, port: int, stream: Iterator[Shopper], requests: int,
                 seconds: float, concurrency: int = 0,
                 connections: list[HttpConnection] | None = None) -> None:
        self.port, self.stream = port, stream
        self.budget, self.deadline = requests, time.monotonic() + seconds
        self.connections = connections or [HttpConnection("127.0.0.1", port)
                                            for _ in range(concurrency)]
        self.tally = Tally()
        self.sent = 0

    def _may_send(self) -> bool:
        return self.sent < self.budget and time.monotonic() < self.deadline

    async def run(self) -> Tally:
        await asyncio.gather(*(self._connection(conn) for conn in self.connections))
        return self.tally

    async def _connection(self, conn: HttpConnection) -> None:
        try:
            while self._may_send():
                await self._play(conn, next(self.stream))
        finally:
            conn.close()

    async def _chat(self, conn: HttpConnection, shopper: Shopper,
                    **payload: str) -> list[dict] | None:
        body = json.dumps({"user": shopper.user, "market": shopper.market, **payload,
                           **({"locale": shopper.locale} if shopper.locale else {})}).encode()
        self.sent += 1
        start = time.perf_counter()
        try:
            status, data = await conn.request("POST", "/api/chat", body,
                                              {"Content-Type": "application/json"})
        except (OSError, asyncio.IncompleteReadError) as exc:
            self.tally.error("connection", repr(exc))
            return None
        spent_ms = (time.perf_counter() - start) * 1000
        self.tally.chat_ms.append(spent_ms)
        self.tally.chat_ms_by_kind.setdefault(_kind(payload), []).append(spent_ms)
        if not 200 <= status < 300:
            self.tally.error(f"http {status}", data.decode("utf-8", "replace"))
            return None
        try:
            messages = json.loads(data)["messages"]
            assert isinstance(messages, list) and messages
            assert all(isinstance(m["text"], str) and isinstance(m["cards"], list)
                       for m in messages)
        except (ValueError, KeyError, TypeError, AssertionError):
            self.tally.error("bad body", data.decode("utf-8", "replace"))
            return None
        return messages

    async def _webhook(self, conn: HttpConnection, txid: str, event_id: str,
                       expect: str) -> bool:
        body = json.dumps({"event_id": event_id, "txid": txid, "status": "paid",
                           "sent_at": int(time.time())}).encode()
        signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        start = time.perf_counter()
        try:
            status, data = await conn.request(
                "POST", "/api/payments/sandbox/webhook", body,
                {"Content-Type": "application/json", "X-Vitrine-Signature": signature})
        except (OSError, asyncio.IncompleteReadError) as exc:
            self.tally.error("connection", repr(exc))
            return False
        self.tally.webhook_ms.append((time.perf_counter() - start) * 1000)
        try:
            outcome = json.loads(data).get("status")
        except ValueError:
            outcome = None
        if status != 200 or outcome != expect:
            self.tally.error(f"webhook not {expect}", f"{status} {data[:200]!r}")
            return False
        return True

    async def _play(self, conn: HttpConnection, shopper: Shopper) -> None:
        """One shopper's script; stops at the first wrong answer (the rest would be too)."""
        last_cards: list[dict] = []
        last: list[dict] = []
        txid = event_id = ""
        for step in shopper.steps:
            if not self._may_send():
                return
            if step.kind in ("webhook", "webhook_again"):
                if step.kind == "webhook":
                    event_id = f"evt-{shopper.user}"
                expect = "applied" if step.kind == "webhook" else "duplicate"
                if not await self._webhook(conn, txid, event_id, expect):
                    return
                continue
            action = self._action(step, last, last_cards)
            if step.kind != "say" and step.kind != "after_paid" and action is None:
                self.tally.error("no button", f"{shopper.user} {step.kind} {step.press}")
                return
            payload = {"action": action} if action else {"text": step.text or ""}
            messages = await self._chat(conn, shopper, **payload)
            if messages is None:
                return
            cards = [c for m in messages for c in m["cards"]]
            if len(cards) < step.cards_min:
                self.tally.error("too few cards", f"{shopper.user} {payload}")
                return
            if step.kind == "buy" and not any(b["action"].startswith("confirm:")
                                              for m in messages for b in m.get("buttons", [])):
                self.tally.error("no confirm", f"{shopper.user} {messages}")
                return
            if step.kind == "confirm":
                codes = [line for m in messages for line in m["text"].splitlines()
                         if line.startswith(PIX_PREFIX)]
                if not codes:
                    self.tally.error("no pix code", f"{shopper.user} {messages}")
                    return
                txid = _emv(_emv(codes[0])["62"])["05"]
            if step.kind == "after_paid":
                if not any("Pagamento confirmado" in m["text"] for m in messages):
                    self.tally.error("no paid notice", f"{shopper.user} {messages}")
                    return
                self.tally.purchases += 1
            last = messages
            if cards:
                last_cards = cards

    @staticmethod
    def _action(step: Step, last: list[dict], last_cards: list[dict]) -> str | None:
        """The action of the button a step presses, from the answers so far."""
        buttons = [b["action"] for m in last for b in m.get("buttons", [])]
        if step.kind == "buy":
            step = Step("press", press={"card": 1, "button": "buy"})
        if step.kind == "confirm":
            return next((a for a in buttons if a.startswith("confirm:")), None)
        if step.kind != "press" or step.press is None:
            return None
        press = step.press
        if "message_button" in press:
            name = press["message_button"]
            if isinstance(name, int):
                return buttons[name] if name < len(buttons) else None
            return next((a for a in buttons if a.split(":", 1)[0] == name), None)
        position = press["card"]
        if not last_cards or not -len(last_cards) <= (position - 1 if position > 0
                                                        else position) < len(last_cards):
            return None
        card = last_cards[position - 1 if position > 0 else position]
        return next((b["action"] for b in card.get("buttons", [])
                     if b["action"].split(":", 1)[0] == press["button"]), None)


def _emv(payload: str) -> dict[str, str]:
    """An EMV payload's ID -> value fields."""
    fields, i = {}, 0
    while i + 4 <= len(payload):
        tag, size = payload[i:i + 2], int(payload[i + 2:i + 4])
        fields[tag] = payload[i + 4:i + 4 + size]
        i += 4 + size
    return fields
