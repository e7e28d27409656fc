"""Logs: one JSON object per line, each carrying the id of the request that caused it.

`RequestIdMiddleware` reads the caller's `X-Request-ID` (or makes one up), keeps it in a
context variable for the request's whole life and echoes it in the response. The variable
follows the work wherever the context is copied: into worker threads (`anyio.to_thread`,
Starlette's thread pool) and onto the live merchants' event loop (an anyio portal copies the
calling thread's context into the task it starts), so every line logged while answering one
message, from the channel to checkout, names the same request.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Literal

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "X-Request-ID"
_request_id: ContextVar[str | None] = ContextVar("vitrine_request_id", default=None)
# What a caller may choose as an id: short and harmless in a log line or a header.
_SANE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def current_request_id() -> str | None:
    """The id of the request being served in this context, if any."""
    return _request_id.get()


def request_id_from(header: str | None) -> str:
    """The caller's id when it is a sane token (up to 64 of `A-Za-z0-9._-`), else a new one."""
    if header is not None and _SANE_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Gives every HTTP request an id, kept in context while it is served and echoed back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((value.decode("latin-1") for name, value in scope["headers"]
                      if name == b"x-request-id"), None)
        request_id = request_id_from(given)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        token = _request_id.set(request_id)
        await self.app(scope, receive, send_with_id)
        # Not reset when the app raised: its last-resort error handler runs outside this
        # middleware and its log line should still name the request. Each request is served
        # in a task of its own, so the value goes no further.
        _request_id.reset(token)


class RequestIdFilter(logging.Filter):
    """Stamps each record with the current request id (None outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (ISO 8601, UTC), level, logger, message, request id
    when known, and the exception's traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id is not None:
            line["request_id"] = request_id
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """A line for a terminal: time, level, logger, [request id], message."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(request_tag)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None)
        record.request_tag = f" [{request_id}]" if request_id else ""
        return super().format(record)


class _VitrineHandler(logging.StreamHandler[IO[str]]):
    """The root handler `configure_logging` installs (and replaces when called again)."""


def configure_logging(log_format: Literal["json", "text"], *, level: int = logging.INFO,
                      stream: IO[str] | None = None) -> logging.Handler:
    """Send every logger's records, uvicorn's included, through one handler on the root logger.

    Calling it again replaces the handler it installed before; other handlers are left.

    Returns:
        The installed handler.
    """
    handler = _VitrineHandler(stream or sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _VitrineHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
