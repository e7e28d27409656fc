"""Reports over the conversion log: the funnel by day, channel, market or merchant; each
merchant's visibility; sponsored against organic; the requests that found nothing; the cost
of a closed sale. The HTTP API, its CSV exports and the dashboard all read these functions,
so their numbers are the same.

Every report is one aggregate query over `ConversionEvent`, filtered on indexed columns; see
`bench/reports.py` for their speed over a million events.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import and_, func
from sqlalchemy import select as table_select
from sqlmodel import Session, col, select

from core.db import as_utc
from ops.events import ConversionEvent, EventKind
from ops.funnel import MILLION, STAGES, funnel
from ops.tally import Filters, Tally, tally

Dimension = Literal["day", "channel", "market", "merchant"]
DIMENSIONS: tuple[str, ...] = ("day", "channel", "market", "merchant")
MONEY_PLACES = Decimal("0.01")


def _rates(stages: dict[str, int | None]) -> dict[str, float | None]:
    rates: dict[str, float | None] = {}
    for before, after in zip(STAGES, STAGES[1:], strict=False):
        low, high = stages.get(before), stages.get(after)
        rates[f"{before}_to_{after}"] = round(high / low, 4) if low and high is not None \
            else None
    return rates


# The funnel, broken down.

class FunnelRow(BaseModel):
    """One day, channel, market or merchant. By merchant, `messages` is null: a message is
    not any one merchant's until cards answer it."""

    key: str
    messages: int | None
    recommendations: int
    clicks: int
    checkouts: int
    paid: int
    revenue: dict[str, int]
    rates: dict[str, float | None]


def funnel_by(session: Session, filters: Filters, by: Dimension) -> list[FunnelRow]:
    """The funnel's stages and rates for each value of `by`, in order."""
    rows = []
    for (key,), t in sorted(tally(session, filters, (by,)).items(),
                            key=lambda item: str(item[0][0])):
        if key is None:
            continue
        stages: dict[str, int | None] = {
            "messages": None if by == "merchant" else t.count(EventKind.MESSAGE_RECEIVED),
            "recommendations": t.recommendations, "clicks": t.count(EventKind.CARD_CLICKED),
            "checkouts": t.count(EventKind.CHECKOUT_STARTED),
            "paid": t.count(EventKind.ORDER_PAID)}
        if by == "merchant" and not (any(stages.values()) or t.impressions):
            continue  # a merchant only more-like-this or not-for-me touched
        rows.append(FunnelRow(key=str(key), revenue=t.revenue, rates=_rates(stages),
                              **stages))  # type: ignore[arg-type]
    return rows


# Merchants: how visible each one is to the assistant, and what it sold.

class Visibility(BaseModel):
    """How often cards were shown, where, and what came of them."""

    impressions: int
    mean_position: float | None
    clicks: int
    click_rate: float | None
    checkouts: int
    paid_orders: int
    revenue: dict[str, int]


class MerchantRow(Visibility):
    merchant: str


def merchant_visibility(session: Session, filters: Filters) -> list[MerchantRow]:
    """Per merchant: cards shown, their mean position, clicks, checkouts, paid orders and
    revenue, most seen first."""
    rows = [_placement_numbers(t) | {"merchant": str(key)}
            for (key,), t in tally(session, filters, ("merchant",)).items()
            if key is not None]
    return sorted((MerchantRow(**row) for row in rows),
                  key=lambda r: (-r.impressions, r.merchant))


def _placement_numbers(t: Tally) -> dict[str, Any]:
    clicks = t.count(EventKind.CARD_CLICKED)
    return {"impressions": t.impressions, "mean_position": t.mean_position, "clicks": clicks,
            "click_rate": round(clicks / t.impressions, 4) if t.impressions else None,
            "checkouts": t.count(EventKind.CHECKOUT_STARTED),
            "paid_orders": t.count(EventKind.ORDER_PAID), "revenue": t.revenue}


# Sponsored against organic placements.

class PlacementRow(Visibility):
    placement: Literal["sponsored", "organic"]


def sponsored_vs_organic(session: Session, filters: Filters) -> list[PlacementRow]:
    """Cards shown, clicked, bought and paid, for sponsored placements and organic ones.
    A click, checkout or payment counts as sponsored when the card it came from was."""
    by_flag = {bool(flag): t for (flag,), t in
               tally(session, filters, ("sponsored",)).items()}
    return [PlacementRow(placement=name,  # type: ignore[arg-type]
                         **_placement_numbers(by_flag.get(flag, Tally())))
            for flag, name in ((True, "sponsored"), (False, "organic"))]


# Catalog gaps: the requests that found nothing.

class GapRow(BaseModel):
    """Requests alike that found nothing. `text` is there only where the deployment keeps
    shoppers' words; `understood` is what Vitrine made of them, in its own vocabulary."""

    requests: int
    shoppers: int
    understood: str | None
    text: str | None
    last_seen: datetime


def catalog_gaps(session: Session, filters: Filters, *, limit: int = 50) -> list[GapRow]:
    """The most frequent requests that found nothing, most asked first."""
    gap = and_(col(ConversionEvent.kind) == EventKind.CARDS_SHOWN.value,
               col(ConversionEvent.position).is_(None))
    key = func.coalesce(ConversionEvent.text_hash, ConversionEvent.understood, "")
    rows = session.execute(
        table_select(func.count(), func.count(func.distinct(ConversionEvent.user_hash)),
               func.max(ConversionEvent.understood), func.max(ConversionEvent.text),
               func.max(ConversionEvent.created_at))
        .where(*filters.where(merchant=False), gap)
        .group_by(key).order_by(func.count().desc(), func.max(ConversionEvent.created_at).desc())
        .limit(limit)).all()
    return [GapRow(requests=int(n), shoppers=int(who), understood=what, text=text,
                   last_seen=last) for n, who, what, text, last in rows]


# What a closed sale costs.

class SaleCost(BaseModel):
    """The language model's tokens priced per million, plus the configured fixed cost per
    day over the days the range covers, divided by the paid orders. Amounts in USD; null
    where a price is not configured or nothing was sold."""

    paid_orders: int
    tokens_in: int
    tokens_out: int
    llm_cost_usd: Decimal | None
    days: int | None
    fixed_cost_usd: Decimal | None
    total_cost_usd: Decimal | None
    cost_per_sale_usd: Decimal | None


def cost_per_sale(session: Session, filters: Filters, *, price_in: Decimal | None,
                  price_out: Decimal | None, fixed_per_day: Decimal | None,
                  now: datetime) -> SaleCost:
    summary = funnel(session=session, since=filters.since, until=filters.until,
                     market=filters.market, channel=filters.channel,
                     llm_price_in_per_mtok=price_in, llm_price_out_per_mtok=price_out)
    paid = summary.stages.paid
    llm = None
    if price_in is not None and price_out is not None:
        llm = (summary.llm.tokens_in * price_in + summary.llm.tokens_out * price_out) / MILLION
    days = fixed = None
    if fixed_per_day is not None:
        start = filters.since or session.exec(
            select(func.min(ConversionEvent.created_at))).one()
        end = filters.until or now
        if start is not None:
            span = as_utc(end) - as_utc(start)
            days = max(1, -(-span // timedelta(days=1)))  # a day begun counts as a day
            fixed = fixed_per_day * days
    total = None if llm is None and fixed is None else (llm or 0) + (fixed or 0)
    return SaleCost(
        paid_orders=paid, tokens_in=summary.llm.tokens_in, tokens_out=summary.llm.tokens_out,
        llm_cost_usd=llm.quantize(Decimal("0.000001")) if llm is not None else None,
        days=days, fixed_cost_usd=fixed.quantize(MONEY_PLACES) if fixed is not None else None,
        total_cost_usd=Decimal(total).quantize(Decimal("0.000001"))
        if total is not None else None,
        cost_per_sale_usd=(Decimal(total) / paid).quantize(Decimal("0.000001"))
        if total is not None and paid else None)


# CSV.

EVENT_COLUMNS = ("created_at", "kind", "channel", "market", "language", "user_hash",
                 "conversation_id", "merchant", "product_id", "position", "score",
                 "sponsored", "order_id", "amount", "currency", "latency_ms", "parser",
                 "tokens_in", "tokens_out", "text_hash", "understood")


def events_csv(session: Session, filters: Filters, *, batch: int = 5000) -> Iterator[str]:
    """The events in range as CSV, oldest first, streamed in batches (never the stored
    text: exports travel)."""
    yield _csv_line(EVENT_COLUMNS)
    last_id = 0
    while True:
        events = session.exec(
            select(ConversionEvent).where(*filters.where(),
                                          col(ConversionEvent.id) > last_id)
            .order_by(col(ConversionEvent.id)).limit(batch)).all()
        if not events:
            return
        for event in events:
            yield _csv_line(_cell(getattr(event, name)) for name in EVENT_COLUMNS)
        last_id = events[-1].id or last_id


def rows_csv(rows: Iterable[BaseModel]) -> str:
    """A report's rows as CSV, their key (merchant, placement) first; a dict column (revenue
    per currency) becomes one column per key ("revenue_BRL")."""
    flat = [_flatten(_key_first(row.model_dump())) for row in rows]
    columns: list[str] = []
    for row in flat:
        columns += [c for c in row if c not in columns]
    return _csv_line(columns) + "".join(
        _csv_line(_cell(row.get(c)) for c in columns) for row in flat)


def _key_first(values: dict[str, Any]) -> dict[str, Any]:
    keys = [k for k in ("key", "merchant", "placement") if k in values]
    return {**{k: values[k] for k in keys}, **values}


def _flatten(values: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, value in values.items():
        if isinstance(value, dict):
            flat.update({f"{name}_{k}": v for k, v in value.items()})
        else:
            flat[name] = value
    return flat


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    text = str(value)
    if isinstance(value, int | float):
        return text
    # A product id or request like "=HYPERLINK(...)" or "-2+3" must not run as a formula.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _csv_line(values: Iterable[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(list(values))
    return buffer.getvalue()
