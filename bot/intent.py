"""Understanding a shopper's request: who the gift is for, age, occasion, budget, product words.

`IntentParser` is the pluggable interface; `RuleIntentParser` is the deterministic parser that
works offline for English, Brazilian Portuguese and Spanish from the word lists in
`lexicon.json`.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Protocol

from catalog.text import fold
from core.errors import InvalidInput
from core.markets import Market
from core.money import money_from_major

LEXICON_PATH = Path(__file__).with_name("lexicon.json")


@dataclass
class Budget:
    """A price window in minor units of `currency`; either bound may be open."""

    currency: str
    min: int | None = None
    max: int | None = None
    # What the shopper named: the ceiling of "até 200", the centre of "around 40 bucks", the
    # top of a range, or the floor of "more than 100".
    amount: int | None = None

    def __post_init__(self) -> None:
        if self.amount is None:
            self.amount = self.max if self.max is not None else self.min


@dataclass
class Intent:
    """What a message asks for, in canonical terms independent of its language."""

    text: str
    language: str
    recipient: str | None = None
    age: int | None = None
    occasion: str | None = None
    budget: Budget | None = None
    product_terms: list[str] = field(default_factory=list)
    interests: list[str] = field(default_factory=list)
    remembered: list[str] = field(default_factory=list)
    thanks: bool = False
    age_hint: str | None = None  # an age band implied by words like "teenage"
    interest_words: list[str] = field(default_factory=list)  # as written, for text matching
    gender: str | None = None  # "female" / "male" when the words imply it ("minha mãe")
    product_types: list[str] = field(default_factory=list)  # canonical kinds: "sneakers"
    attributes: list[str] = field(default_factory=list)  # colour, size, material words
    brands: list[str] = field(default_factory=list)  # brands asked for
    avoid_brands: list[str] = field(default_factory=list)  # brands ruled out
    exclusions: list[str] = field(default_factory=list)  # kinds ruled out: "perfume", "clothing"
    # Which parser understood the message, and what it cost when a language model did.
    parser: str = "rules"
    tokens_in: int = 0
    tokens_out: int = 0

    @property
    def age_band(self) -> str | None:
        if self.age is not None:
            return age_band(self.age)
        if self.age_hint:
            return self.age_hint
        if self.recipient:
            return lexicon()["recipient_age"].get(self.recipient)
        return None

    def concept_tags(self) -> list[str]:
        """The product tags this request is looking for (`recipient:mother`, `age:senior`...)."""
        tags: list[str] = []
        if self.recipient:
            tag = lexicon()["recipient_tags"].get(self.recipient, self.recipient)
            tags.append(f"recipient:{tag}")
        band = self.age_band
        if band:
            tags.append(f"age:{band}")
        tags.extend(f"interest:{i}" for i in self.interests)
        if self.occasion:
            tags.append(f"occasion:{self.occasion}")
        return tags

    def is_empty(self) -> bool:
        return not (self.recipient or self.age or self.occasion or self.budget
                    or self.product_terms or self.interests)

    def as_dict(self) -> dict:
        data = asdict(self)
        for private in ("parser", "tokens_in", "tokens_out"):
            data.pop(private)
        data["age_band"] = self.age_band
        data["tags"] = self.concept_tags()
        return data


def age_band(age: int) -> str:
    """The catalog's age band for an age in years."""
    if age <= 2:
        return "0-2"
    if age <= 5:
        return "3-5"
    if age <= 8:
        return "6-8"
    if age <= 12:
        return "9-12"
    if age <= 17:
        return "13-17"
    return "senior" if age >= 60 else "adult"


class IntentParser(Protocol):
    """Turns a shopper's message into an `Intent`."""

    def parse(self, text: str, *, market: Market, language: str | None = None) -> Intent:
        """Understand one message.

        Args:
            text: the shopper's message, as typed (any case, with or without accents).
            market: the shopper's market; budgets without an explicit currency are in its
                currency.
            language: the shopper's known language ("pt", "es", "en"), used when the text
                itself does not tell.

        Returns:
            The intent; fields the message does not mention are left empty.
        """
        ...


@lru_cache
def lexicon() -> dict:
    """The word lists, loaded once."""
    return json.loads(LEXICON_PATH.read_text("utf-8"))


# -- numbers and money ---------------------------------------------------------------------

_NUM = r"(\d{1,3}(?:[.,]\d{3})+(?:[.,]\d{1,2})?|\d+(?:[.,]\d{1,2})?)"
_CUR_BEFORE = r"(r\$|us\$|u\$s|\$|brl|ars|cop|usd|mxn|eur|€)"
_CUR_AFTER = (r"(mil\s+pesos|mil\s+reais|reais|real|pesos|peso|dolares|dolar|dollars|dollar|"
              r"bucks|usd|brl|ars|cop|mxn|euros|eur|lucas|luca|mil|k)")
_AMOUNT = rf"(?:{_CUR_BEFORE}\s*)?{_NUM}(?:\s*{_CUR_AFTER}\b)?"

_MAX_WORDS = (r"orcamento de|orcamento|orcamento e de|presupuesto de|presupuesto|budget of|"
              r"budget is|budget|gastar ate|gastar hasta|spend up to|spend|"
              r"ate|no maximo|maximo|max|hasta|como maximo|menos de|menor que|abaixo de|"
              r"debajo de|por debajo de|no mas de|nao mais que|under|below|less than|up to|"
              r"no more than|at most|cheaper than|<=|<")
_MIN_WORDS = r"mais de|acima de|a partir de|mas de|desde|over|above|more than|at least|>=|>"
_AROUND_WORDS = (r"uns|umas|cerca de|por volta de|em torno de|mais ou menos|alrededor de|"
                 r"unos|unas|aproximadamente|aprox|around|about|roughly|approximately|~")

_RANGE_RE = re.compile(rf"(?<![a-z0-9])(?:entre|between|de|from)\s+{_AMOUNT}\s+"
                       rf"(?:e|y|and|a|to|-)\s+{_AMOUNT}")
_BOUND_RE = re.compile(rf"(?<![a-z0-9])(?P<op>{_MAX_WORDS}|{_MIN_WORDS}|{_AROUND_WORDS})\s*"
                       rf"{_AMOUNT}")
# "$50-$100", "R$100 a R$200": a range written with a dash or "a"/"to" between two amounts.
_DASH_RANGE_RE = re.compile(rf"(?<![a-z0-9]){_AMOUNT}\s*(?:-|–|a|to|ate|hasta)\s*{_AMOUNT}")
_PLAIN_RE = re.compile(rf"(?<![a-z0-9]){_AMOUNT}")
_MAX_SET = set(_MAX_WORDS.split("|"))
_MIN_SET = set(_MIN_WORDS.split("|"))

_AGE_RES = [
    re.compile(r"(?<![\d.,$])(\d{1,3})\s*-?\s*(?:anos|ano|years?|yrs?|yo|y/o)(?:\s*-?\s*old)?\b"),
    re.compile(r"\b(?:faz|fara|fazendo|vai fazer|completa|completando|cumple|cumplira|turning|"
               r"turns|turned|aged|age|idade de|edad de|de edad)\s+(\d{1,3})\b(?!\s*(?:reais|"
               r"pesos|dolares|dollars|bucks|mil|k|lucas|%))"),
    re.compile(r"\b(?:she|he)(?:'s|\s+is)\s+(\d{1,2})\b(?!\s*(?:dollars|bucks|k|%))"),
    re.compile(r"\b(?:ela|ele|el|ella)\s+(?:tem|tiene)\s+(\d{1,3})\b(?!\s*(?:reais|pesos|mil|%))"),
]

_BARE_AGE_RE = re.compile(r"(?<![a-z0-9])(?:de|of)\s+(\d{1,3})(?![\d.,])(?!\s*(?:reais|pesos|"
                          r"dolares|dollars|bucks|mil|k|lucas|%|cm|kg|g|ml|l|m|gb|tb|pol|in)\b)")


LANGUAGE_SWITCH_MARGIN = 2
MAX_BUDGET_DIGITS = 12  # more than this is not a budget anyone means


def parse_number(text: str) -> Decimal:
    """Read "50.000", "1,299.90", "149,90", "49.95" the way people in these markets write them."""
    s = text
    if "." in s and "," in s:
        dec_sep = "." if s.rfind(".") > s.rfind(",") else ","
        thou_sep = "," if dec_sep == "." else "."
        return Decimal(s.replace(thou_sep, "").replace(dec_sep, "."))
    for sep in (".", ","):
        if sep in s:
            groups = s.split(sep)
            if all(len(g) == 3 for g in groups[1:]):
                return Decimal(s.replace(sep, ""))
            return Decimal(s.replace(sep, "."))
    return Decimal(s)


def _currency(before: str | None, after: str | None, market: Market) -> str:
    marker = (before or after or "").replace(" ", "")
    if marker in ("r$", "reais", "real", "brl", "milreais"):
        return "BRL"
    if marker in ("us$", "u$s", "usd", "dolares", "dolar", "dollars", "dollar", "bucks"):
        return "USD"
    if marker in ("eur", "euros", "€"):
        return "EUR"
    if marker in ("ars", "cop", "mxn"):
        return marker.upper()
    return market.currency


def _amount(groups: tuple[str | None, ...], market: Market) -> tuple[int, str] | None:
    before, number, after = groups
    if number is None or sum(ch.isdigit() for ch in number) > MAX_BUDGET_DIGITS:
        return None
    value = parse_number(number)
    unit = (after or "").replace(" ", "")
    if unit in ("mil", "k", "milpesos", "milreais", "lucas", "luca"):
        value *= 1000
    currency = _currency(before, after if unit not in ("mil", "k") else None, market)
    try:
        return money_from_major(value.quantize(Decimal("0.01")), currency).amount, currency
    except InvalidInput:
        return None


class RuleIntentParser:
    """Deterministic parser for pt, es and en built on `lexicon.json`."""

    def __init__(self) -> None:
        lex = lexicon()
        self._phrases: dict[str, tuple[str, str]] = {}
        for kind in ("occasions", "recipients", "interests"):
            for concept, words in lex[kind].items():
                for word in words:
                    self._phrases.setdefault(fold(word), (kind, concept))
        alternation = "|".join(re.escape(p) for p in sorted(self._phrases, key=len, reverse=True))
        self._phrase_re = re.compile(rf"(?<![a-z0-9])(?:{alternation})(?![a-z0-9])")
        self._accents = {re.compile(rf"(?<!\w){re.escape(k)}(?!\w)"): v
                         for k, v in lex["accent_significant"].items()}
        self._filler = {fold(w) for words in lex["filler"].values() for w in words}
        thanks = "|".join(re.escape(fold(w)) for w in sorted(lex["thanks"], key=len, reverse=True))
        self._thanks_re = re.compile(rf"(?<![a-z])(?:{thanks})(?![a-z])")
        self._markers = {lang: {fold(w) for w in words}
                         for lang, words in lex["language_markers"].items()}
        number_words = lex["number_words"]
        words = "|".join(sorted(number_words, key=len, reverse=True))
        # "sessenta e cinco anos" -> "65 anos": spelled-out ages become digits.
        self._number_word_re = re.compile(
            rf"\b({words})(?:\s+e\s+|\s+y\s+|-|\s+)?({words})?"
            rf"(?=\s*(?:anos|ano|years?|reais|real|pesos|dolares|dollars|bucks|mil)\b)")
        self._number_words = number_words

    def parse(self, text: str, *, market: Market, language: str | None = None) -> Intent:
        low = text.lower()
        for pattern, replacement in self._accents.items():
            low = pattern.sub(replacement, low)
        s = fold(low)
        s = self._number_word_re.sub(self._spell_number, s)
        lang = self._language(s, language or market.language)
        intent = Intent(text=text, language=lang, thanks=bool(self._thanks_re.search(s)))

        s = self._take_age(s, intent)
        s = self._take_budget(s, intent, market)
        if intent.age is None and self._phrase_re.search(s):
            s = self._take_bare_age(s, intent)

        rest: list[str] = []
        pos = 0
        for match in self._phrase_re.finditer(s):
            rest.append(s[pos:match.start()])
            rest.append(" ")
            pos = match.end()
            kind, concept = self._phrases[match.group(0)]
            if kind == "occasions" and intent.occasion is None:
                intent.occasion = concept
            elif kind == "recipients" and intent.recipient is None:
                intent.recipient = concept
            elif kind == "recipients" and concept in ("teen", "baby") and intent.age is None:
                # "my teenage son": the second word says how old, not who.
                intent.age_hint = lexicon()["recipient_age"][concept]
            elif kind == "interests":
                # The words themselves still describe the product ("gaming keyboard").
                intent.interest_words.append(match.group(0))
                if concept not in intent.interests:
                    intent.interests.append(concept)
        rest.append(s[pos:])
        remaining = "".join(rest)
        # Model numbers stay ("windows 10", "rtx 2060"); ages and budgets were taken out above.
        intent.product_terms = [
            t for t in re.findall(r"[a-z0-9]+", remaining)
            if t not in self._filler and (len(t) > 1 or not t.isalpha())
            and not (t.isdigit() and len(t) == 1)
        ]
        return intent

    def _spell_number(self, match: re.Match[str]) -> str:
        first = self._number_words[match.group(1)]
        second = self._number_words.get(match.group(2) or "", 0)
        return f"{first + second} "

    def _language(self, folded: str, fallback: str) -> str:
        words = re.findall(r"[a-z']+", folded)
        scores = {lang: sum(1 for w in words if w in markers)
                  for lang, markers in self._markers.items()}
        # Stay in the shopper's language unless the text clearly speaks another: a shared
        # word like "no" or "para" must not flip a Brazilian conversation into Spanish.
        best_lang = max(scores, key=lambda lang: (scores[lang], lang == fallback))
        if scores[best_lang] >= scores.get(fallback, 0) + LANGUAGE_SWITCH_MARGIN:
            return best_lang
        return fallback

    def _take_age(self, s: str, intent: Intent) -> str:
        for pattern in _AGE_RES:
            match = pattern.search(s)
            if match and 0 <= int(match.group(1)) <= 120:
                intent.age = int(match.group(1))
                return s[:match.start()] + " " + s[match.end():]
        return s

    def _take_bare_age(self, s: str, intent: Intent) -> str:
        # "para mi abuela de 80": a bare number after "de" is an age once money is taken out.
        match = _BARE_AGE_RE.search(s)
        if match and 1 <= int(match.group(1)) <= 110:
            intent.age = int(match.group(1))
            return s[:match.start()] + " " + s[match.end():]
        return s

    def _take_budget(self, s: str, intent: Intent, market: Market) -> str:
        match = _RANGE_RE.search(s)
        if match:
            low = _amount(match.groups()[0:3], market)
            high = _amount(match.groups()[3:6], market)
            if low and high:
                lo, hi = sorted((low[0], high[0]))
                intent.budget = Budget(currency=high[1], min=lo, max=hi)
                return s[:match.start()] + " " + s[match.end():]
        match = _DASH_RANGE_RE.search(s)
        if match and (match.group(1) or match.group(3) or match.group(4) or match.group(6)):
            low = _amount(match.groups()[0:3], market)
            high = _amount(match.groups()[3:6], market)
            if low and high and low[1] == high[1]:
                lo, hi = sorted((low[0], high[0]))
                intent.budget = Budget(currency=high[1], min=lo, max=hi)
                return s[:match.start()] + " " + s[match.end():]
        match = _BOUND_RE.search(s)
        if match:
            found = _amount(match.groups()[1:4], market)
            if found:
                op = re.sub(r"\s+", " ", match.group("op"))
                amount, currency = found
                if op in _MAX_SET:
                    intent.budget = Budget(currency=currency, max=amount)
                elif op in _MIN_SET:
                    intent.budget = Budget(currency=currency, min=amount)
                else:  # "around": allow a little above, and not much below
                    intent.budget = Budget(currency=currency, min=amount // 2,
                                           max=amount * 115 // 100, amount=amount)
                return s[:match.start()] + " " + s[match.end():]
        for match in _PLAIN_RE.finditer(s):
            before, _, after = match.groups()
            # "10k" or "30 mil" alone is a distance or a count, not money.
            if before or (after and after.replace(" ", "") not in ("mil", "k")):
                found = _amount(match.groups(), market)
                if found:
                    intent.budget = Budget(currency=found[1], max=found[0])
                    return s[:match.start()] + " " + s[match.end():]
        return s
