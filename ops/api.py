"""Ops HTTP API, behind the ops bearer token."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from sqlmodel import Session

from core.auth import require_bearer
from core.db import as_utc
from ops.funnel import Funnel, funnel

router = APIRouter(prefix="/api/ops", tags=["ops"])


def require_ops_token(request: Request, authorization: str | None = Header(default=None)) -> None:
    """Reject requests without `Authorization: Bearer <VITRINE_OPS_TOKEN>`."""
    require_bearer(authorization, request.app.state.runtime.settings.ops_token, what="ops")


def as_utc_or_none(moment: datetime | None) -> datetime | None:
    """Dates and times without a zone are read as UTC."""
    return as_utc(moment) if moment is not None else None


@router.get("/funnel", dependencies=[Depends(require_ops_token)])
def get_funnel(request: Request,
               since: Annotated[datetime | None, Query(alias="from")] = None,
               until: Annotated[datetime | None, Query(alias="to")] = None,
               market: Annotated[str | None, Query(max_length=2)] = None,
               channel: Annotated[str | None, Query(max_length=20)] = None) -> Funnel:
    """Funnel stage counts and conversion rates."""
    since, until = as_utc_or_none(since), as_utc_or_none(until)
    runtime = request.app.state.runtime
    with Session(runtime.engine) as session:
        return funnel(session=session, since=since, until=until, market=market, channel=channel,
                      llm_price_in_per_mtok=runtime.settings.llm_price_in_per_mtok,
                      llm_price_out_per_mtok=runtime.settings.llm_price_out_per_mtok)
