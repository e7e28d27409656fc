"""The payments sweep (`vitrine payments sweep`, run every few minutes from a scheduler).

Webhooks get lost: a provider gives up, an endpoint was down for a day. For orders awaiting
payment longer than a few minutes, the sweep asks the rail's provider (`PaymentRail.status`)
and applies what it says through the same exactly-once path as a webhook (the provider's
state is the event id, so news that also arrives by webhook applies once). Orders whose
payment instructions have run out (an OXXO voucher, a checkout session) and that no news
has paid are then marked expired, and the shopper is told.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from checkout.models import Order, OrderStatus
from checkout.notices import notify_status
from checkout.orders import move
from checkout.payments import EventOutcome, apply_payment_event, refund_late_money
from checkout.rails import PaymentRail
from checkout.service import record_order_event
from core.db import as_utc, session_scope, utcnow
from core.errors import VitrineError
from ops.events import EventKind

log = logging.getLogger("vitrine.payments")

ASK_AFTER = timedelta(minutes=10)  # webhooks usually come within seconds
# Failed and expired orders are asked about for a while too: money can still arrive (an
# OXXO voucher paid at the till is confirmed up to a business day later).
LATE_MONEY = timedelta(days=3)
BATCH = 500
ASKED = (OrderStatus.AWAITING_PAYMENT, OrderStatus.FAILED, OrderStatus.EXPIRED)


def sweep(*, engine: Engine, rails: dict[str, PaymentRail], now: datetime | None = None,
          ask_after: timedelta = ASK_AFTER) -> dict[str, int]:
    """Ask providers about overdue payments, then expire what ran out; count each."""
    moment = now or utcnow()
    counts = {"asked": 0, "applied": 0, "expired": 0, "provider_errors": 0,
              "refunds_asked": 0}
    # Only rails whose provider can be asked: static Pix, UPI and SEPA codes are known only
    # from their notices, and would fill the batch for ever.
    polled = [name for name, rail in rails.items() if getattr(rail, "polls", False)]
    with Session(engine) as session:
        waiting = list(session.exec(
            select(Order.id, Order.rail).where(
                col(Order.status).in_(ASKED), col(Order.rail).in_(polled),
                col(Order.confirmed_at) <= moment - ask_after,
                col(Order.confirmed_at) >= moment - LATE_MONEY)
            .order_by(col(Order.confirmed_at).desc()).limit(BATCH)))
    for order_id, rail_name in waiting:
        rail = rails.get(rail_name)
        if rail is None:
            continue
        # One transaction per order: a provider's slow answer holds no lock on the others.
        with session_scope(engine) as session:
            order = session.get(Order, order_id)
            if order is None or order.status not in ASKED:
                continue
            try:
                event = rail.status(order)
            except (VitrineError, ArithmeticError) as exc:  # one order stops nothing
                counts["provider_errors"] += 1
                log.warning("asking %s about order %s failed: %s", rail_name, order_id,
                            getattr(exc, "reason", exc))
                continue
            counts["asked"] += 1
            if event is None:
                continue
            try:
                result = apply_payment_event(session=session, rail=rail_name, event=event)
            except VitrineError as exc:  # a race that never settled: asked again next run
                log.warning("order %s: %s", order_id, exc.reason)
                continue
            if result.outcome == EventOutcome.APPLIED:
                counts["applied"] += 1
                notify_status(session, order)
    # Late money whose refund was not asked yet (the process stopped right after the
    # payment was recorded): asked now.
    with Session(engine) as session:
        owed = [(o.id, o.rail) for o in session.exec(select(Order).where(
            Order.status == OrderStatus.REFUND_PENDING)) if (o.payment or {}).get("refund_due")]
    for order_id, rail_name in owed:
        rail = rails.get(rail_name) or rails.get("sandbox")
        if rail is not None:
            refund_late_money(engine=engine, order_id=order_id, rail=rail)
            counts["refunds_asked"] += 1
    counts["expired"] = expire_overdue(engine=engine, now=moment)
    return counts


def expire_overdue(*, engine: Engine, now: datetime | None = None) -> int:
    """Mark expired the orders whose payment instructions ran out unpaid."""
    moment = now or utcnow()
    expired = 0
    with session_scope(engine) as session:
        for order in session.exec(select(Order).where(
                Order.status == OrderStatus.AWAITING_PAYMENT)):
            ends = (order.payment or {}).get("expires_at")
            if not ends or as_utc(datetime.fromisoformat(str(ends))) > moment:
                continue
            if move(session, order, OrderStatus.EXPIRED, actor="system",
                    note="the payment instructions ran out"):
                record_order_event(session, EventKind.PAYMENT_EXPIRED, order)
                notify_status(session, order)
                expired += 1
    return expired
