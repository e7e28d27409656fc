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
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import bindparam, case, event, exists, func, or_
from sqlalchemy import select as core_select
from sqlalchemy.orm import ORMExecuteState
from sqlalchemy.orm import Session as OrmSession
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
from core.db import forget_with_transaction, utcnow
from core.driver import DriverStatement, loaded

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

NO_LIMIT = 2**31 - 1  # a LIMIT both databases read as none

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
    cancels avoiding it and the other way round. Nothing is written before the transaction
    flushes: what this transaction knows is kept with it (`read`), so the rest of the turn
    sees the fact without holding SQLite's write lock from here to the commit.
    """
    value = value[:100]
    opposite = OPPOSITE.get(kind)
    kinds = {kind, opposite or kind}
    known = _known(session, user_key)
    known.load(session, [subject])
    if known.has_all(subject):
        rows = [f for f in known.of(subject) if f.kind in kinds]
    else:  # more facts about this person than are read at once: ask the database too
        rows = [f for f in session.exec(select(MemoryFact).where(
            MemoryFact.user_key == user_key, MemoryFact.subject == subject,
            col(MemoryFact.kind).in_(kinds))).all() if not known.dropped(f)]
        rows += [f for f in session.new if isinstance(f, MemoryFact) and f not in rows and
                 (f.user_key, f.subject) == (user_key, subject) and f.kind in kinds]
    if any(r.kind == kind and r.value == value for r in rows):
        return None
    for row in rows:
        if (kind in SINGLE_VALUED and row.kind == kind) or \
                (row.kind == opposite and row.value == value):
            known.drop(session, row)
    fact = known.restore(session, subject, kind, value)
    if fact is None:
        fact = MemoryFact(user_key=user_key, subject=subject, kind=kind, value=value,
                          source=(source or "")[:MAX_SOURCE_CHARS] or None, created_at=utcnow())
        session.add(fact)
        known.add(fact)
    return fact


# -- what a transaction knows ----------------------------------------------------------------

_KNOWN = "vitrine_memory_known"  # session.info key: user key -> _Known


class _Known:
    """A shopper's facts as one transaction sees them, read from the database once.

    For each subject read, its newest `MAX_FACTS_READ` facts in priority order (the order
    `summarize` takes them in); with them, every name the shopper gave. `remember` changes
    this copy as it adds and deletes facts, so what a turn learned reaches the rest of the
    turn without a flush. Dropped when the transaction ends or the facts are changed by a
    statement (`/forget`).
    """

    def __init__(self, user_key: str) -> None:
        self.user_key = user_key
        self.subjects: dict[str, list[MemoryFact]] = {}
        self.complete: set[str] = set()  # subjects whose every fact is here
        self.name_facts: list[MemoryFact] | None = None
        self.removed: set[int] = set()  # ids of stored facts deleted in this transaction
        # Known (`knew_at_start`) to have no gift on record: `gifts` asks nothing.
        self.no_gifts = False
        # Known (`knew_at_start`) to have had no fact when the transaction began: `load`
        # asks nothing, what the transaction learns is added here as it is learned.
        self.no_facts = False
        # What the turn's first statement read of the memory notice (`knew_at_start`): True
        # given, False not given, None not read here.
        self.notice_given: bool | None = None
        self.has_profile = True  # False: known to have no ShopperProfile row

    def load(self, session: Session, subjects: Iterable[str]) -> None:
        """Read the subjects not read yet, and the names, in one query."""
        wanted = sorted({s for s in subjects if s and s not in self.subjects})
        if not wanted and self.name_facts is not None:
            return
        if self.no_facts:
            for subject in wanted:
                self.subjects[subject] = []
                self.complete.add(subject)
            if self.name_facts is None:
                self.name_facts = []
            return
        asked = wanted or [""]
        query = _read_query(names=self.name_facts is None, subjects=len(asked))
        found: dict[str, list[MemoryFact]] = {s: [] for s in wanted}
        names = []
        for row in query.rows(session, {"user": self.user_key,
                                        **{f"subject_{i}": s for i, s in enumerate(asked)}}):
            fact = loaded(session, MemoryFact,
                          dict(zip(_FACT_COLUMNS, row[:len(_FACT_COLUMNS)], strict=True)))
            if fact.subject in found:
                found[fact.subject].append(fact)
            if fact.kind == FactKind.NAME:
                names.append(fact)
        for subject, facts in found.items():
            self.subjects[subject] = [f for f in facts if not self.dropped(f)]
            if len(facts) < MAX_FACTS_READ:
                self.complete.add(subject)
        if self.name_facts is None:
            # A name beyond a subject's first MAX_FACTS_READ (it ranks high, so only with
            # hundreds of dislikes) is looked for by a query of its own.
            if all(len(v) < MAX_FACTS_READ for v in found.values()):
                self.name_facts = [f for f in names if not self.dropped(f)]
            else:
                self.name_facts = [f for f in session.exec(select(MemoryFact).where(
                    MemoryFact.user_key == self.user_key,
                    MemoryFact.kind == FactKind.NAME)).all() if not self.dropped(f)]

    def of(self, subject: str) -> list[MemoryFact]:
        return self.subjects[subject]

    def has_all(self, subject: str) -> bool:
        return subject in self.complete

    def names(self, session: Session) -> list[MemoryFact]:
        if self.name_facts is None:
            self.load(session, ())
        assert self.name_facts is not None
        return self.name_facts

    def dropped(self, fact: MemoryFact) -> bool:
        return fact.id is not None and fact.id in self.removed

    def add(self, fact: MemoryFact) -> None:
        """A fact learned now: the newest of its kind, so the first among its priority."""
        if fact.subject in self.subjects:
            facts = self.subjects[fact.subject]
            rank = _priority(fact.kind)
            at = next((i for i, f in enumerate(facts) if _priority(f.kind) >= rank),
                      len(facts))
            facts.insert(at, fact)
        if fact.kind == FactKind.NAME and self.name_facts is not None:
            self.name_facts.append(fact)

    def drop(self, session: Session, fact: MemoryFact) -> None:
        """Delete a fact: a stored one at the flush, one added in this transaction now."""
        if fact in session.new:
            session.expunge(fact)
        else:
            session.delete(fact)
            if fact.id is not None:
                self.removed.add(fact.id)
        for facts in (self.subjects.get(fact.subject, []), self.name_facts or []):
            if fact in facts:
                facts.remove(fact)

    def restore(self, session: Session, subject: str, kind: str,
                value: str) -> MemoryFact | None:
        """A stored fact this transaction deletes and now learns again: kept instead of
        written anew, which would break the table's uniqueness before the delete ran."""
        for fact in list(session.deleted):
            if isinstance(fact, MemoryFact) and fact.user_key == self.user_key and \
                    (fact.subject, fact.kind, fact.value) == (subject, kind, value):
                session.add(fact)  # cancels the pending delete
                self.removed.discard(fact.id or 0)
                self.add(fact)
                return fact
        return None


def drop_read(session: Session) -> None:
    """Forget what this transaction read of memory, after changing facts another way (a
    merge of two accounts' memories): the next use reads them again."""
    session.info.pop(_KNOWN, None)


def knew_at_start(session: Session, user_key: str, *, has_gifts: bool, has_facts: bool,
                  notice: int | None) -> None:
    """Keep for this transaction what a query of the caller's read of the shopper with other
    things (a chat turn's first statement does): whether any gift is on record and any fact
    remembered (`has_gifts`, `has_facts`), and `notice_state`. Then `gifts` asks nothing
    until a gift is recorded, reading memory asks nothing when there was none (what the
    transaction learns is kept as it is learned), and `should_tell_about_memory` asks
    nothing unless a profile exists without the notice."""
    known = _known(session, user_key)
    known.no_gifts = not has_gifts
    known.no_facts = not has_facts
    known.notice_given = bool(notice)
    known.has_profile = notice is not None


def has_facts(owner: Any) -> Any:
    """Whether the shopper `owner` (an expression of the caller's query) has any fact
    remembered (see `knew_at_start`)."""
    return exists().where(MemoryFact.user_key == owner)


def _known(session: Session, user_key: str) -> _Known:
    by_user: dict[str, _Known] = session.info.setdefault(_KNOWN, {})
    if user_key not in by_user:
        by_user[user_key] = _Known(user_key)
    return by_user[user_key]


def read(*, session: Session, user_key: str, subjects: Iterable[str | None]) -> _Known:
    """What memory holds about these people and the shopper, and the names the shopper gave,
    read in one query unless this transaction read them already. A turn calls it before
    learning and recalling, which then ask the database nothing more."""
    known = _known(session, user_key)
    known.load(session, [s for s in (*subjects, SHOPPER) if s and s != "self"])
    return known


_FACTS = MemoryFact.__table__  # type: ignore[attr-defined]
_FACT_COLUMNS = [c.key for c in _FACTS.columns]


@lru_cache(maxsize=64)
def _read_query(*, names: bool, subjects: int) -> DriverStatement:
    """The newest MAX_FACTS_READ facts of each of `subjects` subjects asked for (binds
    `subject_0`...), in summarize's order, and with `names` every name the shopper gave:
    the facts' columns, then their rank. Through the driver (`core.driver`): a turn reads
    memory after its first statement, and the ORM's execution and loading cost more than
    the round trip."""
    table = _FACTS
    asked = table.c.subject.in_([bindparam(f"subject_{i}") for i in range(subjects)])
    rank = func.row_number().over(
        partition_by=table.c.subject,
        order_by=(_PRIORITY_ORDER, table.c.created_at.desc(), table.c.id.desc()))
    ranked = (core_select(table, rank.label("rank"))
              .where(table.c.user_key == bindparam("user"),
                     or_(asked, table.c.kind == FactKind.NAME.value) if names else asked)
              .subquery())
    in_asked = ranked.c.subject.in_([bindparam(f"subject_{i}") for i in range(subjects)])
    return DriverStatement(
        core_select(ranked).where(~in_asked | (ranked.c.rank <= MAX_FACTS_READ))
        .order_by(ranked.c.subject, ranked.c.rank))


forget_with_transaction(_KNOWN)


@event.listens_for(OrmSession, "do_orm_execute")
def _before_changing_facts(state: ORMExecuteState) -> None:
    # A statement deleting or changing facts (`/forget`, the retention purge) must reach
    # those learned but not written yet, and leaves the copy above out of date.
    if (state.is_update or state.is_delete) and _KNOWN in state.session.info and \
            getattr(getattr(state.statement, "table", None), "name", None) == "memoryfact":
        session = state.session
        if any(isinstance(o, MemoryFact) for o in session.new):
            session.flush()
        session.info.pop(_KNOWN, None)


def record_gift(*, session: Session, user_key: str, subject: str, order_id: str) -> None:
    """Remember an order as a gift for `subject` (once per order)."""
    if session.exec(select(GiftRecord).where(GiftRecord.order_id == order_id)).first():
        return
    _known(session, user_key).no_gifts = False
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
    known = read(session=session, user_key=user_key, subjects=subjects)
    candidates = [fact for who in subjects for fact in known.of(who)]
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
    for fact in _known(session, user_key).names(session):
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
    for fact in _known(session, user_key).names(session):
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
    known = session.info.get(_KNOWN, {}).get(user_key)
    if known is not None and known.no_gifts:
        return []
    query = _GIFTS_OF if subject else _GIFTS
    rows = session.execute(query, {"user": user_key, "subject": subject,
                                   "limit": NO_LIMIT if limit is None else limit})
    return [Gift(subject=row.subject, ref=f"{row.merchant_slug}:{row.product_id}",
                 title=row.title, order_id=row.id, at=row.created_at) for row in rows]


def has_gifts(owner: Any) -> Any:
    """Whether the shopper `owner` (an expression of the caller's query) has any gift on
    record (see `knew_at_start`)."""
    return exists().where(GiftRecord.user_key == owner)


def _gifts_query(*, of_subject: bool) -> Any:
    gift, order = GiftRecord.__table__.c, Order.__table__.c  # type: ignore[attr-defined]
    query = (core_select(gift.subject, gift.created_at, order.id, order.merchant_slug,
                         order.product_id, order.title)
             .join(Order.__table__, order.id == gift.order_id)  # type: ignore[attr-defined]
             .where(gift.user_key == bindparam("user"), order.status.in_(GIVEN_STATUSES))
             .order_by(gift.created_at.desc(), gift.id.desc()))
    if of_subject:
        query = query.where(gift.subject == bindparam("subject"))
    return query.limit(bindparam("limit"))


# Built once: a statement costs more to build than SQLite takes to run it.
_GIFTS, _GIFTS_OF = _gifts_query(of_subject=False), _gifts_query(of_subject=True)


def facts(*, session: Session, user_key: str) -> list[MemoryFact]:
    """Everything remembered about this shopper and their people, by person, oldest first."""
    return list(session.exec(
        select(MemoryFact).where(MemoryFact.user_key == user_key)
        .order_by(col(MemoryFact.subject), col(MemoryFact.created_at), col(MemoryFact.id))))


# -- the shopper's control -------------------------------------------------------------------

def should_tell_about_memory(*, session: Session, user_key: str) -> bool:
    """True once: the first time something is remembered, the shopper is told how to see
    and delete it. Marks the notice as given."""
    known = session.info.get(_KNOWN, {}).get(user_key)
    if known is not None and known.notice_given:
        return False
    if known is not None and not known.has_profile:
        profile = _profile_in_session(session, user_key)  # one made since it was read
    else:
        profile = session.get(ShopperProfile, user_key)
    if profile is not None and profile.memory_notice_at is not None:
        return False
    now = utcnow()
    profile = profile or ShopperProfile(user_key=user_key, created_at=now)
    profile.memory_notice_at = now
    session.add(profile)
    if known is not None:
        known.notice_given, known.has_profile = True, True
    return True


def notice_state(owner: Any) -> Any:
    """Whether the shopper `owner` (an expression of the caller's query) was told how memory
    works: 1, 0 for a profile without the notice, NULL for no profile (see `knew_at_start`)."""
    return (core_select(case((col(ShopperProfile.memory_notice_at).is_(None), 0), else_=1))
            .where(col(ShopperProfile.user_key) == owner).scalar_subquery())


def _profile_in_session(session: Session, user_key: str) -> ShopperProfile | None:
    """The shopper's profile if this session holds it already, without a query."""
    key = session.identity_key(ShopperProfile, (user_key,))
    held = session.identity_map.get(key)
    if isinstance(held, ShopperProfile):
        return held
    return next((o for o in session.new
                 if isinstance(o, ShopperProfile) and o.user_key == user_key), None)
