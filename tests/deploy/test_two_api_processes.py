"""Two API processes on one database and one Redis, as in production (two replicas behind a
load balancer), receive the same WhatsApp message and the same payment notice at the same
moment: one effect, one order transition, one message to the shopper."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session, col, func, select

from checkout.models import Order, OrderStatus, OrderTransition, PaymentEvent
from core.db import make_engine
from core.outbox import Notification
from core.settings import Settings
from ops.events import ConversionEvent, EventKind
from tests.bot.channels.test_whatsapp import SHOPPER, signed, text_event
from tests.conftest import SANDBOX_SECRET
from tests.deploy.processes import api_process, vitrine_env, whatsapp_settings
from tests.test_end_to_end import pix_code, tlv
from tests.test_end_to_end import signed as sandbox_signed
from tests.threads import at_once
from vitrine.runtime import build_runtime, seed_demo


@pytest.fixture
def two_apis(database_url: str, redis_url: str, graph, tmp_path: Path
             ) -> Iterator[tuple[str, str]]:
    """Two `vitrine serve` processes sharing the database and Redis, the demo catalog in it."""
    runtime = build_runtime(Settings(database_url=database_url))
    seed_demo(runtime)
    runtime.close()
    env = vitrine_env(database_url=database_url, redis_url=redis_url,
                      serve_runs_jobs="false", sandbox_secret=SANDBOX_SECRET,
                      **whatsapp_settings(graph[1]))
    with api_process(env, tmp_path / "api-a.log") as (a, _), \
            api_process(env, tmp_path / "api-b.log") as (b, _):
        yield a, b


def _post(url: str, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(url + path, content=body, headers=headers, timeout=30)


def _count(database_url: str, statement) -> int:  # type: ignore[no-untyped-def]
    engine = make_engine(database_url)
    try:
        with Session(engine) as session:
            return int(session.exec(statement).one())
    finally:
        engine.dispose()


def test_the_same_whatsapp_message_to_both_processes_is_answered_once(
        two_apis, graph, database_url):
    recorder, _ = graph
    body, headers = signed(text_event("presente para minha mãe de 60 anos até R$200",
                                      message_id="wamid.same-message"))
    a, b = two_apis

    answers = at_once((_post, a, "/webhooks/whatsapp", body, headers),
                      (_post, b, "/webhooks/whatsapp", body, headers))

    # One applies it; the other answers 200 (already done) or 503 while the first is still
    # at it, so that Meta delivers it again later rather than never, if the first dies.
    assert sorted(r.status_code for r in answers) in ([200, 200], [200, 503])
    sent = recorder.texts_to(SHOPPER)
    assert sum("ideias" in text for text in sent) == 1, sent
    received = _count(database_url, select(func.count()).select_from(ConversionEvent).where(
        ConversionEvent.kind == EventKind.MESSAGE_RECEIVED))
    assert received == 1
    # Delivered again later, to either process: still nothing more.
    assert _post(b, "/webhooks/whatsapp", body, headers).status_code == 200
    assert recorder.texts_to(SHOPPER) == sent


def _chat(url: str, **payload: Any) -> list[dict]:
    response = httpx.post(url + "/api/chat", json={"user": "ana", **payload}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["messages"]


def _updates(url: str) -> list[dict]:
    response = httpx.get(url + "/api/chat/updates", params={"user": "ana"}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["messages"]


def test_the_same_payment_notice_to_both_processes_pays_the_order_once(
        two_apis, database_url):
    a, b = two_apis
    cards = [c for m in _chat(a, text="presente para minha mãe até R$200", market="BR")
             for c in m["cards"]]
    buy = next(x["action"] for x in cards[0]["buttons"] if x["action"].startswith("buy:"))
    [confirmation] = _chat(b, action=buy)
    confirm = next(x["action"] for x in confirmation["buttons"]
                   if x["action"].startswith("confirm:"))
    txid = tlv(tlv(pix_code(_chat(a, action=confirm)))["62"])["05"]
    body, headers = sandbox_signed({"event_id": "evt-same-notice", "txid": txid,
                                    "status": "paid"})

    answers = at_once((_post, a, "/api/payments/sandbox/webhook", body, headers),
                      (_post, b, "/api/payments/sandbox/webhook", body, headers))

    assert sorted(r.status_code for r in answers) in ([200, 200], [200, 503])
    # The provider's next delivery of the notice, to either process, is acknowledged.
    assert _post(b, "/api/payments/sandbox/webhook", body, headers).status_code == 200
    engine = make_engine(database_url)
    try:
        with Session(engine) as session:
            order = session.exec(select(Order).where(Order.txid == txid)).one()
            assert order.status == OrderStatus.PAID
            paid = session.exec(select(OrderTransition).where(
                OrderTransition.order_id == order.id,
                OrderTransition.to_status == OrderStatus.PAID)).all()
            assert len(paid) == 1
            assert len(session.exec(select(PaymentEvent).where(
                PaymentEvent.event_id == "evt-same-notice")).all()) == 1
            news = session.exec(select(Notification).where(
                Notification.user_key == order.user_key,
                col(Notification.text).contains(order.id))).all()
            assert len(news) == 1
            assert len(session.exec(select(ConversionEvent).where(
                ConversionEvent.kind == EventKind.ORDER_PAID,
                ConversionEvent.order_id == order.id)).all()) == 1
    finally:
        engine.dispose()
    # Both processes asked for the shopper's news at once: it is delivered by one of them.
    delivered = at_once((_updates, a), (_updates, b))
    told = [m for messages in delivered for m in messages]
    assert len(told) == 1, told
