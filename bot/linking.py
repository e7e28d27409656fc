"""Linking channels: the same shopper on Telegram, WhatsApp and the web shares one memory.

On one account the shopper types `/link` and gets a one-time code; on the other they type
`/link CODE`. From then on the second account's memory is the first one's (its owner): facts
about people, preferences and gift history are read and written under the owner's key, while
each account keeps its own conversation. Codes expire after `CODE_MINUTES` and are single-use;
after `MAX_FAILURES` wrong codes in a row an account must wait `LOCK_MINUTES`.

A code is 8 characters of Crockford's base32 (no I, L, O or U to misread), about 10^12
values: channel ids are cheap to make, so the per-account lock alone would not stop guessing
across many throwaway accounts, but a million guesses in a code's ten minutes still have a
one-in-a-million chance of hitting a live code.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import bindparam, delete
from sqlmodel import Session, col, select

from bot import memory
from bot.models import (
    OPPOSITE,
    SINGLE_VALUED,
    FactKind,
    GiftRecord,
    LinkCode,
    MemoryFact,
    ReminderSent,
    ShopperLink,
    ShopperProfile,
)
from core.db import as_utc, forget_with_transaction, utcnow

CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 8
CODE_MINUTES = 10
MAX_FAILURES = 5
LOCK_MINUTES = 15


class LinkOutcome(StrEnum):
    LINKED = "linked"
    ALREADY = "already"  # both accounts already share one memory
    INVALID = "invalid"  # no such code, or it expired
    LOCKED = "locked"  # too many wrong codes


@dataclass(frozen=True)
class LinkResult:
    outcome: LinkOutcome
    other: str | None = None  # the account linked to, on success


def owner_of(session: Session, user_key: str) -> str:
    """The key this account's memory lives under: its own, or the account it was linked to."""
    known: dict[str, str] = session.info.setdefault(_OWNERS, {})
    if user_key not in known:
        owner = session.execute(_OWNER, {"user": user_key}).scalar()
        known[user_key] = owner if owner is not None else user_key
    return known[user_key]


def knew_owner(session: Session, user_key: str, owner_key: str | None) -> None:
    """Keep for this transaction an owner read with other things (None: not linked), so
    `owner_of` asks the database nothing."""
    session.info.setdefault(_OWNERS, {})[user_key] = owner_key or user_key


# Built once (every turn asks): building the statement costs more than running it.
_OWNER = select(ShopperLink.owner_key).where(ShopperLink.user_key == bindparam("user"))
OWNER_OF = _OWNER.scalar_subquery()  # for a query of the caller's, by `:user`
# session.info key: the owners read in this transaction, dropped when it ends or a link
# changes.
_OWNERS = "vitrine_link_owners"


forget_with_transaction(_OWNERS)


def accounts_of(session: Session, owner_key: str) -> list[str]:
    """Every account sharing the memory of `owner_key`, the owner first."""
    linked = session.exec(select(ShopperLink.user_key).where(
        ShopperLink.owner_key == owner_key).order_by(col(ShopperLink.user_key))).all()
    return [owner_key, *linked]


def issue_code(session: Session, user_key: str, *, now: datetime | None = None) -> str:
    """A fresh one-time code for this account; any earlier code of it stops working."""
    now = now or utcnow()
    session.exec(delete(LinkCode).where(  # type: ignore[call-overload]
        (col(LinkCode.user_key) == user_key) | (col(LinkCode.expires_at) < now)))
    while True:
        code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        if session.get(LinkCode, code) is None:
            break
    session.add(LinkCode(code=code, user_key=user_key,
                         expires_at=now + timedelta(minutes=CODE_MINUTES)))
    return code


def redeem_code(session: Session, user_key: str, code: str, *,
                now: datetime | None = None) -> LinkResult:
    """Link this account to the one that issued `code`, merging its memory into theirs."""
    now = now or utcnow()
    profile = session.get(ShopperProfile, user_key) or ShopperProfile(user_key=user_key)
    failed_at = _aware(profile.link_failed_at)
    if (profile.link_failures or 0) >= MAX_FAILURES and failed_at is not None and \
            now - failed_at < timedelta(minutes=LOCK_MINUTES):
        return LinkResult(LinkOutcome.LOCKED)
    found = session.get(LinkCode, normalise_code(code))
    expires = _aware(found.expires_at) if found is not None else None
    if found is None or expires is None or expires < now or found.user_key == user_key:
        profile.link_failures = (profile.link_failures or 0) + 1
        profile.link_failed_at = now
        session.add(profile)
        return LinkResult(LinkOutcome.INVALID)
    session.delete(found)
    profile.link_failures, profile.link_failed_at = None, None
    session.add(profile)
    owner = owner_of(session, found.user_key)
    mine = owner_of(session, user_key)
    if owner == mine:
        return LinkResult(LinkOutcome.ALREADY, found.user_key)
    _merge(session, source=mine, into=owner)
    return LinkResult(LinkOutcome.LINKED, found.user_key)


def normalise_code(code: str) -> str:
    """A code as typed ("vx7k-m2qp", "VX7K M2QP", "vx7km2qo") in its stored form."""
    cleaned = re.sub(r"[\s-]", "", code).upper()
    return cleaned.translate(str.maketrans("ILO", "110"))


def format_code(code: str) -> str:
    """A code as shown: "VX7K-M2QP"."""
    return f"{code[:4]}-{code[4:]}"


def _merge(session: Session, *, source: str, into: str) -> None:
    """Move every account and fact of the memory `source` into the memory `into`.

    Where the two memories disagree (two ages for mom, Tramontina liked on one app and
    avoided on the other), the newest statement wins, as it does within one memory.
    """
    # Facts learned in this transaction are written first, so the merge sees them, and
    # what the transaction read of memory is read again afterwards.
    session.flush()
    memory.drop_read(session)
    facts = list(session.exec(select(MemoryFact).where(
        col(MemoryFact.user_key).in_([source, into]))).all())
    kept: dict[tuple[str, str, str], MemoryFact] = {}
    for fact in sorted(facts, key=lambda f: (_aware(f.created_at) or utcnow(), f.id or 0),
                       reverse=True):
        # Likes and avoids of one brand share a slot; a single-valued kind has one per person.
        kind = min(fact.kind, OPPOSITE.get(FactKind(fact.kind), fact.kind)) \
            if fact.kind in FactKind._value2member_map_ else fact.kind
        slot = (fact.subject, kind, "" if fact.kind in SINGLE_VALUED else fact.value)
        if slot in kept:
            session.delete(fact)
        else:
            kept[slot] = fact
    session.flush()  # the losers go before the winners move, or their keys would collide
    for fact in kept.values():
        if fact.user_key != into:
            fact.user_key = into
            session.add(fact)
    session.flush()
    for gift in session.exec(select(GiftRecord).where(GiftRecord.user_key == source)).all():
        gift.user_key = into
        session.add(gift)
    sent = {(r.subject, r.occasion, r.due_on) for r in session.exec(
        select(ReminderSent).where(ReminderSent.user_key == into))}
    for reminder in session.exec(select(ReminderSent).where(
            ReminderSent.user_key == source)).all():
        if (reminder.subject, reminder.occasion, reminder.due_on) in sent:
            session.delete(reminder)
        else:
            reminder.user_key = into
            session.add(reminder)
    for link in session.exec(select(ShopperLink).where(ShopperLink.owner_key == source)).all():
        link.owner_key = into
        session.add(link)
    session.add(ShopperLink(user_key=source, owner_key=into))
    forget_owners(session)


def forget_owners(session: Session) -> None:
    """Forget the owners read in this transaction, after changing links another way."""
    session.info.pop(_OWNERS, None)


def unlink_all(session: Session, owner_key: str) -> list[str]:
    """Remove every link to this memory; returns the accounts that shared it."""
    accounts = accounts_of(session, owner_key)
    forget_owners(session)
    session.exec(delete(ShopperLink).where(  # type: ignore[call-overload]
        col(ShopperLink.owner_key) == owner_key))
    session.exec(delete(LinkCode).where(  # type: ignore[call-overload]
        col(LinkCode.user_key).in_(accounts)))
    return accounts


def _aware(moment: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; every stored one is UTC."""
    return as_utc(moment) if moment is not None else None
