"""Checkout: buy -> confirmation (rail, instalments, payer) -> confirm -> the payment
starts on the rail. What providers then report is applied by `checkout.payments`.

Prices and stock always come from the merchant's catalog row at the moment of each step;
a price that changed between the card and the confirmation is shown again, never charged
silently; spending limits are checked at confirmation, by rule.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import update
from sqlmodel import Session, col, select

from catalog.models import CatalogProduct
from catalog.store import get_product
from checkout import spending
from checkout.models import Order, OrderStatus, OrderTransition, PaymentAttempt
from checkout.orders import move
from checkout.rails import PaymentInstructions, PaymentRail
from checkout.shipping import shipping_for
from checkout.spending import SpendingCheck
from core.db import utcnow
from core.errors import InvalidInput, NotFound, PayerRefused, PaymentProviderError
from core.markets import Market
from core.turns import waiting
from ops.events import EventKind, record_event

log = logging.getLogger("vitrine.payments")

TXID_PREFIX = "VT"
TXID_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def payment_txid(order: Order) -> str:
    """The reference of an order's payment: derived from the order, its rail and total, so
    that two confirmations racing each other (a double tap, two apps) start the same
    payment at the provider (the rails key their requests on it), never two. A try that
    failed bumps `payment_attempt`, so the next one is a new payment. Order ids are random,
    so these are as unguessable."""
    digest = hashlib.sha256(f"{order.id}|{order.payment_attempt}|{order.rail}|{order.total}|"
                            f"{order.currency}|{order.instalments}".encode()).digest()
    return TXID_PREFIX + "".join(TXID_ALPHABET[b % len(TXID_ALPHABET)] for b in digest[:23])


def new_order_id() -> str:
    return "ord_" + secrets.token_hex(8)


class StartOutcome(StrEnum):
    STARTED = "started"
    REOPENED = "reopened"  # the same product was already awaiting this shopper's confirmation
    OUT_OF_STOCK = "out_of_stock"
    UNKNOWN_PRODUCT = "unknown_product"
    NO_RAIL = "no_rail"  # no way to pay is configured for this market


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
    PROVIDER_DOWN = "provider_down"  # the rail's provider did not answer: try again later
    OVER_LIMIT = "over_limit"  # over a spending limit: needs the shopper's second confirm
    PAYER_NEEDED = "payer_needed"  # the rail needs the payer's name and e-mail first


@dataclass
class Confirmation:
    outcome: ConfirmOutcome
    order: Order
    instructions: PaymentInstructions | None = None
    old_total: int | None = None
    spending: SpendingCheck | None = None


@dataclass(frozen=True)
class Spender:
    """Who pays, for the spending limits: the shopper's key and every account linked to it
    (what one person spends from Telegram and WhatsApp counts together)."""

    owner_key: str
    user_keys: list[str]


def record_order_event(session: Session, kind: EventKind, order: Order) -> None:
    """Log a funnel step about an order, with its merchant, product and value."""
    record_event(session, kind, user_key=order.user_key, conversation_id=order.conversation_id,
                 market=order.market, language=order.language, merchant=order.merchant_slug,
                 product_id=order.product_id, order_id=order.id, amount=order.total,
                 currency=order.currency, sponsored=bool(order.sponsored))


def _current(session: Session, order: Order) -> CatalogProduct | None:
    try:
        product, _ = get_product(session=session, merchant_slug=order.merchant_slug,
                                 product_id=order.product_id)
    except NotFound:
        return None
    return product


def offered_rails(market: Market, rails: Collection[str]) -> list[str]:
    """The rails a market's shoppers may pay with, in the market's order: those configured
    here (a provider's rail needs its keys). With none of them configured, the sandbox
    provider stands in, where it runs (never in production)."""
    offered = [name for name in market.rails if name in rails]
    return offered or (["sandbox"] if "sandbox" in rails else [])


def start_checkout(*, session: Session, user_key: str, conversation_id: str, market: Market,
                   language: str, merchant_slug: str, product_id: str,
                   rails: Collection[str], sponsored: bool = False) -> CheckoutStart:
    """Open an order awaiting the shopper's confirmation, priced from the catalog now, to
    be paid with the market's first rail offered (the shopper may pick another)."""
    try:
        product, merchant = get_product(session=session, merchant_slug=merchant_slug,
                                        product_id=product_id)
    except NotFound:
        return CheckoutStart(StartOutcome.UNKNOWN_PRODUCT)
    if not product.in_stock or merchant.market != market.code or product.price_amount <= 0:
        return CheckoutStart(StartOutcome.OUT_OF_STOCK)
    offered = offered_rails(market, rails)
    if not offered:
        return CheckoutStart(StartOutcome.NO_RAIL)
    rail = offered[0]
    fee = market.cod_fee if rail == "cod" else 0
    open_order = session.exec(select(Order).where(
        Order.user_key == user_key, Order.merchant_slug == merchant.slug,
        Order.product_id == product.product_id,
        Order.status == OrderStatus.AWAITING_CONFIRMATION)).first()
    delivery = shipping_for(session=session, merchant_slug=merchant.slug,
                            amount=product.price_amount, currency=product.currency)
    if open_order is not None:
        # A second tap on Buy reopens the same order, priced again from the catalog.
        open_order.amount, open_order.currency = product.price_amount, product.currency
        open_order.shipping = delivery
        open_order.total = open_order.amount + open_order.fee + open_order.shipping
        session.add(open_order)
        return CheckoutStart(StartOutcome.REOPENED, open_order)
    order = Order(
        id=new_order_id(), user_key=user_key, conversation_id=conversation_id,
        market=market.code, language=language, visitor=market.spell_out_symbol,
        sponsored=sponsored,
        merchant_slug=merchant.slug,
        merchant_name=merchant.name, product_id=product.product_id, title=product.title,
        amount=product.price_amount, fee=fee, shipping=delivery,
        total=product.price_amount + fee + delivery, currency=product.currency, rail=rail,
    )
    session.add(order)
    session.add(OrderTransition(order_id=order.id, from_status="",
                                to_status=order.status, actor="shopper"))
    record_order_event(session, EventKind.CHECKOUT_STARTED, order)
    return CheckoutStart(StartOutcome.STARTED, order)


def find_order(*, session: Session, order_id: str, user_key: str) -> Order | None:
    """The shopper's own order with this id; another shopper's order is not found."""
    order = session.get(Order, order_id)
    if order is None or order.user_key != user_key:
        return None
    return order


def latest_orders(*, session: Session, user_key: str, limit: int = 5) -> list[Order]:
    """The shopper's latest orders past their confirmation, newest first."""
    return list(session.exec(
        select(Order).where(Order.user_key == user_key,
                            Order.status != OrderStatus.AWAITING_CONFIRMATION)
        .order_by(col(Order.created_at).desc()).limit(limit)))


def confirm_order(*, session: Session, order: Order, rails: dict[str, PaymentRail],
                  spender: Spender | None = None, over_limit_ok: bool = False
                  ) -> Confirmation:
    """The shopper tapped confirm: re-check price and stock and the spending limits, then
    start the payment. Over a limit, the payment starts only on a second confirmation
    (`over_limit_ok`), which the shopper gives after being shown which limit it passes."""
    if order.status != OrderStatus.AWAITING_CONFIRMATION:
        return Confirmation(ConfirmOutcome.NOT_PENDING, order)
    product = _current(session, order)
    if product is None or not product.in_stock:
        if move(session, order, OrderStatus.CANCELED, actor="system", note="out of stock"):
            record_order_event(session, EventKind.CHECKOUT_CANCELED, order)
        return Confirmation(ConfirmOutcome.OUT_OF_STOCK, order)
    if product.price_amount != order.amount or product.currency != order.currency:
        old_total = order.total
        order.amount = product.price_amount
        order.currency = product.currency
        order.shipping = shipping_for(session=session, merchant_slug=order.merchant_slug,
                                      amount=order.amount, currency=order.currency)
        order.total = order.amount + order.fee + order.shipping
        if order.instalments > 1 and order.instalments not in spending.instalment_choices(
                market=order.market, rail=order.rail, total=order.total):
            order.instalments = 1  # too small an instalment at the new price
        session.add(order)
        return Confirmation(ConfirmOutcome.PRICE_CHANGED, order, old_total=old_total)
    rail = rails.get(order.rail)
    if rail is None:  # its keys were removed since the card was shown
        return Confirmation(ConfirmOutcome.RAIL_REFUSED, order)
    if getattr(rail, "needs_payer", False) and not (order.payer_name and order.payer_email):
        return Confirmation(ConfirmOutcome.PAYER_NEEDED, order)
    payer = spender or Spender(order.user_key, [order.user_key])
    if not over_limit_ok:
        verdict = spending.check(session=session, order=order, owner_key=payer.owner_key,
                                 user_keys=payer.user_keys)
        if verdict.needs_extra_confirmation:
            return Confirmation(ConfirmOutcome.OVER_LIMIT, order, spending=verdict)
    txid = payment_txid(order)
    if session.get(PaymentAttempt, txid) is None:
        # Written before the provider is called: money paid on this try's code or voucher
        # finds the order even if a later try replaced it.
        session.add(PaymentAttempt(txid=txid, order_id=order.id, rail=order.rail))
    try:
        with waiting():  # a provider's API may take seconds: other turns work meanwhile
            instructions = rail.initiate(order, txid=txid)
    except PayerRefused:
        # The provider refused the name or e-mail given: asked again, not a dead end.
        order.payer_name = order.payer_email = None
        session.add(order)
        _next_attempt(session, order)
        return Confirmation(ConfirmOutcome.PAYER_NEEDED, order)
    except InvalidInput:
        # The rail cannot take this order (over OXXO's limit, a currency it lacks): it
        # stays open for the shopper to pick another of the market's rails.
        _next_attempt(session, order)
        return Confirmation(ConfirmOutcome.RAIL_REFUSED, order)
    except PaymentProviderError:
        # Nothing was charged and the order still awaits confirmation: the shopper may
        # tap again once the provider is back.
        _next_attempt(session, order)
        return Confirmation(ConfirmOutcome.PROVIDER_DOWN, order)
    if not over_limit_ok:
        # Where nothing held the shopper's other confirmations off while the provider was
        # asked (SQLite), one of them may have committed meanwhile: checked again, and the
        # limit's second tap asked for if together they pass it. The payment just started
        # stays on record (its attempt, written above): the second tap starts this same one
        # again, and money paid on it (an e-mailed voucher) finds the order.
        again = spending.check_again(session=session, order=order, owner_key=payer.owner_key,
                                     user_keys=payer.user_keys)
        if again is not None and again.needs_extra_confirmation:
            return Confirmation(ConfirmOutcome.OVER_LIMIT, order, spending=again)
    if not move(session, order, OrderStatus(instructions.status), actor="shopper",
                txid=instructions.txid or txid, payment=instructions.as_dict(),
                confirmed_at=utcnow()):
        # Another confirmation of the same order won; it started this same payment.
        return Confirmation(ConfirmOutcome.NOT_PENDING, order)
    record_order_event(session, EventKind.CHECKOUT_CONFIRMED, order)
    record_order_event(session, EventKind.PAYMENT_PENDING, order)
    return Confirmation(ConfirmOutcome.CONFIRMED, order, instructions)


def _next_attempt(session: Session, order: Order) -> None:
    session.flush()
    session.execute(update(Order).where(col(Order.id) == order.id)
                    .values(payment_attempt=col(Order.payment_attempt) + 1))
    session.refresh(order)


def choose_rail(*, session: Session, order: Order, rail: str, market: Market,
                rails: Collection[str]) -> bool:
    """Pay an order not confirmed yet with another of the market's rails (its fee too).

    Returns:
        False when the order is past confirmation or the rail is not offered there.
    """
    if order.status != OrderStatus.AWAITING_CONFIRMATION or \
            rail not in offered_rails(market, rails):
        return False
    order.rail = rail
    order.fee = market.cod_fee if rail == "cod" else 0
    order.total = order.amount + order.fee + order.shipping
    order.instalments = 1  # chosen again for the new rail, where it allows them
    session.add(order)
    return True


# An address payment providers take: ASCII, no leading, trailing or doubled dots.
EMAIL_RE = re.compile(r"(?<![\w.+-])[A-Za-z0-9+_-]+(?:\.[A-Za-z0-9+_-]+)*"
                      r"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
                      r"(?![\w-]|\.[A-Za-z0-9])")  # a full stop may end the sentence


def set_payer(*, session: Session, order: Order, text: str) -> bool:
    """Take the payer's name and e-mail from one message ("Ana López ana@example.mx").

    Returns:
        False when the message holds no e-mail and a name of two letters or more, or the
        order is past its confirmation.
    """
    found = EMAIL_RE.search(text)
    if found is None or order.status != OrderStatus.AWAITING_CONFIRMATION:
        return False
    name = " ".join((text[:found.start()] + " " + text[found.end():])
                    .replace(",", " ").replace(";", " ").split()).strip(" .:-")
    if sum(ch.isalpha() for ch in name) < 2:
        return False
    order.payer_name, order.payer_email = name[:120], found.group(0)[:254]
    session.add(order)
    return True


def choose_instalments(*, session: Session, order: Order, count: int) -> bool:
    """Pay an order not confirmed yet in `count` instalments, where its market and rail
    allow that many (`checkout.spending.instalment_choices`); 1 pays at once."""
    if order.status != OrderStatus.AWAITING_CONFIRMATION or (count != 1 and count not in (
            spending.instalment_choices(market=order.market, rail=order.rail,
                                        total=order.total))):
        return False
    order.instalments = count
    session.add(order)
    return True


def cancel_order(*, session: Session, order: Order) -> bool:
    """Cancel an order the shopper has not confirmed yet; False if it is past that."""
    if order.status != OrderStatus.AWAITING_CONFIRMATION or \
            not move(session, order, OrderStatus.CANCELED, actor="shopper"):
        return False
    record_order_event(session, EventKind.CHECKOUT_CANCELED, order)
    return True


