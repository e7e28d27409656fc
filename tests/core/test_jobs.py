"""The durable job queue: claimed oldest first, queued once per key, leases that expire and
are renewed, failures tried again with backoff until dead, and never one job run twice at
once; on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from core.db import make_engine, session_scope, utcnow
from core.jobs import (
    Job,
    JobStatus,
    backoff,
    claim,
    enqueue,
    extend_leases,
    finish,
    outstanding,
    prune,
)
from tests.threads import at_once

LEASE = timedelta(seconds=60)


def queue(engine: Engine, kind: str = "rollup", **kwargs) -> Job:
    with session_scope(engine) as session:
        return enqueue(session, kind=kind, **kwargs)


def stored(engine: Engine, job: Job) -> Job:
    with Session(engine) as session:
        found = session.get(Job, job.id)
        assert found is not None
        return found


def test_the_oldest_due_job_is_claimed_first_and_a_later_one_waits(job_engine):
    now = utcnow()
    later = queue(job_engine, "b", run_at=now + timedelta(minutes=5))
    second = queue(job_engine, "a", run_at=now - timedelta(seconds=1))
    first = queue(job_engine, "c", run_at=now - timedelta(seconds=2))
    taken = [claim(job_engine, worker="w", lease=LEASE, now=now) for _ in range(3)]
    assert [j.id if j else None for j in taken] == [first.id, second.id, None]
    assert taken[0].status == JobStatus.RUNNING and taken[0].attempts == 1
    assert taken[0].locked_by == "w"
    for job in taken[:2]:
        finish(job_engine, job, worker="w", now=now)
    assert claim(job_engine, worker="w", lease=LEASE,
                 now=now + timedelta(minutes=5)).id == later.id


def test_a_worker_claims_only_the_kinds_it_knows_and_not_the_jobs_it_runs(job_engine):
    rollup, sync = queue(job_engine, "rollup"), queue(job_engine, "feed_sync")
    assert claim(job_engine, worker="w", lease=LEASE, kinds={"feed_sync"}).id == sync.id
    assert claim(job_engine, worker="w", lease=LEASE, kinds={"feed_sync"}) is None
    assert claim(job_engine, worker="w", lease=LEASE, exclude=[rollup.id]) is None
    assert claim(job_engine, worker="w", lease=LEASE).id == rollup.id


def test_a_job_is_queued_with_the_callers_transaction_or_not_at_all(job_engine):
    with pytest.raises(RuntimeError), session_scope(job_engine) as session:
        enqueue(session, kind="merchant_webhooks", key="hook:1")
        raise RuntimeError("the order's change failed")
    assert claim(job_engine, worker="w", lease=LEASE) is None
    assert queue(job_engine, key="hook:1").status == JobStatus.QUEUED


def test_a_key_queues_a_job_once_and_again_only_when_asked(job_engine):
    first = queue(job_engine, "rollup", key="rollup:2026-11-29T23:00:00")
    assert queue(job_engine, "rollup", key="rollup:2026-11-29T23:00:00").id == first.id
    job = claim(job_engine, worker="w", lease=LEASE)
    # While running, and once done, the key still stands for that job: a tick runs once.
    assert queue(job_engine, "rollup", key="rollup:2026-11-29T23:00:00").status == "running"
    assert finish(job_engine, job, worker="w") == "done"
    record = queue(job_engine, "rollup", key="rollup:2026-11-29T23:00:00")
    assert (record.id, record.status) == (first.id, "done")
    # A merchant's next sync is queued anew under its key, with its new payload.
    renewed = queue(job_engine, "rollup", key="rollup:2026-11-29T23:00:00",
                    payload={"n": 2}, again=True)
    assert (renewed.id, renewed.status, renewed.attempts, renewed.payload) == \
        (first.id, "queued", 0, {"n": 2})
    with Session(job_engine) as session:
        assert len(session.exec(select(Job)).all()) == 1


def test_a_duplicate_key_leaves_the_callers_transaction_usable(job_engine):
    queue(job_engine, key="feed_sync:loja")
    with session_scope(job_engine) as session:
        enqueue(session, kind="feed_sync", key="feed_sync:loja")
        enqueue(session, kind="push")  # the transaction goes on after the conflict
    assert outstanding(job_engine) == 2


def test_a_dead_workers_job_is_claimed_again_once_its_lease_expires(job_engine):
    queue(job_engine)
    now = utcnow()
    mine = claim(job_engine, worker="a", lease=LEASE, now=now)
    assert claim(job_engine, worker="b", lease=LEASE, now=now + LEASE / 2) is None
    theirs = claim(job_engine, worker="b", lease=LEASE, now=now + LEASE + timedelta(seconds=1))
    assert theirs.id == mine.id and theirs.attempts == 2 and theirs.locked_by == "b"
    # The first worker was only slow: its late outcome is refused, the new claim stands.
    assert finish(job_engine, mine, worker="a") is None
    assert extend_leases(job_engine, [mine], worker="a", lease=LEASE) == set()
    assert stored(job_engine, mine).status == "running"
    assert finish(job_engine, theirs, worker="b") == "done"


def test_a_renewed_lease_keeps_a_slow_job_from_other_workers(job_engine):
    queue(job_engine)
    now = utcnow()
    job = claim(job_engine, worker="a", lease=LEASE, now=now)
    assert extend_leases(job_engine, [job], worker="a", lease=LEASE,
                         now=now + timedelta(seconds=50)) == {job.id}
    assert claim(job_engine, worker="b", lease=LEASE, now=now + timedelta(seconds=61)) is None
    assert claim(job_engine, worker="b", lease=LEASE,
                 now=now + timedelta(seconds=111)).locked_by == "b"


def test_a_failed_job_is_tried_again_with_backoff_until_it_is_dead(job_engine):
    queue(job_engine, "feed_sync", max_attempts=3)
    now = utcnow()
    for attempt in (1, 2):
        job = claim(job_engine, worker="w", lease=LEASE, now=now)
        assert job.attempts == attempt
        assert finish(job_engine, job, worker="w", error="HTTP 503", now=now) == "queued"
        retry_at = now + backoff(attempt)
        assert claim(job_engine, worker="w", lease=LEASE,
                     now=retry_at - timedelta(seconds=1)) is None
        now = retry_at
    job = claim(job_engine, worker="w", lease=LEASE, now=now)
    assert finish(job_engine, job, worker="w", error="HTTP 503", now=now) == "failed"
    dead = stored(job_engine, job)
    assert (dead.status, dead.attempts, dead.last_error) == ("failed", 3, "HTTP 503")
    assert dead.finished_at is not None and dead.locked_by is None
    assert claim(job_engine, worker="w", lease=LEASE, now=now + timedelta(days=1)) is None
    assert [backoff(n).total_seconds() for n in (1, 2, 3, 10)] == [30, 60, 120, 3600]


def test_a_failure_that_trying_again_cannot_fix_is_dead_at_once(job_engine):
    queue(job_engine, "feed_sync")
    job = claim(job_engine, worker="w", lease=LEASE)
    assert finish(job_engine, job, worker="w", error="no such merchant", retry=False) == \
        "failed"


def test_a_job_whose_worker_keeps_dying_is_dead_after_its_attempts(job_engine):
    queue(job_engine, "feed_sync", max_attempts=1)
    now = utcnow()
    claim(job_engine, worker="a", lease=LEASE, now=now)
    assert claim(job_engine, worker="b", lease=LEASE, now=now + 2 * LEASE) is None
    with Session(job_engine) as session:
        [dead] = session.exec(select(Job)).all()
    assert dead.status == "failed" and "lease expired" in (dead.last_error or "")


def test_old_finished_jobs_are_pruned_and_dead_ones_kept_longer(job_engine):
    for kind in ("done", "dead", "fresh", "waiting"):
        queue(job_engine, kind)
    now = utcnow()
    for kind in ("done", "dead", "fresh"):
        job = claim(job_engine, worker="w", lease=LEASE, kinds={kind}, now=now)
        moment = now if kind == "fresh" else now - timedelta(days=3)
        finish(job_engine, job, worker="w", error="bad" if kind == "dead" else None,
               retry=False, now=moment)
    with session_scope(job_engine) as session:
        assert prune(session, now=now) == 1
    with Session(job_engine) as session:
        left = session.exec(select(Job.kind).order_by(col(Job.kind))).all()
    assert left == ["dead", "fresh", "waiting"]


def test_concurrent_workers_never_run_one_job_twice(jobs_database_url):
    """Four workers, each with its own connections as separate processes would have, drain
    one queue: every job is claimed exactly once."""
    engines = [make_engine(jobs_database_url) for _ in range(4)]
    with session_scope(engines[0]) as session:
        ids = {enqueue(session, kind="push").id for _ in range(60)}
    claimed: list[list[int]] = [[] for _ in engines]

    def work(number: int) -> None:
        while (job := claim(engines[number], worker=f"w{number}", lease=LEASE)) is not None:
            claimed[number].append(job.id)
            assert finish(engines[number], job, worker=f"w{number}") == "done"

    try:
        at_once(*((work, n) for n in range(len(engines))), timeout=120)
    finally:
        for engine in engines:
            engine.dispose()
    every = [job_id for ids_of_one in claimed for job_id in ids_of_one]
    assert sorted(every) == sorted(ids)
