"""The per-shopper rate limit where chat messages come in (the web chat, Telegram, WhatsApp),
counted in the process's memory and in Redis alike: past the limit a message is not
processed, the shopper is asked once, in their language, to wait, and a decision on an order
always goes through."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session, func, select

from bot.channels.rate_limit import SLOW_DOWN
from bot.models import Conversation
from core.i18n import Translator
from core.settings import Settings
from ops.events import ConversionEvent
from tests.bot.channels.fakes import FakeBotApi, with_public_pictures
from tests.bot.channels.test_telegram import SECRET, TOKEN, callback_of, callback_update
from tests.bot.channels.test_telegram import post as telegram_post
from tests.bot.channels.test_telegram import text_update as telegram_text
from tests.bot.channels.test_whatsapp import (
    APP_SECRET,
    GRAPH,
    PHONE_ID,
    VERIFY_TOKEN,
    button_event,
    interactive_buttons,
    text_event,
)
from tests.bot.channels.test_whatsapp import post as whatsapp_post
from tests.conftest import OPS_TOKEN, SANDBOX_SECRET, app_client
from tests.loopback import free_port
from tests.redis_server import redis_server_fixture, redis_url_fixture  # noqa: F401
from tests.test_end_to_end import pix_code
from vitrine.runtime import Runtime, build_runtime, seed_demo

pytestmark = pytest.mark.anyio

LIMIT = 2
WAIT = {"pt": "Espere alguns segundos", "es": "Espera unos segundos", "en": "wait a few seconds"}
GIFT = "presente para minha mãe até R$200"


@pytest.fixture(params=["local", "redis"])
def redis_or_none(request: pytest.FixtureRequest) -> str | None:
    """No Redis (the process counts), or a real one."""
    return None if request.param == "local" else request.getfixturevalue("redis_url")


@pytest.fixture
def settings(database_url: str, fake_api: tuple[FakeBotApi, str],
             redis_or_none: str | None) -> Settings:
    return Settings(env="test", database_url=database_url, sandbox_secret=SANDBOX_SECRET,
                    ops_token=OPS_TOKEN, public_url="http://testserver",
                    redis_url=redis_or_none, rate_limit_messages=LIMIT,
                    rate_limit_window_seconds=60,
                    telegram_token=TOKEN, telegram_api_base=fake_api[1],
                    telegram_webhook_secret=SECRET,
                    whatsapp_token="test-graph-token", whatsapp_phone_id=PHONE_ID,
                    whatsapp_app_secret=APP_SECRET, whatsapp_verify_token=VERIFY_TOKEN,
                    whatsapp_api_base=GRAPH)


@pytest.fixture
def demo_runtime(runtime: Runtime, tmp_path: Path) -> Runtime:
    return with_public_pictures(runtime, tmp_path)


async def chat(client: httpx.AsyncClient, **payload: Any) -> httpx.Response:
    return await client.post("/api/chat", json={"user": "ana", **payload})


def written(runtime) -> tuple[int, object]:
    """What a turn writes: conversion events, and the conversation's last update."""
    with Session(runtime.engine) as session:
        events = session.exec(select(func.count()).select_from(ConversionEvent)).one()
        conv = session.get(Conversation, "web:ana")
        return events, conv.updated_at if conv else None


# The web chat

@pytest.mark.parametrize(("market", "locale", "language"),
                         [("BR", "pt_BR", "pt"), ("MX", "es_MX", "es"), ("US", "en_US", "en")])
async def test_past_the_limit_the_web_chat_asks_in_the_shoppers_language_to_wait(
        client, demo_runtime, market, locale, language):
    for _ in range(LIMIT):
        assert (await chat(client, text="oi", market=market, locale=locale)).status_code == 200
    before = written(demo_runtime)

    refused = await chat(client, text="e mais uma coisa", market=market, locale=locale)

    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    body = refused.json()
    assert body["error"] == "rate_limited"
    assert body["reason"] == Translator(language).gettext(SLOW_DOWN)
    assert WAIT[language] in body["reason"]
    assert [m["text"] for m in body["messages"]] == [body["reason"]]
    assert written(demo_runtime) == before  # not processed: nothing half-written


async def test_a_decision_on_an_order_goes_through_past_the_limit(client):
    found = (await chat(client, text=GIFT, market="BR")).json()["messages"]
    buy = found[-1]["cards"][0]["buttons"][0]["action"]
    [confirmation] = (await chat(client, action=buy)).json()["messages"]
    confirm = next(b["action"] for b in confirmation["buttons"]
                   if b["action"].startswith("confirm:"))
    assert (await chat(client, text="e para o meu pai?")).status_code == 429

    paid = await chat(client, action=confirm)

    assert paid.status_code == 200
    assert pix_code(paid.json()["messages"])  # the approval was not lost


async def test_each_shopper_has_a_limit_of_their_own(client):
    for _ in range(LIMIT):
        await chat(client, text="oi", market="BR")
    assert (await chat(client, text="oi")).status_code == 429
    assert (await client.post("/api/chat", json={"user": "bia", "text": "oi"})
            ).status_code == 200


# Telegram

async def test_a_telegram_flood_gets_one_request_to_wait_then_silence(client, bot_api):
    for n in range(LIMIT):
        await telegram_post(client, telegram_text("oi", update_id=5000 + n))
    bot_api.clear()

    answers = [await telegram_post(client, telegram_text("oi?", update_id=5100 + n))
               for n in range(3)]

    assert all(a.status_code == 200 and a.json() == {"applied": True} for a in answers)
    [notice] = [c.params["text"] for c in bot_api.sent("sendMessage", "sendPhoto")]
    assert WAIT["pt"] in notice


async def test_a_button_pressed_past_the_limit_is_answered_on_the_button(client, bot_api):
    await telegram_post(client, telegram_text(GIFT, update_id=6000))
    more = callback_of(bot_api, "Mais como este")
    await telegram_post(client, telegram_text("oi", update_id=6001))
    bot_api.clear()

    await telegram_post(client, callback_update(more, update_id=6002))

    [toast] = bot_api.sent("answerCallbackQuery")
    assert WAIT["pt"] in toast.params["text"]
    assert bot_api.sent("sendMessage", "sendPhoto") == []


async def test_confirming_a_purchase_on_telegram_goes_through_past_the_limit(client, bot_api):
    await telegram_post(client, telegram_text(GIFT, update_id=6100))
    await telegram_post(client, callback_update(callback_of(bot_api, "Comprar"),
                                                update_id=6101))
    confirm = callback_of(bot_api, "Confirmar")
    await telegram_post(client, telegram_text("oi", update_id=6102))  # refused
    bot_api.clear()

    await telegram_post(client, callback_update(confirm, update_id=6103))

    assert any("<code>000201" in c.params["text"] for c in bot_api.sent("sendMessage"))


# WhatsApp

async def test_a_whatsapp_flood_gets_one_request_to_wait(client, graph):
    for n in range(LIMIT):
        await whatsapp_post(client, text_event("oi", message_id=f"wamid.ok{n}"))
    graph.requests.clear()

    answers = [await whatsapp_post(client, text_event("oi?", message_id=f"wamid.no{n}"))
               for n in range(2)]

    assert [(a.status_code, a.json()["applied"], a.json()["limited"]) for a in answers] == \
        [(200, 0, 1)] * 2
    [notice] = graph.sent
    assert WAIT["pt"] in notice["text"]["body"]


async def test_confirming_a_purchase_on_whatsapp_goes_through_past_the_limit(client, graph):
    await whatsapp_post(client, text_event(GIFT, message_id="wamid.c1"))
    buy = next(b["id"] for s in graph.sent if s["type"] == "interactive"
               for b in interactive_buttons(s) if b["id"].startswith("buy:"))
    await whatsapp_post(client, button_event(buy, message_id="wamid.c2"))
    confirm = next(b["id"] for s in graph.sent if s["type"] == "interactive"
                   for b in interactive_buttons(s) if b["id"].startswith("confirm:"))
    assert (await whatsapp_post(client, text_event("oi", message_id="wamid.c3"))
            ).json()["limited"] == 1

    answer = await whatsapp_post(client, button_event(confirm, message_id="wamid.c4"))

    assert answer.json()["applied"] == 1 and "limited" not in answer.json()


# Redis configured but away

async def test_with_redis_away_the_chat_the_limit_and_webhooks_keep_working(
        database_url, fake_api, bot_api, caplog):
    down = Settings(env="test", database_url=database_url, sandbox_secret=SANDBOX_SECRET,
                    ops_token=OPS_TOKEN, public_url="http://testserver",
                    redis_url=f"redis://127.0.0.1:{free_port()}/0", rate_limit_messages=LIMIT,
                    telegram_token=TOKEN, telegram_api_base=fake_api[1],
                    telegram_webhook_secret=SECRET)
    runtime = build_runtime(down)
    seed_demo(runtime)
    try:
        async with app_client(runtime) as c:
            assert [(await chat(c, text="oi", market="BR")).status_code
                    for _ in range(LIMIT + 1)] == [200] * LIMIT + [429]  # counted here
            update = telegram_text("oi", update_id=8001)
            assert (await telegram_post(c, update)).json() == {"applied": True}
            assert (await telegram_post(c, update)).json() == {"applied": False}
    finally:
        runtime.close()
    assert any("redis unreachable" in r.message for r in caplog.records)
