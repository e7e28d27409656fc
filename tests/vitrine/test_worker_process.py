"""`vitrine worker` as a real process: killed with SIGKILL in the middle of a feed import, it
leaves the old catalog intact, and another worker completes the sync once the lease expires;
stopped with SIGTERM, it lets the import finish, claims nothing more and exits 0. On SQLite,
and on PostgreSQL when VITRINE_TEST_DATABASE_URL is set."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from catalog.merchants import add_merchant_from_feed
from catalog.models import CatalogProduct, Merchant
from catalog.sync import queue_sync
from core.db import as_utc, make_engine, session_scope
from core.jobs import Job
from core.settings import Settings
from tests.factories import write_tsv
from tests.queue_databases import jobs_database_url  # noqa: F401
from vitrine.jobs import JOBS
from vitrine.runtime import build_runtime
from vitrine.worker import JobWorker

ROWS = 15_000  # enough that a worker is still importing well after its first progress line
WAIT_S = 120


def row(number: int, title: str, price: str) -> list[str]:
    return [f"P{number}", f"{title} {number}", "Uma caneca.", f"https://x.example/{number}",
            "", "in stock", price, "Marca", "Casa", ""]


class Worker:
    """`vitrine worker` in a process of its own; its log lines read as they come."""

    def __init__(self, database_url: str, cwd: Path, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VITRINE_")}
        env.update(VITRINE_DATABASE_URL=database_url, VITRINE_ENV="test",
                   VITRINE_LOG_FORMAT="json")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "vitrine.cli", "worker", *args], cwd=cwd, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, text: str) -> str:
        """The first log message containing `text`; fails if the process ends first."""
        while (line := self.lines.get(timeout=WAIT_S)) is not None:
            self.seen.append(line)
            try:
                message = json.loads(line)["message"]
            except (ValueError, KeyError):
                message = line
            if text in message:
                return message
        raise AssertionError(f"the worker ended without logging {text!r}:\n"
                             + "".join(self.seen))

    def log(self) -> str:
        """Everything it logged, once it has ended."""
        while (line := self.lines.get(timeout=WAIT_S)) is not None:
            self.seen.append(line)
        return "".join(self.seen)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(WAIT_S)


@pytest.fixture
def engine(jobs_database_url: str) -> Iterator[Engine]:  # noqa: F811
    engine = make_engine(jobs_database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:  # whatever an assertion left running
        worker.kill()


def catalog(engine: Engine) -> dict[str, tuple[str, int]]:
    with Session(engine) as session:
        return {p.product_id: (p.title, p.price_amount)
                for p in session.exec(select(CatalogProduct))}


def sync_of_a_big_feed(engine: Engine, tmp_path: Path) -> tuple[Job, dict]:
    """A merchant with a small catalog whose feed has grown to `ROWS` products, its sync
    queued; and the small catalog."""
    feed = tmp_path / "feed.tsv"
    write_tsv(feed, [row(n, "Caneca antiga", "10.00 BRL") for n in range(3)])
    merchant, _ = add_merchant_from_feed(engine=engine, name="Loja Grande", market="BR",
                                         feed=feed, source=str(feed))
    old = catalog(engine)
    write_tsv(feed, [row(n, "Caneca nova", "12.50 BRL") for n in range(ROWS)])
    with session_scope(engine) as session:
        job = queue_sync(session, merchant=session.get(Merchant, merchant.id))
    return job, old


def stored(engine: Engine, job: Job) -> Job:
    with Session(engine) as session:
        found = session.get(Job, job.id)
        assert found is not None
        return found


def test_a_worker_killed_mid_import_leaves_the_old_catalog_and_another_completes_it(
        engine, jobs_database_url, tmp_path, workers):  # noqa: F811
    job, old = sync_of_a_big_feed(engine, tmp_path)
    first = Worker(jobs_database_url, tmp_path, "--concurrency", "1")
    workers.append(first)
    first.wait_for("feed_sync loja-grande: 5000 rows read")
    first.process.send_signal(signal.SIGKILL)
    assert first.process.wait(WAIT_S) == -signal.SIGKILL

    assert catalog(engine) == old  # every old product there, unchanged
    cut = stored(engine, job)
    assert (cut.status, cut.attempts) == ("running", 1)

    # Another worker takes the sync over once the dead one's lease has expired, not before.
    runtime = build_runtime(Settings(env="test", database_url=jobs_database_url))
    try:
        second = JobWorker(runtime, handlers={"feed_sync": JOBS["feed_sync"]})
        assert second.run_due() == []
        [(_, status)] = second.run_due(now=as_utc(cut.locked_until) + timedelta(seconds=1))
    finally:
        runtime.close()
    done = stored(engine, job)
    assert (status, done.status, done.attempts, done.last_error) == ("done", "done", 2, None)
    new = catalog(engine)
    assert len(new) == ROWS and new["P7"] == ("Caneca nova 7", 1250)


def test_sigterm_lets_the_import_under_way_finish_and_claims_nothing_more(
        engine, jobs_database_url, tmp_path, workers):  # noqa: F811
    job, _ = sync_of_a_big_feed(engine, tmp_path)
    worker = Worker(jobs_database_url, tmp_path, "--concurrency", "1", "--grace", "60")
    workers.append(worker)
    worker.wait_for("feed_sync loja-grande: 5000 rows read")
    worker.process.send_signal(signal.SIGTERM)
    assert worker.process.wait(WAIT_S) == 0
    assert "SIGTERM: stopping" in worker.log()

    assert stored(engine, job).status == "done" and len(catalog(engine)) == ROWS
    # The periodic jobs it queued at start are left for the next worker, untouched.
    with Session(engine) as session:
        others = session.exec(select(Job).where(col(Job.id) != job.id)).all()
    assert others and {(j.status, j.attempts) for j in others} == {("queued", 0)}
