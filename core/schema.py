"""The database schema: Alembic migrations brought to head, one process at a time.

`upgrade` runs at every start of Vitrine (through `vitrine.runtime.create_tables`) and for
`vitrine db upgrade`. It tells three kinds of database apart:

- versioned (an `alembic_version` row): migrated from its revision to head;
- empty: the models' tables are created and the database stamped at head, in one
  transaction (Alembic's recipe for a new database). Running every revision builds the same
  schema (tests/core/test_migrations.py compares both with the models on SQLite and
  PostgreSQL) at a higher cost, which every test would pay and which grows with each
  revision;
- made by a Vitrine from before migrations (tables, no `alembic_version`): brought to the
  baseline revision's shape the way those versions caught up (missing tables, optional
  columns and indexes added, the caller's `catch_up` for data), stamped at the baseline,
  then migrated like any other.

On PostgreSQL a session advisory lock makes processes starting together (API replicas, the
worker) upgrade one after the other; the later ones find the work done. On SQLite the
upgrade runs in one `BEGIN IMMEDIATE` transaction, which SQLite's own write lock serialises.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from functools import cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Column, MetaData, String, inspect, text, update
from sqlalchemy.engine import Connection, Engine

from core.db import add_missing_columns, add_missing_indexes

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
BASELINE = "0001"
VERSION_TABLE = "alembic_version"
# pg_advisory_lock's key for schema upgrades: any constant no other part of Vitrine uses.
# Advisory locks belong to one database, so two Vitrines on one server never wait on each other.
LOCK_KEY = 0x56_69_74_72_69_6E_65  # "Vitrine"
# How models and database are compared, by autogenerate and by `vitrine db check` alike.
COMPARE: dict[str, Any] = {"compare_type": True, "compare_server_default": True}


class State(Enum):
    EMPTY = "empty"
    BEFORE_MIGRATIONS = "before migrations"
    VERSIONED = "versioned"


def alembic_config(connection: Connection | None = None, metadata: MetaData | None = None,
                   migrations: Path = MIGRATIONS) -> Config:
    """Alembic's configuration, made in code: no alembic.ini is needed to run migrations.

    With a connection, env.py migrates on it (inside the caller's transaction); `metadata` is
    what autogenerate compares against; `migrations` is the folder of env.py and versions/.
    """
    config = Config()
    config.set_main_option("script_location", str(migrations))
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    config.attributes["connection"] = connection
    config.attributes["metadata"] = metadata
    return config


@cache
def _script(migrations: Path = MIGRATIONS) -> ScriptDirectory:
    """The revisions, read once per process."""
    return ScriptDirectory.from_config(alembic_config(migrations=migrations))


def head(migrations: Path = MIGRATIONS) -> str:
    """The newest revision this code knows."""
    revision = _script(migrations).get_current_head()
    assert revision is not None, f"{migrations}/versions holds no revision"
    return revision


def baseline_tables() -> MetaData:
    """The tables as the baseline revision creates them (its frozen shape, as data)."""
    return _script().get_revision(BASELINE).module.tables()  # type: ignore[no-any-return]


@cache
def _baseline_names() -> frozenset[str]:
    return frozenset(baseline_tables().tables)


def run_migrations(context: Any, connection: Connection, metadata: MetaData | None) -> None:
    """env.py's body: configure Alembic on `connection` and run what the command asked."""
    context.configure(connection=connection, target_metadata=metadata,
                      # SQLite alters a table by copying it; Alembic's batch mode does that.
                      render_as_batch=connection.dialect.name == "sqlite", **COMPARE)
    with context.begin_transaction():
        context.run_migrations()
        if not context.is_offline_mode():
            _references_intact(connection)


def state_of(conn: Connection, metadata: MetaData) -> State:
    """Whether the database is empty, from before migrations, or versioned."""
    tables = set(inspect(conn).get_table_names())
    if VERSION_TABLE in tables:
        return State.VERSIONED
    known = set(metadata.tables) | _baseline_names()
    return State.BEFORE_MIGRATIONS if tables & known else State.EMPTY


def current(engine: Engine) -> str | None:
    """The revision the database is at; None when it has none."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


@contextmanager
def _schema_lock(engine: Engine) -> Iterator[Connection]:
    """A connection that, on PostgreSQL, holds the schema lock until the block ends."""
    with engine.connect() as conn:
        if conn.dialect.name != "postgresql":
            yield conn
            return
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": LOCK_KEY})
        conn.commit()
        try:
            yield conn
        finally:
            try:
                conn.rollback()
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY})
                conn.commit()
            except Exception:
                # A lock left on a pooled connection would stop every later upgrade; closing
                # the session releases it.
                conn.invalidate()
                raise


@contextmanager
def foreign_keys_off(conn: Connection) -> Iterator[Connection]:
    """On SQLite, foreign keys off while migrations run: batch mode changes a column by
    copying the table and dropping the old one, which a foreign key to it would refuse
    (`_references_intact` checks the rows afterwards). The pragma only takes effect outside
    a transaction, so the block starts and ends with none open."""
    if conn.dialect.name != "sqlite":
        yield conn
        return
    conn.commit()
    conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
    conn.commit()
    try:
        yield conn
    finally:
        conn.rollback()  # whatever the block left open
        conn.exec_driver_sql("PRAGMA foreign_keys=ON")
        conn.commit()


@contextmanager
def _transaction(conn: Connection) -> Iterator[Connection]:
    """One transaction on `conn`; on SQLite it takes the write lock from its start."""
    with foreign_keys_off(conn):
        conn.commit()
        if conn.dialect.name == "sqlite":
            # sqlite3 would begin only at the first INSERT, after the DDL; IMMEDIATE also
            # makes a second process wait here rather than fail half-way.
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.begin()
        try:
            yield conn
        except BaseException:
            conn.rollback()
            raise
        conn.commit()


def _references_intact(conn: Connection) -> None:
    """On SQLite, refuse migrations that left a row pointing at nothing (foreign keys were off
    while they ran)."""
    if conn.dialect.name == "sqlite":
        broken = conn.exec_driver_sql("PRAGMA foreign_key_check").first()
        if broken is not None:
            raise RuntimeError(f"a migration left table {broken[0]} row {broken[1]} pointing "
                               f"at a missing {broken[2]} row")


def catch_up_to_baseline(engine: Engine, catch_up: Callable[[Engine], None]) -> list[str]:
    """Bring a database made before migrations to the baseline's shape; what was changed."""
    baseline = baseline_tables()
    missing = [t for t in baseline.sorted_tables
               if t.name not in set(inspect(engine).get_table_names())]
    baseline.create_all(engine, tables=missing)
    changed = [t.name for t in missing]
    changed += add_missing_columns(engine, baseline)
    changed += add_missing_indexes(engine, baseline)
    catch_up(engine)
    changed += _tighten_columns(engine, baseline)
    return changed


def _tighten_columns(engine: Engine, baseline: MetaData) -> list[str]:
    """Columns earlier versions left looser than the baseline declares: nullable though
    declared NOT NULL with a server default (an older catch-up added them so), or a shorter
    VARCHAR (order statuses were an enum of names)."""
    inspector = inspect(engine)
    loose: dict[str, list[tuple[Column[Any], dict[str, Any]]]] = {}
    for table in baseline.sorted_tables:
        found = {c["name"]: c for c in inspector.get_columns(table.name)}
        for column in table.columns:
            have = found.get(column.name)
            if have is None:
                continue
            change: dict[str, Any] = {}
            if have["nullable"] and not column.nullable and column.server_default is not None:
                change["nullable"] = False
            if _widened(have["type"], column.type):
                change["type_"] = column.type
            if change:
                loose.setdefault(table.name, []).append((column, change))
    if not loose:
        return []
    with engine.connect() as conn, foreign_keys_off(conn), conn.begin():
        operations = Operations(MigrationContext.configure(conn))
        for name, columns in loose.items():
            for column, change in columns:
                default = getattr(column.server_default, "arg", None)
                if change.get("nullable") is False and default is not None:
                    conn.execute(update(baseline.tables[name]).where(column.is_(None))
                                 .values({column.name: default}))
            # SQLite changes a column by copying the table; PostgreSQL alters it in place.
            with operations.batch_alter_table(name) as batch:
                for column, change in columns:
                    batch.alter_column(column.name, existing_type=column.type,
                                       existing_nullable=column.nullable, **change)
    return [f"{name}.{column.name}" for name, columns in loose.items() for column, _ in columns]


def _widened(found: Any, declared: Any) -> bool:
    """Whether a VARCHAR column is declared longer than the database has it (widening never
    loses data; narrowing is left to a revision)."""
    if type(declared) is not String or not isinstance(found, String) or found.length is None:
        return False
    return declared.length is None or found.length < declared.length


def upgrade(engine: Engine, *, metadata: MetaData,
            catch_up: Callable[[Engine], None] = lambda engine: None,
            migrations: Path = MIGRATIONS) -> str:
    """Bring the database to head, whatever it was; the revision reached.

    `metadata` holds every model's table (an empty database gets them); `catch_up` finishes a
    database from before migrations once it has the baseline's tables (rewriting old values);
    `migrations` is where the revisions are (tests try new ones in a copy).
    """
    script, newest = _script(migrations), head(migrations)
    with _schema_lock(engine) as conn:
        if state_of(conn, metadata) is State.BEFORE_MIGRATIONS:
            conn.commit()  # SQLite: hold nothing while the catch-up writes on its own
            catch_up_to_baseline(engine, catch_up)
        with _transaction(conn):
            # Looked at again under the lock: another process may have done it meanwhile.
            found = state_of(conn, metadata)
            context = MigrationContext.configure(conn)
            if found is State.EMPTY:
                metadata.create_all(conn, checkfirst=False)
                context.stamp(script, "head")
            elif newer := _unknown(script, context.get_current_revision()):
                # A newer Vitrine migrated it (a rolling deploy, a rollback): revisions are
                # written so the previous version still runs, so start, but say so.
                log.warning("the database is at revision %s, which this Vitrine (head %s) "
                            "does not know: a newer version migrated it", newer, newest)
            elif found is State.BEFORE_MIGRATIONS or context.get_current_revision() != newest:
                if found is State.BEFORE_MIGRATIONS:
                    context.stamp(script, BASELINE)
                command.upgrade(alembic_config(conn, metadata, migrations), "head")
            reached = context.get_current_revision()
    assert reached is not None
    return reached


def _unknown(script: ScriptDirectory, revision: str | None) -> str | None:
    """`revision` when this code has no such revision (a newer Vitrine wrote it)."""
    if revision is None:
        return None
    try:
        script.get_revision(revision)
    except CommandError:
        return revision
    return None


def check(engine: Engine, metadata: MetaData) -> str | None:
    """Why the database does not fit this code, in one line (behind head, or models that
    differ from the migrations); None when it does."""
    expected = head()
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts=dict(COMPARE))
        at = context.get_current_revision()
        if at is None:
            return "the database has no schema revision: run `vitrine db upgrade`"
        if _unknown(_script(), at):
            return (f"the database is at revision {at}, newer than this Vitrine "
                    f"(head {expected}): run the newer version")
        if at != expected:
            return (f"the database is at revision {at}, this Vitrine expects {expected}: "
                    "run `vitrine db upgrade`")
        diffs = compare_metadata(context, metadata)
    if not diffs:
        return None
    return ("the models differ from the migrations (" + "; ".join(describe(d) for d in diffs)
            + "): write a revision, see docs/production.md")


def describe(diff: Any) -> str:
    """One autogenerate difference in a few words ("add_column order.note")."""
    if isinstance(diff, list):  # the changes to one column come grouped
        return "; ".join(describe(d) for d in diff)
    kind = diff[0]
    if kind in ("add_table", "remove_table"):
        return f"{kind} {diff[1].name}"
    if kind in ("add_column", "remove_column"):
        return f"{kind} {diff[2]}.{diff[3].name}"
    if kind.startswith("modify_"):
        return f"{kind} {diff[2]}.{diff[3]}"
    item = diff[1]  # an index or a constraint
    return f"{kind} {item.name or '(unnamed)'} on {item.table.name}"
