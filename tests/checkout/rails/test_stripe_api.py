import json
from collections.abc import Callable
from urllib.parse import parse_qs

import httpx
import pytest
import stripe
from pydantic import BaseModel

from checkout.rails import WebhookRequest
from checkout.rails.stripe_api import (
    HttpxTransport,
    calling_stripe,
    read_answer,
    read_webhook,
    signature_header,
    stripe_client,
    verify_signature,
)
from core.errors import InvalidInput, PaymentProviderError, SignatureError

# Stripe's published vector (../shared/reference/payment-rails.md, "Webhook signatures").
SECRET = "whsec_test_secret"
GOLDEN_T = 1492774577
GOLDEN_BODY = b'{"id":"evt_test"}'
GOLDEN_V1 = "22f7d74836ddad3284a2b80853dd2fe731655c1bfddcff3c3666a500cf3abd80"
GOLDEN_HEADER = f"t={GOLDEN_T},v1={GOLDEN_V1}"
API = "https://stripe.test"

Handler = Callable[[httpx.Request], httpx.Response]


def verify(header: str | None, *, now: float = GOLDEN_T, **kwargs: int) -> None:
    verify_signature(secret=SECRET, header=header, body=GOLDEN_BODY, now=now, **kwargs)


def test_golden_signature_vector():
    assert signature_header(secret=SECRET, body=GOLDEN_BODY, timestamp=GOLDEN_T) == \
        GOLDEN_HEADER
    verify(GOLDEN_HEADER)
    # Stripe's own SDK agrees (its tolerance is off, as it reads the wall clock).
    assert stripe.WebhookSignature.verify_header(GOLDEN_BODY.decode(), GOLDEN_HEADER, SECRET,
                                                 tolerance=None)


@pytest.mark.parametrize("now", [GOLDEN_T - 300, GOLDEN_T + 300])
def test_timestamps_at_the_edge_of_the_tolerance_pass(now):
    verify(GOLDEN_HEADER, now=now)


def test_any_of_several_v1_signatures_may_match():
    verify(f"t={GOLDEN_T},v1={'0' * 64},v0=ignored,v1={GOLDEN_V1}")


@pytest.mark.parametrize(("header", "now"), [
    (None, GOLDEN_T),
    ("", GOLDEN_T),
    (f"t={GOLDEN_T},v1={'0' * 64}", GOLDEN_T),  # forged
    (signature_header(secret="whsec_other", body=GOLDEN_BODY, timestamp=GOLDEN_T), GOLDEN_T),
    (f"v1={GOLDEN_V1}", GOLDEN_T),  # no timestamp
    (f"t={GOLDEN_T}", GOLDEN_T),  # no signature
    (f"t=soon,v1={GOLDEN_V1}", GOLDEN_T),
    (f"t={GOLDEN_T + 1},v1={GOLDEN_V1}", GOLDEN_T),  # timestamp not the one signed
    (f"t={GOLDEN_T},t={GOLDEN_T},v1={GOLDEN_V1}", GOLDEN_T),  # which t was signed?
    (f"t={GOLDEN_T},v1={GOLDEN_V1.upper()}", GOLDEN_T),  # Stripe signs in lower-case hex
    (f"t={GOLDEN_T},v1={GOLDEN_V1[:-1]}é", GOLDEN_T),  # not ASCII
    (f"t={GOLDEN_T},v1={GOLDEN_V1[:-1]}\ud800", GOLDEN_T),  # not even encodable
    (f"t=\u00b2,v1={GOLDEN_V1}", GOLDEN_T),  # a digit to str.isdigit, not to int()
    (GOLDEN_HEADER, GOLDEN_T + 301),  # stale
    (GOLDEN_HEADER, GOLDEN_T - 301),  # from the future
])
def test_missing_malformed_forged_and_stale_signatures_are_refused(header, now):
    with pytest.raises(SignatureError):
        verify(header, now=now)


def test_the_tolerance_is_the_callers():
    verify(GOLDEN_HEADER, now=GOLDEN_T + 10, tolerance=10)
    with pytest.raises(SignatureError):
        verify(GOLDEN_HEADER, now=GOLDEN_T + 11, tolerance=10)


def webhook(body: bytes, header: str, *, received_at: float = GOLDEN_T) -> WebhookRequest:
    return WebhookRequest(body=body, headers={"stripe-signature": header},
                          received_at=received_at)


def test_read_webhook_checks_the_signature_before_parsing_the_body():
    with pytest.raises(SignatureError):
        read_webhook(webhook(b"not json", f"t={GOLDEN_T},v1={'0' * 64}"), secret=SECRET)
    signed = signature_header(secret=SECRET, body=b"not json", timestamp=GOLDEN_T)
    with pytest.raises(InvalidInput):
        read_webhook(webhook(b"not json", signed), secret=SECRET)


def test_read_webhook_reads_the_event_envelope():
    body = json.dumps({"id": "evt_1", "object": "event", "type": "charge.refunded",
                       "data": {"object": {"id": "ch_1"}}}).encode()
    event = read_webhook(webhook(body, signature_header(secret=SECRET, body=body,
                                                        timestamp=GOLDEN_T)), secret=SECRET)
    assert (event.id, event.type, event.data.object) == ("evt_1", "charge.refunded",
                                                          {"id": "ch_1"})


@pytest.mark.parametrize("envelope", [
    {"id": "evt_1", "type": "charge.refunded", "data": {}},  # no data.object
    {"id": "evt_1", "type": "", "data": {"object": {}}},
    {"id": "", "type": "charge.refunded", "data": {"object": {}}},
])
def test_a_signed_body_that_is_no_stripe_event_is_invalid(envelope):
    body = json.dumps(envelope).encode()
    header = signature_header(secret=SECRET, body=body, timestamp=GOLDEN_T)
    with pytest.raises(InvalidInput):
        read_webhook(webhook(body, header), secret=SECRET)


def client_over(handler: Handler) -> stripe.StripeClient:
    http = httpx.Client(transport=httpx.MockTransport(handler))
    return stripe_client("sk_test_123", transport=HttpxTransport(http), api_base=API,
                         max_network_retries=0)


def intent(**fields: object) -> dict:
    return {"id": "pi_1", "object": "payment_intent", "status": "requires_action",
            "amount": 1499, "currency": "usd", **fields}


def test_the_sdk_speaks_through_the_injected_client_to_the_configured_base():
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json=intent())

    found = client_over(handler).v1.payment_intents.create(
        params={"amount": 1499, "currency": "usd"}, options={"idempotency_key": "key-1"})
    [request] = sent
    assert (request.method, str(request.url)) == ("POST", f"{API}/v1/payment_intents")
    assert request.headers["authorization"] == "Bearer sk_test_123"
    assert request.headers["idempotency-key"] == "key-1"
    assert parse_qs(request.content.decode()) == {"amount": ["1499"], "currency": ["usd"]}
    assert (found.id, found.status) == ("pi_1", "requires_action")


def test_the_transport_streams_the_same_answer():
    transport = HttpxTransport(httpx.Client(transport=httpx.MockTransport(
        lambda request: httpx.Response(200, text="chunk"))))
    content, status, _ = transport.request_stream("get", f"{API}/v1/files/f_1/contents", {})
    assert (list(content), status) == (["chunk"], 200)


def test_the_transport_closes_only_a_client_it_made():
    injected = httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(200)))
    HttpxTransport(injected).close()
    assert not injected.is_closed
    own = HttpxTransport(timeout=httpx.Timeout(1.0))
    own.close()
    assert own.client.is_closed


def test_an_unreachable_stripe_is_a_provider_error_with_context():
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(PaymentProviderError) as caught, \
            calling_stripe("read a payment", provider="card", order="ord_1"):
        client_over(down).v1.payment_intents.retrieve("pi_1")
    assert isinstance(caught.value.__cause__, stripe.APIConnectionError)
    assert caught.value.context["provider"] == "card"
    assert caught.value.context["order"] == "ord_1"


def test_a_stripe_error_keeps_its_code_status_and_request_id():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, headers={"request-id": "req_1"}, json={"error": {
            "type": "invalid_request_error", "code": "resource_missing", "message": "no"}})

    with pytest.raises(PaymentProviderError) as caught, \
            calling_stripe("read a payment", order_is_input=True, txid="VT1"):
        client_over(handler).v1.payment_intents.retrieve("pi_1")
    assert caught.value.reason.startswith("could not read a payment")
    assert caught.value.context == {"txid": "VT1", "code": "resource_missing",
                                    "http_status": 400, "request_id": "req_1"}


def test_a_server_error_is_a_provider_error():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, json={"error": {"type": "api_error", "message": "boom"}})

    with pytest.raises(PaymentProviderError) as caught, \
            calling_stripe("pay", order_is_input=True):
        client_over(handler).v1.payment_intents.create(params={"amount": 1, "currency": "usd"})
    assert caught.value.context["http_status"] == 500


def refusing(code: str | None, param: str) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": {
            "type": "invalid_request_error", "code": code, "param": param,
            "message": "Stripe cannot do that"}})
    return handler


@pytest.mark.parametrize(("code", "param"), [
    ("amount_too_small", "amount"),
    ("amount_too_large", "line_items[0][price_data][unit_amount]"),
    ("invalid_charge_amount", "amount"),
    (None, "currency"),
])
def test_an_amount_or_currency_stripe_refuses_is_the_orders_fault(code, param):
    with pytest.raises(InvalidInput) as caught, calling_stripe("pay", order_is_input=True):
        client_over(refusing(code, param)).v1.payment_intents.create(
            params={"amount": 1, "currency": "usd"})
    assert caught.value.context["http_status"] == 400


def test_a_refused_nested_currency_is_the_orders_fault():
    # Stripe names it `line_items[0][price_data][currency]`, which ends in "]".
    with pytest.raises(InvalidInput), calling_stripe("pay", order_is_input=True):
        client_over(refusing("invalid_currency", "line_items[0][price_data][currency]")
                    ).v1.checkout.sessions.create(params={"mode": "payment"})


def test_the_same_refusal_outside_an_order_is_a_provider_error():
    with pytest.raises(PaymentProviderError), calling_stripe("refund"):
        client_over(refusing("amount_too_large", "amount")).v1.refunds.create(
            params={"payment_intent": "pi_1", "amount": 99999})


def test_other_refusals_of_an_order_are_provider_errors():
    with pytest.raises(PaymentProviderError), calling_stripe("pay", order_is_input=True):
        client_over(refusing("payment_method_unactivated", "payment_method_types")
                    ).v1.payment_intents.create(params={"amount": 1, "currency": "usd"})


class Intent(BaseModel):
    id: str
    status: str


def test_an_answer_that_is_not_the_expected_object_is_a_provider_error():
    found = client_over(lambda request: httpx.Response(200, json={
        "id": "pi_1", "object": "payment_intent"})).v1.payment_intents.retrieve("pi_1")
    with pytest.raises(PaymentProviderError) as caught:
        read_answer(Intent, found, provider="card")
    assert caught.value.context == {"provider": "card"}
    assert "status" in caught.value.reason
