"""Queries on merchants and their products."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any, TypedDict

from sqlalchemy import bindparam, delete, func
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import defer
from sqlmodel import Session, col, select

from adapters.product import Product
from catalog.models import CatalogProduct, Merchant, MerchantCall, MerchantCreate, MerchantKind
from core.db import utcnow
from core.errors import InvalidInput, NotFound
from core.markets import get_market

CATEGORY_SEPARATOR = " | "
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


def slugify(name: str) -> str:
    """A URL-safe merchant slug from a display name ("Jardim & Cia" -> "jardim-cia")."""
    import unicodedata

    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    return slug[:64]


def get_merchant(*, session: Session, slug: str) -> Merchant:
    """The merchant with this slug.

    Raises:
        NotFound: no such merchant.
    """
    merchant = session.exec(select(Merchant).where(Merchant.slug == slug)).first()
    if merchant is None:
        raise NotFound(f"unknown merchant {slug!r}", merchant=slug)
    return merchant


def find_merchant(*, session: Session, slug: str) -> Merchant | None:
    return session.exec(select(Merchant).where(Merchant.slug == slug)).first()


def create_merchant(*, session: Session, merchant_in: MerchantCreate) -> Merchant:
    """Register a merchant (not committed: the caller owns the transaction).

    Raises:
        InvalidInput: bad slug or name, unknown market, or the slug is taken.
    """
    if not SLUG_RE.match(merchant_in.slug):
        raise InvalidInput(f"merchant slug must be lower-case letters, digits and '-': "
                           f"{merchant_in.slug!r}")
    if not merchant_in.name.strip():
        raise InvalidInput("merchant name must not be empty")
    market = get_market(merchant_in.market)
    if find_merchant(session=session, slug=merchant_in.slug) is not None:
        raise InvalidInput(f"merchant {merchant_in.slug!r} already exists")
    merchant = Merchant(slug=merchant_in.slug, name=merchant_in.name.strip(), market=market.code,
                        kind=merchant_in.kind, feed_source=merchant_in.feed_source,
                        mcp_url=merchant_in.mcp_url, refresh_seconds=merchant_in.refresh_seconds)
    session.add(merchant)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        # Another registration of the same slug won the race since the check above.
        raise InvalidInput(f"merchant {merchant_in.slug!r} already exists") from None
    return merchant


def list_merchants(*, session: Session, market: str | None = None) -> list[Merchant]:
    query = select(Merchant).order_by(Merchant.market, Merchant.slug)
    if market:
        query = query.where(Merchant.market == market)
    return list(session.exec(query))


class ProductRow(TypedDict):
    """One `catalogproduct` row as inserted in bulk."""

    merchant_id: int
    product_id: str
    title: str
    description: str
    brand: str | None
    url: str | None
    image_url: str | None
    categories: str
    tags: list[str]
    price_amount: int
    currency: str
    in_stock: bool
    rating_value: float | None
    rating_scale: float | None
    rating_count: int | None
    document: dict[str, Any]
    updated_at: datetime


def product_row(*, merchant_id: int, product: Product,
                received_at: datetime | None = None) -> ProductRow:
    """Flatten a validated UCP product into a `catalogproduct` row."""
    cheapest = product.cheapest_available() or min(product.variants, key=lambda v: v.price.amount)
    rating = product.rating
    return {
        "merchant_id": merchant_id,
        "product_id": product.id,
        "title": product.title,
        "description": product.description.text(),
        "brand": product.brand,
        "url": product.url,
        "image_url": product.image_url(),
        # The merchant's own category first: it is the one shown and used for variety.
        "categories": CATEGORY_SEPARATOR.join(c.value for c in sorted(
            product.categories, key=lambda c: c.taxonomy not in (None, "merchant"))),
        "tags": product.tags,
        "price_amount": cheapest.price.amount,
        "currency": product.currency,
        "in_stock": product.in_stock(),
        "rating_value": rating.value if rating else None,
        "rating_scale": rating.scale_max if rating else None,
        "rating_count": rating.count if rating else None,
        "document": product.model_dump(mode="json", exclude_none=True),
        "updated_at": received_at or utcnow(),
    }


def replace_catalog(*, session: Session, merchant: Merchant, rows: Iterable[ProductRow],
                    batch_size: int = 1000) -> int:
    """Swap a merchant's whole catalog for `rows` inside the caller's transaction.

    Readers keep seeing the previous catalog until the caller commits.
    """
    session.execute(delete(CatalogProduct).where(col(CatalogProduct.merchant_id) == merchant.id))
    count = 0
    batch: list[ProductRow] = []
    table = CatalogProduct.__table__  # type: ignore[attr-defined]
    for row in rows:
        batch.append(row)
        if len(batch) >= batch_size:
            session.execute(table.insert(), batch)
            count += len(batch)
            batch = []
    if batch:
        session.execute(table.insert(), batch)
        count += len(batch)
    merchant.revision += 1
    merchant.product_count = count
    merchant.synced_at = utcnow()
    session.add(merchant)
    return count


def _catalog_changed(session: Session, merchant: Merchant) -> None:
    merchant.revision += 1
    merchant.product_count = session.exec(
        select(func.count()).where(col(CatalogProduct.merchant_id) == merchant.id)).one()
    merchant.synced_at = utcnow()
    session.add(merchant)


def upsert_rows(*, session: Session, merchant: Merchant, rows: list[ProductRow],
                reindex: bool = True) -> None:
    """Insert products, replacing those with the same merchant id, in the caller's transaction.

    `reindex=False` keeps the market's search index as it is (live merchants' cached rows).
    """
    ids = [r["product_id"] for r in rows]
    session.execute(delete(CatalogProduct).where(
        col(CatalogProduct.merchant_id) == merchant.id, col(CatalogProduct.product_id).in_(ids)))
    session.execute(CatalogProduct.__table__.insert(), rows)  # type: ignore[attr-defined]
    if reindex:
        _catalog_changed(session, merchant)


def delete_rows(*, session: Session, merchant: Merchant, product_ids: list[str]) -> set[str]:
    """Delete some of a merchant's products; returns the ids that existed."""
    existing = set(session.exec(select(CatalogProduct.product_id).where(
        col(CatalogProduct.merchant_id) == merchant.id,
        col(CatalogProduct.product_id).in_(product_ids))))
    if existing:
        session.execute(delete(CatalogProduct).where(
            col(CatalogProduct.merchant_id) == merchant.id,
            col(CatalogProduct.product_id).in_(list(existing))))
        _catalog_changed(session, merchant)
    return existing


def delete_all_rows(*, session: Session, merchant: Merchant) -> int:
    """Delete a merchant's products and call history; returns how many products it had."""
    count = merchant.product_count
    session.execute(delete(CatalogProduct).where(col(CatalogProduct.merchant_id) == merchant.id))
    session.execute(delete(MerchantCall).where(col(MerchantCall.merchant_id) == merchant.id))
    return count


def catalog_revision(*, session: Session, market: str) -> tuple[int, ...]:
    """A cheap fingerprint of a market's catalogs: changes whenever any of them changes, or
    a merchant starts or stops failing (its health is part of ranking)."""
    return revision_from(session.execute(_REVISION, {"market": market}).one())


def revision_of(market: Any) -> list[Any]:
    """`catalog_revision` as scalar subqueries for a query of the caller's, for the market
    `market` (an expression of that query): read with other things in one round trip, and
    turned back into the revision by `revision_from`."""
    return [select(part).where(Merchant.market == market).scalar_subquery()
            for part in _revision_parts()]


def revision_from(values: Iterable[Any]) -> tuple[int, ...]:
    return tuple(int(value or 0) for value in values)


def _revision_parts() -> list[Any]:
    return [func.count(col(Merchant.id)), func.coalesce(func.sum(Merchant.revision), 0),
            func.coalesce(func.max(Merchant.id), 0), func.count(col(Merchant.last_error))]


# Built once: every chat turn reads it, and building the statement cost more than running it.
_REVISION = select(*_revision_parts()).where(Merchant.market == bindparam("market"))


# The order products enter the search index in, which decides between products that rank
# exactly alike: the unique key's, so that it is the same on every database and after every
# sync (PostgreSQL returns rows in whatever order they sit in its pages, which deletes and
# updates reshuffle). The unique index on these columns serves it without a sort.
INDEX_ORDER = (col(CatalogProduct.merchant_id), col(CatalogProduct.product_id))


def products_for_market(*, session: Session, market: str) -> list[tuple[CatalogProduct, Merchant]]:
    """Every product of every merchant in a market, with its merchant.

    The full UCP document is left out: search never needs it, and it is most of the bytes.
    """
    # Live merchants are asked at query time; their rows here are only a cache for checkout.
    merchants = {m.id: m for m in session.exec(select(Merchant).where(
        Merchant.market == market, Merchant.kind != MerchantKind.MCP))}
    if not merchants:
        return []
    query = select(CatalogProduct).options(defer(CatalogProduct.document)).where(  # type: ignore[arg-type]
        col(CatalogProduct.merchant_id).in_(list(merchants))).order_by(*INDEX_ORDER)
    return [(p, merchants[p.merchant_id]) for p in session.exec(query)]


# The columns search reads: everything but the UCP document, which is most of the bytes.
SEARCH_COLUMNS = (
    CatalogProduct.merchant_id, CatalogProduct.product_id, CatalogProduct.title,
    CatalogProduct.description, CatalogProduct.brand, CatalogProduct.url,
    CatalogProduct.image_url, CatalogProduct.categories, CatalogProduct.tags,
    CatalogProduct.price_amount, CatalogProduct.currency, CatalogProduct.in_stock,
    CatalogProduct.rating_value, CatalogProduct.rating_scale, CatalogProduct.rating_count,
    CatalogProduct.updated_at)


def iter_products_for_market(*, session: Session, market: str,
                             chunk_size: int = 2000) -> Iterator[tuple[Any, Merchant]]:
    """The rows of `products_for_market` as a stream, fetched `chunk_size` at a time.

    Each row carries only `SEARCH_COLUMNS`, read by attribute as on a `CatalogProduct`
    (`row.title`...), so a million products never sit in memory as ORM objects.
    """
    merchants = {m.id: m for m in session.exec(select(Merchant).where(
        Merchant.market == market, Merchant.kind != MerchantKind.MCP))}
    if not merchants:
        return
    query = select(*SEARCH_COLUMNS).where(  # type: ignore[call-overload]
        col(CatalogProduct.merchant_id).in_(list(merchants))).order_by(*INDEX_ORDER)
    rows = session.execute(query.execution_options(yield_per=chunk_size))
    for row in rows:
        yield row, merchants[row.merchant_id]


def get_product(*, session: Session, merchant_slug: str,
                product_id: str) -> tuple[CatalogProduct, Merchant]:
    """One product by its merchant's slug and the merchant's own product id.

    Raises:
        NotFound: no such merchant or product.
    """
    merchant = get_merchant(session=session, slug=merchant_slug)
    product = session.exec(
        select(CatalogProduct).where(CatalogProduct.merchant_id == merchant.id,
                                     CatalogProduct.product_id == product_id)
    ).first()
    if product is None:
        raise NotFound(f"unknown product {product_id!r} of {merchant_slug!r}",
                       merchant=merchant_slug, product=product_id)
    return product, merchant
