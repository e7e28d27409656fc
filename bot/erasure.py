"""Erasure: `/forget` (everything, or one person) and the retention purge.

These carry out the data-subject right to erasure of LGPD and GDPR, and the retention
period (`VITRINE_MEMORY_RETENTION_DAYS`). What is kept, and why: orders, for the merchant's
accounts, under random ids; conversion events, which hold only pseudonymous ids and hashes;
reminder opt-outs, a hashed suppression list that exists to be remembered.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, update
from sqlmodel import Session, col, select

from bot import linking
from bot.models import (
    Conversation,
    GiftRecord,
    LinkCode,
    MemoryFact,
    ReminderSent,
    ShopperLink,
    ShopperProfile,
    TelegramButton,
)
from checkout.models import Order
from core.db import utcnow
from core.outbox import Notification
from ops.events import ConversionEvent, log_pseudonym

FORGOTTEN = "forgotten_accounts"  # session.info key: accounts whose rows `forget` deleted


def forget(*, session: Session, user_key: str, subject: str | None = None) -> int:
    """Delete what is remembered: everything about the shopper, or one person.

    `user_key` is the account asking; linked accounts share its memory (`bot.linking`), so
    forgetting everything covers all of them: the facts, gift history, reminders sent, links,
    every linked account's conversation, queued messages and privacy state. Each of their
    orders is kept for the merchant's accounts under a new random id that leads back to no
    one. Conversion events hold only pseudonymous ids and hashes. The accounts are listed in
    `session.info[FORGOTTEN]`, so the caller writes nothing of them back.

    Forgetting one person deletes their facts, gifts and reminders, the request being refined
    when it was for them, and reminders about them still waiting to be delivered.

    Returns how many facts and gifts were deleted.
    """
    owner = linking.owner_of(session, user_key)
    accounts = linking.accounts_of(session, owner)
    if user_key not in accounts:
        accounts.append(user_key)
    fact_query = delete(MemoryFact).where(col(MemoryFact.user_key) == owner)
    gift_query = delete(GiftRecord).where(col(GiftRecord.user_key) == owner)
    reminders = delete(ReminderSent).where(col(ReminderSent.user_key).in_(accounts))
    if subject is not None:
        fact_query = fact_query.where(col(MemoryFact.subject) == subject)
        gift_query = gift_query.where(col(GiftRecord.subject) == subject)
        reminders = reminders.where(col(ReminderSent.subject) == subject)
    count = session.exec(fact_query).rowcount  # type: ignore[call-overload]
    count += session.exec(gift_query).rowcount  # type: ignore[call-overload]
    session.exec(reminders)  # type: ignore[call-overload]
    if subject is not None:
        _forget_person_in_flight(session, accounts, subject)
        return int(count)
    linking.unlink_all(session, owner)
    for model, key in ((Conversation, Conversation.user_key),
                       (Notification, Notification.user_key),
                       (ShopperProfile, ShopperProfile.user_key),
                       (TelegramButton, TelegramButton.user_key)):
        session.exec(delete(model).where(  # type: ignore[call-overload]
            col(key).in_(accounts)))
    # The conversion log keeps its counts, but not a word the shopper wrote: neither in
    # events stored nor in this turn's, which the update writes first (`ops.events`). It
    # reads only their rows that kept a text (`ix_conversionevent_erasable`), as every
    # statement here reads only the shopper's: erasing runs like any other turn.
    session.exec(update(ConversionEvent).where(  # type: ignore[call-overload]
        col(ConversionEvent.user_hash).in_([log_pseudonym(a) for a in accounts]),
        col(ConversionEvent.text).is_not(None)).values(text=None))
    for order in session.exec(select(Order).where(col(Order.user_key).in_(accounts))).all():
        order.user_key = forgotten_key()
        order.payer_name = order.payer_email = None  # kept orders lead back to no one
        session.add(order)
    session.info.setdefault(FORGOTTEN, set()).update(accounts)
    return int(count)


def _forget_person_in_flight(session: Session, accounts: list[str], subject: str) -> None:
    """Drop the active request and undelivered reminders that are about `subject`."""
    for conv in session.exec(select(Conversation).where(
            col(Conversation.user_key).in_(accounts))).all():
        if (conv.last_query.get("intent") or {}).get("recipient") == subject:
            conv.last_query = {}
            session.add(conv)
    for note in session.exec(select(Notification).where(
            col(Notification.user_key).in_(accounts),
            col(Notification.delivered_at).is_(None))).all():
        if (note.request or {}).get("recipient") == subject:
            session.delete(note)


def forgotten_key() -> str:
    """The id an order keeps after its shopper asked to be forgotten: random, so it joins
    neither the conversion events nor the shopper's other orders."""
    return "forgotten:" + secrets.token_hex(16)


def purge(*, session: Session, retention_days: int, now: datetime | None = None) -> int:
    """Delete personal data older than the retention period; returns how many rows went.

    Facts, gift records, reminder records, conversations idle that long and queued messages
    that old go; so do expired link codes, and the links and privacy state of accounts left
    with no conversation. Orders stay (merchants' accounts); reminder opt-outs stay (they
    hold only a hash, and exist to be remembered).
    """
    now = now or utcnow()
    cutoff = now - timedelta(days=retention_days)
    count = 0
    for model, stamp in ((MemoryFact, MemoryFact.created_at),
                         (GiftRecord, GiftRecord.created_at),
                         (ReminderSent, ReminderSent.created_at),
                         (Conversation, Conversation.updated_at),
                         (Notification, Notification.created_at),
                         (LinkCode, LinkCode.expires_at)):
        limit = now if model is LinkCode else cutoff
        count += session.exec(delete(model).where(  # type: ignore[call-overload]
            col(stamp) < limit)).rowcount
    talking = select(Conversation.user_key)
    count += session.exec(delete(ShopperProfile).where(  # type: ignore[call-overload]
        col(ShopperProfile.created_at) < cutoff,
        col(ShopperProfile.user_key).not_in(talking))).rowcount
    linking.forget_owners(session)
    count += session.exec(delete(ShopperLink).where(  # type: ignore[call-overload]
        col(ShopperLink.created_at) < cutoff, col(ShopperLink.user_key).not_in(talking),
        col(ShopperLink.owner_key).not_in(talking))).rowcount
    return int(count)
