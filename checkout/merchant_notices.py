"""Telling merchants about their orders: a signed webhook, retried with backoff.

A merchant registers one HTTPS address (`PUT /api/merchants/{slug}/order-webhook`) and gets a
signing secret. Every change of an order a merchant must act on (paid: ship it; cash on
delivery confirmed: ship it; canceled or withdrawn after that: do not, or refund) queues one
delivery in the same transaction as the change, so none is lost and none is sent for a change
that did not happen. `vitrine orders deliver` (run every minute from a scheduler) posts the
due deliveries:

    POST <url>
    Content-Type: application/json
    X-Vitrine-Event: order.paid
    X-Vitrine-Delivery: dlv_...          (the same on every retry: deduplicate on it)
    X-Vitrine-Signature: t=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>

    {"id": "dlv_...", "type": "order.paid", "created_at": "...", "order": {...}}

A 2xx answer ends it; anything else, or no answer within 10 s, is tried again after 30 s,
1, 2, 4... minutes, at most 6 hours apart, 15 times (about three days). Merchants that
prefer to pull read `GET /api/merchants/{slug}/orders`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, cast
from urllib.parse import urlparse

import httpx
from sqlalchemy import JSON, Column, CursorResult, update
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, col, select

from adapters.feed_source import LOOPBACK_HOSTS
from checkout.models import Order, OrderStatus
from core.db import as_utc, session_scope, utcnow
from core.errors import InvalidInput

log = logging.getLogger("vitrine.orders")

# The changes a merchant acts on; an order waiting for its payment is not news yet.
MERCHANT_NEWS = frozenset({OrderStatus.PAID, OrderStatus.PENDING_COLLECTION,
                           OrderStatus.CANCELED, OrderStatus.REFUND_PENDING,
                           OrderStatus.REFUNDED})
FIRST_RETRY = timedelta(seconds=30)
MAX_RETRY_GAP = timedelta(hours=6)
MAX_ATTEMPTS = 15
TIMEOUT = httpx.Timeout(10.0, connect=5.0)
BATCH = 100
PER_MERCHANT = 10  # posts to one merchant per run: a slow one holds up nobody for long
LEASE = timedelta(minutes=5)  # a leased delivery is not posted by an overlapping run
LEASE_MARGIN = timedelta(seconds=30)  # stop posting this long before the leases lapse
NO_HOOK = "the merchant removed its webhook"


class MerchantOrderHook(SQLModel, table=True):
    """Where a merchant wants its orders' news, and the secret they are signed with."""

    merchant_slug: str = Field(primary_key=True, max_length=64)
    url: str = Field(max_length=2000)
    secret: str = Field(max_length=80)
    updated_at: datetime = Field(default_factory=utcnow)


class OrderDelivery(SQLModel, table=True):
    """One piece of news for a merchant, until its webhook took it (or it gave up)."""

    id: str = Field(primary_key=True, max_length=40)
    merchant_slug: str = Field(index=True, max_length=64)
    order_id: str = Field(index=True, max_length=40)
    event: str = Field(max_length=40)
    payload: dict = Field(default_factory=dict, sa_column=Column(JSON))
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow, index=True)
    delivered_at: datetime | None = None
    gave_up_at: datetime | None = None
    last_error: str | None = Field(default=None, max_length=300)
    created_at: datetime = Field(default_factory=utcnow)


def order_summary(order: Order) -> dict[str, Any]:
    """An order as merchants and ops read it (JSON-ready, without its history)."""
    def when(moment: datetime | None) -> str | None:
        return moment.isoformat() if moment is not None else None

    return {"id": order.id, "status": str(order.status), "market": order.market,
            "merchant": order.merchant_slug, "product_id": order.product_id,
            "title": order.title, "currency": order.currency, "amount": order.amount,
            "shipping": order.shipping, "fee": order.fee, "total": order.total,
            "rail": order.rail, "instalments": order.instalments, "txid": order.txid,
            "created_at": when(order.created_at), "confirmed_at": when(order.confirmed_at),
            "paid_at": when(order.paid_at), "delivered_at": when(order.delivered_at)}


def check_url(url: str) -> str:
    """A merchant's webhook address: https, or http on this machine (for development).

    Raises:
        InvalidInput: anything else.
    """
    text = url.strip()
    try:
        parsed = urlparse(text)
        parsed.port  # noqa: B018 -- raises on a port that is not a number in range
        httpx.URL(text)  # what the sender will parse: it must take it too
    except (ValueError, httpx.InvalidURL):
        raise InvalidInput("that order webhook address is not a valid URL") from None
    if (parsed.scheme == "https" and parsed.hostname) or (
            parsed.scheme == "http" and parsed.hostname in LOOPBACK_HOSTS):
        return text
    raise InvalidInput("an order webhook must be an https:// address (http:// only on "
                       "this machine)")


def set_hook(*, session: Session, merchant_slug: str, url: str) -> MerchantOrderHook:
    """Register (or move) a merchant's webhook with a new signing secret."""
    hook = session.get(MerchantOrderHook, merchant_slug) or MerchantOrderHook(
        merchant_slug=merchant_slug, url="", secret="")
    hook.url = check_url(url)
    hook.secret = "whsec_" + secrets.token_urlsafe(32)
    hook.updated_at = utcnow()
    session.add(hook)
    return hook


def queue_news(session: Session, order: Order, status: OrderStatus, *,
               was: OrderStatus) -> OrderDelivery | None:
    """Queue the news of an order's new status for its merchant, in the caller's
    transaction; nothing when the merchant has no webhook or the news is not theirs (an
    order canceled before it was paid or confirmed for cash was never theirs to ship)."""
    if status not in MERCHANT_NEWS or (status == OrderStatus.CANCELED and
                                       was != OrderStatus.PENDING_COLLECTION):
        return None
    if session.get(MerchantOrderHook, order.merchant_slug) is None:
        return None
    now = utcnow()
    delivery_id = "dlv_" + secrets.token_hex(10)
    event = f"order.{status.value}"
    delivery = OrderDelivery(
        id=delivery_id, merchant_slug=order.merchant_slug, order_id=order.id, event=event,
        payload={"id": delivery_id, "type": event, "created_at": now.isoformat(),
                 "order": {**order_summary(order), "status": status.value}},
        next_attempt_at=now)
    session.add(delivery)
    return delivery


def signature(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def backoff(attempts: int) -> timedelta:
    """How long to wait after the `attempts`-th failure."""
    return min(FIRST_RETRY * (2 ** max(attempts - 1, 0)), MAX_RETRY_GAP)


def deliver_due(*, engine: Engine, client: httpx.Client, now: datetime | None = None,
                clock: Callable[[], datetime] = utcnow) -> dict[str, int]:
    """Post every delivery that is due; count those delivered, retried and given up.

    Each delivery is leased first (its next try pushed `LEASE` ahead by a conditional
    update, so of two runs only one takes it), posted outside any transaction, and its
    result written only while the lease is still this run's. A run stops posting before
    its leases could run out, and posts to one merchant at most `PER_MERCHANT` times: a
    slow endpoint holds up nobody for long, and no news goes out twice."""
    moment = now or clock()
    counts = {"delivered": 0, "retried": 0, "gave_up": 0}
    with Session(engine) as session:
        pending = session.exec(
            select(OrderDelivery)
            .where(col(OrderDelivery.delivered_at).is_(None),
                   col(OrderDelivery.gave_up_at).is_(None))
            .order_by(col(OrderDelivery.created_at), col(OrderDelivery.id)))
        # One order's news goes out in order: "refund_pending" never before the "paid" it
        # follows, which a merchant might otherwise ship after all.
        first_of_order: dict[str, OrderDelivery] = {}
        for delivery in pending:
            first_of_order.setdefault(delivery.order_id, delivery)
        candidates = [d for d in first_of_order.values()
                      if as_utc(d.next_attempt_at) <= moment]
        hooks = {h.merchant_slug: (h.url, h.secret) for h in session.exec(
            select(MerchantOrderHook).where(col(MerchantOrderHook.merchant_slug).in_(
                {d.merchant_slug for d in candidates})))}
    lease_until = moment + LEASE
    leased: list[tuple[str, str, str, dict]] = []
    per_merchant: dict[str, int] = {}
    with session_scope(engine) as session:
        for delivery in candidates:
            if len(leased) >= BATCH or per_merchant.get(delivery.merchant_slug, 0) >= \
                    PER_MERCHANT:
                continue
            taken = cast(CursorResult, session.execute(
                update(OrderDelivery)
                .where(col(OrderDelivery.id) == delivery.id,
                       col(OrderDelivery.next_attempt_at) == delivery.next_attempt_at,
                       col(OrderDelivery.delivered_at).is_(None))
                .values(next_attempt_at=lease_until))).rowcount
            if taken:
                per_merchant[delivery.merchant_slug] = \
                    per_merchant.get(delivery.merchant_slug, 0) + 1
                leased.append((delivery.id, delivery.merchant_slug, delivery.event,
                               dict(delivery.payload)))
    for delivery_id, slug, event, payload in leased:
        if clock() >= lease_until - LEASE_MARGIN:
            break  # the rest wait for the next run, their leases still theirs to lapse
        hook = hooks.get(slug)
        error = _post(client, hook, delivery_id, event, payload, clock()) \
            if hook is not None else NO_HOOK
        _record(engine, delivery_id, slug, error, moment, lease_until, counts)
    return counts


def _record(engine: Engine, delivery_id: str, slug: str, error: str | None,
            moment: datetime, lease_until: datetime, counts: dict[str, int]) -> None:
    """Write one post's result, if the lease is still this run's."""
    with session_scope(engine) as session:
        found = session.get(OrderDelivery, delivery_id, with_for_update=True)
        if found is None or found.delivered_at is not None or \
                as_utc(found.next_attempt_at) != as_utc(lease_until):
            return
        found.attempts += 1
        if error is None:
            found.delivered_at = moment
            counts["delivered"] += 1
        elif found.attempts >= MAX_ATTEMPTS or error == NO_HOOK:
            found.gave_up_at, found.last_error = moment, error[:300]
            counts["gave_up"] += 1
            log.warning("order news %s for %s given up: %s", delivery_id, slug, error)
        else:
            found.next_attempt_at = moment + backoff(found.attempts)
            found.last_error = error[:300]
            counts["retried"] += 1
        session.add(found)


def _post(client: httpx.Client, hook: tuple[str, str], delivery_id: str, event: str,
          payload: dict, now: datetime) -> str | None:
    """Send one delivery; None when the merchant took it, else why not."""
    url, secret = hook
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "X-Vitrine-Event": event,
               "X-Vitrine-Delivery": delivery_id,
               "X-Vitrine-Signature": signature(secret, body, int(now.timestamp()))}
    try:
        response = client.post(url, content=body, headers=headers, timeout=TIMEOUT)
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
        # One merchant's bad address or broken server never holds up the others' news.
        return f"{type(exc).__name__}: {exc}"
    if response.is_success:
        return None
    return f"HTTP {response.status_code}"
