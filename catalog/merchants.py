"""Registering merchants and (re)importing their feeds, each import one transaction."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import Engine

from adapters.feed import FeedReport, feed_format, import_feed
from catalog.models import Merchant, MerchantCreate
from catalog.store import create_merchant, find_merchant, slugify
from core.db import session_scope
from core.errors import FeedError, InvalidInput
from core.markets import get_market


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
