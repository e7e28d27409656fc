"""Merchants hear of their orders: a signed webhook retried with backoff, or a list to pull;
and the payments sweep asks providers about payments whose webhook never came."""

import hashlib
import hmac
import json
from datetime import timedelta

import httpx
import pytest
from sqlmodel import Session, select

from checkout.merchant_notices import MAX_ATTEMPTS, OrderDelivery, backoff, deliver_due
from checkout.models import Order
from checkout.rails.mercadopago import MercadoPagoRail
from checkout.sweep import expire_overdue, sweep
from core.db import utcnow
from tests.checkout.test_api import OPS, _bought, _give_key
from tests.test_end_to_end import chat, pix_code, signed, tlv

pytestmark = pytest.mark.anyio

HOOK = "https://shop.example/vitrine/orders"
ASADO = "regalo para mi papá que le gusta el asado"


async def _hooked(client, runtime, market="AR", text=ASADO) -> tuple[str, dict, str]:
    """A confirmed order, and its merchant's API key and slug (no webhook yet)."""
    order_id, _ = await _bought(client, market, text)
    slug = (await client.get(f"/api/orders/{order_id}", headers=OPS)).json()["merchant"]
    return order_id, _give_key(runtime, slug), slug


def _verify(secret: str, request: httpx.Request) -> dict:
    stamp, mac = dict(p.split("=", 1) for p in
                      request.headers["x-vitrine-signature"].split(",")).values()
    expected = hmac.new(secret.encode(), f"{stamp}.".encode() + request.content,
                        hashlib.sha256).hexdigest()
    assert hmac.compare_digest(mac, expected)
    return json.loads(request.content)


async def test_a_cash_order_reaches_the_merchants_webhook_signed_and_once(
        client, demo_runtime):
    _, key, slug = await _hooked(client, demo_runtime)  # before the hook: no news queued
    registered = await client.put(f"/api/merchants/{slug}/order-webhook", json={"url": HOOK},
                                  headers=key)
    assert registered.status_code == 200
    secret = registered.json()["secret"]
    order_id, _ = await _bought(client, "AR", ASADO)

    seen: list[httpx.Request] = []

    def merchant(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    with httpx.Client(transport=httpx.MockTransport(merchant)) as http:
        assert deliver_due(engine=demo_runtime.engine, client=http) == \
            {"delivered": 1, "retried": 0, "gave_up": 0}
        assert deliver_due(engine=demo_runtime.engine, client=http)["delivered"] == 0
    [request] = seen
    assert str(request.url) == HOOK and request.headers["x-vitrine-event"] == \
        "order.pending_collection"
    news = _verify(secret, request)
    assert news["order"]["id"] == order_id and news["order"]["status"] == "pending_collection"
    assert news["id"] == request.headers["x-vitrine-delivery"]


async def test_a_merchant_down_is_retried_with_backoff_and_given_up_after_days(
        client, demo_runtime):
    _, key, slug = await _hooked(client, demo_runtime)
    await client.put(f"/api/merchants/{slug}/order-webhook", json={"url": HOOK}, headers=key)
    await _bought(client, "AR", ASADO)
    down = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(503)))
    now = utcnow()
    assert deliver_due(engine=demo_runtime.engine, client=down, now=now)["retried"] == 1
    # Not due again until the backoff has passed.
    assert deliver_due(engine=demo_runtime.engine, client=down,
                       now=now + timedelta(seconds=10))["retried"] == 0
    for attempt in range(1, MAX_ATTEMPTS):
        now += backoff(attempt) + timedelta(seconds=1)
        counts = deliver_due(engine=demo_runtime.engine, client=down, now=now)
    assert counts == {"delivered": 0, "retried": 0, "gave_up": 1}
    with Session(demo_runtime.engine) as session:
        [delivery] = session.exec(select(OrderDelivery)).all()
        assert delivery.attempts == MAX_ATTEMPTS and delivery.last_error == "HTTP 503"
    assert backoff(1) == timedelta(seconds=30) and backoff(20) == timedelta(hours=6)


async def test_news_follows_the_order_paid_then_withdrawn_and_not_before_it_is_theirs(
        client, demo_runtime):
    messages = await chat(client, text="presente para minha mãe até R$200", market="BR")
    order_id, payment = await _bought(client, "BR", "presente para minha mãe até R$200")
    slug = (await client.get(f"/api/orders/{order_id}", headers=OPS)).json()["merchant"]
    key = _give_key(demo_runtime, slug)
    await client.put(f"/api/merchants/{slug}/order-webhook", json={"url": HOOK}, headers=key)
    # An order canceled before it was confirmed was never the merchant's news.
    buy = messages[-1]["cards"][1]["buttons"][0]["action"]
    [confirmation] = await chat(client, action=buy)
    await chat(client, action=next(b["action"] for b in confirmation["buttons"]
                                   if b["action"].startswith("cancel:")))
    txid = tlv(tlv(pix_code(payment))["62"])["05"]
    body, headers = signed({"event_id": "e1", "txid": txid, "status": "paid"})
    await client.post("/api/payments/sandbox/webhook", content=body, headers=headers)
    *_, listed = await chat(client, text="/pedidos")
    await chat(client, action=next(b["action"] for b in listed["buttons"]))
    with Session(demo_runtime.engine) as session:
        events = [d.event for d in session.exec(
            select(OrderDelivery).order_by(OrderDelivery.created_at))]
    assert events == ["order.paid", "order.refund_pending"]

    pulled = await client.get(f"/api/merchants/{slug}/orders", headers=key,
                              params={"status": "refund_pending"})
    assert [o["id"] for o in pulled.json()["orders"]] == [order_id]
    assert (await client.get(f"/api/merchants/{slug}/orders")).status_code == 401


async def test_a_webhook_must_be_https_and_only_its_merchant_may_set_it(client, demo_runtime):
    _, key, slug = await _hooked(client, demo_runtime)
    for url in ("http://shop.example/hook", "ftp://shop.example", "not a url"):
        bad = await client.put(f"/api/merchants/{slug}/order-webhook", json={"url": url},
                               headers=key)
        assert bad.status_code == 400 and "https" in bad.json()["reason"]
    other = await client.put(f"/api/merchants/{slug}/order-webhook", json={"url": HOOK},
                             headers={"Authorization": "Bearer nope"})
    assert other.status_code == 401
    first = (await client.put(f"/api/merchants/{slug}/order-webhook", json={"url": HOOK},
                              headers=key)).json()["secret"]
    second = (await client.put(f"/api/merchants/{slug}/order-webhook", json={"url": HOOK},
                               headers=key)).json()["secret"]
    assert first != second  # PUT again rotates the secret
    assert (await client.delete(f"/api/merchants/{slug}/order-webhook", headers=key)
            ).json() == {"status": "removed"}


def _mercadopago(handler) -> MercadoPagoRail:
    return MercadoPagoRail(access_token="t", webhook_secret="w" * 20,
                           public_url="http://testserver",
                           notification_url="http://testserver/api/payments/mercadopago/webhook",
                           client=httpx.Client(transport=httpx.MockTransport(handler)))


async def test_the_sweep_asks_the_provider_when_the_webhook_never_came(client, demo_runtime):
    created = {"id": "pref-1", "init_point": "https://mercadopago.example/pay"}
    state = {"results": []}

    def provider(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/checkout/preferences":
            return httpx.Response(201, json=created)
        assert request.url.path == "/v1/payments/search"
        return httpx.Response(200, json={"results": state["results"]})

    rail = _mercadopago(provider)
    demo_runtime.assistant.buying.rails["mercadopago"] = rail
    messages = await chat(client, text=ASADO, market="AR")
    [confirmation] = await chat(client, action=messages[-1]["cards"][0]["buttons"][0]["action"])
    [card] = await chat(client, action=next(b["action"] for b in confirmation["buttons"]
                                            if b["action"].endswith(":mercadopago")))
    order_id = next(b["action"] for b in card["buttons"]
                    if b["action"].startswith("confirm:")).split(":", 1)[1]
    await chat(client, action=f"confirm:{order_id}")
    with Session(demo_runtime.engine) as session:
        order = session.get(Order, order_id)
        txid, total = order.txid, order.total
    rails = {"mercadopago": rail}
    later = utcnow() + timedelta(minutes=15)
    assert sweep(engine=demo_runtime.engine, rails=rails, now=later)["applied"] == 0
    state["results"] = [{"id": 77, "status": "approved", "status_detail": "accredited",
                         "transaction_amount": total // 100, "currency_id": "ARS",
                         "external_reference": txid,
                         "date_created": "2026-11-29T10:00:00.000-03:00"}]
    assert sweep(engine=demo_runtime.engine, rails=rails, now=later)["applied"] == 1
    assert sweep(engine=demo_runtime.engine, rails=rails, now=later)["applied"] == 0
    shown = (await client.get(f"/api/orders/{order_id}", headers=OPS)).json()
    assert shown["status"] == "paid"
    assert shown["status_history"][-1]["event_ref"] == "77:approved"
    told = await chat(client, text="hola")
    assert any("Pago confirmado" in m["text"] for m in told)


async def test_instructions_that_ran_out_expire_the_order_and_the_shopper_hears(
        client, demo_runtime):
    order_id, _ = await _bought(client, "US", "gift for my 10-year-old nephew under $40")
    with Session(demo_runtime.engine) as session:
        order = session.get(Order, order_id)
        order.payment = {**order.payment, "expires_at": utcnow().isoformat()}
        session.add(order)
        session.commit()
    assert expire_overdue(engine=demo_runtime.engine,
                          now=utcnow() + timedelta(minutes=1)) == 1
    assert expire_overdue(engine=demo_runtime.engine,
                          now=utcnow() + timedelta(minutes=2)) == 0
    shown = (await client.get(f"/api/orders/{order_id}", headers=OPS)).json()
    assert shown["status"] == "expired" and shown["checkout_state"] == "expired"
    updates = await client.get("/api/chat/updates", params={"user": "ana"})
    assert any("ran out. If you paid already" in m["text"]
               for m in updates.json()["messages"])
