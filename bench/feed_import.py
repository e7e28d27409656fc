"""Feed import at scale: the Icecat feed, and a synthetic 1M-product feed with peak memory.

    .venv/bin/python bench/feed_import.py [--products 1000000] [--icecat ../shared/data/icecat]

Each import runs in a fresh child process so that its peak resident memory (ru_maxrss) is
its own; the parent stays small, because Linux carries ru_maxrss across exec. The peer in
the same run is parsing the same file with `json.loads` alone.
"""

from __future__ import annotations

import argparse
import gzip
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
from pathlib import Path
from catalog.merchants import add_merchant_from_feed
from core.settings import Settings
from vitrine.runtime import build_runtime
runtime = build_runtime(Settings(env="test", database_url="sqlite:///" + {db!r}))
started = time.perf_counter()
_, report = add_merchant_from_feed(engine=runtime.engine, name="Bench", market="US",
                                   feed=Path({feed!r}))
elapsed = time.perf_counter() - started
print(json.dumps({{"imported": report.imported, "rejected": report.rejected,
                   "seconds": round(elapsed, 2),
                   "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                                        / 1024, 1)}}))
"""

PEER = """
import gzip, json, resource, sys, time
started = time.perf_counter()
n = 0
with gzip.open({feed!r}, "rt", encoding="utf-8") as fh:
    for line in fh:
        json.loads(line)
        n += 1
print(json.dumps({{"parsed": n, "seconds": round(time.perf_counter() - started, 2),
                   "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                                        / 1024, 1)}}))
"""


def run_child(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def synthesize(source: Path, target: Path, count: int) -> None:
    """A feed of `count` products made by cycling real Icecat products under new ids."""
    with gzip.open(source, "rt", encoding="utf-8") as fh:
        base = [json.loads(line) for line in fh]
    with gzip.open(target, "wt", encoding="utf-8", compresslevel=1) as out:
        for i in range(count):
            product = dict(base[i % len(base)])
            product["id"] = f"S{i}"
            product["variants"] = [{**product["variants"][0], "id": f"S{i}"}]
            out.write(json.dumps(product) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--products", type=int, default=1_000_000)
    parser.add_argument("--icecat", default=str(ROOT.parent / "shared" / "data" / "icecat"))
    parser.add_argument("--synthesize", help=argparse.SUPPRESS)
    args = parser.parse_args()
    icecat = Path(args.icecat) / "products.ucp.jsonl.gz"
    if args.synthesize:
        synthesize(icecat, Path(args.synthesize), args.products)
        return 0
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["icecat"] = run_child(CHILD.format(root=str(ROOT), db=f"{tmp}/i.db",
                                                   feed=str(icecat)))
        results["icecat_peer_parse"] = run_child(PEER.format(feed=str(icecat)))
        synthetic = Path(tmp) / "synthetic.jsonl.gz"
        started = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--synthesize", str(synthetic),
                        "--products", str(args.products), "--icecat", args.icecat], check=True)
        results["synthetic_feed"] = {"products": args.products,
                                     "mb_on_disk": round(synthetic.stat().st_size / 2**20, 1),
                                     "generated_s": round(time.perf_counter() - started, 1)}
        results["synthetic"] = run_child(CHILD.format(root=str(ROOT), db=f"{tmp}/s.db",
                                                      feed=str(synthetic)))
        results["synthetic_peer_parse"] = run_child(PEER.format(feed=str(synthetic)))
    results["bench_process_peak_rss_mb"] = round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
