"""The `CatalogAdapter` protocol: how Vitrine reaches one merchant's catalog, whatever it is.

Feeds and pushed products are imported into the local index and searched there; a merchant's
own UCP MCP server is queried live. Every adapter hands back products already validated into
the UCP `Product` model: whatever a merchant sends that does not validate is dropped and
counted, never shown.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

from adapters.product import Product


@dataclass(frozen=True)
class ShopperContext:
    """What a merchant may know about who is asking (UCP `context`)."""

    country: str  # ISO 3166-1 alpha-2, the shopper's market
    language: str  # "pt", "es", "en"
    currency: str  # ISO 4217
    intent: str | None = None  # the shopper's request in their words


@dataclass(frozen=True)
class CatalogQuery:
    """One search: free text plus filters, amounts in minor units of the context currency."""

    text: str
    context: ShopperContext
    categories: tuple[str, ...] = ()
    price_min: int | None = None
    price_max: int | None = None
    limit: int = 20


@dataclass
class AdapterResult:
    """Valid products, and how many items the merchant sent that failed validation."""

    products: list[Product] = field(default_factory=list)
    dropped: int = 0
    messages: list[str] = field(default_factory=list)  # merchant notices, e.g. not_found ids


@dataclass
class AdapterHealth:
    reachable: bool
    latency_ms: float | None = None
    detail: str = ""


def remaining(deadline: float) -> float:
    """Seconds left until a `time.monotonic()` deadline (never negative)."""
    return max(0.0, deadline - time.monotonic())


class CatalogAdapter(Protocol):
    """One merchant's catalog, however it is reached."""

    merchant: str  # the merchant's slug

    async def search(self, query: CatalogQuery, *, deadline: float) -> AdapterResult:
        """Search the catalog.

        Args:
            query: the text, the shopper's context and filters.
            deadline: a `time.monotonic()` instant by which the call must have returned;
                an adapter that cannot answer by then raises `AdapterTimeout`.

        Returns:
            Validated products, best first as the merchant ranks them, and the count of
            items dropped at the boundary.

        Raises:
            AdapterTimeout: the deadline passed.
            AdapterError: the merchant could not be reached or answered with an error.
        """
        ...

    async def lookup(self, ids: list[str], *, context: ShopperContext,
                     deadline: float) -> AdapterResult:
        """Fetch products by the merchant's ids (current price and stock).

        Args:
            ids: product or variant ids as the merchant gave them.
            context: the shopper's context.
            deadline: as for `search`.

        Returns:
            The products found; ids not found are simply absent.

        Raises:
            AdapterTimeout, AdapterError: as for `search`.
        """
        ...

    async def health(self, *, deadline: float) -> AdapterHealth:
        """Check that the catalog answers, and how fast. Never raises."""
        ...
