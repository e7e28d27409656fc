"""Fan-out to live merchants: 10 UCP MCP servers on loopback, one of them hanging.

    .venv/bin/python bench/fanout.py [--runs 10]

Every search goes to all ten merchants (the result cache is off). The target: the answer
arrives within the deadline + 100 ms with the other nine merchants' products. The peer in the
same run is the same fan-out with all ten merchants answering.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlmodel import select

from catalog.merchants import register_merchant
from catalog.models import Merchant, MerchantCreate, MerchantKind
from catalog.search import SearchRequest
from core.db import session_scope
from core.settings import Settings
from vitrine.runtime import build_runtime

MERCHANTS = 10


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(runtime, runs: int) -> tuple[list[float], list[int]]:
    request = SearchRequest(market="US", currency="USD", text="watering can",
                            terms=["watering", "can"], limit=30)
    runtime.federated.search(request, language="en")  # warm-up: loop, connections, tool lists
    times, answered = [], []
    for _ in range(runs):
        started = time.perf_counter()
        result = runtime.federated.search(request, language="en")
        times.append((time.perf_counter() - started) * 1000)
        answered.append(MERCHANTS - len(result.unanswered))
    return times, answered


SERVERS = """
import sys
from contextlib import ExitStack
sys.path.insert(0, {root!r})
from tests.fake_ucp_server import CATALOG, FakeUcpServer
from tests.loopback import serve
with ExitStack() as stack:
    for i in range({count}):
        shop = FakeUcpServer(catalog=[{{**p, "id": f"{{p['id']}}-{{i}}",
                                       "title": f"{{p['title']}} ({{i}})"}} for p in CATALOG])
        print(stack.enter_context(serve(shop.app)) + "/mcp", flush=True)
    hanging = FakeUcpServer(mode="hanging")
    print(stack.enter_context(serve(hanging.app)) + "/mcp", flush=True)
    sys.stdin.read()  # serve until the benchmark closes our stdin
"""


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    results = {}
    # The merchants run in a process of their own, as they would on their own machines.
    servers = subprocess.Popen([sys.executable, "-c", SERVERS.format(root=str(ROOT),
                                                                      count=MERCHANTS)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert servers.stdout is not None and servers.stdin is not None
    urls = [servers.stdout.readline().strip() for _ in range(MERCHANTS + 1)]
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(env="test", database_url=f"sqlite:///{tmp}/f.db",
                            live_cache_seconds=0, breaker_failures=10_000)
        runtime = build_runtime(settings)
        with session_scope(runtime.engine) as session:
            for i, url in enumerate(urls[:MERCHANTS]):
                register_merchant(session=session, merchant_in=MerchantCreate(
                    name=f"Shop {i}", slug=f"shop-{i}", market="US", kind=MerchantKind.MCP,
                    mcp_url=url))
        deadline_ms = min(settings.live_deadline_ms, settings.live_merchant_timeout_ms)
        try:
            times, answered = measure(runtime, args.runs)
            results["all_answering"] = {
                "runs": args.runs, "median_ms": round(statistics.median(times), 1),
                "p95_ms": round(percentile(times, 0.95), 1),
                "merchants_answered_min": min(answered)}
            with session_scope(runtime.engine) as session:
                session.exec(select(Merchant).where(Merchant.slug == f"shop-{MERCHANTS - 1}")
                             ).one().mcp_url = urls[-1]
            times, answered = measure(runtime, args.runs)
            results["one_hanging"] = {
                "runs": args.runs, "deadline_ms": deadline_ms,
                "median_ms": round(statistics.median(times), 1),
                "p95_ms": round(percentile(times, 0.95), 1),
                "max_ms": round(max(times), 1),
                "median_over_deadline_ms": round(statistics.median(times) - deadline_ms, 1),
                "max_over_deadline_ms": round(max(times) - deadline_ms, 1),
                "merchants_answered_min": min(answered)}
        finally:
            runtime.close()
            servers.stdin.close()
            servers.wait(timeout=30)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
