"""Orders API: an order and its status history for its merchant (API key) or ops (token),
the steps only a merchant can take (cash collected at the door, the delivery, a refund sent
back), and a merchant's orders: pulled as a list, or pushed to its webhook
(`checkout.merchant_notices`).
"""

from __future__ import annotations

import hmac
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from pydantic import BaseModel, Field
from sqlmodel import Session, col, select

from catalog.merchants import api_key_matches, merchant_for_key
from catalog.store import get_merchant
from checkout.merchant_notices import (
    MERCHANT_NEWS,
    MerchantOrderHook,
    order_summary,
    set_hook,
)
from checkout.models import Order, OrderStatus
from checkout.notices import notify_status
from checkout.orders import history, move, note
from checkout.service import record_order_event
from checkout.shipping import set_rate
from core.auth import bearer
from core.db import session_scope, utcnow
from core.errors import InvalidInput, NotFound, SignatureError
from core.markets import get_market
from ops.events import EventKind

router = APIRouter(prefix="/api/orders", tags=["orders"])
merchant_router = APIRouter(prefix="/api/merchants", tags=["orders"])

# How an order reads in the agentic checkout protocols' terms (ACP/UCP checkout sessions).
CHECKOUT_STATE = {
    OrderStatus.AWAITING_CONFIRMATION: "ready_for_payment",
    OrderStatus.AWAITING_PAYMENT: "awaiting_payment",
    OrderStatus.PENDING_COLLECTION: "completed",
    OrderStatus.PAID: "completed",
    OrderStatus.FAILED: "awaiting_payment",
    OrderStatus.EXPIRED: "expired",
    OrderStatus.CANCELED: "canceled",
    OrderStatus.REFUND_PENDING: "canceled",
    OrderStatus.REFUNDED: "canceled",
}


class StatusChange(BaseModel):
    from_status: str | None
    to_status: str
    actor: str
    event_ref: str | None
    note: str | None
    at: datetime


class OrderPublic(BaseModel):
    id: str
    status: str
    checkout_state: str
    market: str
    merchant: str
    product_id: str
    title: str
    currency: str
    amount: int
    shipping: int
    fee: int
    total: int
    rail: str
    instalments: int
    txid: str | None
    payment: dict[str, Any]
    created_at: datetime
    confirmed_at: datetime | None
    paid_at: datetime | None
    delivered_at: datetime | None
    status_history: list[StatusChange]


def order_public(session: Session, order: Order) -> OrderPublic:
    return OrderPublic(
        **order_summary(order), checkout_state=CHECKOUT_STATE[order.status],
        payment=order.payment or {},
        status_history=[StatusChange(from_status=h.from_status or None, to_status=h.to_status,
                                     actor=h.actor, event_ref=h.event_ref, note=h.note,
                                     at=h.at)
                        for h in history(session=session, order_id=order.id)])


def _order_for(session: Session, request: Request, order_id: str,
               authorization: str | None, *, ops_allowed: bool) -> tuple[Order, str]:
    """The order, if the caller is its merchant (API key) or, where allowed, ops.

    Returns:
        The order and who is acting ("merchant:<slug>" or "ops").

    Raises:
        SignatureError: no key, or a key of neither (the same answer whether or not the
            order exists, so ids cannot be probed).
    """
    token = bearer(authorization)
    order = session.get(Order, order_id)
    if token is None:
        raise SignatureError("missing bearer token (the merchant's API key or the ops token)")
    ops_token = request.app.state.runtime.settings.ops_token
    if ops_allowed and hmac.compare_digest(token.encode(), ops_token.encode()):
        if order is None:
            raise NotFound(f"no order {order_id!r}")
        return order, "ops"
    if order is not None:
        try:
            merchant = get_merchant(session=session, slug=order.merchant_slug)
        except NotFound:
            merchant = None
        if merchant is not None and api_key_matches(merchant, token):
            return order, f"merchant:{merchant.slug}"
    raise SignatureError("this key does not open that order")


@router.get("/{order_id}")
def get_order(order_id: str, request: Request,
              authorization: Annotated[str | None, Header()] = None) -> OrderPublic:
    """Show an order and its status history to its merchant or to ops."""
    with session_scope(request.app.state.runtime.engine) as session:
        order, _ = _order_for(session, request, order_id, authorization, ops_allowed=True)
        return order_public(session, order)


@router.post("/{order_id}/collected")
def mark_collected(order_id: str, request: Request,
                   authorization: Annotated[str | None, Header()] = None) -> OrderPublic:
    """Record that the carrier collected a cash-on-delivery payment."""
    with session_scope(request.app.state.runtime.engine) as session:
        order, actor = _order_for(session, request, order_id, authorization, ops_allowed=False)
        if order.status != OrderStatus.PENDING_COLLECTION or \
                not move(session, order, OrderStatus.PAID, actor=actor, note="collected",
                         delivered_at=utcnow()):
            raise InvalidInput(f"order {order_id} is {order.status}, not awaiting collection")
        record_order_event(session, EventKind.ORDER_PAID, order)
        return order_public(session, order)


@router.post("/{order_id}/delivered")
def mark_delivered(order_id: str, request: Request,
                   authorization: Annotated[str | None, Header()] = None) -> OrderPublic:
    """Record the delivery, which starts the shopper's window to withdraw."""
    with session_scope(request.app.state.runtime.engine) as session:
        order, actor = _order_for(session, request, order_id, authorization, ops_allowed=False)
        if order.status not in (OrderStatus.PAID, OrderStatus.PENDING_COLLECTION):
            raise InvalidInput(f"order {order_id} is {order.status}: only a paid or cash "
                               "order is delivered")
        if order.delivered_at is None:
            order.delivered_at = utcnow()
            session.add(order)
            note(session, order, "delivered", actor=actor)
        return order_public(session, order)


@router.post("/{order_id}/refunded")
def mark_refunded(order_id: str, request: Request,
                  authorization: Annotated[str | None, Header()] = None) -> OrderPublic:
    """Record that the merchant sent a withdrawn order's money back."""
    with session_scope(request.app.state.runtime.engine) as session:
        order, actor = _order_for(session, request, order_id, authorization, ops_allowed=False)
        if order.status != OrderStatus.REFUND_PENDING or \
                not move(session, order, OrderStatus.REFUNDED, actor=actor):
            raise InvalidInput(f"order {order_id} is {order.status}, not awaiting a refund")
        record_order_event(session, EventKind.ORDER_REFUNDED, order)
        notify_status(session, order)
        return order_public(session, order)


def _merchant_key(session: Session, slug: str, authorization: str | None) -> str:
    """The merchant's slug, if the bearer token is its API key (`merchant_for_key`)."""
    return merchant_for_key(session, slug, authorization).slug


class OrderWebhook(BaseModel):
    url: str = Field(min_length=1, max_length=2000)


@merchant_router.put("/{slug}/order-webhook")
def put_order_webhook(slug: str, body: OrderWebhook, request: Request,
                      authorization: Annotated[str | None, Header()] = None
                      ) -> dict[str, Any]:
    """Send the merchant's order news to this address, signed with a new secret."""
    with session_scope(request.app.state.runtime.engine) as session:
        hook = set_hook(session=session, merchant_slug=_merchant_key(session, slug,
                                                                     authorization),
                        url=body.url)
        return {"url": hook.url, "secret": hook.secret,
                "events": sorted(f"order.{s.value}" for s in MERCHANT_NEWS),
                "signature": "X-Vitrine-Signature: t=<unix time>,v1=<hex HMAC-SHA256("
                             "secret, '<t>.<body>')>",
                "secret_note": "shown once: store it now; PUT again to rotate it"}


@merchant_router.delete("/{slug}/order-webhook")
def delete_order_webhook(slug: str, request: Request,
                         authorization: Annotated[str | None, Header()] = None
                         ) -> dict[str, str]:
    """Stop pushing the merchant's order news (pulling still works)."""
    with session_scope(request.app.state.runtime.engine) as session:
        hook = session.get(MerchantOrderHook, _merchant_key(session, slug, authorization))
        if hook is not None:
            session.delete(hook)
    return {"status": "removed"}


@merchant_router.get("/{slug}/orders")
def list_orders(slug: str, request: Request,
                authorization: Annotated[str | None, Header()] = None,
                status: OrderStatus | None = None,
                since: datetime | None = None,
                limit: int = Query(default=50, ge=1, le=200)) -> dict[str, Any]:
    """The merchant's orders past confirmation, newest first (filter by status, since)."""
    with session_scope(request.app.state.runtime.engine) as session:
        merchant = _merchant_key(session, slug, authorization)
        query = select(Order).where(Order.merchant_slug == merchant,
                                    Order.status != OrderStatus.AWAITING_CONFIRMATION)
        if status is not None:
            query = query.where(Order.status == status)
        if since is not None:
            query = query.where(col(Order.created_at) >= since)
        orders = session.exec(query.order_by(col(Order.created_at).desc()).limit(limit))
        return {"orders": [order_summary(o) for o in orders]}


class ShippingRateIn(BaseModel):
    flat: int = Field(ge=0, le=10**12)  # minor units of the merchant's market currency
    free_from: int | None = Field(default=None, ge=0, le=10**12)


@merchant_router.put("/{slug}/shipping")
def put_shipping(slug: str, body: ShippingRateIn, request: Request,
                 authorization: Annotated[str | None, Header()] = None) -> dict[str, Any]:
    """Set what delivering one of the merchant's orders costs, in its market's currency."""
    with session_scope(request.app.state.runtime.engine) as session:
        merchant_slug = _merchant_key(session, slug, authorization)
        currency = get_market(get_merchant(session=session, slug=merchant_slug).market).currency
        rate = set_rate(session=session, merchant_slug=merchant_slug, currency=currency,
                        flat=body.flat, free_from=body.free_from)
        return {"currency": rate.currency, "flat": rate.flat, "free_from": rate.free_from}
