"""Stripe Checkout: a hosted card page the shopper is sent to; Stripe tells the outcome by a
signed webhook (`Stripe-Signature`), and its API answers when a webhook was missed.

The Stripe plumbing (signature, SDK over an injected `httpx.Client`, errors) is
`checkout.rails.stripe_api`, shared with the OXXO rail.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, Field, ValidationError
from stripe.params.checkout import SessionCreateParams

from checkout.models import Order
from checkout.rails import (
    PaymentInstructions,
    RailEvent,
    RailOutcome,
    RefundOutcome,
    RefundResult,
    WebhookRequest,
)
from checkout.rails.stripe_api import (
    STRIPE_API,
    HttpxTransport,
    StripeEvent,
    calling_stripe,
    read_answer,
    read_webhook,
    stripe_client,
)
from core.errors import InvalidInput, PaymentProviderError
from core.money import currency_exponent

StripeObject = TypeVar("StripeObject", bound=BaseModel)

# Stripe's minor unit is not always ISO 4217's (https://docs.stripe.com/currencies): these
# are its zero- and three-decimal currencies; every other one, ISK and COP included, takes
# two decimals.
ZERO_DECIMAL = frozenset("BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF UGX VND VUV XAF XOF XPF".split())
THREE_DECIMAL = frozenset("BHD JOD KWD OMR TND".split())


def _stripe_exponent(currency: str) -> int:
    return 0 if currency in ZERO_DECIMAL else 3 if currency in THREE_DECIMAL else 2


def to_stripe_amount(amount: int, currency: str) -> int:
    """Vitrine's minor units (ISO 4217, via Babel) in Stripe's.

    Raises:
        InvalidInput: an amount Stripe cannot express (three-decimal currencies must end
            in 0; fractions of a unit Stripe counts whole).
    """
    shift = _stripe_exponent(currency) - currency_exponent(currency)
    if shift < 0:
        whole, rest = divmod(amount, 10 ** -shift)
        if rest:
            raise InvalidInput(f"Stripe charges {currency} in whole units only")
        amount = whole
    else:
        amount *= 10**shift
    if currency in THREE_DECIMAL and amount % 10:
        raise InvalidInput(f"Stripe needs {currency} amounts rounded to 0.010")
    return amount


def from_stripe_amount(amount: int, currency: str) -> int:
    """Stripe's minor units back in Vitrine's (the inverse of `to_stripe_amount`)."""
    shift = _stripe_exponent(currency) - currency_exponent(currency)
    if shift < 0:
        return amount * 10 ** -shift
    whole, rest = divmod(amount, 10**shift)
    if rest:
        raise InvalidInput(f"Stripe reported a fraction of a {currency} minor unit: {amount}")
    return whole


class CheckoutSession(BaseModel):
    id: str = Field(min_length=1, max_length=200)
    status: str | None = None  # open | complete | expired
    payment_status: str | None = None  # paid | unpaid | no_payment_required
    client_reference_id: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    amount_total: int | None = None
    currency: str | None = None
    payment_intent: str | None = None


class Charge(BaseModel):
    id: str = Field(min_length=1, max_length=200)
    refunded: bool = False  # true only once the whole charge is refunded
    amount_refunded: int = 0
    currency: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    payment_intent: str | None = None


def _session_txid(session: CheckoutSession) -> str | None:
    return session.client_reference_id or session.metadata.get("txid")


def session_event(session: CheckoutSession, state: str) -> RailEvent:
    """A session's news as an event named `<session id>:<state>`: the webhook and `status`
    name the same news alike, so it applies once whichever arrives first."""
    txid = _session_txid(session)
    event_id = f"{session.id}:{state}"
    if state == "paid":
        currency = (session.currency or "").upper() or None
        amount = from_stripe_amount(session.amount_total, currency) \
            if session.amount_total is not None and currency else None
        return RailEvent(event_id=event_id, txid=txid, outcome=RailOutcome.CAPTURED,
                         amount=amount, currency=currency, provider_ref=session.id)
    reason = "expired" if state == "expired" else "payment_failed"
    return RailEvent(event_id=event_id, txid=txid, outcome=RailOutcome.FAILED, reason=reason,
                     provider_ref=session.id)


class StripeRail:
    """A hosted card checkout: one Checkout Session per confirmed order."""

    name = "stripe"
    polls = True  # `status` asks the provider (see `checkout.sweep`)

    def __init__(self, *, api_key: str, webhook_secret: str, public_url: str,
                 api_base: str = STRIPE_API, http_client: httpx.Client | None = None,
                 expires_in: timedelta = timedelta(hours=1), max_network_retries: int = 2,
                 clock: Callable[[], float] = time.time) -> None:
        # Stripe refuses a session that expires sooner than 30 minutes or later than 24 hours.
        if not timedelta(minutes=30) <= expires_in <= timedelta(hours=24):
            raise ValueError("a Checkout Session expires 30 minutes to 24 hours after creation")
        self.webhook_secret = webhook_secret
        self.public_url = public_url.rstrip("/")
        self.expires_in = expires_in
        self.clock = clock
        self.transport = HttpxTransport(http_client, timeout=httpx.Timeout(10.0, connect=5.0))
        self.client = stripe_client(api_key, transport=self.transport, api_base=api_base,
                                    max_network_retries=max_network_retries)

    def close(self) -> None:
        self.transport.close()

    def initiate(self, order: Order, *, txid: str) -> PaymentInstructions:
        return_url = f"{self.public_url}/api/payments/{self.name}/return?txid={txid}"
        # Typed, so that mypy refuses a parameter the pinned API version no longer takes.
        params: SessionCreateParams = {
            "mode": "payment",
            "line_items": [{"quantity": 1, "price_data": {
                "currency": order.currency.lower(),
                "unit_amount": to_stripe_amount(order.total, order.currency),
                "product_data": {"name": order.title[:250]}}}],
            "client_reference_id": txid,
            "metadata": {"txid": txid, "order_id": order.id},
            # The payment intent, and what is done to it later (a refund), names the txid too.
            "payment_intent_data": {"metadata": {"txid": txid, "order_id": order.id}},
            "success_url": return_url + "&result=success",
            "cancel_url": return_url + "&result=cancel",
            # From the next whole minute, not the second: a second tap moments later sends
            # the same parameters under the same idempotency key, so Stripe returns the same
            # session (and never less than the configured time, which Stripe bounds).
            "expires_at": -(-int(self.clock()) // 60) * 60
            + int(self.expires_in.total_seconds()),
        }
        with calling_stripe("create a Checkout Session", order_is_input=True,
                            provider=self.name, order=order.id, txid=txid):
            session = self.client.v1.checkout.sessions.create(
                params=params, options={"idempotency_key": f"vitrine-session-{txid}"})
        return PaymentInstructions(
            rail=self.name, status="awaiting_payment", txid=txid, url=session.url,
            provider_ref=session.id,
            expires_at=datetime.fromtimestamp(session.expires_at, UTC))

    def parse_webhook(self, request: WebhookRequest) -> list[RailEvent]:
        event = read_webhook(request, secret=self.webhook_secret)
        obj = event.data.object
        if event.type.startswith("checkout.session."):
            session = _read(CheckoutSession, obj)
            state = {"checkout.session.async_payment_succeeded": "paid",
                     "checkout.session.async_payment_failed": "failed",
                     "checkout.session.expired": "expired"}.get(event.type)
            if event.type == "checkout.session.completed" and \
                    session.payment_status in ("paid", "no_payment_required"):
                state = "paid"
            if state is not None:
                return [session_event(session, state)]
            # completed but unpaid: a delayed method (a bank debit) is still on its way.
            return [self._not_supported(event, _session_txid(session))]
        if event.type == "charge.refunded":
            charge = _read(Charge, obj)
            txid = charge.metadata.get("txid") or self._txid_of_intent(charge.payment_intent)
            if not charge.refunded:  # a partial refund leaves the order paid
                return [self._not_supported(event, txid)]
            currency = (charge.currency or "").upper() or None
            return [RailEvent(
                event_id=f"{charge.id}:refunded", txid=txid, outcome=RailOutcome.REFUNDED,
                amount=from_stripe_amount(charge.amount_refunded, currency) if currency
                else None, currency=currency, provider_ref=charge.id)]
        metadata = obj.get("metadata")
        txid = metadata.get("txid") if isinstance(metadata, dict) else None
        return [self._not_supported(event, txid if isinstance(txid, str) else None)]

    def status(self, order: Order) -> RailEvent | None:
        session = self._session(order)
        if session is None:
            return None
        if session.status == "expired":
            return session_event(session, "expired")
        if session.status == "complete" and \
                session.payment_status in ("paid", "no_payment_required"):
            return session_event(session, "paid")
        # Still open, or a delayed payment on its way; an async failure or a refund is
        # told by webhook only (the session itself does not show them).
        return None

    def cancel(self, order: Order) -> bool:
        """Expire the order's Checkout Session, so that its page takes no payment.

        No idempotency key of ours: the SDK's own keeps its retries one request, and a
        later call must not replay an earlier failure (Stripe keeps answers for a day).
        """
        session_id = (order.payment or {}).get("provider_ref")
        if not session_id:
            return True  # no session was made: there is no page to pay on
        context: dict[str, Any] = {"provider": self.name, "order": order.id,
                                   "txid": order.txid, "session": str(session_id)}
        try:
            with calling_stripe("expire a Checkout Session", **context):
                found = self.client.v1.checkout.sessions.expire(str(session_id))
        except PaymentProviderError as refused:
            if refused.context.get("http_status") != 400:
                raise
            # Stripe expires open sessions only: what this one became decides.
            session = self._session(order)
            if session is None or session.status not in ("expired", "complete"):
                raise
        else:
            session = read_answer(CheckoutSession, found, **context)
        if session.status == "complete":
            # Paid, or a delayed payment (a bank debit) on its way: either way not stoppable.
            raise PaymentProviderError("the Checkout Session was completed before it could "
                                       "be expired", status=session.status,
                                       payment_status=session.payment_status, **context)
        if session.status != "expired":
            raise PaymentProviderError(f"Stripe left the Checkout Session {session.status}",
                                       status=session.status, **context)
        return True

    def refund(self, order: Order) -> RefundResult:
        session = self._session(order)
        if session is None or session.payment_intent is None:
            raise PaymentProviderError("no Stripe payment to refund", provider=self.name,
                                       order=order.id, txid=order.txid)
        with calling_stripe("create a refund", provider=self.name, order=order.id,
                            txid=order.txid):
            refund = self.client.v1.refunds.create(
                params={"payment_intent": session.payment_intent,
                        "metadata": {"txid": order.txid or "", "order_id": order.id}},
                options={"idempotency_key": f"vitrine-refund-{order.id}"})
        if refund.status in ("failed", "canceled"):
            raise PaymentProviderError(f"Stripe refused the refund: {refund.status}",
                                       provider=self.name, order=order.id, refund=refund.id)
        return RefundResult(RefundOutcome.REFUNDED, provider_ref=refund.id)

    def _session(self, order: Order) -> CheckoutSession | None:
        session_id = (order.payment or {}).get("provider_ref")
        if not session_id:
            return None
        context: dict[str, Any] = {"provider": self.name, "order": order.id,
                                   "txid": order.txid}
        with calling_stripe("read a Checkout Session", **context):
            found = self.client.v1.checkout.sessions.retrieve(str(session_id))
        return read_answer(CheckoutSession, found, **context)

    def _txid_of_intent(self, payment_intent: str | None) -> str | None:
        """The txid of the session that created a payment intent (a charge made before its
        metadata was set, or refunded from the Dashboard, does not carry it)."""
        if payment_intent is None:
            return None
        context: dict[str, Any] = {"provider": self.name, "payment_intent": payment_intent}
        with calling_stripe("find a payment intent's Checkout Session", **context):
            found = self.client.v1.checkout.sessions.list(
                params={"payment_intent": payment_intent, "limit": 1})
        if not found.data:
            return None
        return _session_txid(read_answer(CheckoutSession, found.data[0], **context))

    def _not_supported(self, event: StripeEvent, txid: str | None) -> RailEvent:
        return RailEvent(event_id=event.id, txid=txid, outcome=RailOutcome.NOT_SUPPORTED,
                         reason=event.type)


def _read(model: type[StripeObject], obj: Mapping[str, Any]) -> StripeObject:
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidInput(f"not a Stripe {model.__name__}: "
                           f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from None
