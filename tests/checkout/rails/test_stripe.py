import json
from collections.abc import Callable
from urllib.parse import parse_qs

import httpx
import pytest

from checkout.models import Order
from checkout.rails import RailOutcome, RefundOutcome, WebhookRequest
from checkout.rails.stripe import StripeRail, from_stripe_amount, to_stripe_amount
from checkout.rails.stripe_api import signature_header
from core.errors import InvalidInput, PaymentProviderError, SignatureError

SECRET = "whsec_test_secret"
NOW = 1_700_000_000
API = "https://stripe.test"
# Stripe's published vector (../shared/reference/payment-rails.md).
GOLDEN_T = 1492774577
GOLDEN_BODY = b'{"id":"evt_test"}'
GOLDEN_V1 = "22f7d74836ddad3284a2b80853dd2fe731655c1bfddcff3c3666a500cf3abd80"

Handler = Callable[[httpx.Request], httpx.Response]


def make_order(**fields: object) -> Order:
    values: dict = dict(id="ord_1", user_key="tg:1", conversation_id="conv_1", market="US",
                        language="en", merchant_slug="garden", merchant_name="Garden Co",
                        product_id="P-1", title="Metal watering can 2 L", amount=1299,
                        shipping=200, total=1499, currency="USD", rail="stripe",
                        txid="VT0123456789", payment={"provider_ref": "cs_test_1"})
    values.update(fields)
    return Order(**values)


def make_rail(handler: Handler) -> StripeRail:
    return StripeRail(api_key="sk_test_123", webhook_secret=SECRET,
                      public_url="https://vitrine.example/", api_base=API,
                      http_client=httpx.Client(transport=httpx.MockTransport(handler)),
                      max_network_retries=0, clock=lambda: float(NOW))


def no_network(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"unexpected request {request.method} {request.url}")


def form(request: httpx.Request) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(request.content.decode()).items()}


def session(**fields: object) -> dict:
    return {"id": "cs_test_1", "object": "checkout.session", "status": "complete",
            "payment_status": "paid", "client_reference_id": "VT0123456789",
            "metadata": {"txid": "VT0123456789"}, "amount_total": 1499, "currency": "usd",
            "payment_intent": "pi_1", **fields}


def signed(event_type: str, obj: dict, *, event_id: str = "evt_1",
           received_at: float = NOW) -> WebhookRequest:
    body = json.dumps({"id": event_id, "object": "event", "type": event_type,
                       "data": {"object": obj}}).encode()
    header = signature_header(secret=SECRET, body=body, timestamp=NOW)
    return WebhookRequest(body=body, headers={"stripe-signature": header},
                          received_at=received_at)


def test_golden_vector_passes_the_webhook_check_before_the_body_is_read():
    request = WebhookRequest(body=GOLDEN_BODY, received_at=GOLDEN_T,
                             headers={"stripe-signature": f"t={GOLDEN_T},v1={GOLDEN_V1}"})
    # Signed, but no event type: the signature was accepted and the body refused.
    with pytest.raises(InvalidInput):
        make_rail(no_network).parse_webhook(request)


# The check itself is tested in test_stripe_api.py; these show the rail applies it.
@pytest.mark.parametrize(("header", "received_at"), [
    (None, GOLDEN_T),
    (f"t={GOLDEN_T},v1={'0' * 64}", GOLDEN_T),
    (signature_header(secret="whsec_other", body=GOLDEN_BODY, timestamp=GOLDEN_T), GOLDEN_T),
    (f"t={GOLDEN_T},v1={GOLDEN_V1}", GOLDEN_T + 301),
    (f"t={GOLDEN_T},v1={GOLDEN_V1}", GOLDEN_T - 301),
])
def test_unsigned_forged_stale_and_future_webhooks_are_refused(header, received_at):
    request = WebhookRequest(body=GOLDEN_BODY, received_at=received_at,
                             headers={} if header is None else {"stripe-signature": header})
    with pytest.raises(SignatureError):
        make_rail(no_network).parse_webhook(request)


def test_the_signature_is_checked_before_the_body_is_parsed():
    request = WebhookRequest(body=b"not json", received_at=NOW,
                             headers={"stripe-signature": f"t={NOW},v1={'0' * 64}"})
    with pytest.raises(SignatureError):
        make_rail(no_network).parse_webhook(request)


def test_a_paid_completed_session_is_captured():
    [event] = make_rail(no_network).parse_webhook(
        signed("checkout.session.completed", session()))
    assert event.outcome == RailOutcome.CAPTURED
    assert (event.txid, event.amount, event.currency) == ("VT0123456789", 1499, "USD")
    assert (event.event_id, event.provider_ref) == ("cs_test_1:paid", "cs_test_1")


def test_an_async_success_and_a_paid_completion_name_the_same_news():
    rail = make_rail(no_network)
    [completed] = rail.parse_webhook(signed("checkout.session.completed", session()))
    [succeeded] = rail.parse_webhook(signed("checkout.session.async_payment_succeeded",
                                            session(), event_id="evt_2"))
    assert succeeded.outcome == RailOutcome.CAPTURED
    assert succeeded.event_id == completed.event_id


def test_an_unpaid_completed_session_is_not_news_yet():
    [event] = make_rail(no_network).parse_webhook(
        signed("checkout.session.completed", session(payment_status="unpaid")))
    assert event.outcome == RailOutcome.NOT_SUPPORTED
    assert (event.event_id, event.txid) == ("evt_1", "VT0123456789")


def test_an_async_failure_fails_the_order():
    [event] = make_rail(no_network).parse_webhook(
        signed("checkout.session.async_payment_failed", session(payment_status="unpaid")))
    assert event.outcome == RailOutcome.FAILED
    assert event.txid == "VT0123456789"
    assert event.reason != "expired"


def test_an_expired_session_fails_with_reason_expired():
    [event] = make_rail(no_network).parse_webhook(signed(
        "checkout.session.expired", session(status="expired", payment_status="unpaid",
                                            client_reference_id=None)))
    assert (event.outcome, event.reason) == (RailOutcome.FAILED, "expired")
    assert event.txid == "VT0123456789"  # from the metadata


def charge(**fields: object) -> dict:
    return {"id": "ch_1", "object": "charge", "refunded": True, "amount_refunded": 1499,
            "currency": "usd", "metadata": {"txid": "VT0123456789"},
            "payment_intent": "pi_1", **fields}


def test_a_full_refund_of_the_charge_is_refunded():
    [event] = make_rail(no_network).parse_webhook(signed("charge.refunded", charge()))
    assert event.outcome == RailOutcome.REFUNDED
    assert (event.txid, event.amount, event.event_id) == ("VT0123456789", 1499, "ch_1:refunded")


def test_a_charge_without_metadata_is_traced_to_its_session():
    def handler(request: httpx.Request) -> httpx.Response:
        assert (request.method, request.url.path) == ("GET", "/v1/checkout/sessions")
        assert request.url.params["payment_intent"] == "pi_1"
        return httpx.Response(200, json={"object": "list", "data": [session()],
                                         "has_more": False, "url": "/v1/checkout/sessions"})

    [event] = make_rail(handler).parse_webhook(signed("charge.refunded", charge(metadata={})))
    assert (event.outcome, event.txid) == (RailOutcome.REFUNDED, "VT0123456789")


def test_a_partial_refund_leaves_the_order_paid():
    [event] = make_rail(no_network).parse_webhook(
        signed("charge.refunded", charge(refunded=False, amount_refunded=500)))
    assert event.outcome == RailOutcome.NOT_SUPPORTED


def test_other_events_are_not_supported_under_stripes_event_id():
    [event] = make_rail(no_network).parse_webhook(
        signed("payment_intent.created", {"id": "pi_1", "object": "payment_intent"},
               event_id="evt_other"))
    assert (event.outcome, event.event_id) == (RailOutcome.NOT_SUPPORTED, "evt_other")


def test_initiate_creates_a_checkout_session():
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={
            "id": "cs_test_1", "object": "checkout.session",
            "url": "https://checkout.stripe.com/c/pay/cs_test_1", "expires_at": NOW + 3600})

    instructions = make_rail(handler).initiate(make_order(payment={}), txid="VT0123456789")
    [request] = sent
    assert (request.method, str(request.url)) == ("POST", f"{API}/v1/checkout/sessions")
    assert request.headers["authorization"] == "Bearer sk_test_123"
    assert request.headers["idempotency-key"] == "vitrine-session-VT0123456789"
    params = form(request)
    assert params["mode"] == "payment"
    assert params["line_items[0][price_data][currency]"] == "usd"
    assert params["line_items[0][price_data][unit_amount]"] == "1499"
    assert params["line_items[0][price_data][product_data][name]"] == "Metal watering can 2 L"
    assert params["line_items[0][quantity]"] == "1"
    assert params["client_reference_id"] == params["metadata[txid]"] == "VT0123456789"
    assert params["payment_intent_data[metadata][txid]"] == "VT0123456789"
    assert params["success_url"].startswith("https://vitrine.example/")
    assert params["expires_at"] == str(-(-NOW // 60) * 60 + 3600)  # from the minute
    # Read-only under the SDK's pinned API version: Stripe would answer 400.
    assert not any(key.startswith("payment_method_types") for key in params)
    assert instructions.url == "https://checkout.stripe.com/c/pay/cs_test_1"
    assert (instructions.rail, instructions.status) == ("stripe", "awaiting_payment")
    assert (instructions.txid, instructions.provider_ref) == ("VT0123456789", "cs_test_1")
    assert instructions.expires_at is not None
    assert instructions.expires_at.timestamp() == NOW + 3600


@pytest.mark.parametrize(("amount", "currency", "stripe_amount"), [
    (1499, "USD", 1499), (500, "JPY", 500), (15000, "COP", 1500000), (500, "ISK", 50000),
    (5120, "KWD", 5120),
])
def test_amounts_are_in_stripes_minor_units(amount, currency, stripe_amount):
    assert to_stripe_amount(amount, currency) == stripe_amount
    assert from_stripe_amount(stripe_amount, currency) == amount


def test_an_amount_stripe_cannot_express_is_refused_before_calling_it():
    with pytest.raises(InvalidInput):
        make_rail(no_network).initiate(make_order(total=5124, currency="KWD"), txid="VT1")


def test_an_amount_stripe_refuses_is_invalid_input():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": {
            "type": "invalid_request_error", "code": "amount_too_small",
            "param": "line_items[0][price_data][unit_amount]",
            "message": "Amount must be at least $0.50 usd"}})

    with pytest.raises(InvalidInput):
        make_rail(handler).initiate(make_order(total=10), txid="VT1")


def test_a_stripe_outage_is_a_provider_error():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, json={"error": {"type": "api_error", "message": "boom"}})

    with pytest.raises(PaymentProviderError) as caught:
        make_rail(handler).initiate(make_order(), txid="VT1")
    assert caught.value.context["http_status"] == 500


def test_a_timeout_is_a_provider_error():
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("no answer", request=request)

    with pytest.raises(PaymentProviderError):
        make_rail(handler).initiate(make_order(), txid="VT1")
    with pytest.raises(PaymentProviderError):
        make_rail(handler).status(make_order())


def serve_session(**fields: object) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        assert (request.method, request.url.path) == ("GET", "/v1/checkout/sessions/cs_test_1")
        return httpx.Response(200, json=session(**fields))
    return handler


def test_status_of_a_paid_session_is_captured():
    event = make_rail(serve_session()).status(make_order())
    assert event is not None
    assert (event.outcome, event.event_id, event.amount) == (
        RailOutcome.CAPTURED, "cs_test_1:paid", 1499)


def test_status_of_an_open_session_is_none():
    assert make_rail(serve_session(status="open", payment_status="unpaid")).status(
        make_order()) is None


def test_status_of_an_expired_session_is_failed_expired():
    event = make_rail(serve_session(status="expired", payment_status="unpaid")).status(
        make_order())
    assert event is not None
    assert (event.outcome, event.reason, event.event_id) == (
        RailOutcome.FAILED, "expired", "cs_test_1:expired")


def test_status_of_a_session_stripe_answers_oddly_is_a_provider_error():
    # It used to escape as pydantic's ValidationError.
    with pytest.raises(PaymentProviderError):
        make_rail(serve_session(id=None)).status(make_order())


def test_status_without_a_session_asks_nothing():
    assert make_rail(no_network).status(make_order(payment={})) is None


def test_refund_refunds_the_sessions_payment_intent():
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        if request.method == "GET":
            return serve_session()(request)
        assert (request.method, request.url.path) == ("POST", "/v1/refunds")
        return httpx.Response(200, json={"id": "re_1", "object": "refund",
                                         "status": "succeeded", "payment_intent": "pi_1"})

    result = make_rail(handler).refund(make_order())
    assert (result.outcome, result.provider_ref) == (RefundOutcome.REFUNDED, "re_1")
    refund = sent[-1]
    assert form(refund)["payment_intent"] == "pi_1"
    assert refund.headers["idempotency-key"] == "vitrine-refund-ord_1"


def test_refund_without_a_payment_is_a_provider_error():
    with pytest.raises(PaymentProviderError):
        make_rail(serve_session(payment_intent=None, payment_status="unpaid")).refund(
            make_order())


def test_closing_the_rail_leaves_an_injected_client_open():
    http = httpx.Client(transport=httpx.MockTransport(no_network))
    rail = StripeRail(api_key="sk_test_123", webhook_secret=SECRET, public_url="https://v.example",
                      http_client=http)
    rail.close()
    assert not http.is_closed


# canceling

NOT_OPEN = {"error": {"type": "invalid_request_error", "message":
                      'Only Checkout Sessions with a status in ["open"] can be expired. This '
                      "Checkout Session has a status of `expired`."}}


def expiring(*, expire: httpx.Response, now: dict | None = None,
             sent: list[httpx.Request] | None = None) -> Handler:
    """Stripe answering the expiry with `expire`, and a read of the session with `now`."""
    def handler(request: httpx.Request) -> httpx.Response:
        if sent is not None:
            sent.append(request)
        if request.method == "GET" and now is not None:
            return serve_session(**now)(request)
        assert (request.method, str(request.url)) == (
            "POST", f"{API}/v1/checkout/sessions/cs_test_1/expire")
        return expire
    return handler


def test_cancel_expires_the_checkout_session():
    sent: list[httpx.Request] = []
    expired = httpx.Response(200, json=session(status="expired", payment_status="unpaid"))
    assert make_rail(expiring(expire=expired, sent=sent)).cancel(make_order()) is True
    [request] = sent
    assert request.headers["authorization"] == "Bearer sk_test_123"
    assert request.content == b""
    # The SDK's own key: a later cancel must not replay this one's answer.
    assert not request.headers["idempotency-key"].startswith("vitrine-")


def test_cancel_of_a_session_already_expired_is_done():
    sent: list[httpx.Request] = []
    handler = expiring(expire=httpx.Response(400, json=NOT_OPEN), sent=sent,
                       now={"status": "expired", "payment_status": "unpaid"})
    assert make_rail(handler).cancel(make_order()) is True
    assert [r.method for r in sent] == ["POST", "GET"]


@pytest.mark.parametrize("payment_status", ["paid", "unpaid"])
def test_cancel_of_a_session_completed_meanwhile_is_a_provider_error(payment_status):
    # Unpaid but complete: a bank debit on its way, which expiring cannot stop either.
    handler = expiring(expire=httpx.Response(400, json=NOT_OPEN),
                       now={"status": "complete", "payment_status": payment_status})
    with pytest.raises(PaymentProviderError, match="completed") as caught:
        make_rail(handler).cancel(make_order())
    assert caught.value.context["session"] == "cs_test_1"
    assert caught.value.context["payment_status"] == payment_status


def test_a_refused_expiry_of_a_session_still_open_is_a_provider_error():
    handler = expiring(expire=httpx.Response(400, json=NOT_OPEN),
                       now={"status": "open", "payment_status": "unpaid"})
    with pytest.raises(PaymentProviderError) as caught:
        make_rail(handler).cancel(make_order())
    assert caught.value.context["http_status"] == 400


@pytest.mark.parametrize("answer", [
    httpx.Response(500, json={"error": {"type": "api_error", "message": "boom"}}),
    httpx.Response(404, json={"error": {"type": "invalid_request_error",
                                        "code": "resource_missing",
                                        "message": "No such checkout.session: 'cs_test_1'"}}),
])
def test_cancel_when_stripe_fails_is_a_provider_error_without_a_second_call(answer):
    sent: list[httpx.Request] = []
    with pytest.raises(PaymentProviderError) as caught:
        make_rail(expiring(expire=answer, sent=sent)).cancel(make_order())
    assert caught.value.context["http_status"] == answer.status_code
    assert [r.method for r in sent] == ["POST"]


def test_cancel_when_stripe_cannot_be_reached_is_a_provider_error():
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(PaymentProviderError):
        make_rail(handler).cancel(make_order())


def test_cancel_without_a_session_asks_nothing():
    assert make_rail(no_network).cancel(make_order(payment={})) is True
