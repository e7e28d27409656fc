"""The orders API, and a payment's path through the webhook route and the audit log."""

import json

import pytest
from sqlalchemy import event
from sqlmodel import Session, select

from catalog.merchants import hash_api_key
from catalog.models import Merchant
from checkout.models import Order, OrderTransition, PaymentEvent
from checkout.rails import WebhookRequest
from checkout.rails.pix import SIGNATURE_HEADER as PIX_SIGNATURE
from checkout.signatures import hmac_sha256_hex
from checkout.webhooks import process_webhook
from tests.conftest import OPS_TOKEN
from tests.test_end_to_end import chat, pix_code, signed, tlv

pytestmark = pytest.mark.anyio

MERCHANT_KEY = "test-merchant-key-0123456789"
OPS = {"Authorization": f"Bearer {OPS_TOKEN}"}


async def _bought(client, market: str, text: str) -> tuple[str, list[dict]]:
    """Buy the first card and confirm it; the order's id and the payment messages."""
    messages = await chat(client, text=text, market=market)
    buy = messages[-1]["cards"][0]["buttons"][0]["action"]
    [confirmation] = await chat(client, action=buy)
    confirm = next(b["action"] for b in confirmation["buttons"]
                   if b["action"].startswith("confirm:"))
    payment = await chat(client, action=confirm)
    return confirm.split(":", 1)[1], payment


def _give_key(runtime, slug: str) -> dict[str, str]:
    with Session(runtime.engine) as session:
        merchant = session.exec(select(Merchant).where(Merchant.slug == slug)).one()
        merchant.api_key_hash = hash_api_key(MERCHANT_KEY)
        session.add(merchant)
        session.commit()
    return {"Authorization": f"Bearer {MERCHANT_KEY}"}


async def test_an_order_shows_its_status_history_to_its_merchant_and_to_ops(
        client, demo_runtime):
    order_id, payment = await _bought(client, "BR", "presente para minha mãe até R$200")
    txid = tlv(tlv(pix_code(payment))["62"])["05"]
    body, headers = signed({"event_id": "evt-paid", "txid": txid, "status": "paid"})
    assert (await client.post("/api/payments/sandbox/webhook", content=body,
                              headers=headers)).json()["status"] == "applied"

    shown = (await client.get(f"/api/orders/{order_id}", headers=OPS)).json()
    assert shown["status"] == "paid" and shown["checkout_state"] == "completed"
    assert shown["txid"] == txid and shown["rail"] == "pix"
    steps = [(h["from_status"], h["to_status"], h["actor"]) for h in shown["status_history"]]
    assert steps == [(None, "awaiting_confirmation", "shopper"),
                     ("awaiting_confirmation", "awaiting_payment", "shopper"),
                     ("awaiting_payment", "paid", "rail:sandbox")]
    assert shown["status_history"][-1]["event_ref"] == "evt-paid"

    key = _give_key(demo_runtime, shown["merchant"])
    assert (await client.get(f"/api/orders/{order_id}", headers=key)).json()["id"] == order_id


async def test_an_order_is_hidden_from_other_keys_and_unknown_ids_do_not_leak(client):
    order_id, _ = await _bought(client, "BR", "presente para minha mãe até R$200")
    for headers in ({}, {"Authorization": "Bearer someone-else"}):
        response = await client.get(f"/api/orders/{order_id}", headers=headers)
        assert response.status_code == 401 and response.json()["reason"]
    # Without the ops token, a missing order answers like a forbidden one.
    missing = await client.get("/api/orders/ord_nope",
                               headers={"Authorization": "Bearer someone-else"})
    assert missing.status_code == 401
    assert (await client.get("/api/orders/ord_nope", headers=OPS)).status_code == 404


async def test_cash_on_delivery_is_paid_when_its_merchant_marks_it_collected(
        client, demo_runtime):
    order_id, _ = await _bought(client, "AR", "regalo para mi papá que le gusta el asado")
    shown = (await client.get(f"/api/orders/{order_id}", headers=OPS)).json()
    assert shown["status"] == "pending_collection"
    # Ops can look, but only the merchant can say the cash was collected.
    assert (await client.post(f"/api/orders/{order_id}/collected", headers=OPS)
            ).status_code == 401
    key = _give_key(demo_runtime, shown["merchant"])
    done = await client.post(f"/api/orders/{order_id}/collected", headers=key)
    assert done.status_code == 200 and done.json()["status"] == "paid"
    assert done.json()["status_history"][-1]["actor"] == f"merchant:{shown['merchant']}"
    again = await client.post(f"/api/orders/{order_id}/collected", headers=key)
    assert again.status_code == 400 and "paid" in again.json()["reason"]


async def test_a_late_failure_or_pending_never_undoes_a_payment(client):
    order_id, payment = await _bought(client, "BR", "presente para minha mãe até R$200")
    txid = tlv(tlv(pix_code(payment))["62"])["05"]
    for event_id, status, outcome in (("e1", "paid", "applied"), ("e2", "failed", "ignored"),
                                      ("e3", "expired", "ignored")):
        body, headers = signed({"event_id": event_id, "txid": txid, "status": status})
        response = await client.post("/api/payments/sandbox/webhook", content=body,
                                     headers=headers)
        assert response.json()["status"] == outcome
    shown = (await client.get(f"/api/orders/{order_id}", headers=OPS)).json()
    assert shown["status"] == "paid" and len(shown["status_history"]) == 3


async def test_an_expired_payment_tells_the_shopper_and_late_money_still_counts(client):
    order_id, payment = await _bought(client, "BR", "presente para minha mãe até R$200")
    txid = tlv(tlv(pix_code(payment))["62"])["05"]
    body, headers = signed({"event_id": "e1", "txid": txid, "status": "expired"})
    await client.post("/api/payments/sandbox/webhook", content=body, headers=headers)
    told = await chat(client, text="oi")
    assert any("tempo para pagar" in m["text"] for m in told)
    body, headers = signed({"event_id": "e2", "txid": txid, "status": "paid"})
    await client.post("/api/payments/sandbox/webhook", content=body, headers=headers)
    assert (await client.get(f"/api/orders/{order_id}", headers=OPS)).json()["status"] == "paid"


async def test_a_payment_of_another_amount_is_held_for_ops(client):
    order_id, payment = await _bought(client, "BR", "presente para minha mãe até R$200")
    txid = tlv(tlv(pix_code(payment))["62"])["05"]
    body, headers = signed({"event_id": "e1", "txid": txid, "status": "paid", "amount": 1,
                            "currency": "BRL"})
    response = await client.post("/api/payments/sandbox/webhook", content=body, headers=headers)
    assert response.json()["status"] == "amount_mismatch"
    shown = (await client.get(f"/api/orders/{order_id}", headers=OPS)).json()
    assert shown["status"] == "awaiting_payment"


def _pix_notice(txid: str, valor: str, end_to_end: str, refunds=()) -> bytes:
    return json.dumps({"pix": [{"endToEndId": end_to_end, "txid": txid, "valor": valor,
                                "horario": "2026-11-29T12:00:00.000Z",
                                "devolucoes": list(refunds)}]}).encode()


async def test_the_pix_psps_notice_pays_the_order_and_then_reports_its_refund(
        client, demo_runtime):
    order_id, payment = await _bought(client, "BR", "presente para minha mãe até R$200")
    fields = tlv(pix_code(payment))
    txid, valor = tlv(fields["62"])["05"], fields["54"]
    secret = demo_runtime.settings.pix_webhook_secret
    body = _pix_notice(txid, valor, "E00000000202611291200abcdefghijk")
    forged = await client.post("/api/payments/pix/webhook", content=body,
                               headers={PIX_SIGNATURE: "sha256=" + "0" * 64})
    assert forged.status_code == 401
    headers = {PIX_SIGNATURE: "sha256=" + hmac_sha256_hex(secret, body)}
    paid = await client.post("/api/payments/pix/webhook", content=body, headers=headers)
    assert paid.json()["status"] == "applied"
    refund = {"id": "D1", "rtrId": "D00000000202611301200", "valor": valor,
              "status": "DEVOLVIDO"}
    body = _pix_notice(txid, valor, "E00000000202611291200abcdefghijk", [refund])
    headers = {PIX_SIGNATURE: "sha256=" + hmac_sha256_hex(secret, body)}
    refunded = await client.post("/api/payments/pix/webhook", content=body, headers=headers)
    assert refunded.json()["status"] == "applied"
    shown = (await client.get(f"/api/orders/{order_id}", headers=OPS)).json()
    assert [h["to_status"] for h in shown["status_history"]][-2:] == ["paid", "refunded"]


async def test_a_card_providers_webhook_cannot_settle_a_pix_order(client, demo_runtime):
    """Each provider settles its own rails' orders: the sandbox stands in for Pix only."""
    order_id, _ = await _bought(client, "AR", "regalo para mi papá que le gusta el asado")
    with Session(demo_runtime.engine) as session:
        txid = session.get(Order, order_id).txid
    body, headers = signed({"event_id": "e1", "txid": txid, "status": "paid"})
    response = await client.post("/api/payments/sandbox/webhook", content=body, headers=headers)
    assert response.status_code == 404  # a cash order's txid is no sandbox payment


async def test_an_unknown_rail_has_no_webhook(client):
    response = await client.post("/api/payments/nosuchrail/webhook", content=b"{}")
    assert response.status_code == 404 and response.json()["reason"]


async def test_a_failure_after_capture_loses_nothing_and_the_retry_pays_once(
        client, demo_runtime):
    order_id, payment = await _bought(client, "BR", "presente para minha mãe até R$200")
    txid = tlv(tlv(pix_code(payment))["62"])["05"]
    body, headers = signed({"event_id": "evt-crash", "txid": txid, "status": "paid"})
    request = WebhookRequest(body=body, headers={k.lower(): v for k, v in headers.items()})
    rail = demo_runtime.rails["sandbox"]

    def crash(*_):
        raise RuntimeError("the database went away before the order was saved")

    # The payment is captured (the provider says so) but the transaction that records it
    # and moves the order fails at commit.
    shared = demo_runtime.shared  # the event's claim among processes
    event.listen(demo_runtime.engine, "commit", crash)
    try:
        with pytest.raises(RuntimeError):
            process_webhook(engine=demo_runtime.engine, rail=rail, request=request,
                            shared=shared)
    finally:
        event.remove(demo_runtime.engine, "commit", crash)
    with Session(demo_runtime.engine) as session:
        assert session.get(Order, order_id).status == "awaiting_payment"
        assert not session.exec(select(PaymentEvent)).all()
    # The claim was given up with the transaction: the provider delivers again, and it is
    # applied once, then a duplicate.
    assert process_webhook(engine=demo_runtime.engine, rail=rail, request=request,
                           shared=shared) == "applied"
    assert process_webhook(engine=demo_runtime.engine, rail=rail, request=request,
                           shared=shared) == "duplicate"
    with Session(demo_runtime.engine) as session:
        assert session.get(Order, order_id).status == "paid"
        paid_moves = session.exec(select(OrderTransition).where(
            OrderTransition.order_id == order_id, OrderTransition.to_status == "paid")).all()
        assert len(paid_moves) == 1


async def test_a_sandbox_event_signed_long_ago_is_refused_as_a_replay(client):
    import time

    order_id, payment = await _bought(client, "BR", "presente para minha mãe até R$200")
    txid = tlv(tlv(pix_code(payment))["62"])["05"]
    stale, headers = signed({"event_id": "old", "txid": txid, "status": "paid",
                             "sent_at": int(time.time()) - 3600})
    response = await client.post("/api/payments/sandbox/webhook", content=stale,
                                 headers=headers)
    assert response.status_code == 401 and "replay" in response.json()["reason"]
    fresh, headers = signed({"event_id": "old", "txid": txid, "status": "paid",
                             "sent_at": int(time.time())})
    response = await client.post("/api/payments/sandbox/webhook", content=fresh,
                                 headers=headers)
    assert response.json()["status"] == "applied"  # the refused one consumed nothing


async def test_a_merchants_delivery_charge_is_shown_and_charged_and_free_from_its_threshold(
        client, demo_runtime):
    messages = await chat(client, text="presente para minha mãe até R$200", market="BR")
    card = messages[-1]["cards"][0]
    slug, price = card["merchant_id"], card["price"]["amount"]
    key = _give_key(demo_runtime, slug)
    assert (await client.put(f"/api/merchants/{slug}/shipping", json={"flat": 1990},
                             headers={"Authorization": "Bearer nope"})).status_code == 401
    bad = await client.put(f"/api/merchants/{slug}/shipping", json={"flat": -1}, headers=key)
    assert bad.status_code == 422 and bad.json()["reason"]
    set_ = await client.put(f"/api/merchants/{slug}/shipping",
                            json={"flat": 1990, "free_from": price + 1}, headers=key)
    assert set_.json() == {"currency": "BRL", "flat": 1990, "free_from": price + 1}
    [confirmation] = await chat(client, action=card["buttons"][0]["action"])
    assert "Entrega: R$ 19,90" in confirmation["text"]
    payment = await chat(client, action=next(b["action"] for b in confirmation["buttons"]
                                             if b["action"].startswith("confirm:")))
    cents = price + 1990
    assert tlv(pix_code(payment))["54"] == f"{cents // 100}.{cents % 100:02d}"
    # Free from a threshold the product reaches: no delivery line, no charge.
    await client.put(f"/api/merchants/{slug}/shipping", json={"flat": 1990, "free_from": price},
                     headers=key)
    [confirmation] = await chat(client, action=card["buttons"][0]["action"])  # buy it again
    assert "Entrega" not in confirmation["text"]
    assert card["price_text"] in confirmation["text"].split("Total: ")[1]
