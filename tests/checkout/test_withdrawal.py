"""Withdrawing from a purchase: the legal window per market, and what happens to the money."""

from datetime import UTC, datetime

import pytest
from sqlmodel import Session

from checkout.models import Order
from checkout.withdrawal import add_days, can_withdraw, deadline
from core.db import as_utc
from core.markets import get_market
from tests.checkout.test_api import OPS, _bought, _give_key
from tests.test_end_to_end import chat, pix_code, signed, tlv

pytestmark = pytest.mark.anyio


def test_business_days_skip_the_weekend_and_calendar_days_do_not():
    friday = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)
    assert add_days(friday, 5, business=True).date().isoformat() == "2026-12-04"
    assert add_days(friday, 10, business=False).date().isoformat() == "2026-12-07"
    assert add_days(friday, 1, business=True).date().isoformat() == "2026-11-30"


def _order(market: str, status: str, delivered: datetime | None) -> Order:
    return Order(id="ord_x", user_key="u", conversation_id="c", market=market, language="es",
                 merchant_slug="m", merchant_name="M", product_id="p", title="T", amount=100,
                 total=100, currency="ARS", rail="cod", status=status, delivered_at=delivered)


def test_the_window_opens_at_delivery_and_follows_each_markets_law():
    delivered = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)  # a Friday
    argentina, colombia, us = get_market("AR"), get_market("CO"), get_market("US")
    assert deadline(_order("AR", "paid", None), argentina) is None  # not delivered yet
    assert can_withdraw(_order("AR", "paid", None), argentina)
    assert deadline(_order("AR", "paid", delivered), argentina).day == 7  # 10 calendar days
    assert deadline(_order("CO", "paid", delivered), colombia).day == 4  # 5 business days
    late = datetime(2026, 12, 8, 9, 0, tzinfo=UTC)
    assert not can_withdraw(_order("AR", "paid", delivered), argentina, late)
    assert can_withdraw(_order("AR", "paid", delivered), argentina,
                        datetime(2026, 12, 7, 20, 0, tzinfo=UTC))
    assert not can_withdraw(_order("US", "paid", None), us)  # no legal window there
    assert not can_withdraw(_order("AR", "refunded", None), argentina)


def test_business_days_skip_public_holidays_and_the_eu_runs_to_the_next_working_day():
    delivered = datetime(2026, 12, 4, 15, 0, tzinfo=UTC)  # a Friday in Bogotá
    # 8 December (Immaculate Conception) is a holiday in Colombia: the 5th business day
    # after the 4th is the 14th, not the 11th.
    assert deadline(_order("CO", "paid", delivered), get_market("CO")).date().isoformat() \
        == "2026-12-14"
    # Spain: 14 calendar days from 24 November end on 8 December, a holiday there, so the
    # window runs to the 9th.
    spain = get_market("ES")
    assert deadline(_order("ES", "paid", datetime(2026, 11, 24, 12, 0, tzinfo=UTC)),
                    spain).date().isoformat() == "2026-12-09"
    # Argentina counts calendar days; its window ends on 7 December, a holiday there,
    # and is not extended (only the EU rule runs a window to the next working day).
    assert deadline(_order("AR", "paid", datetime(2026, 11, 27, 15, 0, tzinfo=UTC)),
                    get_market("AR")).date().isoformat() == "2026-12-07"


def test_the_last_day_ends_at_midnight_where_the_shopper_lives():
    argentina = get_market("AR")
    delivered = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)  # noon in Buenos Aires
    ten_pm_on_the_last_day = datetime(2026, 12, 8, 1, 0, tzinfo=UTC)  # 22:00 on 7 Dec there
    assert can_withdraw(_order("AR", "paid", delivered), argentina, ten_pm_on_the_last_day)
    assert not can_withdraw(_order("AR", "paid", delivered), argentina,
                            datetime(2026, 12, 8, 3, 30, tzinfo=UTC))  # 00:30 on 8 Dec


def _withdraw_action(messages) -> str:
    return next(b["action"] for m in messages for b in m["buttons"]
                if b["action"].startswith("withdraw:"))


async def paying_in_mexico(client, runtime, tmp_path) -> tuple[str, dict]:
    """A Mexican order confirmed and waiting on the sandbox's hosted page: its id, and the
    message with the payment."""
    from tests.checkout.test_rails_in_chat import _shop

    _shop(runtime, tmp_path, "MX", "MXN", "jardin-mx")  # Mexico pays on the sandbox here
    messages = await chat(client, text="watering can", market="MX")
    [confirmation] = await chat(client, action=messages[-1]["cards"][0]["buttons"][0]["action"])
    order_id = next(b["action"] for b in confirmation["buttons"]
                    if b["action"].startswith("confirm:")).split(":", 1)[1]
    [payment] = await chat(client, action=f"confirm:{order_id}")
    return order_id, payment


async def test_argentinas_cancel_button_comes_with_the_order_and_cancels_cash_on_delivery(
        client):
    order_id, done = await _bought(client, "AR", "regalo para mi papá que le gusta el asado")
    button = next(b for m in done for b in m["buttons"] if b["action"].startswith("withdraw:"))
    assert button["label"] == "Botón de arrepentimiento"
    [reply] = await chat(client, action=button["action"])
    assert "cancelado" in reply["text"] and "No se cobró nada" in reply["text"]
    shown = (await client.get(f"/api/orders/{order_id}", headers=OPS)).json()
    assert shown["status"] == "canceled"
    assert shown["status_history"][-1]["note"] == "withdrawal"
    [again] = await chat(client, action=button["action"])
    assert "ya está cancelado" in again["text"]  # said, and nothing changes


async def test_a_paid_pix_order_withdrawn_is_refunded_by_the_merchant_who_reports_it(
        client, demo_runtime):
    order_id, payment = await _bought(client, "BR", "presente para minha mãe até R$200")
    txid = tlv(tlv(pix_code(payment))["62"])["05"]
    body, headers = signed({"event_id": "e1", "txid": txid, "status": "paid"})
    await client.post("/api/payments/sandbox/webhook", content=body, headers=headers)

    *told, listed = await chat(client, text="/pedidos")
    assert any("Pagamento confirmado" in m["text"] for m in told)
    assert order_id in listed["text"] and "pago" in listed["text"]
    [reply] = await chat(client, action=_withdraw_action([listed]))
    assert "vai devolver" in reply["text"]
    shown = (await client.get(f"/api/orders/{order_id}", headers=OPS)).json()
    assert shown["status"] == "refund_pending"

    key = _give_key(demo_runtime, shown["merchant"])
    done = await client.post(f"/api/orders/{order_id}/refunded", headers=key)
    assert done.json()["status"] == "refunded"
    *told, listed = await chat(client, text="/pedidos")
    assert any("foi estornado" in m["text"] for m in told)
    assert "estornado" in listed["text"] and not listed["buttons"]  # nothing left to cancel


async def test_after_the_window_the_button_says_when_it_ended(client, demo_runtime):
    order_id, payment = await _bought(client, "AR", "regalo para mi papá que le gusta el asado")
    with Session(demo_runtime.engine) as session:
        order = session.get(Order, order_id)
        order.delivered_at = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)  # noon in Buenos Aires
        session.add(order)
        session.commit()
    [reply] = await chat(client, action=_withdraw_action(payment))
    assert "terminó" in reply["text"] and "15 de enero de 2026" in reply["text"]
    shown = (await client.get(f"/api/orders/{order_id}", headers=OPS)).json()
    assert shown["status"] == "pending_collection"


async def test_a_card_order_in_a_market_without_a_window_has_no_cancel_button(client):
    _, payment = await _bought(client, "US", "gift for my 10-year-old nephew under $40")
    assert not any(b["action"].startswith("withdraw:") for m in payment for b in m["buttons"])


async def test_the_delivery_starts_the_window_and_only_the_merchant_reports_it(
        client, demo_runtime):
    order_id, _ = await _bought(client, "AR", "regalo para mi papá que le gusta el asado")
    assert (await client.post(f"/api/orders/{order_id}/delivered", headers=OPS)
            ).status_code == 401
    key = _give_key(demo_runtime, (await client.get(f"/api/orders/{order_id}", headers=OPS)
                                   ).json()["merchant"])
    delivered = await client.post(f"/api/orders/{order_id}/delivered", headers=key)
    assert delivered.status_code == 200 and delivered.json()["delivered_at"]
    assert delivered.json()["status_history"][-1]["note"] == "delivered"
    with Session(demo_runtime.engine) as session:
        order = session.get(Order, order_id)
        ends = deadline(order, get_market("AR"))
    assert ends is not None and 9 <= (ends - as_utc(order.delivered_at)).days <= 10


async def test_a_paid_order_withdrawn_is_refunded_through_its_rail(client, demo_runtime,
                                                                    tmp_path):
    order_id, payment = await paying_in_mexico(client, demo_runtime, tmp_path)
    txid = (await client.get(f"/api/orders/{order_id}", headers=OPS)).json()["txid"]
    body, headers = signed({"event_id": "paid", "txid": txid, "status": "paid"})
    await client.post("/api/payments/sandbox/webhook", content=body, headers=headers)
    *told, reply = await chat(client, action=_withdraw_action([payment]))
    assert any("Pago confirmado" in m["text"] for m in told)
    assert "reembolso" in reply["text"] and "en camino" in reply["text"]
    shown = (await client.get(f"/api/orders/{order_id}", headers=OPS)).json()
    assert shown["status"] == "refund_pending"
    assert shown["status_history"][-1]["note"] == f"withdrawal; refund re_{txid}"
    # The provider confirms the refund: the order is refunded and the shopper told.
    body, headers = signed({"event_id": "back", "txid": txid, "status": "refunded"})
    await client.post("/api/payments/sandbox/webhook", content=body, headers=headers)
    assert (await client.get(f"/api/orders/{order_id}", headers=OPS)).json()["status"] == \
        "refunded"


async def test_withdrawing_an_unpaid_order_stops_its_payment_where_the_provider_can(
        client, demo_runtime, tmp_path):
    order_id, payment = await paying_in_mexico(client, demo_runtime, tmp_path)
    [reply] = await chat(client, action=_withdraw_action([payment]))
    assert "No se cobró nada" in reply["text"]
    shown = (await client.get(f"/api/orders/{order_id}", headers=OPS)).json()
    assert shown["status"] == "canceled"
    assert shown["status_history"][-1]["note"] == "withdrawal; payment stopped at the provider"
    page = await client.get(f"/sandbox/pay/{shown['txid']}")
    assert "Pay</button>" not in page.text  # the hosted page takes no payment any more


def test_the_eu_market_runs_a_window_ending_on_a_shared_day_off_to_the_next_working_day():
    # Delivered on 11 December 2026: 14 days end on Friday the 25th, Christmas, and the 26th
    # is a day off across the euro area too; the window runs to Monday the 28th.
    delivered = datetime(2026, 12, 11, 12, 0, tzinfo=UTC)
    assert deadline(_order("EU", "paid", delivered), get_market("EU")).date().isoformat() \
        == "2026-12-28"
