"""Shared fixtures: a real SQLite file per test, the real app over its ASGI transport."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from core.db import session_scope
from core.settings import Settings, get_settings
from tests.fake_ucp_server import FakeUcpServer
from tests.loopback import serve
from vitrine.app import create_app
from vitrine.runtime import Runtime, build_runtime, seed_demo

SANDBOX_SECRET = "test-sandbox-secret-0123456789"
OPS_TOKEN = "test-ops-token-0123456789"
SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads a developer's .env or real environment by accident."""
    monkeypatch.chdir(tmp_path)
    import os

    # Every VITRINE_ variable: a developer's language-model key must never reach a test.
    for name in [n for n in os.environ if n.startswith("VITRINE_")]:
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(env="test", database_url=f"sqlite:///{tmp_path / 'vitrine.db'}",
                    sandbox_secret=SANDBOX_SECRET, ops_token=OPS_TOKEN,
                    public_url="http://testserver")


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    runtime = build_runtime(settings)
    yield runtime
    runtime.close()


@pytest.fixture
def demo_runtime(runtime: Runtime) -> Runtime:
    seed_demo(runtime)
    return runtime


@pytest.fixture
async def client(demo_runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(demo_runtime)
    transport = httpx.ASGITransport(app=app)
    # httpx's ASGI transport sends no lifespan events: run the app's lifespan around it.
    async with app.router.lifespan_context(app), \
            httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


# A live merchant: its own UCP MCP server, faked on loopback.

@pytest.fixture
def shop():
    server = FakeUcpServer()
    with serve(server.app) as base:
        server.url = f"{base}/mcp"
        yield server


@pytest.fixture
def live_runtime(demo_runtime, shop):
    from catalog.merchants import register_merchant
    from catalog.models import MerchantCreate, MerchantKind

    with session_scope(demo_runtime.engine) as session:
        register_merchant(session=session, merchant_in=MerchantCreate(
            name="Fake Shop", slug="fake-shop", market="US", kind=MerchantKind.MCP,
            mcp_url=shop.url))
    return demo_runtime
