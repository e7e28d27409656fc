"""Vitrine's MCP endpoints in the real app, reached through the real UCP MCP adapter and the
SDK's client over the app's ASGI transport."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import TextContent

from adapters.base import CatalogQuery, ShopperContext
from adapters.ucp_mcp import UcpMcpAdapter, check_conformance
from catalog.ucp_server import build_merchant_mcp_app
from core.errors import AdapterError
from tests.fake_ucp_server import RecordingTransport
from vitrine.app import create_app
from vitrine.runtime import Runtime

pytestmark = pytest.mark.anyio

BASE = "http://vitrine.test"
GIFTWELL = f"{BASE}/mcp/merchants/giftwell"
PROFILE = "https://agent.example/profiles/shopping-agent.json"
META = {"ucp-agent": {"profile": PROFILE}}
US = ShopperContext(country="US", language="en", currency="USD")


@pytest.fixture
async def app(demo_runtime: Runtime) -> AsyncIterator[FastAPI]:
    app = create_app(demo_runtime)  # wired exactly as in production
    async with app.router.lifespan_context(app):  # httpx's ASGI transport sends no lifespan
        yield app


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url=BASE) as c:
        yield c


@pytest.fixture
def giftwell(http: httpx2.AsyncClient) -> UcpMcpAdapter:
    return UcpMcpAdapter(merchant="giftwell", url=GIFTWELL, agent_profile=PROFILE,
                         http_client=http)


@asynccontextmanager
async def mcp_client(http: httpx2.AsyncClient, url: str) -> AsyncIterator[Client]:
    async with Client(streamable_http_client(url, http_client=http)) as client:
        yield client


async def call(http: httpx2.AsyncClient, tool: str, arguments: dict[str, Any],
               url: str = GIFTWELL) -> tuple[bool, Any, str]:
    async with mcp_client(http, url) as client:
        result = await client.call_tool(tool, arguments)
    text = " ".join(b.text for b in result.content if isinstance(b, TextContent))
    return result.is_error, result.structured_content, text


def soon() -> float:
    return time.monotonic() + 3.0


async def test_a_demo_merchant_is_searched_through_the_ucp_client(giftwell):
    query = CatalogQuery(text="garden", context=US, price_max=3000, limit=4)

    result = await giftwell.search(query, deadline=soon())

    assert result.dropped == 0
    assert 0 < len(result.products) <= 4
    assert all(p.id.startswith("GW-") and p.currency == "USD" for p in result.products)
    assert all(p.cheapest_available().price.amount <= 3000 for p in result.products)
    assert any("garden" in (p.title + " ".join(p.tags)).lower() for p in result.products)


async def test_search_sees_only_the_merchant_in_the_path(giftwell, http):
    other = UcpMcpAdapter(merchant="jardim-e-cia", url=f"{BASE}/mcp/merchants/jardim-e-cia",
                          agent_profile=PROFILE, http_client=http)
    brazil = ShopperContext(country="BR", language="pt", currency="BRL")

    theirs = await other.search(CatalogQuery(text="regador", context=brazil), deadline=soon())
    ours = await giftwell.search(CatalogQuery(text="regador", context=US), deadline=soon())

    assert theirs.products and all(p.currency == "BRL" for p in theirs.products)
    assert ours.products == []


async def test_categories_filter_and_cursor_pagination(http):
    catalog = {"filters": {"categories": ["Garden"]}, "pagination": {"limit": 2}}

    error, first, _ = await call(http, "search_catalog", {"meta": META, "catalog": catalog})
    cursor = first["pagination"]["cursor"]
    catalog["pagination"]["cursor"] = cursor
    _, second, _ = await call(http, "search_catalog", {"meta": META, "catalog": catalog})

    assert not error
    assert first["ucp"]["version"] == "2026-01-11"
    assert len(first["products"]) == 2 and first["pagination"]["has_next_page"]
    pages = first["products"] + second["products"]
    assert len({p["id"] for p in pages}) == len(pages)
    assert all(c["value"].startswith("Garden") for p in pages for c in p["categories"][:1])


async def test_lookup_returns_found_products_and_not_found_messages(giftwell, http):
    result = await giftwell.lookup(["GW-0001", "GW-9999"], context=US, deadline=soon())
    _, raw, _ = await call(http, "lookup_catalog",
                           {"meta": META, "catalog": {"ids": ["GW-0002", "nope"]}})

    assert [p.id for p in result.products] == ["GW-0001"]
    assert result.messages == ["not_found: GW-9999"]
    assert raw["products"][0]["variants"][0]["inputs"] == [{"id": "GW-0002", "match": "featured"}]
    assert raw["messages"] == [{"type": "info", "code": "not_found", "content": "nope"}]


async def test_lookup_by_variant_id_returns_that_variant_matched_exactly(http):
    _, raw, _ = await call(http, "lookup_catalog", {"meta": META, "catalog": {
        "ids": ["GW-0007-12", "GW-0007"]}})

    [product] = raw["products"]
    assert product["id"] == "GW-0007"
    assert {v["id"]: v["inputs"] for v in product["variants"]} == {
        "GW-0007-8": [{"id": "GW-0007", "match": "featured"}],
        "GW-0007-12": [{"id": "GW-0007-12", "match": "exact"}]}
    assert raw["messages"] == []


async def test_a_lookup_over_the_batch_limit_is_rejected(giftwell):
    ids = [f"GW-{n:04d}" for n in range(1, 60)]

    with pytest.raises(AdapterError) as raised:
        await giftwell.lookup(ids, context=US, deadline=soon())

    assert "at most 50 ids" in raised.value.reason


async def test_get_product_by_variant_id_puts_that_variant_first(giftwell):
    result = await giftwell.get_product("GW-0007-12", context=US, deadline=soon())

    assert [v.id for v in result.products[0].variants][:1] == ["GW-0007-12"]


async def test_get_product_by_id_and_unknown_id(giftwell):
    found = await giftwell.get_product("GW-0003", context=US, deadline=soon())
    missing = await giftwell.get_product("GW-9999", context=US, deadline=soon())

    assert [p.id for p in found.products] == ["GW-0003"]
    assert missing.products == []
    assert missing.messages == ["not_found: Product not found: GW-9999"]


async def test_a_request_without_ucp_agent_gets_a_tool_error(http):
    error, _, text = await call(http, "search_catalog", {"catalog": {"query": "garden"}})

    assert error
    assert 'meta["ucp-agent"]' in text and "profile" in text


async def test_an_empty_search_gets_a_tool_error(http):
    error, _, text = await call(http, "search_catalog", {"meta": META, "catalog": {}})

    assert error
    assert "query or filters" in text


async def test_an_unknown_merchant_is_a_404_in_json(http):
    response = await http.post("/mcp/merchants/nobody", json={
        "jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}})
    adapter = UcpMcpAdapter(merchant="nobody", url=f"{BASE}/mcp/merchants/nobody",
                            agent_profile=PROFILE, http_client=http)

    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "reason": "unknown merchant 'nobody'"}
    with pytest.raises(AdapterError):
        await adapter.search(CatalogQuery(text="garden", context=US), deadline=soon())


async def test_once_connected_a_search_is_one_http_request(app):
    recorder = RecordingTransport(httpx2.ASGITransport(app=app))
    async with httpx2.AsyncClient(transport=recorder, base_url=BASE) as http:
        adapter = UcpMcpAdapter(merchant="giftwell", url=GIFTWELL, agent_profile=PROFILE,
                                http_client=http)
        for _ in range(3):
            await adapter.search(CatalogQuery(text="garden", context=US), deadline=soon())

    # Vitrine hints that its tool listing may be cached, so only the first search lists.
    assert recorder.methods == ["server/discover", "tools/list"] + ["tools/call"] * 3


async def test_a_vitrine_served_merchant_passes_conformance(giftwell):
    report = await check_conformance(giftwell, context=US, query="garden")

    assert report.ok, report.as_text()


async def test_recommend_gifts_through_an_mcp_client(http):
    async with mcp_client(http, f"{BASE}/mcp") as client:
        tools = [t.name for t in (await client.list_tools()).tools]
        result = await client.call_tool("recommend_gifts", {
            "text": "a gift for my mother who loves gardening", "market": "us", "limit": 2})
        unknown = await client.call_tool("recommend_gifts", {"text": "a gift", "market": "ZZ"})

    assert tools == ["recommend_gifts"]
    assert not result.is_error
    assert result.structured_content["market"] == "US"
    assert 0 < len(result.structured_content["cards"]) <= 2
    assert unknown.is_error


async def test_an_endpoint_whose_lifespan_is_not_running_answers_503(demo_runtime):
    endpoint = build_merchant_mcp_app(demo_runtime.engine)
    transport = httpx2.ASGITransport(app=endpoint.app)
    async with httpx2.AsyncClient(transport=transport, base_url=BASE) as http:
        response = await http.post("/giftwell", json={"jsonrpc": "2.0", "id": 1,
                                                      "method": "tools/list"})

    assert response.status_code == 503
    assert response.json()["error"] == "unavailable"
