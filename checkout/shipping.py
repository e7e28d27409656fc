"""What delivery costs: each merchant's rate, set over the API and added to its orders.

Product feeds carry no shipping options, so a merchant states one flat rate per order in
its currency, optionally free from some order amount (`PUT /api/merchants/{slug}/shipping`).
The confirmation card shows it, and the total the shopper approves includes it.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, Session, SQLModel

from core.db import utcnow
from core.errors import InvalidInput


class ShippingRate(SQLModel, table=True):
    """A merchant's delivery charge per order (minor units), and the amount from which
    delivery is free (None: never)."""

    merchant_slug: str = Field(primary_key=True, max_length=64)
    currency: str = Field(max_length=3)
    flat: int = 0
    free_from: int | None = None
    updated_at: datetime = Field(default_factory=utcnow)


def shipping_for(*, session: Session, merchant_slug: str, amount: int, currency: str) -> int:
    """What delivering an order of `amount` costs at this merchant (0 with no rate set, or
    a rate in another currency, which the merchant must set again)."""
    rate = session.get(ShippingRate, merchant_slug)
    if rate is None or rate.currency != currency:
        return 0
    if rate.free_from is not None and amount >= rate.free_from:
        return 0
    return rate.flat


def set_rate(*, session: Session, merchant_slug: str, currency: str, flat: int,
             free_from: int | None) -> ShippingRate:
    """Set a merchant's rate.

    Raises:
        InvalidInput: a negative amount.
    """
    if flat < 0 or (free_from is not None and free_from < 0):
        raise InvalidInput("shipping amounts are zero or more, in minor units")
    rate = session.get(ShippingRate, merchant_slug) or ShippingRate(
        merchant_slug=merchant_slug, currency=currency)
    rate.currency, rate.flat, rate.free_from, rate.updated_at = currency, flat, free_from, \
        utcnow()
    session.add(rate)
    return rate
