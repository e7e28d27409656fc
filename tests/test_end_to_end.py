"""One shopper's whole path: request -> cards -> buy -> confirm -> Pix -> webhook -> paid."""

import json

import pytest

from checkout.rails.pix import crc16
from checkout.signatures import hmac_sha256_hex
from tests.conftest import OPS_TOKEN, SANDBOX_SECRET

pytestmark = pytest.mark.anyio

PIX_LINE_PREFIX = "000201"


def signed(event: dict, secret: str = SANDBOX_SECRET) -> tuple[bytes, dict]:
    body = json.dumps(event).encode()
    return body, {"X-Vitrine-Signature": "sha256=" + hmac_sha256_hex(secret, body),
                  "Content-Type": "application/json"}


async def chat(client, **payload):
    response = await client.post("/api/chat", json={"user": "ana", **payload})
    assert response.status_code == 200, response.text
    return response.json()["messages"]


def tlv(payload: str) -> dict[str, str]:
    """Split an EMV payload into its ID -> value fields."""
    fields, i = {}, 0
    while i < len(payload):
        tag, size = payload[i:i + 2], int(payload[i + 2:i + 4])
        fields[tag] = payload[i + 4:i + 4 + size]
        i += 4 + size
    return fields


def pix_code(messages) -> str:
    for message in messages:
        for line in message["text"].splitlines():
            if line.startswith(PIX_LINE_PREFIX):
                return line
    raise AssertionError(f"no Pix code in {messages}")


async def funnel(client) -> dict:
    response = await client.get("/api/ops/funnel",
                                headers={"Authorization": f"Bearer {OPS_TOKEN}"})
    assert response.status_code == 200
    return response.json()["stages"]


async def test_a_request_becomes_a_paid_pix_order_exactly_once(client):
    messages = await chat(client, text="presente para minha mãe de 60 anos até R$200",
                          market="BR")
    cards = [c for m in messages for c in m["cards"]]
    assert len(cards) == 3
    for card in cards:
        assert card["price"]["currency"] == "BRL" and card["price"]["amount"] <= 20000
        assert card["price_text"].startswith("R$ ") and "," in card["price_text"]
        assert card["reason"] and card["sponsored"] is False
        assert card["image_url"].startswith("http")
    reply_text = messages[-1]["text"]
    assert "sua mãe" in reply_text  # the reply is in Portuguese

    buy = next(b["action"] for b in cards[0]["buttons"] if b["action"].startswith("buy:"))
    [confirmation] = await chat(client, action=buy)
    assert cards[0]["title"] in confirmation["text"]
    assert cards[0]["price_text"] in confirmation["text"]
    assert cards[0]["merchant"] in confirmation["text"]
    confirm = next(b["action"] for b in confirmation["buttons"]
                   if b["action"].startswith("confirm:"))

    payment = await chat(client, action=confirm)
    code = pix_code(payment)
    assert crc16(code[:-4]) == code[-4:]
    fields = tlv(code)
    cents = cards[0]["price"]["amount"]
    assert fields["54"] == f"{cents // 100}.{cents % 100:02d}"
    assert fields["53"] == "986" and fields["58"] == "BR"
    assert tlv(fields["26"])["00"] == "br.gov.bcb.pix"
    txid = tlv(fields["62"])["05"]
    assert txid.isalnum() and len(txid) <= 25

    stages = await funnel(client)
    assert stages["paid"] == 0

    body, headers = signed({"event_id": "evt-1", "txid": txid, "status": "paid"})
    response = await client.post("/api/payments/sandbox/webhook", content=body, headers=headers)
    assert response.status_code == 200 and response.json()["status"] == "applied"
    again = await client.post("/api/payments/sandbox/webhook", content=body, headers=headers)
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    body2, headers2 = signed({"event_id": "evt-2", "txid": txid, "status": "paid"})
    other = await client.post("/api/payments/sandbox/webhook", content=body2, headers=headers2)
    assert other.status_code == 200 and other.json()["status"] == "ignored"

    told = await chat(client, text="obrigado!")
    paid_notes = [m["text"] for m in told if "Pagamento confirmado" in m["text"]]
    assert len(paid_notes) == 1
    assert await chat(client, text="obrigado!") and not any(
        "Pagamento confirmado" in m["text"] for m in await chat(client, text="oi"))

    stages = await funnel(client)
    assert stages == {"messages": 4, "recommendations": 1, "clicks": 1, "checkouts": 1,
                      "paid": 1}


async def test_a_wrong_or_missing_signature_changes_nothing(client):
    messages = await chat(client, text="presente para minha mãe até R$200", market="BR")
    buy = messages[-1]["cards"][0]["buttons"][0]["action"]
    [confirmation] = await chat(client, action=buy)
    payment = await chat(client, action=confirmation["buttons"][0]["action"])
    txid = tlv(tlv(pix_code(payment))["62"])["05"]

    body, _ = signed({"event_id": "evt-x", "txid": txid, "status": "paid"})
    for headers in ({}, {"X-Vitrine-Signature": "sha256=" + "0" * 64},
                    signed({"event_id": "evt-x", "txid": txid, "status": "paid"},
                           secret="wrong")[1]):
        response = await client.post("/api/payments/sandbox/webhook", content=body,
                                     headers=headers)
        assert response.status_code == 401
        assert "error" in response.json()
    assert (await funnel(client))["paid"] == 0
    # The event id was not consumed by the rejected attempts: the genuine delivery applies.
    body, headers = signed({"event_id": "evt-x", "txid": txid, "status": "paid"})
    response = await client.post("/api/payments/sandbox/webhook", content=body, headers=headers)
    assert response.json()["status"] == "applied"


@pytest.mark.parametrize("event", [
    {"event_id": "e", "txid": "T", "status": "settled"},
    {"txid": "T", "status": "paid"},
    [1, 2],
])
async def test_malformed_webhook_bodies_get_a_reason(client, event):
    body, headers = signed(event)
    response = await client.post("/api/payments/sandbox/webhook", content=body, headers=headers)
    assert response.status_code == 400 and response.json()["reason"]


async def test_unknown_txid_is_a_404_with_a_reason(client):
    body, headers = signed({"event_id": "e1", "txid": "NOSUCHTXID", "status": "paid"})
    response = await client.post("/api/payments/sandbox/webhook", content=body, headers=headers)
    assert response.status_code == 404 and response.json()["error"] == "unknown_txid"


async def test_funnel_needs_the_ops_token(client):
    assert (await client.get("/api/ops/funnel")).status_code == 401
    bad = await client.get("/api/ops/funnel", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401


async def test_cash_on_delivery_confirms_at_once_in_argentina(client):
    messages = await chat(client, text="regalo para mi papá que le gusta el asado",
                          market="AR")
    card = messages[-1]["cards"][0]
    assert card["price"]["currency"] == "ARS"
    [confirmation] = await chat(client, action=card["buttons"][0]["action"])
    assert "contra entrega" in confirmation["text"]
    [done] = await chat(client, action=confirmation["buttons"][0]["action"])
    assert "contra entrega" in done["text"] and "ord_" in done["text"]


async def test_us_orders_pay_on_the_sandbox_checkout_page(client):
    messages = await chat(client, text="gift for my 10-year-old nephew under $40", market="US")
    card = messages[-1]["cards"][0]
    [confirmation] = await chat(client, action=card["buttons"][0]["action"])
    [payment] = await chat(client, action=confirmation["buttons"][0]["action"])
    url = next(line for line in payment["text"].splitlines() if "/sandbox/pay/" in line)
    page = await client.get(url.replace("http://testserver", ""))
    assert page.status_code == 200 and card["title"] in page.text
    paid = await client.post(url.replace("http://testserver", ""), data={"status": "paid"})
    assert "applied" in paid.text
    updates = await client.get("/api/chat/updates", params={"user": "ana"})
    assert any("Payment confirmed" in m["text"] for m in updates.json()["messages"])


async def _reserved_pix_order(client) -> str:
    messages = await chat(client, text="presente para minha mãe até R$200", market="BR")
    buy = messages[-1]["cards"][0]["buttons"][0]["action"]
    [confirmation] = await chat(client, action=buy)
    return tlv(tlv(pix_code(await chat(client, action=confirmation["buttons"][0]["action"])))
               ["62"])["05"]


async def test_the_sandbox_page_cannot_pay_a_pix_order(client):
    txid = await _reserved_pix_order(client)
    assert (await client.get(f"/sandbox/pay/{txid}")).status_code == 404
    response = await client.post(f"/sandbox/pay/{txid}", data={"status": "paid"})
    assert response.status_code == 404
    assert (await funnel(client))["paid"] == 0


async def test_money_arriving_after_a_failed_attempt_still_pays_the_order(client):
    txid = await _reserved_pix_order(client)
    for event_id, status, outcome in (("e1", "failed", "applied"), ("e2", "paid", "applied"),
                                      ("e3", "failed", "ignored")):
        body, headers = signed({"event_id": event_id, "txid": txid, "status": status})
        response = await client.post("/api/payments/sandbox/webhook", content=body,
                                     headers=headers)
        assert response.json()["status"] == outcome, event_id
    assert (await funnel(client))["paid"] == 1


async def test_deeply_nested_webhook_json_is_a_400(client):
    body = b"[" * 100_000 + b"]" * 100_000
    headers = {"X-Vitrine-Signature": "sha256=" + hmac_sha256_hex(SANDBOX_SECRET, body)}
    response = await client.post("/api/payments/sandbox/webhook", content=body, headers=headers)
    assert response.status_code == 400


async def test_funnel_accepts_plain_dates(client):
    response = await client.get("/api/ops/funnel",
                                params={"from": "2020-01-01", "to": "2999-01-01"},
                                headers={"Authorization": f"Bearer {OPS_TOKEN}"})
    assert response.status_code == 200 and "stages" in response.json()
