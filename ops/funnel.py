"""The conversion funnel: how many shoppers reached each step."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, Field
from sqlalchemy import and_, case, func
from sqlmodel import Session, col, select

from ops.events import ConversionEvent, EventKind

STAGES = ("messages", "recommendations", "clicks", "checkouts", "paid")
MILLION = Decimal(1_000_000)
COST_PLACES = Decimal("0.000001")  # USD to a millionth: one token of a cheap model shows


class FunnelStages(BaseModel):
    messages: int
    recommendations: int
    clicks: int
    checkouts: int
    paid: int


class LlmUsage(BaseModel):
    """Language-model tokens spent understanding messages, and their cost in USD when the
    price per million tokens is configured (otherwise null)."""

    understood: int = 0  # messages whose understanding used the model's answer
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: Decimal | None = None
    cost_per_paid_order_usd: Decimal | None = None


class Funnel(BaseModel):
    """Stage counts, step-to-step rates, requests that found nothing, revenue per currency,
    and what the language model cost."""

    stages: FunnelStages
    rates: dict[str, float | None]
    no_results: int
    revenue: dict[str, int]
    events: dict[str, int]
    llm: LlmUsage = Field(default_factory=LlmUsage)


def funnel(*, session: Session, since: datetime | None = None, until: datetime | None = None,
           market: str | None = None, channel: str | None = None,
           llm_price_in_per_mtok: Decimal | None = None,
           llm_price_out_per_mtok: Decimal | None = None) -> Funnel:
    """Stage counts, step-to-step conversion rates, paid revenue per currency, and language
    model tokens (with their cost when both prices per million tokens are given)."""
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
    llm = llm_usage(session=session, filters=filters, paid=stages["paid"],
                    price_in=llm_price_in_per_mtok, price_out=llm_price_out_per_mtok)
    return Funnel(stages=FunnelStages(**stages), rates=rates, no_results=int(no_results),
                  revenue=revenue, events=dict(sorted(counts.items())), llm=llm)


def llm_usage(*, session: Session, filters: list, paid: int, price_in: Decimal | None,
              price_out: Decimal | None) -> LlmUsage:
    """Tokens spent on messages (on the understood request, or on the message itself when
    nothing was asked for); cost = tokens x USD per million tokens."""
    by_llm = case((and_(col(ConversionEvent.parser) == "llm",
                        col(ConversionEvent.kind) == EventKind.INTENT_UNDERSTOOD), 1), else_=0)
    understood, tokens_in, tokens_out = session.exec(
        select(func.sum(by_llm), func.sum(ConversionEvent.tokens_in),
               func.sum(ConversionEvent.tokens_out))
        .where(*filters, col(ConversionEvent.kind).in_(
            [EventKind.INTENT_UNDERSTOOD, EventKind.MESSAGE_RECEIVED]))
    ).one()
    usage = LlmUsage(understood=understood or 0, tokens_in=tokens_in or 0,
                     tokens_out=tokens_out or 0)
    if price_in is not None and price_out is not None:
        cost = (usage.tokens_in * price_in + usage.tokens_out * price_out) / MILLION
        usage.cost_usd = cost.quantize(COST_PLACES)
        if paid:
            usage.cost_per_paid_order_usd = (cost / paid).quantize(COST_PLACES)
    return usage
