"""The database engine and sessions (SQLite by default, any SQLAlchemy URL works)."""

from __future__ import annotations

import select
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, event, inspect
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import DisconnectionError, IntegrityError
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.schema import CreateColumn
from sqlmodel import Session, SQLModel, create_engine

from core.turns import LOOP_LOCK_WAIT_MS, on_the_loop, watch_writes


def utcnow() -> datetime:
    """The current time in UTC, timezone-aware."""
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """A stored time made timezone-aware: SQLite hands back naive datetimes, and Vitrine
    stores UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def engine_url(url: str) -> URL:
    """`url` parsed, with psycopg 3 as the driver of a PostgreSQL URL that names none
    (SQLAlchemy would pick psycopg2, which Vitrine does not install)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


# Switching a new SQLite file to WAL: tries, and the pause between them.
WAL_SWITCH_TRIES = 200
WAL_SWITCH_PAUSE_S = 0.01
# How long a SQLite statement waits for another connection's write lock before "database is
# locked" (a turn on the event loop waits less: `wait_briefly_on_the_loop`).
SQLITE_LOCK_WAIT_S = 30.0
_BRIEF_WAIT = "vitrine_brief_lock_wait"  # connection.info key: busy_timeout lowered


def _use_wal(cur: sqlite3.Cursor) -> None:
    """Put the SQLite file in WAL mode (it stays so, in the file).

    Switching takes an exclusive lock that SQLite does not wait for (no busy handler): when
    several processes open a new file at once (replicas and the worker at their first
    start), all but one would fail with "database is locked". They try again briefly.
    """
    if cur.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
        return
    for attempt in range(WAL_SWITCH_TRIES):
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == WAL_SWITCH_TRIES - 1:
                raise
            time.sleep(WAL_SWITCH_PAUSE_S)


def make_engine(url: str, *, pool_size: int | None = None, max_overflow: int | None = None,
                pool_timeout_s: float | None = None, pool_recycle_s: int | None = None
                ) -> Engine:
    """Create an engine for `url`, making the folder of a SQLite file if needed.

    The pool settings apply to a server database (PostgreSQL); None leaves SQLAlchemy's
    default. SQLite ignores them: it is one file, opened per connection.
    """
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False,
                                                  "timeout": SQLITE_LOCK_WAIT_S})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            # WAL lets readers keep the old catalog while a feed import commits the new one.
            _use_wal(cur)
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "savepoint")
        def _begin_before_savepoint(conn, _name):  # type: ignore[no-untyped-def]
            # The sqlite3 module opens a transaction only before a write, not before a
            # SAVEPOINT; a savepoint opened outside one starts a transaction of its own that
            # its RELEASE commits, so "exactly once" (the provider event stored with the
            # order's change) would be two commits. Open the transaction first, with the
            # write lock, because a savepoint is taken to write.
            hold_sqlite_write_lock(conn)

        watch_writes(engine)
        wait_briefly_on_the_loop(engine)
        return engine
    pool: dict[str, Any] = {"pool_size": pool_size, "max_overflow": max_overflow,
                            "pool_timeout": pool_timeout_s, "pool_recycle": pool_recycle_s}
    engine = create_engine(engine_url(url), **{k: v for k, v in pool.items() if v is not None})
    # A connection the server closed (restart, failover, idle timeout) is replaced before
    # use rather than failing a request.
    check_before_use(engine)
    if engine.dialect.name == "postgresql":
        @event.listens_for(engine, "connect")
        def _utc(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            # Days in reports are UTC days, whatever the server's own time zone.
            cur = dbapi_conn.cursor()
            cur.execute("SET TIME ZONE 'UTC'")
            cur.close()
    watch_writes(engine)
    return engine


# A pooled connection unused for this long is pinged before use (see `check_before_use`).
PING_AFTER_IDLE_S = 10.0
_RETURNED_AT = "vitrine_returned_at"  # connection info key: time.monotonic() at checkin


def check_before_use(engine: Engine, *, ping_after_idle_s: float = PING_AFTER_IDLE_S) -> None:
    """Make sure a pooled connection still works before it is handed out, as
    `pool_pre_ping` does, without its round trip (a `SELECT 1`, 45 us of client CPU and a
    backend's time) on every checkout of a busy server.

    A connection is pinged when it sat unused for `ping_after_idle_s` (a firewall or the
    server may have dropped it silently) or when its socket has something to read: a server
    that closed it (restart, failover, `pg_terminate_backend`) said so and hung up, and a
    healthy idle connection has nothing to say. One that fails the ping is replaced by the
    pool, which retries the checkout.
    """

    @event.listens_for(engine, "checkin")
    def _returned(dbapi_conn, record):  # type: ignore[no-untyped-def]
        if dbapi_conn is not None:
            record.info[_RETURNED_AT] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _check(dbapi_conn, record, _proxy):  # type: ignore[no-untyped-def]
        returned = record.info.get(_RETURNED_AT)
        if returned is None:  # just connected
            return
        if time.monotonic() - returned < ping_after_idle_s and not _has_news(dbapi_conn):
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except engine.dialect.loaded_dbapi.Error as error:
            raise DisconnectionError(f"pooled connection is gone: {error}") from error


def hold_sqlite_write_lock(conn: Connection) -> None:
    """On SQLite, take the database's write lock now (`BEGIN IMMEDIATE`) unless this
    transaction holds it already, and keep it to the end of the transaction: from here on
    the transaction reads the last committed state, and no other writer commits before it
    ends. The sqlite3 module would take the lock only at the transaction's first write.
    Nothing on other databases."""
    if conn.dialect.name == "sqlite" and \
            not getattr(conn.connection.dbapi_connection, "in_transaction", False):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def wait_briefly_on_the_loop(engine: Engine) -> None:
    """A SQLite transaction begun by a turn on the event loop waits `LOOP_LOCK_WAIT_MS` for
    the write lock, not `SQLITE_LOCK_WAIT_S`: the loop serves no one meanwhile, and a feed
    import holds the lock for its whole length. Past it, the turn runs again on a thread
    (`core.turns.LoopTurns`), which waits the usual time."""

    @event.listens_for(engine, "begin")
    def _brief(conn: Any) -> None:
        if on_the_loop():
            conn.connection.dbapi_connection.execute(
                f"PRAGMA busy_timeout = {LOOP_LOCK_WAIT_MS}")
            conn.info[_BRIEF_WAIT] = True

    @event.listens_for(engine, "commit")
    @event.listens_for(engine, "rollback")
    def _usual(conn: Any) -> None:
        # Before COMMIT itself, which in WAL mode takes no lock the writes did not hold.
        if conn.info.pop(_BRIEF_WAIT, False):
            conn.connection.dbapi_connection.execute(
                f"PRAGMA busy_timeout = {int(SQLITE_LOCK_WAIT_S * 1000)}")


def _has_news(dbapi_conn: Any) -> bool:
    """Whether an idle connection's socket is readable, hung up, or not there at all."""
    try:
        poll = select.poll()  # not select.select: a busy server's descriptors pass 1024
        poll.register(dbapi_conn.fileno(), select.POLLIN)
        return bool(poll.poll(0))
    except Exception:  # a closed connection has no descriptor: the ping will tell
        return True


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on any exception."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def forget_with_transaction(key: str) -> None:
    """Drop `session.info[key]` when the session's transaction ends or anything in it rolls
    back: for what one transaction read and keeps, which a later one must read again."""

    @event.listens_for(OrmSession, "after_transaction_end")
    def _ended(session: OrmSession, transaction: Any) -> None:
        if transaction.parent is None:
            session.info.pop(key, None)

    @event.listens_for(OrmSession, "after_soft_rollback")
    def _rolled_back(session: OrmSession, _previous: Any) -> None:
        session.info.pop(key, None)


def insert_once(engine: Engine, row: SQLModel) -> bool:
    """Insert a row keyed by an outside party's id (a channel's update or message id), in a
    transaction of its own; False when it was there already (a redelivery)."""
    with Session(engine) as session:
        session.add(row)
        try:
            session.commit()
        except IntegrityError:
            return False
    return True


@contextmanager
def joined_or_own(engine: Engine, session: Session | None) -> Iterator[Session]:
    """The caller's transaction when there is one, else a transaction of its own.

    On SQLite only one transaction writes at a time, so work done during a caller's
    transaction must join it rather than open a second one that would wait on the first.
    """
    if session is not None:
        yield session
        return
    with session_scope(engine) as own:
        yield own


def add_missing_columns(engine: Engine, metadata: MetaData) -> list[str]:
    """Add columns a newer version declared to tables an older version created.

    Only nullable columns, or ones with a server default (NOT NULL too when declared so: the
    rows already there get the default), are added, which is all a new optional field needs;
    anything else is left for a real migration. Returns what was added as "table.column".
    """
    inspector = inspect(engine)
    existing_tables = set(inspector.get_table_names())
    added: list[str] = []
    with engine.begin() as conn:
        for table in metadata.sorted_tables:
            if table.name not in existing_tables:
                continue
            have = {c["name"] for c in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name in have or not (column.nullable or column.server_default):
                    continue
                # The column as CREATE TABLE would write it: type, DEFAULT (rows already
                # there get it too, not NULL), NOT NULL when declared so.
                spec = CreateColumn(column).compile(dialect=engine.dialect)
                conn.exec_driver_sql(f'ALTER TABLE "{table.name}" ADD COLUMN {spec}')
                added.append(f"{table.name}.{column.name}")
    return added


def add_missing_indexes(engine: Engine, metadata: MetaData) -> list[str]:
    """Create indexes a newer version declared on tables an older version created."""
    existing_tables = set(inspect(engine).get_table_names())
    added = []
    for table in metadata.sorted_tables:
        if table.name not in existing_tables:
            continue
        have = {i["name"] for i in inspect(engine).get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in have:
                index.create(engine, checkfirst=True)
                added.append(str(index.name))
    return added
