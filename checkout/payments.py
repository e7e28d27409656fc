"""Payments as providers report them: each verified event applied to its order once.

A rail's webhook (`checkout.webhooks`) and the sweep (`checkout.sweep`) hand their events
here. The event's id is stored in the same transaction as the order's change; the change is
decided on the order as it stands and made only if that still holds; money that arrives for
an order canceled meanwhile is owed back and refunded once the transaction is committed.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from checkout.models import Order, OrderStatus, PaymentAttempt, PaymentEvent
from checkout.orders import can_move, move, note
from checkout.rails import PaymentRail, RailEvent, RailOutcome, RefundOutcome
from checkout.service import TXID_PREFIX, record_order_event
from core.db import session_scope, utcnow
from core.errors import PaymentProviderError
from ops.events import EventKind

log = logging.getLogger("vitrine.payments")


class EventOutcome(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    UNKNOWN_TXID = "unknown_txid"
    IGNORED = "ignored"  # valid event for an order that is not waiting for it
    AMOUNT_MISMATCH = "amount_mismatch"  # paid, but not the order's total: ops must look
    PAID_TWICE = "paid_twice"  # a second payment of a paid order: owed back, ops must look
    PARTIAL_REFUND = "partial_refund"  # part of the total refunded: written on the order
    OTHER_PAYMENT_REFUNDED = "other_payment_refunded"  # a duplicate payment went back


@dataclass
class PaymentResult:
    outcome: EventOutcome
    order: Order | None = None
    # Money arrived for an order canceled meanwhile: once this transaction is committed,
    # ask the rail to send it back (`refund_late_money`); never while holding the write.
    refund_due: bool = False


def apply_payment_event(*, session: Session, rail: str, event: RailEvent,
                        settles: frozenset[str] | None = None) -> PaymentResult:
    """Apply a verified provider event to its order, exactly once.

    The event id is stored in the same transaction as the order's change, and the change
    itself is conditional on the order's status (`checkout.orders.move`), so neither a
    repeated event nor two deliveries racing each other can mark an order paid twice, and a
    late "failed" never undoes "paid". Should the transaction fail after the provider
    captured the money, nothing of it stays: the provider's retry applies it once.

    `settles` names the rails whose orders this provider may settle (its own by default):
    a card provider's webhook never marks a Pix order paid.

    Raises:
        PaymentProviderError: other writers kept moving the order while this was decided;
            nothing is stored and the provider delivers the event again.
    """
    if event.outcome == RailOutcome.NOT_SUPPORTED:
        # News this rail does not act on (another topic, a pending state): acknowledged, so
        # the provider stops sending it, whether or not it names a payment of ours.
        return PaymentResult(EventOutcome.IGNORED)
    if event.txid is None:
        return PaymentResult(EventOutcome.UNKNOWN_TXID)
    order = order_paid_by(session, event.txid)
    if order is None or order.rail not in (settles or {rail}):
        if event.outcome in (RailOutcome.CAPTURED, RailOutcome.AUTHORIZED):
            # Money for no order of this rail (a mistyped transfer reference, a session
            # from a try that timed out): kept for ops to return or match by hand.
            _keep_unmatched(session, rail, event)
        return PaymentResult(EventOutcome.UNKNOWN_TXID)
    try:
        with session.begin_nested():
            session.add(PaymentEvent(provider=rail, event_id=event.event_id, txid=event.txid,
                                     outcome=event.outcome.value))
    except IntegrityError:
        return PaymentResult(EventOutcome.DUPLICATE, order)

    actor = f"rail:{rail}"
    # Decided on the status read, applied only if it still holds: when a withdrawal, the
    # sweep or another event moved the order meanwhile, decide again on what it is now,
    # so the event stored with this transaction is never one whose change was lost.
    for _ in range(MAX_DECISIONS):
        decided = _decide(order, event)
        if isinstance(decided, str):
            if decided in NOTES:
                note(session, order, NOTES[decided].format(
                    amount=event.amount, currency=event.currency or order.currency,
                    total=order.total, order_currency=order.currency),
                     actor=actor, event_ref=event.event_id)
                log.warning("order %s, %s event %s: %s", order.id, rail, event.event_id,
                            decided)
            return PaymentResult(EventOutcome(decided), order)
        new_status, kind, reason = decided
        if not can_move(order, new_status):
            # News that does not apply to the order as it stands (a late "failed" after
            # "paid"): acknowledged, changing nothing; money is written on the order still.
            if event.outcome in PAYMENTS:
                note(session, order, f"a payment arrived while the order was {order.status}",
                     actor=actor, event_ref=event.event_id)
            return PaymentResult(EventOutcome.IGNORED, order)
        values: dict[str, object] = {}
        if new_status == OrderStatus.PAID and order.status == OrderStatus.AWAITING_CONFIRMATION:
            # Paid on an earlier try's instructions: that try's reference is the payment's.
            values.update(txid=order.txid or event.txid, confirmed_at=utcnow())
        if new_status == OrderStatus.PAID or (
                new_status == OrderStatus.REFUND_PENDING and event.outcome in PAYMENTS):
            # Which payment it was, so that the same news told another way applies once;
            # late money is marked owed back until its refund is asked (the sweep retries).
            values["payment"] = {**(order.payment or {}), "paid_by": event.provider_ref,
                                 **({"refund_due": True}
                                    if new_status == OrderStatus.REFUND_PENDING else {})}
        if move(session, order, new_status, actor=actor, event_ref=event.event_id,
                note=reason, **values):
            break
    else:
        raise PaymentProviderError("the order kept changing while its payment was applied",
                                   order=order.id, event=event.event_id)
    if kind is not None:  # money owed back is no sale
        record_order_event(session, kind, order)
    return PaymentResult(EventOutcome.APPLIED, order,
                         refund_due=new_status == OrderStatus.REFUND_PENDING)


def order_paid_by(session: Session, txid: str) -> Order | None:
    """The order a payment reference belongs to: its current payment's, or one of its
    earlier tries' (a voucher printed before a timeout made the shopper tap again). A rail
    that shortens or lengthens the reference (a SEPA RF reference, a Pix API txid) keeps
    Vitrine's as its start or whole."""
    order = session.exec(select(Order).where(Order.txid == txid)).first()
    if order is not None:
        return order
    attempt = session.get(PaymentAttempt, txid)
    if attempt is None and re.fullmatch(f"[A-Za-z0-9]{{{MIN_TXID_MATCH},40}}", txid):
        # Letters and digits only (no LIKE wildcard gets through), long enough to be
        # unguessable: Vitrine's reference cut short (SEPA), or ours plus a digest (Pix API).
        attempt = session.get(PaymentAttempt, txid[:len(TXID_PREFIX) + 23]) or \
            session.exec(select(PaymentAttempt).where(
                col(PaymentAttempt.txid).startswith(txid, autoescape=True))).first()
    return session.get(Order, attempt.order_id) if attempt is not None else None


MIN_TXID_MATCH = 20


def _keep_unmatched(session: Session, rail: str, event: RailEvent) -> None:
    if not (event.txid or "").startswith(TXID_PREFIX):
        return  # another integration's payment on the same provider account
    try:
        with session.begin_nested():
            session.add(PaymentEvent(provider=rail, event_id=event.event_id, txid=event.txid,
                                     outcome=UNMATCHED, amount=event.amount,
                                     currency=event.currency,
                                     provider_ref=event.provider_ref))
    except IntegrityError:
        return  # kept already
    log.warning("%s payment %s (%s %s) matches no order", rail, event.provider_ref,
                event.amount, event.currency)


UNMATCHED = "unmatched_payment"  # a PaymentEvent outcome ops lists: money for no order
PAYMENTS = (RailOutcome.CAPTURED, RailOutcome.AUTHORIZED)
MAX_DECISIONS = 3
# What is written on an order for an event it cannot take.
NOTES = {
    "amount_mismatch": "paid {amount} {currency}, not the order's {total} {order_currency}",
    "paid_twice": "paid again: the second payment is owed back",
    "partial_refund": "{amount} {order_currency} of {total} refunded",
    "other_payment_refunded": "a second payment of {amount} {currency} was refunded",
}


def _decide(order: Order, event: RailEvent
            ) -> tuple[OrderStatus, EventKind | None, str | None] | str:
    """What a provider's event does to the order as it stands: the status to move to (with
    the funnel step and a note), or an outcome when it moves nothing."""
    paid_by = (order.payment or {}).get("paid_by")
    if event.outcome in (RailOutcome.CAPTURED, RailOutcome.AUTHORIZED):
        paid = event.amount if event.amount is not None else order.total
        if paid != order.total or (event.currency or order.currency).upper() != order.currency:
            # Not this order's total: it stays unpaid, and the payment is written on the
            # order for its merchant and ops to settle.
            return EventOutcome.AMOUNT_MISMATCH
        if order.status == OrderStatus.CANCELED:
            # Canceled (or withdrawn) while the code or voucher could still be paid: the
            # money is owed back, and the shopper and the merchant hear so.
            return OrderStatus.REFUND_PENDING, None, "paid after it was canceled: refund due"
        if order.status in (OrderStatus.PAID, OrderStatus.REFUND_PENDING,
                            OrderStatus.REFUNDED):
            if event.provider_ref and event.provider_ref == paid_by:
                return EventOutcome.DUPLICATE  # the same payment, told again another way
            return EventOutcome.PAID_TWICE
        return OrderStatus.PAID, EventKind.ORDER_PAID, None
    if event.outcome == RailOutcome.FAILED:
        if event.reason == "expired":
            return OrderStatus.EXPIRED, EventKind.PAYMENT_EXPIRED, event.reason
        return OrderStatus.FAILED, EventKind.PAYMENT_FAILED, event.reason
    if event.outcome == RailOutcome.REFUNDED:
        if event.refunds and paid_by and event.refunds != paid_by:
            return "other_payment_refunded"
        if event.amount is not None and event.amount < order.total:
            return "partial_refund"
        return OrderStatus.REFUNDED, EventKind.ORDER_REFUNDED, None
    return EventOutcome.IGNORED


def refund_late_money(*, engine: Engine, order_id: str, rail: PaymentRail) -> None:
    """Send money that arrived for a canceled order back through its rail, where the rail
    can (where it cannot, a static code or cash, the merchant refunds and reports it).

    Called after the payment's transaction is committed, so the provider call holds no
    lock. The order stays marked `refund_due` until this has asked, so the sweep asks again
    after a crash in between; the rail's refund is keyed on the order, so asking twice
    refunds once."""
    with Session(engine) as session:
        order = session.get(Order, order_id)
        if order is None or order.status != OrderStatus.REFUND_PENDING or \
                not (order.payment or {}).get("refund_due"):
            return
        try:
            result = rail.refund(order)
        except Exception as exc:
            reason = getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}"
            said, asked = f"automatic refund failed ({reason[:200]}): refund by hand", "failed"
        else:
            if result.outcome == RefundOutcome.REFUNDED:
                asked = result.provider_ref or "asked"
                said = f"refund {result.provider_ref} asked of the provider" \
                    if result.provider_ref else "refund asked of the provider"
            else:
                said, asked = "the rail cannot refund: the merchant refunds by hand", "merchant"
    with session_scope(engine) as session:
        order = session.get(Order, order_id)
        if order is not None:
            payment = {k: v for k, v in (order.payment or {}).items() if k != "refund_due"}
            order.payment = {**payment, "refund": asked}
            session.add(order)
            note(session, order, said, actor=f"rail:{rail.name}")
