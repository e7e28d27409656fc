"""Word knowledge for search, as data in `vocabulary.json`: accessory words ("a laptop sleeve
is not a laptop"), units of measure ("256 GB SSD" is a part, not the product) and synonym
groups across en, pt and es ("notebook" / "laptop")."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from catalog.text import stems

VOCABULARY_PATH = Path(__file__).with_name("vocabulary.json")


@dataclass(frozen=True)
class Vocabulary:
    """Stems of accessory words and of units of measure, and each synonym's other stems."""

    accessories: frozenset[str]
    synonyms: dict[str, tuple[str, ...]]
    units: frozenset[str] = frozenset()


@lru_cache
def vocabulary() -> Vocabulary:
    raw = json.loads(VOCABULARY_PATH.read_text("utf-8"))
    accessories = frozenset(stem for word in raw["accessories"] for stem in stems(word)
                            if " " not in word)
    synonyms: dict[str, tuple[str, ...]] = {}
    for group in raw["synonyms"]:
        single = [stems(w)[0] for w in group if len(stems(w)) == 1]
        for word in single:
            synonyms[word] = tuple(other for other in single if other != word)
    units = frozenset(stem for word in raw.get("units", ()) for stem in stems(word))
    return Vocabulary(accessories=accessories, synonyms=synonyms, units=units)
