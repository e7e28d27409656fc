"""Several API processes sharing one Redis: a Telegram update, a WhatsApp message or a
payment provider's event one process applied is refused by the others before their database
is asked; one that another process is applying right now is left for the sender to deliver
again (so that it is not lost if that process dies); and a shopper's messages count against
one limit whichever process they reach.

The second process is a second runtime and app, with a database of its own, so that only
Redis can know what the first one did.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import redis
from sqlmodel import Session

from bot.channels.telegram import TelegramUpdateSeen
from bot.channels.whatsapp import WhatsAppMessageSeen
from checkout.models import Order
from checkout.rails.pix import SIGNATURE_HEADER as PIX_SIGNATURE
from checkout.signatures import hmac_sha256_hex
from core.redis_state import RedisState
from core.settings import Settings
from core.shared_state import Claim
from tests.bot.channels.fakes import FakeBotApi, FakeGraphApi
from tests.bot.channels.test_telegram import SECRET, TOKEN
from tests.bot.channels.test_telegram import post as telegram_post
from tests.bot.channels.test_telegram import text_update as telegram_text
from tests.bot.channels.test_whatsapp import APP_SECRET, GRAPH, PHONE_ID, SHOPPER, text_event
from tests.bot.channels.test_whatsapp import event as wa_event
from tests.bot.channels.test_whatsapp import post as whatsapp_post
from tests.checkout.test_api import _bought
from tests.conftest import OPS_TOKEN, SANDBOX_SECRET, app_client
from tests.redis_server import redis_server_fixture, redis_url_fixture  # noqa: F401
from tests.test_end_to_end import pix_code, signed, tlv
from vitrine.runtime import Runtime, build_runtime, seed_demo

pytestmark = pytest.mark.anyio

PAY = "/api/payments/sandbox/webhook"


@pytest.fixture
def settings(database_url: str, fake_api: tuple[FakeBotApi, str], redis_url: str) -> Settings:
    return Settings(env="test", database_url=database_url, sandbox_secret=SANDBOX_SECRET,
                    ops_token=OPS_TOKEN, public_url="http://testserver", redis_url=redis_url,
                    rate_limit_messages=3, telegram_token=TOKEN,
                    telegram_api_base=fake_api[1], telegram_webhook_secret=SECRET,
                    whatsapp_token="test-graph-token", whatsapp_phone_id=PHONE_ID,
                    whatsapp_app_secret=APP_SECRET, whatsapp_api_base=GRAPH)


@pytest.fixture
def other_graph() -> FakeGraphApi:
    return FakeGraphApi()


@pytest.fixture
def other_runtime(settings: Settings, tmp_path: Path, other_graph: FakeGraphApi
                  ) -> Iterator[Runtime]:
    """Another process: same Redis, its own database."""
    http = httpx.Client(transport=httpx.MockTransport(other_graph))
    other = build_runtime(settings.model_copy(update={
        "database_url": f"sqlite:///{tmp_path / 'other-process.db'}"}), whatsapp_http=http)
    seed_demo(other)
    yield other
    other.close()
    http.close()


@pytest.fixture
async def other_client(other_runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(other_runtime) as c:
        yield c


@pytest.fixture
def elsewhere(redis_url: str) -> Iterator[RedisState]:
    """A third process's view of Redis, to claim ids as if it were applying them."""
    state = RedisState.from_url(redis_url)
    yield state
    state.close()


def test_the_runtime_keeps_its_state_in_redis_when_configured(runtime):
    assert isinstance(runtime.shared, RedisState)
    assert runtime.federated.federation.cache.store is runtime.shared
    assert runtime.federated.federation.breaker.store is runtime.shared


# Telegram

async def test_an_update_one_process_applied_is_refused_by_another(
        client, other_client, other_runtime, bot_api):
    update = telegram_text("oi", update_id=7001)
    assert (await telegram_post(client, update)).json() == {"applied": True}
    bot_api.clear()

    again = await telegram_post(other_client, update)

    assert again.status_code == 200 and again.json() == {"applied": False}
    assert bot_api.calls == []
    with Session(other_runtime.engine) as session:  # refused by Redis alone
        assert session.get(TelegramUpdateSeen, 7001) is None


async def test_an_update_another_process_is_applying_is_left_for_telegram_to_resend(
        client, demo_runtime, bot_api, elsewhere):
    assert elsewhere.claim("once:tg:7002") == Claim.FIRST  # and then that process died

    busy = await telegram_post(client, telegram_text("oi", update_id=7002))

    assert busy.status_code == 503 and int(busy.headers["Retry-After"]) > 0
    assert bot_api.calls == []
    with Session(demo_runtime.engine) as session:
        assert session.get(TelegramUpdateSeen, 7002) is None
    elsewhere.release("once:tg:7002")  # its claim ran out
    again = await telegram_post(client, telegram_text("oi", update_id=7002))
    assert again.json() == {"applied": True} and bot_api.sent("sendMessage")


# WhatsApp

async def test_a_message_one_process_applied_is_refused_by_another(
        client, other_client, graph, other_graph):
    body = text_event("oi", message_id="wamid.shared1")
    assert (await whatsapp_post(client, body)).json()["applied"] == 1

    again = await whatsapp_post(other_client, body)

    assert again.json() == {"applied": 0, "duplicates": 1, "skipped": 0, "statuses": 0}
    assert other_graph.requests == []


async def test_a_batch_with_a_message_in_flight_elsewhere_is_delivered_again(
        client, demo_runtime, graph, elsewhere):
    first = {"from": SHOPPER, "id": "wamid.b1", "timestamp": "1718000000", "type": "text",
             "text": {"body": "oi"}}
    second = {**first, "id": "wamid.b2", "text": {"body": "tudo bem?"}}
    batch = wa_event(first)
    batch["entry"][0]["changes"][0]["value"]["messages"].append(second)
    elsewhere.claim("once:wa:wamid.b2")

    busy = await whatsapp_post(client, batch)

    assert busy.status_code == 503 and busy.json()["in_flight"] == 1
    assert busy.json()["applied"] == 1  # the other message was answered meanwhile
    with Session(demo_runtime.engine) as session:
        assert session.get(WhatsAppMessageSeen, "wamid.b2") is None
    elsewhere.release("once:wa:wamid.b2")
    again = await whatsapp_post(client, batch)
    assert again.status_code == 200
    assert (again.json()["applied"], again.json()["duplicates"]) == (1, 1)


# The rate limit

async def test_a_shoppers_messages_count_against_one_limit_in_every_process(
        client, other_client):
    for target in (client, other_client, client):
        assert (await target.post("/api/chat", json={"user": "ana", "text": "oi",
                                                      "market": "BR"})).status_code == 200
    refused = await other_client.post("/api/chat", json={"user": "ana", "text": "oi"})
    assert refused.status_code == 429


# Payment providers' events

async def test_a_payment_event_is_applied_once_across_processes(
        client, other_client, demo_runtime, elsewhere, redis_url):
    order_id, payment = await _bought(client, "BR", "presente para minha mãe até R$200")
    txid = tlv(tlv(pix_code(payment))["62"])["05"]
    body, headers = signed({"event_id": "evt-shared", "txid": txid, "status": "paid"})
    elsewhere.claim("once:pay:sandbox:evt-shared")

    busy = await client.post(PAY, content=body, headers=headers)

    assert busy.status_code == 503 and int(busy.headers["Retry-After"]) > 0  # sent again
    with Session(demo_runtime.engine) as session:
        assert session.get(Order, order_id).status == "awaiting_payment"
    elsewhere.release("once:pay:sandbox:evt-shared")
    applied = await client.post(PAY, content=body, headers=headers)
    assert applied.json() == {"status": "applied"}
    raw = redis.Redis.from_url(redis_url)
    assert raw.get("vitrine:once:pay:sandbox:evt-shared") == b"done"
    raw.close()
    # The other process has never seen the order: Redis answers for it.
    again = await other_client.post(PAY, content=body, headers=headers)
    assert again.json() == {"status": "duplicate"}


async def test_a_notice_listing_one_payment_twice_pays_once_and_is_not_left_in_flight(
        client, demo_runtime):
    order_id, payment = await _bought(client, "BR", "presente para minha mãe até R$200")
    fields = tlv(pix_code(payment))
    entry = {"endToEndId": "E00000000202611291200twicetwicetw", "txid": tlv(fields["62"])["05"],
             "valor": fields["54"], "horario": "2026-11-29T12:00:00.000Z", "devolucoes": []}
    body = json.dumps({"pix": [entry, entry]}).encode()
    secret = demo_runtime.settings.pix_webhook_secret
    headers = {PIX_SIGNATURE: "sha256=" + hmac_sha256_hex(secret, body)}

    paid = await client.post("/api/payments/pix/webhook", content=body, headers=headers)

    assert paid.status_code == 200 and paid.json() == {"status": "applied"}
    with Session(demo_runtime.engine) as session:
        assert session.get(Order, order_id).status == "paid"
    again = await client.post("/api/payments/pix/webhook", content=body, headers=headers)
    assert again.json() == {"status": "duplicate"}
