"""What a shopper's request asks for: who the gift is for, age, occasion, budget, product words.

`Intent` is the request in canonical terms; `IntentParser` is the pluggable interface that
produces it. `bot.rules.RuleIntentParser` is the deterministic parser that works offline for
English, Brazilian Portuguese and Spanish from the word lists in `lexicon.json`;
`bot.llm_intent` asks a language model and falls back to it.

Besides who, when and how much, it reads what kind of product is asked for
(`product_types`: "tênis" -> sneakers), what is ruled out (`exclusions`: "nada de perfume",
"sin ropa"), brands wanted or avoided ("da Tramontina", "odeio Samsung"), the recipient's
gender when the words imply it ("minha tia"), and colour, material and size
(`attributes`: "color:blue", "size:m").
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Protocol

from core.markets import Market

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
    name: str | None = None  # the recipient's name: "minha mãe se chama Inês" -> "Inês"
    # Canonical kinds from catalog/product_types.json ("sneakers"), or a group the shopper
    # named as a whole ("roupas" -> "clothing"); `product_types().expand()` gives the types.
    product_types: list[str] = field(default_factory=list)
    attributes: list[str] = field(default_factory=list)  # "color:blue", "size:m", "material:wood"
    brands: list[str] = field(default_factory=list)  # brands asked for
    avoid_brands: list[str] = field(default_factory=list)  # brands ruled out
    exclusions: list[str] = field(default_factory=list)  # kinds ruled out: "perfume", "clothing"
    stores: list[str] = field(default_factory=list)  # merchant slugs asked for ("da loja X")
    avoid_stores: list[str] = field(default_factory=list)  # merchant slugs ruled out
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
                    or self.product_terms or self.interests or self.product_types
                    or self.brands or self.attributes
                    # "presente para minha tia" asks for something; "obrigado, ela adorou"
                    # is only thanks, though "ela" implies a gender too.
                    or (self.gender and not self.thanks))

    def names_a_product(self) -> bool:
        """Whether the shopper said what to buy (a kind of product or product words), so that
        gift knowledge must not suggest kinds of its own."""
        return bool(self.product_types or self.product_terms)

    def as_dict(self) -> dict:
        data = asdict(self)
        for private in ("parser", "tokens_in", "tokens_out"):
            data.pop(private)
        data["age_band"] = self.age_band
        data["tags"] = self.concept_tags()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Intent:
        """The intent `as_dict` (or `asdict`) wrote; keys it does not know are ignored, so a
        conversation saved by an older version still loads."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        budget = values.get("budget")
        if isinstance(budget, dict):
            values["budget"] = Budget(currency=budget["currency"], min=budget.get("min"),
                                      max=budget.get("max"), amount=budget.get("amount"))
        values.setdefault("text", "")
        values.setdefault("language", "en")
        return cls(**values)


AGE_BANDS = ("0-2", "3-5", "6-8", "9-12", "13-17", "adult", "senior")


def age_band(age: int) -> str:
    """The catalog's age band for an age in years (one of `AGE_BANDS`)."""
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


def attribute_words(value: str) -> list[str]:
    """The words naming an attribute in en, pt and es ("color:blue" -> ["azul", "blue", ...]),
    for matching product text; none for a size given as a letter or a number ("size:m")."""
    return list(lexicon()["attributes"].get(value, []))
