"""Birthdays in what shoppers write: "minha mãe faz 60 em março", "cumple el 3 de mayo",
"her birthday is on June 12". Month names come from Babel in pt, es and en."""

from __future__ import annotations

import calendar
import re
from functools import lru_cache

from babel.dates import get_month_names

from catalog.text import fold


@lru_cache
def _months() -> dict[str, int]:
    """Month names in the three languages, folded ("marco" and "march" -> 3)."""
    names: dict[str, int] = {}
    for locale in ("pt_BR", "es", "en"):
        for number, name in get_month_names("wide", locale=locale).items():
            names[fold(name)] = number
        for number, name in get_month_names("abbreviated", locale=locale).items():
            short = fold(name).rstrip(".")
            if len(short) >= 3 and short not in ("mar", "may"):  # "mar" is the sea in pt/es
                names.setdefault(short, number)
    return names


# A birthday word, or a verb of turning an age ("faz 60", "turns 70", "cumple 80").
_BIRTHDAY_WORDS = (r"aniversario|aniver|niver|nasceu|nascida|nascido|cumpleanos|cumple anos|"
                   r"nacio|nacida|nacido|birthday|bday|born|"
                   r"(?:faz|fara|completa|cumple|cumplira|turns|will turn)\s+\d{1,3}")
# What may stand between the birthday word and its date: a few words, no sentence break.
_GAP = r"(?:[^.!?;\n]{0,40}?)"


def read_birthday(text: str) -> str | None:
    """The birthday a message states: "03" for "faz 60 em março", "03-15" for "aniversário
    dia 15 de março"; None when no date follows a birthday word closely ("she may like
    yoga", "minha mãe faz yoga em maio"), or for a day the month does not have."""
    folded = fold(text)
    months = _months()
    names = "|".join(sorted(map(re.escape, months), key=len, reverse=True))
    # The month comes with a preposition or a day ("em março", "in May", "on May 3",
    # "15 de março", "dia 15 de marzo", "May 3rd"), soon after the birthday word.
    found = re.search(
        rf"\b(?:{_BIRTHDAY_WORDS})\b{_GAP}"
        rf"(?:\b(?P<day>\d{{1,2}})(?:st|nd|rd|th|o|º)?\s+(?:de\s+|of\s+)?(?P<m1>{names})\b"
        rf"|\b(?:em|no|en|el|in|on|de|dia|day)\s+(?P<m2>{names})\b"
        rf"(?:\s+(?P<after>\d{{1,2}})(?:st|nd|rd|th)?\b(?!\s*(?:anos|years|anos)))?)",
        folded)
    if not found:
        return None
    month = months[found.group("m1") or found.group("m2")]
    day = found.group("day") or found.group("after")
    if day is None:
        return f"{month:02d}"
    if not 1 <= int(day) <= calendar.monthrange(2000, month)[1]:  # 2000 has a 29 February
        return f"{month:02d}"
    return f"{month:02d}-{int(day):02d}"
