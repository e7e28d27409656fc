"""WhatsApp Cloud API channel: the webhook Meta calls (`GET` to verify it, `POST` with
messages) and the reply rendered within WhatsApp's message limits."""

from __future__ import annotations

import hmac
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from anyio import to_thread
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field as SqlField
from sqlmodel import Session, SQLModel

from bot.channels.cards import ELLIPSIS, card_caption, cut, numbered, split_text
from bot.channels.media import shareable_image
from bot.channels.rate_limit import RateLimit, slow_down_message
from bot.channels.whatsapp_api import WhatsAppApi
from bot.conversation import INBOX_ACTION, Assistant
from bot.models import Conversation
from bot.replies import Message, unreadable_message
from catalog.cards import Button, Card
from checkout import qr
from checkout.signatures import verify_sha256_header
from core.db import insert_once, session_scope, utcnow
from core.errors import InvalidInput, NotFound, SignatureError
from core.i18n import Translator
from core.markets import get_market
from core.settings import Settings
from core.shared_state import Claim, SharedState, once

log = logging.getLogger(__name__)
router = APIRouter(prefix="/webhooks/whatsapp", tags=["whatsapp"])
SIGNATURE_HEADER = "X-Hub-Signature-256"
# How soon Meta is asked to deliver again a message another process is applying.
RETRY_AFTER_S = 5

# WhatsApp's limits (Cloud API reference, "Messages").
TEXT_MAX = 4096
CAPTION_MAX = 1024
BODY_MAX = 1024
REPLY_BUTTONS_MAX = 3
BUTTON_TITLE_MAX = 20
BUTTON_ID_MAX = 256
ROW_ID_MAX = 200
LIST_ROWS_MAX = 10
ROW_TITLE_MAX = 24
ROW_DESCRIPTION_MAX = 72
TEMPLATE_PARAM_MAX = 1024
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")  # the image formats WhatsApp sends
# Free text may be sent only this long after the shopper's last message; then templates.
# Vitrine keeps an hour clear of the edge: the time it holds is when it answered, and a
# text accepted just before the window closes can still fail to deliver after.
CUSTOMER_WINDOW = timedelta(hours=24)
WINDOW_MARGIN = timedelta(hours=1)
# The template language registered for each of Vitrine's languages.
TEMPLATE_LANGUAGES = {"pt": "pt_BR", "es": "es", "en": "en"}
# The list's opening button needs a label; a symbol reads the same in every language.
LIST_BUTTON = "☰"
# A shopper's first message picks the market from the country calling code of the number.
CALLING_CODES = {"55": "BR", "54": "AR", "57": "CO", "52": "MX", "91": "IN", "34": "ES",
                 "1": "US",
                 # The rest of the euro area shops in the EU market.
                 "49": "EU", "33": "EU", "39": "EU", "31": "EU", "32": "EU", "351": "EU",
                 "353": "EU", "43": "EU", "30": "EU", "358": "EU", "352": "EU", "386": "EU",
                 "421": "EU", "372": "EU", "371": "EU", "370": "EU", "356": "EU", "357": "EU",
                 "385": "EU"}


class WhatsAppMessageSeen(SQLModel, table=True):
    """A WhatsApp message id already applied: Meta delivers a message again when unsure."""

    message_id: str = SqlField(primary_key=True, max_length=256)
    received_at: datetime = SqlField(default_factory=utcnow)


# The Cloud API's webhook payload, only the parts read; anything else is ignored.
class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class _Text(_Lenient):
    body: str = ""


class _Reply(_Lenient):
    id: str
    title: str = ""


class _Interactive(_Lenient):
    type: str
    button_reply: _Reply | None = None
    list_reply: _Reply | None = None


class _TemplateButton(_Lenient):
    payload: str | None = None
    text: str = ""


class _Message(_Lenient):
    sender: str = Field(alias="from")
    id: str
    type: str
    text: _Text | None = None
    interactive: _Interactive | None = None
    button: _TemplateButton | None = None


class _Profile(_Lenient):
    name: str | None = None


class _Contact(_Lenient):
    wa_id: str | None = None
    profile: _Profile | None = None


class _Error(_Lenient):
    code: int | None = None
    title: str = ""


class _Status(_Lenient):
    id: str
    status: str
    timestamp: str | None = None
    errors: list[_Error] = Field(default_factory=list)


class _Value(_Lenient):
    messages: list[_Message] = Field(default_factory=list)
    statuses: list[_Status] = Field(default_factory=list)
    contacts: list[_Contact] = Field(default_factory=list)


class _Change(_Lenient):
    field: str = ""
    value: _Value = Field(default_factory=_Value)


class _Entry(_Lenient):
    changes: list[_Change] = Field(default_factory=list)


class _Event(_Lenient):
    object: str = ""
    entry: list[_Entry] = Field(default_factory=list)


class Inbound(BaseModel):
    """One shopper's message, reduced to what the assistant reads: text or a button's action."""

    message_id: str
    sender: str
    name: str | None = None
    text: str | None = None
    action: str | None = None
    # A photo, a voice note, a location: answered with what Vitrine reads.
    readable: bool = True


class StatusUpdate(BaseModel):
    """What WhatsApp says became of a message Vitrine sent."""

    message_id: str
    status: str  # sent, delivered, read or failed
    at: datetime | None = None
    error_code: int | None = None
    error_title: str | None = None


class Parsed(NamedTuple):
    inbound: list[Inbound]
    skipped: int  # messages of a type the bot cannot read (images, audio, locations)
    statuses: list[StatusUpdate]


def parse_event(body: bytes) -> Parsed:
    """The shoppers' messages in a webhook body, the statuses of messages sent to them, and
    how many messages the bot cannot read were skipped.

    Raises:
        InvalidInput: the body is not the Cloud API's JSON.
    """
    try:
        event = _Event.model_validate(json.loads(body))
    except (ValueError, ValidationError) as exc:
        raise InvalidInput("not a WhatsApp Cloud API event") from exc
    inbound: list[Inbound] = []
    statuses: list[StatusUpdate] = []
    skipped = 0
    for change in (c for e in event.entry for c in e.changes):
        value = change.value
        names = {c.wa_id: c.profile.name for c in value.contacts if c.profile}
        for status in value.statuses:
            error = status.errors[0] if status.errors else None
            statuses.append(StatusUpdate(
                message_id=status.id, status=status.status, at=_unix_time(status.timestamp),
                error_code=error.code if error else None,
                error_title=error.title or None if error else None))
        for msg in value.messages:
            text, action = _read(msg)
            if text is None and action is None:
                skipped += 1
                log.info("whatsapp message %s of type %s not readable", msg.id, msg.type)
                inbound.append(Inbound(message_id=msg.id, sender=msg.sender, readable=False))
                continue
            inbound.append(Inbound(message_id=msg.id, sender=msg.sender,
                                   name=names.get(msg.sender), text=text, action=action))
    return Parsed(inbound, skipped, statuses)


def _unix_time(value: str | None) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value or ""), tz=UTC)
    except (ValueError, OverflowError, OSError):
        return None


# Later statuses win; a "delivered" arriving after "read" changes nothing.
STATUS_RANK = {"sent": 1, "delivered": 2, "read": 3, "failed": 4}


class WhatsAppStatus(SQLModel, table=True):
    """What WhatsApp last said of a message Vitrine sent. Holds no phone number: the
    message id alone leads back to nobody."""

    message_id: str = SqlField(primary_key=True, max_length=256)
    status: str = SqlField(max_length=16)
    error_code: int | None = None
    error_title: str | None = SqlField(default=None, max_length=200)
    reported_at: datetime | None = None
    recorded_at: datetime = SqlField(default_factory=utcnow)


def record_statuses(engine: Engine, statuses: list[StatusUpdate]) -> None:
    """Keep the furthest status of each message; failures are logged with Meta's reason."""
    for update in statuses:
        if update.status == "failed":
            log.warning("whatsapp message %s failed: %s %s", update.message_id,
                        update.error_code, update.error_title)
    for attempt in (1, 2):
        try:
            _record(engine, statuses)
            return
        except IntegrityError:
            # "sent" and "delivered" came in two webhooks at once and both found no row:
            # the row is there now, and the second try updates it.
            if attempt == 2:
                raise


def _record(engine: Engine, statuses: list[StatusUpdate]) -> None:
    if not statuses:
        return
    with session_scope(engine) as session:
        for update in statuses:
            row = session.get(WhatsAppStatus, update.message_id)
            if row is not None and \
                    STATUS_RANK.get(update.status, 0) < STATUS_RANK.get(row.status, 0):
                continue
            row = row or WhatsAppStatus(message_id=update.message_id, status=update.status)
            row.status = update.status[:16]
            row.error_code = update.error_code
            row.error_title = (update.error_title or "")[:200] or None
            row.reported_at, row.recorded_at = update.at, utcnow()
            session.add(row)


def _read(msg: _Message) -> tuple[str | None, str | None]:
    if msg.type == "text" and msg.text is not None:
        return msg.text.body, None
    if msg.type == "interactive" and msg.interactive is not None:
        reply = msg.interactive.button_reply or msg.interactive.list_reply
        return (None, reply.id) if reply else (None, None)
    if msg.type == "button" and msg.button is not None:
        # A template's quick-reply button: its payload is our action, else its text is read.
        if msg.button.payload:
            return None, msg.button.payload
        return msg.button.text, None
    return None, None


def first_time(engine: Engine, message_id: str) -> bool:
    """Record a message id; False when it was already recorded (a redelivery)."""
    return insert_once(engine, WhatsAppMessageSeen(message_id=message_id))


def claim_message(engine: Engine, shared: SharedState | None, message_id: str) -> Claim:
    """Claim a message id across processes (`shared`), then record it in the database."""
    return once(shared, f"once:wa:{message_id}", lambda: first_time(engine, message_id))


# Rendering: one bot `Message` becomes one or more WhatsApp messages.

def text_message(text: str) -> dict[str, Any]:
    return {"type": "text", "text": {"body": text, "preview_url": False}}


def image_message(url: str, caption: str | None = None) -> dict[str, Any]:
    image = {"link": url}
    if caption:
        image["caption"] = cut(caption, CAPTION_MAX)
    return {"type": "image", "image": image}


def choices_message(body: str, buttons: list[Button]) -> list[dict[str, Any]]:
    """Buttons as reply buttons (up to three) or else as lists of up to ten rows; the body
    goes with the first list, later ones only continue it."""
    id_max = BUTTON_ID_MAX if len(buttons) <= REPLY_BUTTONS_MAX else ROW_ID_MAX
    usable = [b for b in buttons if 0 < len(b.action) <= id_max]
    if len(usable) < len(buttons):
        log.warning("whatsapp: %d button(s) with an action too long dropped",
                    len(buttons) - len(usable))
    if not usable:
        return [text_message(body)]
    body = cut(body, BODY_MAX)
    if len(usable) <= REPLY_BUTTONS_MAX:
        return [{"type": "interactive", "interactive": {
            "type": "button", "body": {"text": body},
            "action": {"buttons": [
                {"type": "reply", "reply": {"id": b.action,
                                            "title": cut(b.label, BUTTON_TITLE_MAX)}}
                for b in usable]}}}]
    lists = []
    for start in range(0, len(usable), LIST_ROWS_MAX):
        rows = []
        for b in usable[start:start + LIST_ROWS_MAX]:
            row = {"id": b.action, "title": cut(b.label, ROW_TITLE_MAX)}
            if len(b.label) > ROW_TITLE_MAX:  # the whole label stays readable below
                row["description"] = cut(b.label, ROW_DESCRIPTION_MAX)
            rows.append(row)
        lists.append({"type": "interactive", "interactive": {
            "type": "list", "body": {"text": body if start == 0 else ELLIPSIS},
            "action": {"button": LIST_BUTTON, "sections": [{"rows": rows}]}}})
    return lists


def card_messages(card: Card, locale: str = "en") -> list[dict[str, Any]]:
    """A product card: its picture with title, price and reason, then its buttons. A picture
    WhatsApp cannot fetch or show (SVG, a development server's) is left out."""
    caption = card_caption(card, locale, CAPTION_MAX)
    sent: list[dict[str, Any]] = []
    image = shareable_image(card.image_url, IMAGE_SUFFIXES)
    if image:
        sent.append(image_message(image, caption))
        body = cut(f"{card.title} · {card.price_text}", BODY_MAX)
    else:
        body = caption
    if card.buttons:
        sent += choices_message(body, card.buttons)
    elif not image:
        sent.append(text_message(caption))
    return sent


def cards_messages(cards: list[Card], locale: str = "en") -> list[dict[str, Any]]:
    """Cards with pictures one by one; cards none of which has a picture WhatsApp can show,
    as one numbered list whose buttons say which card they act on."""
    if len(cards) > 1 and not any(shareable_image(c.image_url, IMAGE_SUFFIXES)
                                  for c in cards):
        text, buttons = numbered(cards, locale, BODY_MAX)
        return choices_message(text, buttons) if buttons else [text_message(text)]
    return [m for card in cards for m in card_messages(card, locale)]


def template_message(name: str, *, language: str, params: list[str],
                     button_payload: str | None = None) -> dict[str, Any]:
    """A pre-approved template with its body's parameters in order and, when given, the
    payload its first quick-reply button sends back."""
    components: list[dict[str, Any]] = [{"type": "body", "parameters": [
        {"type": "text", "text": template_param(p)} for p in params]}]
    if button_payload is not None:
        components.append({"type": "button", "sub_type": "quick_reply", "index": "0",
                           "parameters": [{"type": "payload", "payload": button_payload}]})
    return {"type": "template", "template": {
        "name": name, "language": {"code": TEMPLATE_LANGUAGES.get(language, language)},
        "components": components}}


def template_param(text: str) -> str:
    """A template parameter as WhatsApp takes it: one line, no tabs, no run of more than four
    spaces, within its length."""
    return cut(" ".join(text.split()), TEMPLATE_PARAM_MAX)


def render(message: Message, *, picture_id: str | None = None,
           locale: str = "en") -> list[dict[str, Any]]:
    """A bot message as WhatsApp messages, in the order they are sent. Its picture (a
    payment's QR code) goes by `picture_id` when uploaded, else by link when WhatsApp can
    fetch it."""
    sent: list[dict[str, Any]] = []
    picture: dict[str, Any] | None = None
    if picture_id:
        picture = {"type": "image", "image": {"id": picture_id}}
    elif link := shareable_image(message.image_url, IMAGE_SUFFIXES):
        picture = image_message(link)
    parts = split_text(message.text, TEXT_MAX)
    if message.buttons:
        # Buttons need a body of at most 1,024 characters: the text's last part carries them.
        parts = parts or [""]
        if len(parts[-1]) > BODY_MAX:
            parts[-1:] = split_text(parts[-1], BODY_MAX)
        *before, body = parts
        sent += [text_message(p) for p in before]
        if picture:
            sent.append(picture)
        sent += choices_message(body or "…", message.buttons)
    else:
        sent += [text_message(p) for p in parts]
        if picture:
            sent.append(picture)
    return sent + cards_messages(message.cards, locale)


# The webhook.

def _settings(request: Request) -> Settings:
    return request.app.state.runtime.settings


def _graph(request: Request) -> WhatsAppApi:
    api: WhatsAppApi | None = request.app.state.runtime.whatsapp
    if api is None:
        raise NotFound("WhatsApp is not configured")
    return api


@router.get("", response_class=PlainTextResponse)
def verify(request: Request, mode: str = Query("", alias="hub.mode"),
           token: str = Query("", alias="hub.verify_token"),
           challenge: str = Query("", alias="hub.challenge")) -> PlainTextResponse:
    """Answer Meta's subscription check with its challenge when the verify token matches."""
    expected = _settings(request).whatsapp_verify_token
    if mode == "subscribe" and expected and hmac.compare_digest(
            token.encode("utf-8"), expected.encode("utf-8")):
        return PlainTextResponse(challenge)
    return PlainTextResponse("forbidden", status_code=403)


@router.post("", response_model=None)
async def receive(request: Request) -> dict[str, int] | JSONResponse:
    """Apply shoppers' messages once each and send the replies."""
    body = await request.body()
    secret = _settings(request).whatsapp_app_secret
    if not secret or not verify_sha256_header(secret=secret, body=body,
                                              header=request.headers.get(SIGNATURE_HEADER)):
        raise SignatureError("missing or wrong X-Hub-Signature-256")
    inbound, skipped, statuses = parse_event(body)
    runtime, api = request.app.state.runtime, _graph(request)
    # The database, the assistant and the Graph API client block: off the event loop.
    await to_thread.run_sync(record_statuses, runtime.engine, statuses)
    done = await to_thread.run_sync(lambda: apply_messages(
        inbound, engine=runtime.engine, assistant=runtime.assistant, api=api,
        shared=runtime.shared, rate_limit=runtime.rate_limit))
    answer = {"applied": done.applied, "duplicates": done.duplicates, "skipped": skipped,
              "statuses": len(statuses)}
    if done.limited:
        answer["limited"] = done.limited
    if done.in_flight:
        # Not acknowledged: Meta delivers the call again, and whatever of it was applied
        # meanwhile (here or in the other process) is then a duplicate.
        return JSONResponse({**answer, "in_flight": done.in_flight}, status_code=503,
                            headers={"Retry-After": str(RETRY_AFTER_S)})
    return answer


@dataclass
class Applied:
    """What became of one webhook call's messages."""

    applied: int = 0  # answered by the assistant
    duplicates: int = 0  # readable messages applied before
    limited: int = 0  # past the shopper's rate limit: not processed
    in_flight: int = 0  # being applied by another process right now


def apply_messages(inbound: list[Inbound], *, engine: Engine, assistant: Assistant,
                   api: WhatsAppApi, shared: SharedState | None = None,
                   rate_limit: RateLimit | None = None) -> Applied:
    """Answer each message not seen before, unless its shopper is past the rate limit."""
    done = Applied()
    for msg in inbound:
        claim = claim_message(engine, shared, msg.message_id)
        if claim == Claim.IN_FLIGHT:
            log.info("whatsapp message %s is being applied by another process",
                     msg.message_id)
            done.in_flight += 1
            continue
        if claim == Claim.DONE:
            log.info("whatsapp message %s already applied", msg.message_id)
            done.duplicates += int(msg.readable)
            continue
        user_key = f"wa:{msg.sender}"
        admission = rate_limit.admit(user_key, action=msg.action) if rate_limit else None
        if admission is not None and not admission.allowed:
            done.limited += 1
            if admission.tell:
                send_reply(api, msg.sender, slow_down_message(
                    engine, user_key, language=_language_of_number(msg.sender)))
            continue
        if not msg.readable:
            with Session(engine) as session:
                conv = session.get(Conversation, user_key)
            send_reply(api, msg.sender, unreadable_message(
                Translator(conv.language if conv else _language_of_number(msg.sender))))
            continue
        done.applied += 1
        try:
            reply = assistant.handle(user_key=user_key, text=msg.text, action=msg.action,
                                     market=_market_of(engine, user_key, msg.sender))
        except Exception:
            # The message id is recorded: Meta's redelivery would fail the same way.
            log.exception("whatsapp message %s could not be answered", msg.message_id)
            continue
        with Session(engine) as session:
            conv = session.get(Conversation, user_key)
        locale = get_market(conv.market).locale if conv else "en"
        for message in reply.messages:
            send_reply(api, msg.sender, message, locale=locale)
    return done


def send_reply(api: WhatsAppApi, to: str, message: Message, *, locale: str = "en") -> bool:
    """Send one bot message as WhatsApp messages; whether any of it went out. A QR code
    WhatsApp cannot fetch (a development server's) is uploaded."""
    picture_id = None
    if message.qr and not shareable_image(message.image_url, IMAGE_SUFFIXES):
        picture_id = api.upload_png(qr.png(message.qr), filename="qr.png")
    went = False
    for outbound in render(message, picture_id=picture_id, locale=locale):
        went = api.send(to=to, message=outbound) is not None or went
    return went


@dataclass
class WhatsAppPush:
    """WhatsApp as a push channel (`bot.channels.push`): free text within the customer
    window, templates outside it."""

    api: WhatsAppApi
    prefix = "wa:"
    window = CUSTOMER_WINDOW - WINDOW_MARGIN

    def push(self, user_key: str, message: Message, *, locale: str) -> bool:
        return send_reply(self.api, user_key.removeprefix(self.prefix), message,
                          locale=locale)

    def push_template(self, user_key: str, *, name: str, params: list[str], language: str,
                      with_button: bool) -> bool:
        message = template_message(name, language=language, params=params,
                                   button_payload=INBOX_ACTION if with_button else None)
        return self.api.send(to=user_key.removeprefix(self.prefix), message=message) is not None


def _language_of_number(phone: str) -> str:
    """The language of the market a phone number's calling code points at."""
    market = _calling_code_market(phone)
    return get_market(market).language if market else "en"


def _market_of(engine: Engine, user_key: str, phone: str) -> str | None:
    """The market for a shopper's first message, from the number's calling code; later
    messages keep the conversation's market."""
    with Session(engine) as session:
        if session.get(Conversation, user_key) is not None:
            return None
    return _calling_code_market(phone)


def _calling_code_market(phone: str) -> str | None:
    for length in (3, 2, 1):
        if (market := CALLING_CODES.get(phone[:length])) is not None:
            return market
    return None
