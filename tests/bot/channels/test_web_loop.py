"""The web chat answers on the event loop when it can. A turn that reaches an outside
service (a payment provider, a live merchant) leaves the loop and runs again on a thread.
The shopper gets one answer, the rate limit counts one message, and each row is written
once."""

import threading
from collections import Counter

import pytest
from sqlmodel import Session, select

from bot.models import MemoryFact
from catalog.merchants import register_merchant
from catalog.models import MerchantCreate, MerchantKind
from checkout.models import Order, OrderTransition, PaymentAttempt
from core.db import session_scope
from ops.events import ConversionEvent, EventKind
from tests.conftest import app_client
from vitrine.runtime import build_runtime, seed_demo

pytestmark = pytest.mark.anyio


def record_where_turns_run(runtime, monkeypatch) -> list[str]:
    """Where each of the runtime's turns runs from now on: "loop" or "thread"."""
    loop_thread = threading.current_thread()
    ran: list[str] = []
    handle = runtime.assistant.handle

    def recording(**kwargs):
        ran.append("loop" if threading.current_thread() is loop_thread else "thread")
        return handle(**kwargs)

    monkeypatch.setattr(runtime.assistant, "handle", recording)
    return ran


def add_live_merchant(runtime, shop) -> None:
    with session_scope(runtime.engine) as session:
        register_merchant(session=session, merchant_in=MerchantCreate(
            name="Fake Shop", slug="fake-shop", market="US", kind=MerchantKind.MCP,
            mcp_url=shop.url))


def events_of(runtime) -> Counter:
    """The conversion events written so far, by kind (the tests have one shopper)."""
    with Session(runtime.engine) as session:
        return Counter(session.exec(select(ConversionEvent.kind)).all())


async def chat(client, **payload):
    response = await client.post("/api/chat", json={"user": "lia", **payload})
    assert response.status_code == 200, response.text
    return response.json()["messages"]


async def test_a_message_is_answered_on_the_event_loop(demo_runtime, client, monkeypatch):
    ran = record_where_turns_run(demo_runtime, monkeypatch)
    messages = await chat(client, text="presente para minha mãe", market="BR")
    assert any(m["cards"] for m in messages)
    # The market's first search built its index, on a thread; later ones stay on the loop.
    assert ran == ["loop", "thread"]
    messages = await chat(client, text="uma caneca para o meu pai", market="BR")
    assert any(m["cards"] for m in messages)
    assert ran == ["loop", "thread", "loop"]


async def test_forgetting_everything_is_answered_on_the_event_loop(demo_runtime, client,
                                                                  monkeypatch):
    await chat(client, text="presente para minha mãe que ama jardinagem", market="BR")
    ran = record_where_turns_run(demo_runtime, monkeypatch)
    [answer] = await chat(client, text="/forget")
    assert ran == ["loop"]  # every statement of it reads only the shopper's rows
    assert answer["text"]
    with Session(demo_runtime.engine) as session:
        assert not session.exec(select(MemoryFact)).all()


async def test_a_confirmed_purchase_leaves_the_loop_and_starts_one_payment(
        demo_runtime, client, monkeypatch):
    messages = await chat(client, text="presente para minha mãe", market="BR")
    card = next(c for m in messages for c in m["cards"])
    [confirmation] = await chat(client, action=card["buttons"][0]["action"])
    before = events_of(demo_runtime)
    ran = record_where_turns_run(demo_runtime, monkeypatch)

    [payment] = await chat(client, action=confirmation["buttons"][0]["action"])

    assert ran == ["loop", "thread"]  # the provider is called from the thread only
    assert "Pix" in payment["text"]
    with Session(demo_runtime.engine) as session:
        [order] = session.exec(select(Order)).all()
        assert len(session.exec(select(PaymentAttempt)).all()) == 1
        moves = session.exec(select(OrderTransition.to_status).where(
            OrderTransition.order_id == order.id)).all()
    assert len(moves) == len(set(moves))
    added = events_of(demo_runtime) - before
    assert added[EventKind.CHECKOUT_CONFIRMED] == 1
    assert added[EventKind.PAYMENT_PENDING] == 1


async def test_a_search_reaching_a_live_merchant_runs_on_a_thread_and_asks_it_once(
        demo_runtime, client, shop, monkeypatch):
    add_live_merchant(demo_runtime, shop)
    for market in ["US", "BR"]:  # built beforehand: only the merchant sends turns away
        demo_runtime.search.index(market)
    ran = record_where_turns_run(demo_runtime, monkeypatch)

    messages = await chat(client, text="copper watering can", market="US")
    assert any(c["merchant"] == "Fake Shop" for m in messages for c in m["cards"])
    assert ran == ["loop", "thread"]
    assert len(shop.calls("search_catalog")) == 1
    assert events_of(demo_runtime)[EventKind.MESSAGE_RECEIVED] == 1

    # The next search in that market goes to a thread at once: nothing is done twice.
    await chat(client, text="copper watering can", market="US")
    assert ran == ["loop", "thread", "thread"]
    # Another market's still runs on the loop.
    await chat(client, text="presente para minha mãe", market="BR")
    assert ran == ["loop", "thread", "thread", "loop"]


async def test_a_turn_run_again_on_a_thread_counts_once_against_the_rate_limit(
        settings, shop):
    runtime = build_runtime(settings.model_copy(update={"rate_limit_messages": 1}))
    try:
        seed_demo(runtime)
        add_live_merchant(runtime, shop)
        async with app_client(runtime) as client:
            first = await client.post("/api/chat", json={
                "user": "lia", "text": "copper watering can", "market": "US"})
            assert first.status_code == 200, first.text
            second = await client.post("/api/chat", json={
                "user": "lia", "text": "copper watering can", "market": "US"})
            assert second.status_code == 429
    finally:
        runtime.close()


async def test_with_turns_on_the_loop_off_every_turn_runs_on_a_thread(settings, monkeypatch):
    runtime = build_runtime(settings.model_copy(update={"turns_on_loop": False}))
    try:
        seed_demo(runtime)
        ran = record_where_turns_run(runtime, monkeypatch)
        async with app_client(runtime) as client:
            await chat(client, text="presente para minha mãe", market="BR")
        assert ran == ["thread"]
    finally:
        runtime.close()


async def test_withdrawing_leaves_the_loop_before_the_provider_is_asked(
        demo_runtime, client, tmp_path, monkeypatch):
    from tests.checkout.test_withdrawal import _withdraw_action, paying_in_mexico
    from tests.test_end_to_end import chat as shopper_chat  # the shopper who ordered

    order_id, payment = await paying_in_mexico(client, demo_runtime, tmp_path)
    loop_thread = threading.current_thread()
    asked_from: list[bool] = []
    with Session(demo_runtime.engine) as session:
        rail = demo_runtime.rails[session.get(Order, order_id).rail]
    cancel = rail.cancel

    def recording_cancel(order):
        asked_from.append(threading.current_thread() is loop_thread)
        return cancel(order)

    monkeypatch.setattr(rail, "cancel", recording_cancel)
    ran = record_where_turns_run(demo_runtime, monkeypatch)

    [reply] = await shopper_chat(client, action=_withdraw_action([payment]))

    assert "No se cobró nada" in reply["text"]
    assert ran == ["loop", "thread"]
    assert asked_from == [False]  # once, from the thread: the loop never waits on it
