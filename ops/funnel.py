"""The conversion funnel: how many shoppers reached each step."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import func
from sqlmodel import Session, select

from ops.events import ConversionEvent, EventKind

STAGES = ("messages", "recommendations", "clicks", "checkouts", "paid")


class FunnelStages(BaseModel):
    messages: int
    recommendations: int
    clicks: int
    checkouts: int
    paid: int


class Funnel(BaseModel):
    """Stage counts, step-to-step rates, requests that found nothing, revenue per currency."""

    stages: FunnelStages
    rates: dict[str, float | None]
    no_results: int
    revenue: dict[str, int]
    events: dict[str, int]


def funnel(*, session: Session, since: datetime | None = None, until: datetime | None = None,
           market: str | None = None, channel: str | None = None) -> Funnel:
    """Stage counts, step-to-step conversion rates, and paid revenue per currency."""
    filters = []
    if since:
        filters.append(ConversionEvent.created_at >= since)
    if until:
        filters.append(ConversionEvent.created_at < until)
    if market:
        filters.append(ConversionEvent.market == market.upper())
    if channel:
        filters.append(ConversionEvent.channel == channel)

    counts = dict(session.exec(
        select(ConversionEvent.kind, func.count()).where(*filters)
        .group_by(ConversionEvent.kind)
    ).all())
    recommendations = session.exec(
        select(func.count()).where(*filters, ConversionEvent.kind == EventKind.CARDS_SHOWN,
                                   ConversionEvent.position == 1)
    ).one()
    no_results = session.exec(
        select(func.count()).where(*filters, ConversionEvent.kind == EventKind.CARDS_SHOWN,
                                   ConversionEvent.position.is_(None))  # type: ignore[union-attr]
    ).one()
    stages = {
        "messages": counts.get(EventKind.MESSAGE_RECEIVED, 0),
        "recommendations": int(recommendations),
        "clicks": counts.get(EventKind.CARD_CLICKED, 0),
        "checkouts": counts.get(EventKind.CHECKOUT_STARTED, 0),
        "paid": counts.get(EventKind.ORDER_PAID, 0),
    }
    rates = {}
    for before, after in zip(STAGES, STAGES[1:], strict=False):
        rates[f"{before}_to_{after}"] = round(stages[after] / stages[before], 4) \
            if stages[before] else None
    revenue = {cur: int(total or 0) for cur, total in session.exec(
        select(ConversionEvent.currency, func.sum(ConversionEvent.amount))
        .where(*filters, ConversionEvent.kind == EventKind.ORDER_PAID)
        .group_by(ConversionEvent.currency)
    ).all() if cur}
    return Funnel(stages=FunnelStages(**stages), rates=rates, no_results=int(no_results),
                  revenue=revenue, events=dict(sorted(counts.items())))
