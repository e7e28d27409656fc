"""Money paths found by review: double taps, money after a cancel, partial refunds, webhooks
for payments Vitrine did not start, the sweep's reach, and the sandbox's limits."""

import json
import time
from datetime import timedelta

import httpx
import pytest
from sqlmodel import Session, select

from checkout.merchant_notices import OrderDelivery, deliver_due
from checkout.models import Order, OrderTransition
from checkout.rails.pix import SIGNATURE_HEADER as PIX_SIGNATURE
from checkout.service import confirm_order
from checkout.signatures import hmac_sha256_hex
from checkout.sweep import sweep
from core.db import utcnow
from core.settings import Settings
from tests.checkout.test_api import OPS, _bought, _give_key
from tests.test_end_to_end import chat, pix_code, signed, tlv
from vitrine.runtime import build_rails

pytestmark = pytest.mark.anyio

ASADO = "regalo para mi papá que le gusta el asado"
MAE = "presente para minha mãe até R$200"


async def _confirmation(client, market: str, text: str) -> tuple[str, dict]:
    messages = await chat(client, text=text, market=market)
    [confirmation] = await chat(client, action=messages[-1]["cards"][0]["buttons"][0]["action"])
    confirm = next(b["action"] for b in confirmation["buttons"]
                   if b["action"].startswith("confirm:"))
    return confirm.split(":", 1)[1], confirmation


async def test_two_confirmations_at_once_start_one_payment(client, demo_runtime):
    order_id, _ = await _confirmation(client, "BR", MAE)
    rails = demo_runtime.rails
    # Two devices read the order before either wrote: both try to start its payment.
    with Session(demo_runtime.engine) as first, Session(demo_runtime.engine) as second:
        a, b = first.get(Order, order_id), second.get(Order, order_id)
        won = confirm_order(session=first, order=a, rails=rails)
        first.commit()
        lost = confirm_order(session=second, order=b, rails=rails)
        second.commit()
        saved = a.txid
    assert won.outcome == "confirmed" and lost.outcome == "not_pending"
    assert won.instructions is not None and won.instructions.txid == saved
    with Session(demo_runtime.engine) as session:
        assert session.get(Order, order_id).txid == won.instructions.txid


async def test_money_for_a_withdrawn_order_is_owed_back_and_everyone_hears(
        client, demo_runtime):
    order_id, payment = await _bought(client, "BR", MAE)
    txid = tlv(tlv(pix_code(payment))["62"])["05"]
    withdraw = next(b["action"] for m in payment for b in m["buttons"]
                    if b["action"].startswith("withdraw:"))
    [done] = await chat(client, action=withdraw)
    assert "Nada foi cobrado" in done["text"]
    # The shopper had already paid the code on their phone.
    body, headers = signed({"event_id": "late", "txid": txid, "status": "paid"})
    response = await client.post("/api/payments/sandbox/webhook", content=body, headers=headers)
    assert response.json()["status"] == "applied"
    shown = (await client.get(f"/api/orders/{order_id}", headers=OPS)).json()
    assert shown["status"] == "refund_pending"
    assert shown["status_history"][-1]["note"] == "paid after it was canceled: refund due"
    told = await chat(client, text="oi")
    assert any("que estava cancelado" in m["text"] for m in told)


async def test_a_second_payment_or_a_wrong_amount_is_written_on_the_order(
        client, demo_runtime):
    order_id, payment = await _bought(client, "BR", MAE)
    txid = tlv(tlv(pix_code(payment))["62"])["05"]
    for event_id, extra, status in (("short", {"amount": 1, "currency": "BRL"},
                                     "amount_mismatch"),
                                    ("right", {}, "applied"), ("again", {}, "ignored")):
        body, headers = signed({"event_id": event_id, "txid": txid, "status": "paid", **extra})
        response = await client.post("/api/payments/sandbox/webhook", content=body,
                                     headers=headers)
        assert response.json()["status"] == status
    assert response.json()["note"] == "paid_twice"
    notes = [h["note"] for h in (await client.get(f"/api/orders/{order_id}", headers=OPS)
                                 ).json()["status_history"]]
    assert notes[-3].startswith("paid 1 BRL, not the order's")
    assert notes[-1] == "paid again: the second payment is owed back"


async def test_a_partial_refund_does_not_mark_the_order_refunded(client, demo_runtime):
    order_id, payment = await _bought(client, "BR", MAE)
    fields = tlv(pix_code(payment))
    txid, valor = tlv(fields["62"])["05"], fields["54"]
    secret = demo_runtime.settings.pix_webhook_secret
    refund = {"id": "D1", "rtrId": "D2", "valor": "1.00", "status": "DEVOLVIDO"}
    body = json.dumps({"pix": [{"endToEndId": "E123", "txid": txid, "valor": valor,
                                "devolucoes": [refund]}]}).encode()
    headers = {PIX_SIGNATURE: "sha256=" + hmac_sha256_hex(secret, body)}
    await client.post("/api/payments/pix/webhook", content=body, headers=headers)
    shown = (await client.get(f"/api/orders/{order_id}", headers=OPS)).json()
    assert shown["status"] == "paid"
    assert shown["status_history"][-1]["note"].startswith("100 BRL of")


async def test_a_providers_event_for_a_payment_vitrine_did_not_start_is_acknowledged(
        client, demo_runtime):
    secret = demo_runtime.settings.upi_webhook_secret
    body = json.dumps({"event_id": "x1", "txid": "SOMEONEELSE", "amount": 100,
                       "status": "SUCCESS", "sent_at": int(time.time())}).encode()
    headers = {"X-Vitrine-Signature": "sha256=" + hmac_sha256_hex(secret, body)}
    response = await client.post("/api/payments/upi/webhook", content=body, headers=headers)
    assert response.status_code == 200 and response.json()["status"] == "unknown_txid"


async def test_switching_rail_follows_the_orders_market_not_the_conversations(client):
    order_id, confirmation = await _confirmation(client, "AR", ASADO)
    await chat(client, text="oi", market="BR")  # the conversation moves to Brazil
    [reply] = await chat(client, action=f"choose:{order_id}:pix")
    assert "ya no es válido" in reply["text"] or "não é mais válido" in reply["text"]
    shown = (await client.get(f"/api/orders/{order_id}", headers=OPS)).json()
    assert shown["rail"] == "cod"
    [odd] = await chat(client, action=f"choose:{order_id}:²")
    assert "válido" in odd["text"]


async def test_static_codes_never_crowd_the_sweep_out(client, demo_runtime):
    from checkout.rails.mercadopago import MercadoPagoRail

    for _ in range(3):
        await _bought(client, "BR", MAE)  # Pix codes nobody paid: no provider to ask

    def provider(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/checkout/preferences":
            return httpx.Response(201, json={"id": "p", "init_point": "https://mp.example"})
        return httpx.Response(200, json={"results": []})

    rail = MercadoPagoRail(access_token="t", webhook_secret="w" * 20,
                           public_url="http://testserver", notification_url="http://x",
                           client=httpx.Client(transport=httpx.MockTransport(provider)))
    demo_runtime.assistant.buying.rails["mercadopago"] = rail
    order_id, confirmation = await _confirmation(client, "AR", ASADO)
    await chat(client, action=f"choose:{order_id}:mercadopago")
    await chat(client, action=f"confirm:{order_id}")
    counts = sweep(engine=demo_runtime.engine, rails={**demo_runtime.rails,
                                                      "mercadopago": rail},
                   now=utcnow() + timedelta(minutes=15))
    assert counts["asked"] == 1  # the card order, not the Pix codes


def test_the_sandbox_never_settles_a_rail_whose_real_provider_is_configured():
    rails = build_rails(Settings(env="development", pix_webhook_secret="a-real-psp-secret-1"))
    assert "pix" not in rails["sandbox"].settles and "upi" in rails["sandbox"].settles


async def test_a_merchants_bad_address_holds_up_nobody_and_news_keeps_its_order(
        client, demo_runtime):
    order_id, payment = await _bought(client, "BR", MAE)
    slug = (await client.get(f"/api/orders/{order_id}", headers=OPS)).json()["merchant"]
    key = _give_key(demo_runtime, slug)
    bad = await client.put(f"/api/merchants/{slug}/order-webhook",
                           json={"url": "https://shop.example:abc/hook"}, headers=key)
    assert bad.status_code == 400
    await client.put(f"/api/merchants/{slug}/order-webhook",
                     json={"url": "https://shop.example/hook"}, headers=key)
    txid = tlv(tlv(pix_code(payment))["62"])["05"]
    body, headers = signed({"event_id": "p", "txid": txid, "status": "paid"})
    await client.post("/api/payments/sandbox/webhook", content=body, headers=headers)
    *_, listed = await chat(client, text="/pedidos")
    await chat(client, action=next(b["action"] for b in listed["buttons"]))
    seen: list[str] = []

    def merchant(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["x-vitrine-event"])
        return httpx.Response(500 if len(seen) == 1 else 200)

    with httpx.Client(transport=httpx.MockTransport(merchant)) as http:
        now = utcnow()
        deliver_due(engine=demo_runtime.engine, client=http, now=now)
        later = now + timedelta(minutes=1)
        deliver_due(engine=demo_runtime.engine, client=http, now=later)
        deliver_due(engine=demo_runtime.engine, client=http, now=later)
    # "paid" failed once and was sent again before "refund_pending" ever went out.
    assert seen == ["order.paid", "order.paid", "order.refund_pending"]
    with Session(demo_runtime.engine) as session:
        assert all(d.delivered_at for d in session.exec(select(OrderDelivery)))
        assert session.exec(select(OrderTransition)).first() is not None


async def test_an_abandoned_pix_code_expires_after_a_day_and_late_money_still_pays(
        client, demo_runtime):
    from checkout.sweep import expire_overdue

    order_id, payment = await _bought(client, "BR", MAE)
    assert expire_overdue(engine=demo_runtime.engine, now=utcnow() + timedelta(hours=23)) == 0
    assert expire_overdue(engine=demo_runtime.engine, now=utcnow() + timedelta(hours=25)) == 1
    txid = tlv(tlv(pix_code(payment))["62"])["05"]
    body, headers = signed({"event_id": "late", "txid": txid, "status": "paid"})
    await client.post("/api/payments/sandbox/webhook", content=body, headers=headers)
    shown = (await client.get(f"/api/orders/{order_id}", headers=OPS)).json()
    assert [h["to_status"] for h in shown["status_history"]][-2:] == ["expired", "paid"]
