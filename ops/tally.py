"""One tally behind every report: event counts, sums and positions over a range, grouped by
day, channel, market, merchant or placement.

Days that ended more than `GRACE` ago are rolled up once into `EventDay` (one row per day,
kind, channel, market, merchant, placement, currency and parser, holding counts and sums), and
a report reads those rows for the whole days in its range and the events themselves only for
the rest. Both sources go through the same query, so a report's numbers do not depend on
which days were rolled up. Events are appended at the time they happen and never changed
(`/forget` only erases stored words), so a closed day's rollup stays true.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Index, and_, case, func, literal, or_
from sqlalchemy import select as table_select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, col, select

from core.db import as_utc, utcnow
from ops.events import ConversionEvent, EventKind

# A day is rolled up this long after it ended: an event stamped just before midnight may be
# committed a little after.
GRACE = timedelta(hours=1)
DIMENSIONS = ("day", "channel", "market", "merchant", "sponsored")
SHOWN = EventKind.CARDS_SHOWN.value


class EventDay(SQLModel, table=True):
    """A closed day's events, counted per kind and the dimensions reports group by."""

    __table_args__ = (Index("ix_eventday_day_kind", "day", "kind"),)

    id: int | None = Field(default=None, primary_key=True)
    day: date = Field(index=True)
    kind: str = Field(max_length=30)
    channel: str = Field(max_length=20)
    market: str | None = Field(default=None, max_length=2)
    merchant: str | None = Field(default=None, max_length=64)
    sponsored: bool = False
    currency: str | None = Field(default=None, max_length=3)
    parser: str | None = Field(default=None, max_length=10)
    events: int = 0
    first: int = 0  # cards shown in first position: a recommendation
    positioned: int = 0  # cards shown with a position (the rest: requests that found nothing)
    position_sum: int = 0
    amount: int = 0
    tokens_in: int = 0
    tokens_out: int = 0


class RolledUpDay(SQLModel, table=True):
    """A day whose events are in `EventDay`."""

    day: date = Field(primary_key=True)
    rolled_at: datetime = Field(default_factory=utcnow)


@dataclass(frozen=True)
class Filters:
    """What a report covers: a time range (from inclusive, to exclusive) and optionally one
    channel, market and merchant."""

    since: datetime | None = None
    until: datetime | None = None
    channel: str | None = None
    market: str | None = None
    merchant: str | None = None

    def where(self, *, merchant: bool = True) -> list[ColumnElement[bool]]:
        """The filters as conditions on the events themselves."""
        conditions: list[ColumnElement[bool]] = []
        if self.since is not None:
            conditions.append(col(ConversionEvent.created_at) >= self.since)
        if self.until is not None:
            conditions.append(col(ConversionEvent.created_at) < self.until)
        if self.channel:
            conditions.append(col(ConversionEvent.channel) == self.channel)
        if self.market:
            conditions.append(col(ConversionEvent.market) == self.market.upper())
        if merchant and self.merchant:
            conditions.append(col(ConversionEvent.merchant) == self.merchant)
        return conditions


@dataclass
class Tally:
    """Counts and sums for one group."""

    kinds: dict[str, int] = field(default_factory=dict)
    recommendations: int = 0
    no_results: int = 0
    impressions: int = 0  # cards shown from a merchant
    position_sum: int = 0
    revenue: dict[str, int] = field(default_factory=dict)
    tokens_in: int = 0
    tokens_out: int = 0
    understood_by_llm: int = 0

    def count(self, kind: EventKind) -> int:
        return self.kinds.get(kind.value, 0)

    @property
    def mean_position(self) -> float | None:
        return round(self.position_sum / self.impressions, 2) if self.impressions else None


@dataclass(frozen=True)
class _Source:
    """The columns a tally reads, from the events or from their daily rollup."""

    day: Any
    kind: Any
    channel: Any
    market: Any
    merchant: Any
    sponsored: Any
    currency: Any
    parser: Any
    events: Any
    first: Any
    positioned: Any
    position_sum: Any
    amount: Any
    tokens_in: Any
    tokens_out: Any
    created_at: Any = None


_E = ConversionEvent
RAW = _Source(
    day=func.date(_E.created_at), kind=col(_E.kind), channel=col(_E.channel),
    market=col(_E.market), merchant=col(_E.merchant),
    sponsored=func.coalesce(_E.sponsored, False), currency=col(_E.currency),
    parser=col(_E.parser), events=literal(1),
    first=case((and_(col(_E.kind) == SHOWN, col(_E.position) == 1), 1), else_=0),
    positioned=case((col(_E.position).is_not(None), 1), else_=0),
    position_sum=func.coalesce(_E.position, 0), amount=func.coalesce(_E.amount, 0),
    tokens_in=func.coalesce(_E.tokens_in, 0), tokens_out=func.coalesce(_E.tokens_out, 0),
    created_at=col(_E.created_at))
_D = EventDay
ROLLED = _Source(
    day=col(_D.day), kind=col(_D.kind), channel=col(_D.channel), market=col(_D.market),
    merchant=col(_D.merchant), sponsored=col(_D.sponsored), currency=col(_D.currency),
    parser=col(_D.parser), events=col(_D.events), first=col(_D.first),
    positioned=col(_D.positioned), position_sum=col(_D.position_sum), amount=col(_D.amount),
    tokens_in=col(_D.tokens_in), tokens_out=col(_D.tokens_out))


def _conditions(source: _Source, scope: Filters, days: tuple[date, date] | None,
                moments: list[tuple[datetime | None, datetime | None]] | None
                ) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if days is not None:
        where += [source.day >= days[0], source.day < days[1]]
    if moments is not None:
        spans = []
        for start, end in moments:
            parts = []
            if start is not None:
                parts.append(source.created_at >= start)
            if end is not None:
                parts.append(source.created_at < end)
            spans.append(and_(*parts) if parts else literal(True))
        where.append(or_(*spans) if spans else literal(False))
    if scope.channel:
        where.append(source.channel == scope.channel)
    if scope.market:
        where.append(source.market == scope.market.upper())
    if scope.merchant:
        where.append(source.merchant == scope.merchant)
    return where


def _rows(session: Session, source: _Source, where: list[ColumnElement[bool]],
          group: tuple[str, ...]) -> Iterable[Any]:
    keys = [getattr(source, name) for name in group]
    has_merchant = case((source.merchant.is_not(None), source.events), else_=0)
    statement = (
        table_select(*keys, source.kind, source.currency,
                     func.sum(source.events), func.sum(source.first),
                     func.sum(source.positioned),
                     func.sum(case((source.kind == SHOWN, has_merchant), else_=0)),
                     func.sum(case((and_(source.kind == SHOWN, source.merchant.is_not(None)),
                                    source.position_sum), else_=0)),
                     func.sum(source.amount), func.sum(source.tokens_in),
                     func.sum(source.tokens_out),
                     func.sum(case((source.parser == "llm", source.events), else_=0)))
        .where(*where).group_by(*keys, source.kind, source.currency))
    return session.execute(statement).all()


def _add(into: dict[tuple, Tally], rows: Iterable[Any], width: int) -> None:
    for row in rows:
        key = tuple(_key(v) for v in row[:width])
        (kind, currency, events, first, positioned, impressions, position_sum, amount,
         tokens_in, tokens_out, by_llm) = row[width:]
        tally = into.setdefault(key, Tally())
        tally.kinds[kind] = tally.kinds.get(kind, 0) + int(events or 0)
        if kind == SHOWN:
            tally.recommendations += int(first or 0)
            tally.no_results += int(events or 0) - int(positioned or 0)
            tally.impressions += int(impressions or 0)
            tally.position_sum += int(position_sum or 0)
        if kind == EventKind.ORDER_PAID.value and currency:
            tally.revenue[currency] = tally.revenue.get(currency, 0) + int(amount or 0)
        if kind in (EventKind.INTENT_UNDERSTOOD.value, EventKind.MESSAGE_RECEIVED.value):
            tally.tokens_in += int(tokens_in or 0)
            tally.tokens_out += int(tokens_out or 0)
        if kind == EventKind.INTENT_UNDERSTOOD.value:
            tally.understood_by_llm += int(by_llm or 0)


def _key(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


def tally(session: Session, scope: Filters, group: tuple[str, ...] = ()) -> dict[tuple, Tally]:
    """Counts and sums per group (values of `group`'s dimensions, in order)."""
    unknown = set(group) - set(DIMENSIONS)
    if unknown:
        raise ValueError(f"cannot group by {sorted(unknown)}")
    # Days are UTC days: a range given in another zone is compared in UTC.
    scope = replace(scope, since=scope.since and as_utc(scope.since).astimezone(UTC),
                    until=scope.until and as_utc(scope.until).astimezone(UTC))
    whole = _whole_days(session, scope)
    result: dict[tuple, Tally] = {}
    if whole is not None:
        first_day, end_day = whole
        _add(result, _rows(session, ROLLED, _conditions(ROLLED, scope, whole, None), group),
             len(group))
        start = datetime.combine(first_day, time(), tzinfo=UTC)
        end = datetime.combine(end_day, time(), tzinfo=UTC)
        edges = [(scope.since, start), (end, scope.until)]
        edges = [(a, b) for a, b in edges if a is None or b is None or a < b]
        _add(result, _rows(session, RAW, _conditions(RAW, scope, None, edges), group),
             len(group))
    else:
        _add(result, _rows(session, RAW, _conditions(RAW, scope, None, [
            (scope.since, scope.until)]), group), len(group))
    return result


def total(session: Session, scope: Filters) -> Tally:
    return tally(session, scope).get((), Tally())


def _whole_days(session: Session, scope: Filters) -> tuple[date, date] | None:
    """The longest run of rolled-up days inside the range, as [first, end)."""
    start = scope.since.date() if scope.since else None
    if scope.since is not None and scope.since.timetz() != time(tzinfo=scope.since.tzinfo):
        start = scope.since.date() + timedelta(days=1)
    end = scope.until.date() if scope.until else None
    query = select(func.min(RolledUpDay.day), func.max(RolledUpDay.day))
    if start is not None:
        query = query.where(col(RolledUpDay.day) >= start)
    if end is not None:
        query = query.where(col(RolledUpDay.day) < end)
    low, high = session.exec(query).one()
    if low is None or high is None:
        return None
    # Days are rolled up oldest first, without holes: min..max is a run.
    return low, high + timedelta(days=1)


def roll_up(engine: Engine, *, now: datetime | None = None, limit_days: int = 400) -> int:
    """Roll up every closed day not rolled up yet, oldest first; how many were. Each day in
    its own transaction; safe to run from several processes at once."""
    moment = as_utc(now or utcnow())
    last_closed = (moment - GRACE).date() - timedelta(days=1)
    with Session(engine) as session:
        done_until = session.exec(select(func.max(RolledUpDay.day))).one()
        first_event = session.exec(select(func.min(ConversionEvent.created_at))).one()
    if first_event is None:
        return 0
    day = done_until + timedelta(days=1) if done_until else as_utc(first_event).date()
    rolled = 0
    while day <= last_closed and rolled < limit_days:
        if _roll_day(engine, day):
            rolled += 1
        day += timedelta(days=1)
    return rolled


def _roll_day(engine: Engine, day: date) -> bool:
    start = datetime.combine(day, time(), tzinfo=UTC)
    end = start + timedelta(days=1)
    source = RAW
    keys = [source.kind, source.channel, source.market, source.merchant, source.sponsored,
            source.currency, source.parser]
    try:
        with Session(engine) as session:
            session.add(RolledUpDay(day=day))
            session.flush()  # claims the day: a second roller stops here
            rows = session.execute(
                table_select(*keys, func.sum(source.events), func.sum(source.first),
                             func.sum(source.positioned),
                             func.sum(case((source.kind == SHOWN, source.position_sum),
                                           else_=0)),
                             func.sum(source.amount), func.sum(source.tokens_in),
                             func.sum(source.tokens_out))
                .where(source.created_at >= start, source.created_at < end)
                .group_by(*keys)).all()
            session.add_all(EventDay(
                day=day, kind=kind, channel=channel, market=market, merchant=merchant,
                sponsored=bool(sponsored), currency=currency, parser=parser,
                events=int(events or 0), first=int(first or 0),
                positioned=int(positioned or 0), position_sum=int(position_sum or 0),
                amount=int(amount or 0), tokens_in=int(tokens_in or 0),
                tokens_out=int(tokens_out or 0))
                for (kind, channel, market, merchant, sponsored, currency, parser, events,
                     first, positioned, position_sum, amount, tokens_in, tokens_out) in rows)
            session.commit()
    except IntegrityError:
        return False  # another process rolled it up
    return True
