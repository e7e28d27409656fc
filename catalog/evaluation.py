"""Search quality against human relevance judgments: precision@3 and nDCG@k.

precision@3 is the share of the top 3 rated >= 2, an unjudged result counting as not good;
nDCG@k is computed over judged results only, with gain 2^rating - 1. Queries without any
result rated >= 2 are left out, as the Icecat judgments' README defines the metrics.
"""

from __future__ import annotations

import csv
import math
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.errors import InvalidInput

GOOD = 2


def load_judgments(path: Path) -> dict[str, dict[str, int]]:
    """`query,product_id,rating` rows -> {query: {product_id: rating}}.

    Raises:
        InvalidInput: the file cannot be read or lacks those columns.
    """
    judgments: dict[str, dict[str, int]] = defaultdict(dict)
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            if not {"query", "product_id", "rating"} <= set(reader.fieldnames or ()):
                raise InvalidInput(f"{path}: judgments need columns query,product_id,rating")
            for row in reader:
                judgments[row["query"]][row["product_id"]] = int(row["rating"])
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput(f"cannot read judgments {path}: {exc}") from None
    return dict(judgments)


def precision_at(ranked: list[str], judged: dict[str, int], k: int = 3) -> float:
    return sum(1 for p in ranked[:k] if judged.get(p, 0) >= GOOD) / k


def ndcg_at(ranked: list[str], judged: dict[str, int], k: int = 10) -> float:
    gains = [2 ** judged[p] - 1 for p in ranked if p in judged][:k]
    ideal = sorted((2 ** r - 1 for r in judged.values()), reverse=True)[:k]
    dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains))
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


@dataclass
class Evaluation:
    queries: int
    precision_at_3: float
    ndcg: float
    k: int
    p50_ms: float
    p95_ms: float

    def as_dict(self) -> dict[str, float | int]:
        return {"queries": self.queries, "precision@3": round(self.precision_at_3, 3),
                f"ndcg@{self.k}": round(self.ndcg, 3), "latency_p50_ms": round(self.p50_ms, 2),
                "latency_p95_ms": round(self.p95_ms, 2)}


def evaluate(rank: Callable[[str], list[str]], judgments: dict[str, dict[str, int]], *,
             k: int = 10) -> Evaluation:
    """Run every judged query with at least one good result through `rank`."""
    queries = [q for q, judged in judgments.items() if any(r >= GOOD for r in judged.values())]
    if not queries:
        raise InvalidInput("no query has a result rated 2 or more")
    p3, ndcg, times = [], [], []
    for query in queries:
        started = time.perf_counter()
        ranked = rank(query)
        times.append((time.perf_counter() - started) * 1000)
        p3.append(precision_at(ranked, judgments[query]))
        ndcg.append(ndcg_at(ranked, judgments[query], k))
    ordered = sorted(times)
    return Evaluation(queries=len(queries), precision_at_3=statistics.fmean(p3),
                      ndcg=statistics.fmean(ndcg), k=k, p50_ms=statistics.median(times),
                      p95_ms=ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))])
