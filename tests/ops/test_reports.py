"""Reports over the conversion log, checked against events made here with known numbers."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import func
from sqlmodel import Session, select

from ops.events import ConversionEvent, EventKind
from ops.funnel import funnel
from ops.reports import (
    Filters,
    catalog_gaps,
    cost_per_sale,
    events_csv,
    funnel_by,
    merchant_visibility,
    rows_csv,
    sponsored_vs_organic,
)
from ops.tally import EventDay, RolledUpDay, roll_up

DAY1 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
DAY2 = DAY1 + timedelta(days=1)


def _event(kind: EventKind, at: datetime = DAY1, **fields) -> ConversionEvent:
    fields.setdefault("channel", "web")
    fields.setdefault("market", "BR")
    return ConversionEvent(kind=kind.value, created_at=at, **fields)


def _shopper(session: Session, user: str, at: datetime, *, channel: str = "web",
             market: str = "BR", merchant: str = "jardim", sponsored: bool = False,
             clicked: bool = False, paid: int | None = None, tokens: int = 0) -> None:
    """One shopper's path: a message, three cards (the first from `merchant`), maybe a
    click, a checkout and a payment of `paid`."""
    common = dict(channel=channel, market=market, user_hash=user)
    session.add(_event(EventKind.MESSAGE_RECEIVED, at, **common))
    session.add(_event(EventKind.INTENT_UNDERSTOOD, at, parser="llm" if tokens else "rules",
                       tokens_in=tokens, tokens_out=tokens // 10, **common))
    for position, who in ((1, merchant), (2, "casa"), (3, "casa")):
        session.add(_event(EventKind.CARDS_SHOWN, at, merchant=who, position=position,
                           sponsored=sponsored and position == 1, amount=5000,
                           currency="BRL", **common))
    if clicked:
        session.add(_event(EventKind.CARD_CLICKED, at, merchant=merchant,
                           sponsored=sponsored, **common))
        session.add(_event(EventKind.CHECKOUT_STARTED, at, merchant=merchant,
                           sponsored=sponsored, amount=paid or 5000, currency="BRL",
                           **common))
    if paid:
        session.add(_event(EventKind.ORDER_PAID, at, merchant=merchant, sponsored=sponsored,
                           amount=paid, currency="BRL", **common))


@pytest.fixture
def log(runtime):
    with Session(runtime.engine) as session:
        _shopper(session, "u1", DAY1, clicked=True, paid=8990, tokens=1000)
        _shopper(session, "u2", DAY1, channel="tg", sponsored=True, clicked=True)
        _shopper(session, "u3", DAY2, channel="wa", market="AR", merchant="sur")
        _shopper(session, "u4", DAY2, channel="tg", sponsored=True, clicked=True, paid=4500)
        for user, text in (("u5", "h-yacht"), ("u6", "h-yacht"), ("u5", "h-piano")):
            session.add(_event(EventKind.MESSAGE_RECEIVED, DAY2, user_hash=user))
            session.add(_event(EventKind.CARDS_SHOWN, DAY2, user_hash=user, text_hash=text,
                               understood="for:mother" if text == "h-piano" else None))
        session.commit()
        yield session


def test_the_funnel_by_day_counts_each_stage_and_rate(log):
    day1, day2 = funnel_by(log, Filters(), "day")
    assert (day1.key, day1.messages, day1.recommendations, day1.clicks, day1.checkouts,
            day1.paid) == ("2026-11-02", 2, 2, 2, 2, 1)
    assert day1.revenue == {"BRL": 8990} and day1.rates["checkouts_to_paid"] == 0.5
    assert (day2.messages, day2.recommendations, day2.clicks, day2.paid) == (5, 2, 1, 1)
    assert day2.rates["messages_to_recommendations"] == 0.4


def test_the_funnel_by_channel_market_and_merchant(log):
    channels = {r.key: r for r in funnel_by(log, Filters(), "channel")}
    assert {k: (r.messages, r.paid) for k, r in channels.items()} == \
        {"tg": (2, 1), "wa": (1, 0), "web": (4, 1)}
    markets = {r.key: r.messages for r in funnel_by(log, Filters(), "market")}
    assert markets == {"AR": 1, "BR": 6}
    merchants = {r.key: r for r in funnel_by(log, Filters(), "merchant")}
    assert merchants["jardim"].messages is None  # a message is no merchant's
    assert (merchants["jardim"].recommendations, merchants["jardim"].clicks,
            merchants["jardim"].paid, merchants["jardim"].revenue) == (3, 3, 2, {"BRL": 13490})
    assert merchants["casa"].recommendations == 0  # never first


def test_filters_narrow_every_report(log):
    only_tg_day2 = Filters(since=DAY2 - timedelta(hours=1), channel="tg")
    [row] = funnel_by(log, only_tg_day2, "day")
    assert (row.key, row.messages, row.paid) == ("2026-11-03", 1, 1)
    [jardim] = merchant_visibility(log, Filters(merchant="jardim"))
    assert jardim.merchant == "jardim" and jardim.impressions == 3
    assert funnel_by(log, Filters(until=DAY1), "day") == []


def test_merchant_visibility_has_impressions_position_clicks_sales_and_revenue(log):
    rows = {r.merchant: r for r in merchant_visibility(log, Filters())}
    casa, jardim, sur = rows["casa"], rows["jardim"], rows["sur"]
    assert (casa.impressions, casa.mean_position, casa.clicks, casa.click_rate) == \
        (8, 2.5, 0, 0.0)
    assert (jardim.impressions, jardim.mean_position, jardim.clicks, jardim.checkouts,
            jardim.paid_orders, jardim.revenue) == (3, 1.0, 3, 3, 2, {"BRL": 13490})
    assert (sur.impressions, sur.clicks) == (1, 0)
    assert [r.merchant for r in merchant_visibility(log, Filters())] == \
        ["casa", "jardim", "sur"]


def test_sponsored_placements_are_compared_with_organic_ones(log):
    sponsored, organic = sponsored_vs_organic(log, Filters())
    assert (sponsored.placement, sponsored.impressions, sponsored.clicks,
            sponsored.paid_orders, sponsored.revenue) == ("sponsored", 2, 2, 1, {"BRL": 4500})
    assert (organic.impressions, organic.clicks, organic.paid_orders, organic.revenue) == \
        (10, 1, 1, {"BRL": 8990})
    assert sponsored.click_rate == 1.0 and organic.click_rate == 0.1


def test_catalog_gaps_group_alike_requests_most_asked_first(log):
    first, second = catalog_gaps(log, Filters())
    assert (first.requests, first.shoppers, first.text) == (2, 2, None)
    assert (second.requests, second.understood) == (1, "for:mother")


def test_the_cost_of_a_sale_adds_the_model_and_the_fixed_cost_per_day(log):
    cost = cost_per_sale(log, Filters(since=DAY1.replace(hour=0), until=DAY2 + timedelta(
        hours=14)), price_in=Decimal("2"), price_out=Decimal("10"),
        fixed_per_day=Decimal("5"), now=DAY2)
    # 1,000 tokens in at $2/M and 100 out at $10/M; two days at $5; two paid orders.
    assert (cost.paid_orders, cost.tokens_in, cost.tokens_out) == (2, 1000, 100)
    assert cost.llm_cost_usd == Decimal("0.003000") and cost.days == 2
    assert cost.fixed_cost_usd == Decimal("10.00")
    assert cost.cost_per_sale_usd == Decimal("5.001500")
    unpriced = cost_per_sale(log, Filters(), price_in=None, price_out=None, fixed_per_day=None,
                             now=DAY2)
    assert unpriced.total_cost_usd is None and unpriced.cost_per_sale_usd is None


def test_exports_are_csv_with_a_column_per_currency_and_no_formulas(log):
    rows = list(csv.DictReader(io.StringIO(rows_csv(merchant_visibility(log, Filters())))))
    assert rows[1]["merchant"] == "jardim" and rows[1]["revenue_BRL"] == "13490"
    log.add(_event(EventKind.CARD_CLICKED, DAY2, product_id="=HYPERLINK(\"x\")"))
    log.commit()
    lines = list(csv.DictReader(io.StringIO("".join(events_csv(log, Filters(), batch=7)))))
    assert len(lines) == 35 and lines[-1]["product_id"] == "'=HYPERLINK(\"x\")"
    assert "text" not in lines[0]


def test_rolled_up_days_give_the_same_numbers_as_the_events_themselves(log, runtime):
    ranges = [Filters(), Filters(since=DAY1 + timedelta(hours=3)),
              Filters(since=DAY1.replace(hour=0), until=DAY2 + timedelta(hours=1)),
              Filters(channel="tg"), Filters(merchant="jardim"), Filters(market="AR")]

    def everything():
        return [(funnel_by(log, f, "day"), funnel_by(log, f, "merchant"),
                 funnel_by(log, f, "channel"), merchant_visibility(log, f),
                 sponsored_vs_organic(log, f),
                 funnel(session=log, since=f.since, until=f.until, channel=f.channel,
                        market=f.market)) for f in ranges]

    before = everything()
    # Both days closed: rolled up once, a second run finds nothing to do.
    assert roll_up(runtime.engine, now=DAY2 + timedelta(days=1, hours=2)) == 2
    assert roll_up(runtime.engine, now=DAY2 + timedelta(days=1, hours=2)) == 0
    assert log.exec(select(func.count()).select_from(EventDay)).one() > 0
    assert everything() == before
    # An event arriving today is counted from the events, beside the rolled-up days.
    log.add(_event(EventKind.MESSAGE_RECEIVED, DAY2 + timedelta(days=1, hours=1)))
    log.commit()
    assert funnel(session=log).stages.messages == before[0][5].stages.messages + 1


def test_a_day_still_within_its_grace_period_is_not_rolled_up(log, runtime):
    # The 3rd ended at midnight: half an hour later, a late commit may still come.
    assert roll_up(runtime.engine, now=DAY2.replace(hour=0) + timedelta(days=1, minutes=30)) == 1
    assert log.exec(select(RolledUpDay.day)).all() == [DAY1.date()]


def test_a_range_given_in_another_time_zone_counts_the_same_before_and_after_roll_up(runtime):
    with Session(runtime.engine) as session:
        for hour in range(72):  # one message an hour over three UTC days
            session.add(_event(EventKind.MESSAGE_RECEIVED,
                               datetime(2026, 1, 10, tzinfo=UTC) + timedelta(hours=hour)))
        session.commit()
        sao_paulo = timezone(timedelta(hours=-3))
        ranges = [Filters(since=datetime(2026, 1, 11, tzinfo=sao_paulo),
                          until=datetime(2026, 1, 12, tzinfo=sao_paulo)),
                  Filters(since=datetime(2026, 1, 10, 20, tzinfo=timezone(timedelta(hours=-5)))),
                  Filters(until=datetime(2026, 1, 12, 2, tzinfo=timezone(timedelta(hours=5))))]
        before = [funnel(session=session, since=f.since, until=f.until).stages.messages
                  for f in ranges]
        assert before == [24, 47, 45]
        assert roll_up(runtime.engine, now=datetime(2026, 1, 14, tzinfo=UTC)) == 3
        assert [funnel(session=session, since=f.since, until=f.until).stages.messages
                for f in ranges] == before


def test_a_merchant_paid_today_for_a_card_clicked_yesterday_is_in_the_funnel_by_merchant(log):
    log.add(_event(EventKind.ORDER_PAID, DAY2 + timedelta(days=1), merchant="late-shop",
                   amount=100, currency="BRL"))
    log.commit()
    rows = {r.key: r for r in funnel_by(log, Filters(since=DAY2 + timedelta(days=1)),
                                        "merchant")}
    assert rows["late-shop"].paid == 1 and rows["late-shop"].recommendations == 0


def test_csv_cells_that_look_like_formulas_are_quoted_but_numbers_are_not():
    from ops.reports import _cell

    assert [_cell(v) for v in ("-2+3+cmd|' /C calc'!A0", "=1", "@x", "ok", -5, 2.5)] == \
        ["'-2+3+cmd|' /C calc'!A0", "'=1", "'@x", "ok", "-5", "2.5"]


def test_the_logs_pseudonyms_are_keyed_so_a_phone_number_cannot_be_tried_back():
    import hashlib

    from ops import events

    try:
        events.use_log_key("deployment-key-one")
        one = events.log_pseudonym("wa:5511987654321")
        events.use_log_key("deployment-key-two")
        two = events.log_pseudonym("wa:5511987654321")
    finally:
        events.use_log_key("vitrine-log-pseudonyms:" + "test")
    plain = hashlib.sha256(b"wa:5511987654321").hexdigest()[:32]
    assert one != two and plain not in (one, two) and len(one) == 32
