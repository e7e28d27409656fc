"""Recommend latency and index memory at 19k (Icecat) and 1M (synthetic) products, side by side
with bm25s and SQLite FTS5 on the same catalog, in the same run.

    .venv/bin/pip install -e '.[bench]'      # bm25s and PyStemmer, for the bm25s peer
    .venv/bin/python bench/search_scale.py [--products 1000000] [--repeat 5] [--skip-icecat]

Each engine lives in a child process of its own, so that its resident memory (VmRSS after
building, VmHWM for the peak) is its own; all of them are pinned to the same single core. The
parent sends the same queries to the three children in turn, rotating who goes first, so the
shared machine's noise falls on all of them alike; each child times its own call.

- vitrine: `Assistant.recommend(query, market=US, limit=10)` in process (understanding, search
  over the market's index, ranking, cards and their reasons), after the index was built by a
  first search, and one warm-up pass over the queries.
- bm25s: `BM25.retrieve` top 10 over title + description + brand (English stemmer, stopwords).
- fts5: SQLite FTS5 (porter unicode61, remove_diacritics 2) over title + description + brand,
  the query's words OR-ed, `ORDER BY bm25(p) LIMIT 10`, in an on-disk database.

The peers only find and order documents, so the ratios are the price of everything else that
`recommend` does. Catalogs are cached under `--cache` (var/bench): Icecat imported through the
real feed import, the synthetic catalog written by `bench/synthetic.py`.
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ENGINES = ("vitrine", "bm25s", "fts5")
# Requests that name a person, not a product: they reach products by gift tags, or nothing.
OPEN_QUERIES = [
    "I need a birthday gift for my 60-year-old mom",
    "gift for my dad who likes gaming under $200",
    "something for my sister who loves photography",
    "coffee lover gift around 40 bucks",
    "present for a teenager into music",
    "gift for a colleague under $30",
]
# Misspellings no catalog word has: each costs one fuzzy lookup the first time it is seen.
TYPOS = ["keybaord", "hedphones", "printr", "lapotp", "monitr", "camrea", "bateries",
         "chargr", "wireles", "speakr"]


def status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


# ---- the children -------------------------------------------------------------------------

# An engine as a generator: set up (yield), build and report (yield a dict), then one query
# per value sent in.
Steps = Generator[Any, str, None]

def catalog_texts(db: str) -> list[tuple[str, str, str]]:
    import sqlite3

    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT title, description, coalesce(brand, '') FROM catalogproduct"
                            " ORDER BY id").fetchall()


def build_vitrine(db: str) -> Steps:
    import catalog.index
    from core.markets import get_market
    from core.settings import Settings
    from vitrine.runtime import build_runtime

    # Every pass searches as the first time a query's words are seen: the queries repeat
    # from pass to pass, and remembered reaches (`CatalogIndex._reach`) would time those.
    catalog.index.REACH_CACHE_BYTES = 0
    runtime = build_runtime(Settings(env="test", database_url=f"sqlite:///{db}"))
    us = get_market("US")
    yield  # the runtime is up: what follows is the index
    index = runtime.search.index("US")
    extra: dict = {"products": len(index.products)}
    if hasattr(index, "memory"):  # absent before the columnar index
        extra["index_parts_mb"] = {k: round(v / 2**20, 1) if not k.endswith("words") else v
                                   for k, v in index.memory().items()}
    started = time.perf_counter()
    index.expand(TYPOS[0])
    extra["first_typo_ms"] = round((time.perf_counter() - started) * 1000, 2)
    typo_ms = []
    for word in TYPOS[1:]:
        started = time.perf_counter()
        index.expand(word)
        typo_ms.append((time.perf_counter() - started) * 1000)
    extra["typo_lookup_median_ms"] = round(statistics.median(typo_ms), 2)
    yield extra
    while True:
        query = yield
        runtime.assistant.recommend(query, market=us, limit=10)


def build_bm25s(db: str) -> Steps:
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    yield
    corpus = [" ".join(row) for row in catalog_texts(db)]
    tokens = bm25s.tokenize(corpus, stopwords="en", stemmer=stemmer, show_progress=False)
    del corpus
    retriever = bm25s.BM25()
    retriever.index(tokens, show_progress=False)
    del tokens
    yield {"products": int(retriever.scores["num_docs"])}
    while True:
        query = yield
        words = bm25s.tokenize([query], stopwords="en", stemmer=stemmer, return_ids=False,
                               show_progress=False)
        try:
            retriever.retrieve(words, k=10, show_progress=False, n_threads=1)
        except (ValueError, KeyError):  # no query word is in the corpus
            pass


def build_fts5(db: str) -> Steps:
    import sqlite3
    import tempfile

    folder = tempfile.mkdtemp(prefix="fts5-")
    conn = sqlite3.connect(f"{folder}/fts.db")
    yield
    conn.execute("CREATE VIRTUAL TABLE p USING fts5(title, description, brand, "
                 "tokenize='porter unicode61 remove_diacritics 2')")
    conn.execute("ATTACH DATABASE ? AS src", (db,))
    conn.execute("INSERT INTO p(rowid, title, description, brand) SELECT id, title, "
                 "description, coalesce(brand, '') FROM src.catalogproduct")
    conn.commit()
    conn.execute("DETACH DATABASE src")
    count = conn.execute("SELECT count(*) FROM p").fetchone()[0]
    yield {"products": count}
    while True:
        query = yield
        terms = " OR ".join(f'"{w}"' for w in query.replace('"', " ").split())
        conn.execute("SELECT rowid FROM p WHERE p MATCH ? ORDER BY bm25(p) LIMIT 10",
                     (terms,)).fetchall()


BUILDERS = {"vitrine": build_vitrine, "bm25s": build_bm25s, "fts5": build_fts5}


def worker(engine: str, db: str, core: int) -> None:
    """Build one engine, report its cost on stdout, then answer queries read from stdin."""
    os.sched_setaffinity(0, {core})
    steps = BUILDERS[engine](db)
    next(steps)
    gc.collect()
    baseline = status_mb("VmRSS")
    started = time.perf_counter()
    extra = next(steps)
    build_s = time.perf_counter() - started
    gc.collect()
    print(json.dumps({"build_s": round(build_s, 2), "baseline_rss_mb": baseline,
                      "rss_mb": status_mb("VmRSS"), "peak_rss_mb": status_mb("VmHWM"),
                      **extra}), flush=True)
    next(steps)
    for line in sys.stdin:
        query = json.loads(line)
        started = time.perf_counter()
        steps.send(query)
        print(json.dumps((time.perf_counter() - started) * 1000), flush=True)


# ---- the parent ---------------------------------------------------------------------------

class Child:
    def __init__(self, engine: str, db: Path, core: int) -> None:
        self.engine = engine
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--worker", engine, "--db", str(db), "--core", str(core)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.report = self._read()

    def _read(self) -> Any:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.engine} worker died")
        return json.loads(line)

    def ask(self, query: str) -> float:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(query) + "\n")
        return float(self._read())

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=60)


def _summary(times: list[float]) -> dict:
    return {"samples": len(times), "median_ms": round(statistics.median(times), 3),
            "p95_ms": round(percentile(times, 0.95), 3), "max_ms": round(max(times), 3)}


def compare(db: Path, groups: dict[str, list[str]], repeat: int, core: int,
            engines: tuple[str, ...]) -> dict:
    """Build each engine in turn (so builds do not compete), then query them interleaved.

    Latency is summarised per group of queries and over all of them."""
    queries = [(group, q) for group, members in groups.items() for q in members]
    children = []
    try:
        for engine in engines:
            children.append(Child(engine, db, core))
        samples: dict[str, dict[str, list[float]]] = {
            c.engine: {group: [] for group in groups} for c in children}
        per_query: dict[str, dict[str, list[float]]] = {c.engine: {} for c in children}
        for round_number in range(repeat + 1):  # round 0 is the warm-up
            for at, (group, query) in enumerate(queries):
                turn = (at + round_number) % len(children)
                for child in children[turn:] + children[:turn]:
                    elapsed = child.ask(query)
                    if round_number:
                        samples[child.engine][group].append(elapsed)
                        per_query[child.engine].setdefault(query, []).append(elapsed)
    finally:
        for child in children:
            child.close()
    results: dict = {}
    for child in children:
        by_group = samples[child.engine]
        slowest = sorted(per_query[child.engine].items(),
                         key=lambda item: -statistics.median(item[1]))[:5]
        results[child.engine] = {**child.report,
                                 "all": _summary([t for ts in by_group.values() for t in ts]),
                                 **{group: _summary(ts) for group, ts in by_group.items()},
                                 "slowest_median_ms": {q: round(statistics.median(ts), 1)
                                                       for q, ts in slowest}}
    mine = results.get("vitrine")
    if mine:
        for peer in engines:
            if peer == "vitrine" or peer not in results:
                continue
            for group in ("all", *groups):
                for stat in ("median_ms", "p95_ms"):
                    mine[group][f"{stat[:-3]}_ratio_to_{peer}"] = round(
                        mine[group][stat] / results[peer][group][stat], 1)
    return results


def judged_queries(icecat: Path) -> list[str]:
    with (icecat / "judgments-dev.csv").open(encoding="utf-8") as fh:
        return list(dict.fromkeys(row["query"] for row in csv.DictReader(fh)))


def icecat_db(cache: Path, icecat: Path) -> Path:
    from bench.synthetic import seal

    db = cache / "icecat.db"
    if not db.exists():
        from catalog.merchants import add_merchant_from_feed
        from core.settings import Settings
        from vitrine.runtime import build_runtime

        runtime = build_runtime(Settings(env="test", database_url=f"sqlite:///{db}"))
        add_merchant_from_feed(engine=runtime.engine, name="Icecat", market="US",
                               feed=icecat / "products.ucp.jsonl.gz")
        runtime.close()
        seal(runtime.engine)
    return db


def synthetic_db(cache: Path, icecat: Path, products: int) -> tuple[Path, float | None]:
    from bench.synthetic import SEED, write_catalog

    db = cache / f"synthetic-{products}-{SEED}.db"
    if db.exists():
        return db, None
    partial = db.with_name(db.name + ".partial")
    partial.unlink(missing_ok=True)
    started = time.perf_counter()
    write_catalog(database_url=f"sqlite:///{partial}", feed=icecat / "products.ucp.jsonl.gz",
                  count=products)
    partial.rename(db)
    return db, round(time.perf_counter() - started, 1)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--products", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--icecat", default=str(ROOT.parent / "shared" / "data" / "icecat"))
    parser.add_argument("--cache", default=str(ROOT / "var" / "bench"))
    parser.add_argument("--core", type=int, default=os.cpu_count() - 1 if os.cpu_count() else 0)
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--skip-icecat", action="store_true")
    parser.add_argument("--skip-synthetic", action="store_true")
    parser.add_argument("--worker", choices=ENGINES, help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.db, args.core)
        return 0
    engines = tuple(e for e in args.engines.split(",") if e)
    if "bm25s" in engines:
        try:
            import bm25s  # noqa: F401
            import Stemmer  # noqa: F401
        except ImportError:
            print("bm25s peer skipped: pip install -e '.[bench]'", file=sys.stderr)
            engines = tuple(e for e in engines if e != "bm25s")
    icecat = Path(args.icecat)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    groups = {"judged": judged_queries(icecat), "open": OPEN_QUERIES}
    results: dict = {"queries": {group: len(qs) for group, qs in groups.items()},
                     "repeat": args.repeat, "core": args.core}
    if not args.skip_icecat:
        db = icecat_db(cache, icecat)
        results["icecat"] = compare(db, groups, args.repeat, args.core, engines)
    if not args.skip_synthetic:
        db, written_s = synthetic_db(cache, icecat, args.products)
        if written_s is not None:
            results["synthetic_written_s"] = written_s
        results[f"synthetic_{args.products}"] = compare(db, groups, args.repeat, args.core,
                                                        engines)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
