"""Conversation tables: per-shopper state, remembered facts, gifts given and the shopper's
privacy settings. Everything here is personal data: `bot.erasure` deletes it."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from core.db import utcnow
from core.markets import Market, get_market


class Conversation(SQLModel, table=True):
    """Where a shopper's conversation stands; keyed by channel and the channel's user id."""

    user_key: str = Field(primary_key=True, max_length=200)
    conversation_id: str = Field(max_length=40)
    market: str = Field(max_length=2)
    language: str = Field(max_length=5)
    last_query: dict = Field(default_factory=dict, sa_column=Column(JSON))
    shown: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    # The price each shown card carried, so a change before "buy" is pointed out.
    quoted: dict[str, int] = Field(default_factory=dict, sa_column=Column(JSON))
    excluded: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    # The shown cards that were sponsored: a click, order or payment from one is counted as
    # sponsored in the reports.
    sponsored_shown: list[str] | None = Field(default=None, sa_column=Column(JSON))
    # The shopper chose the language with /language: a channel's locale no longer changes it.
    language_chosen: bool | None = None
    # The order whose rail asked for the payer's name and e-mail; the next message answers.
    awaiting_payer: str | None = Field(default=None, max_length=40)
    # The market the conversation started in (channel, phone number or default): a shopper
    # who moved on from it reads prices as a visitor (`Market.read_by`).
    home_market: str | None = Field(default=None, max_length=2)
    updated_at: datetime = Field(default_factory=utcnow)

    def shopping_market(self) -> Market:
        """The market the shopper is shopping in, as they read it."""
        return get_market(self.market).read_by(self.language, self.home_market)


class FactKind(StrEnum):
    AGE = "age"
    BIRTHDAY = "birthday"  # "03" (March) or "03-15"
    INTEREST = "interest"
    SIZE = "size"  # "size:m", "size:38"
    DISLIKE = "dislike"  # a kind of product: "perfume", "clothing"
    LIKES_BRAND = "likes_brand"
    AVOIDS_BRAND = "avoids_brand"
    BUDGET = "budget"  # the usual ceiling, "20000 BRL"
    TURNED_DOWN = "turned_down"  # a product ref the shopper said "Not for me" to
    NAME = "name"  # "Inês"
    LIKES_STORE = "likes_store"  # a merchant slug
    AVOIDS_STORE = "avoids_store"


# One value per person: a new statement replaces the old one.
SINGLE_VALUED = frozenset({FactKind.AGE, FactKind.BIRTHDAY, FactKind.BUDGET, FactKind.NAME})
# Liking a brand or store cancels avoiding it, and the other way round.
OPPOSITE = {FactKind.LIKES_BRAND: FactKind.AVOIDS_BRAND,
            FactKind.AVOIDS_BRAND: FactKind.LIKES_BRAND,
            FactKind.LIKES_STORE: FactKind.AVOIDS_STORE,
            FactKind.AVOIDS_STORE: FactKind.LIKES_STORE}


class MemoryFact(SQLModel, table=True):
    """Something the shopper told about someone they buy for ("mother", "interest",
    "gardening") or about themselves (subject "shopper": brands liked or avoided, budget).

    `source` is the message it was learned from, so `/memory` can say where it came from.
    """

    __table_args__ = (UniqueConstraint("user_key", "subject", "kind", "value"),)

    id: int | None = Field(default=None, primary_key=True)
    user_key: str = Field(index=True, max_length=200)
    subject: str = Field(max_length=40)
    kind: str = Field(max_length=20)
    value: str = Field(max_length=100)
    source: str | None = Field(default=None, max_length=300)
    created_at: datetime = Field(default_factory=utcnow, index=True)


class GiftRecord(SQLModel, table=True):
    """An order bought for someone: the gift history of that person.

    The order itself says what was bought and whether it went through; a failed or canceled
    order is not a gift given.
    """

    id: int | None = Field(default=None, primary_key=True)
    user_key: str = Field(index=True, max_length=200)
    subject: str = Field(max_length=40)
    order_id: str = Field(unique=True, max_length=40)
    created_at: datetime = Field(default_factory=utcnow)


class ShopperProfile(SQLModel, table=True):
    """Per-account privacy state: when they were told how memory works, and how linking has
    gone."""

    user_key: str = Field(primary_key=True, max_length=200)
    memory_notice_at: datetime | None = None
    # Wrong link codes in a row, and when the last one came: too many lock linking a while.
    link_failures: int | None = None
    link_failed_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


class ShopperLink(SQLModel, table=True):
    """A channel account linked to another one: its memory is the owner's."""

    user_key: str = Field(primary_key=True, max_length=200)
    owner_key: str = Field(index=True, max_length=200)
    created_at: datetime = Field(default_factory=utcnow)


class LinkCode(SQLModel, table=True):
    """A one-time code that links the account redeeming it to the one that asked for it."""

    code: str = Field(primary_key=True, max_length=12)
    user_key: str = Field(index=True, max_length=200)
    expires_at: datetime


class ReminderSent(SQLModel, table=True):
    """A reminder already queued: one per person, occasion and date."""

    __table_args__ = (UniqueConstraint("user_key", "subject", "occasion", "due_on"),)

    id: int | None = Field(default=None, primary_key=True)
    user_key: str = Field(index=True, max_length=200)  # the memory's owner
    subject: str = Field(max_length=40)
    occasion: str = Field(max_length=30)
    due_on: date
    account: str = Field(max_length=200)  # where it was sent
    created_at: datetime = Field(default_factory=utcnow)


class ReminderOptOut(SQLModel, table=True):
    """An account that turned gift reminders off, by pseudonym.

    A suppression list: it outlives `/forget`, so that forgetting everything and later
    telling a birthday again does not bring back reminders the shopper refused. It holds no
    channel id, only its hash.
    """

    account_hash: str = Field(primary_key=True, max_length=64)
    created_at: datetime = Field(default_factory=utcnow)


class TelegramButton(SQLModel, table=True):
    """The action behind a Telegram inline button's short token (callback data holds 64
    bytes at most), for the chat it was sent to; `/forget` deletes them with the rest."""

    token: str = Field(primary_key=True, max_length=16)
    user_key: str = Field(max_length=200, index=True)
    action: str = Field(max_length=2000)
    created_at: datetime = Field(default_factory=utcnow)
