"""Queued messages pushed to Telegram and WhatsApp: a payment confirmed by the provider's
webhook reaches the shopper's chat once, WhatsApp past its 24-hour window gets a template,
failed sends are tried again, and `vitrine serve`'s channel workers poll and push."""

from __future__ import annotations

import functools
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from sqlmodel import Session, select

from bot.channels.push import MAX_ATTEMPTS, SENDING_LEASE, push_pending, retry_in
from bot.channels.telegram import RetryRequests, TelegramChannel, register_webhook
from bot.conversation import INBOX_ACTION
from bot.models import Conversation
from bot.reminders import TEMPLATE, run_reminders
from bot.replies import Message
from checkout.models import Order
from checkout.notices import ORDER_TEMPLATE
from checkout.rails.sandbox import sandbox_event
from core.db import session_scope, utcnow
from core.errors import InvalidInput
from core.outbox import (
    Notification,
    claim,
    give_back,
    hold,
    peek_pending,
    requeue_abandoned,
    sent,
    take_pending,
)
from core.settings import Settings
from tests.bot.channels.fakes import FakeBotApi, with_public_pictures
from tests.conftest import OPS_TOKEN, SANDBOX_SECRET
from vitrine.app import create_app
from vitrine.runtime import Runtime
from vitrine.workers import ChannelWorkers

pytestmark = pytest.mark.anyio

TG_USER, WA_USER = "tg:424242", "wa:5511987654321"
WEBHOOK_SECRET = "test-telegram-webhook-secret-0123"


@pytest.fixture
def settings(database_url: str, fake_api: tuple[FakeBotApi, str]) -> Settings:
    return Settings(env="test", database_url=database_url,
                    sandbox_secret=SANDBOX_SECRET, ops_token=OPS_TOKEN,
                    public_url="http://testserver", telegram_token="123456:TEST-token",
                    telegram_api_base=fake_api[1], telegram_webhook_secret=WEBHOOK_SECRET,
                    whatsapp_token="test-graph-token", whatsapp_phone_id="1098765432",
                    whatsapp_app_secret="test-whatsapp-app-secret-0123456789",
                    whatsapp_api_base="https://graph.test/v21.0")


@pytest.fixture
def demo_runtime(runtime: Runtime, tmp_path: Path) -> Runtime:
    return with_public_pictures(runtime, tmp_path)


def push(runtime: Runtime, **kwargs):
    return push_pending(runtime.engine, runtime.assistant, runtime.push_channels(), **kwargs)


def reserve(runtime: Runtime, user_key: str) -> Order:
    """A Pix order the shopper confirmed, awaiting payment."""
    bot = runtime.assistant
    [*_, cards] = bot.handle(user_key=user_key, text="presente para minha mãe até R$200",
                             market="BR").messages
    [confirmation] = bot.handle(user_key=user_key,
                                action=cards.cards[0].buttons[0].action).messages
    confirm = next(b.action for b in confirmation.buttons if b.action.startswith("confirm:"))
    bot.handle(user_key=user_key, action=confirm)
    with Session(runtime.engine) as session:
        return session.exec(select(Order).where(Order.user_key == user_key)).one()


async def pay(client: httpx.AsyncClient, order: Order) -> None:
    body, headers = sandbox_event(secret=SANDBOX_SECRET, txid=order.txid or "", status="paid")
    response = await client.post("/api/payments/sandbox/webhook", content=body,
                                 headers=headers)
    assert response.status_code == 200, response.text


def last_wrote(runtime: Runtime, user_key: str, hours_ago: float) -> None:
    with Session(runtime.engine) as session:
        conv = session.get(Conversation, user_key)
        conv.updated_at = utcnow() - timedelta(hours=hours_ago)
        session.add(conv)
        session.commit()


def notes(runtime: Runtime, user_key: str) -> list[Notification]:
    with Session(runtime.engine) as session:
        return list(session.exec(select(Notification).where(
            Notification.user_key == user_key).order_by(Notification.id)))


# Telegram

async def test_a_payment_confirmed_by_webhook_reaches_the_telegram_chat_once(
        client, demo_runtime, bot_api):
    order = reserve(demo_runtime, TG_USER)
    bot_api.clear()
    await pay(client, order)

    report = push(demo_runtime)
    [sent] = bot_api.sent("sendMessage")
    assert sent.params["chat_id"] == "424242"
    assert "Pagamento confirmado" in sent.params["text"] and order.id in sent.params["text"]
    assert report.as_dict() == {"sent": 1, "announced": 0, "held": 0, "failed": 0,
                                "shoppers": 1}
    # Not again: neither on the next run, nor once a push that died would be given up on,
    # nor with the shopper's next message.
    assert push(demo_runtime).as_dict()["shoppers"] == 0
    past_the_lease = utcnow() + SENDING_LEASE + timedelta(seconds=1)
    assert push(demo_runtime, now=past_the_lease).as_dict()["shoppers"] == 0
    [note] = notes(demo_runtime, TG_USER)
    assert note.delivered_at is not None and note.sending_until is None
    reply = demo_runtime.assistant.handle(user_key=TG_USER, text="obrigada")
    assert not any("Pagamento confirmado" in m.text for m in reply.messages)


async def test_a_failed_send_is_tried_again_and_given_up_after_a_few(
        client, demo_runtime, bot_api):
    order = reserve(demo_runtime, TG_USER)
    await pay(client, order)
    bot_api.clear()
    bot_api.failures = [(403, "Forbidden: bot was blocked by the user", None)]
    assert push(demo_runtime).failed == 1
    [note] = notes(demo_runtime, TG_USER)
    assert note.delivered_at is None and note.attempts == 1
    assert push(demo_runtime).as_dict()["shoppers"] == 0  # not straight away
    later = utcnow() + retry_in(1) + timedelta(seconds=1)
    assert push(demo_runtime, now=later).sent == 1

    bot_api.clear()
    demo_runtime.assistant.handle(user_key=TG_USER, text="/pedidos")
    with Session(demo_runtime.engine) as session:
        session.add(Notification(user_key=TG_USER, text="x", attempts=MAX_ATTEMPTS))
        session.commit()
    assert push(demo_runtime).as_dict()["shoppers"] == 0


def test_a_push_that_raises_gives_every_message_back(demo_runtime):
    demo_runtime.assistant.handle(user_key=TG_USER, text="oi", market="BR")
    with Session(demo_runtime.engine) as session:
        session.add_all([Notification(user_key=TG_USER, text="um"),
                         Notification(user_key=TG_USER, text="dois")])
        session.commit()

    class Broken:
        prefix = "tg:"

        def push(self, user_key: str, message: Message, *, locale: str) -> bool:
            raise RuntimeError("the channel's client broke")

    report = push_pending(demo_runtime.engine, demo_runtime.assistant, [Broken()])
    assert report.failed == 2
    assert [(n.delivered_at, n.attempts) for n in notes(demo_runtime, TG_USER)] == \
        [(None, 1), (None, 1)]


class ProcessKilled(BaseException):
    """Stands for SIGKILL: nothing after it runs, no handler sees it."""


def test_a_push_killed_before_its_send_loses_no_message(demo_runtime, bot_api):
    """A process killed between taking a shopper's messages and sending them left them
    marked delivered: they were never seen again."""
    demo_runtime.assistant.handle(user_key=TG_USER, text="oi", market="BR")
    with Session(demo_runtime.engine) as session:
        session.add(Notification(user_key=TG_USER, text="Pagamento confirmado"))
        session.commit()

    class Dying:
        prefix = "tg:"

        def push(self, user_key: str, message: Message, *, locale: str) -> bool:
            raise ProcessKilled

    with pytest.raises(ProcessKilled):
        push_pending(demo_runtime.engine, demo_runtime.assistant, [Dying()])
    [note] = notes(demo_runtime, TG_USER)
    assert note.delivered_at is not None and note.sending_until is not None

    # While another process may still be sending it, nobody takes it a second time...
    assert push(demo_runtime).as_dict()["shoppers"] == 0
    reply = demo_runtime.assistant.handle(user_key=TG_USER, text="obrigada")
    assert not any("Pagamento confirmado" in m.text for m in reply.messages)
    # ...and past the lease it is pending again, and pushed once.
    bot_api.clear()
    past_the_lease = utcnow() + SENDING_LEASE + timedelta(seconds=1)
    assert push(demo_runtime, now=past_the_lease).sent == 1
    [sent] = bot_api.sent("sendMessage")
    assert sent.params["text"] == "Pagamento confirmado"
    [note] = notes(demo_runtime, TG_USER)
    assert note.delivered_at is not None and note.sending_until is None
    assert note.attempts == 1
    assert push(demo_runtime, now=past_the_lease + SENDING_LEASE).as_dict()["shoppers"] == 0


def test_a_push_that_outlived_its_lease_changes_nothing_others_did_since(demo_runtime):
    """Its message was put back and delivered with the shopper's turn: the late push's
    failure must not queue it again, nor its success touch it."""
    demo_runtime.assistant.handle(user_key=TG_USER, text="oi", market="BR")
    with Session(demo_runtime.engine) as session:
        session.add(Notification(user_key=TG_USER, text="Pagamento confirmado"))
        session.commit()
    lease = utcnow() + SENDING_LEASE
    with session_scope(demo_runtime.engine) as session:
        [taken] = take_pending(session, user_key=TG_USER, sending_until=lease)
    with session_scope(demo_runtime.engine) as session:
        assert requeue_abandoned(session, now=lease + timedelta(seconds=1)) == 1
    reply = demo_runtime.assistant.handle(user_key=TG_USER, text="obrigada")
    assert reply.messages[0].text == "Pagamento confirmado"

    with session_scope(demo_runtime.engine) as session:
        give_back(session, [taken.id], lease=lease, retry_in=timedelta(0))
        sent(session, [taken.id], lease=lease)
    [note] = notes(demo_runtime, TG_USER)
    assert note.delivered_at is not None and note.attempts == 1
    assert push(demo_runtime, now=lease + SENDING_LEASE).as_dict()["shoppers"] == 0


def test_a_message_the_shoppers_turn_took_from_a_template_push_is_not_given_back(
        demo_runtime):
    """Held while its template went out, the message was delivered by the shopper's turn:
    the push's failure, or its death, must not make it pending again."""
    demo_runtime.assistant.handle(user_key=WA_USER, text="oi", market="BR")
    with Session(demo_runtime.engine) as session:
        session.add(Notification(user_key=WA_USER, text="Pagamento confirmado",
                                 template=ORDER_TEMPLATE))
        session.commit()
    [note] = notes(demo_runtime, WA_USER)
    lease = utcnow() + SENDING_LEASE
    with session_scope(demo_runtime.engine) as session:
        assert hold(session, note.id, sending_until=lease)
    reply = demo_runtime.assistant.handle(user_key=WA_USER, text="oi de novo")
    assert reply.messages[0].text == "Pagamento confirmado"
    with session_scope(demo_runtime.engine) as session:
        give_back(session, [note.id], lease=lease, retry_in=timedelta(0))
        assert requeue_abandoned(session, now=lease + timedelta(seconds=1)) == 0
    [note] = notes(demo_runtime, WA_USER)
    assert note.delivered_at is not None and note.attempts == 0


def test_a_slow_push_renews_its_lease_and_leaves_what_another_took(demo_runtime,
                                                                     monkeypatch):
    """A shopper's messages are taken together and sent one by one: past half the lease the
    next is sent under a new one, and one whose lease ran out and that another push took
    meanwhile is not sent a second time."""
    demo_runtime.assistant.handle(user_key=TG_USER, text="oi", market="BR")
    with Session(demo_runtime.engine) as session:
        session.add_all([Notification(user_key=TG_USER, text=text)
                         for text in ("um", "dois", "três")])
        session.commit()
    clock = [utcnow()]
    monkeypatch.setattr("bot.channels.push.utcnow", lambda: clock[0])
    sent_texts: list[str] = []
    leases: dict[str, object] = {}

    class Slow:
        prefix = "tg:"

        def push(self, user_key: str, message: Message, *, locale: str) -> bool:
            leases[message.text] = next(n.sending_until for n in notes(demo_runtime, TG_USER)
                                        if n.text == message.text)
            sent_texts.append(message.text)
            if message.text == "um":  # 10 minutes of a channel's retries: past half
                clock[0] += timedelta(minutes=10)
            elif message.text == "dois":  # past the first lease: another run puts back "três"
                clock[0] += timedelta(minutes=6)
                with session_scope(demo_runtime.engine) as session:
                    assert requeue_abandoned(session, now=clock[0]) == 1
            return True

    report = push_pending(demo_runtime.engine, demo_runtime.assistant, [Slow()])
    assert sent_texts == ["um", "dois"] and report.sent == 2
    assert leases["dois"] > leases["um"]  # type: ignore[operator]
    by_text = {n.text: n for n in notes(demo_runtime, TG_USER)}
    assert by_text["um"].delivered_at and by_text["dois"].delivered_at
    assert by_text["três"].delivered_at is None  # pending, for the run that put it back


def test_a_template_push_killed_before_its_send_announces_the_message_later(
        demo_runtime, graph):
    """Past WhatsApp's window the message is held while its template goes out: a process
    killed in between left it held with no template sent, for a shopper who may not write
    again."""
    demo_runtime.assistant.handle(user_key=WA_USER, text="oi", market="BR")
    last_wrote(demo_runtime, WA_USER, hours_ago=25)
    with Session(demo_runtime.engine) as session:
        session.add(Notification(user_key=WA_USER, text="Pagamento confirmado",
                                 template=ORDER_TEMPLATE, template_params=["o1", "pago"]))
        session.commit()
    [whatsapp] = [c for c in demo_runtime.push_channels() if c.prefix == "wa:"]

    class Dying:
        prefix, window = "wa:", whatsapp.window

        def push(self, user_key: str, message: Message, *, locale: str) -> bool:
            raise AssertionError("past the window only templates go out")

        def push_template(self, user_key: str, **_: object) -> bool:
            raise ProcessKilled

    with pytest.raises(ProcessKilled):
        push_pending(demo_runtime.engine, demo_runtime.assistant, [Dying()])
    graph.requests.clear()
    assert push(demo_runtime).as_dict()["shoppers"] == 0  # it may still be going out

    past_the_lease = utcnow() + SENDING_LEASE + timedelta(seconds=1)
    assert push(demo_runtime, now=past_the_lease).sent == 1
    [template] = graph.sent
    assert template["template"]["name"] == ORDER_TEMPLATE
    [note] = notes(demo_runtime, WA_USER)
    assert note.delivered_at is not None and note.sending_until is None


def test_whoever_claims_a_message_first_delivers_it_and_the_other_gets_nothing(
        demo_runtime):
    """A shopper's turn reads what waits at its start and claims it as it ends; a push in
    between delivers it, and the turn then leaves it out."""
    with Session(demo_runtime.engine) as session:
        session.add(Notification(user_key=TG_USER, text="Pagamento confirmado"))
        session.commit()
    with Session(demo_runtime.engine) as turn:
        seen = peek_pending(turn, user_key=TG_USER)
        with Session(demo_runtime.engine) as pusher:
            assert [n.text for n in take_pending(pusher, user_key=TG_USER)] == \
                ["Pagamento confirmado"]
            pusher.commit()
        assert len(seen) == 1 and claim(turn, seen) == []
        turn.commit()


async def test_a_message_pushed_during_a_turn_is_not_shown_again_by_it(
        client, demo_runtime, bot_api, monkeypatch):
    demo_runtime.assistant.handle(user_key=TG_USER, text="oi", market="BR")
    with Session(demo_runtime.engine) as session:
        session.add(Notification(user_key=TG_USER, text="Pagamento confirmado"))
        session.commit()
    bot = demo_runtime.assistant
    text_turn = bot._text

    def turn_while_pushing(*args, **kwargs):
        assert push(demo_runtime).sent == 1  # the push runs while the turn is open
        return text_turn(*args, **kwargs)

    monkeypatch.setattr(bot, "_text", turn_while_pushing)
    reply = bot.handle(user_key=TG_USER, text="obrigada")
    assert not any("Pagamento confirmado" in m.text for m in reply.messages)
    assert [c.params["text"] for c in bot_api.sent("sendMessage")] == ["Pagamento confirmado"]


def test_flood_control_is_waited_out_as_telegram_asks(demo_runtime, bot_api, fake_api):
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    session = AiohttpSession(api=TelegramAPIServer.from_base(fake_api[1]))
    session.middleware(RetryRequests(sleep=sleep, max_wait_s=5))
    channel = TelegramChannel(bot=Bot(token="123456:TEST-token", session=session),
                              engine=demo_runtime.engine, assistant=demo_runtime.assistant,
                              run=demo_runtime.call_live)
    bot_api.failures = [(429, "Too Many Requests: retry after 3", 3),
                        (502, "Bad Gateway", None)]
    try:
        assert channel.push(TG_USER, Message(text="oi"), locale="pt_BR")
        assert waits == [3.0, 1.0] and len(bot_api.sent("sendMessage")) == 3
        # A longer wait than allowed is not waited for: the send fails, to be pushed later.
        bot_api.clear()
        bot_api.failures = [(429, "Too Many Requests: retry after 60", 60)]
        assert not channel.push(TG_USER, Message(text="oi"), locale="pt_BR")
        assert waits == [3.0, 1.0]
    finally:
        demo_runtime.call_live(session.close)


# WhatsApp

async def test_whatsapp_within_the_window_gets_the_message_itself(client, demo_runtime, graph):
    order = reserve(demo_runtime, WA_USER)
    await pay(client, order)
    graph.requests.clear()
    assert push(demo_runtime).sent == 1
    [sent] = graph.sent
    assert sent["to"] == "5511987654321" and sent["type"] == "text"
    assert "Pagamento confirmado" in sent["text"]["body"]


async def test_whatsapp_past_the_window_gets_the_order_template(client, demo_runtime, graph):
    order = reserve(demo_runtime, WA_USER)
    await pay(client, order)
    last_wrote(demo_runtime, WA_USER, hours_ago=25)
    graph.requests.clear()

    assert push(demo_runtime).sent == 1
    [sent] = graph.sent
    template = sent["template"]
    assert sent["type"] == "template" and template["name"] == ORDER_TEMPLATE
    assert template["language"] == {"code": "pt_BR"}
    [body] = template["components"]
    params = [p["text"] for p in body["parameters"]]
    assert params[0] == order.id and "Pagamento confirmado" in params[1]
    assert "\n" not in params[1]
    assert notes(demo_runtime, WA_USER)[-1].delivered_at is not None


def test_a_reminder_past_the_window_is_announced_and_its_ideas_follow_the_tap(
        demo_runtime, graph):
    from bot.channels.whatsapp import apply_messages, parse_event
    from tests.bot.channels.test_whatsapp import event

    bot = demo_runtime.assistant
    bot.handle(user_key=WA_USER, text="o aniversário da minha mãe é dia 10 de dezembro",
               market="BR")
    last_wrote(demo_runtime, WA_USER, hours_ago=30)
    assert run_reminders(bot, today=utcnow().replace(month=12, day=1).date()).sent == 1
    graph.requests.clear()

    report = push(demo_runtime)
    assert report.announced == 1
    [sent] = graph.sent
    body, button = sent["template"]["components"]
    assert sent["template"]["name"] == TEMPLATE
    assert body["parameters"][0]["text"] == "sua mãe"
    assert button["sub_type"] == "quick_reply" and \
        button["parameters"] == [{"type": "payload", "payload": INBOX_ACTION}]
    assert push(demo_runtime).as_dict()["shoppers"] == 0  # announced once

    # The shopper taps the template's button: the ideas come, as cards with buttons.
    graph.requests.clear()
    inbound, *_ = parse_event(httpx.Request("POST", "/", json=event({
        "from": WA_USER[3:], "id": "wamid.tap1", "timestamp": "1718000000", "type": "button",
        "button": {"payload": INBOX_ACTION, "text": "Ver ideias"}})).content)
    apply_messages(inbound, engine=demo_runtime.engine, assistant=bot,
                   api=demo_runtime.whatsapp)
    images = [m for m in graph.sent if m["type"] == "image"]
    assert len(images) == 3
    assert notes(demo_runtime, WA_USER)[-1].delivered_at is not None


def test_past_the_window_a_message_without_template_waits_for_the_shopper(
        demo_runtime, graph):
    bot = demo_runtime.assistant
    bot.handle(user_key=WA_USER, text="oi", market="BR")
    last_wrote(demo_runtime, WA_USER, hours_ago=48)
    with Session(demo_runtime.engine) as session:
        session.add(Notification(user_key=WA_USER, text="Seu pedido saiu para entrega."))
        session.commit()
    graph.requests.clear()
    assert push(demo_runtime).held == 1 and graph.sent == []
    assert push(demo_runtime).as_dict()["shoppers"] == 0
    reply = bot.handle(user_key=WA_USER, text="oi de novo")
    assert reply.messages[0].text == "Seu pedido saiu para entrega."


def test_the_inbox_button_with_nothing_waiting_says_so(demo_runtime):
    bot = demo_runtime.assistant
    bot.handle(user_key=WA_USER, text="oi", market="BR")
    [message] = bot.handle(user_key=WA_USER, action=INBOX_ACTION).messages
    assert "Nada" in message.text


# Webhook registration and the channel workers

def test_the_webhook_is_registered_at_the_public_https_url_with_the_secret(
        demo_runtime, bot_api):
    bot = demo_runtime.telegram
    url = demo_runtime.call_live(functools.partial(
        register_webhook, bot, public_url="https://shop.example/", secret=WEBHOOK_SECRET))
    assert url == "https://shop.example/webhooks/telegram"
    [call] = bot_api.sent("setWebhook")
    assert call.params["url"] == url and call.params["secret_token"] == WEBHOOK_SECRET
    assert call.params["allowed_updates"] == '["message", "callback_query"]'
    for public, secret in (("http://shop.example", WEBHOOK_SECRET),
                           ("https://shop.example", None)):
        with pytest.raises(InvalidInput):
            demo_runtime.call_live(functools.partial(
                register_webhook, bot, public_url=public, secret=secret))


def test_serve_polls_telegram_and_pushes_queued_messages(demo_runtime, bot_api, settings):
    demo_runtime.settings = settings.model_copy(update={
        "telegram_mode": "polling", "push_interval_seconds": 0.05})
    workers = ChannelWorkers(demo_runtime)
    started = workers.start()
    try:
        assert started == ["Telegram: long polling",
                           "queued messages pushed every 0.05 s"]
        bot_api.wait_for("getUpdates")
        bot_api.updates.append({"update_id": 9001, "message": {
            "message_id": 1, "date": 1718000000, "text": "oi",
            "chat": {"id": 424242, "type": "private"},
            "from": {"id": 424242, "is_bot": False, "first_name": "Ana",
                     "language_code": "pt-br"}}})
        bot_api.wait_for("sendMessage")
        with Session(demo_runtime.engine) as session:
            session.add(Notification(user_key=TG_USER, text="Seu pedido saiu para entrega."))
            session.commit()
        bot_api.wait_for("sendMessage", count=2)
    finally:
        workers.stop()
    assert bot_api.sent("sendMessage")[-1].params["text"] == "Seu pedido saiu para entrega."


@pytest.mark.parametrize("workers", [True, False])
async def test_the_app_runs_the_channel_workers_only_when_asked(
        demo_runtime, bot_api, settings, workers):
    demo_runtime.settings = settings.model_copy(update={"public_url": "https://shop.example"})
    app = create_app(demo_runtime, channel_workers=workers)
    async with app.router.lifespan_context(app):
        pass
    assert len(bot_api.sent("setWebhook")) == (1 if workers else 0)


def test_on_a_development_url_the_webhook_is_not_registered_and_the_api_still_serves(
        demo_runtime, bot_api):
    workers = ChannelWorkers(demo_runtime)
    try:
        started = workers.start()
    finally:
        workers.stop()
    assert started[0].startswith("Telegram: webhook not registered (Telegram calls webhooks "
                                 "only over https")
    assert bot_api.sent("setWebhook") == []
