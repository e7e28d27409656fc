"""Withdrawal from a distance sale: the shopper's cancel button ("botón de arrepentimiento").

The law of each market gives a window after delivery (Argentina 10 days, Colombia 5
business days, Brazil 7 days, the EU 14 days; see `core/markets.json`). Until the merchant
reports the delivery, the window has not started, so the button works. Withdrawing an order
not paid yet cancels it; a paid one asks its rail for a refund, or, where the rail cannot
send money back (a static Pix code, cash), leaves the refund to the merchant, who reports it
(`POST /api/orders/{id}/refunded`).

Days end at midnight in the market's time zone. Business days skip weekends and the
country's public holidays (the `holidays` calendar); in the EU a window ending on a day off
runs to the next working day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays
from sqlmodel import Session

from checkout.models import Order, OrderStatus
from checkout.orders import move
from checkout.rails import PaymentRail, RefundOutcome, RefundResult
from checkout.service import record_order_event
from core.db import as_utc, utcnow
from core.errors import PaymentProviderError
from core.markets import Market
from core.turns import waiting
from ops.events import EventKind

# Orders the shopper may still withdraw from, while the window is open.
WITHDRAWABLE = frozenset({OrderStatus.AWAITING_PAYMENT, OrderStatus.FAILED,
                          OrderStatus.PENDING_COLLECTION, OrderStatus.PAID})


class WithdrawalOutcome(StrEnum):
    CANCELED = "canceled"  # nothing was paid: the order is simply off
    REFUND_REQUESTED = "refund_requested"  # the rail's provider is sending the money back
    REFUND_BY_MERCHANT = "refund_by_merchant"  # the merchant sends it back by other means
    WINDOW_CLOSED = "window_closed"
    NO_RIGHT = "no_right"  # the market's law gives no withdrawal window (returns are the shop's)
    NOT_WITHDRAWABLE = "not_withdrawable"  # canceled, refunded or never confirmed
    PROVIDER_DOWN = "provider_down"  # the refund could not be asked for now: try again


@dataclass(frozen=True)
class Withdrawal:
    outcome: WithdrawalOutcome
    order: Order
    deadline: datetime | None = None
    stopped: bool = False  # the provider will take no money for the canceled payment


def deadline(order: Order, market: Market) -> datetime | None:
    """When the right to withdraw ends: None while the order is not delivered (the window
    has not started) or where the market's law gives none (then see `has_right`)."""
    if order.delivered_at is None or not market.withdrawal_days:
        return None
    return add_days(as_utc(order.delivered_at), market.withdrawal_days,
                    business=market.withdrawal_business_days, zone=ZoneInfo(market.timezone),
                    country=market.code, to_working_day=market.withdrawal_to_working_day)


def add_days(start: datetime, days: int, *, business: bool, zone: ZoneInfo | None = None,
             country: str | None = None, to_working_day: bool = False) -> datetime:
    """The end of the `days`-th day after `start`, counted in the market's time zone: its
    last second there, as an aware datetime.

    Business days skip weekends and the country's public holidays; with `to_working_day`
    (the EU's rule for periods, Regulation 1182/71), a window whose last day is not a
    working day runs to the end of the next one."""
    local = start.astimezone(zone) if zone is not None else start
    day = local.date()
    closed = _public_holidays(country, day.year) | _public_holidays(country, day.year + 1) \
        if country else frozenset()

    def working(d: date) -> bool:
        return d.weekday() < 5 and d not in closed

    left = days
    while left > 0:
        day += timedelta(days=1)
        if not business or working(day):
            left -= 1
    while to_working_day and not working(day):
        day += timedelta(days=1)
    return datetime.combine(day, time(23, 59, 59), tzinfo=local.tzinfo)


# Markets spanning several countries, and the calendar of days off they share: the EU's
# member states all close on the days the euro's payment system (TARGET) does.
SHARED_CALENDARS = {"EU": "XECB"}


@lru_cache(maxsize=64)
def _public_holidays(country: str, year: int) -> frozenset[date]:
    if country in SHARED_CALENDARS:
        return frozenset(holidays.financial_holidays(SHARED_CALENDARS[country], years=year))
    try:
        return frozenset(holidays.country_holidays(country, years=year))
    except NotImplementedError:  # a country the calendar does not know: weekends only
        return frozenset()


def can_withdraw(order: Order, market: Market, now: datetime | None = None) -> bool:
    if not market.withdrawal_days or order.status not in WITHDRAWABLE:
        return False
    ends = deadline(order, market)
    return ends is None or (now or utcnow()) <= as_utc(ends)


def withdraw(*, session: Session, order: Order, market: Market, rail: PaymentRail | None,
             now: datetime | None = None) -> Withdrawal:
    """The shopper pressed the cancel button on an order (`rail`: the order's, None when
    it is no longer configured here; then the merchant refunds)."""
    ends = deadline(order, market)
    if order.status not in WITHDRAWABLE:
        return Withdrawal(WithdrawalOutcome.NOT_WITHDRAWABLE, order, ends)
    if not market.withdrawal_days:
        return Withdrawal(WithdrawalOutcome.NO_RIGHT, order)
    if ends is not None and (now or utcnow()) > as_utc(ends):
        return Withdrawal(WithdrawalOutcome.WINDOW_CLOSED, order, ends)
    if order.status != OrderStatus.PAID:
        stopped = False
        if order.status in (OrderStatus.AWAITING_PAYMENT, OrderStatus.FAILED) and \
                rail is not None:
            # Its page, voucher or charge can no longer be paid, where the provider allows;
            # a static code cannot be stopped, and money that still arrives is refunded.
            try:
                with waiting():  # the provider's API: other turns work meanwhile
                    stopped = rail.cancel(order)
            except PaymentProviderError:
                # Unreachable, or paid a moment ago: nothing changes until the provider says.
                return Withdrawal(WithdrawalOutcome.PROVIDER_DOWN, order, ends)
        note = "withdrawal; payment stopped at the provider" if stopped else "withdrawal"
        if not move(session, order, OrderStatus.CANCELED, actor="shopper", note=note):
            return Withdrawal(WithdrawalOutcome.NOT_WITHDRAWABLE, order, ends)
        record_order_event(session, EventKind.CHECKOUT_CANCELED, order)
        return Withdrawal(WithdrawalOutcome.CANCELED, order, ends, stopped=stopped)
    try:
        if rail is None:
            refund = RefundResult(RefundOutcome.NOT_SUPPORTED)
        else:
            with waiting():  # the provider's API
                refund = rail.refund(order)
    except PaymentProviderError:
        return Withdrawal(WithdrawalOutcome.PROVIDER_DOWN, order, ends)
    by_rail = refund.outcome == RefundOutcome.REFUNDED
    note = f"withdrawal; refund {refund.provider_ref}" if by_rail and refund.provider_ref \
        else "withdrawal"
    if not move(session, order, OrderStatus.REFUND_PENDING, actor="shopper", note=note):
        return Withdrawal(WithdrawalOutcome.NOT_WITHDRAWABLE, order, ends)
    return Withdrawal(WithdrawalOutcome.REFUND_REQUESTED if by_rail
                      else WithdrawalOutcome.REFUND_BY_MERCHANT, order, ends)

