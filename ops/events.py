"""Conversion events: one append-only row per step of the funnel.

A chat turn records several (the message, what was understood, one per card shown). They
are written as plain rows, all of a transaction's in one batch when it flushes or commits,
not as ORM objects: each ORM insert cost a round trip of its own and building the object
cost more than the insert (see docs/benchmarks.md, "Load"). An update or delete of the
event table (the erasure's) reaches them first. A rollback drops them, a savepoint's only
those recorded inside it. A chat turn writes them with its conversation
(`take_pending_rows`): on PostgreSQL both go in one statement.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import Index, event, insert, text
from sqlalchemy.orm import ORMExecuteState
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Field, Session, SQLModel

from core.db import utcnow


class EventKind(StrEnum):
    MESSAGE_RECEIVED = "message_received"
    INTENT_UNDERSTOOD = "intent_understood"
    CARDS_SHOWN = "cards_shown"
    CARD_CLICKED = "card_clicked"
    MORE_LIKE_THIS = "more_like_this"
    NOT_FOR_ME = "not_for_me"
    CHECKOUT_STARTED = "checkout_started"
    CHECKOUT_CONFIRMED = "checkout_confirmed"
    PAYMENT_PENDING = "payment_pending"
    ORDER_PAID = "order_paid"
    PAYMENT_FAILED = "payment_failed"
    PAYMENT_EXPIRED = "payment_expired"
    CHECKOUT_CANCELED = "checkout_canceled"
    ORDER_REFUNDED = "order_refunded"
    REMINDER_SENT = "reminder_sent"


class ConversionEvent(SQLModel, table=True):
    """One step a shopper took; free text is kept only as a hash."""

    __table_args__ = (
        # The catalog-gaps report reads only requests that found nothing, by time.
        Index("ix_conversionevent_gaps", "created_at",
              sqlite_where=text("kind = 'cards_shown' AND position IS NULL"),
              postgresql_where=text("kind = 'cards_shown' AND position IS NULL")),
        # A shopper's /forget erases the words they wrote (`bot.erasure`): only rows that
        # kept them are indexed, none unless the deployment stores texts, so writing an
        # event costs nothing more and the erasure reads no other shopper's rows.
        Index("ix_conversionevent_erasable", "user_hash",
              sqlite_where=text("text IS NOT NULL"),
              postgresql_where=text("text IS NOT NULL")),
    )

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow, index=True)
    kind: str = Field(index=True, max_length=30)
    channel: str = Field(default="web", max_length=20)
    market: str | None = Field(default=None, max_length=2)
    language: str | None = Field(default=None, max_length=5)
    user_hash: str | None = Field(default=None, max_length=64)
    conversation_id: str | None = Field(default=None, max_length=40)
    merchant: str | None = Field(default=None, max_length=64)
    product_id: str | None = Field(default=None, max_length=200)
    position: int | None = None
    score: float | None = None
    sponsored: bool | None = None
    order_id: str | None = Field(default=None, max_length=40)
    amount: int | None = None
    currency: str | None = Field(default=None, max_length=3)
    latency_ms: int | None = None
    text_hash: str | None = Field(default=None, max_length=64)
    # The shopper's words themselves: only where the deployment opted in
    # (VITRINE_OPS_STORE_TEXT), and erased by the shopper's /forget.
    text: str | None = Field(default=None, max_length=2000)
    # On a request that found nothing: what was understood of it, in Vitrine's own words
    # ("kind:headphones interest:gardening for:mother"), so catalog gaps group without text.
    understood: str | None = Field(default=None, max_length=300)
    # On `intent_understood`: which parser understood the message ("rules" / "llm") and the
    # language-model tokens it cost, so ops can compute the model's cost per sale.
    parser: str | None = Field(default=None, max_length=10)
    tokens_in: int | None = None
    tokens_out: int | None = None


def pseudonym(value: str) -> str:
    """A stable pseudonymous id for a user key, for Vitrine's own lookups (never exported)."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:32]


# The conversion log's ids are keyed hashes: the log is exported, and a plain hash of a phone
# number or a short message could be reversed by trying every one.
_log_key = b"dev-ops-hash-key"


def use_log_key(key: str) -> None:
    """Key the conversion log's pseudonyms (VITRINE_OPS_HASH_KEY); set once at start."""
    global _log_key
    _log_key = key.encode("utf-8")


def log_pseudonym(value: str) -> str:
    """The conversion log's pseudonym for a user key or a text: HMAC-SHA256 under the
    deployment's key, so it cannot be reversed without it."""
    return hmac.new(_log_key, value.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


# Every column but the id, in the table's order: each pending row carries all of them, so
# a transaction's rows go in one executemany.
_TABLE = EVENTS = ConversionEvent.__table__  # type: ignore[attr-defined]
_COLUMNS = tuple(c.name for c in _TABLE.columns if c.name != "id")
_INSERT = insert(_TABLE)
_PENDING = "vitrine_pending_conversion_events"  # session.info key
_MARKS = "vitrine_pending_events_at_savepoints"  # session.info key: savepoint -> count


class PendingEvent:
    """A conversion event recorded in a transaction and not written yet. Its fields may
    still be set (the parser and tokens of the message that started the turn)."""

    __slots__ = _COLUMNS

    def __init__(self, **values: Any) -> None:
        for name in _COLUMNS:
            setattr(self, name, values.pop(name, None))
        if values:
            raise TypeError(f"not a conversion event field: {', '.join(values)}")

    def row(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _COLUMNS}

    if TYPE_CHECKING:  # its attributes are `ConversionEvent`'s columns, made at run time
        def __getattr__(self, name: str) -> Any: ...
        def __setattr__(self, name: str, value: Any) -> None: ...


def record_event(session: Session, kind: EventKind, *, user_key: str | None = None,
                 text: str | None = None, keep_text: bool = False,
                 **fields: object) -> PendingEvent:
    """Append one conversion event in the caller's transaction. `text` is kept as a hash,
    and as itself too when `keep_text` (the deployment opted in)."""
    pending = PendingEvent(
        created_at=utcnow(), kind=kind.value,
        user_hash=log_pseudonym(user_key) if user_key else None,
        text_hash=log_pseudonym(text) if text else None,
        text=text[:2000] if text and keep_text else None,
        channel=(user_key.split(":", 1)[0] if user_key and ":" in user_key else "web"),
        **fields,
    )
    if not session.in_transaction():
        session.begin()  # as `session.add` would: the event belongs to this transaction
    session.info.setdefault(_PENDING, []).append(pending)
    return pending


def pending_events(session: OrmSession) -> list[PendingEvent]:
    """The events recorded in this session's transaction and not written yet."""
    return list(session.info.get(_PENDING, ()))


def write_pending_events(session: OrmSession) -> None:
    """Write the transaction's recorded events, in the order they were recorded."""
    rows = take_pending_rows(session)
    if rows:
        session.connection().execute(_INSERT, rows)


def take_pending_rows(session: OrmSession) -> list[dict[str, Any]]:
    """The transaction's recorded events as rows of `EVENTS`, in recording order, taken:
    the caller writes them in this transaction (`core.driver.write_together`)."""
    return [p.row() for p in session.info.pop(_PENDING, ())]


@event.listens_for(OrmSession, "before_flush")
def _before_flush(session: OrmSession, _context: object, _instances: object) -> None:
    # Written with whatever else the transaction flushes, but never inside a savepoint:
    # rolled back, it would take with it events recorded before it began.
    if not session.in_nested_transaction():
        write_pending_events(session)


@event.listens_for(OrmSession, "before_commit")
def _before_commit(session: OrmSession) -> None:
    if not session.in_nested_transaction():  # a savepoint's release leaves them pending
        write_pending_events(session)


@event.listens_for(OrmSession, "after_transaction_create")
def _savepoint_begun(session: OrmSession, transaction: Any) -> None:
    if transaction.nested:  # what it records from here goes if it rolls back
        session.info.setdefault(_MARKS, {})[id(transaction)] = \
            len(session.info.get(_PENDING, ()))


@event.listens_for(OrmSession, "after_soft_rollback")
def _after_rollback(session: OrmSession, previous: Any) -> None:
    # Dropped with what was rolled back, as the ORM drops the objects added there.
    mark = session.info.get(_MARKS, {}).pop(id(previous), None) if previous.nested else None
    if mark is None:
        session.info.pop(_PENDING, None)
    else:
        del session.info.get(_PENDING, [])[mark:]


@event.listens_for(OrmSession, "after_transaction_end")
def _after_transaction(session: OrmSession, transaction: Any) -> None:
    if transaction.parent is None:  # a session closed without committing writes nothing
        session.info.pop(_PENDING, None)
        session.info.pop(_MARKS, None)


@event.listens_for(OrmSession, "do_orm_execute")
def _before_changing_events(state: ORMExecuteState) -> None:
    # An update or delete of events (the erasure's) reaches those recorded before it. This
    # runs before every statement, so it looks only at what is cheap to see. (Nothing reads
    # events in a transaction that records them: the reports have sessions of their own.)
    if _PENDING in state.session.info and (state.is_update or state.is_delete) and \
            getattr(getattr(state.statement, "table", None), "name", None) == _TABLE.name:
        write_pending_events(state.session)


def understood(intent: Any) -> str | None:
    """What was understood of a request in Vitrine's own vocabulary, not the shopper's words:
    kinds of product, interests, recipient, occasion."""
    parts = [f"kind:{k}" for k in getattr(intent, "product_types", [])[:3]]
    parts += [f"interest:{i}" for i in getattr(intent, "interests", [])[:3]]
    for name in ("recipient", "occasion"):
        if value := getattr(intent, name, None):
            parts.append(f"{'for' if name == 'recipient' else name}:{value}")
    return " ".join(parts)[:300] or None
