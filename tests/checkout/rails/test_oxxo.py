import json
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest

from checkout.models import Order
from checkout.rails import RailOutcome, RefundOutcome, WebhookRequest
from checkout.rails.oxxo import OxxoRail
from checkout.rails.stripe_api import signature_header
from core.errors import InvalidInput, PaymentProviderError, SignatureError

API = "https://stripe.test"
SECRET = "whsec_oxxo"
NOW = 1_717_171_717
TXID = "VT3K9ABCDEFGHJKLMNPQRSTUV"
EXPIRES = 1_717_459_199


def make_order(*, total: int = 14990, currency: str = "MXN", **payment: str) -> Order:
    return Order(id="ord_1", user_key="wa:1", conversation_id="c1", market="MX",
                 language="es", merchant_slug="jardin", merchant_name="Jardín MX",
                 product_id="P-1", title="Regadera de metal 2 L", amount=total, total=total,
                 currency=currency, rail="oxxo", txid=TXID, payment=dict(payment))


def intent(status: str = "requires_action", **fields: object) -> dict:
    body: dict = {"id": "pi_123", "object": "payment_intent", "status": status,
                  "amount": 14990, "amount_received": 0, "currency": "mxn",
                  "metadata": {"txid": TXID, "order_id": "ord_1"},
                  "payment_method_types": ["oxxo"], "next_action": None}
    if status == "requires_action":
        body["next_action"] = {"type": "oxxo_display_details", "oxxo_display_details": {
            "number": "12345678901234657890123456789012", "expires_after": EXPIRES,
            "hosted_voucher_url": "https://payments.stripe.com/oxxo/voucher/test_123"}}
    return body | fields


def never_called(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"no call to Stripe was expected, got {request.url}")


def make_rail(handler: Callable[[httpx.Request], httpx.Response] = never_called,
              **overrides: object) -> OxxoRail:
    args: dict = {"api_key": "sk_test_123", "webhook_secret": SECRET,
                  "http": httpx.Client(transport=httpx.MockTransport(handler)),
                  "base_url": API, "shopper_name": "Ana López",
                  "shopper_email": "ana@example.mx", "max_network_retries": 0, **overrides}
    return OxxoRail(**args)


def stripe_event(type_: str, obj: dict, *, event_id: str = "evt_1", t: int = NOW,
                 secret: str = SECRET, received_at: float = NOW + 3) -> WebhookRequest:
    body = json.dumps({"id": event_id, "object": "event", "type": type_,
                       "data": {"object": obj}}).encode()
    return WebhookRequest(body=body, received_at=received_at, headers={
        "stripe-signature": signature_header(secret=secret, body=body, timestamp=t)})


def test_initiate_creates_and_confirms_an_oxxo_payment_intent():
    seen: list[httpx.Request] = []

    def stripe_api(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        assert (request.method, str(request.url)) == ("POST", f"{API}/v1/payment_intents")
        assert request.headers["authorization"] == "Bearer sk_test_123"
        assert request.headers["idempotency-key"] == f"vitrine-oxxo-{TXID}"
        form = dict(urllib.parse.parse_qsl(request.content.decode()))
        assert form == {
            "amount": "14990", "currency": "mxn", "confirm": "true",
            "allowed_payment_method_types[0]": "oxxo",
            "payment_method_data[type]": "oxxo",
            "payment_method_data[billing_details][name]": "Ana López",
            "payment_method_data[billing_details][email]": "ana@example.mx",
            "payment_method_options[oxxo][expires_after_days]": "3",
            "description": "Regadera de metal 2 L",
            "metadata[txid]": TXID, "metadata[order_id]": "ord_1"}
        return httpx.Response(200, json=intent())

    instructions = make_rail(stripe_api).initiate(make_order(), txid=TXID)
    assert len(seen) == 1
    assert instructions.rail == "oxxo" and instructions.status == "awaiting_payment"
    assert instructions.txid == TXID and instructions.provider_ref == "pi_123"
    assert instructions.reference == "12345678901234657890123456789012"
    assert instructions.url == "https://payments.stripe.com/oxxo/voucher/test_123"
    assert instructions.expires_at == datetime.fromtimestamp(EXPIRES, tz=UTC)


def test_voucher_life_is_configurable_within_stripes_range():
    def stripe_api(request: httpx.Request) -> httpx.Response:
        form = dict(urllib.parse.parse_qsl(request.content.decode()))
        assert form["payment_method_options[oxxo][expires_after_days]"] == "7"
        return httpx.Response(200, json=intent())

    make_rail(stripe_api, expires_after_days=7).initiate(make_order(), txid=TXID)
    for days in (0, 8):
        with pytest.raises(InvalidInput):
            make_rail(expires_after_days=days)


@pytest.mark.parametrize(("total", "currency"), [(14990, "USD"), (999, "MXN"),
                                                 (1_000_001, "MXN")])
def test_other_currencies_and_amounts_outside_the_limits_never_reach_stripe(total, currency):
    with pytest.raises(InvalidInput):
        make_rail().initiate(make_order(total=total, currency=currency), txid=TXID)


def test_limits_themselves_are_accepted():
    rail = make_rail(lambda request: httpx.Response(200, json=intent()))
    for total in (1000, 1_000_000):
        assert rail.initiate(make_order(total=total), txid=TXID).reference


def test_a_voucher_needs_the_shoppers_name_and_email():
    with pytest.raises(InvalidInput):
        make_rail(shopper_email=None).initiate(make_order(), txid=TXID)


@pytest.mark.parametrize("response", [
    httpx.Response(500, json={"error": {"type": "api_error", "message": "boom"}}),
    httpx.Response(503, text="upstream unavailable"),
    httpx.Response(400, json={"error": {"type": "invalid_request_error",
                                        "message": "OXXO is not enabled"}}),
    httpx.Response(200, json=intent(status="requires_payment_method")),  # no voucher
    httpx.Response(200, json={"id": "pi_123", "object": "payment_intent"}),  # not one
])
def test_provider_errors_and_odd_answers_are_provider_errors(response):
    rail = make_rail(lambda request: response)
    with pytest.raises(PaymentProviderError):
        rail.initiate(make_order(), txid=TXID)


def test_an_amount_stripe_refuses_is_invalid_input():
    def stripe_api(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": {
            "type": "invalid_request_error", "code": "amount_too_large", "param": "amount",
            "message": "Amount must be no more than $10,000.00 mxn"}})

    with pytest.raises(InvalidInput):
        make_rail(stripe_api).initiate(make_order(), txid=TXID)


def test_an_unreachable_stripe_is_a_provider_error():
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(PaymentProviderError):
        make_rail(down).initiate(make_order(), txid=TXID)


def test_a_paid_voucher_is_captured_for_the_amount_received():
    [event] = make_rail().parse_webhook(stripe_event(
        "payment_intent.succeeded", intent("succeeded", amount_received=14990)))
    assert (event.outcome, event.event_id, event.txid) == (RailOutcome.CAPTURED, "evt_1", TXID)
    assert (event.amount, event.currency, event.provider_ref) == (14990, "MXN", "pi_123")


def test_an_expired_voucher_fails_as_expired():
    [event] = make_rail().parse_webhook(stripe_event(
        "payment_intent.payment_failed", intent("requires_payment_method")))
    assert (event.outcome, event.reason, event.txid) == (RailOutcome.FAILED, "expired", TXID)
    assert event.amount is None


def test_a_canceled_intent_fails_as_canceled():
    [event] = make_rail().parse_webhook(stripe_event("payment_intent.canceled",
                                                     intent("canceled")))
    assert (event.outcome, event.reason) == (RailOutcome.FAILED, "canceled")


def charge(**fields: object) -> dict:
    return {"id": "ch_1", "object": "charge", "payment_intent": "pi_123", "amount": 14990,
            "amount_refunded": 14990, "refunded": True, "currency": "mxn",
            "metadata": {"txid": TXID}, "payment_method_details": {"type": "oxxo"}} | fields


def test_a_full_refund_is_refunded():
    [event] = make_rail().parse_webhook(stripe_event("charge.refunded", charge()))
    assert (event.outcome, event.txid, event.amount) == (RailOutcome.REFUNDED, TXID, 14990)
    assert event.provider_ref == "pi_123"


@pytest.mark.parametrize(("type_", "obj"), [
    ("charge.refunded", charge(amount_refunded=5000, refunded=False)),  # partial
    ("charge.refunded", charge(payment_method_details={"type": "card"})),
    ("payment_intent.succeeded", intent("succeeded", payment_method_types=["card"])),
    ("payment_intent.requires_action", intent()),
    ("customer.created", {"id": "cus_1", "object": "customer"}),
])
def test_other_events_are_not_supported(type_, obj):
    [event] = make_rail().parse_webhook(stripe_event(type_, obj))
    assert event.outcome == RailOutcome.NOT_SUPPORTED and event.event_id == "evt_1"


@pytest.mark.parametrize("request_", [
    stripe_event("payment_intent.succeeded", intent("succeeded"), secret="whsec_other"),
    stripe_event("payment_intent.succeeded", intent("succeeded"), received_at=NOW + 301),
    WebhookRequest(body=b"{}", headers={}, received_at=NOW),
])
def test_forged_stale_or_unsigned_webhooks_are_refused(request_):
    with pytest.raises(SignatureError):
        make_rail().parse_webhook(request_)


def test_the_replay_window_is_configurable():
    request = stripe_event("payment_intent.succeeded", intent("succeeded"),
                           received_at=NOW + 500)
    with pytest.raises(SignatureError):
        make_rail().parse_webhook(request)
    [event] = make_rail(tolerance=600).parse_webhook(request)
    assert event.outcome == RailOutcome.CAPTURED


def test_signed_bodies_that_are_not_stripe_events_are_invalid():
    with pytest.raises(InvalidInput):
        make_rail().parse_webhook(stripe_event("payment_intent.succeeded", {"id": "pi_1"}))


def status_api(found: dict) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        assert (request.method, str(request.url)) == ("GET", f"{API}/v1/payment_intents/pi_123")
        return httpx.Response(200, json=found)
    return handler


def test_status_reads_a_paid_intent_as_captured_once_per_state():
    rail = make_rail(status_api(intent("succeeded", amount_received=14990, next_action=None)))
    event = rail.status(make_order(provider_ref="pi_123"))
    assert event is not None
    assert (event.outcome, event.event_id, event.amount) == (RailOutcome.CAPTURED,
                                                             "pi_123:succeeded", 14990)
    assert event.txid == TXID


def test_status_of_an_unpaid_voucher_is_nothing_yet():
    assert make_rail(status_api(intent())).status(make_order(provider_ref="pi_123")) is None


def test_status_of_an_expired_voucher_is_failed_expired():
    rail = make_rail(status_api(intent("requires_payment_method")))
    event = rail.status(make_order(provider_ref="pi_123"))
    assert event is not None
    assert (event.outcome, event.reason, event.event_id) == (
        RailOutcome.FAILED, "expired", "pi_123:requires_payment_method")


def test_status_without_a_payment_intent_asks_nobody():
    assert make_rail().status(make_order()) is None


def test_status_when_stripe_fails_is_a_provider_error():
    rail = make_rail(lambda request: httpx.Response(502, text="bad gateway"))
    with pytest.raises(PaymentProviderError):
        rail.status(make_order(provider_ref="pi_123"))


def test_refunds_are_the_merchants():
    assert make_rail().refund(make_order()).outcome == RefundOutcome.NOT_SUPPORTED


# canceling


def unexpected_state(status: str) -> httpx.Response:
    return httpx.Response(400, json={"error": {
        "type": "invalid_request_error", "code": "payment_intent_unexpected_state",
        "message": f"You cannot cancel this PaymentIntent because it has a status of {status}. "
                   "Only a PaymentIntent with one of the following statuses may be canceled: "
                   "requires_payment_method, requires_capture, requires_confirmation, "
                   "requires_action, processing.",
        "payment_intent": intent(status, next_action=None)}})


def canceling(*, cancel: httpx.Response, now: dict | None = None,
              sent: list[httpx.Request] | None = None
              ) -> Callable[[httpx.Request], httpx.Response]:
    """Stripe answering the cancel with `cancel`, and a read of the intent with `now`."""
    def handler(request: httpx.Request) -> httpx.Response:
        if sent is not None:
            sent.append(request)
        if request.method == "GET" and now is not None:
            return status_api(now)(request)
        assert (request.method, str(request.url)) == (
            "POST", f"{API}/v1/payment_intents/pi_123/cancel")
        return cancel
    return handler


@pytest.mark.parametrize("status", ["requires_action", "requires_payment_method"])
def test_cancel_cancels_the_vouchers_payment_intent(status):
    # requires_payment_method: an expired voucher, canceled all the same.
    sent: list[httpx.Request] = []
    canceled = httpx.Response(200, json=intent(
        "canceled", cancellation_reason="requested_by_customer"))
    assert make_rail(canceling(cancel=canceled, sent=sent)).cancel(
        make_order(provider_ref="pi_123")) is True
    [request] = sent
    assert request.headers["authorization"] == "Bearer sk_test_123"
    assert dict(urllib.parse.parse_qsl(request.content.decode())) == {
        "cancellation_reason": "requested_by_customer"}
    # The SDK's own key: a later cancel must not replay this one's answer.
    assert not request.headers["idempotency-key"].startswith("vitrine-")


def test_cancel_of_a_voucher_already_canceled_is_done():
    sent: list[httpx.Request] = []
    handler = canceling(cancel=unexpected_state("canceled"), now=intent("canceled"), sent=sent)
    assert make_rail(handler).cancel(make_order(provider_ref="pi_123")) is True
    assert [r.method for r in sent] == ["POST", "GET"]


def test_cancel_of_a_voucher_paid_meanwhile_is_a_provider_error():
    handler = canceling(cancel=unexpected_state("succeeded"),
                        now=intent("succeeded", amount_received=14990, next_action=None))
    with pytest.raises(PaymentProviderError, match="paid") as caught:
        make_rail(handler).cancel(make_order(provider_ref="pi_123"))
    assert caught.value.context["status"] == "succeeded"
    assert caught.value.context["payment_intent"] == "pi_123"


def test_a_refused_cancel_of_a_voucher_still_open_is_a_provider_error():
    # "processing": cash taken at the till, not yet confirmed; Stripe may refuse to cancel.
    handler = canceling(cancel=unexpected_state("processing"),
                        now=intent("processing", next_action=None))
    with pytest.raises(PaymentProviderError) as caught:
        make_rail(handler).cancel(make_order(provider_ref="pi_123"))
    assert caught.value.context["http_status"] == 400


@pytest.mark.parametrize("answer", [
    httpx.Response(500, json={"error": {"type": "api_error", "message": "boom"}}),
    httpx.Response(404, json={"error": {"type": "invalid_request_error",
                                        "code": "resource_missing",
                                        "message": "No such payment_intent: 'pi_123'"}}),
])
def test_cancel_when_stripe_fails_is_a_provider_error_without_a_second_call(answer):
    sent: list[httpx.Request] = []
    with pytest.raises(PaymentProviderError) as caught:
        make_rail(canceling(cancel=answer, sent=sent)).cancel(make_order(provider_ref="pi_123"))
    assert caught.value.context["http_status"] == answer.status_code
    assert [r.method for r in sent] == ["POST"]


def test_cancel_when_stripe_cannot_be_reached_is_a_provider_error():
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(PaymentProviderError):
        make_rail(down).cancel(make_order(provider_ref="pi_123"))


def test_cancel_without_a_payment_intent_asks_nobody():
    assert make_rail().cancel(make_order()) is True
