"""Messages for shoppers produced outside their own turn (a payment confirmed by a webhook).

Any part of Vitrine may queue one; each channel delivers them its own way (the web chat with
the shopper's next request or by polling, the terminal before its next prompt).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column
from sqlmodel import Field, Session, SQLModel, select

from core.db import utcnow


class Notification(SQLModel, table=True):
    """One message waiting for a shopper.

    `cards` are product cards in their public JSON shape. `template` and `template_params`
    are set when the channel allows only a pre-approved template at this moment (WhatsApp,
    24 hours after the shopper last wrote): the channel sends the template instead of `text`.
    """

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


def notify(session: Session, *, user_key: str, text: str, cards: list[dict] | None = None,
           template: str | None = None, template_params: list[str] | None = None,
           request: dict | None = None) -> Notification:
    """Queue a message for a shopper in the caller's transaction."""
    note = Notification(user_key=user_key, text=text, cards=cards, template=template,
                        template_params=template_params, request=request)
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
