"""Catalog tables: merchants and the products imported from their catalogs."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from core.db import utcnow


class MerchantBase(SQLModel):
    slug: str = Field(index=True, unique=True, max_length=64)
    name: str = Field(max_length=200)
    market: str = Field(max_length=2, index=True)


class MerchantKind(StrEnum):
    FEED = "feed"  # a product feed file or URL, imported into the local index
    MCP = "mcp"  # the merchant's own UCP MCP server, queried live
    PUSH = "push"  # products pushed over Vitrine's API, kept in the local index


class MerchantCreate(MerchantBase):
    kind: MerchantKind = MerchantKind.FEED
    feed_source: str | None = None
    mcp_url: str | None = None
    refresh_seconds: int | None = None


class Merchant(MerchantBase, table=True):
    """A shop whose catalog Vitrine searches."""

    id: int | None = Field(default=None, primary_key=True)
    kind: MerchantKind = Field(default=MerchantKind.FEED)
    feed_source: str | None = None
    mcp_url: str | None = None
    refresh_seconds: int | None = None  # re-fetch a feed URL this often
    feed_base_url: str | None = None  # site-relative links in the feed resolve against it
    feed_etag: str | None = None
    feed_last_modified: str | None = None
    api_key_hash: str | None = Field(default=None, max_length=64)
    # Bumped on every catalog change so search indexes know to rebuild.
    revision: int = 0
    product_count: int = 0
    rejected_count: int = 0
    synced_at: datetime | None = None
    last_error: str | None = None
    created_at: datetime = Field(default_factory=utcnow)


class MerchantPublic(MerchantBase):
    kind: MerchantKind
    product_count: int
    rejected_count: int
    feed_source: str | None
    mcp_url: str | None
    refresh_seconds: int | None
    synced_at: datetime | None
    last_error: str | None


class MerchantCall(SQLModel, table=True):
    """One live call to a merchant's catalog, for its error rate and latency."""

    id: int | None = Field(default=None, primary_key=True)
    merchant_id: int = Field(foreign_key="merchant.id", index=True)
    at: datetime = Field(default_factory=utcnow)
    operation: str = Field(max_length=20)
    ok: bool
    latency_ms: float
    dropped: int = 0


class CatalogProduct(SQLModel, table=True):
    """One product of one merchant, flattened for search, with the full UCP document kept."""

    __table_args__ = (UniqueConstraint("merchant_id", "product_id"),)

    id: int | None = Field(default=None, primary_key=True)
    merchant_id: int = Field(foreign_key="merchant.id", index=True)
    product_id: str = Field(max_length=200)
    title: str
    description: str = ""
    brand: str | None = None
    url: str | None = None
    image_url: str | None = None
    categories: str = ""
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    price_amount: int
    currency: str = Field(max_length=3)
    in_stock: bool = True
    rating_value: float | None = None
    rating_scale: float | None = None
    rating_count: int | None = None
    document: dict = Field(default_factory=dict, sa_column=Column(JSON))
    # When Vitrine last received this product's data from the merchant (price freshness).
    updated_at: datetime = Field(default_factory=utcnow)
