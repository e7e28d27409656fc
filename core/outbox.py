"""Messages for shoppers produced outside their own turn (a payment confirmed by a webhook).

Any part of Vitrine may queue one; each channel delivers them its own way (the web chat with
the shopper's next request or by polling, the terminal before its next prompt).
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, Session, SQLModel, select

from core.db import utcnow


class Notification(SQLModel, table=True):
    """One message waiting for a shopper."""

    id: int | None = Field(default=None, primary_key=True)
    user_key: str = Field(index=True, max_length=200)
    text: str
    created_at: datetime = Field(default_factory=utcnow)
    delivered_at: datetime | None = None


def notify(session: Session, *, user_key: str, text: str) -> Notification:
    """Queue a message for a shopper in the caller's transaction."""
    note = Notification(user_key=user_key, text=text)
    session.add(note)
    return note


def take_pending(session: Session, *, user_key: str) -> list[Notification]:
    """The shopper's undelivered messages, oldest first, marked delivered."""
    notes = list(session.exec(
        select(Notification)
        .where(Notification.user_key == user_key, Notification.delivered_at.is_(None))  # type: ignore[union-attr]
        .order_by(Notification.id)  # type: ignore[arg-type]
    ))
    now = utcnow()
    for note in notes:
        note.delivered_at = now
        session.add(note)
    return notes
