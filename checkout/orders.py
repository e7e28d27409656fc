"""Orders as a state machine: every change of status is allowed by `TRANSITIONS`, happens
exactly once, and leaves a line in the audit log (`OrderTransition`).

A change is a conditional update ("from the status I read, to the next"), so two deliveries
of the same news racing each other, or a late event arriving after a newer one, move the
order at most once and never backwards: a "failed" that arrives after "paid" changes nothing.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, update
from sqlmodel import Session, col, select

from checkout.merchant_notices import queue_news
from checkout.models import Order, OrderStatus, OrderTransition
from core.db import utcnow

S = OrderStatus
TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    # Paid straight from here: a try whose answer was lost had printed a voucher, and the
    # shopper paid it before confirming again.
    S.AWAITING_CONFIRMATION: frozenset({S.AWAITING_PAYMENT, S.PENDING_COLLECTION, S.CANCELED,
                                        S.PAID}),
    S.AWAITING_PAYMENT: frozenset({S.PAID, S.FAILED, S.EXPIRED, S.CANCELED}),
    # Money that arrives after a failure or an expiry (a static Pix code paid late) counts.
    S.FAILED: frozenset({S.PAID, S.CANCELED}),
    S.EXPIRED: frozenset({S.PAID}),
    S.PENDING_COLLECTION: frozenset({S.PAID, S.CANCELED}),
    S.PAID: frozenset({S.REFUNDED, S.REFUND_PENDING}),
    S.REFUND_PENDING: frozenset({S.REFUNDED}),
    # Money that arrives for an order canceled meanwhile is owed back to the shopper.
    S.CANCELED: frozenset({S.REFUND_PENDING}),
    S.REFUNDED: frozenset(),
}


def can_move(order: Order, to: OrderStatus) -> bool:
    return to in TRANSITIONS[OrderStatus(order.status)]


def move(session: Session, order: Order, to: OrderStatus, *, actor: str,
         event_ref: str | None = None, note: str | None = None,
         **values: Any) -> bool:
    """Move an order to a new status once, with `values` set on it, and log who did it.

    Returns:
        False (and nothing written) when the order's status does not allow the move, or
        another writer moved it first.
    """
    start = OrderStatus(order.status)
    if to not in TRANSITIONS[start]:
        return False
    if to == S.PAID:
        values.setdefault("paid_at", utcnow())
    if order in session.new:  # opened in this transaction: nobody else can see it yet
        order.status = to
        for key, value in values.items():
            setattr(order, key, value)
    else:
        changed = cast(CursorResult, session.execute(
            update(Order)
            .where(col(Order.id) == order.id, col(Order.status) == start)
            .values(status=to, **values)
        )).rowcount
        session.refresh(order)
        if not changed:
            return False
    session.add(OrderTransition(order_id=order.id, from_status=start.value, to_status=to.value,
                                actor=actor, event_ref=event_ref, note=note))
    # The merchant hears of it in the same transaction: no news of a change undone, and
    # no change without its news.
    queue_news(session, order, to, was=start)
    return True


def note(session: Session, order: Order, text: str, *, actor: str,
         event_ref: str | None = None) -> None:
    """Log something that happened to an order without changing its status (a delivery, a
    payment that does not match it), for its merchant and ops to read."""
    session.add(OrderTransition(order_id=order.id, from_status=order.status,
                                to_status=order.status, actor=actor, event_ref=event_ref,
                                note=text[:300]))


def history(*, session: Session, order_id: str) -> list[OrderTransition]:
    """Every change of the order's status, oldest first."""
    return list(session.exec(select(OrderTransition)
                             .where(OrderTransition.order_id == order_id)
                             .order_by(col(OrderTransition.at), col(OrderTransition.id))))
