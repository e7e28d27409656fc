"""What the job worker can run: each kind of job by its stable name, and the schedule.

A handler takes the runtime and the job's payload and returns a summary for the log; it
raises `JobFailed` (tried again after a backoff unless it says not to) or any error (tried
again; an `InvalidInput` or `NotFound` is not, since trying again cannot fix it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import anyio
import httpx

from catalog.models import MerchantKind
from catalog.store import list_merchants
from catalog.sync import FEED_SYNC, queue_sync, sync_due, sync_key, sync_merchant
from core.db import as_utc, session_scope, utcnow
from core.jobs import JobFailed, JobStatus, job_by_key, prune
from core.periodic import Periodic
from vitrine.runtime import Runtime

log = logging.getLogger("vitrine.jobs")

Handler = Callable[[Runtime, dict[str, Any]], dict[str, Any] | None]
FEED_TIMEOUT = httpx.Timeout(30.0, connect=10.0)


def feed_sync(runtime: Runtime, payload: dict[str, Any]) -> dict[str, Any]:
    """Fetch (if changed) and import one merchant's feed, in one transaction."""
    slug = str(payload["merchant"])

    def progress(rows: int) -> None:
        log.info("feed_sync %s: %d rows read", slug, rows)

    async def run():  # type: ignore[no-untyped-def]
        async with httpx.AsyncClient(timeout=FEED_TIMEOUT) as client:
            return await sync_merchant(engine=runtime.engine, slug=slug, client=client,
                                       on_rows=progress)

    result = anyio.run(run)
    if result.status == "failed":
        # The old catalog stays; the reason is the merchant's last error, in its health too.
        raise JobFailed(result.error or "the feed could not be imported", merchant=slug)
    summary: dict[str, Any] = {"merchant": slug, "status": result.status}
    if result.report is not None:
        summary.update(imported=result.report.imported, rejected=result.report.rejected)
    return summary


def feeds_due(runtime: Runtime, payload: dict[str, Any]) -> dict[str, Any]:
    """Queue a sync of every feed merchant whose refresh interval has passed."""
    queued = []
    now = utcnow()
    with session_scope(runtime.engine) as session:
        for merchant in list_merchants(session=session):
            if merchant.kind != MerchantKind.FEED or not sync_due(merchant):
                continue
            last = job_by_key(session, sync_key(merchant.slug))
            # A feed that failed every attempt waits a refresh interval before the next try,
            # rather than being fetched every minute while it is broken.
            if last is not None and last.status == JobStatus.FAILED and last.finished_at \
                    and as_utc(last.finished_at) + timedelta(
                        seconds=merchant.refresh_seconds or 0) > now:
                continue
            queue_sync(session, merchant=merchant)
            queued.append(merchant.slug)
    return {"queued": queued}


def merchant_webhooks(runtime: Runtime, payload: dict[str, Any]) -> dict[str, Any]:
    """Post merchants' due order webhooks (each retried with its own backoff)."""
    from checkout.merchant_notices import deliver_due

    with httpx.Client(follow_redirects=False) as client:
        return deliver_due(engine=runtime.engine, client=client)


def reminders(runtime: Runtime, payload: dict[str, Any]) -> dict[str, Any]:
    """Queue the gift reminders due today (each is sent once, however often this runs)."""
    from bot.reminders import run_reminders

    return run_reminders(runtime.assistant).as_dict()


def retention(runtime: Runtime, payload: dict[str, Any]) -> dict[str, Any]:
    """Delete memory past the retention period, and old finished jobs."""
    from bot import erasure

    days = runtime.settings.memory_retention_days
    with session_scope(runtime.engine) as session:
        deleted = erasure.purge(session=session, retention_days=days)
    with session_scope(runtime.engine) as session:
        jobs = prune(session)
    return {"retention_days": days, "deleted": deleted, "jobs_deleted": jobs}


def rollup(runtime: Runtime, payload: dict[str, Any]) -> dict[str, Any]:
    """Roll up the conversion log's closed days for the reports."""
    from ops.tally import roll_up

    return {"days_rolled_up": roll_up(runtime.engine)}


def push(runtime: Runtime, payload: dict[str, Any]) -> dict[str, Any] | None:
    """Push queued messages to Telegram and WhatsApp shoppers."""
    from bot.channels.push import push_pending

    channels = runtime.push_channels()
    if not channels:
        return None
    report = push_pending(runtime.engine, runtime.assistant, channels)
    return report.as_dict() if report.shoppers else None


def payments_sweep(runtime: Runtime, payload: dict[str, Any]) -> dict[str, Any]:
    """Ask providers about overdue payments, and expire what ran out."""
    from checkout.sweep import sweep

    return sweep(engine=runtime.engine, rails=runtime.rails)


JOBS: dict[str, Handler] = {
    FEED_SYNC: feed_sync,
    "feeds_due": feeds_due,
    "merchant_webhooks": merchant_webhooks,
    "reminders": reminders,
    "retention": retention,
    "rollup": rollup,
    "push": push,
    "payments_sweep": payments_sweep,
}


def schedule(runtime: Runtime) -> list[Periodic]:
    """The periodic jobs, each queued once per period whichever worker ticks first."""
    settings = runtime.settings
    entries = [
        Periodic("merchant_webhooks", every=timedelta(seconds=10)),
        Periodic("feeds_due", every=timedelta(minutes=1)),
        # Every overdue order's provider is asked on each run: a few minutes apart is soon
        # enough for money that did not send its webhook, and spares providers' rate limits.
        Periodic("payments_sweep", every=timedelta(minutes=5)),
        Periodic("rollup", every=timedelta(hours=1), max_attempts=3),
        Periodic("reminders", every=timedelta(days=1),
                 at=timedelta(hours=settings.reminders_hour_utc), max_attempts=3),
        Periodic("retention", every=timedelta(days=1), at=timedelta(hours=3), max_attempts=3),
    ]
    if settings.push_interval_seconds > 0 and runtime.push_channels():
        entries.insert(0, Periodic("push", every=timedelta(
            seconds=settings.push_interval_seconds)))
    return entries

