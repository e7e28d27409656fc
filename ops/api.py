"""Ops HTTP API, behind the ops bearer token; and each merchant's own visibility report,
behind its API key.

Every report takes the same filters (`from`, `to`, `channel`, `market`, `merchant`) and
answers JSON, or CSV with `format=csv`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel
from sqlalchemy.engine import Engine
from sqlmodel import Session

from catalog.merchants import merchant_for_key
from core.auth import require_bearer
from core.db import as_utc, utcnow
from core.errors import InvalidInput
from ops.funnel import Funnel, funnel
from ops.reports import (
    Filters,
    FunnelRow,
    GapRow,
    MerchantRow,
    PlacementRow,
    SaleCost,
    catalog_gaps,
    cost_per_sale,
    events_csv,
    funnel_by,
    merchant_visibility,
    rows_csv,
    sponsored_vs_organic,
)

router = APIRouter(prefix="/api/ops", tags=["ops"])
merchant_router = APIRouter(prefix="/api/merchants", tags=["ops"])
Format = Literal["json", "csv"]


def require_ops_token(request: Request, authorization: str | None = Header(default=None)) -> None:
    """Reject requests without `Authorization: Bearer <VITRINE_OPS_TOKEN>`."""
    require_bearer(authorization, request.app.state.runtime.settings.ops_token, what="ops")


EARLIEST, LATEST = datetime(1970, 1, 1, tzinfo=UTC), datetime(9000, 1, 1, tzinfo=UTC)


def as_utc_or_none(moment: datetime | None) -> datetime | None:
    """A time in UTC; one given without a zone is read as UTC.

    Raises:
        InvalidInput: a time outside 1970-8999, which no event can have.
    """
    if moment is None:
        return None
    moment = as_utc(moment).astimezone(UTC)
    if not EARLIEST <= moment < LATEST:
        raise InvalidInput("`from` and `to` must be between 1970 and 8999")
    return moment


# The filters' query parameters, shared with the dashboard.
ChannelQuery = Annotated[str | None, Query(max_length=20)]
MarketQuery = Annotated[str | None, Query(max_length=2)]
MerchantQuery = Annotated[str | None, Query(max_length=64)]


def report_filters(since: Annotated[datetime | None, Query(alias="from")] = None,
                   until: Annotated[datetime | None, Query(alias="to")] = None,
                   channel: ChannelQuery = None, market: MarketQuery = None,
                   merchant: MerchantQuery = None) -> Filters:
    """The filters every report takes; `from` inclusive, `to` exclusive."""
    since, until = as_utc_or_none(since), as_utc_or_none(until)
    if since is not None and until is not None and until <= since:
        raise InvalidInput("`to` must be after `from`")
    return Filters(since=since, until=until, channel=channel or None,
                   market=(market or "").upper() or None, merchant=merchant or None)


Ops = Depends(require_ops_token)
ReportFilters = Annotated[Filters, Depends(report_filters)]


def _engine(request: Request) -> Engine:
    return request.app.state.runtime.engine


def _answer(rows: list[BaseModel], fmt: Format, name: str) -> list[BaseModel] | Response:
    if fmt == "csv":
        return Response(rows_csv(rows), media_type="text/csv; charset=utf-8", headers={
            "Content-Disposition": f'attachment; filename="vitrine-{name}.csv"'})
    return rows


@router.get("/funnel", dependencies=[Ops])
def get_funnel(request: Request, filters: ReportFilters) -> Funnel:
    """Funnel stage counts and conversion rates."""
    if filters.merchant:
        raise InvalidInput("messages belong to no merchant: see /api/ops/funnel/merchant")
    settings = request.app.state.runtime.settings
    with Session(_engine(request)) as session:
        return funnel(session=session, since=filters.since, until=filters.until,
                      market=filters.market, channel=filters.channel,
                      llm_price_in_per_mtok=settings.llm_price_in_per_mtok,
                      llm_price_out_per_mtok=settings.llm_price_out_per_mtok)


@router.get("/funnel/{by}", dependencies=[Ops], response_model=list[FunnelRow])
def get_funnel_by(request: Request, by: Literal["day", "channel", "market", "merchant"],
                  filters: ReportFilters, format: Format = "json") -> Any:
    """The funnel's stages and rates by day, channel, market or merchant."""
    with Session(_engine(request)) as session:
        return _answer(list(funnel_by(session, filters, by)), format, f"funnel-by-{by}")


@router.get("/merchants", dependencies=[Ops], response_model=list[MerchantRow])
def get_merchants(request: Request, filters: ReportFilters,
                  format: Format = "json") -> Any:
    """Each merchant's visibility: impressions, mean position, clicks, checkouts, paid
    orders, revenue."""
    with Session(_engine(request)) as session:
        return _answer(list(merchant_visibility(session, filters)), format, "merchants")


@router.get("/placements", dependencies=[Ops], response_model=list[PlacementRow])
def get_placements(request: Request, filters: ReportFilters,
                   format: Format = "json") -> Any:
    """Sponsored placements against organic ones."""
    with Session(_engine(request)) as session:
        return _answer(list(sponsored_vs_organic(session, filters)), format, "placements")


@router.get("/gaps", dependencies=[Ops], response_model=list[GapRow])
def get_gaps(request: Request, filters: ReportFilters, format: Format = "json",
             limit: Annotated[int, Query(ge=1, le=500)] = 50) -> Any:
    """The requests that found nothing, most asked first: the catalog's gaps."""
    with Session(_engine(request)) as session:
        gaps = catalog_gaps(session, filters, limit=limit)
    if format == "csv":  # exports travel: never the shoppers' words
        gaps = [gap.model_copy(update={"text": None}) for gap in gaps]
    return _answer(list(gaps), format, "gaps")


@router.get("/cost", dependencies=[Ops], response_model=SaleCost)
def get_cost(request: Request, filters: ReportFilters,
             format: Format = "json") -> Any:
    """What a closed sale cost: the language model's tokens and the fixed cost per day."""
    if filters.merchant:
        raise InvalidInput("the model's tokens and fixed costs belong to no merchant")
    settings = request.app.state.runtime.settings
    with Session(_engine(request)) as session:
        cost = cost_per_sale(session, filters, price_in=settings.llm_price_in_per_mtok,
                             price_out=settings.llm_price_out_per_mtok,
                             fixed_per_day=settings.ops_fixed_cost_per_day_usd, now=utcnow())
    answer = _answer([cost], format, "cost")
    return answer if isinstance(answer, Response) else cost


@router.get("/events.csv", dependencies=[Ops])
def get_events_csv(request: Request, filters: ReportFilters) -> StreamingResponse:
    """Every conversion event in range, as CSV, streamed (stored words never included)."""
    session = Session(_engine(request))

    def lines() -> Iterator[str]:
        try:
            yield from events_csv(session, filters)
        finally:
            session.close()

    return StreamingResponse(lines(), media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": 'attachment; filename="vitrine-events.csv"'})


@merchant_router.get("/{slug}/visibility", response_model=list[MerchantRow])
def get_own_visibility(slug: str, request: Request, filters: ReportFilters,
                       authorization: Annotated[str | None, Header()] = None,
                       format: Format = "json") -> Any:
    """A merchant's own visibility report, with its API key; nothing of other merchants."""
    with Session(_engine(request)) as session:
        merchant = merchant_for_key(session, slug, authorization)
        own = Filters(since=filters.since, until=filters.until, channel=filters.channel,
                      market=filters.market, merchant=merchant.slug)
        rows = merchant_visibility(session, own) or [MerchantRow(
            merchant=merchant.slug, impressions=0, mean_position=None, clicks=0,
            click_rate=None, checkouts=0, paid_orders=0, revenue={})]
        return _answer(list(rows), format, f"visibility-{merchant.slug}")
