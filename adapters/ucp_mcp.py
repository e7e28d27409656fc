"""A merchant's own UCP catalog server, reached live over MCP (streamable HTTP).

The UCP MCP binding puts everything in the tool arguments: `meta["ucp-agent"]` names the
calling platform's profile and `catalog` carries the request (query, shopper context, filters,
pagination). Products come back in `structuredContent.products` (or, from servers that only
send text, as JSON in a text block) and are validated one by one into the UCP `Product` model:
items that do not validate are dropped and counted.

Each call opens a short-lived MCP client over one shared `httpx2.AsyncClient` (the SDK's HTTP
client; pooled connections survive between calls). A long-lived MCP session would have to be
entered and left by the same task, which a per-request search cannot promise, so instead the
adapter remembers what the first connection learnt: the protocol era (a 2026-07-28 server is
then called with no discovery round trip, a legacy one goes straight to `initialize`) and the
tool listing, for as long as the server's cache hints allow.

`check_conformance` runs the same client through the steps Vitrine relies on and returns a
report an operator can read, for when a merchant registers its server.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import anyio
import httpx2
from mcp import Client
from mcp.client.caching import CacheConfig, InMemoryResponseCacheStore
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult, DiscoverResult, Implementation, TextContent
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from adapters.base import (
    AdapterHealth,
    AdapterResult,
    CatalogQuery,
    ShopperContext,
    remaining,
)
from adapters.product import Product
from core.errors import AdapterError, AdapterTimeout

log = logging.getLogger("vitrine.adapters.ucp_mcp")

UCP_TOOLS = ("search_catalog", "lookup_catalog", "get_product")
CLIENT_INFO = Implementation(name="vitrine", version="0.1.0")
# Tool listings from servers that send no cache hint (every pre-2026 server) are reused this
# long; a 2026-07-28 server's own `ttlMs` always wins.
TOOL_LISTING_TTL_MS = 5 * 60 * 1000
HTTP_TIMEOUT = httpx2.Timeout(10.0, read=30.0)  # an outer bound; each call's deadline is tighter


def ucp_context(context: ShopperContext) -> dict[str, str]:
    """The UCP `context` object for a shopper."""
    fields = {"address_country": context.country, "language": context.language,
              "currency": context.currency, "intent": context.intent}
    return {key: value for key, value in fields.items() if value}


def search_arguments(query: CatalogQuery) -> dict[str, Any]:
    """The `catalog` argument of `search_catalog` for a query."""
    catalog: dict[str, Any] = {"context": ucp_context(query.context),
                               "pagination": {"limit": query.limit}}
    if query.text:
        catalog["query"] = query.text
    filters: dict[str, Any] = {}
    if query.categories:
        filters["categories"] = list(query.categories)
    price = {key: amount for key, amount in (("min", query.price_min), ("max", query.price_max))
             if amount is not None}
    if price:
        filters["price"] = price
    if filters:
        catalog["filters"] = filters
    return catalog


class UcpMcpAdapter:
    """One merchant's UCP MCP server, implementing `CatalogAdapter`."""

    def __init__(self, *, merchant: str, url: str, agent_profile: str,
                 http_client: httpx2.AsyncClient | None = None) -> None:
        """Args:
            merchant: the merchant's slug (carried in every error's context).
            url: the merchant's MCP endpoint (streamable HTTP).
            agent_profile: the URL of Vitrine's UCP agent profile, sent as `meta["ucp-agent"]`.
            http_client: the HTTP client to reach the merchant with (tests pass one over an
                in-process ASGI transport). Without one the adapter makes and owns its own.
        """
        self.merchant = merchant
        self.url = url
        self.agent_profile = agent_profile
        self._owns_http = http_client is None
        self._http = http_client or httpx2.AsyncClient(timeout=HTTP_TIMEOUT)
        self._mode = "auto"
        self._discover: DiscoverResult | None = None
        self._listings = InMemoryResponseCacheStore()

    async def aclose(self) -> None:
        """Close the HTTP client if the adapter made it."""
        if self._owns_http:
            await self._http.aclose()

    async def search(self, query: CatalogQuery, *, deadline: float) -> AdapterResult:
        """Search the merchant's catalog (see `CatalogAdapter.search`)."""
        payload = await self.call_tool("search_catalog", search_arguments(query),
                                       deadline=deadline)
        result = self._validated(payload.get("products"), payload)
        del result.products[query.limit:]
        return result

    async def lookup(self, ids: list[str], *, context: ShopperContext,
                     deadline: float) -> AdapterResult:
        """Fetch products by id (see `CatalogAdapter.lookup`); ids not found become messages."""
        if not ids:
            return AdapterResult()
        catalog = {"ids": list(dict.fromkeys(ids)), "context": ucp_context(context)}
        payload = await self.call_tool("lookup_catalog", catalog, deadline=deadline)
        return self._validated(payload.get("products"), payload)

    async def get_product(self, product_id: str, *, context: ShopperContext,
                          deadline: float) -> AdapterResult:
        """Full detail of one product: at most one product, or a `not_found` message.

        Raises:
            AdapterTimeout, AdapterError: as for `search`.
        """
        catalog = {"id": product_id, "context": ucp_context(context)}
        payload = await self.call_tool("get_product", catalog, deadline=deadline)
        product = payload.get("product")
        return self._validated([] if product is None else [product], payload)

    async def tool_names(self, *, deadline: float) -> list[str]:
        """The names of the tools the server lists, fetched afresh.

        Raises:
            AdapterTimeout, AdapterError: as for `search`.
        """
        async with self._connected("tools/list", deadline) as client:
            listing = await client.list_tools(cache_mode="refresh")
        return [tool.name for tool in listing.tools]

    async def health(self, *, deadline: float) -> AdapterHealth:
        """Time a connection and a tool listing; never raises."""
        started = time.monotonic()
        try:
            names = await self.tool_names(deadline=deadline)
        except AdapterError as exc:
            return AdapterHealth(reachable=False, detail=exc.reason)
        except Exception as exc:  # the promise is "never raises": a bug here is logged instead
            log.exception("health check of %s failed unexpectedly", self.merchant)
            return AdapterHealth(reachable=False, detail=f"unexpected error: {exc!r}")
        latency_ms = round((time.monotonic() - started) * 1000, 1)
        missing = tools_missing(names)
        detail = f"missing tools: {', '.join(missing)}" if missing else "catalog tools listed"
        return AdapterHealth(reachable=True, latency_ms=latency_ms, detail=detail)

    async def call_tool(self, tool: str, catalog: dict[str, Any], *,
                        deadline: float) -> dict[str, Any]:
        """Call one UCP tool with Vitrine's agent profile; returns its JSON payload.

        Raises:
            AdapterTimeout: the deadline passed.
            AdapterError: the server could not be reached, failed, or answered with a tool
                error or without a JSON object.
        """
        arguments = {"meta": {"ucp-agent": {"profile": self.agent_profile}}, "catalog": catalog}
        async with self._connected(tool, deadline) as client:
            # Served from the listing cache when the server allows it; otherwise the SDK would
            # fetch it after the call anyway, to check the result against an output schema.
            await client.list_tools()
            result = await client.call_tool(tool, arguments)
        if result.is_error:
            raise AdapterError(f"{self.merchant} answered {tool} with an error: "
                               f"{_text(result)[:300] or 'no detail'}",
                               merchant=self.merchant, tool=tool)
        return self._payload(result, tool)

    @asynccontextmanager
    async def _connected(self, operation: str, deadline: float) -> AsyncIterator[Client]:
        """An MCP client for one operation, with every failure translated at this boundary."""
        client = Client(
            streamable_http_client(self.url, http_client=self._http),
            mode=self._mode, prior_discover=self._discover, client_info=CLIENT_INFO,
            cache=CacheConfig(store=self._listings, partition=self.merchant, target_id=self.url,
                              default_ttl_ms=TOOL_LISTING_TTL_MS),
        )
        try:
            with anyio.fail_after(remaining(deadline)):
                async with client:
                    self._remember_era(client)
                    yield client
        except TimeoutError as exc:
            raise AdapterTimeout(f"{self.merchant} did not answer {operation} before the "
                                 f"deadline", merchant=self.merchant, tool=operation) from exc
        except Exception as exc:  # the SDK and httpx2 raise many types, often grouped
            self._mode, self._discover = "auto", None  # negotiate afresh next time
            raise AdapterError(f"{self.merchant}: {operation} failed: {_describe(exc)}",
                               merchant=self.merchant, tool=operation, url=self.url) from exc

    def _remember_era(self, client: Client) -> None:
        if self._mode != "auto":
            return
        if client.protocol_version in MODERN_PROTOCOL_VERSIONS:
            self._mode, self._discover = client.protocol_version, client.session.discover_result
        else:
            self._mode = "legacy"

    def _payload(self, result: CallToolResult, tool: str) -> dict[str, Any]:
        if isinstance(result.structured_content, dict):
            return result.structured_content
        for block in result.content:
            if isinstance(block, TextContent):
                try:
                    decoded = json.loads(block.text)
                except ValueError:
                    continue
                if isinstance(decoded, dict):
                    return decoded
        raise AdapterError(f"{self.merchant} answered {tool} without a JSON object",
                           merchant=self.merchant, tool=tool)

    def _validated(self, items: Any, payload: dict[str, Any]) -> AdapterResult:
        if not isinstance(items, list):
            raise AdapterError(f"{self.merchant} answered without a list of products",
                               merchant=self.merchant)
        result = AdapterResult(messages=_messages(payload.get("messages")))
        for item in items:
            try:
                result.products.append(Product.model_validate(item))
            except ValidationError:
                result.dropped += 1
        if result.dropped:
            log.info("%s: dropped %d invalid products", self.merchant, result.dropped)
        return result


def _messages(raw: Any) -> list[str]:
    """UCP messages as "code: content" lines (e.g. "not_found: prod_1")."""
    if not isinstance(raw, list):
        return []
    return [f"{m.get('code') or m.get('type', 'info')}: {m.get('content', '')}"
            for m in raw if isinstance(m, dict)]


def _text(result: CallToolResult) -> str:
    return " ".join(b.text for b in result.content if isinstance(b, TextContent)).strip()


def _describe(exc: BaseException) -> str:
    """A one-line cause, looking inside the exception groups anyio task groups raise."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def tools_missing(names: Sequence[str]) -> list[str]:
    """The UCP catalog tools absent from a server's listing."""
    return [name for name in UCP_TOOLS if name not in names]


# -- conformance: does a merchant's server do what Vitrine needs? ---------------------------

SEARCH_BUDGET_MS = 1000.0  # an adapter's share of the ~1.5 s a shopper request may take


class Check(NamedTuple):
    name: str
    passed: bool
    detail: str


@dataclass
class ConformanceReport:
    """The outcome of every check; `ok` only if all passed."""

    merchant: str
    url: str
    checks: list[Check] = field(default_factory=list)
    latency_ms: float | None = None  # of the search
    products_seen: int = 0
    dropped: int = 0

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(check.passed for check in self.checks)

    def add(self, name: str, passed: bool, detail: str) -> bool:
        self.checks.append(Check(name, passed, detail))
        return passed

    def as_dict(self) -> dict[str, object]:
        return {"ok": self.ok, "merchant": self.merchant, "url": self.url,
                "checks": [c._asdict() for c in self.checks], "latency_ms": self.latency_ms,
                "products_seen": self.products_seen, "dropped": self.dropped}

    def as_text(self) -> str:
        """The report as lines of plain text, one per check."""
        lines = [f"UCP MCP conformance of {self.merchant} ({self.url}): "
                 f"{'PASS' if self.ok else 'FAIL'}"]
        width = max((len(check.name) for check in self.checks), default=0)
        lines += [f"  [{'ok' if c.passed else 'FAIL':>4}] {c.name:<{width}}  {c.detail}"
                  for c in self.checks]
        latency = f"{self.latency_ms:.1f} ms" if self.latency_ms is not None else "n/a"
        lines.append(f"  search latency {latency}, {self.products_seen} products seen, "
                     f"{self.dropped} dropped")
        return "\n".join(lines)


PROBES = ("gift", "presente", "regalo")  # then a filter-only search, which UCP allows


async def check_conformance(adapter: UcpMcpAdapter, *, context: ShopperContext,
                            query: str | None = None, deadline_s: float = 5.0
                            ) -> ConformanceReport:
    """Check a merchant's server step by step; a failed step skips those that need it.

    Args:
        adapter: the merchant's adapter (its URL and Vitrine's agent profile).
        context: the shopper context to search with (the merchant's market).
        query: a text known to match the catalog; without it a few gift words are tried,
            then a filter-only search (every price from 0), as UCP search allows.
        deadline_s: the time each step may take.

    Returns:
        The report; it never raises for anything the server does.
    """
    report = ConformanceReport(merchant=adapter.merchant, url=adapter.url)
    health = await adapter.health(deadline=time.monotonic() + deadline_s)
    if not report.add("reachable", health.reachable,
                      f"{health.latency_ms} ms" if health.reachable else health.detail):
        return report
    try:
        names = await adapter.tool_names(deadline=time.monotonic() + deadline_s)
    except AdapterError as exc:
        report.add("tools listed", False, exc.reason)
        return report
    missing = tools_missing(names)
    report.add("tools listed", not missing,
               f"missing: {', '.join(missing)}" if missing else ", ".join(sorted(names)))
    if "search_catalog" in missing:
        return report

    probes = [CatalogQuery(text=text, context=context, limit=10)
              for text in ([query] if query else PROBES)]
    probes.append(CatalogQuery(text="", context=context, price_min=0, limit=10))
    for probe in probes:
        started = time.monotonic()
        try:
            found = await adapter.search(probe, deadline=time.monotonic() + deadline_s)
        except AdapterError as exc:
            report.add("search", False, exc.reason)
            return report
        if found.products or found.dropped:
            break
    query = probe.text or "(every price from 0)"
    report.latency_ms = round((time.monotonic() - started) * 1000, 1)
    report.products_seen, report.dropped = len(found.products) + found.dropped, found.dropped
    report.add("search", bool(found.products) and not found.dropped,
               f"{len(found.products)} valid products for {query!r}, "
               f"{found.dropped} failed UCP validation")
    report.add("latency", report.latency_ms <= SEARCH_BUDGET_MS,
               f"{report.latency_ms:.1f} ms (budget {SEARCH_BUDGET_MS:.0f} ms)")
    if not found.products or "lookup_catalog" in missing:
        return report

    wanted = found.products[0].id
    try:
        looked_up = await adapter.lookup([wanted], context=context,
                                         deadline=time.monotonic() + deadline_s)
    except AdapterError as exc:
        report.add("lookup", False, exc.reason)
        return report
    ids = [product.id for product in looked_up.products]
    report.add("lookup", wanted in ids,
               f"{wanted!r} returned" if wanted in ids else f"asked for {wanted!r}, got {ids}")
    return report
