"""Spending rules: limits per order and per month, and when instalments may be offered.

Rules, not prompts: nothing here reads the conversation. The conversation asks `check`
before starting a payment and shows an extra confirmation step when an order goes over a
limit; the shopper sets their own limits with `/limit`, and where they set none the
market's defaults apply (`checkout/spending.json`). Amounts are minor units of the market's
currency; a month is the calendar month in UTC.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache
from pathlib import Path

from sqlalchemy import func, text
from sqlmodel import Field, Session, SQLModel, col, select

from checkout.models import Order, OrderStatus
from core.db import hold_sqlite_write_lock, utcnow
from core.errors import InvalidInput

# What counts as spent: money paid, promised at the door, or asked for and not yet failed.
SPENT = (OrderStatus.AWAITING_PAYMENT, OrderStatus.PENDING_COLLECTION, OrderStatus.PAID)


class SpendingLimit(SQLModel, table=True):
    """A shopper's own limits in one currency (None: the market's default applies)."""

    owner_key: str = Field(primary_key=True, max_length=200)
    currency: str = Field(primary_key=True, max_length=3)
    per_order: int | None = None
    per_month: int | None = None
    updated_at: datetime = Field(default_factory=utcnow)


@dataclass(frozen=True)
class MarketRules:
    per_order: int
    per_month: int
    instalment_rails: frozenset[str]
    max_instalments: int
    min_instalment: int  # the smallest amount one instalment may be


@lru_cache
def market_rules() -> dict[str, MarketRules]:
    raw = json.loads(Path(__file__).with_name("spending.json").read_text("utf-8"))
    return {code: MarketRules(per_order=spec["per_order"], per_month=spec["per_month"],
                              instalment_rails=frozenset(spec.get("instalment_rails", ())),
                              max_instalments=spec.get("max_instalments", 1),
                              min_instalment=spec.get("min_instalment", 0))
            for code, spec in raw.items() if not code.startswith("_")}


def rules_for(market: str) -> MarketRules:
    rules = market_rules().get(market)
    if rules is None:
        raise InvalidInput(f"no spending rules for market {market!r}")
    return rules


class Limit(StrEnum):
    PER_ORDER = "per_order"
    PER_MONTH = "per_month"


@dataclass(frozen=True)
class Exceeded:
    limit: Limit
    allowed: int  # the limit, minor units
    spent: int  # already spent this month (0 for the per-order limit)


@dataclass(frozen=True)
class SpendingCheck:
    """Whether an order fits the shopper's limits; if not, which it goes over."""

    exceeded: tuple[Exceeded, ...] = ()

    @property
    def needs_extra_confirmation(self) -> bool:
        return bool(self.exceeded)


def limits_of(*, session: Session, owner_key: str, market: str, currency: str
              ) -> tuple[int, int]:
    """The per-order and per-month limits that apply: the shopper's, else the market's."""
    rules = rules_for(market)
    own = session.get(SpendingLimit, (owner_key, currency))
    per_order = own.per_order if own is not None and own.per_order is not None \
        else rules.per_order
    per_month = own.per_month if own is not None and own.per_month is not None \
        else rules.per_month
    return per_order, per_month


def spent_this_month(*, session: Session, user_keys: list[str], currency: str,
                     now: datetime | None = None, excluding: str | None = None) -> int:
    """What these accounts (one shopper's linked apps) spent in the calendar month."""
    moment = now or utcnow()
    start = datetime(moment.year, moment.month, 1, tzinfo=UTC)
    query = select(func.coalesce(func.sum(Order.total), 0)).where(
        col(Order.user_key).in_(user_keys), Order.currency == currency,
        col(Order.status).in_(SPENT), col(Order.confirmed_at) >= start)
    if excluding is not None:
        query = query.where(Order.id != excluding)
    return int(session.exec(query).one())


def _one_confirmation_at_a_time(session: Session, owner_key: str) -> None:
    """Make the shopper's other confirmations wait for this transaction to end.

    Two orders confirmed at the same moment would each see the month without the other and
    both fit under the limit. On PostgreSQL a lock on the shopper, held to commit, makes
    the second one read the first. SQLite locks nothing smaller than the database, which a
    confirmation cannot hold through the payment provider's call: there the caller checks
    again once the call is over (`check_again`).
    """
    if held_to_commit(session):
        session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
                        {"key": f"vitrine:spending:{owner_key}"})


def held_to_commit(session: Session) -> bool:
    """Whether `check` holds the shopper's confirmations until this transaction ends."""
    return session.get_bind().dialect.name == "postgresql"


def check_again(*, session: Session, order: Order, owner_key: str, user_keys: list[str],
                now: datetime | None = None) -> SpendingCheck | None:
    """Where `check` could not hold other confirmations off (SQLite), check once more, with
    the database's write lock taken and kept to commit: what it reads is final, since no
    other confirmation can commit before this one ends. None where `check` held them off.
    """
    if held_to_commit(session):
        return None
    hold_sqlite_write_lock(session.connection())
    return check(session=session, order=order, owner_key=owner_key, user_keys=user_keys,
                 now=now)


def check(*, session: Session, order: Order, owner_key: str, user_keys: list[str],
          now: datetime | None = None) -> SpendingCheck:
    """Whether the order fits the shopper's limits per order and per month (the caller's
    transaction then holds the shopper's confirmations until it ends)."""
    _one_confirmation_at_a_time(session, owner_key)
    per_order, per_month = limits_of(session=session, owner_key=owner_key,
                                     market=order.market, currency=order.currency)
    exceeded = []
    if order.total > per_order:
        exceeded.append(Exceeded(Limit.PER_ORDER, per_order, 0))
    spent = spent_this_month(session=session, user_keys=user_keys, currency=order.currency,
                             now=now, excluding=order.id)
    if spent + order.total > per_month:
        exceeded.append(Exceeded(Limit.PER_MONTH, per_month, spent))
    return SpendingCheck(tuple(exceeded))


def set_limit(*, session: Session, owner_key: str, currency: str, limit: Limit,
              amount: int | None) -> SpendingLimit:
    """Set (or, with None, clear) one of the shopper's own limits.

    Raises:
        InvalidInput: a negative amount.
    """
    if amount is not None and amount < 0:
        raise InvalidInput("a spending limit cannot be negative")
    own = session.get(SpendingLimit, (owner_key, currency)) or SpendingLimit(
        owner_key=owner_key, currency=currency)
    setattr(own, limit.value, amount)
    own.updated_at = utcnow()
    session.add(own)
    session.flush()  # read back by `limits_of` in the same transaction
    return own


def instalment_choices(*, market: str, rail: str, total: int) -> list[int]:
    """How many instalments the shopper may choose for this order (empty: none offered),
    where the market and the rail allow them and each instalment is not too small."""
    rules = rules_for(market)
    if rail not in rules.instalment_rails or rules.max_instalments < 2:
        return []
    return [n for n in (2, 3, 6, 10, 12)
            if n <= rules.max_instalments and total // n >= rules.min_instalment]
