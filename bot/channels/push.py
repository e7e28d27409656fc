"""Queued messages pushed to the channels that can speak first: Telegram and WhatsApp.

A payment confirmed by a provider's webhook, a refund, a gift reminder: each is queued in the
outbox (`core.outbox`) for one shopper. The web chat collects them itself; for a shopper on
Telegram or WhatsApp, `push_pending` sends them as soon as they are queued (`vitrine serve`
runs it every few seconds, `vitrine notifications push` once).

WhatsApp allows free text only within 24 hours of the shopper's last message. Past that,
a message that names a pre-approved template is announced by it, and the message itself
(the reminder's cards) follows with the shopper's next turn; a message without a template
simply waits for that turn. A send that fails is tried again on later runs, a few times.
A process killed while sending (SIGKILL, a lost machine) leaves the messages it took marked
as being sent; after `SENDING_LEASE` they are pending again, so none is lost, and one it
did send before dying goes out twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Protocol, runtime_checkable

from sqlalchemy import func, or_
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bot.conversation import Assistant
from bot.models import Conversation
from bot.replies import Message
from core.db import as_utc, session_scope, utcnow
from core.markets import get_market
from core.outbox import Notification, give_back, hold, renew, requeue_abandoned, sent

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 5
FIRST_RETRY = timedelta(seconds=30)
BATCH = 200  # shoppers per run
# How long a push may take to send a shopper's messages before they count as abandoned (its
# process died) and are pending again. Far longer than a live one takes: a message is a few
# API calls (its text, a photo per card), each tried three times with 15 s timeouts and at
# most 10 s of Telegram's flood control between tries, and a shopper rarely has more than a
# few waiting. Each message's outcome is written as soon as it is known, and only while
# the lease is the push's own: one that outlived it changes nothing.
SENDING_LEASE = timedelta(minutes=15)


class PushChannel(Protocol):
    """A channel that can message a shopper who did not just write."""

    @property
    def prefix(self) -> str:
        """The start of its shoppers' keys ("tg:", "wa:")."""
        ...

    def push(self, user_key: str, message: Message, *, locale: str) -> bool:
        """Send one message; whether any of it went out."""
        ...


@runtime_checkable
class WindowedChannel(PushChannel, Protocol):
    """A channel that allows free text only for a while after the shopper last wrote, and
    pre-approved templates at any time."""

    @property
    def window(self) -> timedelta:
        ...

    def push_template(self, user_key: str, *, name: str, params: list[str], language: str,
                      with_button: bool) -> bool:
        """Send a template; whether it went out. `with_button`: the template has a button
        that brings up what waits (the reminder's cards)."""
        ...


@dataclass
class PushReport:
    sent: int = 0  # messages delivered whole
    announced: int = 0  # templates sent for messages that wait for the shopper
    held: int = 0  # messages left for the shopper's next turn, no template allowed
    failed: int = 0  # sends that failed, to be tried again
    shoppers: set[str] = field(default_factory=set)

    def as_dict(self) -> dict[str, int]:
        return {"sent": self.sent, "announced": self.announced, "held": self.held,
                "failed": self.failed, "shoppers": len(self.shoppers)}


def retry_in(attempts: int) -> timedelta:
    """How long a message waits after its `attempts`-th failed push: 30 s, doubling, so the
    tries span a quarter of an hour (a chat app's flood control asks for up to minutes)."""
    return FIRST_RETRY * 2 ** max(0, attempts - 1)


def waiting_shoppers(engine: Engine, prefixes: list[str], *, now: datetime,
                     limit: int = BATCH) -> list[str]:
    """Shoppers on these channels with a message to push now, oldest message first."""
    if not prefixes:
        return []
    with Session(engine) as session:
        rows = session.exec(
            select(Notification.user_key, col(Notification.id))
            .where(col(Notification.delivered_at).is_(None),
                   col(Notification.held_at).is_(None),
                   func.coalesce(col(Notification.attempts), 0) < MAX_ATTEMPTS,
                   or_(col(Notification.not_before).is_(None),
                       col(Notification.not_before) <= now),
                   or_(*(col(Notification.user_key).startswith(p) for p in prefixes)))
            .order_by(col(Notification.id)).limit(limit * 4)).all()
    seen: dict[str, None] = {}
    for user_key, _ in rows:
        seen.setdefault(user_key)
    return list(seen)[:limit]


def push_pending(engine: Engine, assistant: Assistant, channels: list[PushChannel], *,
                 now: datetime | None = None, limit: int = BATCH,
                 stopping: Callable[[], bool] = lambda: False) -> PushReport:
    """Push what waits for shoppers on these channels; safe to run from several processes
    at once (each message is claimed before it is sent). `stopping` is asked between
    shoppers: a shutdown ends the run there."""
    report = PushReport()
    by_prefix = {c.prefix: c for c in channels}
    moment = now or utcnow()
    _requeue_abandoned(engine, moment)
    for user_key in waiting_shoppers(engine, list(by_prefix), now=moment, limit=limit):
        if stopping():
            break
        channel = by_prefix[user_key.split(":", 1)[0] + ":"]
        report.shoppers.add(user_key)
        with Session(engine) as session:
            conv = session.get(Conversation, user_key)
        if conv is None:  # forgotten meanwhile: nobody to talk to
            continue
        if isinstance(channel, WindowedChannel) and \
                moment - as_utc(conv.updated_at) > channel.window:
            _announce(engine, channel, conv, report)
            continue
        locale = get_market(conv.market).locale
        taken_until = utcnow() + SENDING_LEASE
        for note, message in assistant.take_queued(user_key=user_key,
                                                   sending_until=taken_until):
            lease = _still_held(engine, note, taken_until)
            if lease is None:
                continue  # its lease ran out meanwhile and it was taken again
            went_out = _sent(partial(channel.push, user_key, message, locale=locale), user_key)
            if went_out:
                report.sent += 1
            else:
                report.failed += 1
            _record(engine, note, lease, went_out=went_out)
    return report


def _still_held(engine: Engine, note: Notification, lease: datetime) -> datetime | None:
    """The lease to send `note` under: `lease` while less than half of it has gone, else a
    new one, so that slow sends before it (a channel's retries and flood control) cannot
    make it run out mid-send. None when it already ran out and someone took the message."""
    if utcnow() < lease - SENDING_LEASE / 2:
        return lease
    until = utcnow() + SENDING_LEASE
    with session_scope(engine) as session:
        return until if renew(session, note.id or 0, lease=lease, until=until) else None


def _requeue_abandoned(engine: Engine, now: datetime) -> None:
    """Put back what pushes that died took (`requeue_abandoned`); a failure here leaves it
    for the next run and does not stop this one."""
    try:
        with session_scope(engine) as session:
            abandoned = requeue_abandoned(session, now=now)
    except Exception:
        log.exception("could not look for messages abandoned by a push")
        return
    if abandoned:
        log.warning("%d queued messages taken by a push that never sent them are pending "
                    "again", abandoned)


def _sent(send: Callable[[], bool], user_key: str) -> bool:
    """Whether a push went out; anything it raised counts as a failed send, to try again."""
    try:
        return send()
    except Exception:
        log.exception("push to %s failed", user_key.split(":", 1)[0])
        return False


def _record(engine: Engine, note: Notification, lease: datetime, *, went_out: bool,
            delivered: bool = True) -> None:
    """What became of a message the push took under `lease`, written as soon as it is known:
    sent (`delivered`: the message itself, not only its template), or queued again after a
    while. Unwritten (the database failing now), the lease settles it: the message is
    pending again once it runs out, and goes out again if it had gone."""
    try:
        with session_scope(engine) as session:
            if went_out:
                sent(session, [note.id or 0], lease=lease, delivered=delivered)
            else:
                give_back(session, [note.id or 0], lease=lease,
                          retry_in=retry_in((note.attempts or 0) + 1))
    except Exception:
        log.exception("could not record a push's outcome; its lease will settle it")


def _announce(engine: Engine, channel: WindowedChannel, conv: Conversation,
              report: PushReport) -> None:
    """Outside the channel's window: each message's template, or nothing until the shopper
    writes. A message is claimed (held) before its template is sent."""
    with Session(engine) as session:
        notes = session.exec(select(Notification).where(
            Notification.user_key == conv.user_key, col(Notification.delivered_at).is_(None),
            col(Notification.held_at).is_(None)).order_by(col(Notification.id))).all()
    for note in notes:
        # Under a lease only while its template is sent: one without stays held, no push
        # in flight.
        lease = utcnow() + SENDING_LEASE if note.template else None
        with session_scope(engine) as session:
            claimed = hold(session, note.id or 0, sending_until=lease)
        if not claimed:
            continue
        if not note.template or lease is None:
            report.held += 1
            continue
        went_out = _sent(partial(
            channel.push_template, conv.user_key, name=note.template,
            params=list(note.template_params or []), language=conv.language,
            with_button=bool(note.cards)), conv.user_key)
        if not went_out:
            report.failed += 1
        elif note.cards:
            report.announced += 1  # the cards come with the shopper's answer
        else:
            report.sent += 1  # the template said it all
        _record(engine, note, lease, went_out=went_out, delivered=not note.cards)
