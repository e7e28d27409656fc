"""The job worker: runs queued jobs on a few threads, queues the periodic ones, stops gracefully.

`vitrine worker` runs one as its own process; `vitrine serve` (one process, the embedded
default) runs the same one on threads beside the API. Any number may run against one
database: each job is claimed by one of them under a lease (`core.jobs`), and each period of
the schedule is queued once under its key, whichever worker ticks first.

Stopping (SIGTERM or SIGINT for the process): no job is claimed any more, the jobs under way
get a grace period to finish, and a job still running after it keeps its lease, so that
another worker takes it once the lease expires. A feed import is one transaction: one cut
short leaves the old catalog as it was.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import FrameType

from sqlalchemy.engine import Engine

from core.db import session_scope, utcnow
from core.errors import InvalidInput, NotFound
from core.jobs import Job, JobFailed, claim, enqueue, extend_leases, finish, outstanding
from core.periodic import Periodic
from vitrine.jobs import JOBS, Handler
from vitrine.runtime import Runtime

log = logging.getLogger("vitrine.worker")

LEASE = timedelta(seconds=60)  # renewed every third of it while the job runs
POLL_S = 1.0  # how often an idle thread looks for a job another process queued
# Touched while every thread of the worker runs, for `vitrine worker --check` (a container's
# health check runs in the same container, so the same temporary folder).
ALIVE_FILE = Path(tempfile.gettempdir()) / "vitrine-worker.alive"
ALIVE_WITHIN_S = 30.0


def worker_name() -> str:
    """Which worker holds a job, for the lease and for ops: host, process, a random tag."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass(eq=False)
class JobWorker:
    runtime: Runtime
    concurrency: int = 2
    lease: timedelta = LEASE
    poll_s: float = POLL_S
    schedule: list[Periodic] = field(default_factory=list)
    handlers: dict[str, Handler] = field(default_factory=lambda: dict(JOBS))
    name: str = field(default_factory=worker_name)

    def __post_init__(self) -> None:
        self._stopping = threading.Event()  # no more claims, no more ticks
        self._halted = threading.Event()  # the grace is over: leases are left to expire
        self._wake = threading.Condition()
        self._lock = threading.Lock()
        self._running: dict[int, Job] = {}
        self._runners: list[threading.Thread] = []
        self._helpers: list[threading.Thread] = []

    def start(self) -> None:
        """Start the threads: `concurrency` running jobs, one renewing leases, one ticking."""
        for number in range(self.concurrency):
            self._runners.append(self._thread(self._run_jobs, f"vitrine-job-{number + 1}"))
        self._helpers.append(self._thread(self._renew_leases, "vitrine-job-leases"))
        if self.schedule:
            self._helpers.append(self._thread(self._tick, "vitrine-job-schedule"))
        log.info("worker %s: %d threads, lease %g s, schedule %s", self.name, self.concurrency,
                 self.lease.total_seconds(),
                 ", ".join(map(str, self.schedule)) or "none")

    def stop(self, grace_s: float) -> bool:
        """Claim nothing more and let the jobs under way finish within `grace_s`; True when
        none is left running (one that is keeps its lease, to be retried once it expires)."""
        self.request_stop()
        return self.wait(grace_s)

    def request_stop(self) -> None:
        """Claim no more jobs and queue no more periods; the jobs under way go on."""
        with self._wake:
            self._stopping.set()
            self._wake.notify_all()

    def stopping(self) -> bool:
        return self._stopping.is_set()

    def wait(self, grace_s: float) -> bool:
        """After `request_stop`: wait up to `grace_s` for the jobs under way, then stop
        renewing leases; True when no job is left running."""
        deadline = time.monotonic() + grace_s
        for thread in self._runners:
            thread.join(max(deadline - time.monotonic(), 0.0))
        self._halted.set()
        for thread in self._helpers:
            thread.join(max(deadline - time.monotonic(), 0.0) + 5.0)
        with self._lock:
            left = sorted(self._running)
        if left:
            log.warning("worker %s stopped with jobs %s still running: they are retried once "
                        "their leases expire", self.name, left)
        return not left

    def threads_alive(self) -> bool:
        """Whether every thread started is still running (none died of a bug)."""
        return all(t.is_alive() for t in self._runners + self._helpers)

    def idle(self) -> bool:
        """Whether no job is due or running, here or in any other worker."""
        with self._lock:
            if self._running:
                return False
        return outstanding(self.runtime.engine, kinds=self.handlers) == 0

    def run_due(self, *, now: datetime | None = None) -> list[tuple[Job, str | None]]:
        """Run every job due at `now` in the calling thread, one after another; each job and
        its new status (for tests and one-off runs)."""
        ran = []
        while (job := self._claim(now)) is not None:
            ran.append((job, self.run(job, now=now)))
        return ran

    def run(self, job: Job, *, now: datetime | None = None) -> str | None:
        """Run a job this worker claimed and record how it went; its new status, or None when
        its lease had been taken over meanwhile."""
        handler = self.handlers[job.kind]
        with self._lock:
            self._running[job.id or 0] = job
        started = time.monotonic()
        summary: dict | None = None
        error: str | None = None
        retry = True
        try:
            try:
                summary = handler(self.runtime, dict(job.payload))
            except JobFailed as exc:
                error, retry = exc.reason, exc.retry
            except (InvalidInput, NotFound) as exc:  # trying again cannot fix it
                error, retry = exc.reason, False
            except Exception as exc:
                log.exception("job %s #%s failed", job.kind, job.id)
                error = f"{type(exc).__name__}: {exc}"
            status = finish(self.runtime.engine, job, worker=self.name, error=error,
                            retry=retry, now=now)
        finally:
            with self._lock:
                self._running.pop(job.id or 0, None)
        took = time.monotonic() - started
        if status is None:
            log.warning("job %s #%s ran %.1f s but its lease had been taken over", job.kind,
                        job.id, took)
        elif error is None:
            log.info("job %s #%s done in %.2f s%s", job.kind, job.id, took,
                     f": {summary}" if summary else "")
        else:
            log.warning("job %s #%s %s after attempt %d of %d: %s", job.kind, job.id,
                        "queued again" if status == "queued" else "failed for good",
                        job.attempts, job.max_attempts, error)
        return status

    def _claim(self, now: datetime | None = None) -> Job | None:
        with self._lock:
            mine = list(self._running)
        return claim(self.runtime.engine, worker=self.name, lease=self.lease,
                     kinds=self.handlers, exclude=mine, now=now)

    def _thread(self, target: object, name: str) -> threading.Thread:
        # Daemons: a job still running when the process ends must not keep it alive.
        thread = threading.Thread(target=target, name=name, daemon=True)  # type: ignore[arg-type]
        thread.start()
        return thread

    def _run_jobs(self) -> None:
        while not self._stopping.is_set():
            try:
                job = self._claim()
            except Exception:  # the database away for a moment: look again later
                log.exception("claiming a job failed")
                job = None
            if job is not None:
                try:
                    self.run(job)
                except Exception:  # its outcome not recorded: the lease expires, it reruns
                    log.exception("recording the outcome of job %s #%s failed", job.kind,
                                  job.id)
                continue
            with self._wake:
                if not self._stopping.is_set():
                    self._wake.wait(self.poll_s)

    def _renew_leases(self) -> None:
        while not self._halted.wait(self.lease.total_seconds() / 3):
            try:
                self.renew_leases()
            except Exception as exc:  # SQLite: a long import holds the one write lock
                log.warning("leases not renewed this time: %s", exc)

    def renew_leases(self, *, now: datetime | None = None) -> set[int]:
        """Extend the leases of the jobs running here (the heartbeat); the ids still held."""
        with self._lock:
            jobs = list(self._running.values())
        held = extend_leases(self.runtime.engine, jobs, worker=self.name, lease=self.lease,
                             now=now)
        for job in jobs:
            if job.id not in held:
                log.warning("job %s #%s: lease lost to another worker", job.kind, job.id)
        return held

    def _tick(self) -> None:
        queued: dict[str, str] = {}  # each kind's last period queued by this worker
        while not self._stopping.is_set():
            now = utcnow()
            due = [p for p in self.schedule if queued.get(p.kind) != p.key(now)]
            if due:
                try:
                    queue_periodic(self.runtime.engine, due, now=now)
                except Exception:  # tried again at the next tick of any kind
                    log.exception("queueing periodic jobs failed")
                else:
                    queued.update((p.kind, p.key(now)) for p in due)
                    with self._wake:
                        self._wake.notify_all()
            next_at = min(p.next_tick(now) for p in self.schedule)
            self._stopping.wait(max((next_at - utcnow()).total_seconds(), 0.0))


def queue_periodic(engine: Engine, schedule: list[Periodic], *, now: datetime) -> list[Job]:
    """Queue the period of `now` of each periodic job, unless a worker did already."""
    with session_scope(engine) as session:
        return [enqueue(session, kind=periodic.kind, key=periodic.key(now),
                        max_attempts=periodic.max_attempts) for periodic in schedule]


def check_alive(path: Path = ALIVE_FILE, *, within_s: float = ALIVE_WITHIN_S) -> str | None:
    """Why the worker of this machine (or container) is not healthy, or None when it is:
    it touched `path` within `within_s` seconds."""
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return f"no worker running here ({path} is missing)"
    if age > within_s:
        return f"the worker has not shown signs of life for {age:.0f} s"
    return None


def run_until_signalled(worker: JobWorker, *, grace_s: float, drain: bool = False,
                        alive_file: Path | None = None) -> bool:
    """Run `worker` until SIGTERM or SIGINT (or, with `drain`, until no job is left), then
    stop it gracefully; True when no job was left running. While all its threads run it
    touches `alive_file`. A second signal is not waited for: its default action ends the
    process at once."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("%s: stopping; jobs under way get %g s to finish",
                 signal.Signals(signum).name, grace_s)
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    previous = {signum: signal.signal(signum, on_signal)
                for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        if alive_file is not None:  # alive from the start, before any job can run
            alive_file.touch()
        worker.start()
        while not stop.is_set():
            if alive_file is not None and worker.threads_alive():
                alive_file.touch()
            if drain and worker.idle():
                log.info("worker %s: no job left", worker.name)
                break
            stop.wait(worker.poll_s)
        return worker.stop(grace_s)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if alive_file is not None:
            alive_file.unlink(missing_ok=True)
