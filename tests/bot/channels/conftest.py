"""Fixtures the channel tests share: the fake Bot API on loopback, the fake Graph API at
the transport boundary, and a runtime whose WhatsApp client talks to the latter."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from core.settings import Settings
from tests.bot.channels.fakes import FakeBotApi, FakeGraphApi
from tests.loopback import serve
from vitrine.runtime import Runtime, build_runtime


@pytest.fixture(scope="module")
def fake_api() -> Iterator[tuple[FakeBotApi, str]]:
    """The fake Bot API and its base URL (`VITRINE_TELEGRAM_API_BASE`)."""
    api = FakeBotApi()
    with serve(api.app) as url:
        yield api, url


@pytest.fixture
def bot_api(fake_api: tuple[FakeBotApi, str]) -> FakeBotApi:
    """The fake Bot API, with no call recorded yet."""
    api = fake_api[0]
    api.clear()
    api.updates, api.refuse_photos = [], False
    return api


@pytest.fixture
def graph() -> FakeGraphApi:
    return FakeGraphApi()


@pytest.fixture
def runtime(settings: Settings, graph: FakeGraphApi) -> Iterator[Runtime]:
    http = httpx.Client(transport=httpx.MockTransport(graph))
    runtime = build_runtime(settings, whatsapp_http=http)
    yield runtime
    runtime.close()
    http.close()  # also when WhatsApp is not configured and the runtime never took it
