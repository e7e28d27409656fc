"""Syncing feed merchants from a merchant's web server on loopback."""

import gzip
import json
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from sqlmodel import Session

from catalog.merchants import register_merchant
from catalog.models import MerchantCreate, MerchantKind
from catalog.store import get_merchant
from catalog.sync import sync_due, sync_merchant
from core.db import session_scope
from tests.factories import ucp_product
from tests.feed_server import FeedServer, running_feed_server

pytestmark = pytest.mark.anyio


def jsonl(*products) -> bytes:
    return "".join(json.dumps(p) + "\n" for p in products).encode()


@pytest.fixture
def feeds() -> Iterator[FeedServer]:
    with running_feed_server() as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
        yield client


def register_feed(runtime, url: str, refresh: int | None = 3600) -> None:
    with session_scope(runtime.engine) as session:
        register_merchant(session=session, merchant_in=MerchantCreate(
            name="Loja Remota", slug="remota", market="BR", kind=MerchantKind.FEED,
            feed_source=url, refresh_seconds=refresh))


def product_ids(runtime) -> set[str]:
    """What shoppers can find of the merchant now."""
    index = runtime.search.index("BR")
    return {p.product_id for p in index.products if p.merchant_slug == "remota"}


async def test_a_feed_url_is_imported_then_only_refetched_when_it_changed(runtime, feeds, http):
    feeds.publish("/feed.jsonl", jsonl(ucp_product("A"), ucp_product("B")))
    register_feed(runtime, feeds.url("/feed.jsonl"))
    first = await sync_merchant(engine=runtime.engine, slug="remota", client=http)
    assert first.status == "imported" and first.report and first.report.imported == 2
    assert product_ids(runtime) == {"A", "B"}

    again = await sync_merchant(engine=runtime.engine, slug="remota", client=http)
    assert again.status == "not_modified"
    assert feeds.requests[-1][1]["If-None-Match"] == feeds.routes["/feed.jsonl"][2]["ETag"]

    feeds.publish("/feed.jsonl", jsonl(ucp_product("C")))
    changed = await sync_merchant(engine=runtime.engine, slug="remota", client=http)
    assert changed.status == "imported" and product_ids(runtime) == {"C"}


async def test_a_sync_that_fails_half_way_keeps_the_old_catalog(runtime, feeds, http):
    feeds.publish("/feed.jsonl.gz", gzip.compress(jsonl(ucp_product("OLD"))),
                  {"Content-Type": "application/gzip"})
    register_feed(runtime, feeds.url("/feed.jsonl.gz"))
    assert (await sync_merchant(engine=runtime.engine, slug="remota", client=http)).report
    whole = gzip.compress(jsonl(*[ucp_product(f"N{i}") for i in range(3000)]))
    feeds.publish("/feed.jsonl.gz", whole[: len(whole) // 2], {"Content-Type": "application/gzip"})
    failed = await sync_merchant(engine=runtime.engine, slug="remota", client=http)
    assert failed.status == "failed" and "cannot read" in (failed.error or "")
    assert product_ids(runtime) == {"OLD"}
    with Session(runtime.engine) as session:
        merchant = get_merchant(session=session, slug="remota")
    assert merchant.last_error and merchant.product_count == 1


async def test_an_http_error_is_recorded_and_nothing_changes(runtime, feeds, http):
    register_feed(runtime, feeds.url("/missing.jsonl"))
    result = await sync_merchant(engine=runtime.engine, slug="remota", client=http)
    assert result.status == "failed" and "404" in (result.error or "")
    with Session(runtime.engine) as session:
        assert get_merchant(session=session, slug="remota").last_error


def test_a_feed_is_due_once_its_interval_has_passed(runtime):
    from datetime import timedelta

    from core.db import utcnow

    register_feed(runtime, "https://shop.example/feed.jsonl", refresh=3600)
    with session_scope(runtime.engine) as session:
        merchant = get_merchant(session=session, slug="remota")
        assert sync_due(merchant)  # never synced
        merchant.synced_at = utcnow() - timedelta(minutes=30)
        assert not sync_due(merchant)
        merchant.synced_at = utcnow() - timedelta(hours=2)
        assert sync_due(merchant)
