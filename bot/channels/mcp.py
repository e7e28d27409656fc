"""Vitrine as an MCP server for other assistants: the tool `recommend_gifts` at `/mcp`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import mcp_types as types
from mcp import MCPError
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import BaseModel, Field, ValidationError

from catalog.ucp_server import LISTING_HINT, McpEndpoint, tool_error, tool_result
from core.errors import InvalidInput

Recommend = Callable[[str, str, int], dict[str, Any]]


class GiftRequest(BaseModel):
    """The arguments of `recommend_gifts`; its JSON schema is the tool's input schema."""

    text: str = Field(min_length=1, max_length=1000, description="The shopper's request.")
    market: str = Field(min_length=2, max_length=2, description="ISO 3166 country (BR, US).")
    limit: int = Field(default=3, ge=1, le=10, description="How many gifts at most.")


def build_vitrine_mcp_app(recommend: Recommend, *,
                          security: TransportSecuritySettings | None = None) -> McpEndpoint:
    """The Vitrine-wide MCP endpoint with the tool `recommend_gifts`, to route at `/mcp`.

    Args:
        recommend: `(text, market, limit) -> recommendation JSON`; called in a worker thread.
            An `InvalidInput` it raises (an unknown market) becomes a tool error.
        security: as for `build_merchant_mcp_app`.
    """

    async def list_tools(ctx: ServerRequestContext[Any],
                         params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[types.Tool(
            name="recommend_gifts", input_schema=GiftRequest.model_json_schema(),
            description="Recommend gifts from every Vitrine merchant of a market for a "
                        "request in the shopper's words, with a reason for each.")])

    async def call_tool(ctx: ServerRequestContext[Any],
                        params: types.CallToolRequestParams) -> types.CallToolResult:
        if params.name != "recommend_gifts":
            raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {params.name}")
        try:
            gift = GiftRequest.model_validate(params.arguments or {})
            payload = await anyio.to_thread.run_sync(recommend, gift.text,
                                                     gift.market.upper(), gift.limit)
        except ValidationError as exc:
            return tool_error(exc)
        except InvalidInput as exc:
            return tool_error(exc.reason)
        return tool_result(payload)

    server: Server[Any] = Server("vitrine", version="0.1.0", cache_hints=LISTING_HINT,
                                 on_list_tools=list_tools, on_call_tool=call_tool)
    return McpEndpoint(server, security=security)
