"""Messages for shoppers produced outside their own turn (a payment confirmed by a webhook).

Any part of Vitrine may queue one; each channel delivers them its own way: the web chat with
the shopper's next request or by polling, the terminal before its next prompt, Telegram and
WhatsApp by push (`bot.channels.push`). Every message is also delivered with the shopper's
next turn, whichever comes first; taking one is a conditional update, so it goes out once,
except that a push that dies after sending one and before saying so sends it again later
(`requeue_abandoned`): once too often rather than never.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, Column, Index, bindparam, exists, func, text, update
from sqlmodel import Field, Session, SQLModel, col, select

from core.db import utcnow


class Notification(SQLModel, table=True):
    """One message waiting for a shopper.

    `cards` are product cards in their public JSON shape. `template` and `template_params`
    name the pre-approved template a channel sends instead when it allows no free text at
    this moment (WhatsApp, 24 hours after the shopper last wrote); without one, the message
    waits there for the shopper's next turn.
    """

    __table_args__ = (
        # The pushes in flight, looked for every few seconds: few rows, never the history.
        Index("ix_notification_sending", "sending_until",
              sqlite_where=text("sending_until IS NOT NULL"),
              postgresql_where=text("sending_until IS NOT NULL")),
    )

    id: int | None = Field(default=None, primary_key=True)
    user_key: str = Field(index=True, max_length=200)
    text: str
    cards: list[dict] | None = Field(default=None, sa_column=Column(JSON))
    template: str | None = Field(default=None, max_length=64)
    template_params: list[str] | None = Field(default=None, sa_column=Column(JSON))
    # The request the cards answer (an intent as JSON), so a follow-up can refine it.
    request: dict | None = Field(default=None, sa_column=Column(JSON))
    created_at: datetime = Field(default_factory=utcnow)
    delivered_at: datetime | None = None
    # Set when a push channel is done with the message without delivering it: its template
    # went out (the message follows at the shopper's next turn) or none was allowed.
    held_at: datetime | None = None
    # Pushes that failed (the channel's API refused or was down); given up after a few,
    # each tried again no sooner than `not_before`.
    attempts: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    not_before: datetime | None = None
    # Taken by a push and not known to be sent yet (`delivered_at` is set too): a process
    # that died sending it left this, and past it the message is pending again
    # (`requeue_abandoned`). Cleared once the channel took it.
    sending_until: datetime | None = None


def notify(session: Session, *, user_key: str, text: str, cards: list[dict] | None = None,
           template: str | None = None, template_params: list[str] | None = None,
           request: dict | None = None) -> Notification:
    """Queue a message for a shopper in the caller's transaction."""
    note = Notification(user_key=user_key, text=text, cards=cards, template=template,
                        template_params=template_params, request=request)
    session.add(note)
    return note


def peek_pending(session: Session, *, user_key: str) -> list[Notification]:
    """The shopper's undelivered messages, oldest first, without taking them (`claim`)."""
    return list(session.execute(_PENDING, {"user": user_key}).scalars())


# The shopper `:user`'s undelivered messages.
_WAITING = (col(Notification.user_key) == bindparam("user"),
            col(Notification.delivered_at).is_(None))
# Whether anything waits for the shopper `:user`, for a query of the caller's (a turn reads
# it with the conversation and peeks only then).
HAS_PENDING = exists().where(*_WAITING)
# Built once: every turn peeks, and building the statement costs more than running it.
_PENDING = select(Notification).where(*_WAITING).order_by(col(Notification.id))


def claim(session: Session, notes: list[Notification], *,
          sending_until: datetime | None = None) -> list[Notification]:
    """Mark messages delivered, each by a conditional update; the ones this caller got.

    A push and the shopper's own turn racing for the same message deliver it once. On SQLite
    the update takes the database's write lock until commit: claim at the end of a turn.
    A push claims until `sending_until`, its lease, which also names its claim: unless it
    says by then that the message went out (`sent`) or gives it back, the message is
    pending again (`requeue_abandoned`). Any claim replaces an earlier push's lease (a
    message held while its template went out, which the shopper's turn delivers), so
    that push can no longer give back what was delivered since.
    """
    now = utcnow()
    taken = []
    for note in notes:
        claimed = session.connection().execute(
            update(Notification).where(col(Notification.id) == note.id,
                                       col(Notification.delivered_at).is_(None))
            .values(delivered_at=now, sending_until=sending_until)).rowcount
        if claimed:
            taken.append(note)
    for note in notes:  # written above or by someone else: never again from this session
        if note in session:
            session.expunge(note)
    return taken


def take_pending(session: Session, *, user_key: str,
                 sending_until: datetime | None = None) -> list[Notification]:
    """The shopper's undelivered messages, oldest first, marked delivered (for a push, under
    its lease: see `claim`)."""
    return claim(session, peek_pending(session, user_key=user_key),
                 sending_until=sending_until)


def hold(session: Session, note_id: int, *, sending_until: datetime | None = None) -> bool:
    """Take a message a push channel will not deliver now (past WhatsApp's window): held for
    the shopper's next turn, and under the push's lease while it sends the message's
    template (see `claim`). Whether this caller got it."""
    lease = {"sending_until": sending_until} if sending_until is not None else {}
    return bool(session.connection().execute(
        update(Notification).where(col(Notification.id) == note_id,
                                   col(Notification.delivered_at).is_(None),
                                   col(Notification.held_at).is_(None))
        .values(held_at=utcnow(), **lease)).rowcount)


def renew(session: Session, note_id: int, *, lease: datetime, until: datetime) -> bool:
    """Extend a push's lease on a message it still holds under `lease`; whether it did."""
    return bool(session.connection().execute(
        update(Notification).where(col(Notification.id) == note_id, _under(lease))
        .values(sending_until=until)).rowcount)


def _under(lease: datetime) -> Any:
    """Still taken under this lease: not run out and taken again by another."""
    return col(Notification.sending_until) == lease


def sent(session: Session, ids: list[int], *, lease: datetime, delivered: bool = True
         ) -> None:
    """Messages a push took under `lease` that went out: done with for good. `delivered`:
    the message itself went out, not only a template announcing it (held for the shopper's
    next turn). Nothing for one the lease no longer holds."""
    if ids:
        done = {"delivered_at": func.coalesce(col(Notification.delivered_at), utcnow())} \
            if delivered else {}
        session.connection().execute(
            update(Notification).where(col(Notification.id).in_(ids), _under(lease))
            .values(sending_until=None, **done))


def _pending_again(**values: Any) -> dict[str, Any]:
    """The values that make a taken message pending again, one attempt more."""
    return {"delivered_at": None, "held_at": None, "sending_until": None,
            "attempts": func.coalesce(col(Notification.attempts), 0) + 1, **values}


def give_back(session: Session, ids: list[int], *, lease: datetime,
              retry_in: timedelta) -> None:
    """Messages taken for a push under `lease` that could not be sent: pending again after
    `retry_in`, one attempt more. Nothing for one the lease no longer holds: whoever took
    it since has it."""
    if ids:
        session.connection().execute(
            update(Notification).where(col(Notification.id).in_(ids), _under(lease))
            .values(**_pending_again(not_before=utcnow() + retry_in)))


def requeue_abandoned(session: Session, *, now: datetime) -> int:
    """Messages a push took and never said were sent, by `now` past their lease: the process
    sending them died (killed, its machine lost). Pending again, one attempt more, so the
    next push, or the shopper's next turn, delivers them; how many. A push that did send
    one before dying sends it twice: once too often rather than never. Looked for first, so
    that a run with nothing to put back writes nothing (on SQLite, takes no write lock)."""
    expired = col(Notification.sending_until) < now
    ids = list(session.connection().execute(
        select(col(Notification.id)).where(expired)).scalars())
    if not ids:
        return 0
    return int(session.connection().execute(
        update(Notification).where(col(Notification.id).in_(ids), expired)
        .values(**_pending_again())).rowcount)
