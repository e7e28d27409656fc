"""Registering merchants and (re)importing their feeds, each import one transaction."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session

from adapters.feed import FeedReport, RowError, feed_format, is_web_link, read_feed
from adapters.product import Product
from adapters.push import DeleteBatch, ItemError, PushReport, UpsertBatch, parse_batch
from catalog.models import Merchant, MerchantCreate, MerchantKind
from catalog.policy import blocked_reason
from catalog.sponsorship import clear_sponsored, unsponsor
from catalog.store import (
    ProductRow,
    create_merchant,
    delete_all_rows,
    delete_rows,
    find_merchant,
    get_merchant,
    product_row,
    replace_catalog,
    slugify,
    upsert_rows,
)
from core.auth import bearer
from core.db import session_scope, utcnow
from core.errors import FeedError, InvalidInput, NotFound, SignatureError
from core.markets import Market, get_market

MAX_NAME_CHARS = 200
PROGRESS_EVERY = 5000  # rows between progress reports of a long import


def add_merchant_from_feed(*, engine: Engine, name: str, market: str, feed: Path,
                           slug: str | None = None, base_url: str | None = None,
                           replace: bool = False, source: str | None = None,
                           refresh_seconds: int | None = None, etag: str | None = None,
                           last_modified: str | None = None,
                           on_rows: Callable[[int], None] | None = None
                           ) -> tuple[Merchant, FeedReport]:
    """Register a merchant and import its feed; nothing is stored if the feed is unusable.

    With `replace`, an existing merchant of the same slug gets its catalog swapped instead.
    `source` is where the feed comes from when `feed` is a downloaded copy (its URL), with
    the `etag` / `last_modified` of that download and how often to fetch it again.

    Raises:
        InvalidInput: bad name or market, slug taken (without `replace`).
        FeedError: the file is missing, not a feed, or has no valid product.
    """
    m = get_market(market)
    name = name.strip()
    if not name or len(name) > MAX_NAME_CHARS:
        raise InvalidInput(f"merchant name must have 1 to {MAX_NAME_CHARS} characters")
    slug = slug or slugify(name)
    if not slug:
        raise InvalidInput(f"cannot make a merchant id from the name {name!r}")
    if not feed.is_file():
        raise FeedError(f"feed file not found: {feed}")
    feed_format(feed)
    with session_scope(engine) as session:
        merchant = find_merchant(session=session, slug=slug)
        if merchant is not None and not replace:
            raise InvalidInput(f"merchant {slug!r} already exists")
        if merchant is not None and merchant.kind != MerchantKind.FEED:
            raise InvalidInput(f"merchant {slug!r} is a {merchant.kind.value} merchant, not a "
                               "feed: remove it first to change how its catalog is reached")
        if merchant is None:
            merchant = create_merchant(session=session, merchant_in=MerchantCreate(
                slug=slug, name=name, market=m.code, feed_source=source or str(feed),
                refresh_seconds=refresh_seconds))
        else:
            merchant.feed_source = source or str(feed)
            merchant.refresh_seconds = refresh_seconds or merchant.refresh_seconds
        merchant.feed_etag, merchant.feed_last_modified = etag, last_modified
        merchant.feed_base_url = base_url
        report = import_feed(session=session, merchant=merchant, path=feed, market=m,
                             base_url=base_url, on_rows=on_rows)
    return merchant, report


def rejection_reason(product: Product, market: Market) -> str | None:
    """Why a valid UCP product still cannot be listed in a market, or None if it can."""
    if product.currency != market.currency:
        return (f"price in {product.currency}, but the merchant's market sells in "
                f"{market.currency}")
    for link in [product.url] + [m.url for m in product.media]:
        if link and not is_web_link(link):
            return f"link {link[:80]!r} is not an absolute http(s) URL"
    return blocked_reason(market.code, categories=[c.value for c in product.categories],
                          tags=product.tags)


def import_feed(*, session: Session, merchant: Merchant, path: Path, market: Market,
                base_url: str | None = None,
                on_rows: Callable[[int], None] | None = None) -> FeedReport:
    """Replace a merchant's catalog with a feed's valid products, in the caller's transaction.

    Rows that cannot be listed in the market (other currency, blocked category) are rejected
    with a reason, like rows that are not valid products.

    Raises:
        FeedError: the file is not a feed, or not one row of it is a valid product (the old
            catalog is kept).
    """
    report = FeedReport()
    seen: dict[str, int] = {}
    received_at = utcnow()

    def valid_rows() -> Iterator[ProductRow]:
        for count, (line, item) in enumerate(read_feed(path, base_url=base_url), start=1):
            if on_rows is not None and count % PROGRESS_EVERY == 0:
                on_rows(count)
            if isinstance(item, RowError):
                report.add_error(item)
            elif item.id in seen:
                report.add_error(RowError(line, f"duplicate id {item.id!r} "
                                                f"(first on line {seen[item.id]})"))
            elif reason := rejection_reason(item, market):
                report.add_error(RowError(line, reason))
            else:
                seen[item.id] = line
                yield product_row(merchant_id=merchant.id or 0, product=item,
                                  received_at=received_at)

    report.imported = replace_catalog(session=session, merchant=merchant, rows=valid_rows())
    merchant.rejected_count = report.rejected
    if report.imported == 0:
        first = f" (line {report.errors[0].line}: {report.errors[0].reason})" \
            if report.errors else ""
        raise FeedError(f"{path.name}: no valid products in feed{first}")
    return report


API_KEY_PREFIX = "vk_"


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def issue_api_key(merchant: Merchant) -> str:
    """A new API key for a merchant; only its hash is kept, so it is shown once."""
    key = f"{API_KEY_PREFIX}{merchant.slug}_{secrets.token_urlsafe(24)}"
    merchant.api_key_hash = hash_api_key(key)
    return key


def api_key_matches(merchant: Merchant, key: str | None) -> bool:
    """Constant-time check of a presented key against the merchant's stored hash."""
    if not key or not merchant.api_key_hash:
        return False
    return hmac.compare_digest(hash_api_key(key), merchant.api_key_hash)


def merchant_for_key(session: Session, slug: str, authorization: str | None) -> Merchant:
    """The merchant, if the request's bearer token is its API key.

    Raises:
        SignatureError: no key or another one (also for a merchant that does not exist, so
            a caller cannot learn which slugs exist).
    """
    try:
        merchant = get_merchant(session=session, slug=slug)
    except NotFound:
        merchant = None
    if merchant is None or not api_key_matches(merchant, bearer(authorization)):
        raise SignatureError(f"missing or wrong API key for merchant {slug!r}")
    return merchant


def register_merchant(*, session: Session, merchant_in: MerchantCreate) -> tuple[Merchant, str]:
    """Create a merchant and its API key (returned once) in the caller's transaction.

    Raises:
        InvalidInput: bad name, slug or market, the slug is taken, or the adapter settings
            do not fit the kind (a feed needs `feed_source`, an MCP merchant `mcp_url`).
    """
    if merchant_in.kind == MerchantKind.FEED and not merchant_in.feed_source:
        raise InvalidInput("a feed merchant needs feed_source (a path or an https URL)")
    if merchant_in.kind == MerchantKind.MCP:
        if not merchant_in.mcp_url or not merchant_in.mcp_url.startswith(("https://",
                                                                           "http://")):
            raise InvalidInput("an MCP merchant needs mcp_url, the http(s) URL of its server")
    merchant = create_merchant(session=session, merchant_in=merchant_in)
    return merchant, issue_api_key(merchant)


def upsert_products(*, session: Session, merchant: Merchant, batch: UpsertBatch) -> PushReport:
    """Insert or replace pushed products; each bad item is reported, the good ones applied."""
    market = get_market(merchant.market)
    valid, errors = parse_batch(batch)
    report = PushReport(errors=errors)
    rows = []
    for index, product in valid:
        reason = rejection_reason(product, market)
        if reason:
            report.errors.append(ItemError(index, product.id, reason))
            continue
        rows.append(product_row(merchant_id=merchant.id or 0, product=product))
    report.errors.sort(key=lambda e: e.index)
    if rows:
        upsert_rows(session=session, merchant=merchant, rows=rows)
    report.upserted = len(rows)
    return report


def delete_products(*, session: Session, merchant: Merchant, batch: DeleteBatch) -> PushReport:
    """Remove products by the merchant's ids; unknown ids are reported, not errors of the batch."""
    deleted = delete_rows(session=session, merchant=merchant, product_ids=batch.ids)
    # A product pushed again later starts unsponsored.
    unsponsor(session=session, merchant=merchant, product_ids=deleted)
    missing = [i for i in dict.fromkeys(batch.ids) if i not in deleted]
    return PushReport(deleted=len(deleted), errors=[
        ItemError(batch.ids.index(i), i, "no such product") for i in missing])


def remove_merchant(*, session: Session, merchant: Merchant) -> int:
    """Delete a merchant and its products; returns how many products went with it."""
    count = delete_all_rows(session=session, merchant=merchant)
    clear_sponsored(session=session, merchant=merchant)
    session.delete(merchant)
    return count
