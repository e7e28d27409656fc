"""Mercado Pago Checkout Pro: a hosted page (a "preference") the shopper is sent to.

Mercado Pago's notification carries only a payment's id, and its signature (`x-signature`)
covers that id, the request id and a timestamp, not the body; so the payment itself is
read from the API, which is the authority on its status and amount.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote

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
    read_event,
)
from core.errors import InvalidInput, PaymentProviderError, SignatureError
from core.money import Money, money_from_major

SIGNATURE_HEADER = "x-signature"
REQUEST_ID_HEADER = "x-request-id"
TOLERANCE_SECONDS = 300
# The currencies of the countries Checkout Pro sells in; an account takes only its own.
CURRENCIES = frozenset({"ARS", "BRL", "CLP", "COP", "MXN", "PEN", "UYU"})
CAPTURED = frozenset({"approved"})
FAILED = frozenset({"rejected", "cancelled"})
REFUNDED = frozenset({"refunded", "charged_back"})
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def signature_manifest(*, data_id: str | None, request_id: str | None, ts: str) -> str:
    """The text Mercado Pago signs: `id:<data.id>;request-id:<x-request-id>;ts:<ts>;`,
    leaving out the parts the notification lacks."""
    manifest = f"id:{data_id.lower()};" if data_id else ""
    manifest += f"request-id:{request_id};" if request_id else ""
    return manifest + f"ts:{ts};"


def sign(secret: str, manifest: str) -> str:
    return hmac.new(secret.encode(), manifest.encode(), hashlib.sha256).hexdigest()


def verify_signature(*, secret: str, request: WebhookRequest) -> None:
    """Check `x-signature: ts=<ms>,v1=<hex>`, and that `ts` is within 300 s of when the
    call was received, either way.

    Raises:
        SignatureError: missing, malformed, wrong or stale.
    """
    header = request.header(SIGNATURE_HEADER)
    if not header:
        raise SignatureError(f"missing {SIGNATURE_HEADER}")
    parts = dict(part.strip().partition("=")[::2] for part in header.split(","))
    ts, given = parts.get("ts", ""), parts.get("v1", "")
    if not (ts.isascii() and ts.isdigit()) or not given:
        raise SignatureError(f"malformed {SIGNATURE_HEADER}")
    manifest = signature_manifest(data_id=request.query.get("data.id"),
                                  request_id=request.header(REQUEST_ID_HEADER), ts=ts)
    # Bytes, not str: compare_digest refuses non-ASCII strings with a TypeError.
    if not hmac.compare_digest(sign(secret, manifest).encode(), given.encode()):
        raise SignatureError(f"{SIGNATURE_HEADER} does not match")
    if abs(request.received_at - int(ts) / 1000) > TOLERANCE_SECONDS:  # ts is milliseconds
        raise SignatureError(f"{SIGNATURE_HEADER} timestamp is outside the replay window")


def to_json(value: object) -> bytes:
    """JSON where a Decimal is written as the number it is: `json` would need a float."""
    def encode(item: object) -> str:
        if isinstance(item, Decimal):
            return format(item, "f")
        if isinstance(item, dict):
            return "{" + ",".join(f"{json.dumps(str(k))}:{encode(v)}"
                                  for k, v in item.items()) + "}"
        if isinstance(item, list | tuple):
            return "[" + ",".join(encode(v) for v in item) + "]"
        return json.dumps(item)
    return encode(value).encode()


class Notification(BaseModel):
    id: int | str | None = None
    type: str | None = None
    action: str | None = None


class Payment(BaseModel):
    id: int
    status: str
    status_detail: str | None = None
    transaction_amount: Decimal
    transaction_amount_refunded: Decimal | None = None
    currency_id: str = Field(min_length=3, max_length=3)
    external_reference: str | None = None
    date_created: datetime | None = None


def payment_event(payment: Payment) -> RailEvent:
    """A payment's status as an event named `<payment id>:<status>`: a webhook and
    `status` telling the same news apply it once."""
    txid, ref = payment.external_reference or None, str(payment.id)
    event_id = f"{payment.id}:{payment.status}"
    if payment.status in CAPTURED:
        paid = money_from_major(payment.transaction_amount, payment.currency_id)
        return RailEvent(event_id=event_id, txid=txid, outcome=RailOutcome.CAPTURED,
                         amount=paid.amount, currency=paid.currency, provider_ref=ref)
    if payment.status in FAILED:
        detail = payment.status_detail or payment.status
        return RailEvent(event_id=event_id, txid=txid, outcome=RailOutcome.FAILED,
                         reason="expired" if "expired" in detail else detail,
                         provider_ref=ref)
    if payment.status in REFUNDED:
        back = payment.transaction_amount_refunded
        return RailEvent(event_id=event_id, txid=txid, outcome=RailOutcome.REFUNDED,
                         amount=money_from_major(back, payment.currency_id).amount
                         if back else None,
                         currency=payment.currency_id, provider_ref=ref, refunds=ref,
                         reason=payment.status)
    # pending, in_process, authorized, in_mediation: nothing settled yet.
    return RailEvent(event_id=event_id, txid=txid, outcome=RailOutcome.NOT_SUPPORTED,
                     reason=payment.status, provider_ref=ref)


class MercadoPagoRail:
    """Checkout Pro: one preference per confirmed order, found again by its txid (the
    preference's `external_reference`, which every payment made on it carries)."""

    name = "mercadopago"
    polls = True  # `status` asks the provider (see `checkout.sweep`)

    def __init__(self, *, access_token: str, webhook_secret: str, public_url: str,
                 notification_url: str, client: httpx.Client | None = None,
                 api_base: str = "https://api.mercadopago.com",
                 expires_in: timedelta = timedelta(hours=1),
                 clock: Callable[[], float] = time.time) -> None:
        self.access_token = access_token
        self.webhook_secret = webhook_secret
        self.public_url = public_url.rstrip("/")
        self.notification_url = notification_url
        self.client = client or httpx.Client(timeout=httpx.Timeout(10.0, connect=5.0))
        self.api_base = api_base.rstrip("/")
        self.expires_in = expires_in
        self.clock = clock

    def close(self) -> None:
        self.client.close()

    def initiate(self, order: Order, *, txid: str) -> PaymentInstructions:
        if order.currency not in CURRENCIES:
            raise InvalidInput(f"Mercado Pago does not charge {order.currency}")
        if order.total <= 0:
            raise InvalidInput("a Mercado Pago payment is more than zero")
        minute = int(self.clock()) // 60 * 60
        # Payable from the start of this minute (a cancel right away still ends after it)
        # to the configured time after the next one: whole minutes, so a second tap sends
        # the same body under the same idempotency key.
        now = datetime.fromtimestamp(minute, UTC)
        expires_at = datetime.fromtimestamp(minute + 60, UTC) + self.expires_in
        return_url = f"{self.public_url}/api/payments/{self.name}/return?txid={txid}"
        preference = {
            "items": [{"id": order.product_id, "title": order.title[:256], "quantity": 1,
                       "currency_id": order.currency,
                       # Money.to_decimal is exact: 14990 centavos is 149.90, never a float.
                       "unit_price": Money(order.total, order.currency).to_decimal()}],
            "back_urls": {result: f"{return_url}&result={result}"
                          for result in ("success", "pending", "failure")},
            "auto_return": "approved",
            "notification_url": self.notification_url,
            "external_reference": txid,
            "metadata": {"txid": txid, "order_id": order.id},
            "expires": True,
            "expiration_date_from": now.isoformat(timespec="milliseconds"),
            "expiration_date_to": expires_at.isoformat(timespec="milliseconds"),
        }
        # What the shopper chose in the chat (1: at once; more only where the market allows
        # it): without it, Checkout Pro would offer the account's longest plans.
        preference["payment_methods"] = {"installments": order.instalments,
                                         "default_installments": order.instalments}
        created = self._call("POST", "/checkout/preferences", txid=txid,
                             content=to_json(preference),
                             headers={"Content-Type": "application/json",
                                      "X-Idempotency-Key": f"vitrine-preference-{txid}"})
        url, pref_id = created.get("init_point"), created.get("id")
        if not isinstance(url, str) or pref_id is None:
            raise PaymentProviderError("Mercado Pago answered without a checkout URL",
                                       provider=self.name, txid=txid)
        return PaymentInstructions(rail=self.name, status="awaiting_payment", txid=txid,
                                   url=url, provider_ref=str(pref_id), expires_at=expires_at)

    def parse_webhook(self, request: WebhookRequest) -> list[RailEvent]:
        verify_signature(secret=self.webhook_secret, request=request)
        notice = read_event(Notification, request.body) if request.body.strip() \
            else Notification()
        topic = request.query.get("type") or request.query.get("topic") or notice.type
        # Only the query's data.id is signed: the body's copy could say anything.
        payment_id = request.query.get("data.id")
        if topic != "payment":
            return [RailEvent(event_id=f"{topic}:{notice.id or payment_id}:{notice.action}",
                              txid=None, outcome=RailOutcome.NOT_SUPPORTED, reason=topic)]
        if not payment_id or not payment_id.isdigit():
            raise InvalidInput("a payment notification names its payment in data.id")
        return [payment_event(self._payment(payment_id))]

    def status(self, order: Order) -> RailEvent | None:
        payment = self._latest_payment(order)
        if payment is None:
            return None
        event = payment_event(payment)
        return None if event.outcome == RailOutcome.NOT_SUPPORTED else event

    def cancel(self, order: Order) -> bool:
        """End the order's preference now, so that its page starts no payment."""
        pref_id = (order.payment or {}).get("provider_ref")
        if not pref_id:
            return True  # no preference was made: there is no page to pay on
        now = datetime.fromtimestamp(self.clock(), UTC).isoformat(timespec="milliseconds")
        self._call("PUT", f"/checkout/preferences/{pref_id}", txid=order.txid,
                   json={"expires": True, "expiration_date_to": now})
        return True

    def refund(self, order: Order) -> RefundResult:
        payment = self._latest_payment(order)
        if payment is not None and payment.status in REFUNDED:
            return RefundResult(RefundOutcome.REFUNDED, provider_ref=str(payment.id))
        if payment is None or payment.status not in CAPTURED:
            raise PaymentProviderError("no approved Mercado Pago payment to refund",
                                       provider=self.name, order=order.id, txid=order.txid)
        # An empty body refunds the whole payment.
        refund = self._call("POST", f"/v1/payments/{payment.id}/refunds", txid=order.txid,
                            json={}, headers={"X-Idempotency-Key": f"vitrine-refund-{order.id}"})
        return RefundResult(RefundOutcome.REFUNDED, provider_ref=str(refund.get("id", "")))

    def _payment(self, payment_id: str) -> Payment:
        found = self._call("GET", f"/v1/payments/{payment_id}", txid=None,
                           missing_is_input=True)
        return _read_payment(found)

    def _latest_payment(self, order: Order) -> Payment | None:
        """The payment that decides the order: the newest that moved money (a rejected retry
        after an approval must not hide it), else the newest attempt."""
        if not order.txid:
            return None
        found = self._call("GET", "/v1/payments/search", txid=order.txid, params={
            "external_reference": order.txid, "sort": "date_created", "criteria": "desc"})
        results = found.get("results")
        payments = [_read_payment(item) for item in results] if isinstance(results, list) \
            else []
        # .timestamp(): an offset-less date must not make the sort raise.
        payments.sort(key=lambda p: (p.date_created or EPOCH).timestamp(), reverse=True)
        settled = [p for p in payments if p.status in CAPTURED | REFUNDED]
        return (settled or payments)[0] if payments else None

    def _call(self, method: str, path: str, *, txid: str | None,
              missing_is_input: bool = False, **kwargs: Any) -> dict[str, Any]:
        """One API call, its failures as Vitrine's exceptions, its JSON numbers as Decimals."""
        headers = {"Authorization": f"Bearer {self.access_token}", **kwargs.pop("headers", {})}
        url = self.api_base + quote(path)
        context = {"provider": self.name, "txid": txid, "request": f"{method} {path}"}
        try:
            response = self.client.request(method, url, headers=headers, **kwargs)
        except httpx.TimeoutException as exc:
            raise PaymentProviderError("Mercado Pago did not answer in time",
                                       **context) from exc
        except httpx.HTTPError as exc:
            raise PaymentProviderError(f"could not reach Mercado Pago: {exc!r}",
                                       **context) from exc
        if response.status_code == 404 and missing_is_input:
            raise InvalidInput("Mercado Pago has no such payment", **context)
        if response.is_error:
            raise PaymentProviderError(
                f"Mercado Pago answered {response.status_code}: {response.text[:300]}",
                http_status=response.status_code, **context)
        try:
            body = response.json(parse_float=Decimal)
        except ValueError:
            raise PaymentProviderError("Mercado Pago answered with something not JSON",
                                       **context) from None
        if not isinstance(body, dict):
            raise PaymentProviderError("Mercado Pago answered with something not an object",
                                       **context)
        return body


def _read_payment(found: object) -> Payment:
    try:
        return Payment.model_validate(found)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise PaymentProviderError(
            f"not a Mercado Pago payment: {'.'.join(map(str, first['loc']))}: {first['msg']}",
            provider="mercadopago") from None
