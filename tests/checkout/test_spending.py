"""Spending rules: limits per order and per month, the extra confirmation, instalments."""

import sqlite3
import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import text as sql_text
from sqlmodel import Session, SQLModel, select

from checkout.models import Order, PaymentAttempt
from checkout.spending import (
    Limit,
    check,
    check_again,
    instalment_choices,
    limits_of,
    market_rules,
    set_limit,
    spent_this_month,
)
from core.db import make_engine
from core.markets import all_markets
from tests.checkout.test_api import OPS
from tests.test_end_to_end import chat

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
def session(database_url):
    engine = make_engine(database_url)
    SQLModel.metadata.create_all(engine)
    with Session(engine) as s:
        yield s


def _order(oid: str, total: int, *, user: str = "ana", status: str = "paid",
           confirmed: datetime = NOW, currency: str = "BRL") -> Order:
    return Order(id=oid, user_key=user, conversation_id="c", market="BR", language="pt",
                 merchant_slug="m", merchant_name="M", product_id=oid, title=oid,
                 amount=total, total=total, currency=currency, rail="pix", status=status,
                 confirmed_at=confirmed)


def test_every_market_has_default_limits():
    assert set(all_markets()) <= set(market_rules())


def test_an_order_over_the_per_order_default_needs_a_second_confirmation(session):
    per_order, _ = limits_of(session=session, owner_key="ana", market="BR", currency="BRL")
    verdict = check(session=session, order=_order("new", per_order + 1,
                                                   status="awaiting_confirmation"),
                    owner_key="ana", user_keys=["ana"], now=NOW)
    assert [e.limit for e in verdict.exceeded] == [Limit.PER_ORDER]
    fits = check(session=session, order=_order("new", per_order,
                                               status="awaiting_confirmation"),
                 owner_key="ana", user_keys=["ana"], now=NOW)
    assert not fits.needs_extra_confirmation


def test_the_month_counts_every_linked_account_and_only_money_spent_this_month(session):
    session.add_all([
        _order("a", 30000, user="tg:ana"), _order("b", 20000, user="wa:ana",
                                                    status="pending_collection"),
        _order("c", 90000, user="tg:ana", status="canceled"),  # never paid
        _order("d", 90000, user="tg:ana", status="failed"),
        _order("e", 90000, user="tg:ana", confirmed=datetime(2026, 10, 31, tzinfo=UTC)),
        _order("f", 90000, user="tg:ana", currency="USD"),
        _order("g", 90000, user="someone-else"),
    ])
    session.commit()
    assert spent_this_month(session=session, user_keys=["tg:ana", "wa:ana"], currency="BRL",
                            now=NOW) == 50000
    set_limit(session=session, owner_key="tg:ana", currency="BRL", limit=Limit.PER_MONTH,
              amount=60000)
    verdict = check(session=session, order=_order("new", 15000, status="awaiting_confirmation"),
                    owner_key="tg:ana", user_keys=["tg:ana", "wa:ana"], now=NOW)
    [over] = verdict.exceeded
    assert over.limit == Limit.PER_MONTH and over.allowed == 60000 and over.spent == 50000


def test_a_limit_of_the_shoppers_own_replaces_the_default_and_clearing_restores_it(session):
    default, _ = limits_of(session=session, owner_key="ana", market="BR", currency="BRL")
    set_limit(session=session, owner_key="ana", currency="BRL", limit=Limit.PER_ORDER,
              amount=5000)
    assert limits_of(session=session, owner_key="ana", market="BR", currency="BRL")[0] == 5000
    set_limit(session=session, owner_key="ana", currency="BRL", limit=Limit.PER_ORDER,
              amount=None)
    assert limits_of(session=session, owner_key="ana", market="BR", currency="BRL")[0] == \
        default


def test_instalments_only_where_the_market_and_rail_allow_and_never_tiny():
    assert instalment_choices(market="BR", rail="pix", total=100000) == []
    assert instalment_choices(market="US", rail="stripe", total=100000) == []
    assert instalment_choices(market="BR", rail="mercadopago", total=100000) == \
        [2, 3, 6, 10, 12]
    assert instalment_choices(market="BR", rail="mercadopago", total=3000) == [2, 3]


async def test_over_a_limit_the_chat_asks_again_and_pays_only_on_the_second_tap(client):
    [reply] = await chat(client, text="/limite 50", market="BR")
    assert "R$ 50,00 por pedido" in reply["text"]
    messages = await chat(client, text="presente para minha mãe até R$200", market="BR")
    card = next(c for c in messages[-1]["cards"] if c["price"]["amount"] > 5000)
    buy = next(b["action"] for b in card["buttons"] if b["action"].startswith("buy:"))
    [confirmation] = await chat(client, action=buy)
    confirm = next(b["action"] for b in confirmation["buttons"]
                   if b["action"].startswith("confirm:"))
    [extra] = await chat(client, action=confirm)
    assert "limite de R$ 50,00 por pedido" in extra["text"]
    order_id = confirm.split(":", 1)[1]
    shown = (await client.get(f"/api/orders/{order_id}", headers=OPS)).json()
    assert shown["status"] == "awaiting_confirmation" and not shown["txid"]
    again = next(b["action"] for b in extra["buttons"] if b["action"].startswith("confirm_over:"))
    paid = await chat(client, action=again)
    assert any("Pix" in m["text"] for m in paid)
    shown = (await client.get(f"/api/orders/{order_id}", headers=OPS)).json()
    assert shown["status"] == "awaiting_payment"


async def test_limit_commands_show_set_and_clear_in_the_shoppers_words(client):
    [shown] = await chat(client, text="/limit", market="US")
    assert "per order" in shown["text"] and "$0.00 spent" in shown["text"]
    [monthly] = await chat(client, text="/limit month 1,500", market="US")
    assert "$1,500.00 per month" in monthly["text"]
    [bad] = await chat(client, text="/limit lots", market="US")
    assert "did not understand" in bad["text"]
    [cleared] = await chat(client, text="/limit off", market="US")
    assert "$5,000.00 per month" in cleared["text"]  # back to the market's default


@pytest.mark.postgres
def test_two_orders_confirmed_at_once_cannot_both_fit_under_the_month_limit(database_url):
    """Each confirmation used to read the month without the other: on PostgreSQL both
    passed a limit only one of them fits."""
    engine = make_engine(database_url)
    SQLModel.metadata.create_all(engine)
    with Session(engine) as s:
        set_limit(session=s, owner_key="ana", currency="BRL", limit=Limit.PER_MONTH,
                  amount=60000)
        s.commit()
    first, second = Session(engine), Session(engine)
    verdicts: dict[str, object] = {}

    def confirm_second() -> None:
        verdicts["second"] = check(session=second, order=_order("o2", 40000), owner_key="ana",
                                   user_keys=["ana"], now=NOW)
        second.rollback()

    try:
        verdicts["first"] = check(session=first, order=_order("o1", 40000), owner_key="ana",
                                  user_keys=["ana"], now=NOW)
        waiting = threading.Thread(target=confirm_second)
        waiting.start()
        # The second confirmation waits for the first, which then commits its order.
        _wait_for_a_session_blocked_on_a_lock(engine)
        first.add(_order("o1", 40000, status="awaiting_payment"))
        first.commit()
        waiting.join(timeout=30)
    finally:
        first.close()
        second.close()
        engine.dispose()
    assert not verdicts["first"].needs_extra_confirmation  # type: ignore[attr-defined]
    [over] = verdicts["second"].exceeded  # type: ignore[attr-defined]
    assert over.limit == Limit.PER_MONTH and over.spent == 40000


def _wait_for_a_session_blocked_on_a_lock(engine, timeout: float = 30.0) -> None:
    pause = threading.Event()
    with engine.connect() as conn:
        for _ in range(int(timeout / 0.05)):
            blocked = conn.execute(sql_text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND wait_event = 'advisory'")).scalar_one()
            conn.rollback()
            if blocked:
                return
            pause.wait(0.05)
    raise AssertionError("the second confirmation never waited for the first")


def test_on_sqlite_a_confirmation_committed_during_the_providers_call_is_counted(
        demo_runtime):
    """SQLite cannot hold the shopper's other confirmations off through the provider's call:
    one that committed meanwhile used to leave both orders confirmed past the limit."""
    if demo_runtime.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL holds them off with a lock (the test above)")
    bot, user = demo_runtime.assistant, "web:ana"
    [*_, found] = bot.handle(user_key=user, text="gift for my 10-year-old nephew under $40",
                             market="US").messages
    confirms, totals = [], []
    for card in found.cards[:2]:
        [confirmation] = bot.handle(user_key=user, action=card.buttons[0].action).messages
        confirms.append(next(b.action for b in confirmation.buttons
                             if b.action.startswith("confirm:")))
    with Session(demo_runtime.engine) as s:
        orders = {o.id: o for o in s.exec(select(Order)).all()}
        totals = [orders[action.partition(":")[2]].total for action in confirms]
        rail_name = orders[confirms[1].partition(":")[2]].rail
        set_limit(session=s, owner_key=user, currency="USD", limit=Limit.PER_MONTH,
                  amount=sum(totals) - 1)
        s.commit()
    first, second = (action.partition(":")[2] for action in confirms)
    real = demo_runtime.assistant.buying.rails[rail_name]
    started: list[str] = []

    class Meanwhile:
        """The provider, asked for the second order, takes its time: the first order is
        confirmed in another turn before it answers."""

        def __getattr__(self, name):
            return getattr(real, name)

        def initiate(self, order, **kwargs):
            started.append(order.id)
            if order.id == second and started.count(second) == 1:
                other = threading.Thread(target=bot.handle,
                                         kwargs={"user_key": user, "action": confirms[0]})
                other.start()
                other.join(timeout=30)
                assert not other.is_alive()
            return real.initiate(order, **kwargs)

    demo_runtime.assistant.buying.rails[rail_name] = Meanwhile()
    [answer] = bot.handle(user_key=user, action=confirms[1]).messages

    assert "this month" in answer.text, answer.text  # the second tap the limit asks for
    with Session(demo_runtime.engine) as s:
        assert s.get(Order, first).status == "awaiting_payment"
        assert s.get(Order, second).status == "awaiting_confirmation"
        # The payment started for it stays on record: paid anyway, it finds the order.
        [attempt] = s.exec(select(PaymentAttempt).where(PaymentAttempt.order_id == second))
    assert started == [second, first]
    # The second tap the message asks for starts that same payment.
    [paying] = bot.handle(user_key=user, action=next(
        b.action for b in answer.buttons if b.action.startswith("confirm")),
        ).messages
    with Session(demo_runtime.engine) as s:
        assert s.get(Order, second).txid == attempt.txid
    assert started == [second, first, second]


def test_on_sqlite_the_second_check_holds_other_writers_off_until_commit(tmp_path):
    """What the check after the provider's call reads stays true until the commit: no other
    confirmation can commit in between."""
    engine = make_engine(f"sqlite:///{tmp_path / 'limits.db'}")
    SQLModel.metadata.create_all(engine)
    other = sqlite3.connect(tmp_path / "limits.db", timeout=0.1)
    try:
        with Session(engine) as confirming:
            verdict = check_again(session=confirming, order=_order("o1", 40000),
                                  owner_key="ana", user_keys=["ana"], now=NOW)
            assert verdict is not None and not verdict.needs_extra_confirmation
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
            confirming.commit()
        other.execute("BEGIN IMMEDIATE")
        other.rollback()
    finally:
        other.close()
        engine.dispose()
