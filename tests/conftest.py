"""Shared fixtures: a real database per test (a SQLite file, or a fresh PostgreSQL database
when VITRINE_TEST_DATABASE_URL is set; see tests/databases.py), the real app over its ASGI
transport."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from core.db import session_scope
from core.settings import Settings, get_settings
from tests.databases import TEST_DATABASE_URL, PostgresDatabases, sqlite_url
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


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "postgres: needs PostgreSQL (skipped unless VITRINE_TEST_DATABASE_URL is set)")


def pytest_report_header(config: pytest.Config) -> str:
    """Say which database the suite runs against."""
    if TEST_DATABASE_URL is None:
        return "database: SQLite (set VITRINE_TEST_DATABASE_URL for PostgreSQL)"
    return f"database: PostgreSQL at {PostgresDatabases.describe(TEST_DATABASE_URL)}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked `postgres` are skipped, with the reason, when no server is configured."""
    if TEST_DATABASE_URL is not None:
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL: set VITRINE_TEST_DATABASE_URL")
    for item in items:
        if item.get_closest_marker("postgres"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[PostgresDatabases | None]:
    """The PostgreSQL server tests create their databases on, or None for SQLite."""
    if TEST_DATABASE_URL is None:
        yield None
        return
    databases = PostgresDatabases(TEST_DATABASE_URL)
    yield databases
    databases.close()


def _database(databases: PostgresDatabases | None, tmp_path: Path, *, empty: bool
              ) -> Iterator[str]:
    if databases is None:
        yield sqlite_url(tmp_path, "empty.db" if empty else "vitrine.db")
        return
    name = databases.create(empty=empty)
    yield databases.url_of(name)
    databases.drop(name)


@pytest.fixture
def database_url(postgres_databases: PostgresDatabases | None, tmp_path: Path
                 ) -> Iterator[str]:
    """The test's own database: a SQLite file, or on PostgreSQL a new database that has every
    table and no rows."""
    yield from _database(postgres_databases, tmp_path, empty=False)


@pytest.fixture
def empty_database_url(postgres_databases: PostgresDatabases | None, tmp_path: Path
                       ) -> Iterator[str]:
    """The test's own database with no tables at all (for schema upgrades from old
    versions)."""
    yield from _database(postgres_databases, tmp_path, empty=True)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(env="test", database_url=database_url,
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
    async with app_client(demo_runtime) as c:
        yield c


@asynccontextmanager
async def app_client(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app built around `runtime`, through its ASGI transport."""
    app = create_app(runtime)
    # httpx's ASGI transport sends no lifespan events: run the app's lifespan around it.
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c:
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
