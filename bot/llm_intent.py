"""Understanding a message with a language model's help, on top of the rule parser.

`LlmIntentParser` runs `RuleIntentParser` first (cheap, deterministic, and reliable with ages and
budgets), then asks an OpenAI-compatible model for a JSON object bound to `understanding_schema`,
whose recipient, occasion and interest values are the lexicon's canonical names. The answer is
validated with pydantic and merged:

- recipient, occasion, gender, interests, product types and brands: the model's reading wins
  when it gives one (it corrects what the rules misread), else the rules' stands;
- exclusions and brands to avoid: the union of both, since dropping a refusal costs more than
  keeping an extra one; attributes only fill in when the rules found none;
- product words (the search terms): the model's, but only words the shopper wrote; words the
  rules could not place (a misspelt "sogrra") then stop being searched for as products. An
  all-empty answer tells nothing, and leaves the rules' words;
- age and budget: the rules' values stand; the model's fill in only when the rules found none
  and every number it gives appears in the shopper's text (a model never invents a price).

Anything unusable (timeout, HTTP error, refusal, text that is not JSON, a schema violation, an
unknown canonical value) leaves the rules' intent as it was, with a warning in the log. Tokens
are counted on the intent whenever the provider reports them, used or not.
"""

from __future__ import annotations

import json
import logging
import re
from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from bot.budgets import parse_number
from bot.intent import Budget, Intent, IntentParser, lexicon
from bot.llm_client import ChatCompletions, ChatMessage, JsonSchema
from catalog.text import fold
from core.errors import InvalidInput
from core.markets import Market
from core.money import money_from_major

log = logging.getLogger("vitrine.bot.llm_intent")

SCHEMA_NAME = "gift_request"
GENDERS = ("female", "male")
MAX_ITEMS = 10
MAX_WORDS_CHARS = 60
MAX_AGE = 120

_NUMBER = r"\d{1,3}(?:[.,]\d{3})+(?:[.,]\d{1,2})?|\d+(?:[.,]\d{1,2})?"
_NUMBER_RE = re.compile(_NUMBER)
_THOUSANDS_RE = re.compile(rf"({_NUMBER})\s*(?:mil|k|lucas|luca)\b")
_TOKEN_RE = re.compile(r"[a-z0-9]+")

# Words that show a shopper named a currency other than their market's.
CURRENCY_MARKERS = {
    "BRL": ("r$", "reais", "real", "brl"),
    "USD": ("us$", "u$s", "usd", "dollar", "dolar", "bucks"),
    "EUR": ("€", "eur", "euro"),
    "ARS": ("ars",), "COP": ("cop",), "MXN": ("mxn",),
}

SYSTEM_PROMPT = """\
You read one message from a shopper who wants a gift, in {market} (prices in {currency}).
The message may be in English, Brazilian Portuguese or Spanish, with typos and without accents.
Fill every field of the JSON object with what the message says, and nothing else:
- recipient, occasion, interests: only the listed values; null or [] when not said.
- gender: of the recipient, only when the words imply it ("minha mae" is female).
- age: the recipient's age in years, only when the message states it.
- budget: numbers copied from the message in whole currency units ("ate 200 reais" -> max 200,
  "uns 150" -> around 150, "entre 100 e 200" -> min 100, max 200); currency as an ISO 4217 code
  only when the message names one; null when no budget is stated.
- product_words: words copied from the message that name or describe the product wanted.
- product_types: the kinds of product asked for, as short English nouns ("sneakers", "mug").
- attributes: colour, size or material words. brands / avoid_brands: brands wanted / refused.
- exclusions: kinds of product the shopper rules out ("nada de perfume" -> "perfume").
Never add an age, budget, brand or product the message does not state."""


def _canonical(kind: str) -> list[str]:
    return sorted(lexicon()[kind])


def _nullable(schema: JsonSchema) -> JsonSchema:
    return {"anyOf": [schema, {"type": "null"}]}


def understanding_schema() -> JsonSchema:
    """The JSON schema the model's answer must follow (strict mode: every field required,
    no extra fields, null or [] for what the message does not say)."""
    words = {"type": "array", "items": {"type": "string"}}
    number = {"type": ["number", "null"]}
    budget = {
        "type": "object",
        "properties": {"currency": {"type": ["string", "null"]},
                       "min": number, "max": number, "around": number},
        "required": ["currency", "min", "max", "around"],
        "additionalProperties": False,
    }
    properties: dict[str, JsonSchema] = {
        "recipient": _nullable({"type": "string", "enum": _canonical("recipients")}),
        "age": {"type": ["integer", "null"]},
        "gender": _nullable({"type": "string", "enum": list(GENDERS)}),
        "occasion": _nullable({"type": "string", "enum": _canonical("occasions")}),
        "interests": {"type": "array",
                      "items": {"type": "string", "enum": _canonical("interests")}},
        "budget": _nullable(budget),
        "product_words": words,
        "product_types": words,
        "attributes": words,
        "brands": words,
        "avoid_brands": words,
        "exclusions": words,
    }
    return {"type": "object", "properties": properties, "required": list(properties),
            "additionalProperties": False}


Words = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                         max_length=MAX_WORDS_CHARS)]
WordList = Annotated[list[Words], Field(max_length=MAX_ITEMS)]


class StatedBudget(BaseModel):
    """A budget as the model read it: numbers in major units, as the shopper wrote them."""

    model_config = ConfigDict(extra="forbid")

    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] | None
    min: Annotated[Decimal, Field(ge=0)] | None
    max: Annotated[Decimal, Field(ge=0)] | None
    around: Annotated[Decimal, Field(ge=0)] | None


class Understanding(BaseModel):
    """The model's reading of one message, validated against the lexicon."""

    model_config = ConfigDict(extra="forbid")

    recipient: str | None
    age: int | None
    gender: str | None
    occasion: str | None
    interests: Annotated[list[str], Field(max_length=MAX_ITEMS)]
    budget: StatedBudget | None
    product_words: WordList
    product_types: WordList
    attributes: WordList
    brands: WordList
    avoid_brands: WordList
    exclusions: WordList

    @field_validator("recipient")
    @classmethod
    def _known_recipient(cls, value: str | None) -> str | None:
        return _known(value, "recipients")

    @field_validator("occasion")
    @classmethod
    def _known_occasion(cls, value: str | None) -> str | None:
        return _known(value, "occasions")

    @field_validator("interests")
    @classmethod
    def _known_interests(cls, value: list[str]) -> list[str]:
        for interest in value:
            _known(interest, "interests")
        return list(dict.fromkeys(value))

    @field_validator("gender")
    @classmethod
    def _known_gender(cls, value: str | None) -> str | None:
        if value is not None and value not in GENDERS:
            raise ValueError(f"unknown gender {value!r}")
        return value

    def says_something(self) -> bool:
        """False for an all-empty answer, which tells nothing about the message."""
        return bool(self.recipient or self.age is not None or self.gender or self.occasion
                    or self.interests or self.budget or self.product_words
                    or self.product_types or self.brands or self.exclusions)

    @classmethod
    def from_answer(cls, content: str) -> Understanding:
        """Parse the model's JSON text; numbers stay exact (no floats).

        Raises:
            ValueError: not JSON, or not an object the schema allows (pydantic's
                ValidationError is a ValueError).
            RecursionError: JSON nested too deep to read.
        """
        data: Any = json.loads(content, parse_float=Decimal)
        return cls.model_validate(data)


def _known(value: str | None, kind: str) -> str | None:
    if value is not None and value not in lexicon()[kind]:
        raise ValueError(f"unknown {kind[:-1]} {value!r}")
    return value


class LlmIntentParser:
    """The rule parser's reading, corrected and completed by a language model when it can."""

    def __init__(self, *, rules: IntentParser, chat: ChatCompletions) -> None:
        self.rules = rules
        self.chat = chat
        self.schema = understanding_schema()

    def parse(self, text: str, *, market: Market, language: str | None = None) -> Intent:
        intent = self.rules.parse(text, market=market, language=language)
        answer = self.chat.complete_json([
            ChatMessage("system", SYSTEM_PROMPT.format(market=market.name,
                                                       currency=market.currency)),
            ChatMessage("user", text),
        ], schema_name=SCHEMA_NAME, schema=self.schema)
        intent.tokens_in, intent.tokens_out = answer.tokens_in, answer.tokens_out
        if not answer.ok or answer.content is None:
            log.warning("language model not used for a %s message: %s", market.code,
                        answer.failure)
            return intent
        try:
            understood = Understanding.from_answer(answer.content)
        except (ValueError, RecursionError) as exc:  # ValueError covers ValidationError
            log.warning("language model answer not used: %s", _short(exc))
            return intent
        for note in merge(intent, understood, text=text, market=market):
            log.info("language model answer partly ignored: %s", note)
        intent.parser = "llm"
        return intent


def _short(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return f"{exc.error_count()} schema error(s), first at {where}: {first['msg']}"
    return str(exc).splitlines()[0][:200]


# -- merging -------------------------------------------------------------------------------


def merge(intent: Intent, understood: Understanding, *, text: str, market: Market) -> list[str]:
    """Fold the model's reading into the rules' intent, in place; returns what was ignored."""
    ignored: list[str] = []
    folded = fold(text)
    intent.recipient = understood.recipient or intent.recipient
    intent.occasion = understood.occasion or intent.occasion
    intent.gender = understood.gender or intent.gender
    if understood.interests:
        intent.interests = list(understood.interests)
    if understood.product_types:
        intent.product_types = _folded_unique(understood.product_types)
    if understood.brands:
        intent.brands = _unique(understood.brands)
    intent.avoid_brands = _unique(intent.avoid_brands + understood.avoid_brands)
    avoided = {fold(b) for b in intent.avoid_brands}
    intent.brands = [b for b in intent.brands if fold(b) not in avoided]
    intent.exclusions = _folded_unique(intent.exclusions + understood.exclusions)
    if not intent.attributes:
        intent.attributes = _folded_unique(understood.attributes)
    if understood.says_something():
        # Words the rules could not place ("sogrra", a misspelt mother-in-law) would otherwise
        # be searched for as product words and find nothing.
        intent.product_terms = product_terms(understood.product_words, folded=folded,
                                             rule_terms=intent.product_terms)

    stated = stated_numbers(folded)
    if understood.age is not None and intent.age is None:
        if 0 <= understood.age <= MAX_AGE and (Decimal(understood.age) in stated
                                               or understood.age in spelled_numbers(folded)):
            intent.age = understood.age
        else:
            ignored.append(f"age {understood.age} is not in the message")
    if understood.budget is not None and intent.budget is None:
        budget, reason = stated_budget(understood.budget, stated=stated, folded=folded,
                                       market=market)
        if budget is not None:
            intent.budget = budget
        elif reason:
            ignored.append(reason)
    return ignored


def product_terms(words: list[str], *, folded: str, rule_terms: list[str]) -> list[str]:
    """The model's product words as search terms, keeping only words the shopper wrote.

    Filler words drop out, and so do bare numbers the rules did not keep as product words
    (those are ages and budgets).
    """
    written = set(_TOKEN_RE.findall(folded))
    filler = {fold(w) for group in lexicon()["filler"].values() for w in group}
    keep: list[str] = []
    for word in words:
        for token in _TOKEN_RE.findall(fold(word)):
            if token not in written or token in filler or token in keep:
                continue
            if token.isdigit() and token not in rule_terms:
                continue
            keep.append(token)
    return keep


def stated_numbers(folded: str) -> set[Decimal]:
    """Every number written in the message, and "30 mil" / "10k" as thousands too."""
    numbers: set[Decimal] = set()
    for match in _NUMBER_RE.finditer(folded):
        try:
            numbers.add(parse_number(match.group(0)))
        except ArithmeticError:
            continue
    for match in _THOUSANDS_RE.finditer(folded):
        try:
            numbers.add(parse_number(match.group(1)) * 1000)
        except ArithmeticError:
            continue
    return numbers


def stated_budget(read: StatedBudget, *, stated: set[Decimal], folded: str,
                  market: Market) -> tuple[Budget | None, str | None]:
    """The model's budget in minor units, or None and why, when any number is not the
    shopper's own or the amounts make no sense."""
    values = [v for v in (read.min, read.max, read.around) if v is not None]
    if not values:
        return None, None
    invented = [v for v in values if v not in stated]
    if invented:
        return None, f"budget {invented[0]} is not in the message"
    currency = market.currency
    named = read.currency
    if named and named != currency and any(marker in folded
                                           for marker in CURRENCY_MARKERS.get(named, ())):
        currency = named
    try:
        low, high, around = (
            money_from_major(v, currency).amount if v is not None else None
            for v in (read.min, read.max, read.around))
    except InvalidInput as exc:
        return None, f"budget not usable: {exc.reason}"
    if around is not None and low is None and high is None:
        # Read "around" the way the rules do: a little above, not much below.
        return Budget(currency=currency, min=around // 2, max=around * 115 // 100,
                      amount=around), None
    if low is not None and high is not None and low > high:
        return None, "budget minimum above its maximum"
    if low is None and high is None:
        return None, None
    return Budget(currency=currency, min=low, max=high,
                  amount=around if around is not None else None), None


def spelled_numbers(folded: str) -> set[int]:
    """Numbers written in words: "oitenta" and "oitenta e cinco" give 80 and 85."""
    words: dict[str, int] = lexicon()["number_words"]
    tokens = [t for t in _TOKEN_RE.findall(folded) if t not in ("e", "y", "and")]
    found: set[int] = set()
    for first, second in zip(tokens, [*tokens[1:], ""], strict=True):
        if first in words:
            found.add(words[first])
            if second in words:
                found.add(words[first] + words[second])
    return found


def _unique(values: list[str]) -> list[str]:
    seen: dict[str, str] = {}
    for value in values:
        seen.setdefault(fold(value), " ".join(value.split()))
    return list(seen.values())


def _folded_unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(" ".join(fold(v).split()) for v in values if v.strip()))
