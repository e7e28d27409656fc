"""Reading who a gift is for a little further: the person's name and age, in pt, es and en.

"minha mãe se chama Inês", "mi abuela de ochenta", "she's turning seventy five", "my dad, 65,
coffee snob". Ages written in words become digits first, so that the rest of the parser (and
the budget reader) sees "65 anos", "80".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from bot.intent import Intent

# -- names ---------------------------------------------------------------------------------

# "minha mãe se chama Inês", "mi abuela se llama Rosa", "my mom, her name is Linda". The name
# is one word after the phrase; it is not a product word, a colour ("Rosa") or an interest.
_NAME_RE = re.compile(
    r"(?<![a-z])(?:se chama|chama-se|chamada|chamado|o nome dela e|o nome dele e|nome dela e|"
    r"nome dele e|se llama|llamada|llamado|su nombre es|named|called|her name is|"
    r"his name is|their name is)\s+(?P<name>[a-z][a-z'-]{1,29})(?![a-z])")


def take_name(s: str, low: str, intent: Intent) -> str:
    """Take the person's name out of `s` (the folded message) into `intent.name`, written as
    the shopper wrote it in `low` (the lower-cased message, accents kept)."""
    found = _NAME_RE.search(s)
    if not found:
        return s
    start, end = found.span("name")
    cut_end = found.end()
    # `low` and the message keep the accents `s` folded away; all have the same length for
    # Latin letters. A capitalised word right after the name is part of it ("Maria Clara").
    same = len(low) == len(s) == len(intent.text)
    written = low[start:end] if same else found.group("name")
    if same:
        more = re.match(r"\s+([A-ZÀ-Ý][a-zà-ÿ'-]+)", intent.text[end:])
        if more:
            written += " " + more.group(1).lower()
            cut_end = end + more.end()
    intent.name = " ".join(w[:1].upper() + w[1:] for w in written.split())
    return s[:found.start()] + " " + s[cut_end:]


# -- ages ----------------------------------------------------------------------------------

_AGE_RES = [
    re.compile(r"(?<![\d.,$])(\d{1,3})\s*-?\s*(?:anos|ano|years?|yrs?|yo|y/o)(?:\s*-?\s*old)?\b"),
    re.compile(r"\b(?P<verb>faz|fara|fazendo|vai fazer|completa|completando|cumple|cumplira|"
               r"turning|turns|turned|aged|age|idade de|edad de|de edad)\s+(\d{1,3})\b"
               r"(?!\s*(?:reais|pesos|dolares|dollars|bucks|mil|k|lucas|%))"),
    re.compile(r"\b(?:she|he)(?:'s|s|\s+is)\s+(\d{1,2})\b(?!\s*(?:dollars|bucks|k|%))"),
    # "ela tem 60 e adora", "y tiene 25": a number that ends the clause; "tem 2 filhos" is not.
    re.compile(r"\b(?:tem|tiene)\s+(\d{1,3})(?=\s*(?:[,.;!?)]|$)|\s+(?:e|y|and)\b)"),
]
# Turning an age is having a birthday: "cumple 40", "she's turning 70".
_BIRTHDAY_VERBS = frozenset({"faz", "fara", "fazendo", "vai fazer", "completa", "completando",
                             "cumple", "cumplira", "turning", "turns"})

_BARE_AGE_RE = re.compile(r"(?<![a-z0-9])(?:de|of)\s+(\d{1,3})(?!\d|[.,]\d)(?!\s*(?:reais|pesos|"
                          r"dolares|dollars|bucks|mil|k|lucas|%|cm|kg|g|ml|l|m|gb|tb|pol|in)\b)")
# "my dad, 65, coffee snob": a number set off by commas right after who it is for.
_COMMA_AGE_RE = re.compile(r"\s*,\s*(\d{1,3})\s*(?=[,.;!?)]|$)")


class AgeReader:
    """Ages in digits or words, from the number words of `lexicon.json`."""

    def __init__(self, number_words: Mapping[str, int]) -> None:
        self._number_words = number_words
        words = "|".join(sorted(number_words, key=len, reverse=True))
        # "sessenta e cinco anos" -> "65 anos": spelled-out ages (and amounts) become digits.
        self._number_word_re = re.compile(
            rf"\b({words})(?:\s+e\s+|\s+y\s+|-|\s+)?({words})?"
            rf"(?=\s*(?:anos|ano|years?|reais|real|pesos|dolares|dollars|bucks|mil)\b)")
        self._age_number_word_re = re.compile(
            rf"\b(turning|turns|cumple|cumplira|faz|fara|completa|she's|he's|shes|hes)\s+"
            rf"({words})(?:\s+e\s+|\s+y\s+|-|\s+)?({words})?(?=\s*(?:[,.;!?)]|$))")

    def spell_numbers(self, s: str) -> str:
        """A folded message with its spelled-out ages and amounts in digits."""
        s = self._number_word_re.sub(self._spell_number, s)
        return self._age_number_word_re.sub(self._spell_age, s)

    def _spell_age(self, match: re.Match[str]) -> str:
        """"turning seventy five" -> "turning 75"."""
        first = self._number_words[match.group(2)]
        return f"{match.group(1)} {first + self._number_words.get(match.group(3) or '', 0)}"

    def _spell_number(self, match: re.Match[str]) -> str:
        first = self._number_words[match.group(1)]
        second = self._number_words.get(match.group(2) or "", 0)
        return f"{first + second} "

    def take_age(self, s: str, intent: Intent) -> tuple[str, bool]:
        """Take the age out of the text; also says whether it was a birthday ("cumple 40")."""
        for pattern in _AGE_RES:
            match = pattern.search(s)
            if match and 0 <= int(match.group(match.re.groups)) <= 120:
                intent.age = int(match.group(match.re.groups))
                verb = match.groupdict().get("verb")
                birthday = verb is not None and re.sub(r"\s+", " ", verb) in _BIRTHDAY_VERBS
                return s[:match.start()] + " " + s[match.end():], birthday
        return s, False

    def take_bare_age(self, s: str, intent: Intent, recipient_ends: Iterable[int]) -> str:
        """An age without a word for it, once money is out of the text: "para mi abuela de
        80", or "my dad, 65," right after where a recipient is named (`recipient_ends`, the
        end of each such word in `s`)."""
        match = _BARE_AGE_RE.search(s)
        if match and 1 <= int(match.group(1)) <= 110:
            intent.age = int(match.group(1))
            return s[:match.start()] + " " + s[match.end():]
        for end in recipient_ends:
            match = _COMMA_AGE_RE.match(s, end)
            if match and 1 <= int(match.group(1)) <= 110:
                intent.age = int(match.group(1))
                return s[:match.start()] + ", " + s[match.end():]
        return s
