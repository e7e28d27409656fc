"""The multilingual gift set: shoppers' requests with human labels, run through the assistant.

Each line of the set (JSON Lines, format in `tests/data/gifts/README.md`) is one request in one
market with what a person expects of it: the intent fields they are sure of, which catalog
products are great (2) or acceptable (1) answers, and the hard rules no answer may break.
`run_gift_set` asks `Assistant.recommend` for three cards per request and `summarise` reports,
per language and overall:

- intent accuracy per field, over the requests that expect the field; the budget compares
  amount and currency, lists compare as sets of stemmed words (so "running shoe" meets
  "running shoes"); a field absent from the intent output counts as wrong and is reported;
- precision@3 and nDCG@3 with `catalog.evaluation`'s functions, an unlabelled card counting
  as 0, over the requests that have at least one great answer;
- hard-rule violations, which must be none: a card above the request's price ceiling, a card
  whose title or category names something the shopper ruled out, a card in a currency other
  than the market's;
- latency p50/p95 of `recommend`, after one warm-up request per market.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from bot.conversation import Assistant
from catalog.evaluation import GOOD, ndcg_at, precision_at
from catalog.text import stems
from core.errors import InvalidInput
from core.markets import Market, get_market
from core.money import Money

CARDS = 3
LANGUAGES = ("pt", "es", "en")
OVERALL = "overall"
INTENT_FIELDS = ("recipient", "age", "occasion", "budget", "interests", "product_types",
                 "exclusions", "language")
LIST_FIELDS = frozenset({"interests", "product_types", "exclusions"})
EXPECT_KEYS = frozenset({"intent", "relevant", "max_price", "excluded_words"})
WORST_SHOWN = 12


@dataclass(frozen=True)
class GiftRequest:
    """One labelled request; `max_price` is the hard ceiling in minor units, or None."""

    id: str
    market: Market
    text: str
    language: str
    intent: dict[str, str | int | Money | frozenset[str]]  # expected values, by field
    relevant: dict[str, int]  # "merchant-slug:product-id" -> 2 great, 1 acceptable
    max_price: int | None = None
    excluded_words: tuple[str, ...] = ()
    line: int = 0

    @property
    def answerable(self) -> bool:
        return any(r >= GOOD for r in self.relevant.values())


@dataclass(frozen=True)
class ShownCard:
    """What the hard rules need of one card: its price and the words naming what it is."""

    ref: str
    title: str
    categories: str
    amount: int
    currency: str


@dataclass(frozen=True)
class FieldCheck:
    outcome: str  # "right" | "wrong" | "missing" (the intent output has no such field)
    expected: Any
    got: Any = None


@dataclass(frozen=True)
class Violation:
    request: str
    ref: str
    rule: str  # "budget" | "excluded" | "currency"
    detail: str


@dataclass
class RequestResult:
    request: GiftRequest
    cards: list[ShownCard]
    intent: dict[str, FieldCheck]
    violations: list[Violation]
    latency_ms: float
    precision: float | None = None  # None when the catalog has no great answer
    ndcg: float | None = None

    def as_dict(self) -> dict[str, Any]:
        r = self.request
        return {
            "id": r.id, "market": r.market.code, "language": r.language, "text": r.text,
            "cards": [{"ref": c.ref, "title": c.title, "price": c.amount,
                       "label": r.relevant.get(c.ref, 0)} for c in self.cards],
            "precision@3": _round(self.precision), "ndcg@3": _round(self.ndcg),
            "intent": {name: {"outcome": check.outcome, "expected": _plain(check.expected),
                              "got": _plain(check.got)} for name, check in self.intent.items()},
            "violations": [v.__dict__ for v in self.violations],
            "latency_ms": round(self.latency_ms, 2),
        }


@dataclass
class GroupSummary:
    """The numbers of one language, or of the whole set."""

    requests: int = 0
    ranked: int = 0  # requests with at least one great answer
    precision_at_3: float | None = None
    ndcg_at_3: float | None = None
    intent: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # right, total, missing
    intent_all_right: int = 0  # requests whose every expected field is right
    violations: int = 0
    unanswerable: int = 0
    unanswerable_with_cards: int = 0
    p50_ms: float = 0.0
    p95_ms: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests, "ranked": self.ranked,
            "precision@3": _round(self.precision_at_3), "ndcg@3": _round(self.ndcg_at_3),
            "intent": {name: {"right": right, "total": total, "missing": missing,
                              "accuracy": round(right / total, 3)}
                       for name, (right, total, missing) in self.intent.items()},
            "intent_all_right": self.intent_all_right, "violations": self.violations,
            "unanswerable": self.unanswerable,
            "unanswerable_with_cards": self.unanswerable_with_cards,
            "latency_p50_ms": round(self.p50_ms, 2), "latency_p95_ms": round(self.p95_ms, 2),
        }


@dataclass
class GiftReport:
    groups: dict[str, GroupSummary]  # "pt", "es", "en" (those present) and "overall"
    results: list[RequestResult]

    @property
    def violations(self) -> list[Violation]:
        return [v for r in self.results for v in r.violations]

    def worst(self, n: int = WORST_SHOWN) -> list[RequestResult]:
        """Requests that broke a hard rule, then answerable ones by lowest nDCG@3, P@3."""
        broken = [r for r in self.results if r.violations]
        ranked = sorted((r for r in self.results if r.ndcg is not None and not r.violations),
                        key=lambda r: (r.ndcg or 0.0, r.precision or 0.0, r.request.id))
        return (broken + [r for r in ranked if (r.ndcg or 0.0) < 1.0])[:n]

    def as_dict(self) -> dict[str, Any]:
        return {"groups": {name: g.as_dict() for name, g in self.groups.items()},
                "violations": [v.__dict__ for v in self.violations],
                "results": [r.as_dict() for r in self.results]}

    def as_text(self) -> str:
        def row(label: str, cell: Callable[[GroupSummary], str]) -> tuple[str, list[str]]:
            return label, [cell(g) for g in self.groups.values()]

        rows = [
            row("requests", lambda g: str(g.requests)),
            row("with a great answer", lambda g: str(g.ranked)),
            row("precision@3", lambda g: _fmt(g.precision_at_3)),
            row("nDCG@3", lambda g: _fmt(g.ndcg_at_3)),
            *(row(f"intent {name}", partial(_intent_ratio, name=name))
              for name in INTENT_FIELDS),
            row("intent, every field", lambda g: f"{g.intent_all_right}/{g.requests}"),
            row("hard-rule violations", lambda g: str(g.violations)),
            row("no great answer: carded",
                lambda g: f"{g.unanswerable_with_cards}/{g.unanswerable}"),
            row("latency p50 ms", lambda g: f"{g.p50_ms:.1f}"),
            row("latency p95 ms", lambda g: f"{g.p95_ms:.1f}"),
        ]
        names = list(self.groups)
        width = max(len(label) for label, _ in rows)
        lines = [f"{'':<{width}}" + "".join(f"{name:>10}" for name in names)]
        lines += [f"{label:<{width}}" + "".join(f"{cell:>10}" for cell in cells)
                  for label, cells in rows]
        missing = {name for g in self.groups.values() for name, (_, _, m) in g.intent.items()
                   if m}
        if missing:
            lines.append(f"(the intent output has no field {', '.join(sorted(missing))}: "
                         "counted as wrong)")
        lines.append("")
        lines.append("Hard-rule violations: " + ("none" if not self.violations else ""))
        lines += [f"  {v.request} {v.ref}: {v.rule} ({v.detail})" for v in self.violations]
        worst = self.worst()
        if worst:
            lines += ["", "Worst requests:"]
        for result in worst:
            lines += _describe(result)
        return "\n".join(lines)


# -- the set -------------------------------------------------------------------------------

def load_gift_set(path: Path) -> list[GiftRequest]:
    """Read a gift set; blank lines and `{"_doc": ...}` lines are skipped.

    Raises:
        InvalidInput: the file cannot be read, or a line is malformed (the message names
            the file, the line and what is wrong with it).
    """
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read gift set {path}: {exc}") from None
    requests: list[GiftRequest] = []
    seen: set[str] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"{path}, line {number}: not JSON ({exc.msg})") from None
        if isinstance(data, dict) and set(data) == {"_doc"}:
            continue
        try:
            request = _request(data, number)
        except InvalidInput as exc:
            raise InvalidInput(f"{path}, line {number}: {exc.reason}") from None
        if request.id in seen:
            raise InvalidInput(f"{path}, line {number}: id {request.id!r} is used twice")
        seen.add(request.id)
        requests.append(request)
    if not requests:
        raise InvalidInput(f"{path}: the gift set has no requests")
    return requests


def _request(data: Any, line: int) -> GiftRequest:
    if not isinstance(data, dict):
        raise InvalidInput("a line must be a JSON object")
    unknown = set(data) - {"id", "market", "text", "expect"}
    if unknown:
        raise InvalidInput(f"unknown keys {sorted(unknown)}")
    request_id = _text(data, "id")
    market = get_market(_text(data, "market"))
    expect = data.get("expect")
    if not isinstance(expect, dict) or not isinstance(expect.get("intent"), dict) \
            or not isinstance(expect.get("relevant"), dict):
        raise InvalidInput("`expect` needs an `intent` object and a `relevant` object")
    if set(expect) - EXPECT_KEYS:
        raise InvalidInput(f"unknown keys in expect: {sorted(set(expect) - EXPECT_KEYS)}")
    intent = _expected_intent(expect["intent"])
    relevant: dict[str, int] = {}
    for ref, label in expect["relevant"].items():
        slug, _, product_id = ref.partition(":")
        if not slug or not product_id:
            raise InvalidInput(f"relevant ref {ref!r} is not merchant-slug:product-id")
        if isinstance(label, bool) or label not in (0, 1, 2):
            raise InvalidInput(f"relevant {ref!r} must be labelled 0, 1 or 2, not {label!r}")
        relevant[ref] = label
    budget = intent.get("budget")
    if "max_price" in expect:
        max_price = expect["max_price"]
        if max_price is not None and (isinstance(max_price, bool)
                                      or not isinstance(max_price, int) or max_price < 0):
            raise InvalidInput("max_price must be an amount in minor units, or null")
    else:
        # The stated budget is the ceiling, when it is in money the market's cards are in.
        max_price = budget.amount if isinstance(budget, Money) \
            and budget.currency == market.currency else None
    words = expect.get("excluded_words", [])
    if not isinstance(words, list) or not all(isinstance(w, str) and stems(w) for w in words):
        raise InvalidInput("excluded_words must be a list of words")
    return GiftRequest(id=request_id, market=market, text=_text(data, "text"),
                       language=str(intent["language"]), intent=intent, relevant=relevant,
                       max_price=max_price, excluded_words=tuple(words), line=line)


def _expected_intent(raw: dict[str, Any]) -> dict[str, str | int | Money | frozenset[str]]:
    unknown = set(raw) - set(INTENT_FIELDS)
    if unknown:
        raise InvalidInput(f"unknown intent fields {sorted(unknown)}; known: "
                           f"{', '.join(INTENT_FIELDS)}")
    if raw.get("language") not in LANGUAGES:
        raise InvalidInput(f"intent.language must be one of {', '.join(LANGUAGES)}")
    expected: dict[str, str | int | Money | frozenset[str]] = {}
    for name, value in raw.items():
        if name == "budget":
            if not isinstance(value, dict) or set(value) != {"amount", "currency"}:
                raise InvalidInput("intent.budget must be {amount, currency}")
            amount, currency = value["amount"], value["currency"]
            if isinstance(amount, bool) or not isinstance(amount, int) \
                    or not isinstance(currency, str):
                raise InvalidInput("intent.budget needs an integer amount in minor units and "
                                   "a currency code")
            expected[name] = Money(amount, currency)
        elif name == "age":
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 120:
                raise InvalidInput("intent.age must be a whole number of years")
            expected[name] = value
        elif name in LIST_FIELDS:
            if not isinstance(value, list) or not value \
                    or not all(isinstance(v, str) and v for v in value):
                raise InvalidInput(f"intent.{name} must be a non-empty list of words")
            expected[name] = frozenset(v.lower() for v in value)
        else:
            if not isinstance(value, str) or not value:
                raise InvalidInput(f"intent.{name} must be a non-empty string")
            expected[name] = value
    return expected


def _text(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"`{key}` must be a non-empty string")
    return value


def _words(values: Iterable[str]) -> frozenset[str]:
    return frozenset(" ".join(stems(v)) for v in values)


# -- scoring -------------------------------------------------------------------------------

def score_request(request: GiftRequest, *, intent: dict[str, Any], cards: list[ShownCard],
                  latency_ms: float = 0.0) -> RequestResult:
    """Judge one answer: `intent` as `Intent.as_dict()` gives it, the cards as shown."""
    checks = {name: _check(name, expected, intent) for name, expected in request.intent.items()}
    refs = [c.ref for c in cards]
    result = RequestResult(request=request, cards=cards, intent=checks,
                           violations=list(_violations(request, cards)), latency_ms=latency_ms)
    if request.answerable:
        result.precision = precision_at(refs, request.relevant, CARDS)
        # Unlabelled cards are 0 here, not skipped as the judged-only nDCG of Icecat does.
        result.ndcg = ndcg_at(refs, {**dict.fromkeys(refs, 0), **request.relevant}, CARDS)
    return result


def _check(name: str, expected: str | int | Money | frozenset[str],
           intent: dict[str, Any]) -> FieldCheck:
    if name not in intent:
        return FieldCheck("missing", expected)
    got = intent[name]
    if isinstance(expected, Money):
        # Only what the shopper named counts: `amount` and `currency`, not the search window.
        got = {"amount": got.get("amount"), "currency": got.get("currency")} \
            if isinstance(got, dict) else got
        right = got == expected.as_dict()
    elif isinstance(expected, frozenset):
        right = isinstance(got, list) and _words(got) == _words(expected)
    else:
        right = got == expected
    return FieldCheck("right" if right else "wrong", expected, got)


def _violations(request: GiftRequest, cards: list[ShownCard]) -> Iterable[Violation]:
    excluded = [(word, stems(word)) for word in request.excluded_words]
    for card in cards:
        if card.currency != request.market.currency:
            yield Violation(request.id, card.ref, "currency",
                            f"{card.currency} in the {request.market.code} market")
        elif request.max_price is not None and card.amount > request.max_price:
            yield Violation(request.id, card.ref, "budget",
                            f"{card.amount} > {request.max_price} {card.currency}")
        words = stems(f"{card.title} {card.categories}")
        for word, needle in excluded:
            if any(words[i:i + len(needle)] == needle for i in range(len(words))):
                yield Violation(request.id, card.ref, "excluded",
                                f"{word!r} in {card.title!r} / {card.categories!r}")


def summarise(results: list[RequestResult]) -> GiftReport:
    """Per-language and overall numbers of scored requests."""
    groups = {lang: _group([r for r in results if r.request.language == lang])
              for lang in LANGUAGES if any(r.request.language == lang for r in results)}
    groups[OVERALL] = _group(results)
    return GiftReport(groups=groups, results=results)


def _group(results: list[RequestResult]) -> GroupSummary:
    ranked = [r for r in results if r.ndcg is not None]
    summary = GroupSummary(requests=len(results), ranked=len(ranked))
    if ranked:
        summary.precision_at_3 = statistics.fmean(r.precision or 0.0 for r in ranked)
        summary.ndcg_at_3 = statistics.fmean(r.ndcg or 0.0 for r in ranked)
    for name in INTENT_FIELDS:
        checks = [r.intent[name] for r in results if name in r.intent]
        if checks:
            summary.intent[name] = (sum(c.outcome == "right" for c in checks), len(checks),
                                    sum(c.outcome == "missing" for c in checks))
    summary.intent_all_right = sum(all(c.outcome == "right" for c in r.intent.values())
                                   for r in results)
    summary.violations = sum(len(r.violations) for r in results)
    unanswerable = [r for r in results if not r.request.answerable]
    summary.unanswerable = len(unanswerable)
    summary.unanswerable_with_cards = sum(bool(r.cards) for r in unanswerable)
    times = sorted(r.latency_ms for r in results)
    if times:
        summary.p50_ms = statistics.median(times)
        summary.p95_ms = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    return summary


# -- running -------------------------------------------------------------------------------

def run_gift_set(assistant: Assistant, requests: list[GiftRequest]) -> GiftReport:
    """Ask the assistant for three cards per request, without memory, and score them."""
    for market in {r.market.code: r.market for r in requests}.values():
        assistant.recommend("warm up", market=market, limit=CARDS)  # builds the index
    results = []
    for request in requests:
        started = time.perf_counter()
        rec = assistant.recommend(request.text, market=request.market, limit=CARDS)
        latency_ms = (time.perf_counter() - started) * 1000
        cards = []
        for card in rec.cards[:CARDS]:
            product = assistant.search.product(request.market.code, card.ref)
            cards.append(ShownCard(ref=card.ref, title=card.title,
                                   categories=product.categories if product else "",
                                   amount=card.price.amount, currency=card.price.currency))
        results.append(score_request(request, intent=rec.intent.as_dict(), cards=cards,
                                     latency_ms=latency_ms))
    return summarise(results)


# -- formatting ----------------------------------------------------------------------------

def _describe(result: RequestResult) -> list[str]:
    r = result.request
    head = f"  {r.id} [{r.market.code}] {r.text!r}"
    scores = f"    nDCG@3 {_fmt(result.ndcg)}  P@3 {_fmt(result.precision)}"
    shown = ", ".join(f"{c.ref} ({r.relevant.get(c.ref, 0)})" for c in result.cards) or "none"
    great = [ref for ref, label in r.relevant.items() if label >= GOOD]
    lines = [head, f"{scores}  cards: {shown}"]
    if great:
        lines.append(f"    great answers: {', '.join(great)}")
    wrong = [f"{name} {check.outcome} (expected {_plain(check.expected)}, got "
             f"{_plain(check.got)})" for name, check in result.intent.items()
             if check.outcome != "right"]
    if wrong:
        lines.append("    intent: " + "; ".join(wrong))
    lines += [f"    violation: {v.rule} {v.ref} ({v.detail})" for v in result.violations]
    return lines


def _plain(value: Any) -> Any:
    if isinstance(value, Money):
        return value.as_dict()
    if isinstance(value, frozenset):
        return sorted(value)
    return value


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _intent_ratio(group: GroupSummary, *, name: str) -> str:
    counts = group.intent.get(name)
    return "-" if counts is None else f"{counts[0]}/{counts[1]}"
