"""Gift knowledge: who tends to enjoy what, as data per locale, for requests that name no product.

"algo para minha sogra que gosta de cozinhar" names a person and a liking but no product; a
good shop assistant would think of pans, knives and cookbooks. The rules that say so live in
`bot/gifts/<locale>.json`: each has `when` conditions (recipient, age_band, occasion,
interest, gender, named as in `bot/lexicon.json` and `bot.intent.age_band`) that must all
hold, and `suggest`s canonical product types (`catalog/product_types.json`) and catalog tags.

Lookup order for a market's locale, most local first: the locale's own file (`es_AR.json`),
then its language's (`es.json`), then `en.json`, the base every market shares. Every file that
exists in that chain contributes rules. Rules that match more conditions rank first; among
rules matching as many, the more telling conditions first (`CONDITION_WEIGHTS`: an interest,
then recipient or occasion, then age band, then gender), then the more local file, then file
order. Rules of one rank take turns, so that the "mother" rules of pt_BR.json and en.json each
bring their best idea before either brings its second.

Suggestions never override the shopper: a request that names a product type or product words
gets none, and a type or group the shopper ruled out ("nada de perfume") is never suggested.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from bot.intent import AGE_BANDS, Intent, lexicon
from catalog.product_types import ProductTypes, product_types
from core.errors import InvalidInput

GIFTS_DIR = Path(__file__).with_name("gifts")
BASE_LOCALE = "en"
MAX_TYPES = 8
MAX_TAGS = 6
CONDITIONS = ("recipient", "age_band", "occasion", "interest", "gender")
# Among rules matching as many conditions: what someone likes says most, who they are and the
# occasion a little less, then the age band; a gender alone least (it fills in for "minha tia",
# it should not put wallets before toys for a 10-year-old boy).
CONDITION_WEIGHTS = {"interest": 6, "recipient": 4, "occasion": 4, "age_band": 2, "gender": 1}
GENDERS = ("female", "male")
TAG_KINDS = ("recipient", "age", "interest", "occasion")
_LOCALE_RE = re.compile(r"^[a-z]{2}(?:_[A-Z]{2})?$")


class InvalidGiftKnowledge(InvalidInput):
    """A gift-knowledge file that cannot be used; `reason` names the file and the rule."""


@dataclass(frozen=True)
class GiftRule:
    """One piece of knowledge: when every condition holds, these types and tags fit."""

    when: Mapping[str, frozenset[str]]
    types: tuple[str, ...]
    tags: tuple[str, ...]

    def matches(self, intent: Intent) -> tuple[int, int] | None:
        """How many conditions hold and how telling they are; None if any fails."""
        facts: dict[str, set[str | None]] = {
            "recipient": {intent.recipient}, "age_band": {intent.age_band},
            "occasion": {intent.occasion}, "interest": set(intent.interests),
            "gender": {intent.gender}}
        for key, accepted in self.when.items():
            if not accepted & facts[key]:
                return None
        return len(self.when), sum(CONDITION_WEIGHTS[key] for key in self.when)


@dataclass
class GiftSuggestion:
    """Kinds of product and catalog tags worth trying, best first."""

    types: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)


class GiftKnowledge:
    """The rules of every locale; see the module docstring for lookup and ranking."""

    def __init__(self, rules: Mapping[str, Iterable[GiftRule]], *,
                 kinds: ProductTypes | None = None) -> None:
        self._rules = {locale: tuple(r) for locale, r in rules.items()}
        self._kinds = kinds or product_types()

    @classmethod
    def load(cls, folder: Path = GIFTS_DIR, *, kinds: ProductTypes | None = None
             ) -> GiftKnowledge:
        """Read and check every `<locale>.json` in a folder.

        Raises:
            InvalidGiftKnowledge: a file is not valid JSON, names an unknown condition,
                recipient, occasion, interest, age band, gender, product type or tag, or has
                a name that is not a locale.
        """
        kinds = kinds or product_types()
        rules: dict[str, list[GiftRule]] = {}
        for path in sorted(folder.glob("*.json")):
            if not _LOCALE_RE.match(path.stem):
                raise InvalidGiftKnowledge(f"{path.name}: the file name must be a locale "
                                           f"such as en.json or pt_BR.json", file=str(path))
            try:
                raw = json.loads(path.read_text("utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise InvalidGiftKnowledge(f"{path.name}: {exc}", file=str(path)) from None
            rules[path.stem] = parse_rules(raw, kinds=kinds, source=path.name)
        if BASE_LOCALE not in rules:
            raise InvalidGiftKnowledge(f"{folder}: {BASE_LOCALE}.json, the base every locale "
                                       f"falls back to, is missing", file=str(folder))
        return cls(rules, kinds=kinds)

    @property
    def locales(self) -> tuple[str, ...]:
        return tuple(self._rules)

    def chain(self, locale: str) -> list[str]:
        """The files consulted for a locale, most local first ("es_AR" -> es_AR, es, en)."""
        language = locale.split("_")[0].split("-")[0].lower()
        wanted = [locale.replace("-", "_"), language, BASE_LOCALE]
        return [name for name in dict.fromkeys(wanted) if name in self._rules]

    def suggest(self, intent: Intent, locale: str, *, max_types: int = MAX_TYPES,
                max_tags: int = MAX_TAGS) -> GiftSuggestion:
        """What to look for when the shopper named no product; empty when they did."""
        if intent.names_a_product():
            return GiftSuggestion()
        ranked: list[tuple[tuple[int, int, int, int], GiftRule]] = []
        for depth, name in enumerate(self.chain(locale)):
            for index, rule in enumerate(self._rules[name]):
                match = rule.matches(intent)
                if match is not None:
                    count, weight = match
                    ranked.append(((-count, -weight, depth, index), rule))
        ranked.sort(key=lambda item: item[0])
        ruled_out = {t for name in intent.exclusions for t in self._kinds.expand(name)}
        known_tags = set(intent.concept_tags())
        types: list[str] = []
        tags: list[str] = []
        for tier in _tiers(ranked):
            for name in _take_turns(r.types for r in tier):
                if name not in ruled_out and name not in types:
                    types.append(name)
            for tag in _take_turns(r.tags for r in tier):
                if tag not in known_tags and tag not in tags:
                    tags.append(tag)
        return GiftSuggestion(types=types[:max_types], tags=tags[:max_tags])


def _tiers(ranked: list[tuple[tuple[int, int, int, int], GiftRule]]) -> list[list[GiftRule]]:
    """Rules grouped by rank (conditions matched, their weight), best first."""
    tiers: list[list[GiftRule]] = []
    previous: tuple[int, int] | None = None
    for key, rule in ranked:
        if key[:2] != previous:
            tiers.append([])
            previous = key[:2]
        tiers[-1].append(rule)
    return tiers


def _take_turns(lists: Iterable[tuple[str, ...]]) -> list[str]:
    """["a", "b"], ["c"] -> ["a", "c", "b"]: each list's best before anyone's second."""
    pending = [list(items) for items in lists]
    out: list[str] = []
    while any(pending):
        for items in pending:
            if items:
                out.append(items.pop(0))
    return out


def parse_rules(raw: Any, *, kinds: ProductTypes, source: str) -> list[GiftRule]:
    """Check one file's content and turn it into rules.

    Raises:
        InvalidGiftKnowledge: see `GiftKnowledge.load`.
    """
    def fail(reason: str, index: int | None = None) -> InvalidGiftKnowledge:
        where = source if index is None else f"{source} rule {index + 1}"
        return InvalidGiftKnowledge(f"{where}: {reason}", file=source, rule=index)

    if not isinstance(raw, dict) or not isinstance(raw.get("rules"), list):
        raise fail('expected {"rules": [...]}')
    unknown_keys = set(raw) - {"_doc", "rules"}
    if unknown_keys:
        raise fail(f"unknown keys {sorted(unknown_keys)}")
    vocabulary = _vocabulary()
    rules: list[GiftRule] = []
    for index, entry in enumerate(raw["rules"]):
        if not isinstance(entry, dict) or set(entry) != {"when", "suggest"}:
            raise fail('a rule is {"when": {...}, "suggest": {...}}', index)
        when, suggest = entry["when"], entry["suggest"]
        if not isinstance(when, dict) or not when:
            raise fail('"when" must name at least one condition', index)
        conditions: dict[str, frozenset[str]] = {}
        for key, value in when.items():
            if key not in CONDITIONS:
                raise fail(f"unknown condition {key!r}; known: {', '.join(CONDITIONS)}", index)
            values = [value] if isinstance(value, str) else value
            if (not isinstance(values, list) or not values
                    or not all(isinstance(v, str) for v in values)):
                raise fail(f"{key} must be a name or a non-empty list of names", index)
            unknown = [v for v in values if v not in vocabulary[key]]
            if unknown:
                raise fail(f"unknown {key} {unknown}", index)
            conditions[key] = frozenset(values)
        if not isinstance(suggest, dict) or not set(suggest) <= {"types", "tags"}:
            raise fail('"suggest" holds "types" and "tags"', index)
        types, tags = suggest.get("types", []), suggest.get("tags", [])
        if not isinstance(types, list) or not isinstance(tags, list) or not (types or tags):
            raise fail('"suggest" needs a list of types or of tags', index)
        unknown = [t for t in types if not isinstance(t, str) or not kinds.is_type(t)]
        if unknown:
            raise fail(f"unknown product types {unknown} (see catalog/product_types.json)",
                       index)
        bad_tags = [t for t in tags if not isinstance(t, str) or not _valid_tag(t, vocabulary)]
        if bad_tags:
            raise fail(f"unknown tags {bad_tags}; a tag is one of "
                       f"{', '.join(k + ':' for k in TAG_KINDS)} with a known value", index)
        rules.append(GiftRule(when=conditions, types=tuple(types), tags=tuple(tags)))
    return rules


def _vocabulary() -> dict[str, set[str]]:
    lex = lexicon()
    return {"recipient": set(lex["recipients"]), "age_band": set(AGE_BANDS),
            "occasion": set(lex["occasions"]), "interest": set(lex["interests"]),
            "gender": set(GENDERS)}


def _valid_tag(tag: str, vocabulary: dict[str, set[str]]) -> bool:
    kind, _, value = tag.partition(":")
    known = {"recipient": vocabulary["recipient"] | set(lexicon()["recipient_tags"].values()),
             "age": vocabulary["age_band"], "interest": vocabulary["interest"],
             "occasion": vocabulary["occasion"]}
    return kind in known and value in known[kind]


@lru_cache
def gift_knowledge() -> GiftKnowledge:
    """The shipped gift knowledge, loaded and checked once."""
    return GiftKnowledge.load()
