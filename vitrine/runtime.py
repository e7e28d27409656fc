"""Builds Vitrine's parts once, from settings, and wires them together."""

from __future__ import annotations

import json
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx2
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, select

from adapters.feed import FeedReport
from adapters.ucp_mcp import HTTP_TIMEOUT, UcpMcpAdapter
from bot.conversation import Assistant
from bot.intent import RuleIntentParser
from catalog.federation import CircuitBreaker, Federation, ResultCache
from catalog.live import FederatedSearch
from catalog.merchants import add_merchant_from_feed
from catalog.models import Merchant
from catalog.onboarding import Onboarding
from catalog.search import CatalogSearch
from checkout.rails import PaymentRail
from checkout.rails.cod import CashOnDeliveryRail
from checkout.rails.pix import PixRail
from checkout.rails.sandbox import SandboxRail
from core.db import add_missing_columns, make_engine
from core.settings import Settings, get_settings

T = TypeVar("T")
_RUNTIMES: weakref.WeakSet[Runtime] = weakref.WeakSet()
DEMO_DIR = Path(__file__).resolve().parent.parent / "catalog" / "demo"


def create_tables(engine: Engine) -> None:
    """Create every table (idempotent); importing the models registers them."""
    import bot.models  # noqa: F401
    import catalog.models  # noqa: F401
    import checkout.models  # noqa: F401
    import core.outbox  # noqa: F401
    import ops.events  # noqa: F401

    SQLModel.metadata.create_all(engine)
    add_missing_columns(engine, SQLModel.metadata)


def build_rails(settings: Settings) -> dict[str, PaymentRail]:
    """Every payment rail by its stable name; markets pick from these in `markets.json`."""
    return {
        "pix": PixRail(key=settings.pix_key, merchant_name=settings.pix_merchant_name,
                       merchant_city=settings.pix_merchant_city),
        "cod": CashOnDeliveryRail(),
        "sandbox": SandboxRail(public_url=settings.public_url),
    }


@dataclass(eq=False)
class Runtime:
    settings: Settings
    engine: Engine
    search: CatalogSearch
    federated: FederatedSearch
    assistant: Assistant
    rails: dict[str, PaymentRail]
    mcp_http: httpx2.AsyncClient  # one client for every live merchant's MCP server
    onboarding: Onboarding = field(init=False)
    _adapters: dict[tuple[str, str], UcpMcpAdapter] = field(default_factory=dict)

    def adapter_for_url(self, merchant: str, url: str) -> UcpMcpAdapter:
        """The UCP MCP adapter of a live merchant."""
        return UcpMcpAdapter(merchant=merchant, url=url,
                             agent_profile=self.settings.ucp_agent_profile,
                             http_client=self.mcp_http)

    def adapter_for(self, merchant: Merchant) -> UcpMcpAdapter:
        """The merchant's adapter, kept between searches: it remembers the server's protocol
        version and tool list, which saves two round trips per search."""
        key = (merchant.slug, merchant.mcp_url or "")
        adapter = self._adapters.get(key)
        if adapter is None:
            adapter = self._adapters[key] = self.adapter_for_url(*key)
        return adapter

    def close(self) -> None:
        """Close live merchants' connections and stop their event loop."""
        if self.federated.loop.started:
            self.federated.loop.call(self.mcp_http.aclose)
        self.federated.loop.close()

    def call_live(self, func: Callable[..., Awaitable[T]], *args: object) -> T:
        """Run a coroutine function against live merchants, on their event loop."""
        return self.federated.loop.call(func, *args)


def build_runtime(settings: Settings | None = None, *,
                  mcp_http: httpx2.AsyncClient | None = None) -> Runtime:
    """Connect to the database, create tables, and build the services."""
    settings = settings or get_settings()
    engine = make_engine(settings.database_url)
    create_tables(engine)
    search = CatalogSearch(engine)
    federated = FederatedSearch(engine=engine, local=search, federation=Federation(
        breaker=CircuitBreaker(failures_to_open=settings.breaker_failures,
                               cooldown_s=settings.breaker_cooldown_seconds),
        cache=ResultCache(ttl_s=settings.live_cache_seconds),
        total_deadline_s=settings.live_deadline_ms / 1000,
        per_merchant_s=settings.live_merchant_timeout_ms / 1000))
    rails = build_rails(settings)
    assistant = Assistant(engine=engine, search=federated, parser=RuleIntentParser(),
                          rails=rails, settings=settings)
    runtime = Runtime(settings=settings, engine=engine, search=search, federated=federated,
                      assistant=assistant, rails=rails,
                      mcp_http=mcp_http or httpx2.AsyncClient(timeout=HTTP_TIMEOUT))
    federated.adapter_for = runtime.adapter_for
    runtime.onboarding = Onboarding(engine=engine, run_live=runtime.call_live,
                                    adapter_for_url=runtime.adapter_for_url)
    _RUNTIMES.add(runtime)
    return runtime


def close_all() -> None:
    """Close every runtime this process built (the command line calls it on exit)."""
    for runtime in list(_RUNTIMES):
        runtime.close()


def has_merchants(engine: Engine) -> bool:
    with Session(engine) as session:
        return session.exec(select(Merchant.id).limit(1)).first() is not None


def seed_demo(runtime: Runtime) -> list[tuple[Merchant, FeedReport]]:
    """Import the demo merchants' feeds through the ordinary feed adapter."""
    specs = json.loads((DEMO_DIR / "merchants.json").read_text("utf-8"))
    results = []
    for spec in specs:
        results.append(add_merchant_from_feed(
            engine=runtime.engine, name=spec["name"], market=spec["market"],
            feed=DEMO_DIR / spec["feed"], slug=spec["slug"],
            base_url=runtime.settings.public_url, replace=True))
    return results
