"""Catalog tables: merchants and the products imported from their catalogs."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from core.db import utcnow


class MerchantBase(SQLModel):
    slug: str = Field(index=True, unique=True, max_length=64)
    name: str = Field(max_length=200)
    market: str = Field(max_length=2, index=True)


class MerchantCreate(MerchantBase):
    feed_source: str | None = None


class Merchant(MerchantBase, table=True):
    """A shop whose catalog Vitrine searches."""

    id: int | None = Field(default=None, primary_key=True)
    feed_source: str | None = None
    # Bumped on every catalog change so search indexes know to rebuild.
    revision: int = 0
    product_count: int = 0
    synced_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


class MerchantPublic(MerchantBase):
    product_count: int
    feed_source: str | None
    synced_at: datetime | None


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
