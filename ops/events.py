"""Conversion events: one append-only row per step of the funnel."""

from __future__ import annotations

import hashlib
from datetime import datetime
from enum import StrEnum

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
    CHECKOUT_CANCELED = "checkout_canceled"
    ORDER_REFUNDED = "order_refunded"
    REMINDER_SENT = "reminder_sent"


class ConversionEvent(SQLModel, table=True):
    """One step a shopper took; free text is kept only as a hash."""

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
    # On `intent_understood`: which parser understood the message ("rules" / "llm") and the
    # language-model tokens it cost, so ops can compute the model's cost per sale.
    parser: str | None = Field(default=None, max_length=10)
    tokens_in: int | None = None
    tokens_out: int | None = None


def pseudonym(value: str) -> str:
    """A stable pseudonymous id for a user key or a text; not reversible."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:32]


def record_event(session: Session, kind: EventKind, *, user_key: str | None = None,
                 text: str | None = None, **fields: object) -> ConversionEvent:
    """Append one conversion event in the caller's transaction."""
    event = ConversionEvent(
        kind=kind.value,
        user_hash=pseudonym(user_key) if user_key else None,
        text_hash=pseudonym(text) if text else None,
        channel=(user_key.split(":", 1)[0] if user_key and ":" in user_key else "web"),
        **fields,  # type: ignore[arg-type]
    )
    session.add(event)
    return event
