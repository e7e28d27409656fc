"""The WhatsApp channel: Meta's webhook (verification, signatures, messages once each) against
the real app, a fake Graph API at the transport boundary, and WhatsApp's message limits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session, select

from bot.channels.whatsapp import (
    BUTTON_TITLE_MAX,
    CAPTION_MAX,
    ROW_TITLE_MAX,
    TEXT_MAX,
    WhatsAppMessageSeen,
    WhatsAppStatus,
    card_messages,
    cut,
    render,
)
from bot.channels.whatsapp_api import WhatsAppApi
from bot.models import Conversation
from bot.replies import Message
from catalog.cards import Button, Card, CardPrice
from checkout import qr
from checkout.signatures import hmac_sha256_hex, verify_sha256_header
from core.db import as_utc
from core.settings import Settings
from tests.bot.channels.fakes import FakeGraphApi, with_public_pictures
from tests.conftest import OPS_TOKEN, SANDBOX_SECRET
from vitrine.app import create_app
from vitrine.runtime import Runtime, build_runtime

pytestmark = pytest.mark.anyio

APP_SECRET = "test-whatsapp-app-secret-0123456789"
VERIFY_TOKEN = "test-verify-token"
PHONE_ID = "1098765432"
GRAPH = "https://graph.test/v21.0"
SHOPPER = "5511987654321"


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(env="test", database_url=database_url,
                    sandbox_secret=SANDBOX_SECRET, ops_token=OPS_TOKEN,
                    public_url="http://testserver", whatsapp_token="test-graph-token",
                    whatsapp_phone_id=PHONE_ID, whatsapp_app_secret=APP_SECRET,
                    whatsapp_verify_token=VERIFY_TOKEN, whatsapp_api_base=GRAPH)


@pytest.fixture
def demo_runtime(runtime: Runtime, tmp_path: Path) -> Runtime:
    return with_public_pictures(runtime, tmp_path)


def text_event(text: str, message_id: str = "wamid.in1") -> dict[str, Any]:
    return event({"from": SHOPPER, "id": message_id, "timestamp": "1718000000",
                  "type": "text", "text": {"body": text}})


def button_event(action: str, message_id: str = "wamid.in2") -> dict[str, Any]:
    return event({"context": {"from": PHONE_ID, "id": "wamid.out2"}, "from": SHOPPER,
                  "id": message_id, "timestamp": "1718000001", "type": "interactive",
                  "interactive": {"type": "button_reply",
                                  "button_reply": {"id": action, "title": "Comprar"}}})


def event(message: dict[str, Any]) -> dict[str, Any]:
    """A webhook body in the Cloud API's shape, as Meta sends it."""
    return {"object": "whatsapp_business_account", "entry": [{
        "id": "102290129340398", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_ID},
            "contacts": [{"profile": {"name": "Ana"}, "wa_id": SHOPPER}],
            "messages": [message]}}]}]}


def signed(body: dict[str, Any], secret: str = APP_SECRET) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body).encode()
    return raw, {"X-Hub-Signature-256": "sha256=" + hmac_sha256_hex(secret, raw),
                 "Content-Type": "application/json"}


async def post(client: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
    raw, headers = signed(body)
    return await client.post("/webhooks/whatsapp", content=raw, headers=headers)


def interactive_buttons(sent: dict[str, Any]) -> list[dict[str, str]]:
    return [b["reply"] for b in sent["interactive"]["action"]["buttons"]]


# Verification handshake

async def test_the_subscription_check_answers_the_challenge_as_plain_text(client):
    response = await client.get("/webhooks/whatsapp", params={
        "hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"})
    assert response.status_code == 200 and response.text == "1158201444"
    assert response.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize("params", [
    {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
    {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"},
    {"hub.challenge": "1"},
])
async def test_the_subscription_check_with_a_wrong_token_or_mode_is_403(client, params):
    response = await client.get("/webhooks/whatsapp", params=params)
    assert response.status_code == 403 and "1" not in response.text


# Signatures

def test_the_signature_matches_the_reference_vector():
    digest = "0329a06b62cd16b33eb6792be8c60b158d89a2ee3a876fce9a881ebb488c0914"
    assert hmac_sha256_hex("secret", b"test") == digest
    assert verify_sha256_header(secret="secret", body=b"test", header=f"sha256={digest}")
    assert not verify_sha256_header(secret="secret", body=b"test ", header=f"sha256={digest}")


@pytest.mark.parametrize("headers", [
    {},
    {"X-Hub-Signature-256": "sha256=" + "0" * 64},
    {"X-Hub-Signature-256": "sha256=" + hmac_sha256_hex("another-secret", b"x")},
    {"X-Hub-Signature-256": "md5=abc"},
])
async def test_a_forged_or_missing_signature_is_401_and_nothing_happens(
        client, demo_runtime, graph, headers):
    raw = json.dumps(text_event("presente para minha mãe até R$200")).encode()
    response = await client.post("/webhooks/whatsapp", content=raw, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized" and response.json()["reason"]
    assert graph.requests == []
    with Session(demo_runtime.engine) as session:
        assert session.get(Conversation, f"wa:{SHOPPER}") is None
        assert session.exec(select(WhatsAppMessageSeen)).all() == []


async def test_a_signed_body_that_is_not_an_event_is_400(client, graph):
    raw, headers = b"not json", signed({})[1]
    headers["X-Hub-Signature-256"] = "sha256=" + hmac_sha256_hex(APP_SECRET, raw)
    response = await client.post("/webhooks/whatsapp", content=raw, headers=headers)
    assert response.status_code == 400 and graph.requests == []


# Messages

async def test_a_text_message_gets_product_pictures_and_buy_buttons(client, graph):
    response = await post(client, text_event("presente para minha mãe até R$200"))
    assert response.status_code == 200 and response.json()["applied"] == 1

    request = graph.requests[0]
    assert str(request.url) == f"{GRAPH}/{PHONE_ID}/messages"
    assert request.headers["Authorization"] == "Bearer test-graph-token"
    sent = graph.sent
    assert all(s["to"] == SHOPPER and s["messaging_product"] == "whatsapp" for s in sent)
    images = [s for s in sent if s["type"] == "image"]
    assert images and all(0 < len(s["image"]["caption"]) <= CAPTION_MAX for s in images)
    assert "R$" in images[0]["image"]["caption"]
    button_messages = [s for s in sent if s["type"] == "interactive"
                       and s["interactive"]["type"] == "button"]
    assert button_messages
    buy = interactive_buttons(button_messages[0])[0]
    assert buy["id"].startswith("buy:") and len(buy["title"]) <= BUTTON_TITLE_MAX
    # Each card: its picture first, then its buttons.
    first_image = sent.index(images[0])
    assert sent[first_image + 1]["type"] == "interactive"


async def test_a_buy_button_reply_asks_to_confirm_or_cancel(client, graph):
    await post(client, text_event("presente para minha mãe até R$200"))
    buy = next(b["id"] for s in graph.sent if s["type"] == "interactive"
               for b in interactive_buttons(s) if b["id"].startswith("buy:"))
    graph.requests.clear()

    response = await post(client, button_event(buy))
    assert response.status_code == 200 and response.json()["applied"] == 1
    [confirmation] = [s for s in graph.sent if s["type"] == "interactive"]
    assert "R$" in confirmation["interactive"]["body"]["text"]
    actions = [b["id"].split(":")[0] for b in interactive_buttons(confirmation)]
    assert actions[:2] == ["confirm", "cancel"]


async def test_confirming_a_pix_order_uploads_its_qr_code_whatsapp_cannot_fetch(
        client, graph):
    await post(client, text_event("presente para minha mãe até R$200"))
    buy = next(b["id"] for s in graph.sent if s["type"] == "interactive"
               for b in interactive_buttons(s) if b["id"].startswith("buy:"))
    await post(client, button_event(buy, message_id="wamid.in2"))
    confirm = next(b["id"] for s in graph.sent if s["type"] == "interactive"
                   for b in interactive_buttons(s) if b["id"].startswith("confirm:"))
    graph.requests.clear()

    await post(client, button_event(confirm, message_id="wamid.in3"))
    bodies = [s["text"]["body"] if s["type"] == "text" else s["interactive"]["body"]["text"]
              for s in graph.sent if s["type"] in ("text", "interactive")]
    code = next(line for body in bodies for line in body.splitlines()
                if line.startswith("000201"))
    # Served by this development server, which WhatsApp cannot reach: uploaded, then sent.
    [upload] = graph.uploads
    assert qr.png(code) in upload.content and b'name="messaging_product"' in upload.content
    pictures = [s for s in graph.sent if s["type"] == "image"]
    assert pictures == [{"messaging_product": "whatsapp", "recipient_type": "individual",
                         "to": SHOPPER, "type": "image", "image": {"id": "media-1"}}]


@pytest.mark.parametrize("url", ["http://testserver/media/demo/mug.svg",
                                 "https://img.test/mug.svg", "https://img.test/mug.webp",
                                 "http://192.168.0.10/mug.jpg", None])
def test_a_picture_whatsapp_cannot_show_leaves_the_card_as_text(url):
    [body] = card_messages(_card(image_url=url))
    assert body["type"] == "interactive"
    assert body["interactive"]["body"]["text"].startswith("Caneca\nR$ 49,90")


def test_a_picture_without_a_file_suffix_is_sent_by_its_link():
    [image, _] = card_messages(_card(image_url="https://cdn.test/i/8812?w=600"))
    assert image["image"]["link"] == "https://cdn.test/i/8812?w=600"


async def test_the_same_message_delivered_twice_is_handled_once(client, demo_runtime, graph):
    body = text_event("presente para minha mãe até R$200", message_id="wamid.twice")
    first = await post(client, body)
    sent_once = len(graph.requests)
    second = await post(client, body)
    assert first.json()["applied"] == 1 and sent_once > 0
    assert second.status_code == 200
    assert second.json() == {"applied": 0, "duplicates": 1, "skipped": 0, "statuses": 0}
    assert len(graph.requests) == sent_once


def status_event(*statuses: dict[str, Any]) -> dict[str, Any]:
    body = event({"from": SHOPPER, "id": "wamid.img", "type": "image",
                  "image": {"id": "media-1", "mime_type": "image/jpeg"}})
    value = body["entry"][0]["changes"][0]["value"]
    del value["messages"], value["contacts"]
    value["statuses"] = list(statuses)
    return body


async def test_delivery_statuses_and_unreadable_messages_are_acknowledged(client, graph):
    body = event({"from": SHOPPER, "id": "wamid.img", "type": "image",
                  "image": {"id": "media-1", "mime_type": "image/jpeg"}})
    body["entry"][0]["changes"][0]["value"]["statuses"] = [
        {"id": "wamid.out1", "status": "delivered", "timestamp": "1718000002",
         "recipient_id": SHOPPER}]
    response = await post(client, body)
    assert response.status_code == 200
    assert response.json() == {"applied": 0, "duplicates": 0, "skipped": 1, "statuses": 1}
    # The photo gets one line, in the language of the number's country, once.
    [reply] = graph.sent
    assert reply["text"]["body"].startswith("Por enquanto eu só leio mensagens de texto")
    await post(client, body)
    assert len(graph.sent) == 1


async def test_statuses_are_recorded_furthest_first_with_the_reason_of_a_failure(
        client, demo_runtime):
    def sent(message_id: str, status: str, at: int, **extra: Any) -> dict[str, Any]:
        return {"id": message_id, "status": status, "timestamp": str(at),
                "recipient_id": SHOPPER, **extra}

    await post(client, status_event(sent("wamid.a", "read", 1718000009),
                                    sent("wamid.b", "sent", 1718000001)))
    # Out of order: "delivered" after "read" changes nothing.
    await post(client, status_event(sent("wamid.a", "delivered", 1718000005), sent(
        "wamid.b", "failed", 1718000010, errors=[{
            "code": 131047, "title": "Re-engagement message",
            "error_data": {"details": "More than 24 hours have passed"}}])))
    with Session(demo_runtime.engine) as session:
        rows = {r.message_id: r for r in session.exec(select(WhatsAppStatus))}
    assert rows["wamid.a"].status == "read"
    assert as_utc(rows["wamid.a"].reported_at).timestamp() == 1718000009
    assert (rows["wamid.b"].status, rows["wamid.b"].error_code) == ("failed", 131047)
    assert rows["wamid.b"].error_title == "Re-engagement message"


async def test_without_whatsapp_settings_there_is_no_webhook(database_url):
    runtime = build_runtime(Settings(env="test", database_url=database_url))
    try:
        assert runtime.whatsapp is None
        transport = httpx.ASGITransport(app=create_app(runtime))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            assert (await c.post("/webhooks/whatsapp", content=b"{}")).status_code == 404
    finally:
        runtime.close()


# The Graph API client

def _api(graph: FakeGraphApi, slept: list[float], attempts: int = 4) -> WhatsAppApi:
    return WhatsAppApi(http=httpx.Client(transport=httpx.MockTransport(graph)), base_url=GRAPH,
                       phone_id=PHONE_ID, token="t", attempts=attempts, sleep=slept.append)


def test_a_busy_api_is_retried_with_growing_waits_then_succeeds(graph):
    graph.answers = [httpx.Response(429), httpx.Response(503)]
    slept: list[float] = []
    assert _api(graph, slept).send(to=SHOPPER, message={"type": "text"}) == "wamid.out3"
    assert len(graph.requests) == 3 and slept == [0.5, 1.0]


def test_an_api_that_stays_down_is_logged_not_raised(graph, caplog):
    graph.answers = [httpx.Response(500)] * 3
    slept: list[float] = []
    assert _api(graph, slept, attempts=3).send(to=SHOPPER, message={"type": "text"}) is None
    assert len(graph.requests) == 3 and len(slept) == 2
    assert "not sent after 3 attempt(s)" in caplog.text and SHOPPER not in caplog.text


def test_a_refused_message_is_not_retried(graph):
    graph.answers = [httpx.Response(400, json={"error": {"message": "bad"}})]
    slept: list[float] = []
    assert _api(graph, slept).send(to=SHOPPER, message={"type": "text"}) is None
    assert len(graph.requests) == 1 and slept == []


# WhatsApp's limits

def _card(**changes: Any) -> Card:
    fields: dict[str, Any] = dict(
        product_id="p1", merchant="Loja", merchant_id="loja", title="Caneca", url=None,
        price=CardPrice(amount=4990, currency="BRL"), price_text="R$ 49,90",
        image_url="https://img.test/p1.jpg", reason="Para quem gosta de café.",
        buttons=[Button(label="Comprar", action="buy:loja:p1")])
    return Card(**(fields | changes))


def test_a_long_title_is_cut_at_a_word_within_the_caption_limit():
    title = "Conjunto de xícaras de porcelana pintadas à mão " * 40
    [image, buttons] = card_messages(_card(title=title))
    caption = image["image"]["caption"]
    assert len(caption) <= CAPTION_MAX and caption.endswith("…")
    assert title.startswith(caption[:-1]) and title[len(caption) - 1] == " "
    assert len(buttons["interactive"]["body"]["text"]) <= 1024
    assert cut("Presente para minha querida mãe", BUTTON_TITLE_MAX) == "Presente para…"


def test_four_or_more_buttons_become_a_list_of_short_rows():
    labels = ["Comprar agora mesmo com Pix", "Mais como este", "Não é para mim", "Mais barato"]
    card = _card(image_url=None, buttons=[Button(label=label, action=f"act:{i}")
                                         for i, label in enumerate(labels)])
    [listed] = card_messages(card)
    assert listed["interactive"]["type"] == "list"
    [section] = listed["interactive"]["action"]["sections"]
    rows = section["rows"]
    assert [r["id"] for r in rows] == ["act:0", "act:1", "act:2", "act:3"]
    assert all(len(r["title"]) <= ROW_TITLE_MAX for r in rows)
    assert rows[0]["description"] == labels[0]
    many = Message(text="Escolha", buttons=[Button(label=str(i), action=f"a:{i}")
                                           for i in range(13)])
    assert [len(m["interactive"]["action"]["sections"][0]["rows"]) for m in render(many)] \
        == [10, 3]


def test_long_text_is_split_and_a_payment_qr_code_is_sent_as_a_picture():
    text = ("Pague com Pix. " * 400).strip()
    sent = render(Message(text=text, image_url="https://qr.test/1.png"))
    texts = [s["text"]["body"] for s in sent if s["type"] == "text"]
    assert len(texts) == 2 and all(len(t) <= TEXT_MAX for t in texts)
    assert " ".join(texts) == text
    assert sent[-1] == {"type": "image", "image": {"link": "https://qr.test/1.png"}}


def test_production_refuses_a_short_whatsapp_app_secret():
    from core.settings import Settings

    strong = dict(ops_token="o" * 20, admin_token="a" * 20, sandbox_secret="s" * 20,
                  pix_webhook_secret="p" * 20, upi_webhook_secret="u" * 20,
                  sepa_webhook_secret="e" * 20, whatsapp_token="t", whatsapp_phone_id="1")
    with pytest.raises(ValueError, match="VITRINE_WHATSAPP_APP_SECRET"):
        Settings(env="production", whatsapp_app_secret="short", **strong)
    Settings(env="production", whatsapp_app_secret="x" * 32, **strong)


def test_cards_without_pictures_become_one_numbered_list_whose_rows_name_their_card():
    cards = [_card(product_id=f"p{i}", title=f"Caneca {i}", image_url=None,
                   reason="Para quem gosta de café. " * 30,
                   buttons=[Button(label="Comprar", action=f"buy:loja:p{i}"),
                            Button(label="Mais como este", action=f"more:loja:p{i}"),
                            Button(label="Não é para mim", action=f"skip:loja:p{i}")])
             for i in (1, 2, 3)]
    [listed] = render(Message(text="", cards=cards), locale="pt_BR")
    body = listed["interactive"]["body"]["text"]
    assert len(body) <= 1024
    assert [line for line in body.splitlines() if line[:2] in ("1.", "2.", "3.")] == \
        ["1. Caneca 1", "2. Caneca 2", "3. Caneca 3"]
    assert body.count("R$ 49,90") == 3 and "…" in body
    [section] = listed["interactive"]["action"]["sections"]
    assert [r["title"] for r in section["rows"]][:3] == \
        ["1 · Comprar", "1 · Mais como este", "1 · Não é para mim"]
    assert len(section["rows"]) == 9 and section["rows"][3]["id"] == "buy:loja:p2"


def test_cards_with_pictures_go_one_by_one_with_their_rating():
    sent = render(Message(text="", cards=[_card(rating=4.7, rating_count=1320)]),
                  locale="pt_BR")
    assert sent[0]["type"] == "image" and "4,7★ (1.320)" in sent[0]["image"]["caption"]


def test_four_cards_without_pictures_keep_every_title_and_send_the_list_text_once():
    cards = [_card(product_id=f"p{i}", title=f"Conjunto {i} " + "muito comprido " * 30,
                   image_url=None,
                   buttons=[Button(label="Comprar", action=f"buy:loja:p{i}"),
                            Button(label="Mais como este", action=f"more:loja:p{i}"),
                            Button(label="Não é para mim", action=f"skip:loja:p{i}")])
             for i in (1, 2, 3, 4)]
    first, second = render(Message(text="", cards=cards))
    body = first["interactive"]["body"]["text"]
    assert len(body) <= 1024
    assert all(f"{i}. Conjunto {i}" in body for i in (1, 2, 3, 4))
    assert body.count("R$ 49,90") == 4
    assert second["interactive"]["body"]["text"] == "…"
    rows = [r for m in (first, second)
            for r in m["interactive"]["action"]["sections"][0]["rows"]]
    assert len(rows) == 12 and len({r["id"] for r in rows}) == 12


def test_a_status_racing_another_for_the_same_message_is_taken_on_a_second_try(
        demo_runtime, monkeypatch):
    from bot.channels.whatsapp import StatusUpdate, record_statuses

    looked_up = Session.get
    raced: list[str] = []

    def another_webhook_first(self, entity, ident, **kwargs):
        if entity is WhatsAppStatus and not raced:
            raced.append(ident)  # "sent" is written by another webhook right after our look
            with Session(demo_runtime.engine) as other:
                other.add(WhatsAppStatus(message_id=ident, status="sent"))
                other.commit()
            return None
        return looked_up(self, entity, ident, **kwargs)

    monkeypatch.setattr(Session, "get", another_webhook_first)
    record_statuses(demo_runtime.engine, [StatusUpdate(message_id="wamid.race",
                                                       status="delivered")])
    monkeypatch.undo()
    assert raced == ["wamid.race"]
    with Session(demo_runtime.engine) as session:
        assert session.get(WhatsAppStatus, "wamid.race").status == "delivered"
