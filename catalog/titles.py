"""How a product title is read: its name, the specifications listed after it, and the kinds
it names only as something the product holds or serves.

Electronics titles often run on from the product's name into its specifications: "HP Compaq
6530b Notebook PC 35.8 cm (14.1") Intel Core 2 Duo 2 GB DDR2-SDRAM 160 GB". Searched as one
field, the long tail makes the name weak (a "Laptop Cooler" outranks the notebook for
"laptop") and the parts look like the product's kind (a PC's "256 GB SSD" for "ssd").
"""

from __future__ import annotations

import re
from functools import lru_cache

from catalog.product_types import product_types
from catalog.text import fold, indexed_stems, stems
from catalog.vocabulary import vocabulary


@lru_cache(maxsize=1)
def _quantity_re() -> re.Pattern[str]:
    """A quantity ("256 GB", "1.5TB", "20,100mAh", "850 W") and the words right after it,
    joined by "+" or "/". A one-letter unit needs a space: "3400G" is a model, not grams."""
    units = sorted(vocabulary().units, key=len, reverse=True)
    long = "|".join(re.escape(u) for u in units if len(u) > 1)
    short = "|".join(re.escape(u) for u in units if len(u) == 1)
    return re.compile(rf"\b\d+(?:[.,]\d+)?(?:\s?(?:{long})|\s(?:{short}))\b"
                      rf"(?=\s+([a-z][a-z0-9]*(?:[+/][a-z0-9]+)*))?")


_DIGIT = re.compile(r"\d").search


def split_specs(title: str) -> tuple[str, str]:
    """A title's name and the specifications listed after it ("" when it lists none).

    A title lists specifications when it holds two quantities or more; they start at the
    first one, provided the words before it name a kind of product ("... Notebook PC", "...
    microwave"). Otherwise the quantity may be part of the name ("Tripp Lite Portable
    20,100mAh 3-Port Mobile Power Bank") and the title is kept whole.
    """
    if _DIGIT(title) is None:
        return title, ""
    lowered = title.lower()
    found = _quantity_re().finditer(lowered)
    first = next(found, None)
    if first is None or next(found, None) is None:
        return title, ""
    # Lower-casing keeps offsets but for a few letters; then the title is kept whole rather
    # than cut in the wrong place.
    if len(lowered) != len(title):
        return title, ""
    name = title[:first.start()]
    if not product_types().names_a_type(stems(name)):
        return title, ""
    return name, title[first.start():]


_LEADING_WORDS = re.compile(r"\s*((?:[a-z][a-z0-9'-]*)(?:\s+[a-z][a-z0-9'-]*)*)")


def first_spec_words(specs: str) -> str:
    """The words right after the first quantity of a title's specifications, up to the next
    punctuation or number: "Cooling Pad" in "17 in Cooling Pad, 5 Fans, 1200 RPM"."""
    lowered = specs.lower()
    quantity = _quantity_re().match(lowered)
    if quantity is None:
        return ""
    words = _LEADING_WORDS.match(lowered, quantity.end())
    return words.group(1) if words else ""


@lru_cache(maxsize=4096)
def after_name_words(title: str) -> frozenset[str]:
    """The stems of `first_spec_words` of a title (none when it lists no specifications)."""
    specs = split_specs(title)[1]
    return frozenset(indexed_stems(first_spec_words(specs))[0]) if specs else frozenset()


# A kind named after these serves the product: "FireWire for Laptop", "Suporte para notebook".
_FOR_RE = re.compile(r"(?:^|[^a-z0-9])(?:for|para|pra)$")


def _after_for(folded: str, at: int) -> bool:
    """Whether the word at `at` follows "for", "para" or "pra" (looking back a few
    characters only, so that a long title costs no more per kind it names)."""
    end = at
    while end > 0 and folded[end - 1].isspace():
        end -= 1
    return end < at and _FOR_RE.search(folded, max(0, end - 5), end) is not None


@lru_cache(maxsize=16384)
def not_its_kind(title: str) -> frozenset[str]:
    """The title's stems that only name what the product holds or serves:

    - a kind named after "for" or "para": "FireWire for Laptop", "Suporte para notebook",
      "Controller for PS 5" ("laptop", "notebook", "ps", "5" and "ps5");
    - what follows the second quantity of a title or a later one: "... 8 GB DDR4-SDRAM
      512 GB SSD" (a PC holding an SSD). The word after the first quantity is often the
      product itself ("Samsung 65 in TV 120 Hz", "Kingston 480 GB SSD").

    A stem the title also uses elsewhere is kept. A title whose name `split_specs` cut
    from its specifications has those out of its words already. Which of two kinds side by
    side is the product's, titles do not say ("Laptop Backpack" is a backpack, "Screen
    protector iPad" a screen protector), so neither is dropped."""
    folded = fold(title)
    spans = [(k.start, k.end) for k in product_types().scan(folded)
             if not k.group and _after_for(folded, k.start)]
    spans += [(m.start(1), m.end(1)) for m in list(_quantity_re().finditer(folded))[1:]
              if m.group(1)]
    if not spans:
        return frozenset()
    spans.sort()
    inside: set[str] = set()
    rest = []
    last = 0
    for a, b in spans:
        inside.update(indexed_stems(folded[a:b])[0])
        rest.append(folded[last:max(a, last)])
        last = max(last, b)
    rest.append(folded[last:])
    # Indexed as the index reads the title, so that joined names ("ps 5" -> "ps5") count.
    return frozenset(inside.difference(indexed_stems(" | ".join(rest))[0]))
