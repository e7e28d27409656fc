"""Checkout tables: orders, every change of an order's status, and the payment provider
events already processed."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, Column, String, UniqueConstraint, text
from sqlalchemy.engine import Engine
from sqlmodel import Field, SQLModel

from core.db import utcnow
from core.markets import Market, get_market


class OrderStatus(StrEnum):
    """Where an order stands; `checkout.orders.TRANSITIONS` says which way it may move."""

    AWAITING_CONFIRMATION = "awaiting_confirmation"
    AWAITING_PAYMENT = "awaiting_payment"
    PENDING_COLLECTION = "pending_collection"  # cash on delivery: confirmed, paid at the door
    PAID = "paid"
    FAILED = "failed"
    EXPIRED = "expired"  # the voucher or payment code ran out before it was paid
    CANCELED = "canceled"
    REFUND_PENDING = "refund_pending"  # withdrawn after payment; the merchant refunds
    REFUNDED = "refunded"


class Order(SQLModel, table=True):
    """One product bought from one merchant, from confirmation to payment."""

    id: str = Field(primary_key=True, max_length=40)
    user_key: str = Field(index=True, max_length=200)
    conversation_id: str = Field(max_length=40)
    market: str = Field(max_length=2)
    language: str = Field(max_length=5)
    # The shopper read the market as a visitor (`Market.read_by`): news about the order
    # spells its currency's symbol out, as the cards did.
    visitor: bool | None = None
    # Bought from a sponsored card: the reports count its sale as sponsored.
    sponsored: bool | None = None
    merchant_slug: str = Field(max_length=64)
    merchant_name: str
    product_id: str = Field(max_length=200)
    title: str
    amount: int
    shipping: int = 0
    fee: int = 0
    total: int
    currency: str = Field(max_length=3)
    rail: str = Field(max_length=20)
    # Chosen by the shopper where the market and rail allow it (a server default, so that
    # databases made before it gain the column).
    instalments: int = Field(default=1, sa_column_kwargs={"server_default": "1"})
    # Bumped when starting the payment failed, so the next try is a new payment at the
    # provider (which replays an idempotent request's first answer, an error included).
    payment_attempt: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    # Stored as text, not a database enum: a new status (expired, refunded) needs no
    # ALTER TYPE on a PostgreSQL database made before it.
    status: OrderStatus = Field(default=OrderStatus.AWAITING_CONFIRMATION, index=True,
                                sa_type=String(30))
    txid: str | None = Field(default=None, unique=True, max_length=40)
    payment: dict = Field(default_factory=dict, sa_column=Column(JSON))
    created_at: datetime = Field(default_factory=utcnow)
    confirmed_at: datetime | None = None
    paid_at: datetime | None = None
    delivered_at: datetime | None = None  # told by the merchant; starts the withdrawal window
    # Asked only by rails that need them (an OXXO voucher carries the payer's name and
    # e-mail), and only for this order.
    payer_name: str | None = Field(default=None, max_length=120)
    payer_email: str | None = Field(default=None, max_length=254)

    def shopper_market(self) -> Market:
        """The order's market as its shopper reads prices."""
        market = get_market(self.market)
        return market.for_visitor() if self.visitor else market.read_by(self.language)


class PaymentEvent(SQLModel, table=True):
    """A provider event already applied; a repeat of the same id has no second effect."""

    __table_args__ = (UniqueConstraint("provider", "event_id"),)

    id: int | None = Field(default=None, primary_key=True)
    provider: str = Field(max_length=30)
    event_id: str = Field(max_length=200)
    txid: str | None = Field(default=None, max_length=40)
    outcome: str = Field(max_length=20)
    received_at: datetime = Field(default_factory=utcnow)
    # Kept for money that matched no order (`outcome` "unmatched_payment"), for ops.
    amount: int | None = None
    currency: str | None = Field(default=None, max_length=3)
    provider_ref: str | None = Field(default=None, max_length=200)


class PaymentAttempt(SQLModel, table=True):
    """Each payment reference an order's payment was started with: a try that timed out
    may still have printed a voucher the shopper pays."""

    txid: str = Field(primary_key=True, max_length=40)
    order_id: str = Field(index=True, max_length=40)
    rail: str = Field(max_length=20)
    created_at: datetime = Field(default_factory=utcnow)


class OrderTransition(SQLModel, table=True):
    """One change of an order's status: the audit log of who moved it, when, and why."""

    id: int | None = Field(default=None, primary_key=True)
    order_id: str = Field(index=True, max_length=40)
    from_status: str = Field(max_length=30)
    to_status: str = Field(max_length=30)
    actor: str = Field(max_length=80)  # "shopper", "rail:stripe", "merchant:slug", "ops"
    event_ref: str | None = Field(default=None, max_length=200)  # the provider's event id
    note: str | None = Field(default=None, max_length=300)
    at: datetime = Field(default_factory=utcnow)


def upgrade_order_status(engine: Engine) -> None:
    """Databases made before order statuses were stored as text hold them as an enum of
    member names ('AWAITING_PAYMENT'): rewrite them as the values the code reads. On
    PostgreSQL the column was a native enum type, changed here to text."""
    table = Order.__tablename__
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            kind = conn.execute(text(
                "SELECT data_type FROM information_schema.columns WHERE table_schema = "
                "current_schema() AND table_name = :t AND column_name = 'status'"),
                {"t": table}).scalar()
            if kind == "USER-DEFINED":
                conn.execute(text(f'ALTER TABLE "{table}" ALTER COLUMN status TYPE varchar(30) '
                                  "USING lower(status::text)"))
            return
        # Cheap when there is nothing to do (every start of the CLI's scheduled commands):
        # the status index answers whether any old name is left.
        old = [s.name for s in OrderStatus]
        left = conn.execute(text(f'SELECT 1 FROM "{table}" WHERE status IN '
                                 f"({', '.join(repr(n) for n in old)}) LIMIT 1")).first()
        if left is not None:
            conn.execute(text(f'UPDATE "{table}" SET status = lower(status) '
                              "WHERE status <> lower(status)"))
