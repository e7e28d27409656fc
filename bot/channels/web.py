"""The web chat: the page at `/chat`, and its API, `POST /api/chat` (a message or a button
press) and pending updates."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field, field_validator

from bot.channels.rate_limit import Admission, slow_down_message
from bot.conversation import Assistant
from bot.replies import Reply
from core.errors import UnknownMarket
from core.i18n import language_of
from core.markets import get_market

router = APIRouter(prefix="/api/chat", tags=["chat"])
page_router = APIRouter(include_in_schema=False)
# One self-contained file (styles and script inline): it loads with no outside network.
PAGE = Path(__file__).with_name("chat.html")


# Shoppers' keys are stored as "web:<user>" in columns of 200 characters (PostgreSQL
# enforces the length; SQLite did not).
USER_ID_MAX = 200 - len("web:")


class ChatRequest(BaseModel):
    user: str = Field(min_length=1, max_length=USER_ID_MAX)
    text: str | None = Field(default=None, max_length=100_000)
    action: str | None = Field(default=None, max_length=500)
    market: str | None = Field(default=None, max_length=8)
    locale: str | None = Field(default=None, max_length=16)

    @field_validator("user")
    @classmethod
    def _user_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("user must not be blank")
        return value.strip()


def _assistant(request: Request) -> Assistant:
    return request.app.state.runtime.assistant


# What a shopper sending too fast gets: 429 with Retry-After, the request to wait as the
# error's `reason` (the chat page shows it) and as a message (for other clients).
TOO_MANY: dict[int | str, dict[str, Any]] = {
    429: {"description": "Too many messages: wait `Retry-After` seconds."}}


@router.post("", response_model=Reply, responses=TOO_MANY)
async def chat(body: ChatRequest, request: Request) -> Response:
    """Answer a shopper's message or button press."""
    runtime = request.app.state.runtime
    user_key = f"web:{body.user}"
    admission: Admission | None = None

    def answer() -> Response:
        # Counted once, even when the turn leaves the event loop and runs again on a thread.
        nonlocal admission
        if admission is None:
            admission = runtime.rate_limit.admit(user_key, action=body.action)
        if not admission.allowed:
            return _refusal(runtime, body, user_key, admission)
        # Serialised here, in the same hop: FastAPI would validate a returned model again.
        return reply_response(runtime.assistant.handle(
            user_key=user_key, text=body.text, action=body.action, market=body.market,
            locale=body.locale))

    # The turn blocks on the database: on the event loop when it can, else on a thread.
    return await runtime.loop_turns.run(_kind(body), answer)


def _kind(body: ChatRequest) -> tuple[str, str]:
    """What tells turns that reach an outside service from those that do not: the market
    (live merchants are a market's) and the button's verb (confirming calls a provider)."""
    verb = body.action.partition(":")[0].strip() if body.action else "text"
    return body.market or "", verb


def _refusal(runtime: Any, body: ChatRequest, user_key: str, admission: Admission
             ) -> Response:
    """The 429 for a shopper past the rate limit, with the request to wait."""
    message = slow_down_message(runtime.engine, user_key, language=_language(
        body, default_market=runtime.settings.default_market))
    return JSONResponse(
        {"error": "rate_limited", "reason": message.text,
         "messages": [message.model_dump(mode="json")]},
        status_code=429,
        headers={"Retry-After": str(max(1, math.ceil(admission.retry_after_s)))})


def reply_response(reply: Reply) -> Response:
    """A reply as the API's JSON, serialised once by its own model."""
    return Response(reply.model_dump_json(), media_type="application/json")


def _language(body: ChatRequest, *, default_market: str) -> str:
    """The language a new shopper is answered in: their locale's, else their market's."""
    try:
        default = get_market(body.market or default_market).language
    except UnknownMarket:
        default = "en"
    return language_of(body.locale, default=default)


@router.get("/updates", response_model=Reply)
async def updates(request: Request,
                  user: str = Query(min_length=1, max_length=USER_ID_MAX)) -> Response:
    """Messages for a shopper produced since their last turn (payment confirmations)."""
    assistant = _assistant(request)
    return await request.app.state.runtime.loop_turns.run(
        ("", "updates"), lambda: reply_response(assistant.pending(user_key=f"web:{user.strip()}")))


@page_router.get("/chat", response_class=HTMLResponse)
def chat_page() -> HTMLResponse:
    """Serve the web chat, usable on a phone screen."""
    return HTMLResponse(PAGE.read_text("utf-8"), headers={
        # Its own script and styles only; product images and QR codes from anywhere.
        "Content-Security-Policy": "default-src 'self'; img-src * data:; "
                                   "style-src 'unsafe-inline'; script-src 'unsafe-inline'",
        "Cache-Control": "no-cache"})
