"""Text normalisation shared by understanding and search: case, accents, tokens, light stems."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

# Letters and digits split apart: "RTX2070" and "rtx 2070", "TN-2110" and "tn2110" meet.
TOKEN_RE = re.compile(r"[a-z]+|[0-9]+")


@lru_cache(maxsize=65536)
def fold(text: str) -> str:
    """Lower-case and strip accents ("Mãe Jardinagem" -> "mae jardinagem")."""
    low = text.lower()
    if low.isascii():
        return low
    decomposed = unicodedata.normalize("NFKD", low)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


@lru_cache(maxsize=131072)
def stem(token: str) -> str:
    """A light plural-folding stem that works alike for Portuguese, Spanish and English.

    It only has to map a word and its plural to the same key ("flores"/"flor",
    "livros"/"livro", "batteries"/"battery"), applied identically to queries and products.
    """
    t = token
    if len(t) > 4 and t.endswith(("oes", "aes")):
        return t[:-3] + "ao"
    if len(t) > 4 and t.endswith("ies"):
        return t[:-3] + "y"
    if len(t) > 3 and t.endswith("s") and not t.endswith("ss"):
        t = t[:-1]
    if len(t) > 4 and t.endswith("e"):
        t = t[:-1]
    return t


def tokens(text: str) -> list[str]:
    """Folded word tokens of a text."""
    return TOKEN_RE.findall(fold(text))


def stems(text: str) -> list[str]:
    """Stemmed tokens of a text, in order (duplicates kept for term frequency)."""
    return [stem(t) for t in TOKEN_RE.findall(fold(text))]


_WORD_RE = re.compile(r"[a-z0-9]+")
# A short run of letters written apart from the number after it is one model name: "PS 4",
# "TN-2110", "RTX 2060" are "ps4", "tn2110", "rtx2060". Longer words ("Windows 10",
# "Notebook 15") are a word and a number.
JOINED_LETTERS = 4


def _joinable(first: str, second: str) -> bool:
    return len(first) <= JOINED_LETTERS and first.isalpha() and second.isdigit()


def indexed_stems(text: str) -> tuple[list[str], list[str]]:
    """A product text's stems for the index: whole words, and the parts of model codes.

    "Alienware AA352186 backpack" gives the words ["alienware", "aa352186", "backpack"] and
    the parts ["aa", "352186"]: a query for "aa" batteries or "rtx 2060" still finds a code
    written as one token, but weaker than a product where "AA" stands alone as a word. A
    model name written in two ("PS 4", "TN-2110") also gives the joined word ("ps4",
    "tn2110"), so that it meets the same name written as one.
    """
    words: list[str] = []
    parts: list[str] = []
    previous = ""
    for token in _WORD_RE.findall(fold(text)):
        if token.isalpha() or token.isdigit():
            words.append(stem(token))
            if previous and _joinable(previous, token):
                words.append(previous + token)
        else:
            words.append(token)
            parts.extend(stem(p) for p in TOKEN_RE.findall(token))
        previous = token
    return words, parts


_NAME_RE = re.compile(rf"[a-z]{{1,{JOINED_LETTERS}}}[0-9]+")


def query_units(text: str) -> list[tuple[str, list[str]]]:
    """A query's stems, with each model name written as one word kept whole next to its
    parts: "ps4 pro" gives [("ps4", ["ps", "4"]), ("pro", ["pro"])]. A caller looks for the
    whole name first (the index also holds "PS 4" joined) and falls back on its parts when
    no product is written that way.

    Only a short run of letters and then digits is a name ("ps4", "rtx2060", "tn2110"), as
    the index joins them. Other mixes ("9v", "ryzen5") are read as their parts, and words
    written apart ("smart tv 50") are never joined: a 50" TV is no "TV 50"."""
    units: list[tuple[str, list[str]]] = []
    for token in _WORD_RE.findall(fold(text)):
        if token.isalpha() or token.isdigit():
            units.append((stem(token), [stem(token)]))
            continue
        parts = [stem(p) for p in TOKEN_RE.findall(token)]
        if _NAME_RE.fullmatch(token):
            units.append((token, parts))
        else:
            units.extend((p, [p]) for p in parts)
    return units


def phrase_words(text: str) -> list[str]:
    """A phrase's words as a product's title words are indexed: whole, stemmed when all
    letters or all digits ("9V battery" -> ["9v", "battery"], "PS5" -> ["ps5"])."""
    return [stem(t) if t.isalpha() or t.isdigit() else t for t in _WORD_RE.findall(fold(text))]
