"""Ops reports over a million conversion events on SQLite.

    .venv/bin/python bench/reports.py [--events 1000000] [--repeat 5] [--db PATH]

Fills a fresh SQLite database with synthetic events shaped like the conversion log (30 days;
web, Telegram and WhatsApp; four markets; 40 merchants; messages, cards, clicks, checkouts,
payments, gaps), then times every report the API and the dashboard serve, over the whole
range and filtered, after rolling up the closed days (`ops/tally.py`). The peer, timed in
the same run, is one `SELECT count(*)` over the same table: the cheapest full pass SQLite can
make. The target: every report within 500 ms.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert, text
from sqlmodel import Session

from core.db import make_engine
from ops.events import ConversionEvent, EventKind
from ops.funnel import funnel
from ops.reports import (
    catalog_gaps,
    cost_per_sale,
    funnel_by,
    merchant_visibility,
    sponsored_vs_organic,
)
from ops.tally import Filters, roll_up
from vitrine.runtime import create_tables

START = datetime(2026, 10, 1, tzinfo=UTC)
DAYS = 30
CHANNELS = ("web", "tg", "wa")
MARKETS = ("BR", "AR", "MX", "US")
MERCHANTS = [f"shop-{i:02d}" for i in range(40)]


def fill(engine, total: int, seed: int = 7) -> int:  # type: ignore[no-untyped-def]
    """About `total` events, as shoppers' paths; how many were written."""
    rng = random.Random(seed)
    rows: list[dict] = []
    written = 0
    user = 0
    while written + len(rows) < total:
        user += 1
        at = START + timedelta(seconds=rng.randrange(DAYS * 86400))
        base = {"channel": rng.choice(CHANNELS), "market": rng.choice(MARKETS),
                "user_hash": f"u{user:08x}", "conversation_id": f"c{user:08x}",
                "language": "pt"}
        rows.append({**base, "kind": EventKind.MESSAGE_RECEIVED.value, "created_at": at,
                     "text_hash": f"t{rng.randrange(50_000):05x}"})
        rows.append({**base, "kind": EventKind.INTENT_UNDERSTOOD.value, "created_at": at,
                     "parser": "llm", "tokens_in": 600, "tokens_out": 80})
        if rng.random() < 0.04:  # a catalog gap
            rows.append({**base, "kind": EventKind.CARDS_SHOWN.value, "created_at": at,
                         "text_hash": f"g{rng.randrange(2_000):04x}",
                         "understood": "kind:headphones"})
            continue
        shown = rng.sample(MERCHANTS, 3)
        for position, merchant in enumerate(shown, 1):
            rows.append({**base, "kind": EventKind.CARDS_SHOWN.value, "created_at": at,
                         "merchant": merchant, "position": position, "score": 1.0 / position,
                         "sponsored": position == 1 and rng.random() < 0.1, "amount": 9990,
                         "currency": "BRL"})
        if rng.random() < 0.15:
            merchant = shown[0]
            rows.append({**base, "kind": EventKind.CARD_CLICKED.value, "created_at": at,
                         "merchant": merchant})
            rows.append({**base, "kind": EventKind.CHECKOUT_STARTED.value, "created_at": at,
                         "merchant": merchant, "amount": 9990, "currency": "BRL"})
            if rng.random() < 0.5:
                rows.append({**base, "kind": EventKind.ORDER_PAID.value, "created_at": at,
                             "merchant": merchant, "amount": 9990, "currency": "BRL"})
        if len(rows) >= 50_000:
            written += _write(engine, rows)
            rows = []
    return written + _write(engine, rows)


def _write(engine, rows: list[dict]) -> int:  # type: ignore[no-untyped-def]
    columns = {c.name: None for c in ConversionEvent.__table__.columns  # type: ignore[attr-defined]
               if c.name != "id"}
    if rows:
        with engine.begin() as conn:
            conn.execute(insert(ConversionEvent), [{**columns, **row} for row in rows])
    return len(rows)


def timed(call, repeat: int) -> list[float]:  # type: ignore[no-untyped-def]
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--db", help="keep the database here (default: a temporary file)")
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="vitrine-reports-")
    path = Path(args.db) if args.db else Path(folder) / "events.db"
    engine = make_engine(f"sqlite:///{path}")
    create_tables(engine)
    with Session(engine) as session:
        have = session.exec(text("SELECT count(*) FROM conversionevent")).one()[0]
    if have < args.events * 0.9:
        started = time.perf_counter()
        have = fill(engine, args.events)
        print(f"wrote {have:,} events in {time.perf_counter() - started:.1f} s", flush=True)
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    started = time.perf_counter()
    rolled = roll_up(engine, now=START + timedelta(days=DAYS + 1))
    if rolled:
        print(f"rolled up {rolled} days in {time.perf_counter() - started:.1f} s", flush=True)
    whole = Filters(since=START, until=START + timedelta(days=DAYS))
    week_tg = Filters(since=START + timedelta(days=7), until=START + timedelta(days=14),
                      channel="tg", market="BR")
    one_shop = Filters(since=START, until=START + timedelta(days=DAYS), merchant="shop-07")
    # Not on day boundaries: whole days from the rollup, the two partial days from events.
    odd = Filters(since=START + timedelta(days=3, hours=7), until=START + timedelta(
        days=24, hours=15))
    with Session(engine) as session:
        cases = {
            "peer: count(*)": lambda: session.exec(
                text("SELECT count(*) FROM conversionevent")).one(),
            "funnel": lambda: funnel(session=session, since=whole.since, until=whole.until),
            "funnel, a week on tg in BR": lambda: funnel(
                session=session, since=week_tg.since, until=week_tg.until, channel="tg",
                market="BR"),
            "funnel, hours not on day boundaries": lambda: funnel(
                session=session, since=odd.since, until=odd.until),
            "funnel by day": lambda: funnel_by(session, whole, "day"),
            "funnel by merchant": lambda: funnel_by(session, whole, "merchant"),
            "merchants": lambda: merchant_visibility(session, whole),
            "one merchant's visibility": lambda: merchant_visibility(session, one_shop),
            "sponsored vs organic": lambda: sponsored_vs_organic(session, whole),
            "catalog gaps": lambda: catalog_gaps(session, whole),
            "cost per sale": lambda: cost_per_sale(session, whole, price_in=None,
                                                   price_out=None, fixed_per_day=None,
                                                   now=whole.until),
        }
        results = {}
        for name, call in cases.items():
            call()  # warm the page cache
            results[name] = statistics.median(timed(call, args.repeat))
    peer = results["peer: count(*)"]
    print(f"\n{have:,} events, median of {args.repeat} runs\n")
    print("| report | median ms | × peer |\n|---|---:|---:|")
    for name, ms in results.items():
        print(f"| {name} | {ms:.0f} | {ms / peer:.1f} |")


if __name__ == "__main__":
    main()
