"""The shopper's control over memory: `/memory`, `/forget [person]`, `/export` and
`/link [code]`, typed as chat text on any channel, answered in the shopper's language.

These follow the data-subject rights of LGPD and GDPR: access (`/memory` in words, `/export`
as JSON), erasure (`/forget` deletes for real; see `bot.erasure`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

from babel import Locale
from babel.dates import format_date, format_skeleton
from sqlalchemy import delete
from sqlmodel import Session, col, select

from bot import erasure, linking, memory
from bot.memory import SHOPPER, FactKind
from bot.models import Conversation, MemoryFact, ReminderOptOut
from bot.replies import RECIPIENT_PHRASES, Message
from bot.rules import RuleIntentParser
from catalog.explain import INTEREST_LABELS
from catalog.models import Merchant
from catalog.product_types import product_types
from checkout.models import Order
from core.i18n import N_, Translator
from core.markets import Market
from core.money import Money
from ops.events import pseudonym

COMMANDS = {
    "memory": "memory", "memoria": "memory", "memória": "memory", "mem": "memory",
    "forget": "forget", "esquecer": "forget", "esqueca": "forget", "esqueça": "forget",
    "olvidar": "forget", "olvida": "forget", "borrar": "forget", "apagar": "forget",
    "export": "export", "exportar": "export",
    "link": "link", "vincular": "link", "conectar": "link",
    "reminders": "reminders", "lembretes": "reminders", "recordatorios": "reminders",
    "orders": "orders", "pedidos": "orders", "compras": "orders",
    "start": "start", "help": "help", "ajuda": "help", "ayuda": "help",
    "language": "language", "idioma": "language", "lingua": "language", "língua": "language",
    "market": "market", "mercado": "market", "pais": "market", "país": "market",
    "limit": "limit", "limits": "limit", "limite": "limit", "limites": "limit",
    "límite": "limit", "límites": "limit",
}
# "/reminders off", "/lembretes desligar", "/recordatorios no".
SWITCH_OFF = frozenset({"off", "no", "nao", "não", "stop", "desligar", "desligado",
                        "desativar", "parar", "apagar", "desactivar", "basta"})
SWITCH_ON = frozenset({"on", "yes", "sim", "si", "sí", "ligar", "ativar", "activar",
                       "encender", "start"})
# "/forget@VitrineBot mom" on Telegram groups; "/memoria" typed in any case.
_COMMAND_RE = re.compile(r"^/(\w+)(?:@\w+)?(?:\s+(.*))?$", re.DOTALL | re.UNICODE)

KIND_LINES = {
    FactKind.AGE: N_("{value} years old"),
    FactKind.BIRTHDAY: N_("birthday: {value}"),
    FactKind.INTEREST: N_("loves {value}"),
    FactKind.SIZE: N_("size {value}"),
    FactKind.DISLIKE: N_("no {value}"),
    FactKind.LIKES_BRAND: N_("likes {value}"),
    FactKind.AVOIDS_BRAND: N_("avoids {value}"),
    FactKind.BUDGET: N_("usual budget up to {value}"),
    FactKind.NAME: N_("named {value}"),
    FactKind.LIKES_STORE: N_("likes the store {value}"),
    FactKind.AVOIDS_STORE: N_("avoids the store {value}"),
}


@dataclass(frozen=True)
class Command:
    name: str  # "memory", "forget", "export"
    argument: str


def read_command(text: str) -> Command | None:
    """The memory command a message is, if any ("/forget mom" -> forget, "mom")."""
    found = _COMMAND_RE.match(text.strip())
    if not found:
        return None
    name = COMMANDS.get(found.group(1).casefold())
    return Command(name, (found.group(2) or "").strip()) if name else None


def person_label(subject: str, t: Translator) -> str:
    if subject == SHOPPER:
        return t.gettext("You")
    label = t.gettext(RECIPIENT_PHRASES.get(subject, subject))
    return label[:1].upper() + label[1:]


def fact_text(fact: MemoryFact, market: Market, t: Translator,
              store_names: dict[str, str] | None = None) -> str:
    """One remembered fact in the shopper's words: "loves gardening", "size M"; stores by
    their names in `store_names` (slug -> name)."""
    kind = FactKind(fact.kind) if fact.kind in FactKind._value2member_map_ else None
    value = fact.value
    if kind == FactKind.INTEREST:
        value = t.gettext(INTEREST_LABELS.get(value, value))
    elif kind == FactKind.SIZE:
        value = value.partition(":")[2].upper()
    elif kind == FactKind.DISLIKE:
        value = product_types().label(value, t.language)
    elif kind in (FactKind.LIKES_STORE, FactKind.AVOIDS_STORE):
        value = (store_names or {}).get(value, value)
    elif kind in (FactKind.LIKES_BRAND, FactKind.AVOIDS_BRAND):
        value = value.title()
    elif kind == FactKind.BUDGET:
        amount, _, currency = value.partition(" ")
        value = market.format_price(Money(int(amount), currency or market.currency))
    elif kind == FactKind.BIRTHDAY:
        value = _birthday_text(value, market)
    if kind is None or kind == FactKind.TURNED_DOWN:
        return value
    return t.gettext(KIND_LINES[kind]).format(value=value)


def _birthday_text(value: str, market: Market) -> str:
    month, _, day = value.partition("-")
    when = date(2000, int(month), int(day or 1))
    return format_skeleton("MMMMd", when, locale=market.locale) if day \
        else format_date(when, "LLLL", locale=market.locale)


def memory_message(session: Session, user_key: str, market: Market,
                   t: Translator) -> Message:
    """Everything remembered about the shopper and their people, in their language."""
    facts = memory.facts(session=session, user_key=user_key)
    gifts = memory.gifts(session=session, user_key=user_key)
    settings = t.gettext("I also keep that you write in {language} and shop in {market}.") \
        .format(language=Locale.parse(t.language).get_display_name(t.language),
                market=market.name)
    if not facts and not gifts:
        return Message(text=t.gettext("I remember nothing about you yet. When you tell me "
                                      "about someone (\"my mom is 60 and loves gardening\"), "
                                      "I keep it to suggest better gifts.") + " " + settings)
    stores = {m.slug: m.name for m in session.exec(select(Merchant))}
    by_person: dict[str, list[str]] = {}
    turned_down = 0
    for fact in facts:
        if fact.kind == FactKind.TURNED_DOWN:
            turned_down += 1
            continue
        if fact.kind == FactKind.NAME:
            by_person.setdefault(fact.subject, [])
            continue
        by_person.setdefault(fact.subject, []).append(fact_text(fact, market, t, stores))
    for gift in gifts:
        by_person.setdefault(gift.subject, []).append(t.gettext("got {title} ({date})").format(
            title=gift.title, date=format_date(gift.at, "MMM yyyy", locale=market.locale)))
    if turned_down:
        by_person.setdefault(SHOPPER, []).append(t.ngettext(
            "turned down {n} product", "turned down {n} products", turned_down)
            .format(n=turned_down))
    lines = [t.gettext("This is what I remember:")]
    names = {f.subject: f.value for f in facts if f.kind == FactKind.NAME}
    for subject in sorted(by_person, key=lambda s: (s == SHOPPER, s)):
        label = person_label(subject, t)
        if subject in names:
            label += f" ({names[subject]})"
        lines.append(f"• {label}: " + "; ".join(by_person[subject]))
    lines.append(settings)
    lines.append(t.gettext("Type /forget to delete everything, /forget and a person (for "
                           "example \"/forget mom\") to delete one, or /export to get it all "
                           "as a file."))
    return Message(text="\n".join(lines))


def export_data(session: Session, user_key: str) -> dict:
    """All the data kept about a shopper (every linked account), as JSON-ready values."""
    owner = linking.owner_of(session, user_key)
    accounts = linking.accounts_of(session, owner)
    conversations = session.exec(select(Conversation).where(
        col(Conversation.user_key).in_(accounts))).all()
    orders = session.exec(select(Order).where(col(Order.user_key).in_(accounts))
                          .order_by(col(Order.created_at))).all()
    return {
        "user": user_key,
        "linked_accounts": accounts,
        "facts": [{"about": f.subject, "kind": f.kind, "value": f.value,
                   "learned_from": f.source, "at": f.created_at.isoformat()}
                  for f in memory.facts(session=session, user_key=owner)],
        "gifts": [{"for": g.subject, "product": g.ref, "title": g.title,
                   "order": g.order_id, "at": g.at.isoformat()}
                  for g in memory.gifts(session=session, user_key=owner)],
        "orders": [{"id": o.id, "account": o.user_key, "merchant": o.merchant_name,
                    "title": o.title, "total": o.total, "currency": o.currency,
                    "rail": o.rail, "status": o.status, "created_at": o.created_at.isoformat()}
                   for o in orders],
        "conversations": [{"account": c.user_key, "market": c.market, "language": c.language,
                           "last_request": c.last_query, "shown": c.shown,
                           "updated_at": c.updated_at.isoformat()} for c in conversations],
    }


@lru_cache(maxsize=1)
def _rules() -> RuleIntentParser:
    return RuleIntentParser()


def person_named(words: str, market: Market, language: str) -> str | None:
    """Who a phrase names ("mom", "minha mãe", "mi abuela" -> the canonical relation)."""
    return _rules().parse(words, market=market, language=language).recipient


def run_command(command: Command, *, session: Session, user_key: str, market: Market,
                t: Translator) -> list[Message]:
    """Answer a memory command in the shopper's language; `user_key` is the account typing."""
    if command.name == "link":
        return link_messages(session, user_key, command.argument, t)
    if command.name == "reminders":
        return [reminders_message(session, user_key, command.argument, t)]
    owner = linking.owner_of(session, user_key)
    if command.name == "memory":
        return [memory_message(session, owner, market, t)]
    if command.name == "export":
        data = json.dumps(export_data(session, user_key), ensure_ascii=False, indent=1)
        return [Message(text=t.gettext("All the data I keep about you, as JSON:")),
                Message(text=data)]
    if not command.argument:
        count = erasure.forget(session=session, user_key=user_key)
        return [Message(text=t.ngettext(
            "Done: I deleted {n} thing I remembered about you, and our conversation.",
            "Done: I deleted {n} things I remembered about you, and our conversation.",
            count).format(n=count))]
    subject = person_named(command.argument, market, t.language) or memory.subject_named(
        session, owner, command.argument)
    known = {f.subject for f in memory.facts(session=session, user_key=owner)} | {
        g.subject for g in memory.gifts(session=session, user_key=owner)}
    if subject is None or subject not in known:
        people = ", ".join(person_label(s, t) for s in sorted(known - {SHOPPER}))
        text = t.gettext("I remember nothing about \"{who}\".").format(who=command.argument)
        if people:
            text += " " + t.gettext("I remember: {people}.").format(people=people)
        return [Message(text=text)]
    count = erasure.forget(session=session, user_key=user_key, subject=subject)
    return [Message(text=t.ngettext(
        "Done: I deleted {n} thing I remembered about {who}.",
        "Done: I deleted {n} things I remembered about {who}.", count).format(
            n=count, who=t.gettext(RECIPIENT_PHRASES.get(subject, subject))))]


def link_messages(session: Session, user_key: str, code: str, t: Translator) -> list[Message]:
    """`/link` gives a code; `/link CODE` on another account links the two."""
    if not code:
        issued = linking.format_code(linking.issue_code(session, user_key))
        return [Message(text=t.gettext(
            "To share my memory with your other app, send /link {code} there within {minutes} "
            "minutes.").format(code=issued, minutes=linking.CODE_MINUTES))]
    result = linking.redeem_code(session, user_key, code)
    if result.outcome == linking.LinkOutcome.LINKED:
        return [Message(text=t.gettext("Linked: both apps now share what I remember. Type "
                                       "/memory to see it."))]
    if result.outcome == linking.LinkOutcome.ALREADY:
        return [Message(text=t.gettext("These apps are already linked."))]
    if result.outcome == linking.LinkOutcome.LOCKED:
        return [Message(text=t.gettext("Too many wrong codes. Wait {minutes} minutes and try "
                                       "again.").format(minutes=linking.LOCK_MINUTES))]
    return [Message(text=t.gettext("That code is not valid or has expired. Type /link in your "
                                   "other app to get a new one."))]


def reminders_message(session: Session, user_key: str, switch: str, t: Translator) -> Message:
    """`/reminders off` stops gift reminders on every linked app; `/reminders on` resumes."""
    word = switch.strip().casefold()
    accounts = linking.accounts_of(session, linking.owner_of(session, user_key))
    hashes = [pseudonym(a) for a in accounts]
    if word in SWITCH_OFF:
        for account_hash in hashes:
            if session.get(ReminderOptOut, account_hash) is None:
                session.add(ReminderOptOut(account_hash=account_hash))
    elif word in SWITCH_ON:
        session.exec(delete(ReminderOptOut).where(  # type: ignore[call-overload]
            col(ReminderOptOut.account_hash).in_(hashes)))
    session.flush()
    off = word in SWITCH_OFF or (word not in SWITCH_ON and any(
        session.get(ReminderOptOut, h) is not None for h in hashes))
    return Message(text=t.gettext("Gift reminders are off. Type /reminders on to get them "
                                  "again.") if off else
                   t.gettext("Gift reminders are on: I will write before birthdays and "
                             "occasions of the people you told me about. Type /reminders "
                             "off to stop them."))
