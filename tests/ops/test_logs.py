"""JSON log lines, and the request id that follows a request into threads and the live loop."""

import io
import json
import logging
import re
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

import anyio
import httpx
import pytest

from core.logs import configure_logging
from vitrine.app import create_app

pytestmark = pytest.mark.anyio

log = logging.getLogger("vitrine.test")
NEW_ID = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def log_lines() -> Iterator[Callable[[], list[dict]]]:
    """Logging configured as `vitrine serve` does, into a buffer; the lines it got, parsed."""
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = configure_logging("json", stream=stream)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.removeHandler(handler)
    root.setLevel(level)


def app_client(app, **transport: bool) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, **transport),
                             base_url="http://testserver")


async def test_every_line_logged_for_a_request_carries_its_id(demo_runtime, log_lines):
    app = create_app(demo_runtime)

    async def on_the_live_loop() -> None:
        log.info("on the live merchants' loop")

    def blocking() -> None:
        log.info("in a worker thread")
        # As the Telegram webhook runs its handlers: from a worker thread, through the portal.
        demo_runtime.call_live(on_the_live_loop)

    @app.get("/test/logged")
    async def logged() -> dict[str, str]:
        log.info("in the route")
        await anyio.to_thread.run_sync(blocking)
        return {}

    async with app_client(app) as client:
        response = await client.get("/test/logged", headers={"X-Request-ID": "req-42.a_b"})
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "req-42.a_b"
    lines = [line for line in log_lines() if line["logger"] == "vitrine.test"]
    assert [line["message"] for line in lines] == [
        "in the route", "in a worker thread", "on the live merchants' loop"]
    assert all(line["request_id"] == "req-42.a_b" for line in lines)


async def test_a_missing_or_unfit_request_id_is_replaced_by_a_new_one(client):
    given = []
    for header in (None, "has spaces", "x" * 65, "semi;colon"):
        headers = {"X-Request-ID": header} if header is not None else {}
        response = await client.get("/healthz", headers=headers)
        assert response.status_code == 200
        given.append(response.headers["X-Request-ID"])
    assert all(NEW_ID.fullmatch(request_id) for request_id in given)
    assert len(set(given)) == len(given)


async def test_an_unexpected_error_is_logged_with_its_request_id_and_traceback(
        demo_runtime, log_lines):
    app = create_app(demo_runtime)

    @app.get("/test/broken")
    def broken() -> None:
        raise RuntimeError("the shelf fell over")

    async with app_client(app, raise_app_exceptions=False) as client:
        response = await client.get("/test/broken", headers={"X-Request-ID": "req-broken"})
    assert response.status_code == 500
    [line] = [line for line in log_lines() if line["message"] == "unexpected error"]
    assert line["request_id"] == "req-broken" and line["level"] == "ERROR"
    assert "RuntimeError: the shelf fell over" in line["exception"]


def test_a_line_outside_a_request_has_time_level_and_logger_but_no_request_id(log_lines):
    log.warning("stock for %s is low", "regador")
    [line] = [line for line in log_lines() if line["logger"] == "vitrine.test"]
    assert line["message"] == "stock for regador is low" and line["level"] == "WARNING"
    assert "request_id" not in line and "exception" not in line
    assert datetime.fromisoformat(line["time"]).utcoffset() == timedelta(0)


def test_text_logs_replace_the_json_handler_rather_than_add_to_it(log_lines):
    stream = io.StringIO()
    handler = configure_logging("text", stream=stream)
    log.info("plain words")
    assert "INFO vitrine.test: plain words" in stream.getvalue()
    assert log_lines() == []  # the JSON handler is gone
    assert logging.getLogger().handlers.count(handler) == 1
    logging.getLogger().removeHandler(handler)
