"""Search quality on the Icecat catalog's human relevance judgments (dev queries).

    .venv/bin/python bench/quality.py [--icecat ../shared/data/icecat]

precision@3: share of the top 3 rated >= 2 (unjudged counts as not good); nDCG@10 over judged
results only, gain 2^rating - 1; both over the dev queries with at least one result rated >= 2,
as the data set's README defines them.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from catalog.merchants import add_merchant_from_feed
from core.markets import get_market
from core.settings import Settings
from vitrine.runtime import build_runtime


def ndcg(ranked: list[str], judged: dict[str, int], k: int = 10) -> float:
    gains = [2 ** judged[p] - 1 for p in ranked if p in judged][:k]
    ideal = sorted((2 ** r - 1 for r in judged.values()), reverse=True)[:k]
    dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains))
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--icecat", default=str(ROOT.parent / "shared" / "data" / "icecat"))
    args = parser.parse_args()
    icecat = Path(args.icecat)
    judgments: dict[str, dict[str, int]] = defaultdict(dict)
    with (icecat / "judgments-dev.csv").open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            judgments[row["query"]][row["product_id"]] = int(row["rating"])
    queries = [q for q, j in judgments.items() if any(r >= 2 for r in j.values())]
    with tempfile.TemporaryDirectory() as tmp:
        runtime = build_runtime(Settings(env="test", database_url=f"sqlite:///{tmp}/q.db"))
        add_merchant_from_feed(engine=runtime.engine, name="Icecat", market="US",
                               feed=icecat / "products.ucp.jsonl.gz")
        us = get_market("US")
        p3, n10 = [], []
        for query in queries:
            # Deep list for nDCG over judged results; the shopper sees the top 3.
            rec = runtime.assistant.recommend(query, market=us, limit=100)
            ids = [c.product_id for c in rec.cards]
            p3.append(sum(1 for p in ids[:3] if judgments[query].get(p, 0) >= 2) / 3)
            n10.append(ndcg(ids, judgments[query]))
    print(json.dumps({"queries": len(queries),
                      "precision@3": round(sum(p3) / len(p3), 3),
                      "ndcg@10": round(sum(n10) / len(n10), 3)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
