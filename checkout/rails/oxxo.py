"""OXXO cash vouchers through Stripe: a PaymentIntent confirmed with an OXXO payment method
gives a voucher number the shopper pays at any OXXO till before it expires.

Stripe tells the outcome by webhook (`/api/payments/oxxo/webhook`): it sends
`payment_intent.succeeded` once the cash is taken at the store, and
`payment_intent.payment_failed` when the voucher expires unpaid (cash at a till is not
declined, so for an OXXO payment that event means expiry). `charge.refunded` reports a full
refund made from Stripe's dashboard. The webhook's `Stripe-Signature` is checked here, before
the body is parsed, against the endpoint secret and the time the call was received.

Stripe's Python SDK makes the API calls, over an injected `httpx.Client` so that timeouts
are the caller's and tests can fake the transport.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
import stripe
from pydantic import BaseModel, Field, ValidationError

from checkout.models import Order
from checkout.rails import (
    PaymentInstructions,
    RailEvent,
    RailOutcome,
    RefundOutcome,
    RefundResult,
    WebhookRequest,
    read_event,
)
from core.errors import InvalidInput, PaymentProviderError, SignatureError

SIGNATURE_HEADER = "Stripe-Signature"
STRIPE_API = "https://api.stripe.com"
MIN_CENTAVOS, MAX_CENTAVOS = 10_00, 10_000_00  # MXN 10.00 .. 10,000.00 a voucher


def verify_stripe_signature(*, secret: str, body: bytes, header: str | None, now: float,
                            tolerance: int = 300) -> None:
    """Check a `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]` header.

    Each v1 is hex HMAC-SHA256(secret, f"{t}.{body}"); any one matching in constant time
    passes (Stripe signs with every live secret while one is being rolled).

    Raises:
        SignatureError: missing, malformed, no v1 that matches, or `t` further than
            `tolerance` seconds from `now`.
    """
    if not header:
        raise SignatureError(f"missing {SIGNATURE_HEADER}")
    pairs = [part.strip().partition("=") for part in header.split(",")]
    stamps = [value for key, _, value in pairs if key == "t"]
    signatures = [value.lower() for key, _, value in pairs if key == "v1"]
    if len(stamps) != 1 or not (stamps[0].isascii() and stamps[0].isdigit()) or not signatures:
        raise SignatureError(f"malformed {SIGNATURE_HEADER}")
    signed = stamps[0].encode() + b"." + body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest().encode()
    # Bytes: compare_digest refuses a str holding anything but ASCII, and a forged one may.
    if not any(hmac.compare_digest(expected, candidate.encode("utf-8", "replace"))
               for candidate in signatures):
        raise SignatureError(f"no {SIGNATURE_HEADER} v1 matches")
    if abs(now - int(stamps[0])) > tolerance:
        raise SignatureError(f"{SIGNATURE_HEADER} timestamp is outside the tolerance")


class StripeTransport(stripe.HTTPClient):
    """Stripe's SDK speaking through an httpx.Client that Vitrine owns and configures."""

    name = "vitrine-httpx"

    def __init__(self, http: httpx.Client) -> None:
        super().__init__()
        self.http = http

    def request(self, method: str, url: str, headers: Mapping[str, str] | None,
                post_data: Any = None, *, _usage: list[str] | None = None
                ) -> tuple[str, int, Mapping[str, str]]:
        try:
            response = self.http.request(method.upper(), url, headers=dict(headers or {}),
                                         content=post_data)
        except httpx.HTTPError as exc:
            raise stripe.APIConnectionError(f"could not reach Stripe ({type(exc).__name__})",
                                            should_retry=True) from exc
        return response.text, response.status_code, response.headers

    def close(self) -> None:
        pass  # the client is the caller's to close


class OxxoDisplayDetails(BaseModel):
    number: str
    expires_after: int
    hosted_voucher_url: str


class NextAction(BaseModel):
    oxxo_display_details: OxxoDisplayDetails | None = None


class StripeIntent(BaseModel):
    id: str
    status: str
    amount_received: int = 0
    currency: str
    metadata: dict[str, str] = Field(default_factory=dict)
    payment_method_types: list[str] = Field(default_factory=list)
    next_action: NextAction | None = None


class ChargeDetails(BaseModel):
    type: str = ""


class StripeCharge(BaseModel):
    id: str
    payment_intent: str | None = None
    amount_refunded: int = 0
    refunded: bool = False
    currency: str
    metadata: dict[str, str] = Field(default_factory=dict)
    payment_method_details: ChargeDetails | None = None


class EventData(BaseModel):
    object: dict[str, Any]


class StripeEvent(BaseModel):
    id: str = Field(min_length=1, max_length=200)
    type: str
    data: EventData


def read_intent(found: stripe.PaymentIntent) -> StripeIntent:
    """A PaymentIntent from Stripe's API, checked for the fields this rail reads.

    Raises:
        PaymentProviderError: Stripe answered with something that is not one.
    """
    try:
        return StripeIntent.model_validate(found.to_dict())
    except ValidationError as exc:
        raise PaymentProviderError(f"Stripe answered with no PaymentIntent: {exc}") from None


def intent_event(intent: StripeIntent, *, event_id: str, outcome: RailOutcome,
                 reason: str | None = None) -> RailEvent:
    paid = outcome == RailOutcome.CAPTURED
    return RailEvent(event_id=event_id, txid=intent.metadata.get("txid"), outcome=outcome,
                     reason=reason, amount=intent.amount_received if paid else None,
                     currency=intent.currency.upper(), provider_ref=intent.id)


def reduce_event(event: StripeEvent) -> RailEvent:
    """One Stripe event as a rail outcome; anything but an OXXO payment's is not_supported."""
    obj = event.data.object
    if event.type.startswith("payment_intent."):
        intent = StripeIntent.model_validate(obj)
        outcome, reason = {
            "payment_intent.succeeded": (RailOutcome.CAPTURED, None),
            "payment_intent.payment_failed": (RailOutcome.FAILED, "expired"),
            "payment_intent.canceled": (RailOutcome.FAILED, "canceled"),
        }.get(event.type, (RailOutcome.NOT_SUPPORTED, None))
        if "oxxo" not in intent.payment_method_types:
            outcome, reason = RailOutcome.NOT_SUPPORTED, None
        return intent_event(intent, event_id=event.id, outcome=outcome, reason=reason)
    if event.type == "charge.refunded":
        charge = StripeCharge.model_validate(obj)
        oxxo = charge.payment_method_details is not None and \
            charge.payment_method_details.type == "oxxo"
        # The order knows no partial refund: only a full one moves it.
        outcome = RailOutcome.REFUNDED if oxxo and charge.refunded else RailOutcome.NOT_SUPPORTED
        return RailEvent(event_id=event.id, txid=charge.metadata.get("txid"), outcome=outcome,
                         amount=charge.amount_refunded, currency=charge.currency.upper(),
                         provider_ref=charge.payment_intent or charge.id)
    metadata = obj.get("metadata")
    txid = metadata.get("txid") if isinstance(metadata, dict) else None
    return RailEvent(event_id=event.id, txid=txid if isinstance(txid, str) else None,
                     outcome=RailOutcome.NOT_SUPPORTED)


class OxxoRail:
    """OXXO vouchers by Stripe; paid in cash at the store, confirmed by Stripe's webhook."""

    name = "oxxo"

    def __init__(self, *, api_key: str, webhook_secret: str, http: httpx.Client | None = None,
                 base_url: str = STRIPE_API, expires_after_days: int = 3,
                 shopper_name: str | None = None, shopper_email: str | None = None,
                 max_network_retries: int = 1, tolerance: int = 300) -> None:
        """Raises InvalidInput for a voucher life outside Stripe's 1..7 days."""
        if not 1 <= expires_after_days <= 7:
            raise InvalidInput("an OXXO voucher lasts 1 to 7 days on Stripe")
        self.http = http or httpx.Client(timeout=httpx.Timeout(15.0, connect=5.0))
        self.client = stripe.StripeClient(api_key, base_addresses={"api": base_url},
                                          http_client=StripeTransport(self.http),
                                          max_network_retries=max_network_retries)
        self.webhook_secret = webhook_secret
        self.expires_after_days = expires_after_days
        self.shopper_name = shopper_name
        self.shopper_email = shopper_email
        self.tolerance = tolerance

    def initiate(self, order: Order, *, txid: str) -> PaymentInstructions:
        if order.currency != "MXN":
            raise InvalidInput(f"OXXO takes MXN only, not {order.currency}")
        if not MIN_CENTAVOS <= order.total <= MAX_CENTAVOS:
            raise InvalidInput("an OXXO voucher is for MXN 10.00 to MXN 10,000.00")
        # Order carries no shopper contact yet; a channel that learns one may set it.
        name = getattr(order, "shopper_name", None) or self.shopper_name
        email = getattr(order, "shopper_email", None) or self.shopper_email
        if not name or not email:
            raise InvalidInput("an OXXO voucher needs the shopper's name and email")
        try:
            intent = self.client.v1.payment_intents.create(
                params={
                    "amount": order.total, "currency": "mxn", "confirm": True,
                    # The SDK pins API version 2026-10-28.endive, where `payment_method_types`
                    # is read-only (a 400 since 2026-09-30) and this replaces it.
                    "allowed_payment_method_types": ["oxxo"],
                    "payment_method_data": {"type": "oxxo",
                                            "billing_details": {"name": name, "email": email}},
                    "payment_method_options": {
                        "oxxo": {"expires_after_days": self.expires_after_days}},
                    "description": order.title[:200],
                    "metadata": {"txid": txid, "order_id": order.id},
                },
                # A retry after a lost answer must not print a second voucher.
                options={"idempotency_key": f"vitrine-oxxo-{txid}"})
        except stripe.StripeError as exc:
            raise PaymentProviderError(f"Stripe refused the OXXO voucher: {exc}",
                                       order=order.id, txid=txid) from None
        created = read_intent(intent)
        voucher = created.next_action.oxxo_display_details if created.next_action else None
        if voucher is None or "oxxo" not in created.payment_method_types:
            raise PaymentProviderError("Stripe returned no OXXO voucher", order=order.id,
                                       payment_intent=intent.id)
        return PaymentInstructions(
            rail=self.name, status="awaiting_payment", txid=txid, reference=voucher.number,
            url=voucher.hosted_voucher_url, provider_ref=intent.id,
            expires_at=datetime.fromtimestamp(voucher.expires_after, tz=UTC))

    def parse_webhook(self, request: WebhookRequest) -> list[RailEvent]:
        verify_stripe_signature(secret=self.webhook_secret, body=request.body,
                                header=request.header(SIGNATURE_HEADER),
                                now=request.received_at, tolerance=self.tolerance)
        event = read_event(StripeEvent, request.body)
        try:
            return [reduce_event(event)]
        except ValidationError as exc:
            field = ".".join(map(str, exc.errors()[0]["loc"]))
            raise InvalidInput(f"{event.type}: data.object.{field} is missing or malformed",
                               event=event.id) from None

    def status(self, order: Order) -> RailEvent | None:
        intent_id = order.payment.get("provider_ref") if order.payment else None
        if not isinstance(intent_id, str) or not intent_id:
            return None
        try:
            found = self.client.v1.payment_intents.retrieve(intent_id)
        except stripe.StripeError as exc:
            raise PaymentProviderError(f"Stripe could not tell the voucher's state: {exc}",
                                       order=order.id, payment_intent=intent_id) from None
        intent = read_intent(found)
        event_id = f"{intent.id}:{intent.status}"
        if intent.status == "succeeded":
            return intent_event(intent, event_id=event_id, outcome=RailOutcome.CAPTURED)
        if intent.status == "requires_payment_method":
            # Confirmed at creation, an OXXO intent only comes back here when it expired.
            return intent_event(intent, event_id=event_id, outcome=RailOutcome.FAILED,
                                reason="expired")
        if intent.status == "canceled":
            return intent_event(intent, event_id=event_id, outcome=RailOutcome.FAILED,
                                reason="canceled")
        return None  # requires_action (voucher unpaid) or processing

    def refund(self, order: Order) -> RefundResult:
        # Stripe sends cash-voucher refunds to a bank account the customer must supply; the
        # merchant handles that with the shopper directly.
        return RefundResult(RefundOutcome.NOT_SUPPORTED)
