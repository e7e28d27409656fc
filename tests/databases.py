"""Databases for tests: a SQLite file by default, or a fresh PostgreSQL database per test when
VITRINE_TEST_DATABASE_URL names a server.

On PostgreSQL the schema is built once per session in a template database; each test gets
`CREATE DATABASE ... TEMPLATE` of it (cheaper than creating every table again) and it is
dropped `WITH (FORCE)` afterwards, so connections a test leaves open in its engine's pool
never keep a database alive. Both happen on a thread of their own, ahead of and after the
tests, so a test waits for neither.

Concurrent runs on one server (several developers, several CI jobs) never share a database:
each run's names carry its machine and process.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import queue
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import URL, make_url

# Read once, at import: the suite's autouse fixture clears every VITRINE_ variable so that a
# developer's settings never reach a test, and this one must survive it.
TEST_DATABASE_URL = os.environ.get("VITRINE_TEST_DATABASE_URL") or None
# Databases this suite creates carry this prefix, the machine and the pid of the pytest
# process, so that concurrent runs on one server never touch each other's, and a crashed
# run's are swept by the next run on the same machine (only there is its pid meaningful).
PREFIX = "vitrine_test_"
HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]
# DROP DATABASE makes the server checkpoint, writing out every buffer the tests dirtied since
# the last one: finished databases are dropped this many at a time, so that one checkpoint
# in a batch is costly rather than one per test. Measured on the catalog, checkout API and
# end-to-end tests (a loaded 2-core machine): dropped one by one, each new database took
# ~330 ms to make and the run 55 s; in batches, ~40-80 ms and 30 s (on SQLite: 24 s).
DROP_BATCH = 16


def sqlite_url(tmp_path: Path, name: str = "vitrine.db") -> str:
    """A SQLite file in the test's own folder."""
    return f"sqlite:///{tmp_path / name}"


# A fixture over both databases in one run: `@pytest.fixture(params=BOTH_DATABASES)`.
BOTH_DATABASES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@contextmanager
def database_of(request: pytest.FixtureRequest, tmp_path: Path, *, empty: bool
                ) -> Iterator[str]:
    """The database of a test parametrized over `BOTH_DATABASES`: a SQLite file or a new
    PostgreSQL database (dropped after), with every table and no rows, or no table if
    `empty`."""
    if request.param == "sqlite":
        url = sqlite_url(tmp_path, "both.db")
        if not empty:
            from core.db import make_engine
            from vitrine.runtime import create_tables

            engine = make_engine(url)
            create_tables(engine)
            engine.dispose()
        yield url
        return
    databases: PostgresDatabases = request.getfixturevalue("postgres_databases")
    name = databases.create(empty=empty)
    try:
        yield databases.url_of(name)
    finally:
        databases.drop(name)


def _pid_alive(pid: int) -> bool:
    """Whether a process with this id still runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class PostgresDatabases:
    """Creates and drops the suite's databases on one PostgreSQL server.

    A thread of its own keeps a few databases made ahead and drops the ones tests are done
    with (in batches, see DROP_BATCH), so that a test waits on neither: the server does that
    work while the tests run.
    """

    def __init__(self, url: str, *, ahead: int = 4) -> None:
        self.url: URL = make_url(url)
        if self.url.get_backend_name() != "postgresql":
            raise ValueError(f"VITRINE_TEST_DATABASE_URL must be a PostgreSQL URL, not {url!r}")
        self.admin = self._connect()
        self.stem = f"{PREFIX}{HOST}_{os.getpid()}_"
        self.numbers = itertools.count(1)
        self.template: str | None = None
        self._ready: queue.Queue[str] = queue.Queue()
        self._finished: queue.Queue[str] = queue.Queue()
        self._ahead = ahead
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._failure: BaseException | None = None
        self._settling = threading.Event()
        self._sweep_orphans()

    def _connect(self) -> psycopg.Connection:
        # The server's own database in the URL is where CREATE/DROP DATABASE are issued.
        conninfo = self.url.set(drivername="postgresql").render_as_string(hide_password=False)
        return psycopg.connect(conninfo, autocommit=True)

    @staticmethod
    def describe(url: str) -> str:
        """The server and database of a URL, without its password."""
        parsed = make_url(url)
        return f"{parsed.host}:{parsed.port or 5432}/{parsed.database}"

    def url_of(self, name: str) -> str:
        """The SQLAlchemy URL of one of this server's databases."""
        return self.url.set(database=name).render_as_string(hide_password=False)

    @staticmethod
    def _create(admin: psycopg.Connection, name: str, template: str) -> None:
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(template)))

    @staticmethod
    def _drop_now(admin: psycopg.Connection, name: str) -> None:
        # FORCE: connections a test left open in its engine's pool must not keep it alive.
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))

    def _prepare_template(self) -> str:
        """The session's template: every table created by the product's own code, no rows."""
        from core.db import make_engine
        from vitrine.runtime import create_tables

        name = f"{self.stem}template"
        self._drop_now(self.admin, name)
        self._create(self.admin, name, "template0")
        engine = make_engine(self.url_of(name))
        try:
            create_tables(engine)
        finally:
            # CREATE DATABASE ... TEMPLATE refuses a template anyone is connected to.
            engine.dispose()
        return name

    def create(self, *, empty: bool = False) -> str:
        """A new database's name: with every table but no rows, or with nothing at all."""
        if empty:
            name = f"{self.stem}{next(self.numbers)}"
            self._create(self.admin, name, "template0")
            return name
        if self.template is None:
            self.template = self._prepare_template()
            self._worker = threading.Thread(target=self._work, name="test-databases",
                                            daemon=True)
            self._worker.start()
        while True:
            try:
                return self._ready.get(timeout=0.5)
            except queue.Empty:
                if self._failure is not None:
                    raise RuntimeError("making a test database failed") from self._failure

    def drop(self, name: str) -> None:
        """Drop a database a test is done with (in the background once tests are running)."""
        if self._worker is None:
            self._drop_now(self.admin, name)
        else:
            self._finished.put(name)

    def settle(self) -> None:
        """Wait until every database handed to `drop` is gone."""
        if self._worker is None:
            return
        self._settling.set()
        done = self._finished.all_tasks_done
        try:
            with done:
                while self._finished.unfinished_tasks:
                    if not self._worker.is_alive():
                        raise RuntimeError("dropping a test database failed") \
                            from self._failure
                    done.wait(timeout=0.5)
        finally:
            self._settling.clear()

    def names(self) -> set[str]:
        """The databases of this run that exist on the server now."""
        rows = self.admin.execute("SELECT datname FROM pg_database WHERE datname LIKE %s",
                                  (self.stem.replace("_", r"\_") + "%",)).fetchall()
        return {name for (name,) in rows}

    def _work(self) -> None:
        """Keep `ahead` new databases ready; drop finished ones a batch at a time."""
        admin = self._connect()
        try:
            while not self._stop.is_set():
                if self._finished.qsize() >= DROP_BATCH or (
                        self._settling.is_set() and not self._finished.empty()):
                    self._drop_finished(admin)
                elif self._ready.qsize() < self._ahead:
                    assert self.template is not None
                    name = f"{self.stem}{next(self.numbers)}"
                    self._create(admin, name, self.template)
                    self._ready.put(name)
                else:
                    self._stop.wait(0.05)
        except BaseException as exc:  # the test waiting for a database reports it
            self._failure = exc
        finally:
            admin.close()

    def _drop_finished(self, admin: psycopg.Connection) -> None:
        while True:
            try:
                name = self._finished.get_nowait()
            except queue.Empty:
                return
            try:
                self._drop_now(admin, name)
            finally:
                self._finished.task_done()

    def _sweep_orphans(self) -> None:
        """Drop databases left by earlier runs of the suite that were killed before their
        teardown (their pytest process is gone)."""
        rows = self.admin.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s",
            (f"{PREFIX}{HOST}_".replace("_", r"\_") + "%",)).fetchall()
        for (name,) in rows:
            pid = name[len(f"{PREFIX}{HOST}_"):].split("_", 1)[0]
            if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
                self._drop_now(self.admin, name)

    def close(self) -> None:
        """Drop every database still here, the template last; close the admin connection."""
        self._stop.set()
        if self._worker is not None:
            self._worker.join()
        for waiting in (self._ready, self._finished):
            while not waiting.empty():
                self._drop_now(self.admin, waiting.get_nowait())
        if self.template is not None:
            self._drop_now(self.admin, self.template)
        self.admin.close()
