import json
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

import httpx
import pytest

from checkout.models import Order
from checkout.rails import RailOutcome, RefundOutcome, WebhookRequest
from checkout.rails.mercadopago import MercadoPagoRail, sign, signature_manifest, to_json
from core.errors import InvalidInput, PaymentProviderError, SignatureError

API = "https://mp.test"
NOW = 1_700_000_000
TOKEN = "APP_USR-test-token"
# Mercado Pago's published vector (../shared/reference/payment-rails.md).
GOLDEN_SECRET = "your_secret_key_here"
GOLDEN_REQUEST_ID = "bb56a2f1-6aae-46ac-982e-9dcd3581d08e"
GOLDEN_TS = "1742505638683"
GOLDEN_MANIFEST = f"id:123456;request-id:{GOLDEN_REQUEST_ID};ts:{GOLDEN_TS};"
GOLDEN_V1 = "5e0a7ed2ea5ece575e9d1a9bb80f7ce6ca43d6d30e8be93413bae108b94ad7cd"

Handler = Callable[[httpx.Request], httpx.Response]


def make_order(**fields: object) -> Order:
    values: dict = dict(id="ord_1", user_key="tg:1", conversation_id="conv_1", market="BR",
                        language="pt_BR", merchant_slug="jardim", merchant_name="Jardim",
                        product_id="P-1", title="Regador de Metal 2 L", amount=13990,
                        shipping=1000, total=14990, currency="BRL", rail="mercadopago",
                        txid="VT0123456789", payment={"provider_ref": "pref-1"})
    values.update(fields)
    return Order(**values)


def make_rail(handler: Handler, *, secret: str = GOLDEN_SECRET) -> MercadoPagoRail:
    return MercadoPagoRail(access_token=TOKEN, webhook_secret=secret,
                           public_url="https://vitrine.example/",
                           notification_url="https://vitrine.example/api/payments/mercadopago/webhook",
                           client=httpx.Client(transport=httpx.MockTransport(handler)),
                           api_base=API, clock=lambda: float(NOW))


def no_network(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"unexpected request {request.method} {request.url}")


def payment(**fields: object) -> dict:
    return {"id": 123456, "status": "approved", "status_detail": "accredited",
            "transaction_amount": 149.9, "currency_id": "BRL",
            "external_reference": "VT0123456789",
            "date_created": "2025-03-20T17:20:38.000-04:00", **fields}


def serve_payment(**fields: object) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        assert (request.method, str(request.url)) == ("GET", f"{API}/v1/payments/123456")
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        return httpx.Response(200, json=payment(**fields))
    return handler


def notification(*, data_id: str | None = "123456", topic: str = "payment",
                 ts: str = str(NOW * 1000), secret: str = GOLDEN_SECRET,
                 received_at: float = NOW) -> WebhookRequest:
    manifest = signature_manifest(data_id=data_id, request_id="req-1", ts=ts)
    query = {"type": topic} | ({"data.id": data_id} if data_id else {})
    body = json.dumps({"id": 987, "type": topic, "action": f"{topic}.updated",
                       "data": {"id": data_id}}).encode()
    return WebhookRequest(body=body, query=query, received_at=received_at, headers={
        "x-signature": f"ts={ts},v1={sign(secret, manifest)}", "x-request-id": "req-1"})


def test_golden_signature_vector():
    manifest = signature_manifest(data_id="123456", request_id=GOLDEN_REQUEST_ID, ts=GOLDEN_TS)
    assert manifest == GOLDEN_MANIFEST
    assert sign(GOLDEN_SECRET, manifest) == GOLDEN_V1


def test_golden_notification_is_accepted_and_its_payment_fetched():
    request = WebhookRequest(
        body=b'{"type": "payment", "data": {"id": "123456"}}',
        query={"data.id": "123456", "type": "payment"},
        headers={"x-signature": f"ts={GOLDEN_TS},v1={GOLDEN_V1}",
                 "x-request-id": GOLDEN_REQUEST_ID},
        received_at=int(GOLDEN_TS) / 1000 + 5)
    [event] = make_rail(serve_payment()).parse_webhook(request)
    assert event.outcome == RailOutcome.CAPTURED


def test_manifest_leaves_out_absent_parts_and_lowercases_the_id():
    assert signature_manifest(data_id=None, request_id=None, ts="1") == "ts:1;"
    assert signature_manifest(data_id="ABC1", request_id=None, ts="1") == "id:abc1;ts:1;"


@pytest.mark.parametrize("header", [
    None, "", f"v1={GOLDEN_V1}", f"ts={GOLDEN_TS}", f"ts=now,v1={GOLDEN_V1}",
    f"ts={GOLDEN_TS},v1={'0' * 64}", f"ts={GOLDEN_TS},v1=é",
])
def test_missing_malformed_and_forged_signatures_are_refused(header):
    headers = {"x-request-id": GOLDEN_REQUEST_ID} | ({} if header is None
                                                     else {"x-signature": header})
    request = WebhookRequest(body=b"{}", query={"data.id": "123456", "type": "payment"},
                             headers=headers, received_at=int(GOLDEN_TS) / 1000)
    with pytest.raises(SignatureError):
        make_rail(no_network).parse_webhook(request)


def test_a_signature_with_another_secret_is_refused():
    with pytest.raises(SignatureError):
        make_rail(no_network).parse_webhook(notification(secret="another-secret"))


def test_a_signature_over_another_payment_is_refused():
    request = notification()
    forged = WebhookRequest(body=request.body, headers=request.headers,
                            query={"data.id": "999999", "type": "payment"},
                            received_at=request.received_at)
    with pytest.raises(SignatureError):
        make_rail(no_network).parse_webhook(forged)


@pytest.mark.parametrize("received_at", [NOW + 301, NOW - 301])
def test_stale_and_future_timestamps_are_refused(received_at):
    with pytest.raises(SignatureError):
        make_rail(no_network).parse_webhook(notification(received_at=received_at))


def test_the_signature_is_checked_before_the_body_is_parsed():
    request = WebhookRequest(body=b"not json", query={"data.id": "1"}, received_at=NOW,
                             headers={"x-signature": f"ts={NOW * 1000},v1={'0' * 64}"})
    with pytest.raises(SignatureError):
        make_rail(no_network).parse_webhook(request)


def test_an_approved_payment_is_captured_in_minor_units():
    [event] = make_rail(serve_payment()).parse_webhook(notification())
    assert event.outcome == RailOutcome.CAPTURED
    assert (event.txid, event.amount, event.currency) == ("VT0123456789", 14990, "BRL")
    assert (event.event_id, event.provider_ref) == ("123456:approved", "123456")


def test_a_peso_amount_without_decimals_is_read_exactly():
    [event] = make_rail(serve_payment(transaction_amount=15000, currency_id="CLP")
                        ).parse_webhook(notification())
    assert (event.amount, event.currency) == (15000, "CLP")


@pytest.mark.parametrize(("status", "detail", "reason"), [
    ("rejected", "cc_rejected_insufficient_amount", "cc_rejected_insufficient_amount"),
    ("cancelled", "expired", "expired"),
    ("cancelled", None, "cancelled"),
])
def test_rejected_and_cancelled_payments_fail(status, detail, reason):
    [event] = make_rail(serve_payment(status=status, status_detail=detail)
                        ).parse_webhook(notification())
    assert (event.outcome, event.reason) == (RailOutcome.FAILED, reason)
    assert event.event_id == f"123456:{status}"


@pytest.mark.parametrize("status", ["refunded", "charged_back"])
def test_refunded_and_charged_back_payments_are_refunded(status):
    [event] = make_rail(serve_payment(status=status, transaction_amount_refunded=149.9)
                        ).parse_webhook(notification())
    assert (event.outcome, event.txid) == (RailOutcome.REFUNDED, "VT0123456789")


@pytest.mark.parametrize("status", ["pending", "in_process", "authorized"])
def test_unsettled_payments_are_not_news(status):
    [event] = make_rail(serve_payment(status=status)).parse_webhook(notification())
    assert event.outcome == RailOutcome.NOT_SUPPORTED
    assert event.event_id == f"123456:{status}"


def test_other_topics_are_not_supported_and_fetch_nothing():
    [event] = make_rail(no_network).parse_webhook(notification(topic="merchant_order"))
    assert event.outcome == RailOutcome.NOT_SUPPORTED


def test_a_payment_notice_without_data_id_is_invalid():
    with pytest.raises(InvalidInput):
        make_rail(no_network).parse_webhook(notification(data_id=None))


def test_a_provider_outage_while_fetching_the_payment_is_a_provider_error():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="bad gateway")

    with pytest.raises(PaymentProviderError):
        make_rail(handler).parse_webhook(notification())


def preference_created(sent: list[httpx.Request]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        assert (request.method, str(request.url)) == ("POST", f"{API}/checkout/preferences")
        return httpx.Response(201, json={
            "id": "123-pref", "init_point": "https://www.mercadopago.com.br/checkout/v1/"
                                            "redirect?pref_id=123-pref"})
    return handler


def test_initiate_creates_a_preference():
    sent: list[httpx.Request] = []
    instructions = make_rail(preference_created(sent)).initiate(make_order(payment={}),
                                                                txid="VT0123456789")
    [request] = sent
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["x-idempotency-key"] == "vitrine-preference-VT0123456789"
    assert b'"unit_price":149.90' in request.content  # a JSON number, written exactly
    body = json.loads(request.content, parse_float=Decimal)
    [item] = body["items"]
    assert (item["unit_price"], item["currency_id"], item["quantity"]) == (
        Decimal("149.90"), "BRL", 1)
    assert (item["title"], item["id"]) == ("Regador de Metal 2 L", "P-1")
    assert body["external_reference"] == "VT0123456789"
    assert body["notification_url"] == \
        "https://vitrine.example/api/payments/mercadopago/webhook"
    assert set(body["back_urls"]) == {"success", "pending", "failure"}
    assert body["back_urls"]["success"].startswith("https://vitrine.example/")
    assert body["expires"] is True
    assert instructions.url == \
        "https://www.mercadopago.com.br/checkout/v1/redirect?pref_id=123-pref"
    assert (instructions.rail, instructions.status) == ("mercadopago", "awaiting_payment")
    assert (instructions.txid, instructions.provider_ref) == ("VT0123456789", "123-pref")
    assert instructions.expires_at is not None
    assert instructions.expires_at.timestamp() == -(-NOW // 60) * 60 + 3600  # from the minute


def test_the_instalments_the_shopper_chose_are_the_checkouts_plan():
    sent: list[httpx.Request] = []
    rail = make_rail(preference_created(sent))
    rail.initiate(make_order(payment={}), txid="VT1")
    rail.initiate(make_order(payment={}, instalments=6), txid="VT2")
    at_once, in_six = (json.loads(r.content) for r in sent)
    assert at_once["payment_methods"] == {"installments": 1, "default_installments": 1}
    assert in_six["payment_methods"] == {"installments": 6, "default_installments": 6}


def test_initiate_sends_whole_pesos_for_a_currency_without_decimals():
    sent: list[httpx.Request] = []
    make_rail(preference_created(sent)).initiate(
        make_order(total=15000, currency="COP"), txid="VT1")
    assert b'"unit_price":15000}' in sent[0].content


def test_decimals_are_written_as_json_numbers():
    assert to_json({"a": [Decimal("0.10"), 1, True, None, "x"]}) == \
        b'{"a":[0.10,1,true,null,"x"]}'


def test_a_currency_mercado_pago_does_not_take_is_refused_before_calling_it():
    with pytest.raises(InvalidInput):
        make_rail(no_network).initiate(make_order(currency="USD"), txid="VT1")


def test_a_provider_outage_is_a_provider_error():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"message": "unavailable"})

    with pytest.raises(PaymentProviderError) as caught:
        make_rail(handler).initiate(make_order(), txid="VT1")
    assert caught.value.context["http_status"] == 503


@pytest.mark.parametrize("failure", [httpx.ReadTimeout, httpx.ConnectError])
def test_a_timeout_or_a_dropped_connection_is_a_provider_error(failure):
    def handler(request: httpx.Request) -> httpx.Response:
        raise failure("no answer", request=request)

    with pytest.raises(PaymentProviderError):
        make_rail(handler).initiate(make_order(), txid="VT1")


def serve_search(*results: dict) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        assert (request.method, request.url.path) == ("GET", "/v1/payments/search")
        assert request.url.params["external_reference"] == "VT0123456789"
        return httpx.Response(200, json={"results": list(results), "paging": {}})
    return handler


def test_status_reports_the_approved_payment_over_a_later_rejected_try():
    approved = payment(id=1, date_created="2025-03-20T10:00:00.000-04:00")
    rejected = payment(id=2, status="rejected", status_detail="cc_rejected_other_reason",
                       date_created="2025-03-20T11:00:00.000-04:00")
    event = make_rail(serve_search(rejected, approved)).status(make_order())
    assert event is not None
    assert (event.outcome, event.event_id, event.amount) == (RailOutcome.CAPTURED,
                                                              "1:approved", 14990)


def test_status_reports_the_newest_failure():
    older = payment(id=1, status="rejected", date_created="2025-03-20T10:00:00.000-04:00")
    newer = payment(id=2, status="cancelled", status_detail="expired",
                    date_created="2025-03-20T11:00:00.000-04:00")
    event = make_rail(serve_search(older, newer)).status(make_order())
    assert event is not None
    assert (event.outcome, event.reason, event.event_id) == (RailOutcome.FAILED, "expired",
                                                              "2:cancelled")


def test_status_is_none_with_no_payment_or_only_a_pending_one():
    assert make_rail(serve_search()).status(make_order()) is None
    assert make_rail(serve_search(payment(status="pending"))).status(make_order()) is None


def test_refund_refunds_the_approved_payment():
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        if request.url.path == "/v1/payments/search":
            return serve_search(payment())(request)
        assert (request.method, request.url.path) == ("POST", "/v1/payments/123456/refunds")
        return httpx.Response(201, json={"id": 555, "payment_id": 123456, "status": "approved",
                                         "amount": 149.9})

    result = make_rail(handler).refund(make_order())
    assert (result.outcome, result.provider_ref) == (RefundOutcome.REFUNDED, "555")
    refund = sent[-1]
    assert json.loads(refund.content) == {}
    assert refund.headers["x-idempotency-key"] == "vitrine-refund-ord_1"


def test_refund_without_an_approved_payment_is_a_provider_error():
    with pytest.raises(PaymentProviderError):
        make_rail(serve_search(payment(status="rejected"))).refund(make_order())


def test_a_refused_refund_is_a_provider_error():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/payments/search":
            return serve_search(payment())(request)
        return httpx.Response(500, json={"message": "internal_error"})

    with pytest.raises(PaymentProviderError):
        make_rail(handler).refund(make_order())


# canceling


def test_cancel_ends_the_preference_now():
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        assert (request.method, str(request.url)) == ("PUT", f"{API}/checkout/preferences/pref-1")
        return httpx.Response(200, json={"id": "pref-1", "expires": True})

    assert make_rail(handler).cancel(make_order()) is True
    [request] = sent
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    # Now by the rail's clock, written as initiate writes its dates.
    body = json.loads(request.content)
    assert body == {"expires": True, "expiration_date_to": "2023-11-14T22:13:20.000+00:00"}
    assert datetime.fromisoformat(body["expiration_date_to"]).timestamp() == NOW


@pytest.mark.parametrize("answer", [
    httpx.Response(404, json={"message": "preference not found", "status": 404}),
    httpx.Response(400, json={"message": "invalid expiration_date_to", "status": 400}),
    httpx.Response(503, json={"message": "unavailable"}),
])
def test_cancel_the_provider_refuses_is_a_provider_error(answer):
    def handler(request: httpx.Request) -> httpx.Response:
        return answer

    with pytest.raises(PaymentProviderError) as caught:
        make_rail(handler).cancel(make_order())
    assert caught.value.context["http_status"] == answer.status_code
    assert caught.value.context["request"] == "PUT /checkout/preferences/pref-1"


@pytest.mark.parametrize("failure", [httpx.ReadTimeout, httpx.ConnectError])
def test_cancel_when_mercado_pago_cannot_be_reached_is_a_provider_error(failure):
    def handler(request: httpx.Request) -> httpx.Response:
        raise failure("no answer", request=request)

    with pytest.raises(PaymentProviderError):
        make_rail(handler).cancel(make_order())


def test_cancel_without_a_preference_asks_nothing():
    assert make_rail(no_network).cancel(make_order(payment={})) is True
