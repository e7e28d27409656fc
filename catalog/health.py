"""Merchant health: is its catalog answering, how fast, how often it fails."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from sqlmodel import Session, col, select

from catalog.models import Merchant, MerchantCall, MerchantKind

WINDOW = 200  # the most recent live calls that make up the error rate and latency
DEGRADED_ERROR_RATE = 0.2
DOWN_ERROR_RATE = 0.8


class MerchantHealth(BaseModel):
    merchant: str
    kind: MerchantKind
    status: str  # ok | degraded | down | never_synced
    product_count: int
    rejected_count: int
    synced_at: datetime | None
    last_error: str | None
    calls: int
    error_rate: float | None
    p95_latency_ms: float | None


def record_call(session: Session, *, merchant: Merchant, operation: str, ok: bool,
                latency_ms: float, dropped: int = 0) -> None:
    """Append one live call's outcome (in the caller's transaction)."""
    session.add(MerchantCall(merchant_id=merchant.id or 0, operation=operation, ok=ok,
                             latency_ms=round(latency_ms, 2), dropped=dropped))


def p95(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def merchant_health(*, session: Session, merchant: Merchant) -> MerchantHealth:
    calls = list(session.exec(
        select(MerchantCall).where(MerchantCall.merchant_id == merchant.id)
        .order_by(col(MerchantCall.id).desc()).limit(WINDOW)))
    error_rate = (sum(1 for c in calls if not c.ok) / len(calls)) if calls else None
    if merchant.kind == MerchantKind.MCP:
        if error_rate is None:
            status = "never_synced" if merchant.synced_at is None else "ok"
        elif error_rate >= DOWN_ERROR_RATE:
            status = "down"
        elif error_rate >= DEGRADED_ERROR_RATE:
            status = "degraded"
        else:
            status = "ok"
    elif merchant.synced_at is None:
        status = "never_synced"
    else:
        status = "degraded" if merchant.last_error else "ok"
    return MerchantHealth(
        merchant=merchant.slug, kind=merchant.kind, status=status,
        product_count=merchant.product_count, rejected_count=merchant.rejected_count,
        synced_at=merchant.synced_at, last_error=merchant.last_error, calls=len(calls),
        error_rate=round(error_rate, 4) if error_rate is not None else None,
        p95_latency_ms=p95([c.latency_ms for c in calls if c.ok]))
