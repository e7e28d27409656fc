"""Recommend latency on the demo catalog and the 19k Icecat feed, and Icecat import time.

    .venv/bin/python bench/recommend.py [--repeat 5] [--icecat ../shared/data/icecat]

Each figure comes with a peer measured in the same run on the same machine, so the ratio
stays meaningful on a noisy shared host: the import is compared with merely parsing the same
file as JSON, and `recommend` with an SQLite FTS5 bm25 query over the same products.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import catalog.index
from catalog.merchants import add_merchant_from_feed
from core.markets import get_market
from core.settings import Settings
from vitrine.runtime import build_runtime, seed_demo

DEMO_QUERIES = [
    ("BR", "presente para minha mãe de 60 anos até R$200"),
    ("BR", "algo para minha sogra que gosta de cozinhar, uns 150 reais"),
    ("BR", "fone de ouvido bluetooth até R$300"),
    ("BR", "livro para meu pai"),
    ("BR", "presente de natal para minha filha de 8 anos"),
    ("BR", "kit jardinagem"),
    ("AR", "regalo para mi papá que le gusta el asado, menos de 50.000 pesos"),
    ("AR", "regalo para mi abuela de 80"),
    ("AR", "mate para mi hermano"),
    ("AR", "algo para mi novia que le gusta el yoga"),
    ("US", "I need a birthday gift for my 60-year-old mom"),
    ("US", "toy for my 10-year-old nephew under $40"),
    ("US", "coffee lover gift around 40 bucks"),
    ("US", "running gear for my first 10k"),
    ("US", "headphones"),
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def summarize(name: str, samples: list[float]) -> dict:
    return {"name": name, "n": len(samples), "median_ms": round(statistics.median(samples), 3),
            "p95_ms": round(percentile(samples, 0.95), 3)}


def time_calls(calls, repeat: int) -> list[float]:
    for call in calls:  # warm-up: indexes built, caches filled
        call()
    samples = []
    for _ in range(repeat):
        for call in calls:
            start = time.perf_counter()
            call()
            samples.append((time.perf_counter() - start) * 1000)
    return samples


def fts5_peer(products: list[dict], queries: list[str], repeat: int) -> list[float]:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE p USING fts5(title, description, brand, "
               "tokenize='porter unicode61 remove_diacritics 2')")
    db.executemany("INSERT INTO p VALUES (?, ?, ?)", [
        (p["title"], (p.get("description") or {}).get("plain", ""),
         (p.get("metadata") or {}).get("brand", "")) for p in products])

    def query(text: str):
        terms = " OR ".join(f'"{w}"' for w in text.replace('"', " ").split())
        return lambda: db.execute("SELECT rowid FROM p WHERE p MATCH ? ORDER BY bm25(p) "
                                  "LIMIT 10", (terms,)).fetchall()

    return time_calls([query(q) for q in queries], repeat)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--icecat", default=str(ROOT.parent / "shared" / "data" / "icecat"))
    args = parser.parse_args()
    results: dict = {}
    # Every round searches as the first time a query's words are seen: the queries repeat
    # from round to round, and remembered reaches (`CatalogIndex._reach`) would time those.
    catalog.index.REACH_CACHE_BYTES = 0

    with tempfile.TemporaryDirectory() as tmp:
        runtime = build_runtime(Settings(env="test", database_url=f"sqlite:///{tmp}/demo.db"))
        seed_demo(runtime)
        calls = [(lambda m=m, q=q: runtime.assistant.recommend(q, market=get_market(m)))
                 for m, q in DEMO_QUERIES]
        results["demo_recommend"] = summarize("recommend, demo catalog (166 products)",
                                              time_calls(calls, args.repeat))

        icecat = Path(args.icecat)
        feed = icecat / "products.ucp.jsonl.gz"
        if feed.is_file():
            start = time.perf_counter()
            with gzip.open(feed, "rt", encoding="utf-8") as fh:
                products = [json.loads(line) for line in fh]
            parse_s = time.perf_counter() - start

            runtime = build_runtime(Settings(env="test",
                                             database_url=f"sqlite:///{tmp}/icecat.db"))
            start = time.perf_counter()
            _, report = add_merchant_from_feed(engine=runtime.engine, name="Icecat",
                                               market="US", feed=feed)
            import_s = time.perf_counter() - start
            start = time.perf_counter()
            runtime.search.index("US")
            index_s = time.perf_counter() - start
            results["icecat_import"] = {
                "products": report.imported, "rejected": report.rejected,
                "import_s": round(import_s, 2), "index_build_s": round(index_s, 2),
                "peer_json_parse_s": round(parse_s, 2),
                "ratio_import_to_parse": round(import_s / parse_s, 2)}

            with (icecat / "judgments-dev.csv").open(encoding="utf-8") as fh:
                queries = list(dict.fromkeys(row["query"] for row in csv.DictReader(fh)))
            us = get_market("US")
            calls = [(lambda q=q: runtime.assistant.recommend(q, market=us, limit=10))
                     for q in queries]
            mine = summarize(f"recommend, Icecat ({report.imported} products), "
                             f"{len(queries)} judged queries", time_calls(calls, args.repeat))
            peer = summarize("peer: SQLite FTS5 bm25 top-10, same products and queries",
                             fts5_peer(products, queries, args.repeat))
            mine["ratio_median_to_peer"] = round(mine["median_ms"] / peer["median_ms"], 1)
            results["icecat_recommend"] = mine
            results["icecat_peer_fts5"] = peer
    print(json.dumps(results, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
