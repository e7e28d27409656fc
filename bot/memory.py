"""Memory: what the shopper tells about the people they buy for and about themselves.

"minha mãe faz 60 em março e ama jardinagem" stores, about `mother`: age 60, birthday in
March, interest gardening, each with the message it came from. "not apple" stores that the
person (or the shopper, when nobody is named) avoids Apple; "Not for me" on a card stores that
the shopper turned the product down. Orders bought while a person was the subject become that
person's gift history (`GiftRecord`).

What reaches ranking is never the raw history: `summarize` selects, for one request, the facts
about the person it names and the shopper's own preferences, newest first within a fixed
budget (`MAX_SUMMARY_FACTS` facts, `MAX_SUMMARY_TOKENS` tokens), however much is stored.

Everything here is the shopper's: `facts`/`gifts` list it for `/memory` and `/export`;
`bot.erasure` deletes it for real on `/forget` and after the retention period.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache

from sqlalchemy import case
from sqlmodel import Session, col, select

from bot.birthdays import read_birthday
from bot.intent import Intent, attribute_words, lexicon
from bot.models import (
    OPPOSITE,
    SINGLE_VALUED,
    FactKind,
    GiftRecord,
    MemoryFact,
    ShopperProfile,
)
from catalog.product_types import product_types
from catalog.search import SearchRequest
from catalog.text import fold
from checkout.models import Order, OrderStatus
from core.db import utcnow

SHOPPER = "shopper"  # the subject of the shopper's own preferences
MAX_SUMMARY_FACTS = 30
MAX_SUMMARY_TOKENS = 600
# Read at most this many of a subject's newest facts before choosing: bounds the cost of a
# request whatever the shopper told over the years.
MAX_FACTS_READ = 200
MAX_SOURCE_CHARS = 300
MAX_SUMMARY_GIFTS = 5  # the newest gifts of a person that a request sees
# Orders that are gifts given: everything but the ones that never went through.
GIVEN_STATUSES = (OrderStatus.AWAITING_PAYMENT, OrderStatus.PENDING_COLLECTION, OrderStatus.PAID)


# The most facts of one kind about one subject a summary takes, so that neither a kind nor
# a person crowds out the others (the shopper's own avoided brands still reach ranking when
# the person asked about has hundreds of facts).
KIND_CAPS: dict[str, int] = {FactKind.DISLIKE: 5, FactKind.AVOIDS_BRAND: 4,
                             FactKind.AVOIDS_STORE: 3, FactKind.SIZE: 2, FactKind.INTEREST: 5,
                             FactKind.LIKES_BRAND: 3, FactKind.LIKES_STORE: 2,
                             FactKind.TURNED_DOWN: 4}
# Which facts matter most when the budget is tight, about a person and about the shopper.
PRIORITY = {FactKind.DISLIKE: 0, FactKind.AVOIDS_BRAND: 0, FactKind.AVOIDS_STORE: 0,
            FactKind.NAME: 1, FactKind.AGE: 1, FactKind.SIZE: 2, FactKind.LIKES_STORE: 4,
            FactKind.INTEREST: 3, FactKind.LIKES_BRAND: 4, FactKind.BIRTHDAY: 5,
            FactKind.BUDGET: 5, FactKind.TURNED_DOWN: 6}

_PRIORITY_ORDER = case({kind.value: rank for kind, rank in PRIORITY.items()},
                       value=col(MemoryFact.kind), else_=9)


@dataclass(frozen=True)
class Gift:
    """Something bought for a person."""

    subject: str
    ref: str  # merchant slug and product id, as cards carry it
    title: str
    order_id: str
    at: datetime


@dataclass
class MemorySummary:
    """What memory contributes to one request; bounded, never raw history."""

    subject: str | None = None
    facts: list[MemoryFact] = field(default_factory=list)
    gifts: list[Gift] = field(default_factory=list)

    def values(self, kind: FactKind, subject: str | None = None) -> list[str]:
        return [f.value for f in self.facts
                if f.kind == kind and (subject is None or f.subject == subject)]

    @property
    def tokens(self) -> int:
        """An estimate of the tokens this summary costs a language model (4 chars each)."""
        return sum(fact_tokens(f) for f in self.facts) + sum(
            len(g.title) // 4 + 2 for g in self.gifts)

    def as_dict(self) -> dict:
        return {"subject": self.subject,
                "facts": [f"{f.subject}.{f.kind}={f.value}" for f in self.facts],
                "given": [g.title for g in self.gifts]}


def fact_tokens(fact: MemoryFact) -> int:
    return (len(fact.subject) + len(fact.kind) + len(fact.value)) // 4 + 2


# -- learning --------------------------------------------------------------------------------

def learn(*, session: Session, user_key: str, intent: Intent,
          source: str | None = None) -> list[MemoryFact]:
    """Store what a message states about its recipient (or, with no one named, about the
    shopper's own preferences); returns the facts that are new."""
    person = intent.recipient if intent.recipient and intent.recipient != "self" else None
    wanted: list[tuple[str, FactKind, str]] = []
    if person:
        if intent.name:
            wanted.append((person, FactKind.NAME, intent.name))
        if intent.age is not None:
            wanted.append((person, FactKind.AGE, str(intent.age)))
        birthday = read_birthday(intent.text)
        if birthday:
            wanted.append((person, FactKind.BIRTHDAY, birthday))
        wanted.extend((person, FactKind.INTEREST, i) for i in intent.interests)
        wanted.extend((person, FactKind.SIZE, a) for a in intent.attributes
                      if a.startswith("size:"))
        wanted.extend((person, FactKind.DISLIKE, e) for e in intent.exclusions)
    owner = person or SHOPPER
    if intent.budget is not None and intent.budget.max is not None:
        wanted.append((SHOPPER, FactKind.BUDGET, f"{intent.budget.max} {intent.budget.currency}"))
    wanted.extend((owner, FactKind.AVOIDS_BRAND, b.casefold()) for b in intent.avoid_brands)
    wanted.extend((owner, FactKind.LIKES_BRAND, b.casefold()) for b in intent.brands)
    wanted.extend((SHOPPER, FactKind.AVOIDS_STORE, m) for m in intent.avoid_stores)
    wanted.extend((SHOPPER, FactKind.LIKES_STORE, m) for m in intent.stores)
    new: list[MemoryFact] = []
    for subject, kind, value in wanted:
        fact = remember(session=session, user_key=user_key, subject=subject, kind=kind,
                        value=value, source=source or intent.text)
        if fact is not None:
            new.append(fact)
    return new


def remember(*, session: Session, user_key: str, subject: str, kind: FactKind, value: str,
             source: str | None = None) -> MemoryFact | None:
    """Store one fact; returns it, or None when it was already known.

    A single-valued fact (age, birthday, usual budget) replaces the old value; liking a brand
    cancels avoiding it and the other way round.
    """
    value = value[:100]
    opposite = OPPOSITE.get(kind)
    rows = session.exec(select(MemoryFact).where(
        MemoryFact.user_key == user_key, MemoryFact.subject == subject,
        col(MemoryFact.kind).in_([kind, opposite or kind]))).all()
    if any(r.kind == kind and r.value == value for r in rows):
        return None
    for row in rows:
        if (kind in SINGLE_VALUED and row.kind == kind) or \
                (row.kind == opposite and row.value == value):
            session.delete(row)
    fact = MemoryFact(user_key=user_key, subject=subject, kind=kind, value=value,
                      source=(source or "")[:MAX_SOURCE_CHARS] or None)
    session.add(fact)
    session.flush()
    return fact


def record_gift(*, session: Session, user_key: str, subject: str, order_id: str) -> None:
    """Remember an order as a gift for `subject` (once per order)."""
    if session.exec(select(GiftRecord).where(GiftRecord.order_id == order_id)).first():
        return
    session.add(GiftRecord(user_key=user_key, subject=subject, order_id=order_id))


# -- using it --------------------------------------------------------------------------------

def summarize(*, session: Session, user_key: str, subject: str | None) -> MemorySummary:
    """The facts one request may use, chosen within the budget.

    Candidates are the newest facts about `subject` (the person the request names) and about
    the shopper (at most `MAX_FACTS_READ` rows each). They are taken by kind: what rules
    products out first (dislikes, avoided brands), then age and sizes, interests, liked
    brands, budget and birthday, products turned down last; the person's before the
    shopper's within a kind, newest first. No kind of one subject takes more than
    `KIND_CAPS` allows, so a person with hundreds of facts leaves room for the shopper's
    avoided brands and stores.
    """
    summary = MemorySummary(subject=subject)
    subjects = [s for s in (subject, SHOPPER) if s and s != "self"]
    candidates: list[MemoryFact] = []
    for who in subjects:
        candidates.extend(session.exec(
            select(MemoryFact)
            .where(MemoryFact.user_key == user_key, MemoryFact.subject == who)
            .order_by(_PRIORITY_ORDER, col(MemoryFact.created_at).desc(),
                      col(MemoryFact.id).desc())
            .limit(MAX_FACTS_READ)).all())
    taken: dict[tuple[str, str], int] = {}
    tokens = 0
    for fact in sorted(candidates, key=lambda f: (_priority(f.kind), f.subject == SHOPPER)):
        cap = KIND_CAPS.get(fact.kind, MAX_SUMMARY_FACTS)
        cost = fact_tokens(fact)
        key = (fact.subject, fact.kind)
        if taken.get(key, 0) >= cap or tokens + cost > MAX_SUMMARY_TOKENS:
            continue
        summary.facts.append(fact)
        taken[key] = taken.get(key, 0) + 1
        tokens += cost
        if len(summary.facts) >= MAX_SUMMARY_FACTS:
            break
    if subject and subject != "self":
        summary.gifts = gifts(session=session, user_key=user_key, subject=subject,
                              limit=MAX_SUMMARY_GIFTS)
    return summary


def _priority(kind: str) -> int:
    return PRIORITY.get(FactKind(kind), 9) if kind in FactKind._value2member_map_ else 9


def recall(*, session: Session, user_key: str, intent: Intent) -> MemorySummary:
    """Fill what the message leaves out about its recipient from memory; returns the summary
    used, with `intent.remembered` naming the facts that were filled in.

    A remembered name stands for its person: "presente para a Inês" is for the mother when
    the shopper once said "minha mãe se chama Inês"."""
    if intent.recipient is None:
        _recipient_by_name(session, user_key, intent)
    summary = summarize(session=session, user_key=user_key, subject=intent.recipient)
    used: list[MemoryFact] = []
    person = intent.recipient
    for fact in summary.facts:
        if fact.subject != person:
            continue
        if fact.kind == FactKind.AGE and intent.age is None:
            intent.age = int(fact.value)
            used.append(fact)
        elif fact.kind == FactKind.INTEREST and fact.value not in intent.interests:
            intent.interests.append(fact.value)
            used.append(fact)
    intent.remembered = [f"{f.kind}:{f.value}" for f in used]
    return summary


def _recipient_by_name(session: Session, user_key: str, intent: Intent) -> None:
    """"presente para a Inês" is for the person named Inês. The name must follow a word that
    introduces a person ("para a", "pra", "for", "de"), and a name that is also an ordinary
    word ("Rosa", "Ruby") must be written with a capital, so "uma caneca rosa" stays a mug."""
    names = session.exec(select(MemoryFact).where(
        MemoryFact.user_key == user_key, MemoryFact.kind == FactKind.NAME)).all()
    for fact in names:
        written = re.search(rf"(?i:\b(?:para|pra|pro|for|to|de|del|da|do|with|com|con)\s+"
                            rf"(?:a\s+|o\s+|la\s+|el\s+)?)({re.escape(fact.value)})\b",
                            intent.text, flags=re.IGNORECASE)
        if written is None:
            continue
        if fold(fact.value) in _ordinary_words() and not written.group(1)[:1].isupper():
            continue
        intent.recipient = fact.subject
        name_words = set(fold(fact.value).split())
        intent.product_terms = [t for t in intent.product_terms if t not in name_words]
        intent.attributes = [a for a in intent.attributes
                             if not name_words & set(attribute_words(a))]
        return


@lru_cache(maxsize=1)
def _ordinary_words() -> frozenset[str]:
    """Words of the lexicon (colours, materials, interests...) that are also first names."""
    lex = lexicon()
    words = {fold(w) for values in lex["attributes"].values() for w in values}
    words |= {fold(w) for values in lex["interests"].values() for w in values}
    return frozenset(words)


def subject_named(session: Session, user_key: str, name: str) -> str | None:
    """The person a remembered name belongs to ("Inês" -> "mother"), if any."""
    wanted = fold(name.strip())
    for fact in session.exec(select(MemoryFact).where(
            MemoryFact.user_key == user_key, MemoryFact.kind == FactKind.NAME)).all():
        if fold(fact.value) == wanted:
            return fact.subject
    return None


def apply(summary: MemorySummary, intent: Intent, request: SearchRequest) -> None:
    """Let what memory holds shape one search: the person's dislikes and avoided brands rule
    products out, liked brands rank up, gifts already given and products turned down are not
    shown again, and a usual budget is aimed at when the message names none. What the
    shopper says now wins: asking for a kind or a brand lifts a remembered dislike of it."""
    person = intent.recipient
    asked_kinds = {t for name in intent.product_types for t in product_types().expand(name)
                   or [name]}
    asked_brands = {b.casefold() for b in intent.brands}
    for kind in summary.values(FactKind.DISLIKE, person):
        if kind not in asked_kinds and not asked_kinds & set(product_types().expand(kind)):
            request.excluded_terms.extend(w for w in product_types().words(kind) or [kind]
                                          if w not in request.excluded_terms)
    for subject in (person, SHOPPER):
        if subject is None:
            continue
        request.avoid_brands.extend(b for b in summary.values(FactKind.AVOIDS_BRAND, subject)
                                    if b not in asked_brands and b not in request.avoid_brands)
        request.liked_brands.extend(b for b in summary.values(FactKind.LIKES_BRAND, subject)
                                    if b not in request.liked_brands)
    request.avoid_merchants.extend(m for m in summary.values(FactKind.AVOIDS_STORE, SHOPPER)
                                   if m not in intent.stores
                                   and m not in request.avoid_merchants)
    request.liked_merchants.extend(summary.values(FactKind.LIKES_STORE, SHOPPER))
    request.given |= {g.ref for g in summary.gifts}
    request.penalise |= set(summary.values(FactKind.TURNED_DOWN, SHOPPER))
    usual = summary.values(FactKind.BUDGET, SHOPPER)
    if usual and request.budget_target is None and request.budget_max is None:
        amount, _, currency = usual[0].partition(" ")
        if currency == request.currency and amount.isdigit():
            request.budget_target = int(amount)


def gifts(*, session: Session, user_key: str, subject: str | None = None,
          limit: int | None = None) -> list[Gift]:
    """What was bought for people (for one, with `subject`), newest first; at most `limit`."""
    query = (select(GiftRecord, Order).join(Order, col(Order.id) == GiftRecord.order_id)
             .where(GiftRecord.user_key == user_key, col(Order.status).in_(GIVEN_STATUSES))
             .order_by(col(GiftRecord.created_at).desc()))
    if subject:
        query = query.where(GiftRecord.subject == subject)
    if limit is not None:
        query = query.limit(limit)
    return [Gift(subject=record.subject, ref=f"{order.merchant_slug}:{order.product_id}",
                 title=order.title, order_id=order.id, at=record.created_at)
            for record, order in session.exec(query).all()]


def facts(*, session: Session, user_key: str) -> list[MemoryFact]:
    """Everything remembered about this shopper and their people, by person, oldest first."""
    return list(session.exec(
        select(MemoryFact).where(MemoryFact.user_key == user_key)
        .order_by(col(MemoryFact.subject), col(MemoryFact.created_at), col(MemoryFact.id))))


# -- the shopper's control -------------------------------------------------------------------

def should_tell_about_memory(*, session: Session, user_key: str) -> bool:
    """True once: the first time something is remembered, the shopper is told how to see
    and delete it. Marks the notice as given."""
    profile = session.get(ShopperProfile, user_key)
    if profile is not None and profile.memory_notice_at is not None:
        return False
    profile = profile or ShopperProfile(user_key=user_key)
    profile.memory_notice_at = utcnow()
    session.add(profile)
    return True
