"""Proactive gift reminders: a short suggestion when someone's birthday or occasion is near.

`vitrine reminders run` (meant for a daily scheduler) looks at what shoppers told about their
people: a birthday ("minha mãe faz 60 em março") or a relation with a dated occasion in the
shopper's market (a mother and Mother's Day, from `occasions.json`). For each one within the
window it queues one message with three cards, ranked with that person's memory, on the
shopper's most recent channel. At most one reminder per person, occasion and date; never to a
shopper who typed `/reminders off`. The message also names a pre-approved template
(`TEMPLATE`) and its parameters: WhatsApp sends that when the shopper last wrote more than 24
hours ago, and the ideas follow when they answer.
"""

from __future__ import annotations

import calendar
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache, partial
from pathlib import Path
from typing import TYPE_CHECKING

from babel.dates import format_date, format_skeleton
from sqlmodel import Session, col, select

from bot import memory
from bot.intent import Intent
from bot.memory import FactKind
from bot.models import Conversation, MemoryFact, ReminderOptOut, ReminderSent, ShopperLink
from bot.replies import RECIPIENT_PHRASES
from catalog.cards import build_cards
from core.db import utcnow
from core.i18n import N_, Translator
from core.outbox import notify
from ops.events import EventKind, pseudonym, record_event

if TYPE_CHECKING:
    from bot.conversation import Assistant

OCCASIONS_PATH = Path(__file__).with_name("occasions.json")
DEFAULT_WINDOW_DAYS = 14
TEMPLATE = "gift_reminder"
WEEKDAYS = {name: i for i, name in enumerate(
    ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"))}
OCCASION_LABELS = {
    "birthday": N_("birthday"), "mothers-day": N_("Mother's Day"),
    "fathers-day": N_("Father's Day"), "valentines": N_("Valentine's Day"),
    "childrens-day": N_("Children's Day"),
}


@dataclass(frozen=True)
class Due:
    """A person's occasion inside the window."""

    owner: str
    subject: str
    occasion: str
    on: date
    month_only: bool = False  # a birthday known only by its month


@dataclass
class ReminderReport:
    sent: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def as_dict(self) -> dict:
        return {"sent": self.sent, "skipped": dict(sorted(self.skipped.items()))}


@lru_cache
def occasions() -> dict:
    return json.loads(OCCASIONS_PATH.read_text("utf-8"))


def occasion_date(rule: dict, year: int) -> date:
    """The date of an occasion rule in a year: a fixed day or the nth weekday of a month."""
    month = int(rule["month"])
    if "day" in rule:
        return date(year, month, int(rule["day"]))
    weekday, nth = WEEKDAYS[rule["weekday"]], int(rule["nth"])
    days = [d for d in range(1, calendar.monthrange(year, month)[1] + 1)
            if date(year, month, d).weekday() == weekday]
    return date(year, month, days[nth - 1] if nth > 0 else days[nth])


def next_date(today: date, make: Callable[[int], date]) -> date:
    """The first date on or after today that `make(year)` gives, this year or next."""
    this_year = make(today.year)
    return this_year if this_year >= today else make(today.year + 1)


def due(session: Session, *, today: date, window_days: int,
        market_of: dict[str, str]) -> list[Due]:
    """Every person's birthday or occasion from today to `window_days` ahead.

    `market_of` maps a memory owner to the market its shopper talks in (occasion dates differ
    per market). A birthday known only by its month is due from the window before the 1st.
    """
    found: list[Due] = []
    until = today + timedelta(days=window_days)
    by_relation = occasions()["by_relation"]
    # Only what can be due: birthdays, and the people whose relation has an occasion.
    birthdays = {(user_key, subject): value for user_key, subject, value in session.exec(
        select(MemoryFact.user_key, MemoryFact.subject, MemoryFact.value).where(
            MemoryFact.kind == FactKind.BIRTHDAY))}
    people = set(birthdays) | set(session.exec(
        select(MemoryFact.user_key, MemoryFact.subject).where(
            col(MemoryFact.subject).in_(list(by_relation))).distinct()))
    for owner, subject in sorted(people):
        value = birthdays.get((owner, subject))
        if value:
            month, _, day = value.partition("-")
            on = next_date(today, partial(_safe_date, month=int(month), day=int(day or 1)))
            if today <= on <= until:
                found.append(Due(owner, subject, "birthday", on, month_only=not day))
        market = market_of.get(owner)
        dates = occasions()["dates"].get(market or "", {})
        for occasion in by_relation.get(subject, []):
            rule = dates.get(occasion)
            if rule is None:
                continue
            on = next_date(today, partial(occasion_date, rule))
            if today <= on <= until:
                found.append(Due(owner, subject, occasion, on))
    return found


def _safe_date(year: int, month: int, day: int) -> date:
    """29 February in a year without one is celebrated on the 28th."""
    return date(year, month, min(day, calendar.monthrange(year, month)[1]))


def run_reminders(assistant: Assistant, *, today: date | None = None,
                  window_days: int = DEFAULT_WINDOW_DAYS,
                  now: datetime | None = None) -> ReminderReport:
    """Queue every reminder due today; returns how many went and why others did not."""
    now = now or utcnow()
    today = today or now.date()
    report = ReminderReport()
    with Session(assistant.engine) as session:
        latest = _latest_conversations(session)
        market_of = {owner: conv.market for owner, conv in latest.items()}
        opted_out = set(session.exec(select(ReminderOptOut.account_hash)))
        links = _links(session)
        for item in due(session, today=today, window_days=window_days, market_of=market_of):
            conv = latest.get(item.owner)
            if conv is None:
                report.skip("no_channel")
                continue
            accounts = [item.owner, *links.get(item.owner, [])]
            if any(pseudonym(a) in opted_out for a in accounts):
                report.skip("turned_off")
                continue
            # Once per person, occasion and year: a birthday first known by its month and
            # later by its day is still the same birthday.
            if session.exec(select(ReminderSent).where(
                    ReminderSent.user_key == item.owner, ReminderSent.subject == item.subject,
                    ReminderSent.occasion == item.occasion,
                    col(ReminderSent.due_on) >= date(item.on.year, 1, 1),
                    col(ReminderSent.due_on) <= date(item.on.year, 12, 31))).first():
                report.skip("already_sent")
                continue
            if not _send(assistant, session, item, conv):
                report.skip("no_products")
                continue
            session.add(ReminderSent(user_key=item.owner, subject=item.subject,
                                     occasion=item.occasion, due_on=item.on,
                                     account=conv.user_key))
            session.commit()
            report.sent += 1
    return report


def _links(session: Session) -> dict[str, list[str]]:
    """Every memory owner's linked accounts, in one query."""
    linked: dict[str, list[str]] = {}
    for account, owner in session.exec(select(ShopperLink.user_key, ShopperLink.owner_key)):
        linked.setdefault(owner, []).append(account)
    return linked


def _latest_conversations(session: Session) -> dict[str, Conversation]:
    """Per memory owner, the conversation of the account the shopper used last."""
    owners = {account: owner for account, owner in session.exec(
        select(ShopperLink.user_key, ShopperLink.owner_key))}
    latest: dict[str, Conversation] = {}
    for conv in session.exec(select(Conversation).order_by(col(Conversation.updated_at))):
        latest[owners.get(conv.user_key, conv.user_key)] = conv
    return latest


def _send(assistant: Assistant, session: Session, item: Due, conv: Conversation) -> bool:
    market = conv.shopping_market()
    t = Translator(conv.language)
    intent = Intent(text="", language=conv.language, recipient=item.subject,
                    occasion=None if item.occasion == "birthday" else item.occasion)
    remembered = memory.recall(session=session, user_key=item.owner, intent=intent)
    request = assistant.search_request(intent, market)
    memory.apply(remembered, intent, request)
    found = assistant.search.search(request, language=conv.language, session=session)
    cards = build_cards(found.ranked, request, market, t)
    if not cards:
        return False
    who = t.gettext(RECIPIENT_PHRASES.get(item.subject, item.subject))
    occasion = t.gettext(OCCASION_LABELS.get(item.occasion, item.occasion))
    when = format_date(item.on, "LLLL", locale=market.locale) if item.month_only \
        else format_skeleton("MMMMd", item.on, locale=market.locale)
    if item.occasion == "birthday":
        intro = (t.gettext("The birthday of {who} is in {when}. Some ideas:") if item.month_only
                 else t.gettext("The birthday of {who} is on {when}. Some ideas:"))
    else:
        intro = t.gettext("{occasion} is on {when}. Some ideas for {who}:")
    text = intro.format(who=who, when=when, occasion=occasion) + "\n" + t.gettext(
        "Type /reminders off to stop these reminders.")
    notify(session, user_key=conv.user_key, text=text,
           cards=[c.model_dump(mode="json") for c in cards],
           template=TEMPLATE, template_params=[who, occasion, when],
           request=intent.as_dict())
    record_event(session, EventKind.REMINDER_SENT, user_key=conv.user_key,
                 conversation_id=conv.conversation_id, market=market.code,
                 language=conv.language)
    return True
