"""Vitrine as a UCP MCP server ("MCP enabler") for the merchants whose catalogs it holds.

An `McpEndpoint` is an ASGI app plus the lifespan its MCP session manager must run in (a
mounted app gets no lifespan events of its own, so the composition root enters
`endpoint.lifespan()` in the FastAPI lifespan). `bot.channels.mcp` builds the second one.

- `build_merchant_mcp_app(engine)`: one app for every merchant whose catalog Vitrine holds,
  mounted at `/mcp/merchants`; the merchant is the next path segment
  (`/mcp/merchants/giftwell`), and an unknown one gets a 404 before any MCP is spoken. It
  serves the UCP tools `search_catalog`, `lookup_catalog` and `get_product` (UCP 2026-01-11),
  which require `meta["ucp-agent"]`. One MCP server serves them all: the SDK hands each tool
  call the HTTP request it came in, which carries the merchant resolved from the path.

Endpoints are stateless JSON endpoints: every request stands alone, so any number of workers can
serve them and no MCP session outlives a request.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import mcp_types as types
from mcp import MCPError
from mcp.server.caching import CacheableMethod, CacheHint
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.engine import Engine
from sqlalchemy.orm import defer
from sqlmodel import Session, col, func, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from catalog.models import CatalogProduct, Merchant, MerchantKind
from catalog.search import CatalogIndex, SearchRequest, rank
from catalog.store import find_merchant
from core.errors import InvalidInput
from core.markets import get_market

UCP_VERSION = "2026-01-11"
SEARCH = "dev.ucp.shopping.catalog.search"
LOOKUP = "dev.ucp.shopping.catalog.lookup"
MAX_PAGE = 50
MAX_LOOKUP_IDS = 50
VARIANT_SCAN_LIMIT = 20_000  # larger catalogs resolve product ids only
SHOP_KEY = "vitrine.merchant"  # where the gate leaves the merchant in the ASGI scope
LISTING_HINT: dict[CacheableMethod, CacheHint] = {
    "tools/list": CacheHint(ttl_ms=5 * 60 * 1000, scope="public")}

class McpEndpoint:
    """An MCP server's ASGI app and the lifespan its session manager must run in."""

    def __init__(self, server: Server[Any], *, security: TransportSecuritySettings | None,
                 admit: Callable[[Request], Awaitable[Response | None]] | None = None) -> None:
        self._manager = StreamableHTTPSessionManager(
            app=server, json_response=True, stateless=True, security_settings=security)
        self._admit = admit
        self._running = False
        self.app: ASGIApp = self

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """Run the session manager; enter once, for the app's whole life."""
        async with self._manager.run():
            self._running = True
            try:
                yield
            finally:
                self._running = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._running:
            response: Response | None = _error(503, "unavailable", "MCP lifespan not running")
        else:
            response = await self._admit(Request(scope)) if self._admit else None
        if response is not None:
            await response(scope, receive, send)
            return
        await self._manager.handle_request(scope, receive, send)


def _error(status: int, code: str, reason: str) -> JSONResponse:
    return JSONResponse({"error": code, "reason": reason}, status_code=status)


# -- the merchant catalog endpoint ---------------------------------------------------------

@dataclass(frozen=True)
class Shop:
    """The merchant a request is for, resolved from the path by the gate."""

    id: int
    slug: str
    market: str
    currency: str
    revision: int


class _Filters(BaseModel):
    model_config = ConfigDict(extra="allow")

    categories: list[str] = Field(default_factory=list)
    price: dict[str, int | None] = Field(default_factory=dict)


class _Pagination(BaseModel):
    cursor: str | None = None
    limit: int = Field(default=10, ge=1)


class SearchInput(BaseModel):
    query: str | None = None
    context: dict[str, Any] = Field(default_factory=dict)
    filters: _Filters = Field(default_factory=_Filters)
    pagination: _Pagination = Field(default_factory=_Pagination)


class LookupInput(BaseModel):
    ids: list[str] = Field(min_length=1)


class ProductInput(BaseModel):
    id: str = Field(min_length=1)


_CATALOG_SCHEMA = {"type": "object", "required": ["meta", "catalog"], "properties": {
    "meta": {"type": "object", "required": ["ucp-agent"], "properties": {"ucp-agent": {
        "type": "object", "required": ["profile"],
        "properties": {"profile": {"type": "string", "format": "uri"}}}}},
    "catalog": {"type": "object"}}}
_TOOLS = {"search_catalog": "Search the merchant's products (UCP catalog search).",
          "lookup_catalog": "Fetch products or variants by id (UCP catalog lookup).",
          "get_product": "Full detail of one product or variant (UCP get_product)."}


class MerchantCatalog:
    """Answers the UCP catalog tools for one merchant at a time from Vitrine's database."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._indexes: dict[int, tuple[int, CatalogIndex]] = {}

    def find_shop(self, slug: str) -> Shop | None:
        with Session(self._engine) as session:
            merchant = find_merchant(session=session, slug=slug)
            # A live merchant answers at its own server; Vitrine only serves catalogs it holds.
            if merchant is None or merchant.id is None or merchant.kind == MerchantKind.MCP:
                return None
            return Shop(id=merchant.id, slug=merchant.slug, market=merchant.market,
                        currency=get_market(merchant.market).currency, revision=merchant.revision)

    def answer(self, tool: str, shop: Shop, catalog: dict[str, Any]) -> dict[str, Any]:
        """The payload of one UCP tool call.

        Raises:
            ValidationError, InvalidInput: the request is not one this tool can answer.
            MCPError: too many ids in a lookup (JSON-RPC -32602, as UCP requires).
        """
        if tool == "search_catalog":
            return self.search(shop, SearchInput.model_validate(catalog))
        if tool == "lookup_catalog":
            return self.lookup(shop, LookupInput.model_validate(catalog))
        return self.get_product(shop, ProductInput.model_validate(catalog))

    def search(self, shop: Shop, request: SearchInput) -> dict[str, Any]:
        """Text relevance over the merchant's in-stock products, filtered and paged."""
        if not (request.query or "").strip() and not (request.filters.categories
                                                      or request.filters.price):
            raise InvalidInput("a search needs a query or filters")
        index = self._index(shop)
        messages: list[dict[str, str]] = []
        price = request.filters.price
        currency = request.context.get("currency")
        if price and currency not in (None, shop.currency):  # UCP: MAY ignore, SHOULD say so
            price = {}
            messages.append({"type": "warning", "code": "price_filter_ignored", "content":
                             f"prices are in {shop.currency}; the filter was in {currency}"})
        wanted = [c.casefold() for c in request.filters.categories]
        exclude = {p.ref for p in index.products if wanted and not any(
            c.strip().casefold() == w or c.strip().casefold().startswith(w + " >")
            for c in p.categories.split("|") for w in wanted)}
        offset, limit = _offset(request.pagination.cursor), min(request.pagination.limit, MAX_PAGE)
        ranked = rank(index, SearchRequest(
            market=shop.market, currency=shop.currency,
            terms=[request.query] if request.query else [], budget_min=price.get("min"),
            budget_max=price.get("max"), exclude=exclude, limit=offset + limit + 1))
        page = [r.product.product_id for r in ranked[offset:offset + limit]]
        pagination: dict[str, Any] = {"has_next_page": len(ranked) > offset + limit}
        if pagination["has_next_page"]:
            pagination["cursor"] = _cursor(offset + limit)
        documents = self._documents(shop, page)
        return {"ucp": _ucp(SEARCH), "products": [documents[i] for i in page if i in documents],
                "pagination": pagination, **({"messages": messages} if messages else {})}

    def lookup(self, shop: Shop, request: LookupInput) -> dict[str, Any]:
        """Products by product or variant id; each returned variant says which ids it answers."""
        ids = list(dict.fromkeys(request.ids))
        if len(ids) > MAX_LOOKUP_IDS:
            raise MCPError(types.INVALID_PARAMS, f"at most {MAX_LOOKUP_IDS} ids per lookup")
        resolved = self._resolve(shop, ids)
        found: dict[str, dict[str, Any]] = {}
        inputs: dict[str, dict[str, list[dict[str, str]]]] = {}  # product -> variant -> inputs
        for wanted in ids:
            if wanted not in resolved:
                continue
            document, variant_id = resolved[wanted]
            found.setdefault(document["id"], document)
            match = "exact" if variant_id else "featured"
            variant_id = variant_id or document["variants"][0]["id"]
            inputs.setdefault(document["id"], {}).setdefault(variant_id, []).append(
                {"id": wanted, "match": match})
        products = [{**doc, "variants": [{**v, "inputs": inputs[pid][v["id"]]}
                                         for v in doc["variants"] if v["id"] in inputs[pid]]}
                    for pid, doc in found.items()]
        return {"ucp": _ucp(LOOKUP), "products": products,
                "messages": [{"type": "info", "code": "not_found", "content": i}
                             for i in ids if i not in resolved]}

    def get_product(self, shop: Shop, request: ProductInput) -> dict[str, Any]:
        """One product in full; a variant id puts that variant first."""
        resolved = self._resolve(shop, [request.id]).get(request.id)
        if resolved is None:
            return {"ucp": {**_ucp(LOOKUP), "status": "error"}, "messages": [{
                "type": "error", "code": "not_found", "severity": "unrecoverable",
                "content": f"Product not found: {request.id}"}]}
        document, variant_id = resolved
        variants = sorted(document["variants"], key=lambda v: v["id"] != variant_id)
        return {"ucp": _ucp(LOOKUP), "product": {**document, "variants": variants}}

    def _index(self, shop: Shop) -> CatalogIndex:
        cached = self._indexes.get(shop.id)
        if cached and cached[0] == shop.revision:
            return cached[1]
        with Session(self._engine) as session:
            merchant = session.get(Merchant, shop.id)
            rows = session.exec(select(CatalogProduct)
                                .options(defer(CatalogProduct.document))  # type: ignore[arg-type]
                                .where(CatalogProduct.merchant_id == shop.id))
            index = CatalogIndex([(row, merchant) for row in rows] if merchant else [])
        self._indexes[shop.id] = (shop.revision, index)
        return index

    def _documents(self, shop: Shop, product_ids: list[str]) -> dict[str, dict[str, Any]]:
        if not product_ids:
            return {}
        with Session(self._engine) as session:
            rows = session.exec(select(CatalogProduct.product_id, CatalogProduct.document).where(
                CatalogProduct.merchant_id == shop.id,
                col(CatalogProduct.product_id).in_(product_ids)))
            return {pid: dict(document) for pid, document in rows}

    def _small(self, shop: Shop) -> bool:
        with Session(self._engine) as session:
            count = session.exec(select(func.count()).where(
                CatalogProduct.merchant_id == shop.id)).one()
        return int(count) <= VARIANT_SCAN_LIMIT

    def _resolve(self, shop: Shop, ids: list[str]) -> dict[str, tuple[dict[str, Any], str | None]]:
        """Each id found -> (its product's document, the variant id when it named a variant)."""
        by_product = self._documents(shop, ids)
        resolved: dict[str, tuple[dict[str, Any], str | None]] = {
            i: (by_product[i], None) for i in ids if i in by_product}
        rest = set(ids) - set(resolved)
        if rest and self._small(shop):
            # Variant ids live inside the documents: scanned only for catalogs small enough
            # that an anonymous lookup cannot make the server read millions of documents.
            with Session(self._engine) as session:
                for stored in session.exec(select(CatalogProduct.document).where(
                        CatalogProduct.merchant_id == shop.id)):
                    document = dict(stored)
                    for variant in document.get("variants", []):
                        if variant.get("id") in rest:
                            resolved[variant["id"]] = (document, variant["id"])
        return resolved


def _ucp(capability: str) -> dict[str, Any]:
    return {"version": UCP_VERSION, "capabilities": {capability: [{"version": UCP_VERSION}]}}


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def _offset(cursor: str | None) -> int:
    try:
        offset = json.loads(base64.urlsafe_b64decode(cursor.encode()))["offset"] if cursor else 0
    except (ValueError, KeyError, TypeError):
        offset = None
    if not isinstance(offset, int) or offset < 0:
        raise InvalidInput("pagination.cursor is not a cursor this server issued")
    return offset


def tool_result(payload: dict[str, Any]) -> types.CallToolResult:
    text = types.TextContent(text=json.dumps(payload, default=str))
    return types.CallToolResult(content=[text], structured_content=payload)


def tool_error(reason: str | ValidationError) -> types.CallToolResult:
    if isinstance(reason, ValidationError):
        first = reason.errors()[0]
        reason = f"invalid arguments: {'.'.join(map(str, first['loc']))}: {first['msg']}"
    return types.CallToolResult(content=[types.TextContent(text=reason)], is_error=True)


def _agent_problem(arguments: dict[str, Any]) -> str | None:
    meta = arguments.get("meta")
    agent = meta.get("ucp-agent") if isinstance(meta, dict) else None
    if not isinstance(agent, dict) or not isinstance(agent.get("profile"), str):
        return ('meta["ucp-agent"] with a "profile" URL is required on every UCP request '
                '(arguments: {"meta": {"ucp-agent": {"profile": ...}}, "catalog": {...}})')
    return None


def build_merchant_mcp_app(engine: Engine, *,
                           security: TransportSecuritySettings | None = None) -> McpEndpoint:
    """The UCP catalog MCP endpoint of every merchant, to mount at `/mcp/merchants`.

    Args:
        engine: Vitrine's database, where each merchant's products and UCP documents live.
        security: the SDK's DNS-rebinding protection (allowed hosts and origins); off if None.
    """
    catalog = MerchantCatalog(engine)

    async def list_tools(ctx: ServerRequestContext[Any],
                         params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[
            types.Tool(name=name, description=text, input_schema=_CATALOG_SCHEMA)
            for name, text in _TOOLS.items()])

    async def call_tool(ctx: ServerRequestContext[Any],
                        params: types.CallToolRequestParams) -> types.CallToolResult:
        if params.name not in _TOOLS:
            raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {params.name}")
        shop = getattr(ctx.request, "scope", {}).get(SHOP_KEY)
        if not isinstance(shop, Shop):
            return tool_error("this server answers at /mcp/merchants/{merchant} only")
        arguments = params.arguments or {}
        if problem := _agent_problem(arguments):
            return tool_error(problem)
        try:
            payload = await anyio.to_thread.run_sync(
                catalog.answer, params.name, shop, arguments.get("catalog") or {})
        except ValidationError as exc:
            return tool_error(exc)
        except InvalidInput as exc:
            return tool_error(exc.reason)
        return tool_result(payload)

    async def admit(request: Request) -> Response | None:
        slug = request.path_params["merchant"]
        shop = await anyio.to_thread.run_sync(catalog.find_shop, slug)
        if shop is None:
            return _error(404, "not_found", f"unknown merchant {slug!r}")
        request.scope[SHOP_KEY] = shop
        return None

    server: Server[Any] = Server("vitrine-merchant-catalog", version="0.1.0",
                                 cache_hints=LISTING_HINT,
                                 on_list_tools=list_tools, on_call_tool=call_tool)
    endpoint = McpEndpoint(server, security=security, admit=admit)
    endpoint.app = Starlette(routes=[Route("/{merchant}", endpoint)])
    return endpoint
