"""The conversation: a message or a button press in, localised messages with cards out.

Every channel (web chat API, terminal, and later Telegram and WhatsApp) calls
`Assistant.handle`; `Assistant.recommend` is the same understanding and ranking without a
conversation, for the `recommend` command.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import Integer, String, bindparam, func, insert, inspect, literal, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError
from sqlmodel import Session, select

from bot import erasure, linking, memory
from bot.buying import Buying
from bot.follow_ups import ActiveRequest, plan
from bot.intent import Intent, IntentParser
from bot.llm_replies import ReplyPhraser
from bot.models import Conversation, MemoryFact, ShopperProfile
from bot.notes import recommendation_notes
from bot.privacy import Command, read_command, run_command
from bot.replies import (
    Message,
    Reply,
    cheaper_text,
    help_message,
    no_results_text,
    results_text,
)
from bot.search_requests import build_search_request, missing_colour
from bot.settings_commands import settings_command
from bot.stores import read_stores
from catalog.cards import Card, build_cards
from catalog.live import FederatedSearch
from catalog.product_types import product_types
from catalog.search import SearchRequest
from catalog.store import revision_from, revision_of
from checkout import service as checkout
from checkout.rails import PaymentRail
from core.db import as_utc, joined_or_own, session_scope, utcnow
from core.driver import DriverStatement, loaded, write_together
from core.i18n import Translator, language_of
from core.markets import Market, get_market
from core.money import Money
from core.outbox import HAS_PENDING, Notification, claim, peek_pending, take_pending
from core.settings import Settings
from core.turns import TurnSlots, pool_capacity, working_in
from ops.events import EVENTS, EventKind, record_event, take_pending_rows, understood

MAX_REMEMBERED_REFS = 60
# The action of a template's button that brings up what waited for the shopper.
INBOX_ACTION = "inbox"
TURN_ATTEMPTS = 3


@dataclass
class Recommendation:
    """The answer to one request: what was understood, the cards, and the reply line."""

    query: str
    market: Market
    intent: Intent
    request: SearchRequest
    cards: list[Card]
    reply: str
    notes: list[str] = field(default_factory=list)  # what was remembered, what was ignored

    def as_dict(self) -> dict:
        return {"query": self.query, "market": self.market.code,
                "intent": self.intent.as_dict(),
                "cards": [c.model_dump(include=CARD_FIELDS) for c in self.cards],
                "reply": self.reply, "notes": self.notes}


CARD_FIELDS = {"product_id", "merchant", "merchant_id", "title", "price", "price_text", "url",
               "image_url", "reason", "sponsored", "label", "rating", "rating_count",
               "position"}


class Assistant:
    """Understands requests, keeps each shopper's conversation, and drives checkout."""

    def __init__(self, *, engine: Engine, search: FederatedSearch, parser: IntentParser,
                 rails: dict[str, PaymentRail], settings: Settings,
                 phraser: ReplyPhraser | None = None) -> None:
        self.engine = engine
        # Rewords the line above the cards (never the cards) when a language model is set.
        self.phraser = phraser
        self.search = search
        self.parser = parser
        self.rails = rails
        self.settings = settings
        self.buying = Buying(search=search, rails=rails, settings=settings)
        # At most this many turns at once in this process; the channels' threads wait here.
        self.turns = TurnSlots(settings.turns_at_once, in_flight=pool_capacity(engine))
        # Told the seconds each answer to a request took (the app's metrics listen).
        self.observe_latency: Callable[[float], None] = lambda seconds: None

    # -- recommendation without a conversation ----------------------------------------------

    def recommend(self, text: str, *, market: Market, user_key: str | None = None,
                  limit: int | None = None, language: str | None = None,
                  reply_language: str | None = None, exclude: set[str] | None = None,
                  session: Session | None = None, intent: Intent | None = None,
                  said: Intent | None = None) -> Recommendation:
        """Understand `text` and rank cards; with a user, use and extend their memory.

        `language` is the shopper's usual language, used when the text does not tell;
        `reply_language` forces the reply's language whatever the text is written in.
        `intent`, when given, is what the conversation already understood (a refinement of
        the active request), and `text` is not parsed again; memory then learns only from
        `said`, what this message itself stated, never from what was carried over.
        """
        if intent is None:
            intent = said = self.understand(text, market=market, language=language,
                                            session=session)
        if reply_language:
            intent.language = language_of(reply_language)
        learned: list[MemoryFact] = []
        remembered: memory.MemorySummary | None = None
        tell_about_memory = False
        if user_key:
            with joined_or_own(self.engine, session) as writer:
                # Linked accounts (Telegram and WhatsApp of one shopper) share one memory.
                owner = linking.owner_of(writer, user_key)
                # What memory holds about the people involved, read once for both below.
                memory.read(session=writer, user_key=owner, subjects=(
                    said.recipient if said is not None else None, intent.recipient))
                learned = memory.learn(session=writer, user_key=owner, intent=said,
                                       source=text) if said is not None else []
                remembered = memory.recall(session=writer, user_key=owner, intent=intent)
                tell_about_memory = bool(learned) and memory.should_tell_about_memory(
                    session=writer, user_key=owner)
        request = self.search_request(intent, market, limit=limit, exclude=exclude)
        if remembered is not None:
            memory.apply(remembered, intent, request)
        t = Translator(intent.language)
        if intent.is_empty():
            return Recommendation(query=text, market=market, intent=intent, request=request,
                                  cards=[], reply=help_message(intent.language, t).text)
        found = self.search.search(request, language=intent.language, session=session)
        ranked = found.ranked
        cards = build_cards(ranked, request, market, t)
        budget = Money(request.budget_max, market.currency) \
            if request.budget_max is not None else None
        reply = (results_text(intent, len(cards), budget, market, t) if cards
                 else no_results_text(intent, budget, market, t))
        if self.phraser and cards:
            phrased = self.phraser.phrase_intro(
                reply, language=intent.language,
                product_names=[c.title for c in cards] + [c.merchant for c in cards])
            reply = phrased.text
            intent.tokens_in += phrased.tokens_in
            intent.tokens_out += phrased.tokens_out
        notes = recommendation_notes(
            intent=intent, request=request, market=market, t=t, learned=learned,
            remembered=remembered, tell_about_memory=tell_about_memory,
            missing_colour=missing_colour(ranked, request, intent),
            none_fits=bool(ranked) and not any(r.of_kind for r in ranked),
            unanswered=found.unanswered)
        return Recommendation(query=text, market=market, intent=intent, request=request,
                              cards=cards, reply=reply, notes=notes)

    def understand(self, text: str, *, market: Market, language: str | None = None,
                   session: Session | None = None) -> Intent:
        """Parse a message, the market's store names read first (see `bot.stores`)."""
        stores = read_stores(text, self._store_names(market.code, session))
        named = stores.liked or stores.avoided
        intent = self.parser.parse(stores.text if named else text, market=market,
                                   language=language)
        if named:
            intent.text = text
            intent.stores, intent.avoid_stores = stores.liked, stores.avoided
        return intent

    def _store_names(self, market: str, session: Session | None) -> dict[str, str]:
        """The market's merchants by slug, read again only when the market's catalogs change
        (a merchant added or removed, or a catalog synced, changes the revision)."""
        return self.search.local.merchants(market, session).names

    def search_request(self, intent: Intent, market: Market, *, limit: int | None = None,
                       exclude: set[str] | None = None) -> SearchRequest:
        """What to search for an understood request in a market."""
        return build_search_request(intent, market, limit=limit or
                                    self.settings.default_card_limit, exclude=exclude)

    # -- the conversation -------------------------------------------------------------------

    def handle(self, *, user_key: str, text: str | None = None, action: str | None = None,
               market: str | None = None, locale: str | None = None) -> Reply:
        """Answer one message or button press.

        Raises:
            UnknownMarket: `market` is not a configured market.
        """
        chosen_market = get_market(market) if market else None
        with self.turns.turn():
            return self._turn(user_key, text, action, chosen_market, locale)

    def _turn(self, user_key: str, text: str | None, action: str | None,
              chosen_market: Market | None, locale: str | None) -> Reply:
        for attempt in range(TURN_ATTEMPTS):
            try:
                # Nothing is written until the turn commits: live merchants may be asked during
                # the turn, and on SQLite a written transaction would lock out every other
                # writer for as long as they take.
                with session_scope(self.engine) as session, session.no_autoflush:
                    working_in(session)
                    conv, maybe_queued = self._conversation(session, user_key, chosen_market,
                                                            locale)
                    # What waited for the shopper comes first; taken only as the turn ends.
                    queued = peek_pending(session, user_key=user_key) if maybe_queued else []
                    waiting = _deliver(conv, queued)
                    messages: list[Message] = []
                    if action and action.strip() == INBOX_ACTION:
                        # A template's "see them" button: what waited came with the turn.
                        if not waiting:
                            messages.append(Message(text=Translator(conv.language).gettext(
                                "Nothing is waiting for you right now. Tell me what you are "
                                "looking for.")))
                    elif action:
                        messages += self._action(session, conv, action.strip(), locale)
                    elif text is not None:
                        messages += self._text(session, conv, text, locale)
                    else:
                        messages.append(help_message(conv.language, Translator(conv.language)))
                    # A push may have delivered some meanwhile: those are not shown twice.
                    taken = {id(n) for n in claim(session, queued)}
                    # "/forget" deleted the conversation itself: nothing of it is written back.
                    if conv.user_key not in session.info.get(erasure.FORGOTTEN, ()):
                        conv.updated_at = utcnow()
                        _write_back(session, conv)
                    messages = [m for n, m in zip(queued, waiting, strict=True)
                                if id(n) in taken] + messages
                return Reply(messages=messages)
            except (IntegrityError, StaleDataError):
                # Two first messages of a new shopper raced to create the conversation, or
                # the shopper's `/forget` deleted it meanwhile; the whole turn was rolled
                # back, so running it again is safe.
                if attempt == TURN_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def pending(self, *, user_key: str) -> Reply:
        """Messages queued for a shopper since their last turn."""
        return Reply(messages=[message for _, message in self.take_queued(user_key=user_key)])

    def take_queued(self, *, user_key: str, sending_until: datetime | None = None
                    ) -> list[tuple[Notification, Message]]:
        """Messages queued for a shopper since their last turn, each with its queue entry,
        now taken: nobody else delivers them (a push's, under its lease: see
        `core.outbox.claim`)."""
        with session_scope(self.engine) as session:
            notes = take_pending(session, user_key=user_key, sending_until=sending_until)
            conv = session.get(Conversation, user_key)
            if conv is None:
                messages = [_delivered(n) for n in notes]
            else:
                messages = _deliver(conv, notes)
                session.add(conv)
            return list(zip(notes, messages, strict=True))

    def _conversation(self, session: Session, user_key: str, market: Market | None,
                      locale: str | None) -> tuple[Conversation, bool]:
        """The shopper's conversation (a new one for a new shopper), and whether messages
        wait for them."""
        default = get_market(self.settings.default_market).code
        row = _TURN_STATE.one(session, {"user": user_key,
                                        "market": market.code if market else None,
                                        "default_market": default})
        stored = row[:len(_CONVERSATION)]
        owner, maybe_queued, gifted, remembers, told, *revision = row[len(_CONVERSATION):]
        conv = None if stored[0] is None else \
            loaded(session, Conversation, dict(zip(_CONVERSATION, stored, strict=True)))
        linking.knew_owner(session, user_key, owner)
        memory.knew_at_start(session, owner or user_key, has_gifts=bool(gifted),
                             has_facts=bool(remembers), notice=told)
        self.search.local.knew_revision(
            session, market.code if market else conv.market if conv else default,
            revision_from(revision))
        if conv is None:
            m = market or get_market(default)
            # Every field with a default factory given: SQLModel's constructor inspects a
            # factory's signature on each call (`list` and `dict` through an exception),
            # which made a new shopper's first turn 0.2 ms slower.
            conv = Conversation(user_key=user_key, conversation_id=_new_id(), market=m.code,
                                language=language_of(locale, default=m.language),
                                home_market=m.code, last_query={}, shown=[], quoted={},
                                excluded=[], updated_at=utcnow())
        else:
            updated = as_utc(conv.updated_at)
            idle = timedelta(minutes=self.settings.conversation_idle_minutes)
            if utcnow() - updated > idle:
                conv.conversation_id = _new_id()
                conv.shown, conv.excluded, conv.last_query, conv.quoted = [], [], {}, {}
                conv.awaiting_payer = None
            if market and market.code != conv.market:
                conv.market = market.code
                conv.shown, conv.excluded, conv.last_query, conv.quoted = [], [], {}, {}
            if locale and not conv.language_chosen:
                conv.language = language_of(locale, default=conv.language)
        return conv, maybe_queued

    def _text(self, session: Session, conv: Conversation, text: str,
              locale: str | None) -> list[Message]:
        started = time.perf_counter()
        market = conv.shopping_market()
        stripped = text.strip()
        received = record_event(session, EventKind.MESSAGE_RECEIVED, user_key=conv.user_key,
                                text=stripped or None, keep_text=self.settings.ops_store_text,
                                conversation_id=conv.conversation_id,
                                market=market.code, language=conv.language)
        t = Translator(conv.language)
        if len(stripped) > self.settings.max_message_chars:
            return [Message(text=t.gettext(
                "That message is too long for me ({limit} characters at most). Tell me in a "
                "sentence or two who the gift is for and your budget.").format(
                    limit=self.settings.max_message_chars))]
        if not any(ch.isalnum() for ch in stripped):
            return [help_message(conv.language, t, greeting=not stripped)]
        command = read_command(stripped)
        if command is not None and command.name in ("language", "market"):
            return settings_command(conv, command, t)
        if command is not None and command.name in ("start", "help"):
            return [help_message(conv.language, t, greeting=command.name == "start")]
        if command is not None and command.name == "orders":
            return self.buying.orders(session, conv.user_key, t)
        if command is not None and command.name == "limit":
            return self.buying.limits(session, conv, market, command.argument, t)
        if command is not None:
            return run_command(command, session=session, user_key=conv.user_key,
                               market=market, t=t)
        if conv.awaiting_payer:
            answered = self.buying.payer(session, conv, stripped, t)
            if answered is not None:
                return answered

        active = ActiveRequest.from_state(conv.last_query)
        step = plan(stripped, active, lambda words: self.understand(
            words, market=market, language=conv.language, session=session),
            currency=market.currency)
        if step.pick is not None:
            merchant_slug, _, product_id = step.pick.partition(":")
            return self.buying.buy(session, conv, market, merchant_slug, product_id, t)
        if step.no_card:
            shown = len(active.cards) if active else 0
            return [Message(text=t.ngettext(
                "I showed you {n} option. Tap the one you want, or tell me what you are "
                "looking for.", "I showed you {n} options. Tap the one you want, or tell me "
                "what you are looking for.", shown).format(n=shown))]
        if step.lowered_to is not None:
            # "Mais barato" says what the shopper finds too expensive: remembered as budget.
            memory.remember(session=session, user_key=linking.owner_of(session, conv.user_key),
                            subject=memory.SHOPPER, kind=memory.FactKind.BUDGET,
                            value=f"{step.lowered_to} {market.currency}", source=stripped)
        rec = self.recommend(stripped, market=market, user_key=conv.user_key,
                             language=conv.language,
                             reply_language=conv.language
                             if language_of(locale, default="") else None,
                             exclude=set(conv.excluded) | step.exclude, session=session,
                             intent=step.intent, said=step.said)
        conv.language = rec.intent.language
        if rec.intent.is_empty():
            # A greeting or a thanks still cost the language model tokens: they are logged on
            # the message itself, since no understood request follows.
            received.parser = rec.intent.parser
            received.tokens_in, received.tokens_out = rec.intent.tokens_in, rec.intent.tokens_out
            t = Translator(conv.language)
            if rec.intent.thanks:
                return [Message(text=t.gettext("You are welcome! Tell me whenever you need "
                                               "another gift."))]
            return [help_message(conv.language, t, greeting=True)]
        record_event(session, EventKind.INTENT_UNDERSTOOD, user_key=conv.user_key,
                     conversation_id=conv.conversation_id, market=market.code,
                     language=conv.language, parser=rec.intent.parser,
                     tokens_in=rec.intent.tokens_in, tokens_out=rec.intent.tokens_out)
        if step.ran_out and not rec.cards:
            rec.reply = Translator(rec.intent.language).gettext(
                "Those were all the options I have for that right now. Tell me something "
                "else to look for, or change the budget.")
        elif step.lowered_to is not None:
            rec.reply = cheaper_text(rec.intent, bool(rec.cards),
                                     Money(step.lowered_to, market.currency), market,
                                     Translator(rec.intent.language))
        _remember_answer(conv, rec, active if step.refines else None)
        return self._show(session, conv, rec, started)

    def _show(self, session: Session, conv: Conversation, rec: Recommendation,
              started: float) -> list[Message]:
        seconds = time.perf_counter() - started
        self.observe_latency(seconds)
        latency = int(seconds * 1000)
        common: dict[str, Any] = dict(user_key=conv.user_key, conversation_id=conv.conversation_id,
                      market=conv.market, language=conv.language, latency_ms=latency)
        if not rec.cards:  # a catalog gap
            record_event(session, EventKind.CARDS_SHOWN, text=rec.query,
                         keep_text=self.settings.ops_store_text,
                         understood=understood(rec.intent), **common)
        for card in rec.cards:
            record_event(session, EventKind.CARDS_SHOWN, merchant=card.merchant_id,
                         product_id=card.product_id, position=card.position, score=card.score,
                         sponsored=card.sponsored, amount=card.price.amount,
                         currency=card.price.currency, **common)
        conv.shown = (conv.shown + [c.ref for c in rec.cards])[-MAX_REMEMBERED_REFS:]
        conv.sponsored_shown = [ref for ref in (conv.sponsored_shown or []) if ref in conv.shown] \
            + [c.ref for c in rec.cards if c.sponsored]
        conv.quoted = {ref: amount for ref, amount in
                       {**conv.quoted, **{c.ref: c.price.amount for c in rec.cards}}.items()
                       if ref in conv.shown}
        messages = [Message(text=note) for note in rec.notes]
        messages.append(Message(text=rec.reply, cards=rec.cards))
        return messages

    def _action(self, session: Session, conv: Conversation, action: str,
                locale: str | None) -> list[Message]:
        verb, _, arg = action.partition(":")
        t = Translator(conv.language)
        market = conv.shopping_market()
        if verb == "say" and arg.strip():
            return self._text(session, conv, arg, locale)
        if verb in ("buy", "more", "skip") and arg in conv.shown:
            merchant_slug, _, product_id = arg.partition(":")
            if verb == "buy":
                return self.buying.buy(session, conv, market, merchant_slug, product_id, t)
            if verb == "more":
                return self._more_like(session, conv, market, arg, t)
            return self._not_for_me(session, conv, market, arg, t)
        if verb in ("choose", "confirm", "confirm_over", "cancel", "withdraw"):
            # "choose:ORDER:pix", "confirm_over:ORDER:TOTAL:RAIL"; the others "verb:ORDER".
            order_id, _, rest = arg.partition(":")
            order = checkout.find_order(session=session, order_id=order_id,
                                        user_key=conv.user_key)
            if order is not None:
                # The market of the order, not of the conversation: its rails, fees, law.
                market = get_market(order.market).read_by(conv.language, conv.home_market)
                return self.buying.act(session, conv, order, market, verb, rest, t)
        if verb == "forget":
            return run_command(Command("forget", arg.strip()), session=session,
                               user_key=conv.user_key, market=market, t=t)
        return [Message(text=t.gettext("That button is no longer valid. Tell me what you are "
                                       "looking for and I will show fresh options."))]

    def _more_like(self, session: Session, conv: Conversation, market: Market, ref: str,
                   t: Translator) -> list[Message]:
        started = time.perf_counter()
        product = self.search.product(market.code, ref, session)
        record_event(session, EventKind.MORE_LIKE_THIS, user_key=conv.user_key,
                     conversation_id=conv.conversation_id, market=market.code,
                     merchant=ref.partition(":")[0], product_id=ref.partition(":")[2])
        if product is None:
            return [Message(text=t.gettext("Sorry, that product is no longer available. "
                                           "Want to see other options?"))]
        # Similar = same kind of product for the same kind of person: the category and title
        # words raise relevance, the gift tags select; nothing is required word for word.
        request = SearchRequest(
            market=market.code, currency=market.currency,
            text=product.title, soft_terms=[product.categories, product.title],
            tags=sorted(product.tags), exclude=set(conv.shown) | set(conv.excluded),
            limit=self.settings.default_card_limit, fit_to_ask=True,
            # More like a book is more books, not whatever else its tags reach.
            product_types=product_types().find(product.title))
        found = self.search.search(request, language=conv.language, session=session)
        if not found.ranked and request.product_types:
            # Nothing else of its kind: the same person and style still make good ideas.
            request.product_types = []
            found = self.search.search(request, language=conv.language, session=session)
        cards = build_cards(found.ranked, request, market, t)
        text = t.gettext("More like {title}:").format(title=product.title) if cards else \
            t.gettext("I have nothing else like {title} right now.").format(title=product.title)
        rec = Recommendation(query=product.title, market=market,
                             intent=Intent(text=product.title, language=conv.language),
                             request=request, cards=cards, reply=text)
        return self._show(session, conv, rec, started)

    def _not_for_me(self, session: Session, conv: Conversation, market: Market, ref: str,
                    t: Translator) -> list[Message]:
        started = time.perf_counter()
        record_event(session, EventKind.NOT_FOR_ME, user_key=conv.user_key,
                     conversation_id=conv.conversation_id, market=market.code,
                     merchant=ref.partition(":")[0], product_id=ref.partition(":")[2])
        conv.excluded = (conv.excluded + [ref])[-MAX_REMEMBERED_REFS:]
        memory.remember(session=session, user_key=linking.owner_of(session, conv.user_key),
                        subject=memory.SHOPPER,
                        kind=memory.FactKind.TURNED_DOWN, value=ref)
        active = ActiveRequest.from_state(conv.last_query)
        if active is None:
            return [Message(text=t.gettext("Got it, I will not show that again."))]
        rec = self.recommend(active.intent.text, market=market, user_key=conv.user_key,
                             language=conv.language,
                             exclude=set(conv.excluded) | set(active.cards), session=session,
                             intent=active.intent)
        _remember_answer(conv, rec, active)
        rec.notes = []
        rec.reply = t.gettext("Got it. Some other options:") if rec.cards else \
            t.gettext("Got it. I have no other options for that right now.")
        return self._show(session, conv, rec, started)


# What every turn reads first, in one round trip, a new shopper's too (one row, whatever
# it finds): the conversation, the account its memory lives under, whether messages wait
# for the shopper, whether that account has any gift on record or fact remembered and was
# told how memory works, and the revision of the catalogs of the market the turn is in (the
# one asked for, else the conversation's, else the default).
_OWNER = func.coalesce(linking.OWNER_OF, bindparam("user"))
_MARKET = func.coalesce(bindparam("market", type_=String), Conversation.market,
                        bindparam("default_market", type_=String))
_TURN_COLUMNS: list[Any] = [
    linking.OWNER_OF.label("owner"), HAS_PENDING.label("queued"),
    memory.has_gifts(_OWNER).label("gifts"), memory.has_facts(_OWNER).label("facts"),
    memory.notice_state(_OWNER).label("told"),
    *(part.label(f"revision_{i}") for i, part in enumerate(revision_of(_MARKET)))]
_TABLE = Conversation.__table__  # type: ignore[attr-defined]
_CONVERSATION = [c.key for c in _TABLE.columns]
# Through the driver (`core.driver`): SQLAlchemy's execution of this statement, its cache key
# and the ORM's loading of the conversation, cost more than the round trip.
_TURN_STATE = DriverStatement(
    select(*_TABLE.columns, *_TURN_COLUMNS)
    .select_from(select(literal(1).label("one")).subquery("turn"))
    .outerjoin(_TABLE, _TABLE.c.user_key == bindparam("user")))


def _write_back(session: Session, conv: Conversation) -> None:
    """Write the conversation as the turn leaves it, with what the turn appended (its
    conversion events, facts it learned, a new privacy profile): one statement on
    PostgreSQL (`core.driver.write_together`), where the ORM's flush cost more than the
    round trip. A returning shopper's conversation is updated in the columns the turn
    changed, a new shopper's inserted (two first messages racing: `IntegrityError`, and
    the turn runs again)."""
    state = inspect(conv)
    if state.persistent:
        # As the ORM's flush: a column set to the value it had is not written, so that it
        # does not undo what another turn set there meanwhile (a `/language` choice).
        changed = tuple(sorted(name for name in state.committed_state
                               if state.attrs[name].history.has_changes()))
        values = {name: getattr(conv, name) for name in changed}
        values["conversation_key"] = conv.user_key
        if write_together(session, _update_of(changed), values, _appended(session)) != 1:
            # Deleted since the turn read it (the shopper's `/forget` on another worker):
            # nothing of this turn is kept; it runs again, as the ORM's flush would have had
            # it fail.
            raise StaleDataError(f"conversation {conv.user_key!r} was deleted meanwhile")
        session.expunge(conv)  # written: the commit's flush has nothing of it to do
    elif state.transient:
        write_together(session, _INSERT, {name: getattr(conv, name) for name in _CONVERSATION},
                       _appended(session))
    else:  # in the session already, not yet written: the ORM inserts it
        session.add(conv)


def _appended(session: Session) -> list[tuple[Any, list[dict[str, Any]]]]:
    """The rows the turn appended and has not written, taken from the session: its
    conversion events, and the new rows of tables nothing else refers to."""
    appended: list[tuple[Any, list[dict[str, Any]]]] = [(EVENTS, take_pending_rows(session))]
    new = [o for o in session.new if type(o) in _APPENDED]
    for model, columns in _APPENDED.items():
        objects = [o for o in new if type(o) is model]
        table = model.__table__  # type: ignore[attr-defined]
        appended.append((table, [{key: getattr(o, key) for key in columns} for o in objects]))
        for o in objects:
            session.expunge(o)  # written with the conversation, not by the commit's flush
    return appended


def _columns_to_write(model: Any) -> tuple[str, ...]:
    # A database-made id is left to the database.
    return tuple(c.key for c in model.__table__.columns
                 if not (c.primary_key and c.autoincrement is not False
                         and isinstance(c.type, Integer)))


_APPENDED: dict[type, tuple[str, ...]] = {model: _columns_to_write(model)
                                          for model in (MemoryFact, ShopperProfile)}


@lru_cache(maxsize=64)
def _update_of(changed: tuple[str, ...]) -> DriverStatement:
    """The UPDATE of these columns of a conversation: the columns a turn changes come in a
    handful of combinations, each compiled once."""
    return DriverStatement(
        update(_TABLE).where(_TABLE.c.user_key == bindparam("conversation_key")),
        column_keys=changed)


_INSERT = DriverStatement(insert(_TABLE), column_keys=_CONVERSATION)


def _remember_answer(conv: Conversation, rec: Recommendation,
                     refined: ActiveRequest | None) -> None:
    """Keep what was asked and shown as the active request the next message may refine."""
    refs = [c.ref for c in rec.cards]
    seen = (refined.seen if refined is not None else []) + refs
    conv.last_query = ActiveRequest(intent=rec.intent, cards=refs,
                                    prices=[c.price.amount for c in rec.cards],
                                    seen=seen).to_state()


def _deliver(conv: Conversation, notes: list[Notification]) -> list[Message]:
    """Queued messages for this turn; their cards count as shown, so their buttons work."""
    messages = [_delivered(n) for n in notes]
    cards = [c for m in messages for c in m.cards]
    if cards:
        conv.shown = (conv.shown + [c.ref for c in cards])[-MAX_REMEMBERED_REFS:]
        conv.quoted = {**conv.quoted, **{c.ref: c.price.amount for c in cards}}
    for note, message in zip(notes, messages, strict=True):
        if note.request and message.cards:
            # A reminder's ideas become the request on the table: "mais barato" refines
            # them, and buying one is a gift for the person it named.
            refs = [c.ref for c in message.cards]
            conv.last_query = ActiveRequest(
                intent=Intent.from_dict(note.request), cards=refs,
                prices=[c.price.amount for c in message.cards], seen=refs).to_state()
    return messages


def _delivered(note: Notification) -> Message:
    """A queued message as the chat shows it, with its cards."""
    return Message(text=note.text, cards=[Card.model_validate(c) for c in note.cards or []])


def _new_id() -> str:
    return "cnv_" + secrets.token_hex(8)
