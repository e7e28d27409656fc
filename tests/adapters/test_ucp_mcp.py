"""The UCP MCP adapter against a real MCP server (tests/fake_ucp_server.py), in-process."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx2
import pytest

from adapters.base import CatalogQuery, ShopperContext
from adapters.product import Product
from adapters.ucp_mcp import UcpMcpAdapter, check_conformance
from core.errors import AdapterError, AdapterTimeout
from tests.fake_ucp_server import URL, FakeUcpServer, RecordingTransport

pytestmark = pytest.mark.anyio

PROFILE = "https://vitrine.test/.well-known/ucp/agent-profile.json"
CONTEXT = ShopperContext(country="US", language="en", currency="USD",
                         intent="a gift for my mother")


@pytest.fixture
async def fake() -> AsyncIterator[FakeUcpServer]:
    server = FakeUcpServer()
    async with server.running():
        yield server


@pytest.fixture
async def adapter(fake: FakeUcpServer) -> AsyncIterator[UcpMcpAdapter]:
    async with fake.http_client() as http:
        yield UcpMcpAdapter(merchant="fakeshop", url=URL, agent_profile=PROFILE, http_client=http)


def soon(seconds: float = 3.0) -> float:
    return time.monotonic() + seconds


async def test_search_maps_products_and_sends_profile_context_and_filters(fake, adapter):
    query = CatalogQuery(text="garden", context=CONTEXT, categories=("Garden",),
                         price_max=5000, limit=5)

    result = await adapter.search(query, deadline=soon())

    assert [p.id for p in result.products] == ["WCAN", "SEEDS"]
    assert all(isinstance(p, Product) for p in result.products)
    assert result.products[0].price_range is not None
    assert result.products[0].price_range.min.amount == 4500
    assert result.dropped == 0
    assert fake.calls("search_catalog") == [{
        "meta": {"ucp-agent": {"profile": PROFILE}},
        "catalog": {
            "query": "garden",
            "context": {"address_country": "US", "language": "en", "currency": "USD",
                        "intent": "a gift for my mother"},
            "filters": {"categories": ["Garden"], "price": {"max": 5000}},
            "pagination": {"limit": 5},
        },
    }]


async def test_lookup_returns_found_products_and_reports_missing_ids(fake, adapter):
    result = await adapter.lookup(["SEEDS", "NOPE", "SEEDS"], context=CONTEXT, deadline=soon())

    assert [p.id for p in result.products] == ["SEEDS"]
    assert result.messages == ["not_found: NOPE"]
    sent = fake.calls("lookup_catalog")[0]
    assert sent["meta"] == {"ucp-agent": {"profile": PROFILE}}
    assert sent["catalog"]["ids"] == ["SEEDS", "NOPE"]
    assert sent["catalog"]["context"]["address_country"] == "US"


async def test_lookup_of_no_ids_asks_nothing(fake, adapter):
    assert (await adapter.lookup([], context=CONTEXT, deadline=soon())).products == []
    assert fake.received == []


async def test_get_product_returns_the_product_or_a_not_found_message(adapter):
    found = await adapter.get_product("CHESS", context=CONTEXT, deadline=soon())
    missing = await adapter.get_product("NOPE", context=CONTEXT, deadline=soon())

    assert [p.title for p in found.products] == ["Walnut Chess Set"]
    assert missing.products == []
    assert missing.messages == ["not_found: Product not found: NOPE"]


async def test_invalid_products_are_dropped_and_counted(fake, adapter):
    fake.mode = "invalid"

    result = await adapter.search(CatalogQuery(text="garden", context=CONTEXT), deadline=soon())

    assert [p.id for p in result.products] == ["WCAN", "SEEDS"]
    assert result.dropped == 3


async def test_a_payload_sent_only_as_json_text_is_read(fake, adapter):
    fake.mode = "text_only"

    result = await adapter.search(CatalogQuery(text="chess", context=CONTEXT), deadline=soon())

    assert [p.id for p in result.products] == ["CHESS"]


async def test_a_hanging_server_raises_timeout_at_the_deadline(fake, adapter):
    fake.mode = "hanging"
    deadline = time.monotonic() + 0.3

    with pytest.raises(AdapterTimeout) as raised:
        await adapter.search(CatalogQuery(text="garden", context=CONTEXT), deadline=deadline)

    assert time.monotonic() - deadline < 0.5  # gave up at the deadline, not at an HTTP timeout
    assert raised.value.context["merchant"] == "fakeshop"
    assert len(fake.calls("search_catalog")) == 1


async def test_a_deadline_already_past_raises_timeout(adapter):
    with pytest.raises(AdapterTimeout):
        await adapter.search(CatalogQuery(text="garden", context=CONTEXT),
                             deadline=time.monotonic() - 1)


@pytest.mark.parametrize("mode", ["erroring", "rpc_error"])
async def test_tool_and_protocol_errors_become_adapter_errors(fake, adapter, mode):
    fake.mode = mode

    with pytest.raises(AdapterError) as raised:
        await adapter.search(CatalogQuery(text="garden", context=CONTEXT), deadline=soon())

    assert not isinstance(raised.value, AdapterTimeout)
    assert raised.value.context["merchant"] == "fakeshop"
    assert "catalog backend" in raised.value.reason


async def test_after_an_error_the_adapter_recovers_when_the_server_does(fake, adapter):
    fake.mode = "rpc_error"
    with pytest.raises(AdapterError):
        await adapter.search(CatalogQuery(text="garden", context=CONTEXT), deadline=soon())
    fake.mode = "normal"

    result = await adapter.search(CatalogQuery(text="garden", context=CONTEXT), deadline=soon())

    assert len(result.products) == 2


async def test_the_era_is_negotiated_once_per_adapter(fake):
    recorder = RecordingTransport(httpx2.ASGITransport(app=fake.app))
    async with httpx2.AsyncClient(transport=recorder) as http:
        adapter = UcpMcpAdapter(merchant="fakeshop", url=URL, agent_profile=PROFILE,
                                http_client=http)
        for _ in range(3):
            await adapter.search(CatalogQuery(text="garden", context=CONTEXT), deadline=soon())

    # The fake sends no cache hint for its tool listing, so the SDK lists before each call.
    assert recorder.methods == ["server/discover"] + ["tools/list", "tools/call"] * 3


def _unreachable(request: httpx2.Request) -> httpx2.Response:
    raise httpx2.ConnectError("connection refused", request=request)


async def test_an_unreachable_server_is_an_adapter_error_and_unhealthy():
    async with httpx2.AsyncClient(transport=httpx2.MockTransport(_unreachable)) as http:
        adapter = UcpMcpAdapter(merchant="gone", url=URL, agent_profile=PROFILE,
                                http_client=http)
        with pytest.raises(AdapterError) as raised:
            await adapter.search(CatalogQuery(text="garden", context=CONTEXT), deadline=soon())
        health = await adapter.health(deadline=soon())

    assert raised.value.context == {"merchant": "gone", "tool": "search_catalog", "url": URL}
    assert "ConnectError" in raised.value.reason
    assert not health.reachable
    assert "ConnectError" in health.detail


async def test_health_reports_latency_and_the_tools(adapter):
    health = await adapter.health(deadline=soon())

    assert health.reachable
    assert health.latency_ms is not None
    assert health.detail == "catalog tools listed"


async def test_health_of_a_hanging_server_does_not_raise(fake, adapter):
    fake.mode = "hanging"  # listing tools still answers: health does not call a tool
    assert (await adapter.health(deadline=soon(0.3))).reachable


async def test_conformance_passes_for_a_conforming_server(adapter):
    report = await check_conformance(adapter, context=CONTEXT, query="garden")

    assert report.ok, report.as_text()
    assert [c.name for c in report.checks] == [
        "reachable", "tools listed", "search", "latency", "lookup"]
    assert report.products_seen == 2
    assert report.dropped == 0
    assert report.latency_ms is not None
    assert report.as_text().splitlines()[0].endswith("PASS")


async def test_conformance_fails_when_products_do_not_validate(fake, adapter):
    fake.mode = "invalid"

    report = await check_conformance(adapter, context=CONTEXT, query="garden")

    assert not report.ok
    failed = [c for c in report.checks if not c.passed]
    assert [c.name for c in failed] == ["search"]
    assert "3 failed UCP validation" in failed[0].detail
    assert report.dropped == 3
    assert "[FAIL] search" in report.as_text()


async def test_conformance_fails_when_tools_error(fake, adapter):
    fake.mode = "erroring"

    report = await check_conformance(adapter, context=CONTEXT, query="garden")

    assert not report.ok
    assert report.checks[-1].name == "search"
    assert "catalog backend unavailable" in report.checks[-1].detail


async def test_conformance_of_an_unreachable_server_stops_at_the_first_check():
    async with httpx2.AsyncClient(transport=httpx2.MockTransport(_unreachable)) as http:
        adapter = UcpMcpAdapter(merchant="gone", url=URL, agent_profile=PROFILE,
                                http_client=http)
        report = await check_conformance(adapter, context=CONTEXT)

    assert not report.ok
    assert [(c.name, c.passed) for c in report.checks] == [("reachable", False)]
    assert report.as_text().splitlines()[0].endswith("FAIL")
