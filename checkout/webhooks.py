"""Payment provider webhooks: `POST /api/payments/{rail}/webhook`.

The rail verifies the signature on the raw body (and the provider's timestamp) before
anything is parsed, then reduces the event to an outcome; checkout applies it exactly once
and the shopper is told in chat. A shopper saying "I paid" never reaches this path.
"""

from __future__ import annotations

import logging
import time
from functools import partial

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.engine import Engine

from checkout.models import OrderStatus
from checkout.notices import notify_status
from checkout.payments import EventOutcome, apply_payment_event, refund_late_money
from checkout.rails import PaymentRail, RailOutcome, WebhookRequest
from checkout.rails.sandbox import SIGNATURE_HEADER, sandbox_event
from core.db import session_scope
from core.errors import NotFound, PaymentProviderError
from core.shared_state import Claim, SharedState

__all__ = ["SIGNATURE_HEADER", "process_webhook", "router", "sandbox_event"]

router = APIRouter(prefix="/api/payments", tags=["payments"])
log = logging.getLogger("vitrine.payments")

# The news a shopper hears about in chat; other changes (a refund the merchant made) are
# told by whoever made them.
TOLD = frozenset({OrderStatus.PAID, OrderStatus.FAILED, OrderStatus.EXPIRED,
                  OrderStatus.REFUNDED, OrderStatus.REFUND_PENDING})
# How soon the provider is asked to deliver again an event another process is applying.
RETRY_AFTER_S = 5


class EventInFlight(PaymentProviderError):
    """Another process is applying the same event right now: nothing is stored, and the
    provider must deliver it again (answered 503; any caller that does not catch it answers
    502, which providers retry as well)."""


def process_webhook(*, engine: Engine, rail: PaymentRail, request: WebhookRequest,
                    shared: SharedState | None = None) -> EventOutcome:
    """Verify, parse and apply a provider's events; tell each shopper the result.

    With a shared state (Redis), each event id is claimed there first, so that a repeat
    another process is applying, or has applied, is refused without waiting on the
    database; the event's row, stored with the order's change, stays what decides.

    Returns:
        The outcome of the call's one event, or of its first that applied (a batch).

    Raises:
        SignatureError: the signature is missing, wrong or stale (nothing is read or stored).
        InvalidInput: signed, but not an event of this provider.
        EventInFlight: another process is applying one of the events right now; nothing
            is stored and the provider delivers the call again.
    """
    events = rail.parse_webhook(request)
    settles = getattr(rail, "settles", frozenset({rail.name}))
    outcomes = []
    refunds_due = []
    claimed: dict[str, bool] = {}  # claimed key -> whether its event was stored
    try:
        with session_scope(engine) as session:
            for event in events:
                key = f"once:pay:{rail.name}:{event.event_id}"
                if key in claimed:  # the same event twice in one call: the database decides
                    claim = Claim.FIRST
                else:
                    claim = shared.claim(key) if shared is not None else Claim.FIRST
                if claim == Claim.DONE:
                    outcomes.append(EventOutcome.DUPLICATE)
                    continue
                if claim == Claim.IN_FLIGHT:
                    raise EventInFlight("another process is applying this event",
                                        rail=rail.name, event=event.event_id)
                claimed.setdefault(key, False)
                result = apply_payment_event(session=session, rail=rail.name, event=event,
                                             settles=settles)
                # News not acted on left no row: a repeat is read afresh, as it was.
                claimed[key] = claimed[key] or (event.outcome != RailOutcome.NOT_SUPPORTED
                                                and result.outcome != EventOutcome.UNKNOWN_TXID)
                outcomes.append(result.outcome)
                order = result.order
                if result.outcome == EventOutcome.APPLIED and order is not None and \
                        order.status in TOLD:
                    notify_status(session, order)
                if result.refund_due and order is not None:
                    refunds_due.append(order.id)
    except BaseException:
        # Nothing was committed: the provider's next delivery must be applied.
        if shared is not None:
            for key in claimed:
                shared.release(key)
        raise
    if shared is not None:
        for key, stored in claimed.items():
            if stored:
                shared.finish(key)
            else:
                shared.release(key)
    for order_id in refunds_due:  # after the commit: no lock held across the provider call
        refund_late_money(engine=engine, order_id=order_id, rail=rail)
    if not outcomes:
        return EventOutcome.IGNORED
    return EventOutcome.APPLIED if EventOutcome.APPLIED in outcomes else outcomes[0]


@router.post("/{rail_name}/webhook")
async def provider_webhook(rail_name: str, request: Request) -> JSONResponse:
    """Receive a signed event from a payment provider."""
    runtime = request.app.state.runtime
    rail = runtime.rails.get(rail_name)
    if rail is None:
        raise NotFound(f"no payment rail is called {rail_name!r}")
    received = WebhookRequest(body=await request.body(),
                              headers={k.lower(): v for k, v in request.headers.items()},
                              query=dict(request.query_params), received_at=time.time())
    try:
        outcome = await runtime.loop_turns.on_thread(partial(
            process_webhook, engine=runtime.engine, rail=rail, request=received,
            shared=runtime.shared))
    except EventInFlight as exc:
        log.info("%s event %s is being applied by another process", rail_name,
                 exc.context.get("event"))
        return JSONResponse({"error": "in_flight", "reason": exc.reason}, status_code=503,
                            headers={"Retry-After": str(RETRY_AFTER_S)})
    if outcome == EventOutcome.UNKNOWN_TXID and rail_name == "sandbox":
        return JSONResponse({"error": "unknown_txid", "reason": "no order has this txid"},
                            status_code=404)
    if outcome == EventOutcome.UNKNOWN_TXID:
        # A provider account serves other integrations too, and retries whatever is not
        # acknowledged until it disables the endpoint: taken, logged, nothing applied.
        log.info("%s event for a payment Vitrine did not start", rail_name)
    if outcome == EventOutcome.PAID_TWICE:
        # Nothing applied, as for any event an order cannot take; the note says why (the
        # second payment is written on the order, owed back).
        return JSONResponse({"status": EventOutcome.IGNORED.value, "note": outcome.value})
    return JSONResponse({"status": outcome.value})
