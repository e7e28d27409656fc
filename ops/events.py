"""Conversion events: one append-only row per step of the funnel."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Index, text
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


def record_event(session: Session, kind: EventKind, *, user_key: str | None = None,
                 text: str | None = None, keep_text: bool = False,
                 **fields: object) -> ConversionEvent:
    """Append one conversion event in the caller's transaction. `text` is kept as a hash,
    and as itself too when `keep_text` (the deployment opted in)."""
    event = ConversionEvent(
        kind=kind.value,
        user_hash=log_pseudonym(user_key) if user_key else None,
        text_hash=log_pseudonym(text) if text else None,
        text=text[:2000] if text and keep_text else None,
        channel=(user_key.split(":", 1)[0] if user_key and ":" in user_key else "web"),
        **fields,  # type: ignore[arg-type]
    )
    session.add(event)
    return event


def understood(intent: Any) -> str | None:
    """What was understood of a request in Vitrine's own vocabulary, not the shopper's words:
    kinds of product, interests, recipient, occasion."""
    parts = [f"kind:{k}" for k in getattr(intent, "product_types", [])[:3]]
    parts += [f"interest:{i}" for i in getattr(intent, "interests", [])[:3]]
    for name in ("recipient", "occasion"):
        if value := getattr(intent, name, None):
            parts.append(f"{'for' if name == 'recipient' else name}:{value}")
    return " ".join(parts)[:300] or None
