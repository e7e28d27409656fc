"""Telegram channel: the webhook Telegram calls with each update, long polling for development,
and the replies sent through aiogram's `Bot` (rendered by `telegram_render`).

Button actions ("buy:merchant-slug:PRODUCT-ID") can be longer than the 64 bytes Telegram keeps
as a button's callback data: each button carries a short random token instead, mapped to its
action in `TelegramButton` and resolved only for the chat it was sent to.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol, TypeVar

from aiogram import BaseMiddleware, Bot, Dispatcher, F, Router
from aiogram.client.session.middlewares.base import (
    BaseRequestMiddleware,
    NextRequestMiddlewareType,
)
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramAPIError,
    TelegramBadRequest,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.filters import Command
from aiogram.filters.callback_data import CallbackData
from aiogram.methods import Response, TelegramMethod
from aiogram.methods.base import TelegramType
from aiogram.types import (
    BotCommand,
    BufferedInputFile,
    CallbackQuery,
    InlineKeyboardMarkup,
    TelegramObject,
    Update,
)
from aiogram.types import Message as TelegramMessage
from aiogram.utils.keyboard import InlineKeyboardBuilder
from aiohttp import ClientConnectorError
from anyio import to_thread
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy import BigInteger
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Field, Session, SQLModel

from bot.channels.rate_limit import Admission, RateLimit, slow_down_message
from bot.channels.telegram_render import Outgoing, render
from bot.conversation import Assistant
from bot.models import Conversation, TelegramButton
from bot.privacy import COMMANDS
from bot.replies import Message, unreadable_message
from core.db import insert_once, utcnow
from core.errors import InvalidInput, NotFound, SignatureError
from core.i18n import N_, Translator, language_of
from core.markets import get_market
from core.shared_state import Claim, LocalState, SharedState, once

log = logging.getLogger(__name__)
router = APIRouter(prefix="/webhooks/telegram", tags=["telegram"])
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
TOKEN_BYTES = 9  # 12 url-safe characters: 72 random bits
STALE_BUTTON = ("That button is no longer valid. Tell me what you are looking for and I will "
                "show fresh options.")

T = TypeVar("T")
# How soon Telegram is asked to deliver again an update another process is applying.
RETRY_AFTER_S = 5


class Delivery(StrEnum):
    """What became of one update."""

    APPLIED = "applied"
    REDELIVERED = "redelivered"  # applied before: acknowledged, nothing done
    IN_FLIGHT = "in_flight"  # another process is applying it now: Telegram sends it again


class RunAsync(Protocol):
    """Runs a coroutine function on the event loop the `Bot`'s HTTP session lives on, from a
    worker thread, and returns its result (`Runtime.call_live`)."""

    def __call__(self, func: Callable[..., Awaitable[T]], *args: object) -> T: ...


class RetryRequests(BaseRequestMiddleware):
    """Retries a Bot API call that Telegram's flood control refused (429, waiting the
    `retry_after` it asks for) or that failed on Telegram's side (5xx, with backoff).

    A network error is not retried here: the message may have gone out, and sending it again
    would show it twice. A wait longer than `max_wait_s` is not waited for, so a webhook is
    never held long; queued messages are pushed again on a later run.
    """

    def __init__(self, *, attempts: int = 3, backoff_s: float = 0.5, max_wait_s: float = 10.0,
                 sleep: Callable[[float], Awaitable[object]] = asyncio.sleep) -> None:
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s
        self.max_wait_s = max_wait_s
        self.sleep = sleep  # injected so tests run the retry path without waiting

    async def __call__(self, make_request: NextRequestMiddlewareType[TelegramType], bot: Bot,
                       method: TelegramMethod[TelegramType]) -> Response[TelegramType]:
        for attempt in range(1, self.attempts + 1):
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as exc:
                wait = float(exc.retry_after)
                if attempt == self.attempts or wait > self.max_wait_s:
                    raise
            except TelegramServerError:
                if attempt == self.attempts:
                    raise
                wait = self.backoff_s * 2 ** (attempt - 1)
            log.warning("telegram %s refused, try %d of %d in %.1f s",
                        type(method).__name__, attempt, self.attempts, wait)
            await self.sleep(wait)
        raise AssertionError("unreachable")


class TelegramUpdateSeen(SQLModel, table=True):
    """An update already applied: Telegram delivers an update again when unsure."""

    update_id: int = Field(primary_key=True, sa_type=BigInteger,
                           sa_column_kwargs={"autoincrement": False})
    received_at: datetime = Field(default_factory=utcnow)


class ButtonToken(CallbackData, prefix="v"):
    """A button's callback data: "v:<token>", 14 bytes."""

    token: str


@dataclass(frozen=True)
class Inbound:
    """One update reduced to what the assistant reads: a text, or a button's token."""

    chat_id: int
    text: str | None = None
    token: str | None = None
    callback_id: str | None = None
    language_code: str | None = None

    @property
    def user_key(self) -> str:
        return f"tg:{self.chat_id}"


def first_time(engine: Engine, update_id: int) -> bool:
    """Record an update id; False when it was already recorded (a redelivery)."""
    return insert_once(engine, TelegramUpdateSeen(update_id=update_id))


def claim_update(engine: Engine, shared: SharedState | None, update_id: int) -> Claim:
    """Claim an update id across processes (`shared`), then record it in the database."""
    return once(shared, f"once:tg:{update_id}", lambda: first_time(engine, update_id))


def remember_action(engine: Engine, *, user_key: str, action: str) -> str:
    """A new token for a button's action in one chat."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    with Session(engine) as session:
        session.add(TelegramButton(token=token, user_key=user_key, action=action))
        session.commit()
    return token


def action_of(engine: Engine, *, user_key: str, token: str) -> str | None:
    """The action behind a token sent to this chat; None when unknown or another chat's."""
    if not token:
        return None
    with Session(engine) as session:
        button = session.get(TelegramButton, token)
    if button is None or not hmac.compare_digest(button.user_key, user_key):
        return None
    return button.action


@dataclass
class TelegramChannel:
    """Applies updates once each and sends the assistant's replies through `bot`.

    Blocking (the assistant and the database): call `apply` from a worker thread; the Bot API
    calls run on `run`'s event loop.
    """

    bot: Bot
    engine: Engine
    assistant: Assistant
    run: RunAsync
    # Update ids claimed across processes, and the shoppers' rate limit (none when None).
    shared: SharedState = field(default_factory=LocalState)
    rate_limit: RateLimit | None = None
    dispatcher: Dispatcher = field(init=False)

    def __post_init__(self) -> None:
        self.dispatcher = build_dispatcher(self)

    def apply(self, update: Update) -> Delivery:
        """Answer an update not seen before."""
        try:
            result = self.run(functools.partial(self.dispatcher.feed_update, self.bot, update))
        except Exception:
            # The update id is recorded: Telegram's redelivery would fail the same way.
            log.exception("telegram update %s could not be answered", update.update_id)
            return Delivery.APPLIED
        if result in (Delivery.REDELIVERED, Delivery.IN_FLIGHT):
            return Delivery(result)
        return Delivery.APPLIED

    def answer(self, inbound: Inbound, action: str | None = None) -> None:
        """The assistant's reply to a text or a button's action, sent to the chat; a request
        to wait instead when the shopper writes faster than the rate limit."""
        if self._refused(inbound, action):
            return
        self._reply(inbound, action)

    def _refused(self, inbound: Inbound, action: str | None) -> bool:
        """Whether the shopper is past the rate limit; told so once a window, in the chat."""
        admission = self._admit(inbound, action)
        if not admission.allowed and admission.tell:
            self.push(inbound.user_key, self._slow_down(inbound),
                      locale=self._locale(inbound.user_key))
        return not admission.allowed

    def _reply(self, inbound: Inbound, action: str | None) -> None:
        reply = self.assistant.handle(user_key=inbound.user_key, text=inbound.text,
                                      action=action, locale=inbound.language_code)
        locale = self._locale(inbound.user_key)
        for message in reply.messages:
            self.push(inbound.user_key, message, locale=locale)

    def press(self, inbound: Inbound) -> None:
        """A press on one of Vitrine's buttons: its action, if the token is this chat's."""
        action = action_of(self.engine, user_key=inbound.user_key, token=inbound.token or "")
        if action is None:
            self._answer_callback(inbound.callback_id or "", self._stale_text(inbound))
            return
        if not self._admit(inbound, action).allowed:
            # Told on the button itself (a toast), which has to be answered anyway.
            self._answer_callback(inbound.callback_id or "", self._slow_down(inbound).text)
            return
        # Stops the button's spinner before the (slower) answer arrives.
        self._answer_callback(inbound.callback_id or "", None)
        self._reply(inbound, action)

    def decline(self, inbound: Inbound) -> None:
        """A photo, a sticker, a voice note: the shopper learns what Vitrine reads."""
        if self._refused(inbound, None):
            return
        conv = self._conversation(inbound.user_key)
        language = conv.language if conv else language_of(inbound.language_code)
        self.push(inbound.user_key, unreadable_message(Translator(language)),
                  locale=self._locale(inbound.user_key))

    # A push channel (`bot.channels.push`): Telegram lets a bot write at any time.
    prefix = "tg:"

    def push(self, user_key: str, message: Message, *, locale: str) -> bool:
        """Send one bot message to its chat; whether any of it went out."""
        chat_id = int(user_key.removeprefix(self.prefix))
        went = False
        for outgoing in render(message, locale=locale):
            went = self.send(chat_id, outgoing, user_key=user_key) or went
        return went

    def send(self, chat_id: int, outgoing: Outgoing, *, user_key: str) -> bool:
        """Send one Bot API message; whether it went out, or may have (a network error after
        the request left). A failure is logged, never raised to the webhook."""
        try:
            markup = self.keyboard(outgoing, user_key=user_key)
            if outgoing.photo or outgoing.upload:
                try:
                    self.run(functools.partial(
                        self.bot.send_photo, chat_id=chat_id, photo=self._photo(outgoing),
                        caption=outgoing.html or None, parse_mode="HTML",
                        reply_markup=markup))
                    return True
                except TelegramBadRequest as exc:
                    # Telegram could not fetch or read the picture: the card still goes out.
                    log.warning("telegram photo %s refused (%s): sent as text",
                                outgoing.photo or "upload", exc.message)
                    if not outgoing.html:
                        return False
            self.run(functools.partial(
                self.bot.send_message, chat_id=chat_id, text=outgoing.html, parse_mode="HTML",
                reply_markup=markup, disable_web_page_preview=True))
            return True
        except TelegramNetworkError as exc:
            if isinstance(exc.__cause__, ClientConnectorError):
                log.error("telegram message to chat %s not sent: %s", chat_id, exc)
                return False  # never reached Telegram: safe to send again
            # A timeout or a cut connection: Telegram may have it, and sending it again
            # could show it twice.
            log.error("telegram message to chat %s may not have been sent: %s", chat_id, exc)
            return True
        except (TelegramAPIError, ClientDecodeError) as exc:
            log.error("telegram message to chat %s not sent: %s", chat_id, exc)
            return False
        except SQLAlchemyError as exc:  # the buttons' tokens could not be stored
            log.error("telegram message to chat %s not sent: %s", chat_id, exc)
            return False

    @staticmethod
    def _photo(outgoing: Outgoing) -> str | BufferedInputFile:
        if outgoing.upload is not None:
            return BufferedInputFile(outgoing.upload, filename="qr.png")
        return outgoing.photo or ""

    def keyboard(self, outgoing: Outgoing, *, user_key: str) -> InlineKeyboardMarkup | None:
        if not outgoing.buttons:
            return None
        builder = InlineKeyboardBuilder()
        for button in outgoing.buttons:
            token = remember_action(self.engine, user_key=user_key, action=button.action)
            builder.button(text=button.label, callback_data=ButtonToken(token=token))
        builder.adjust(*outgoing.rows, repeat=False)
        return builder.as_markup()

    def _answer_callback(self, callback_id: str, text: str | None) -> None:
        try:
            self.run(functools.partial(self.bot.answer_callback_query,
                                       callback_query_id=callback_id, text=text))
        except TelegramAPIError as exc:
            # An answer later than Telegram waits for is refused; the reply still goes out.
            log.warning("telegram callback %s not answered: %s", callback_id, exc)

    def _admit(self, inbound: Inbound, action: str | None) -> Admission:
        if self.rate_limit is None:
            return Admission(allowed=True)
        return self.rate_limit.admit(inbound.user_key, action=action)

    def _slow_down(self, inbound: Inbound) -> Message:
        return slow_down_message(self.engine, inbound.user_key,
                                 language=language_of(inbound.language_code))

    def _conversation(self, user_key: str) -> Conversation | None:
        with Session(self.engine) as session:
            return session.get(Conversation, user_key)

    def _stale_text(self, inbound: Inbound) -> str:
        conv = self._conversation(inbound.user_key)
        language = conv.language if conv else language_of(inbound.language_code)
        return Translator(language).gettext(STALE_BUTTON)

    def _locale(self, user_key: str) -> str:
        conv = self._conversation(user_key)
        return get_market(conv.market).locale if conv else "en"


# The webhook.

def channel_of(request: Request) -> TelegramChannel:
    channel: TelegramChannel | None = request.app.state.runtime.telegram_channel()
    if channel is None:
        raise NotFound("Telegram is not configured")
    return channel


@router.post("", response_model=None)
async def receive(request: Request) -> dict[str, bool] | JSONResponse:
    """Apply one update once and send the replies."""
    secret = request.app.state.runtime.settings.telegram_webhook_secret
    given = request.headers.get(SECRET_HEADER, "")
    if not secret or not hmac.compare_digest(given.encode("utf-8"), secret.encode("utf-8")):
        raise SignatureError(f"missing or wrong {SECRET_HEADER}")
    channel = channel_of(request)
    try:
        update = Update.model_validate_json(await request.body())
    except ValidationError as exc:
        raise InvalidInput("not a Telegram update") from exc
    delivery = await to_thread.run_sync(channel.apply, update)
    if delivery == Delivery.IN_FLIGHT:
        # Not acknowledged: should the other process die before recording it, Telegram's
        # next delivery is applied here or elsewhere.
        return JSONResponse({"applied": False}, status_code=503,
                            headers={"Retry-After": str(RETRY_AFTER_S)})
    # No "method" in the answer: Telegram reads a webhook's answer as a Bot API call.
    return {"applied": delivery == Delivery.APPLIED}


async def register_webhook(bot: Bot, *, public_url: str, secret: str | None) -> str:
    """Point the bot's updates at this deployment's `POST /webhooks/telegram`; the URL set.

    Raises:
        InvalidInput: the public URL is not https, or no secret is set; Telegram calls only
            https webhooks, and Vitrine answers only calls carrying the secret.
    """
    url = public_url.rstrip("/") + router.prefix
    if not url.startswith("https://"):
        raise InvalidInput(f"Telegram calls webhooks only over https; VITRINE_PUBLIC_URL is "
                           f"{public_url!r}")
    if not secret:
        raise InvalidInput("set VITRINE_TELEGRAM_WEBHOOK_SECRET: Telegram sends it with each "
                           "update, and updates without it are refused")
    await bot.set_webhook(url=url, secret_token=secret,
                          allowed_updates=["message", "callback_query"])
    return url


# The command menu Telegram shows when the shopper types "/", in each of Vitrine's languages
# (Telegram picks it by the user's app language); every name is one `COMMANDS` knows.
MENU = {
    "en": ("start", "help", "memory", "forget", "orders", "limit", "reminders", "language",
           "market"),
    "pt": ("start", "ajuda", "memoria", "esquecer", "pedidos", "limite", "lembretes",
           "idioma", "mercado"),
    "es": ("start", "ayuda", "memoria", "olvidar", "pedidos", "limite", "recordatorios",
           "idioma", "mercado"),
}
MENU_DESCRIPTIONS = {
    "start": N_("Start: what I can do"), "help": N_("Examples of what to ask"),
    "memory": N_("What I remember about your people"), "forget": N_("Delete what I remember"),
    "orders": N_("Your orders, and cancelling one"), "limit": N_("Your spending limits"),
    "reminders": N_("Gift reminders on or off"), "language": N_("Change the language"),
    "market": N_("Change the country you shop in"),
}


async def publish_commands(bot: Bot) -> None:
    """Set the bot's command menu in English (the default), Portuguese and Spanish."""
    for language, names in MENU.items():
        t = Translator(language)
        commands = [BotCommand(command=name,
                               description=t.gettext(MENU_DESCRIPTIONS[COMMANDS[name]]))
                    for name in names]
        await bot.set_my_commands(commands, language_code=None if language == "en"
                                  else language)


# The updates, routed by feature.

class OnceOnly(BaseMiddleware):
    """Lets each update id through once: Telegram delivers an update again when unsure, and
    the webhook and long polling alike must not answer it twice."""

    def __init__(self, engine: Engine, shared: SharedState | None = None) -> None:
        self.engine = engine
        self.shared = shared

    async def __call__(self, handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
                       event: TelegramObject, data: dict[str, Any]) -> Any:
        update_id = getattr(event, "update_id", None)
        if update_id is None:
            return await handler(event, data)
        claim = await to_thread.run_sync(claim_update, self.engine, self.shared, update_id)
        if claim == Claim.IN_FLIGHT:
            log.info("telegram update %s is being applied by another process", update_id)
            return Delivery.IN_FLIGHT
        if claim == Claim.DONE:
            log.info("telegram update %s already applied", update_id)
            return Delivery.REDELIVERED
        return await handler(event, data)


def build_dispatcher(channel: TelegramChannel) -> Dispatcher:
    """aiogram's dispatcher for the channel, one router per feature, wired explicitly:

    - commands: `/start`, `/help`, `/memory`, `/forget`, `/language`, `/market` and the rest,
      in every language Vitrine speaks, matched by Telegram's rules (`/forget@ThisBot` in a
      group, never another bot's);
    - buttons: a press on one of Vitrine's buttons, or on a stale or foreign one;
    - messages: text, and anything else (a photo, a voice note) politely declined.

    Each update is applied once (`OnceOnly`); the conversation, which blocks, runs in a worker
    thread.
    """
    async def on_text(message: TelegramMessage) -> None:
        await to_thread.run_sync(channel.answer, _inbound(message))

    async def on_other(message: TelegramMessage) -> None:
        await to_thread.run_sync(channel.decline, _inbound(message))

    async def on_button(callback: CallbackQuery, callback_data: ButtonToken) -> None:
        await to_thread.run_sync(channel.press, _pressed(callback, callback_data.token))

    async def on_unknown_button(callback: CallbackQuery) -> None:
        await to_thread.run_sync(channel.press, _pressed(callback, ""))

    commands = Router(name="commands")
    commands.message.register(on_text, F.text, Command(*COMMANDS, ignore_case=True))
    buttons = Router(name="buttons")
    buttons.callback_query.register(on_button, ButtonToken.filter())
    buttons.callback_query.register(on_unknown_button)
    messages = Router(name="messages")
    messages.message.register(on_text, F.text, not_for_another_bot)
    messages.message.register(on_other, F.chat.type == "private", ~F.text)
    # No conversation state lives in aiogram: the assistant keeps it in the database, which
    # every process shares, so aiogram needs no FSM storage (in memory or in Redis) and its
    # per-update state lookup is skipped.
    dispatcher = Dispatcher(name="vitrine", disable_fsm=True)
    dispatcher.update.outer_middleware(OnceOnly(channel.engine, channel.shared))
    dispatcher.include_routers(commands, buttons, messages)
    return dispatcher


ADDRESSED = re.compile(r"^/\w+@(\w+)")


async def not_for_another_bot(message: TelegramMessage, bot: Bot) -> bool:
    """False for a command addressed to another bot in a group ("/start@OtherBot")."""
    addressed = ADDRESSED.match(message.text or "")
    if addressed is None:
        return True
    me = await bot.me()
    return addressed.group(1).lower() == (me.username or "").lower()


def _inbound(message: TelegramMessage) -> Inbound:
    return Inbound(chat_id=message.chat.id, text=message.text,
                   language_code=message.from_user.language_code if message.from_user
                   else None)


def _pressed(callback: CallbackQuery, token: str) -> Inbound:
    # A button under an inline-mode message has no chat: the private chat's id is the user's.
    chat_id = callback.message.chat.id if callback.message else callback.from_user.id
    return Inbound(chat_id=chat_id, token=token, callback_id=callback.id,
                   language_code=callback.from_user.language_code)


# Long polling, for development.

class TelegramPolling:
    """aiogram's long polling through the channel's dispatcher, each update applied as the
    webhook applies it. `run` and `stop` run on the channel's event loop (`channel.run`)."""

    def __init__(self, channel: TelegramChannel) -> None:
        self.channel = channel

    async def run(self) -> None:
        # Telegram refuses getUpdates while a webhook is set.
        await self.channel.bot.delete_webhook()
        await self.channel.dispatcher.start_polling(self.channel.bot, handle_signals=False,
                                                    close_bot_session=False)

    async def stop(self) -> None:
        try:
            await self.channel.dispatcher.stop_polling()
        except RuntimeError:  # not started yet
            pass
