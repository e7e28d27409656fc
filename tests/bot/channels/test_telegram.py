"""The Telegram channel: the webhook (secret token, updates once each, button tokens) against
the real app, and aiogram's `Bot` talking to a fake Bot API server on loopback."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session, select

from bot.channels.telegram import (
    TelegramButton,
    TelegramChannel,
    TelegramPolling,
    publish_commands,
)
from bot.channels.telegram_render import CAPTION_MAX, TEXT_MAX, photo_url, render
from bot.models import Conversation
from bot.privacy import COMMANDS
from bot.replies import Message
from catalog.cards import Button, Card, CardPrice
from checkout import qr
from core.settings import Settings
from tests.bot.channels.fakes import PICTURES, Call, FakeBotApi, with_public_pictures
from tests.conftest import OPS_TOKEN, SANDBOX_SECRET
from vitrine.app import create_app
from vitrine.runtime import Runtime, build_runtime

pytestmark = pytest.mark.anyio

TOKEN = "123456:TEST-telegram-token"
SECRET = "test-telegram-webhook-secret-0123"
CHAT = 424242


@pytest.fixture
def settings(database_url: str, fake_api: tuple[FakeBotApi, str]) -> Settings:
    return Settings(env="test", database_url=database_url,
                    sandbox_secret=SANDBOX_SECRET, ops_token=OPS_TOKEN,
                    public_url="http://testserver", telegram_token=TOKEN,
                    telegram_api_base=fake_api[1], telegram_webhook_secret=SECRET)


@pytest.fixture
def demo_runtime(runtime: Runtime, tmp_path: Path) -> Runtime:
    return with_public_pictures(runtime, tmp_path)


def text_update(text: str, update_id: int = 1001) -> dict[str, Any]:
    return {"update_id": update_id, "message": {
        "message_id": 7, "date": 1718000000, "text": text,
        "chat": {"id": CHAT, "type": "private", "first_name": "Ana"},
        "from": {"id": CHAT, "is_bot": False, "first_name": "Ana", "language_code": "pt-br"}}}


def callback_update(data: str, update_id: int = 2001) -> dict[str, Any]:
    return {"update_id": update_id, "callback_query": {
        "id": f"cb{update_id}", "chat_instance": "-77", "data": data,
        "from": {"id": CHAT, "is_bot": False, "first_name": "Ana", "language_code": "pt-br"},
        "message": {"message_id": 8, "date": 1718000000, "text": "…",
                    "chat": {"id": CHAT, "type": "private"}}}}


async def post(client: httpx.AsyncClient, update: dict[str, Any],
               secret: str | None = SECRET) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    return await client.post("/webhooks/telegram", content=json.dumps(update), headers=headers)


def keyboard(call: Call) -> list[dict[str, str]]:
    markup = json.loads(call.params["reply_markup"])
    return [button for row in markup["inline_keyboard"] for button in row]


def callback_of(bot_api: FakeBotApi, label: str) -> str:
    return next(b["callback_data"] for c in bot_api.sent("sendPhoto", "sendMessage")
                if "reply_markup" in c.params for b in keyboard(c) if b["text"] == label)


# The secret token

@pytest.mark.parametrize("secret", [None, "", "wrong-secret", SECRET + "x"])
async def test_a_wrong_or_missing_secret_is_401_and_nothing_is_sent(
        client, demo_runtime, bot_api, secret):
    response = await post(client, text_update("presente para minha mãe até R$200"), secret)
    assert response.status_code == 401 and response.json()["error"] == "unauthorized"
    assert bot_api.calls == []
    with Session(demo_runtime.engine) as session:
        assert session.get(Conversation, f"tg:{CHAT}") is None


async def test_a_signed_body_that_is_not_an_update_is_400(client, bot_api):
    response = await client.post("/webhooks/telegram", content=b"not json",
                                 headers={"X-Telegram-Bot-Api-Secret-Token": SECRET})
    assert response.status_code == 400 and bot_api.calls == []


# Messages and buttons

async def test_a_text_message_gets_product_photos_with_captions_and_short_buttons(
        client, bot_api):
    response = await post(client, text_update("presente para minha mãe até R$200"))
    assert response.status_code == 200 and response.json() == {"applied": True}

    assert bot_api.tokens == {TOKEN}
    photos = bot_api.sent("sendPhoto")
    assert len(photos) == 3
    for call in photos:
        assert int(call.params["chat_id"]) == CHAT
        assert call.params["photo"].startswith(f"{PICTURES}/media/demo/")
        assert call.params["parse_mode"] == "HTML"
        caption = call.params["caption"]
        assert 0 < len(caption) <= CAPTION_MAX and "R$" in caption and "★ (" in caption
        buttons = keyboard(call)
        assert [b["text"] for b in buttons] == ["Comprar", "Mais como este", "Não curti"]
        assert all(len(b["callback_data"].encode()) <= 64 for b in buttons)
    texts = bot_api.sent("sendMessage")
    assert any("ideias para sua mãe" in c.params["text"] for c in texts)
    # The first card is sent after the line that introduces the cards.
    assert bot_api.calls.index(photos[0]) > bot_api.calls.index(texts[-1])


async def test_a_buy_button_answers_the_callback_and_asks_to_confirm_or_cancel(
        client, demo_runtime, bot_api):
    await post(client, text_update("presente para minha mãe até R$200"))
    buy = callback_of(bot_api, "Comprar")
    with Session(demo_runtime.engine) as session:
        stored = session.exec(select(TelegramButton)).all()
    assert any(b.action.startswith("buy:") and b.action not in buy for b in stored)
    bot_api.clear()

    response = await post(client, callback_update(buy))
    assert response.status_code == 200 and response.json() == {"applied": True}
    assert bot_api.calls[0].method == "answerCallbackQuery"
    assert bot_api.calls[0].params["callback_query_id"] == "cb2001"
    [confirmation] = [c for c in bot_api.sent("sendMessage") if "reply_markup" in c.params]
    assert "R$" in confirmation.params["text"]
    labels = [b["text"] for b in keyboard(confirmation)]
    assert labels[:2] == ["Confirmar", "Cancelar"]
    confirm = callback_of(bot_api, "Confirmar")
    with Session(demo_runtime.engine) as session:
        assert session.get(TelegramButton, confirm.split(":", 1)[1]).action.startswith(
            "confirm:")


async def test_confirming_shows_the_pix_code_as_copyable_monospace(client, bot_api):
    await post(client, text_update("presente para minha mãe até R$200"))
    await post(client, callback_update(callback_of(bot_api, "Comprar")))
    confirm = callback_of(bot_api, "Confirmar")
    bot_api.clear()

    await post(client, callback_update(confirm, update_id=2002))
    texts = [c.params["text"] for c in bot_api.sent("sendMessage")]
    [payment] = [t for t in texts if "<code>000201" in t]
    code = payment.split("<code>", 1)[1].split("</code>", 1)[0]
    assert "br.gov.bcb.pix" in code.lower() and code[-8:-4] == "6304"
    # The QR code's address is this development server's, which Telegram cannot fetch: the
    # picture is uploaded instead.
    [photo] = bot_api.sent("sendPhoto")
    assert photo.files["photo"] == qr.png(code)


async def test_the_same_update_delivered_twice_is_handled_once(client, bot_api):
    update = text_update("presente para minha mãe até R$200", update_id=3001)
    first = await post(client, update)
    sent_once = len(bot_api.calls)
    second = await post(client, update)
    assert first.json() == {"applied": True} and sent_once > 0
    assert second.status_code == 200 and second.json() == {"applied": False}
    assert len(bot_api.calls) == sent_once


@pytest.mark.parametrize("data", ["v:unknownToken", "not-ours", ""])
async def test_an_unknown_button_is_answered_and_nothing_else_happens(
        client, demo_runtime, bot_api, data):
    await post(client, text_update("oi", update_id=4000))  # a conversation in Portuguese
    bot_api.clear()
    response = await post(client, callback_update(data, update_id=4001))
    assert response.status_code == 200
    [answer] = bot_api.calls
    assert answer.method == "answerCallbackQuery" and answer.params["callback_query_id"] == "cb4001"
    assert answer.params["text"].startswith("Esse botão não vale mais")


async def test_a_token_from_another_chat_is_not_valid_here(client, bot_api):
    await post(client, text_update("presente para minha mãe até R$200"))
    buy = callback_of(bot_api, "Comprar")
    bot_api.clear()
    stranger = callback_update(buy)
    stranger["callback_query"]["from"]["id"] = 999
    stranger["callback_query"]["message"]["chat"]["id"] = 999
    del stranger["callback_query"]["from"]["language_code"]
    await post(client, stranger)
    [answer] = bot_api.calls
    assert answer.method == "answerCallbackQuery"
    assert answer.params["text"].startswith("That button is no longer valid")


async def test_a_photo_telegram_refuses_is_sent_as_text_with_its_buttons(client, bot_api):
    bot_api.refuse_photos = True
    await post(client, text_update("presente para minha mãe até R$200"))
    cards = [c for c in bot_api.sent("sendMessage") if "reply_markup" in c.params]
    assert len(cards) == 3 and all("R$" in c.params["text"] for c in cards)


async def test_without_telegram_settings_there_is_no_webhook(database_url):
    runtime = build_runtime(Settings(env="test", database_url=database_url))
    try:
        assert runtime.telegram is None
        transport = httpx.ASGITransport(app=create_app(runtime))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            assert (await post(c, text_update("oi"))).status_code == 404
    finally:
        runtime.close()


async def test_a_photo_or_sticker_gets_a_reply_saying_only_text_is_read(client, bot_api):
    update = text_update("x", update_id=6001)
    message = update["message"]
    del message["text"]
    message["sticker"] = {"file_id": "s1", "file_unique_id": "u1", "type": "regular",
                          "width": 512, "height": 512, "is_animated": False,
                          "is_video": False}
    response = await post(client, update)
    assert response.json() == {"applied": True}
    [reply] = bot_api.sent("sendMessage")
    assert reply.params["text"].startswith("Por enquanto eu só leio mensagens de texto")


async def test_a_command_addressed_to_this_bot_in_a_group_is_answered(client, bot_api):
    update = text_update("/ajuda@vitrine_test_bot", update_id=6002)
    update["message"]["chat"] = {"id": -100777, "type": "group", "title": "Família"}
    await post(client, update)
    [reply] = bot_api.sent("sendMessage")
    assert reply.params["chat_id"] == "-100777" and "presente" in reply.params["text"]


async def test_a_command_for_another_bot_in_a_group_is_left_alone(client, bot_api):
    update = text_update("/esquecer@other_bot", update_id=6003)
    update["message"]["chat"] = {"id": -100777, "type": "group", "title": "Família"}
    assert (await post(client, update)).json() == {"applied": True}
    assert bot_api.sent("sendMessage", "sendPhoto") == []


async def test_a_photo_captioned_like_a_command_is_declined_not_run(client, bot_api):
    update = text_update("x", update_id=6004)
    message = update["message"]
    del message["text"]
    message["caption"] = "/esquecer"
    message["photo"] = [{"file_id": "p1", "file_unique_id": "u1", "width": 90, "height": 90}]
    await post(client, update)
    [reply] = bot_api.sent("sendMessage")
    assert reply.params["text"].startswith("Por enquanto eu só leio mensagens de texto")


def test_the_command_menu_is_published_in_each_language(demo_runtime, bot_api):
    demo_runtime.call_live(publish_commands, demo_runtime.telegram)
    menus = {c.params.get("language_code"): json.loads(c.params["commands"])
             for c in bot_api.sent("setMyCommands")}
    assert set(menus) == {None, "pt", "es"}
    pt = {c["command"]: c["description"] for c in menus["pt"]}
    assert pt["esquecer"] == "Apagar o que eu lembro" and "memoria" in pt
    assert {c["command"] for c in menus[None]} >= {"start", "help", "memory", "forget",
                                                  "language", "market"}
    # Every name is a command the conversation understands, in Telegram's alphabet.
    assert all(re.fullmatch(r"[a-z0-9_]{1,32}", c["command"]) and c["command"] in COMMANDS
               for menu in menus.values() for c in menu)


# Long polling

def test_polling_answers_updates_as_the_webhook_does(demo_runtime, bot_api):
    bot = demo_runtime.telegram
    assert bot is not None
    polling = TelegramPolling(TelegramChannel(bot=bot, engine=demo_runtime.engine,
                                              assistant=demo_runtime.assistant,
                                              run=demo_runtime.call_live))
    bot_api.updates = [text_update("presente para minha mãe até R$200", update_id=5001)]
    worker = threading.Thread(target=demo_runtime.call_live, args=(polling.run,))
    worker.start()
    try:
        bot_api.wait_for("sendPhoto", count=3)
    finally:
        demo_runtime.call_live(polling.stop)
        worker.join(timeout=10)
    assert not worker.is_alive()
    assert bot_api.calls[0].method == "deleteWebhook"
    assert len(bot_api.sent("sendPhoto")) == 3


# Telegram's limits

def _card(**changes: Any) -> Card:
    fields: dict[str, Any] = dict(
        product_id="p1", merchant="Loja", merchant_id="loja", title="Caneca", url=None,
        price=CardPrice(amount=4990, currency="BRL"), price_text="R$ 49,90",
        image_url="https://img.example/p1.jpg", reason="Para quem gosta de café.",
        rating=4.7, rating_count=320, buttons=[Button(label="Comprar", action="buy:loja:p1")])
    return Card(**(fields | changes))


def test_a_card_caption_has_label_title_price_rating_and_reason_within_the_limit():
    [card] = render(Message(text="", cards=[_card(label="Patrocinado")]), locale="en")
    assert card.photo == "https://img.example/p1.jpg"
    assert card.html == ("<i>Patrocinado</i>\nCaneca\nR$ 49,90\n4.7★ (320)\n"
                         "Para quem gosta de café.")
    [long] = render(Message(text="", cards=[_card(title="Xícara <pintada> à mão " * 80)]))
    assert len(long.html.replace("&lt;", "<").replace("&gt;", ">")) <= CAPTION_MAX
    assert "<pintada>" not in long.html


@pytest.mark.parametrize("url", [None, "http://testserver/media/demo/beauty.svg",
                                 "http://127.0.0.1:8000/p.jpg", "http://localhost/p.png",
                                 "http://testserver/api/payments/qr/o1.png",
                                 "http://10.0.0.5/p.png", "ftp://img.example/p.jpg"])
def test_pictures_telegram_cannot_fetch_go_as_text(url):
    assert photo_url(url) is None
    [card] = render(Message(text="", cards=[_card(image_url=url)]))
    assert card.photo is None and card.buttons


def test_long_text_is_split_at_words_and_the_buttons_go_with_the_last_part():
    text = ("Pague com Pix. " * 600).strip()
    parts = render(Message(text=text, buttons=[Button(label="Cancelar", action="cancel:x")]))
    assert len(parts) == 3 and all(len(p.html) <= TEXT_MAX for p in parts)
    assert " ".join(p.html for p in parts) == text
    assert [p.buttons for p in parts[:-1]] == [[], []] and parts[-1].buttons


def test_a_pix_code_is_copyable_monospace_and_its_qr_code_a_photo():
    code = ("00020101021226830014br.gov.bcb.pix2561pix.example/qr/v2/cobv/9d36b84f"
            "5204000053039865802BR5925VITRINE6009SAO PAULO62070503***6304AB1C")
    text = f"Pague R$ 119,90 com Pix <copia e cola>:\n\n{code}\n\nReferência: VTR1"
    [body, qr] = render(Message(text=text, image_url="https://vitrine.example/qr/o1.png"))
    assert f"<code>{code}</code>" in body.html
    assert "&lt;copia e cola&gt;" in body.html
    assert qr.photo == "https://vitrine.example/qr/o1.png" and qr.html == ""


def test_production_refuses_a_short_telegram_webhook_secret():
    strong = dict(ops_token="o" * 20, admin_token="a" * 20, sandbox_secret="s" * 20,
                  pix_webhook_secret="p" * 20, upi_webhook_secret="u" * 20,
                  sepa_webhook_secret="e" * 20, telegram_token=TOKEN)
    with pytest.raises(ValueError, match="VITRINE_TELEGRAM_WEBHOOK_SECRET"):
        Settings(env="production", telegram_webhook_secret="short", **strong)
    with pytest.raises(ValueError, match="VITRINE_TELEGRAM_WEBHOOK_SECRET"):
        Settings(env="production", **strong)
    Settings(env="production", telegram_webhook_secret="x" * 32, **strong)
    Settings(env="production", telegram_mode="polling", **strong)


def test_forgetting_everything_deletes_the_chats_button_tokens(runtime):
    from sqlmodel import Session, select

    from bot import erasure
    from bot.models import TelegramButton

    with Session(runtime.engine) as session:
        session.add(TelegramButton(token="t1", user_key="tg:42", action="buy:shop:P-1"))
        session.add(TelegramButton(token="t2", user_key="tg:7", action="buy:shop:P-2"))
        session.commit()
        erasure.forget(session=session, user_key="tg:42")
        session.commit()
        assert [b.token for b in session.exec(select(TelegramButton))] == ["t2"]
