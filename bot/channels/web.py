"""The web chat: the page at `/chat`, and its API, `POST /api/chat` (a message or a button
press) and pending updates."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field, field_validator

from bot.conversation import Assistant
from bot.replies import Reply

router = APIRouter(prefix="/api/chat", tags=["chat"])
page_router = APIRouter(include_in_schema=False)
# One self-contained file (styles and script inline): it loads with no outside network.
PAGE = Path(__file__).with_name("chat.html")


class ChatRequest(BaseModel):
    user: str = Field(min_length=1, max_length=200)
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


@router.post("", response_model=Reply)
def chat(body: ChatRequest, request: Request) -> Reply:
    """Answer a shopper's message or button press."""
    return _assistant(request).handle(user_key=f"web:{body.user}", text=body.text,
                                      action=body.action, market=body.market,
                                      locale=body.locale)


@router.get("/updates", response_model=Reply)
def updates(request: Request, user: str = Query(min_length=1, max_length=200)) -> Reply:
    """Messages for a shopper produced since their last turn (payment confirmations)."""
    return _assistant(request).pending(user_key=f"web:{user.strip()}")


@page_router.get("/chat", response_class=HTMLResponse)
def chat_page() -> HTMLResponse:
    """Serve the web chat, usable on a phone screen."""
    return HTMLResponse(PAGE.read_text("utf-8"), headers={
        # Its own script and styles only; product images and QR codes from anywhere.
        "Content-Security-Policy": "default-src 'self'; img-src * data:; "
                                   "style-src 'unsafe-inline'; script-src 'unsafe-inline'",
        "Cache-Control": "no-cache"})
