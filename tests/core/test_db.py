
import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, inspect, text
from sqlalchemy.exc import TimeoutError as PoolTimeout

from core.db import add_missing_columns, check_before_use, make_engine
from core.settings import Settings
from tests.threads import at_once
from vitrine.runtime import build_runtime


def test_a_new_optional_column_is_added_to_an_old_table_without_losing_rows(empty_database_url):
    engine = make_engine(empty_database_url)
    old = MetaData()
    Table("event", old, Column("id", Integer, primary_key=True), Column("kind", String(20)))
    old.create_all(engine)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO event (kind) VALUES ('shown')"))

    new = MetaData()
    Table("event", new, Column("id", Integer, primary_key=True), Column("kind", String(20)),
          Column("tokens_in", Integer, nullable=True),
          Column("required", String(5), nullable=False))

    assert add_missing_columns(engine, new) == ["event.tokens_in"]
    assert add_missing_columns(engine, new) == []
    assert {c["name"] for c in inspect(engine).get_columns("event")} == {"id", "kind",
                                                                        "tokens_in"}
    with engine.begin() as conn:
        assert conn.execute(text("SELECT kind, tokens_in FROM event")).all() == [("shown", None)]


def test_a_new_column_with_a_server_default_gives_old_rows_that_value(empty_database_url):
    engine = make_engine(empty_database_url)
    old = MetaData()
    Table("note", old, Column("id", Integer, primary_key=True))
    old.create_all(engine)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO note (id) VALUES (1)"))
    new = MetaData()
    Table("note", new, Column("id", Integer, primary_key=True),
          Column("attempts", Integer, nullable=False, server_default="0"))
    assert add_missing_columns(engine, new) == ["note.attempts"]
    with engine.begin() as conn:
        assert conn.execute(text("SELECT attempts FROM note")).scalar_one() == 0


@pytest.mark.parametrize("url", ["postgresql://shop:pw@db.internal/vitrine",
                                 "postgres://shop:pw@db.internal/vitrine"])
def test_a_postgresql_url_without_a_driver_uses_psycopg_3(url):
    """psycopg2, SQLAlchemy's default driver, is not installed: such a URL failed at start."""
    engine = make_engine(url)
    assert engine.url.drivername == "postgresql+psycopg"
    assert engine.url.host == "db.internal" and engine.url.database == "vitrine"


@pytest.mark.postgres
def test_the_pool_is_sized_by_the_settings(database_url):
    settings = Settings(env="test", database_url=database_url, db_pool_size=1,
                        db_max_overflow=0, db_pool_timeout_seconds=0.05,
                        db_pool_recycle_seconds=600)
    runtime = build_runtime(settings)
    try:
        assert runtime.engine.pool.size() == 1  # type: ignore[attr-defined]
        with runtime.engine.connect() as held:
            held.execute(text("SELECT 1"))
            with pytest.raises(PoolTimeout):  # no overflow: the second checkout waits, fails
                runtime.engine.connect()
    finally:
        runtime.close()
        runtime.engine.dispose()


def test_processes_opening_a_new_sqlite_file_at_once_all_get_it_in_wal_mode(tmp_path):
    # Switching a file to WAL does not wait for a lock: all but one of the replicas and the
    # worker starting together failed with "database is locked".
    url = f"sqlite:///{tmp_path / 'new.db'}"
    engines = [make_engine(url) for _ in range(8)]

    def open_it(engine) -> str:  # type: ignore[no-untyped-def]
        with engine.connect() as conn:
            return str(conn.exec_driver_sql("PRAGMA journal_mode").scalar_one())

    try:
        modes = at_once(*((open_it, e) for e in engines))
    finally:
        for engine in engines:
            engine.dispose()
    assert modes == ["wal"] * len(engines)


@pytest.mark.postgres
def test_a_connection_the_server_closed_is_replaced_before_use(database_url, monkeypatch):
    engine = make_engine(database_url, pool_size=1, max_overflow=0)
    pings = []
    real_ping = engine.dialect.do_ping
    monkeypatch.setattr(engine.dialect, "do_ping",
                        lambda conn: pings.append(conn) or real_ping(conn))
    try:
        with engine.connect() as conn:
            backend = conn.execute(text("SELECT pg_backend_pid()")).scalar()
        with engine.connect() as conn:  # a busy pool's connection is used as it is
            assert conn.execute(text("SELECT pg_backend_pid()")).scalar() == backend
        assert pings == []
        admin = make_engine(database_url)
        with admin.connect() as conn:  # as a restart or a failover would, and waits for it
            assert conn.execute(text("SELECT pg_terminate_backend(:pid, 5000)"),
                                {"pid": backend}).scalar()
        admin.dispose()
        with engine.connect() as conn:
            replaced = conn.execute(text("SELECT pg_backend_pid()")).scalar()
        assert replaced != backend
        assert len(pings) == 1
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_a_connection_idle_for_long_is_pinged_before_use(database_url, monkeypatch):
    engine = make_engine(database_url, pool_size=1, max_overflow=0)
    check_before_use(engine, ping_after_idle_s=0.0)  # now every reuse counts as idle
    pings = []
    real_ping = engine.dialect.do_ping
    monkeypatch.setattr(engine.dialect, "do_ping",
                        lambda conn: pings.append(conn) or real_ping(conn))
    try:
        for _ in range(3):
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        assert len(pings) >= 2
    finally:
        engine.dispose()
