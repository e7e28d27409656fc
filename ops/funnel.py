"""The conversion funnel: how many shoppers reached each step."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, Field
from sqlmodel import Session

from ops.events import EventKind
from ops.tally import Filters, total

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
    t = total(session, Filters(since=since, until=until, market=market, channel=channel))
    stages = {
        "messages": t.count(EventKind.MESSAGE_RECEIVED),
        "recommendations": t.recommendations,
        "clicks": t.count(EventKind.CARD_CLICKED),
        "checkouts": t.count(EventKind.CHECKOUT_STARTED),
        "paid": t.count(EventKind.ORDER_PAID),
    }
    rates = {}
    for before, after in zip(STAGES, STAGES[1:], strict=False):
        rates[f"{before}_to_{after}"] = round(stages[after] / stages[before], 4) \
            if stages[before] else None
    usage = LlmUsage(understood=t.understood_by_llm, tokens_in=t.tokens_in,
                     tokens_out=t.tokens_out)
    if llm_price_in_per_mtok is not None and llm_price_out_per_mtok is not None:
        cost = (usage.tokens_in * llm_price_in_per_mtok
                + usage.tokens_out * llm_price_out_per_mtok) / MILLION
        usage.cost_usd = cost.quantize(COST_PLACES)
        if stages["paid"]:
            usage.cost_per_paid_order_usd = (cost / stages["paid"]).quantize(COST_PLACES)
    return Funnel(stages=FunnelStages(**stages), rates=rates, no_results=t.no_results,
                  revenue=dict(sorted(t.revenue.items())), events=dict(sorted(t.kinds.items())),
                  llm=usage)
