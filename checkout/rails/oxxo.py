"""OXXO cash vouchers through Stripe: a PaymentIntent confirmed with an OXXO payment method
gives a voucher number the shopper pays at any OXXO till before it expires.

Stripe tells the outcome by webhook (`/api/payments/oxxo/webhook`): it sends
`payment_intent.succeeded` once the cash is taken at the store, and
`payment_intent.payment_failed` when the voucher expires unpaid (cash at a till is not
declined, so for an OXXO payment that event means expiry). `charge.refunded` reports a full
refund made from Stripe's dashboard. The webhook's `Stripe-Signature` is checked before the
body is parsed, against the endpoint secret and the time the call was received.

The Stripe plumbing (signature, SDK over an injected `httpx.Client`, errors) is
`checkout.rails.stripe_api`, shared with the card rail.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import BaseModel, Field, ValidationError

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
    TOLERANCE_SECONDS,
    HttpxTransport,
    StripeEvent,
    calling_stripe,
    read_answer,
    read_webhook,
    stripe_client,
)
from core.errors import InvalidInput, PaymentProviderError

MIN_CENTAVOS, MAX_CENTAVOS = 10_00, 10_000_00  # MXN 10.00 .. 10,000.00 a voucher


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
    polls = True  # `status` asks the provider (see `checkout.sweep`)
    needs_payer = True  # Stripe prints the payer's name and e-mails the voucher

    def __init__(self, *, api_key: str, webhook_secret: str, http: httpx.Client | None = None,
                 base_url: str = STRIPE_API, expires_after_days: int = 3,
                 shopper_name: str | None = None, shopper_email: str | None = None,
                 max_network_retries: int = 1, tolerance: int = TOLERANCE_SECONDS) -> None:
        """Raises InvalidInput for a voucher life outside Stripe's 1..7 days."""
        if not 1 <= expires_after_days <= 7:
            raise InvalidInput("an OXXO voucher lasts 1 to 7 days on Stripe")
        self.transport = HttpxTransport(http, timeout=httpx.Timeout(15.0, connect=5.0))
        self.client = stripe_client(api_key, transport=self.transport, api_base=base_url,
                                    max_network_retries=max_network_retries)
        self.webhook_secret = webhook_secret
        self.expires_after_days = expires_after_days
        self.shopper_name = shopper_name
        self.shopper_email = shopper_email
        self.tolerance = tolerance

    def close(self) -> None:
        self.transport.close()

    def initiate(self, order: Order, *, txid: str) -> PaymentInstructions:
        if order.currency != "MXN":
            raise InvalidInput(f"OXXO takes MXN only, not {order.currency}")
        if not MIN_CENTAVOS <= order.total <= MAX_CENTAVOS:
            raise InvalidInput("an OXXO voucher is for MXN 10.00 to MXN 10,000.00")
        # The chat asks the shopper for them (`needs_payer`) before the voucher is made.
        name = order.payer_name or self.shopper_name
        email = order.payer_email or self.shopper_email
        if not name or not email:
            raise InvalidInput("an OXXO voucher needs the shopper's name and email")
        with calling_stripe("create an OXXO voucher", order_is_input=True,
                            provider=self.name, order=order.id, txid=txid):
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
        created = read_answer(StripeIntent, intent, provider=self.name, order=order.id,
                              txid=txid)
        voucher = created.next_action.oxxo_display_details if created.next_action else None
        if voucher is None or "oxxo" not in created.payment_method_types:
            raise PaymentProviderError("Stripe returned no OXXO voucher", provider=self.name,
                                       order=order.id, payment_intent=intent.id)
        return PaymentInstructions(
            rail=self.name, status="awaiting_payment", txid=txid, reference=voucher.number,
            url=voucher.hosted_voucher_url, provider_ref=intent.id,
            expires_at=datetime.fromtimestamp(voucher.expires_after, tz=UTC))

    def parse_webhook(self, request: WebhookRequest) -> list[RailEvent]:
        event = read_webhook(request, secret=self.webhook_secret, tolerance=self.tolerance)
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
        intent = self._intent(intent_id, {"provider": self.name, "order": order.id,
                                          "payment_intent": intent_id})
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

    def cancel(self, order: Order) -> bool:
        """Cancel the voucher's PaymentIntent, so that the till refuses its number.

        No idempotency key of ours: the SDK's own keeps its retries one request, and a
        later call must not replay an earlier failure (Stripe keeps answers for a day).
        """
        intent_id = order.payment.get("provider_ref") if order.payment else None
        if not isinstance(intent_id, str) or not intent_id:
            return True  # no voucher was printed
        context: dict[str, Any] = {"provider": self.name, "order": order.id,
                                   "txid": order.txid, "payment_intent": intent_id}
        try:
            with calling_stripe("cancel an OXXO voucher's PaymentIntent", **context):
                found = self.client.v1.payment_intents.cancel(
                    intent_id, params={"cancellation_reason": "requested_by_customer"})
        except PaymentProviderError as refused:
            if refused.context.get("http_status") != 400:
                raise
            # Stripe cancels an unsettled intent only: what this one became decides.
            intent = self._intent(intent_id, context)
            if intent.status not in ("canceled", "succeeded"):
                raise
        else:
            intent = read_answer(StripeIntent, found, **context)
        if intent.status == "succeeded":
            raise PaymentProviderError("the OXXO voucher was paid before it could be canceled",
                                       status=intent.status, **context)
        if intent.status != "canceled":
            raise PaymentProviderError(f"Stripe left the OXXO voucher {intent.status}",
                                       status=intent.status, **context)
        return True

    def refund(self, order: Order) -> RefundResult:
        # Stripe sends cash-voucher refunds to a bank account the customer must supply; the
        # merchant handles that with the shopper directly.
        return RefundResult(RefundOutcome.NOT_SUPPORTED)

    def _intent(self, intent_id: str, context: dict[str, Any]) -> StripeIntent:
        with calling_stripe("read an OXXO voucher's PaymentIntent", **context):
            found = self.client.v1.payment_intents.retrieve(intent_id)
        return read_answer(StripeIntent, found, **context)
