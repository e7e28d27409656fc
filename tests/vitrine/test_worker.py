"""The job worker in-process: the schedule queues each period once, a stopping worker lets
the job under way finish and claims no other, a job outliving the grace keeps its lease and
runs again elsewhere, the heartbeat keeps a slow job, failures end as their kind says, and
`vitrine serve` runs the same worker on threads."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import httpx
import pytest
from sqlmodel import Session, col, select

from catalog.merchants import add_merchant_from_feed
from catalog.models import Merchant
from catalog.store import get_merchant
from catalog.sync import queue_sync
from core.db import as_utc, session_scope, utcnow
from core.errors import InvalidInput
from core.jobs import Job, JobFailed, enqueue
from core.periodic import Periodic
from tests.factories import write_tsv
from vitrine.app import create_app
from vitrine.jobs import JOBS, schedule
from vitrine.runtime import Runtime
from vitrine.worker import JobWorker, queue_periodic

pytestmark = pytest.mark.anyio


class Gate:
    """A job handler that holds its job until released."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.ran: list[int] = []

    def __call__(self, runtime: Runtime, payload: dict) -> dict:
        self.ran.append(payload["n"])
        self.started.set()
        assert self.release.wait(30), "the test never released the job"
        return {"n": payload["n"]}


def queue(runtime: Runtime, kind: str, **payload) -> Job:
    with session_scope(runtime.engine) as session:
        return enqueue(session, kind=kind, payload=payload)


def stored(runtime: Runtime, job: Job) -> Job:
    with Session(runtime.engine) as session:
        found = session.get(Job, job.id)
        assert found is not None
        return found


class LogWaiter(logging.Handler):
    """Sets `seen` once a record whose message has `text` is logged."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text, self.seen = text, threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.seen.set()


@pytest.fixture
def job_done_log() -> Iterator[LogWaiter]:
    waiter = LogWaiter("job feed_sync #")
    logger = logging.getLogger("vitrine.worker")
    logger.addHandler(waiter)
    level = logger.level
    logger.setLevel(logging.INFO)
    yield waiter
    logger.removeHandler(waiter)
    logger.setLevel(level)


# The schedule

def test_each_period_has_its_own_key_and_a_daily_one_starts_at_its_hour():
    hourly = Periodic("rollup", every=timedelta(hours=1))
    assert hourly.key(datetime(2026, 11, 29, 23, 59, 59, tzinfo=UTC)) == \
        "rollup:2026-11-29T23:00:00"
    assert hourly.next_tick(datetime(2026, 11, 29, 23, 5, tzinfo=UTC)) == \
        datetime(2026, 11, 30, 0, 0, tzinfo=UTC)
    daily = Periodic("reminders", every=timedelta(days=1), at=timedelta(hours=14))
    assert daily.key(datetime(2026, 11, 29, 13, 59, tzinfo=UTC)) == \
        "reminders:2026-11-28T14:00:00"
    assert daily.key(datetime(2026, 11, 29, 14, 0, tzinfo=UTC)) == \
        "reminders:2026-11-29T14:00:00"
    fast = Periodic("push", every=timedelta(seconds=0.25))
    assert fast.key(datetime(2026, 11, 29, 1, 2, 3, 600_000, tzinfo=UTC)) == \
        "push:2026-11-29T01:02:03.500000"
    assert [str(p) for p in (hourly, daily, fast)] == [
        "rollup every 1 h", "reminders daily at 14:00 UTC", "push every 0.25 s"]
    with pytest.raises(ValueError):
        Periodic("never", every=timedelta(0))


def test_the_schedule_has_every_periodic_job_and_pushes_only_with_a_channel(runtime):
    periodic = {p.kind: p for p in schedule(runtime)}
    assert set(periodic) == {"merchant_webhooks", "feeds_due", "payments_sweep", "rollup",
                             "reminders", "retention"} <= set(JOBS)
    assert periodic["merchant_webhooks"].every == timedelta(seconds=10)
    assert periodic["feeds_due"].every == timedelta(minutes=1)
    assert periodic["rollup"].every == timedelta(hours=1)
    reminders = periodic["reminders"]
    assert (reminders.every, reminders.at) == (timedelta(days=1), timedelta(hours=14))


def test_two_workers_ticking_queue_each_period_once(runtime):
    periodic = schedule(runtime)
    now = datetime(2026, 11, 29, 23, 0, 1, tzinfo=UTC)
    first = queue_periodic(runtime.engine, periodic, now=now)
    second = queue_periodic(runtime.engine, periodic, now=now + timedelta(seconds=5))
    assert [j.id for j in first] == [j.id for j in second]
    queue_periodic(runtime.engine, periodic, now=now + timedelta(seconds=10))
    with Session(runtime.engine) as session:
        keys = sorted(session.exec(select(Job.key)).all())
    assert keys == sorted([
        "feeds_due:2026-11-29T23:00:00", "merchant_webhooks:2026-11-29T23:00:00",
        "merchant_webhooks:2026-11-29T23:00:10", "payments_sweep:2026-11-29T23:00:00",
        "reminders:2026-11-29T14:00:00", "retention:2026-11-29T03:00:00",
        "rollup:2026-11-29T23:00:00"])


# Stopping

def test_a_stopping_worker_lets_the_running_job_finish_and_claims_no_other(runtime):
    gate = Gate()
    first, second = queue(runtime, "slow", n=1), queue(runtime, "slow", n=2)
    worker = JobWorker(runtime, concurrency=1, handlers={"slow": gate})
    worker.start()
    assert gate.started.wait(10)
    worker.request_stop()
    gate.release.set()
    assert worker.wait(grace_s=30) is True
    assert gate.ran == [1]
    assert stored(runtime, first).status == "done"
    assert (stored(runtime, second).status, stored(runtime, second).attempts) == ("queued", 0)


def test_a_job_still_running_after_the_grace_keeps_its_lease_and_runs_again_elsewhere(
        runtime):
    gate = Gate()
    job = queue(runtime, "slow", n=1)
    worker = JobWorker(runtime, concurrency=1, handlers={"slow": gate})
    worker.start()
    assert gate.started.wait(10)
    worker.request_stop()
    assert worker.wait(grace_s=0) is False
    held = stored(runtime, job)
    assert (held.status, held.locked_by, held.attempts) == ("running", worker.name, 1)

    other = JobWorker(runtime, handlers={"slow": lambda runtime, payload: None})
    assert other.run_due() == []  # not while the lease lasts
    [(again, status)] = other.run_due(now=as_utc(held.locked_until) + timedelta(seconds=1))
    assert (again.id, again.attempts, status) == (job.id, 2, "done")
    # The first worker was only slow: its late outcome is refused.
    gate.release.set()
    assert worker.wait(grace_s=30) is True
    done = stored(runtime, job)
    assert (done.status, done.attempts, done.locked_by) == ("done", 2, None)


def test_the_heartbeat_keeps_a_slow_job_from_other_workers(runtime):
    gate = Gate()
    job = queue(runtime, "slow", n=1)
    worker = JobWorker(runtime, concurrency=1, handlers={"slow": gate})
    worker.start()
    try:
        assert gate.started.wait(10)
        claimed_at = as_utc(stored(runtime, job).started_at)
        assert worker.renew_leases(now=claimed_at + timedelta(seconds=50)) == {job.id}
        other = JobWorker(runtime, handlers={"slow": lambda runtime, payload: None})
        assert other.run_due(now=claimed_at + worker.lease + timedelta(seconds=1)) == []
    finally:
        gate.release.set()
        assert worker.stop(grace_s=30) is True
    assert (stored(runtime, job).status, stored(runtime, job).attempts) == ("done", 1)


def test_how_a_job_ends_depends_on_how_it_failed(runtime):
    def unreachable(runtime, payload):
        raise JobFailed("the feed server did not answer")

    def wrong(runtime, payload):
        raise InvalidInput("merchant 'x' has no feed to sync")

    def broken(runtime, payload):
        raise RuntimeError("a bug")

    jobs = {kind: queue(runtime, kind) for kind in ("unreachable", "wrong", "broken")}
    worker = JobWorker(runtime, handlers={"unreachable": unreachable, "wrong": wrong,
                                          "broken": broken})
    assert sorted(status for _, status in worker.run_due()) == ["failed", "queued", "queued"]
    ended = {kind: stored(runtime, job) for kind, job in jobs.items()}
    assert (ended["unreachable"].status, ended["unreachable"].last_error) == \
        ("queued", "the feed server did not answer")
    assert (ended["wrong"].status, ended["wrong"].last_error) == \
        ("failed", "merchant 'x' has no feed to sync")
    assert (ended["broken"].status, ended["broken"].last_error) == \
        ("queued", "RuntimeError: a bug")


# The jobs themselves

def feed_merchant(runtime: Runtime, tmp_path: Path, slug: str, *, synced_ago: timedelta
                  ) -> Merchant:
    feed = write_tsv(tmp_path / f"{slug}.tsv", [[
        f"{slug}-1", "Caneca", "Caneca de cerâmica", "https://x.example/1", "", "in stock",
        "10.00 BRL", "Marca", "Casa", ""]])
    merchant, _ = add_merchant_from_feed(engine=runtime.engine, name=slug, slug=slug,
                                         market="BR", feed=feed, source=str(feed),
                                         refresh_seconds=3600)
    with session_scope(runtime.engine) as session:
        current = get_merchant(session=session, slug=slug)
        current.synced_at = utcnow() - synced_ago
    return merchant


def test_feeds_due_queues_a_sync_of_each_feed_whose_refresh_passed(runtime, tmp_path):
    feed_merchant(runtime, tmp_path, "stale", synced_ago=timedelta(hours=2))
    feed_merchant(runtime, tmp_path, "fresh", synced_ago=timedelta(minutes=5))
    assert JOBS["feeds_due"](runtime, {}) == {"queued": ["stale"]}
    [(job, status)] = JobWorker(runtime, handlers={"feed_sync": JOBS["feed_sync"]}).run_due()
    assert (job.key, status) == ("feed_sync:stale", "done")
    assert JOBS["feeds_due"](runtime, {}) == {"queued": []}
    with Session(runtime.engine) as session:
        synced = get_merchant(session=session, slug="stale").synced_at
    assert as_utc(synced) > utcnow() - timedelta(minutes=1)


def test_a_feed_that_failed_every_attempt_waits_its_refresh_interval(runtime, tmp_path):
    merchant = feed_merchant(runtime, tmp_path, "broken", synced_ago=timedelta(hours=2))
    Path(merchant.feed_source or "").unlink()
    worker = JobWorker(runtime, handlers={"feed_sync": JOBS["feed_sync"]})
    JOBS["feeds_due"](runtime, {})
    later = utcnow()
    for hours in (0, 1, 2):
        worker.run_due(now=later + timedelta(hours=hours))
    with Session(runtime.engine) as session:
        [dead] = session.exec(select(Job).where(col(Job.kind) == "feed_sync")).all()
    assert dead.status == "failed" and "feed file not found" in (dead.last_error or "")
    assert JOBS["feeds_due"](runtime, {}) == {"queued": []}


# `vitrine serve` in one process runs the same worker

async def test_serve_runs_the_queued_jobs_in_process(demo_runtime, job_done_log):
    from tests.feed_server import running_feed_server

    app = create_app(demo_runtime, channel_workers=True)
    transport = httpx.ASGITransport(app=app)
    tsv = b"id\ttitle\tprice\tlink\n1\tCaneca\t10.00 BRL\thttps://x.example/1\n"
    headers = {"Authorization": f"Bearer {demo_runtime.settings.admin_token}"}
    with running_feed_server() as feeds:
        feeds.publish("/catalog.tsv", tsv, {"Content-Type": "text/tab-separated-values"})
        async with app.router.lifespan_context(app), \
                httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            response = await client.post("/api/merchants", headers=headers, json={
                "name": "Loja Feed", "market": "BR", "kind": "feed",
                "feed_url": feeds.url("/catalog.tsv")})
            assert response.status_code == 202, response.text
            assert await anyio.to_thread.run_sync(job_done_log.seen.wait, 30)
            health = (await client.get("/api/merchants/loja-feed/health",
                                       headers=headers)).json()
    assert health["product_count"] == 1 and health["sync"]["status"] == "done"


def test_vitrine_worker_drain_runs_what_is_queued_and_exits(runtime, tmp_path, monkeypatch,
                                                           capsys):
    from core.settings import get_settings
    from vitrine.cli import main

    merchant = feed_merchant(runtime, tmp_path, "loja", synced_ago=timedelta(hours=2))
    with session_scope(runtime.engine) as session:
        job = queue_sync(session, merchant=merchant)
    monkeypatch.setenv("VITRINE_DATABASE_URL", runtime.settings.database_url)
    monkeypatch.setenv("VITRINE_LOG_FORMAT", "text")
    get_settings.cache_clear()
    assert main(["worker", "--drain", "--concurrency", "1"]) == 0
    assert "no job left" in capsys.readouterr().err
    assert (stored(runtime, job).status, stored(runtime, job).attempts) == ("done", 1)
    get_settings.cache_clear()


def test_the_health_check_sees_a_running_worker_and_not_a_stopped_one(runtime, tmp_path):
    import os

    from vitrine.worker import check_alive, run_until_signalled

    alive = tmp_path / "worker.alive"
    assert "missing" in check_alive(alive)
    seen: list[str | None] = []
    queue(runtime, "probe")
    worker = JobWorker(runtime, concurrency=1,
                       handlers={"probe": lambda runtime, payload: seen.append(
                           check_alive(alive))})
    assert run_until_signalled(worker, grace_s=30, drain=True, alive_file=alive) is True
    assert seen == [None]  # healthy while it ran
    assert "missing" in check_alive(alive)  # and not once it stopped
    alive.touch()
    os.utime(alive, (0, 0))
    assert "signs of life" in check_alive(alive)
