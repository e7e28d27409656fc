"""Stores the shopper names: "nada da Jardim & Cia", "sin Regalos del Sur", "only from
Giftwell", "prefiro a Casa Presente".

Merchant names are proper names the intent parser cannot know ("Jardim & Cia" is not a
garden), so they are read first, against the market's merchants, and cut from the message
before it is understood. A store ruled out is never shown and is remembered as avoided; a
store asked for limits this request to it and is remembered as liked (ranked up a little
later on). A store's name alone is not read as a store: it may be a brand or a word.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from catalog.text import fold

# Words just before a store's name that rule it out, or ask for it, in pt, es and en.
_AVOID = (r"nada d[aoe]s?|nao (?:quero |gosto )?(?:d[aoe]s?|na|no)|sem|menos|exceto|fora|"
          r"not from|nothing from|not at|no (?:from|de|del|de la)|except|excepto|sin|"
          r"evitar|evita|avoid|never from|nunca d[aoe]s?|nunca de la")
_LIKE = (r"d[ao] loja|na loja|s[oó] d[ao]|apenas d[ao]|prefiro(?: a| o)?|gosto d[ao]|"
         r"de la tienda|en la tienda|solo de|solo en|prefiero(?: a)?(?: la| el)?|"
         r"me gusta|only from|only at|from|at|prefer")
_STORE_WORD = r"(?:(?:a |o |la |el |the )?(?:loja|tienda|store|shop) )?(?:a |o |la |el |the )?"


@dataclass
class StoreWords:
    """What a message says about stores, and the message without it."""

    text: str
    liked: list[str] = field(default_factory=list)  # merchant slugs
    avoided: list[str] = field(default_factory=list)


def read_stores(text: str, merchants: dict[str, str]) -> StoreWords:
    """Find the market's store names (`merchants`: slug -> name) in a message.

    A name after a ruling-out phrase ("nada da", "sin", "not from") is avoided; one after an
    asking phrase ("da loja", "only from") is liked; a name alone is left to the message (it
    may be a brand). The name and its phrase are cut from the returned text. Names are matched
    whole, case and accents aside; the longest name wins where two overlap.
    """
    folded = fold(text)
    if len(folded) != len(text) or not merchants:
        return StoreWords(text)  # offsets would not line up; leave the message alone
    pattern, slugs = _pattern(tuple(sorted(merchants.items())))
    if pattern is None:
        return StoreWords(text)
    found = StoreWords(text)
    cuts: list[tuple[int, int]] = []
    for match in pattern.finditer(folded):
        if not (match.group("avoid") or match.group("like")):
            # A bare name may be a brand or a plain word ("panelas Tramontina", "um mimo"):
            # only a phrase about the store makes it one.
            continue
        slug = slugs[fold(match.group("name")).strip()]
        target = found.avoided if match.group("avoid") else found.liked
        if slug not in target:
            target.append(slug)
        cuts.append(match.span())
    for start, end in sorted(cuts, reverse=True):
        found.text = found.text[:start] + " " + found.text[end:]
    found.text = re.sub(r"\s+", " ", found.text).strip(" ,")
    return found


@lru_cache(maxsize=64)
def _pattern(merchants: tuple[tuple[str, str], ...]) -> tuple[re.Pattern[str] | None,
                                                                dict[str, str]]:
    """One regular expression for all of a market's store names, built once per set of
    merchants (a market with thousands of stores costs one scan per message)."""
    slugs = {fold(name).strip(): slug for slug, name in merchants if len(fold(name).strip()) >= 3}
    if not slugs:
        return None, {}
    names = "|".join(re.escape(n) for n in sorted(slugs, key=len, reverse=True))
    return re.compile(
        rf"(?:(?P<avoid>{_AVOID})\s+|(?P<like>{_LIKE})\s+)?{_STORE_WORD}"
        rf"(?<![a-z0-9])(?P<name>{names})(?![a-z0-9])"), slugs
