"""Each market's rails in a conversation: which are offered, switching rail, instalments,
and the QR code of push payments (UPI in India, a SEPA transfer in Spain)."""

import json
import time

import httpx
import pytest
import segno

from catalog.merchants import add_merchant_from_feed
from checkout.signatures import hmac_sha256_hex
from core.markets import get_market
from core.settings import Settings
from tests.checkout.test_api import OPS
from tests.factories import ucp_product, write_jsonl
from tests.test_end_to_end import chat
from vitrine.runtime import build_rails

pytestmark = pytest.mark.anyio

ASADO = "regalo para mi papá que le gusta el asado"


def _shop(runtime, tmp_path, market: str, currency: str, slug: str) -> None:
    rows = [ucp_product(id=f"{slug}-{i}", title=f"Garden watering can {i}", amount=150000 + i,
                        currency=currency) for i in range(3)]
    add_merchant_from_feed(engine=runtime.engine, name=slug.title(), market=market,
                           feed=write_jsonl(tmp_path / f"{slug}.jsonl", rows), slug=slug,
                           base_url=None, replace=True)


async def _confirmation(client, market: str, text: str = "watering can") -> dict:
    messages = await chat(client, text=text, market=market)
    buy = messages[-1]["cards"][0]["buttons"][0]["action"]
    [confirmation] = await chat(client, action=buy)
    return confirmation


def _action(message: dict, prefix: str) -> str:
    return next(b["action"] for b in message["buttons"] if b["action"].startswith(prefix))


def test_a_market_offers_its_configured_rails_in_order_and_the_sandbox_stands_in():
    from checkout.service import offered_rails

    dev = build_rails(Settings(env="test"))
    assert offered_rails(get_market("BR"), dev) == ["pix"]  # no Mercado Pago or Stripe keys
    assert offered_rails(get_market("US"), dev) == ["sandbox"]
    assert offered_rails(get_market("IN"), dev) == ["upi"]
    production = build_rails(Settings(
        env="production", ops_token="o" * 20, admin_token="a" * 20, sandbox_secret="s" * 20,
        pix_webhook_secret="p" * 20, upi_webhook_secret="u" * 20,
        sepa_webhook_secret="e" * 20))
    assert "sandbox" not in production
    assert offered_rails(get_market("US"), production) == []


async def test_a_market_without_a_rail_says_so_instead_of_taking_an_order(
        client, demo_runtime):
    demo_runtime.assistant.buying.rails.pop("sandbox")
    messages = await chat(client, text="gift for my 10-year-old nephew under $40", market="US")
    [reply] = await chat(client, action=messages[-1]["cards"][0]["buttons"][0]["action"])
    assert "cannot take payments in United States" in reply["text"]


async def test_upi_pays_by_link_and_qr_code_and_the_providers_notice_confirms_it(
        client, demo_runtime, tmp_path):
    _shop(demo_runtime, tmp_path, "IN", "INR", "bagicha")
    confirmation = await _confirmation(client, "IN")
    assert "UPI" in confirmation["text"] and "₹1,500.00" in confirmation["text"]
    order_id = _action(confirmation, "confirm:").split(":", 1)[1]
    [payment] = await chat(client, action=_action(confirmation, "confirm:"))
    link = next(line for line in payment["text"].splitlines() if line.startswith("upi://"))
    assert "am=1500.00" in link and "cu=INR" in link
    assert payment["image_url"].endswith(f"/api/payments/qr/{order_id}.png")
    image = await client.get(f"/api/payments/qr/{order_id}.png")
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.content.startswith(b"\x89PNG")
    assert segno.make(link, error="m").symbol_size() > (0, 0)

    shown = (await client.get(f"/api/orders/{order_id}", headers=OPS)).json()
    body = json.dumps({"event_id": "upi-1", "txid": shown["txid"], "amount": shown["total"],
                       "currency": "INR", "status": "SUCCESS", "utr": "123456789012",
                       "sent_at": int(time.time())}).encode()
    headers = {"X-Vitrine-Signature": "sha256=" + hmac_sha256_hex(
        demo_runtime.settings.upi_webhook_secret, body)}
    paid = await client.post("/api/payments/upi/webhook", content=body, headers=headers)
    assert paid.json()["status"] == "applied"
    # Paid: the QR code is gone, so an old link cannot be paid twice.
    assert (await client.get(f"/api/payments/qr/{order_id}.png")).status_code == 404


async def test_a_sepa_transfer_qr_for_spain_carries_the_rf_reference(
        client, demo_runtime, tmp_path):
    _shop(demo_runtime, tmp_path, "ES", "EUR", "jardin")
    confirmation = await _confirmation(client, "ES")
    order_id = _action(confirmation, "confirm:").split(":", 1)[1]
    [payment] = await chat(client, action=_action(confirmation, "confirm:"))
    assert "RF" in payment["text"] and demo_runtime.settings.sepa_iban in payment["text"]
    svg = await client.get(f"/api/payments/qr/{order_id}.svg")
    assert svg.status_code == 200 and "<svg" in svg.text
    shown = (await client.get(f"/api/orders/{order_id}", headers=OPS)).json()
    assert shown["payment"]["qr"].startswith("BCD\n") and "\nEUR1500\n" in shown["payment"]["qr"]
    assert any("Botón de arrepentimiento" == b["label"] for b in payment["buttons"])


async def test_the_shopper_can_switch_rail_and_choose_instalments(client, demo_runtime):
    from checkout.rails.mercadopago import MercadoPagoRail

    demo_runtime.assistant.buying.rails["mercadopago"] = MercadoPagoRail(
        access_token="t", webhook_secret="w" * 20, public_url="http://testserver",
        notification_url="http://testserver/api/payments/mercadopago/webhook")
    confirmation = await _confirmation(client, "AR", ASADO)
    assert "contra entrega" in confirmation["text"]
    [switched] = await chat(client, action=_action(confirmation, "choose:"))
    assert "Mercado Pago" in switched["text"]
    # Mercado Pago in Argentina takes instalments: the shopper picks, the card shows each.
    [in_three] = await chat(client, action=next(
        b["action"] for b in switched["buttons"] if b["action"].endswith(":3")))
    assert "En 3 cuotas de $3.266,67" in in_three["text"]
    order_id = _action(in_three, "confirm:").split(":", 1)[1]
    shown = (await client.get(f"/api/orders/{order_id}", headers=OPS)).json()
    assert shown["rail"] == "mercadopago"
    [back] = await chat(client, action=_action(in_three, "choose:"))
    assert "contra entrega" in back["text"] and "cuotas" not in back["text"]
    [stale] = await chat(client, action=f"choose:{order_id}:stripe")  # not offered in AR
    assert "ya no es válido" in stale["text"]


async def test_an_order_confirmed_cannot_change_rail(client):
    confirmation = await _confirmation(client, "AR", ASADO)
    order_id = _action(confirmation, "confirm:").split(":", 1)[1]
    await chat(client, action=_action(confirmation, "confirm:"))
    [reply] = await chat(client, action=f"choose:{order_id}:mercadopago")
    assert "ya no es válido" in reply["text"]


def test_provider_rails_are_on_with_their_keys_and_refused_in_production_without_secrets():
    from checkout.service import offered_rails

    keyed = build_rails(Settings(env="test", stripe_api_key="sk_test_x",
                                 mercadopago_access_token="TEST-x"))
    try:
        assert {"stripe", "oxxo", "mercadopago"} <= set(keyed)
        assert offered_rails(get_market("US"), keyed) == ["stripe"]
        assert offered_rails(get_market("MX"), keyed) == ["oxxo", "mercadopago", "stripe"]
    finally:
        for rail in keyed.values():
            getattr(rail, "close", lambda: None)()
    strong = dict(ops_token="o" * 20, admin_token="a" * 20, sandbox_secret="s" * 20,
                  pix_webhook_secret="p" * 20, upi_webhook_secret="u" * 20,
                  sepa_webhook_secret="e" * 20)
    with pytest.raises(ValueError, match="VITRINE_STRIPE_WEBHOOK_SECRET"):
        Settings(env="production", stripe_api_key="sk_live_x", **strong)
    Settings(env="production", stripe_api_key="sk_live_x", stripe_webhook_secret="w" * 20,
             oxxo_webhook_secret="x" * 20, **strong)


async def test_a_rail_that_cannot_take_the_order_leaves_it_open_for_another(
        client, demo_runtime):
    from checkout.rails.mercadopago import MercadoPagoRail

    demo_runtime.assistant.buying.rails["mercadopago"] = MercadoPagoRail(
        access_token="t", webhook_secret="w" * 20, public_url="http://testserver",
        notification_url="http://testserver/api/payments/mercadopago/webhook")
    # A rail that refuses pesos stands in for cash on delivery refusing this order.
    demo_runtime.assistant.buying.rails["cod"] = demo_runtime.rails["upi"]
    confirmation = await _confirmation(client, "AR", ASADO)
    refused, card = await chat(client, action=_action(confirmation, "confirm:"))
    assert "no se puede pagar con pago contra entrega" in refused["text"]
    assert any(b["action"].endswith(":mercadopago") for b in card["buttons"])
    order_id = _action(card, "cancel:").split(":", 1)[1]
    shown = (await client.get(f"/api/orders/{order_id}", headers=OPS)).json()
    assert shown["status"] == "awaiting_confirmation"


def _oxxo_stripe(sent: list, *, refuse_email: bool = False):
    def stripe(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        assert request.url.path == "/v1/payment_intents"
        form = dict(httpx.QueryParams(request.content.decode()))
        if refuse_email and form["payment_method_data[billing_details][email]"] == \
                "ana@invalid.mx":
            return httpx.Response(400, json={"error": {
                "type": "invalid_request_error", "code": "email_invalid",
                "param": "payment_method_data[billing_details][email]",
                "message": "Invalid email address: ana@invalid.mx"}})
        return httpx.Response(200, json={
            "id": "pi_1", "object": "payment_intent", "status": "requires_action",
            "amount": 150000, "amount_received": 0, "currency": "mxn", "metadata": {},
            "payment_method_types": ["oxxo"],
            "next_action": {"type": "oxxo_display_details", "oxxo_display_details": {
                "number": "93000012345678901234", "expires_after": int(time.time()) + 86400,
                "hosted_voucher_url": "https://payments.stripe.com/oxxo/voucher/v1"}}})
    return stripe


def _oxxo(runtime, sent: list, **kwargs) -> None:
    from checkout.rails.oxxo import OxxoRail

    runtime.assistant.buying.rails["oxxo"] = OxxoRail(
        api_key="sk_test_1", webhook_secret="w" * 20, max_network_retries=0,
        http=httpx.Client(transport=httpx.MockTransport(_oxxo_stripe(sent, **kwargs))))


async def test_an_oxxo_voucher_asks_for_the_payers_name_and_email_first(
        client, demo_runtime, tmp_path):
    sent: list[httpx.Request] = []
    _oxxo(demo_runtime, sent)
    _shop(demo_runtime, tmp_path, "MX", "MXN", "jardin-mx")
    confirmation = await _confirmation(client, "MX")
    assert "efectivo en OXXO" in confirmation["text"]
    [asked] = await chat(client, action=_action(confirmation, "confirm:"))
    assert "nombre y correo" in asked["text"] and not sent
    [again] = await chat(client, text="Ana López ana@")
    assert "el nombre y el correo" in again["text"] and not sent
    [voucher] = await chat(client, text="Ana López, ana@example.mx")
    assert "93000012345678901234" in voucher["text"] and "OXXO" in voucher["text"]
    form = dict(httpx.QueryParams(sent[0].content.decode()))
    assert form["payment_method_data[billing_details][name]"] == "Ana López"
    assert form["payment_method_data[billing_details][email]"] == "ana@example.mx"


async def test_details_the_provider_refuses_are_asked_for_again(client, demo_runtime, tmp_path):
    sent: list[httpx.Request] = []
    _oxxo(demo_runtime, sent, refuse_email=True)
    _shop(demo_runtime, tmp_path, "MX", "MXN", "jardin-mx")
    confirmation = await _confirmation(client, "MX")
    await chat(client, action=_action(confirmation, "confirm:"))
    [asked_again] = await chat(client, text="Ana López ana@invalid.mx")
    assert "nombre y correo" in asked_again["text"] and len(sent) == 1
    [voucher] = await chat(client, text="Ana López ana@example.mx")
    assert "93000012345678901234" in voucher["text"] and len(sent) == 2


async def test_anything_but_the_payers_details_drops_the_question(
        client, demo_runtime, tmp_path):
    sent: list[httpx.Request] = []
    _oxxo(demo_runtime, sent)
    _shop(demo_runtime, tmp_path, "MX", "MXN", "jardin-mx")
    confirmation = await _confirmation(client, "MX")
    [asked] = await chat(client, action=_action(confirmation, "confirm:"))
    assert "nombre y correo" in asked["text"]
    messages = await chat(client, text="mejor muéstrame otra regadera de jardín grande")
    assert messages[-1]["cards"]  # a new search, not a complaint about the e-mail
    [hello] = await chat(client, text="hola")
    assert "nombre y correo" not in hello["text"]
    # Pressing Confirm again asks again.
    [asked_again] = await chat(client, action=_action(confirmation, "confirm:"))
    assert "nombre y correo" in asked_again["text"] and not sent
