"""Syncing a merchant's feed: fetch it if it changed, import it in one transaction, record how.

A feed URL is fetched with conditional requests (ETag / If-Modified-Since); an unchanged feed
costs one 304. Whatever happens, the merchant's last error is recorded so its health says
why a sync failed, and the previous catalog stays in place.

Outside the command line a sync is a job (`queue_sync`) that `vitrine worker` runs, never
work done inside a request; `sync_state` says how the merchant's latest one went.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import httpx
from pydantic import BaseModel
from sqlalchemy.engine import Engine
from sqlmodel import Session

from adapters.feed import FeedReport
from adapters.feed_source import FeedFetcher, is_due
from catalog.merchants import import_feed
from catalog.models import Merchant, MerchantKind
from catalog.store import get_merchant
from core.db import as_utc, session_scope, utcnow
from core.errors import FeedError, InvalidInput
from core.jobs import Job, enqueue, job_by_key
from core.markets import get_market

FEED_SYNC = "feed_sync"  # the job kind; `vitrine.jobs.JOBS` runs it
SYNC_ATTEMPTS = 3  # a feed server down for a minute or two is tried again


@dataclass
class SyncResult:
    merchant: str
    status: str  # imported | not_modified | failed
    report: FeedReport | None = None
    error: str | None = None
    downloaded_bytes: int = 0


def is_url(source: str) -> bool:
    return source.startswith(("https://", "http://"))


def sync_due(merchant: Merchant) -> bool:
    """Whether a feed merchant's refresh interval has passed since its last sync."""
    refresh = timedelta(seconds=merchant.refresh_seconds) if merchant.refresh_seconds else None
    synced = merchant.synced_at
    if synced is not None and synced.tzinfo is None:
        synced = synced.replace(tzinfo=utcnow().tzinfo)
    return is_due(synced, refresh, utcnow())


async def sync_merchant(*, engine: Engine, slug: str, client: httpx.AsyncClient,
                        on_rows: Callable[[int], None] | None = None) -> SyncResult:
    """Fetch (if changed) and import one feed merchant's catalog.

    Raises:
        NotFound: no such merchant.
        InvalidInput: the merchant has no feed.
    """
    with Session(engine) as session:
        merchant = get_merchant(session=session, slug=slug)
    if merchant.kind != MerchantKind.FEED or not merchant.feed_source:
        raise InvalidInput(f"merchant {slug!r} has no feed to sync ({merchant.kind})")
    source = merchant.feed_source
    base_url = merchant.feed_base_url or (source if is_url(source) else None)
    path: Path | None = None
    with tempfile.TemporaryDirectory(prefix="vitrine-feed-") as workdir:
        try:
            etag, last_modified, size = merchant.feed_etag, merchant.feed_last_modified, 0
            if is_url(source):
                fetched = await FeedFetcher(client).fetch(
                    source, directory=Path(workdir), etag=etag, last_modified=last_modified)
                if fetched.status == "not_modified" or fetched.path is None:
                    _finish(engine, slug, error=None, touch=True)
                    return SyncResult(slug, "not_modified")
                path, etag, last_modified, size = (fetched.path, fetched.etag,
                                                   fetched.last_modified, fetched.bytes)
            else:
                path = Path(source)
                if not path.is_file():
                    raise FeedError(f"feed file not found: {source}")
            with session_scope(engine) as session:
                current = get_merchant(session=session, slug=slug)
                report = import_feed(session=session, merchant=current, path=path,
                                     market=get_market(current.market), base_url=base_url,
                                     on_rows=on_rows)
                current.feed_etag, current.feed_last_modified = etag, last_modified
                current.last_error = None
            return SyncResult(slug, "imported", report=report, downloaded_bytes=size)
        except FeedError as exc:
            # A downloaded copy has a temporary name: say which feed it was instead.
            reason = exc.reason.replace(path.name, source) if path is not None \
                and path.name != Path(source).name else exc.reason
            _finish(engine, slug, error=reason, touch=False)
            return SyncResult(slug, "failed", error=reason)


class FeedSyncState(BaseModel):
    """The merchant's latest sync job: queued, running, done or failed, and why."""

    job: int
    status: str
    attempts: int
    error: str | None
    run_at: datetime
    finished_at: datetime | None


def sync_key(slug: str) -> str:
    return f"{FEED_SYNC}:{slug}"


def queue_sync(session: Session, *, merchant: Merchant) -> Job:
    """Queue a sync of the merchant's feed in the caller's transaction; a sync already queued
    or running is the one returned.

    Raises:
        InvalidInput: the merchant has no feed.
    """
    if merchant.kind != MerchantKind.FEED or not merchant.feed_source:
        raise InvalidInput(f"merchant {merchant.slug!r} has no feed to sync "
                           f"({merchant.kind.value})")
    return enqueue(session, kind=FEED_SYNC, payload={"merchant": merchant.slug},
                   key=sync_key(merchant.slug), max_attempts=SYNC_ATTEMPTS, again=True)


def sync_state(session: Session, *, slug: str) -> FeedSyncState | None:
    """The merchant's latest queued sync, if it has had one."""
    job = job_by_key(session, sync_key(slug))
    if job is None or job.id is None:
        return None
    return FeedSyncState(job=job.id, status=job.status, attempts=job.attempts,
                         error=job.last_error, run_at=as_utc(job.run_at),
                         finished_at=as_utc(job.finished_at) if job.finished_at else None)


def _finish(engine: Engine, slug: str, *, error: str | None, touch: bool) -> None:
    with session_scope(engine) as session:
        merchant = get_merchant(session=session, slug=slug)
        merchant.last_error = error
        if touch:
            merchant.synced_at = utcnow()
        session.add(merchant)
