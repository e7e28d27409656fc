"""A merchant's UCP catalog server for tests: a real MCP server (the `mcp` SDK's low-level
`Server` over streamable HTTP) serving a small in-memory catalog.

It records every tool call it receives, so tests assert on what the client sent, and it can
misbehave on demand (`server.mode = ...`):

    normal     answers like a conforming merchant
    invalid    mixes products that fail UCP validation in with the valid ones
    hanging    never answers a tool call (until the server stops)
    erroring   answers every tool call with `isError`
    rpc_error  answers every tool call with a JSON-RPC error
    text_only  sends the payload as JSON text, without `structuredContent`

Use it in-process: `async with server.running(): ...` and give the adapter
`server.http_client()`, an `httpx2.AsyncClient` over the app's ASGI transport.
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import httpx2
import mcp_types as types
from mcp import MCPError
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.transport_security import TransportSecuritySettings

URL = "http://merchant.test/mcp"
MODES = ("normal", "invalid", "hanging", "erroring", "rpc_error", "text_only")
UCP = {"version": "2026-01-11",
       "capabilities": {"dev.ucp.shopping.catalog.search": [{"version": "2026-01-11"}]}}


def product(pid: str, title: str, amount: int, *, category: str, tags: list[str],
            currency: str = "USD") -> dict[str, Any]:
    """A valid UCP product document with one variant."""
    price = {"amount": amount, "currency": currency}
    return {
        "id": pid, "handle": pid.lower(), "title": title,
        "description": {"plain": f"{title}, from the fake merchant."},
        "url": f"https://merchant.test/products/{pid.lower()}",
        "categories": [{"value": category, "taxonomy": "merchant"}],
        "price_range": {"min": price, "max": price},
        "media": [{"type": "image", "url": f"https://merchant.test/{pid.lower()}.jpg"}],
        "variants": [{"id": f"{pid}-V1", "title": title, "price": price,
                      "availability": {"available": True}}],
        "rating": {"value": 4.5, "scale_max": 5, "count": 40},
        "tags": tags,
    }


CATALOG = [
    product("WCAN", "Copper Watering Can", 4500, category="Garden > Tools",
            tags=["garden", "recipient:mother"]),
    product("SEEDS", "Heirloom Herb Seed Kit", 1900, category="Garden > Seeds",
            tags=["garden", "kitchen"]),
    product("CHESS", "Walnut Chess Set", 8900, category="Games > Board Games",
            tags=["games", "recipient:father"]),
]

INVALID = [
    {"id": "NOVARIANT", "title": "A product without variants", "variants": []},
    {"id": "FLOAT", "title": "Price as a float",
     "variants": [{"id": "FLOAT-V1", "title": "x", "price": {"amount": 12.5, "currency": "USD"}}]},
    "not even an object",
]


class RecordingTransport(httpx2.AsyncBaseTransport):
    """Passes requests on to another transport, noting each one's JSON-RPC method."""

    def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
        self.inner = inner
        self.methods: list[str] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        try:
            self.methods.append(json.loads(request.content).get("method", "?"))
        except ValueError:
            self.methods.append(request.method)
        return await self.inner.handle_async_request(request)


@dataclass(frozen=True)
class ReceivedCall:
    tool: str
    arguments: dict[str, Any]


class FakeUcpServer:
    """An in-memory merchant catalog behind a real MCP streamable-HTTP endpoint."""

    def __init__(self, mode: str = "normal", catalog: list[dict[str, Any]] | None = None) -> None:
        self.mode = mode
        self.catalog = catalog if catalog is not None else copy.deepcopy(CATALOG)
        self.received: list[ReceivedCall] = []
        self._stopping = anyio.Event()
        self.server: Server[Any] = Server("fake-merchant", on_list_tools=self._list_tools,
                                          on_call_tool=self._call_tool)
        self.app = self.server.streamable_http_app(
            streamable_http_path="/mcp", stateless_http=True,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False))

    @asynccontextmanager
    async def running(self) -> AsyncIterator[FakeUcpServer]:
        """Run the server's session manager; hanging calls are released on the way out."""
        async with self.server.session_manager.run():
            try:
                yield self
            finally:
                self._stopping.set()

    def http_client(self) -> httpx2.AsyncClient:
        """An HTTP client whose requests reach this server in-process."""
        return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=self.app),
                                  base_url="http://merchant.test")

    def calls(self, tool: str) -> list[dict[str, Any]]:
        """The arguments of every call of `tool` received so far."""
        return [c.arguments for c in self.received if c.tool == tool]

    async def _list_tools(self, ctx: ServerRequestContext[Any],
                          params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        schema = {"type": "object", "properties": {"meta": {"type": "object"},
                                                   "catalog": {"type": "object"}}}
        return types.ListToolsResult(tools=[
            types.Tool(name=name, description=f"UCP {name}", input_schema=schema)
            for name in ("search_catalog", "lookup_catalog", "get_product")])

    async def _call_tool(self, ctx: ServerRequestContext[Any],
                         params: types.CallToolRequestParams) -> types.CallToolResult:
        arguments = params.arguments or {}
        self.received.append(ReceivedCall(params.name, arguments))
        if self.mode == "hanging":
            await self._stopping.wait()
        if self.mode == "erroring":
            return types.CallToolResult(
                content=[types.TextContent(text="catalog backend unavailable")], is_error=True)
        if self.mode == "rpc_error":
            raise MCPError(types.INTERNAL_ERROR, "catalog backend crashed")
        catalog = arguments.get("catalog") or {}
        if params.name == "search_catalog":
            payload = self._search(catalog)
        elif params.name == "lookup_catalog":
            payload = self._lookup(catalog)
        elif params.name == "get_product":
            payload = self._get_product(catalog)
        else:
            raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {params.name}")
        text = [types.TextContent(text=json.dumps(payload))]
        if self.mode == "text_only":
            return types.CallToolResult(content=text)
        return types.CallToolResult(content=text, structured_content=payload)

    def _search(self, catalog: dict[str, Any]) -> dict[str, Any]:
        words = str(catalog.get("query") or "").lower().split()
        filters = catalog.get("filters") or {}
        price = filters.get("price") or {}
        categories = filters.get("categories") or []
        found = []
        for item in self.catalog:
            text = " ".join([item["title"], *item["tags"]]).lower()
            amount = item["variants"][0]["price"]["amount"]
            if words and not any(w in text for w in words):
                continue
            if categories and not any(c["value"].startswith(tuple(categories))
                                      for c in item["categories"]):
                continue
            if price.get("min") is not None and amount < price["min"]:
                continue
            if price.get("max") is not None and amount > price["max"]:
                continue
            found.append(item)
        found = found[:int((catalog.get("pagination") or {}).get("limit") or 10)]
        products: list[Any] = found + INVALID if self.mode == "invalid" else found
        return {"ucp": UCP, "products": products, "pagination": {"has_next_page": False}}

    def _lookup(self, catalog: dict[str, Any]) -> dict[str, Any]:
        ids = list(dict.fromkeys(catalog.get("ids") or []))
        by_id = {p["id"]: p for p in self.catalog}
        products: list[Any] = []
        for pid in ids:
            if pid in by_id:
                featured = by_id[pid]["variants"][0]
                variant = {**featured, "inputs": [{"id": pid, "match": "featured"}]}
                products.append({**by_id[pid], "variants": [variant]})
        if self.mode == "invalid":
            products += INVALID
        return {"ucp": UCP, "products": products,
                "messages": [{"type": "info", "code": "not_found", "content": pid}
                             for pid in ids if pid not in by_id]}

    def _get_product(self, catalog: dict[str, Any]) -> dict[str, Any]:
        for item in self.catalog:
            if item["id"] == catalog.get("id"):
                return {"ucp": UCP, "product": item}
        return {"ucp": {**UCP, "status": "error"},
                "messages": [{"type": "error", "code": "not_found", "severity": "unrecoverable",
                              "content": f"Product not found: {catalog.get('id')}"}]}
