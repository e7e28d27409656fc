"""Checkout v0: buy -> confirmation -> confirm -> payment on the market's rail -> paid once.

Prices and stock always come from the merchant's catalog row at the moment of each step;
a price that changed between the card and the confirmation is shown again, never charged
silently.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import cast

from sqlalchemy import CursorResult, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from catalog.models import CatalogProduct
from catalog.store import get_product
from checkout.models import Order, OrderStatus, PaymentEvent
from checkout.rails import PaymentInstructions, PaymentRail, RailOutcome
from core.db import utcnow
from core.errors import InvalidInput, NotFound
from core.markets import Market
from ops.events import EventKind, record_event

TXID_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def new_txid() -> str:
    """A 25-character alphanumeric reference, unique enough to key payments on."""
    return "VT" + "".join(secrets.choice(TXID_ALPHABET) for _ in range(23))


def new_order_id() -> str:
    return "ord_" + secrets.token_hex(8)


class StartOutcome(StrEnum):
    STARTED = "started"
    REOPENED = "reopened"  # the same product was already awaiting this shopper's confirmation
    OUT_OF_STOCK = "out_of_stock"
    UNKNOWN_PRODUCT = "unknown_product"


@dataclass
class CheckoutStart:
    outcome: StartOutcome
    order: Order | None = None


class ConfirmOutcome(StrEnum):
    CONFIRMED = "confirmed"
    PRICE_CHANGED = "price_changed"
    OUT_OF_STOCK = "out_of_stock"
    NOT_PENDING = "not_pending"
    RAIL_REFUSED = "rail_refused"


@dataclass
class Confirmation:
    outcome: ConfirmOutcome
    order: Order
    instructions: PaymentInstructions | None = None
    old_total: int | None = None


class EventOutcome(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    UNKNOWN_TXID = "unknown_txid"
    IGNORED = "ignored"  # valid event for an order that is not waiting for it


@dataclass
class PaymentResult:
    outcome: EventOutcome
    order: Order | None = None


def record_order_event(session: Session, kind: EventKind, order: Order) -> None:
    """Log a funnel step about an order, with its merchant, product and value."""
    record_event(session, kind, user_key=order.user_key, conversation_id=order.conversation_id,
                 market=order.market, language=order.language, merchant=order.merchant_slug,
                 product_id=order.product_id, order_id=order.id, amount=order.total,
                 currency=order.currency)


def _current(session: Session, order: Order) -> CatalogProduct | None:
    try:
        product, _ = get_product(session=session, merchant_slug=order.merchant_slug,
                                 product_id=order.product_id)
    except NotFound:
        return None
    return product


def start_checkout(*, session: Session, user_key: str, conversation_id: str, market: Market,
                   language: str, merchant_slug: str, product_id: str) -> CheckoutStart:
    """Open an order awaiting the shopper's confirmation, priced from the catalog now."""
    try:
        product, merchant = get_product(session=session, merchant_slug=merchant_slug,
                                        product_id=product_id)
    except NotFound:
        return CheckoutStart(StartOutcome.UNKNOWN_PRODUCT)
    if not product.in_stock or merchant.market != market.code or product.price_amount <= 0:
        return CheckoutStart(StartOutcome.OUT_OF_STOCK)
    rail = market.rails[0]
    fee = market.cod_fee if rail == "cod" else 0
    open_order = session.exec(select(Order).where(
        Order.user_key == user_key, Order.merchant_slug == merchant.slug,
        Order.product_id == product.product_id,
        Order.status == OrderStatus.AWAITING_CONFIRMATION)).first()
    if open_order is not None:
        # A second tap on Buy reopens the same order, priced again from the catalog.
        open_order.amount, open_order.currency = product.price_amount, product.currency
        open_order.total = open_order.amount + open_order.fee
        session.add(open_order)
        return CheckoutStart(StartOutcome.REOPENED, open_order)
    order = Order(
        id=new_order_id(), user_key=user_key, conversation_id=conversation_id,
        market=market.code, language=language, merchant_slug=merchant.slug,
        merchant_name=merchant.name, product_id=product.product_id, title=product.title,
        amount=product.price_amount, fee=fee, total=product.price_amount + fee,
        currency=product.currency, rail=rail,
    )
    session.add(order)
    record_order_event(session, EventKind.CHECKOUT_STARTED, order)
    return CheckoutStart(StartOutcome.STARTED, order)


def find_order(*, session: Session, order_id: str, user_key: str) -> Order | None:
    """The shopper's own order with this id; another shopper's order is not found."""
    order = session.get(Order, order_id)
    if order is None or order.user_key != user_key:
        return None
    return order


def confirm_order(*, session: Session, order: Order, rails: dict[str, PaymentRail]) -> Confirmation:
    """The shopper tapped confirm: re-check price and stock, then start the payment."""
    if order.status != OrderStatus.AWAITING_CONFIRMATION:
        return Confirmation(ConfirmOutcome.NOT_PENDING, order)
    product = _current(session, order)
    if product is None or not product.in_stock:
        order.status = OrderStatus.CANCELED
        session.add(order)
        return Confirmation(ConfirmOutcome.OUT_OF_STOCK, order)
    if product.price_amount != order.amount or product.currency != order.currency:
        old_total = order.total
        order.amount = product.price_amount
        order.currency = product.currency
        order.total = order.amount + order.fee
        session.add(order)
        return Confirmation(ConfirmOutcome.PRICE_CHANGED, order, old_total=old_total)
    txid = new_txid()
    try:
        instructions = rails[order.rail].initiate(order, txid=txid)
    except InvalidInput:
        order.status = OrderStatus.CANCELED
        session.add(order)
        return Confirmation(ConfirmOutcome.RAIL_REFUSED, order)
    order.txid = txid
    order.payment = instructions.as_dict()
    order.status = OrderStatus(instructions.status)
    order.confirmed_at = utcnow()
    session.add(order)
    record_order_event(session, EventKind.CHECKOUT_CONFIRMED, order)
    record_order_event(session, EventKind.PAYMENT_PENDING, order)
    return Confirmation(ConfirmOutcome.CONFIRMED, order, instructions)


def cancel_order(*, session: Session, order: Order) -> bool:
    """Cancel an order the shopper has not confirmed yet; False if it is past that."""
    if order.status != OrderStatus.AWAITING_CONFIRMATION:
        return False
    order.status = OrderStatus.CANCELED
    session.add(order)
    record_order_event(session, EventKind.CHECKOUT_CANCELED, order)
    return True


def apply_payment_event(*, session: Session, provider: str, event_id: str, txid: str,
                        outcome: RailOutcome) -> PaymentResult:
    """Apply a verified provider event to its order, exactly once.

    The event id is stored in the same transaction as the order's change, and the change
    itself is conditional on the order still awaiting payment, so neither a repeated event
    nor two deliveries racing each other can mark an order paid twice.
    """
    order = session.exec(select(Order).where(Order.txid == txid)).first()
    if order is None:
        return PaymentResult(EventOutcome.UNKNOWN_TXID)
    try:
        with session.begin_nested():
            session.add(PaymentEvent(provider=provider, event_id=event_id, txid=txid,
                                     outcome=outcome.value))
    except IntegrityError:
        return PaymentResult(EventOutcome.DUPLICATE, order)

    if outcome in (RailOutcome.CAPTURED, RailOutcome.AUTHORIZED):
        new_status, kind = OrderStatus.PAID, EventKind.ORDER_PAID
    elif outcome == RailOutcome.FAILED:
        new_status, kind = OrderStatus.FAILED, EventKind.PAYMENT_FAILED
    else:
        return PaymentResult(EventOutcome.IGNORED, order)
    now = utcnow()
    # Money that arrives after a failed attempt (a static Pix code paid again) still counts.
    waiting = [OrderStatus.AWAITING_PAYMENT]
    if new_status == OrderStatus.PAID:
        waiting.append(OrderStatus.FAILED)
    changed = cast(CursorResult, session.execute(
        update(Order)
        .where(col(Order.id) == order.id, col(Order.status).in_(waiting))
        .values(status=new_status, paid_at=now if new_status == OrderStatus.PAID else None)
    )).rowcount
    if not changed:
        return PaymentResult(EventOutcome.IGNORED, order)
    session.refresh(order)
    record_order_event(session, kind, order)
    return PaymentResult(EventOutcome.APPLIED, order)
