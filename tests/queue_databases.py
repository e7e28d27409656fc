"""Databases for the job queue's tests: each test runs on a SQLite file and, when
VITRINE_TEST_DATABASE_URL names a server, on a fresh PostgreSQL database too (the suite's
`database_url` is one or the other; claiming differs between the two, so both are tried in
one run). Import the fixtures into a test module to use them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from core.db import make_engine
from tests.databases import PostgresDatabases, sqlite_url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def jobs_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with every table and no rows: a SQLite file, then a PostgreSQL one."""
    if request.param == "sqlite":
        from vitrine.runtime import create_tables

        url = sqlite_url(tmp_path, "jobs.db")
        engine = make_engine(url)
        create_tables(engine)
        engine.dispose()
        yield url
        return
    databases: PostgresDatabases = request.getfixturevalue("postgres_databases")
    name = databases.create()
    yield databases.url_of(name)
    databases.drop(name)


@pytest.fixture
def job_engine(jobs_database_url: str) -> Iterator[Engine]:
    engine = make_engine(jobs_database_url)
    yield engine
    engine.dispose()
