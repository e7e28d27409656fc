"""Fixtures of the tests that start Vitrine's own processes: a real Redis, and Meta's Graph
API faked on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.deploy.processes import GraphRecorder
from tests.loopback import serve
from tests.redis_server import redis_server_fixture, redis_url_fixture  # noqa: F401


@pytest.fixture
def graph() -> Iterator[tuple[GraphRecorder, str]]:
    """The fake Graph API on loopback, and its base URL (`VITRINE_WHATSAPP_API_BASE`)."""
    recorder = GraphRecorder()
    with serve(recorder.app) as url:
        try:
            yield recorder, url
        finally:  # a send left waiting would hold the server's shutdown
            recorder.flowing.set()
