"""Registering merchants and (re)importing their feeds, each import one transaction."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session

from adapters.feed import FeedReport, RowError, feed_format, read_feed
from catalog.models import Merchant, MerchantCreate
from catalog.store import (
    ProductRow,
    create_merchant,
    find_merchant,
    product_row,
    replace_catalog,
    slugify,
)
from core.db import session_scope
from core.errors import FeedError, InvalidInput
from core.markets import get_market

MAX_NAME_CHARS = 200


def add_merchant_from_feed(*, engine: Engine, name: str, market: str, feed: Path,
                           slug: str | None = None, base_url: str | None = None,
                           replace: bool = False) -> tuple[Merchant, FeedReport]:
    """Register a merchant and import its feed; nothing is stored if the feed is unusable.

    With `replace`, an existing merchant of the same slug gets its catalog swapped instead.

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
        if merchant is None:
            merchant = create_merchant(session=session, merchant_in=MerchantCreate(
                slug=slug, name=name, market=m.code, feed_source=str(feed)))
        else:
            merchant.feed_source = str(feed)
        report = import_feed(session=session, merchant=merchant, path=feed,
                             currency=m.currency, base_url=base_url)
    return merchant, report


def import_feed(*, session: Session, merchant: Merchant, path: Path, currency: str,
                base_url: str | None = None) -> FeedReport:
    """Replace a merchant's catalog with a feed's valid products, in the caller's transaction.

    Rows priced in another currency than the merchant's market are rejected with a reason.

    Raises:
        FeedError: the file is not a feed, or not one row of it is a valid product (the old
            catalog is kept).
    """
    report = FeedReport()
    seen: dict[str, int] = {}

    def valid_rows() -> Iterator[ProductRow]:
        for line, item in read_feed(path, base_url=base_url):
            if isinstance(item, RowError):
                report.add_error(item)
            elif item.id in seen:
                report.add_error(RowError(line, f"duplicate id {item.id!r} "
                                                f"(first on line {seen[item.id]})"))
            elif item.currency != currency:
                report.add_error(RowError(line, f"price in {item.currency}, but the "
                                                f"merchant's market sells in {currency}"))
            else:
                seen[item.id] = line
                yield product_row(merchant_id=merchant.id or 0, product=item)

    report.imported = replace_catalog(session=session, merchant=merchant, rows=valid_rows())
    if report.imported == 0:
        first = f" (line {report.errors[0].line}: {report.errors[0].reason})" \
            if report.errors else ""
        raise FeedError(f"{path.name}: no valid products in feed{first}")
    return report
