"""Onboarding a merchant: check that its catalog works, then register it with an API key.

On the command line a feed is downloaded (if it is a URL) and imported together with the
registration, so a feed that is not usable registers nothing. Over the API the merchant is
registered with its feed's first sync queued (`queue_feed`), which `vitrine worker` runs: a
download never holds a request. A UCP MCP server must pass the conformance check first.
Both the command line and the merchant API onboard through here.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.engine import Engine

from adapters.base import ShopperContext
from adapters.feed import FeedReport
from adapters.feed_source import FeedFetch, FeedFetcher, parse_refresh
from adapters.feed_source import _check_url as check_feed_url
from adapters.ucp_mcp import ConformanceReport, UcpMcpAdapter, check_conformance
from catalog.merchants import add_merchant_from_feed, issue_api_key, register_merchant
from catalog.models import Merchant, MerchantCreate, MerchantKind
from catalog.store import get_merchant, slugify
from catalog.sync import is_url, queue_sync
from core.db import session_scope
from core.errors import InvalidInput
from core.jobs import Job
from core.markets import get_market

RunLive = Callable[..., Any]  # runs a coroutine function on the live event loop


@dataclass
class Onboarded:
    merchant: Merchant
    api_key: str
    feed_report: FeedReport | None = None
    conformance: ConformanceReport | None = None
    sync: Job | None = None  # the first sync, queued


class ConformanceFailed(InvalidInput):
    """A merchant's MCP server did not pass the conformance check; `report` says why."""

    def __init__(self, report: ConformanceReport) -> None:
        super().__init__(f"{report.url} failed the UCP conformance check", merchant=report.merchant)
        self.report = report


class Onboarding:
    def __init__(self, *, engine: Engine, run_live: RunLive,
                 adapter_for_url: Callable[[str, str], UcpMcpAdapter]) -> None:
        self.engine = engine
        self.run_live = run_live
        self.adapter_for_url = adapter_for_url

    def feed(self, *, name: str, market: str, source: str, slug: str | None = None,
             refresh: str | None = None, base_url: str | None = None, replace: bool = False,
             on_rows: Callable[[int], None] | None = None) -> Onboarded:
        """Register a feed merchant from a local file or an http(s) URL, importing it now.

        Raises:
            InvalidInput, FeedError: bad settings, or a feed that cannot be fetched or read.
        """
        refresh_seconds = int(parse_refresh(refresh).total_seconds()) if refresh else None
        if refresh_seconds and not is_url(source):
            raise InvalidInput("--refresh needs a feed URL: a local file is synced on demand")
        with tempfile.TemporaryDirectory(prefix="vitrine-feed-") as workdir:
            feed, etag, last_modified = Path(source), None, None
            if is_url(source):
                fetched: FeedFetch = self.run_live(download, source, Path(workdir))
                assert fetched.path is not None  # a first fetch sends no validators
                feed, etag, last_modified = fetched.path, fetched.etag, fetched.last_modified
            merchant, report = add_merchant_from_feed(
                engine=self.engine, name=name, market=market, feed=feed, slug=slug,
                replace=replace, source=source, refresh_seconds=refresh_seconds, etag=etag,
                last_modified=last_modified, on_rows=on_rows,
                base_url=base_url or (source if is_url(source) else None))
        with session_scope(self.engine) as session:
            current = get_merchant(session=session, slug=merchant.slug)
            key = issue_api_key(current)
        return Onboarded(merchant=merchant, api_key=key, feed_report=report)

    def queue_feed(self, *, name: str, market: str, url: str, slug: str | None = None,
                   refresh: str | None = None) -> Onboarded:
        """Register a feed merchant from an http(s) URL, its first import queued as a job.

        What can be told without downloading is checked now: the URL, the refresh interval,
        name, slug and market. How the import went shows in the merchant's health.

        Raises:
            InvalidInput: any of those is wrong, or the slug is taken.
        """
        if not is_url(url):
            raise InvalidInput("a feed merchant registered over the API needs feed_url, an "
                               "http(s) URL")
        check_feed_url(url)
        refresh_seconds = int(parse_refresh(refresh).total_seconds()) if refresh else None
        merchant_in = MerchantCreate(name=name, slug=slug or slugify(name),
                                     market=get_market(market).code, kind=MerchantKind.FEED,
                                     feed_source=url, refresh_seconds=refresh_seconds)
        # The merchant and its first sync commit together: never one without the other.
        with session_scope(self.engine) as session:
            merchant, key = register_merchant(session=session, merchant_in=merchant_in)
            job = queue_sync(session, merchant=merchant)
        return Onboarded(merchant=merchant, api_key=key, sync=job)

    def mcp(self, *, name: str, market: str, url: str, slug: str | None = None,
            force: bool = False) -> Onboarded:
        """Register a live merchant whose UCP MCP server passes the conformance check.

        Raises:
            ConformanceFailed: the check failed (and `force` was not given).
            InvalidInput: bad name, slug, market or URL.
        """
        m = get_market(market)
        if not is_url(url):
            raise InvalidInput("an MCP merchant needs mcp_url, the http(s) URL of its server")
        merchant_in = MerchantCreate(name=name, slug=slug or slugify(name), market=m.code,
                                     kind=MerchantKind.MCP, mcp_url=url)
        report = self.conformance(merchant_in.slug, url, market=m.code)
        if not report.ok and not force:
            raise ConformanceFailed(report)
        with session_scope(self.engine) as session:
            merchant, key = register_merchant(session=session, merchant_in=merchant_in)
        return Onboarded(merchant=merchant, api_key=key, conformance=report)

    def push(self, *, name: str, market: str, slug: str | None = None) -> Onboarded:
        """Register a merchant that pushes its products over the API."""
        merchant_in = MerchantCreate(name=name, slug=slug or slugify(name),
                                     market=get_market(market).code, kind=MerchantKind.PUSH)
        with session_scope(self.engine) as session:
            merchant, key = register_merchant(session=session, merchant_in=merchant_in)
        return Onboarded(merchant=merchant, api_key=key)

    def conformance(self, slug: str, url: str, *, market: str) -> ConformanceReport:
        m = get_market(market)
        adapter = self.adapter_for_url(slug, url)
        context = ShopperContext(country=m.code, language=m.language, currency=m.currency)

        async def run() -> ConformanceReport:
            return await check_conformance(adapter, context=context)

        report: ConformanceReport = self.run_live(run)
        return report


async def download(url: str, directory: Path) -> FeedFetch:
    """Fetch a feed once, without validators (a first download)."""
    async with httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=10.0)) as client:
        return await FeedFetcher(client).fetch(url, directory=directory)

