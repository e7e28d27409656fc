"""What Vitrine never recommends: a per-market category blocklist, kept as data.

The same check runs when products arrive (feeds, pushes) and when they are shown (the local
index and live merchant results), so a list changed after an import still applies.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

from catalog.text import fold

BLOCKLIST_PATH = Path(__file__).with_name("blocklist.json")


@lru_cache
def _patterns() -> dict[str, re.Pattern[str]]:
    raw = json.loads(BLOCKLIST_PATH.read_text("utf-8"))
    shared = raw.get("*", [])
    markets = {code for code in raw if len(code) == 2}
    compiled = {}
    for market in markets | {"*"}:
        words = sorted({fold(w) for w in shared + raw.get(market, [])}, key=len, reverse=True)
        compiled[market] = re.compile(
            r"(?<![a-z0-9])(" + "|".join(re.escape(w) for w in words) + r")(?![a-z0-9])")
    return compiled


def blocked_reason(market: str, *, categories: Iterable[str], tags: Iterable[str]) -> str | None:
    """Why a product may not be shown in a market ("blocked category: weapons"), or None."""
    pattern = _patterns().get(market.upper()) or _patterns()["*"]
    for text in list(categories) + list(tags):
        match = pattern.search(fold(text))
        if match:
            return f"blocked category: {match.group(1)}"
    return None
