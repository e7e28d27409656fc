"""A durable job queue in the database: work done outside requests, by `vitrine worker`.

A job is queued in the caller's transaction (`enqueue`), so an order's change and the job
that follows it commit together or not at all. A worker takes the oldest due job (`claim`)
under a lease: it holds the job until `locked_until`, extends the lease while the job runs
(`extend_leases`), and records the outcome (`finish`). A worker that dies leaves its lease to
expire, and the job is claimed again; one that fails is tried again after a backoff, and after
`max_attempts` it is dead (`failed`) and kept for ops to read.

Claiming is safe from any number of threads and processes: on PostgreSQL the candidate row
is locked with `FOR UPDATE SKIP LOCKED`; on SQLite (one writer at a time) the taking is a
conditional update that only one claimer can win. Every write checks the claim's `attempts`
as a fencing token, so a worker whose lease was taken over cannot finish the job twice.

    queued --claim--> running --finish--> done
      ^                  |  \\---error, attempts left--> queued (run_at = now + backoff)
      |                  |   \\--error, none left -----> failed (dead)
      \\--lease expired--/
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import JSON, Column, CursorResult, Index, and_, delete, func, or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Field, Session, SQLModel, col, select

from core.db import session_scope, utcnow
from core.errors import VitrineError

FIRST_RETRY = timedelta(seconds=30)
MAX_RETRY_GAP = timedelta(hours=1)
DEFAULT_MAX_ATTEMPTS = 5
# Done jobs are the record of what ran (a periodic tick's key keeps it from running twice);
# dead ones are kept longer, for ops to look into.
KEEP_DONE = timedelta(days=2)
KEEP_FAILED = timedelta(days=30)
MAX_ERROR_CHARS = 2000
_CLAIM_RACES = 5  # candidates tried before a claimer gives up this turn


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"  # dead: out of attempts, or a failure that trying again cannot fix


FINISHED = (JobStatus.DONE.value, JobStatus.FAILED.value)


class JobFailed(VitrineError):
    """A job could not do its work; with `retry`, trying again later may help."""

    def __init__(self, reason: str, *, retry: bool = True, **context: Any) -> None:
        super().__init__(reason, **context)
        self.retry = retry


class Job(SQLModel, table=True):
    """One piece of background work, from queued to done or dead."""

    __table_args__ = (Index("ix_job_due", "status", "run_at"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=64)
    payload: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # Queued once: a periodic tick (`rollup:2026-11-29T23:00:00`), one merchant's sync.
    key: str | None = Field(default=None, max_length=200, unique=True)
    status: str = Field(default=JobStatus.QUEUED.value, max_length=10)
    attempts: int = 0
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    run_at: datetime = Field(default_factory=utcnow)
    locked_by: str | None = Field(default=None, max_length=200)
    locked_until: datetime | None = None
    last_error: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None


def backoff(attempts: int) -> timedelta:
    """How long to wait after the `attempts`-th failure: 30 s, doubling, at most an hour."""
    return min(FIRST_RETRY * (2 ** max(attempts - 1, 0)), MAX_RETRY_GAP)


def enqueue(session: Session, *, kind: str, payload: dict[str, Any] | None = None,
            key: str | None = None, run_at: datetime | None = None,
            max_attempts: int = DEFAULT_MAX_ATTEMPTS, again: bool = False) -> Job:
    """Queue a job in the caller's transaction; it runs once that commits.

    With a `key` the job is queued once: while one of that key is queued or running, that one
    is returned. A finished one stays the record (a periodic tick that ran) unless `again`,
    which queues it anew with this payload (a merchant's next sync).
    """
    moment = utcnow()
    values: dict[str, Any] = {
        "kind": kind, "payload": payload or {}, "run_at": run_at or moment,
        "max_attempts": max_attempts, "status": JobStatus.QUEUED.value, "attempts": 0,
        "created_at": moment}
    if key is None:
        job = Job.model_validate(values)
        session.add(job)
        session.flush()
        return job
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    # ON CONFLICT DO NOTHING: a duplicate neither raises nor spoils the caller's transaction.
    session.execute(insert(Job).values(key=key, **values)
                    .on_conflict_do_nothing(index_elements=["key"]))
    if again:
        session.execute(update(Job).where(col(Job.key) == key, col(Job.status).in_(FINISHED))
                        .values(last_error=None, locked_by=None, locked_until=None,
                                started_at=None, finished_at=None, **values))
    job = session.exec(select(Job).where(Job.key == key)
                       .execution_options(populate_existing=True)).one()
    return job


def _claimable(now: datetime, kinds: Collection[str] | None,
               exclude: Collection[int]) -> ColumnElement[bool]:
    due = or_(and_(col(Job.status) == JobStatus.QUEUED.value, col(Job.run_at) <= now),
              # Its worker died (or stalled past its lease): the job is up for grabs again.
              and_(col(Job.status) == JobStatus.RUNNING.value, col(Job.locked_until) < now))
    conditions = [due]
    if kinds is not None:
        conditions.append(col(Job.kind).in_(list(kinds)))
    if exclude:
        conditions.append(col(Job.id).not_in(list(exclude)))
    return and_(*conditions)


def claim(engine: Engine, *, worker: str, lease: timedelta,
          kinds: Collection[str] | None = None, exclude: Collection[int] = (),
          now: datetime | None = None) -> Job | None:
    """Take the oldest due job (of these `kinds`) for `worker` until `now + lease`, or None.

    A job whose lease expired is taken again; one that has used up its attempts that way is
    marked dead instead. `exclude` are jobs this worker is running already.
    """
    for _ in range(_CLAIM_RACES):
        moment = now or utcnow()
        eligible = _claimable(moment, kinds, exclude)
        with session_scope(engine) as session:
            query = select(Job).where(eligible).order_by(col(Job.run_at), col(Job.id)).limit(1)
            if engine.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            # On SQLite this read runs outside a transaction (the driver begins one before a
            # write only), so the conditional update below takes the write lock afresh.
            candidate = session.exec(query).first()
            if candidate is None:
                return None
            if candidate.status == JobStatus.RUNNING and \
                    candidate.attempts >= candidate.max_attempts:
                _update(session, candidate, eligible, status=JobStatus.FAILED.value,
                        finished_at=moment, locked_by=None, locked_until=None,
                        last_error=f"its worker stopped before it finished, "
                                   f"{candidate.attempts} times (lease expired)")
                continue
            taken = _update(session, candidate, eligible, status=JobStatus.RUNNING.value,
                            locked_by=worker, locked_until=moment + lease,
                            attempts=col(Job.attempts) + 1, started_at=moment)
            if not taken:  # another claimer won this one: try the next
                continue
            session.refresh(candidate)
            return candidate
    return None


def _update(session: Session, job: Job, condition: ColumnElement[bool], **values: Any) -> bool:
    result = cast(CursorResult, session.execute(
        update(Job).where(col(Job.id) == job.id, condition).values(**values)))
    return bool(result.rowcount)


def _held(job: Job, worker: str) -> ColumnElement[bool]:
    """Still this worker's claim: its name and the attempt it took are on the row."""
    return and_(col(Job.id) == job.id, col(Job.status) == JobStatus.RUNNING.value,
                col(Job.locked_by) == worker, col(Job.attempts) == job.attempts)


def extend_leases(engine: Engine, jobs: Collection[Job], *, worker: str, lease: timedelta,
                  now: datetime | None = None) -> set[int]:
    """Push the leases of jobs this worker is running `lease` ahead; the ids still held."""
    held: set[int] = set()
    if not jobs:
        return held
    until = (now or utcnow()) + lease
    with session_scope(engine) as session:
        for job in jobs:
            result = cast(CursorResult, session.execute(
                update(Job).where(_held(job, worker)).values(locked_until=until)))
            if result.rowcount:
                held.add(job.id or 0)
    return held


def finish(engine: Engine, job: Job, *, worker: str, error: str | None = None,
           retry: bool = True, now: datetime | None = None) -> str | None:
    """Record a claimed job's outcome: done without `error`; with one, queued again after a
    backoff while attempts are left and `retry`, else dead. Returns the new status, or None
    when the claim was no longer this worker's (its lease expired and another took the job).
    """
    moment = now or utcnow()
    values: dict[str, Any] = {"locked_by": None, "locked_until": None}
    if error is None:
        values.update(status=JobStatus.DONE.value, finished_at=moment, last_error=None)
    elif retry and job.attempts < job.max_attempts:
        values.update(status=JobStatus.QUEUED.value, run_at=moment + backoff(job.attempts),
                      last_error=error[:MAX_ERROR_CHARS])
    else:
        values.update(status=JobStatus.FAILED.value, finished_at=moment,
                      last_error=error[:MAX_ERROR_CHARS])
    with session_scope(engine) as session:
        result = cast(CursorResult, session.execute(
            update(Job).where(_held(job, worker)).values(**values)))
    return str(values["status"]) if result.rowcount else None


def outstanding(engine: Engine, *, kinds: Collection[str] | None = None,
                now: datetime | None = None) -> int:
    """How many jobs are due now or running (anywhere): zero when the queue is drained."""
    moment = now or utcnow()
    busy = or_(and_(col(Job.status) == JobStatus.QUEUED.value, col(Job.run_at) <= moment),
               col(Job.status) == JobStatus.RUNNING.value)
    query = select(func.count()).select_from(Job).where(busy)
    if kinds is not None:
        query = query.where(col(Job.kind).in_(list(kinds)))
    with Session(engine) as session:
        return int(session.exec(query).one())


def job_by_key(session: Session, key: str) -> Job | None:
    """The job queued under `key`, whatever its state."""
    return session.exec(select(Job).where(Job.key == key)).first()


def prune(session: Session, *, now: datetime | None = None, keep_done: timedelta = KEEP_DONE,
          keep_failed: timedelta = KEEP_FAILED) -> int:
    """Delete done jobs older than `keep_done` and dead ones older than `keep_failed`."""
    moment = now or utcnow()
    result = cast(CursorResult, session.execute(delete(Job).where(or_(
        and_(col(Job.status) == JobStatus.DONE.value,
             col(Job.finished_at) < moment - keep_done),
        and_(col(Job.status) == JobStatus.FAILED.value,
             col(Job.finished_at) < moment - keep_failed)))))
    return int(result.rowcount or 0)
