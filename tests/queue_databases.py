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
from tests.databases import BOTH_DATABASES, database_of


@pytest.fixture(params=BOTH_DATABASES)
def jobs_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with every table and no rows: a SQLite file, then a PostgreSQL one."""
    with database_of(request, tmp_path, empty=False) as url:
        yield url


@pytest.fixture
def job_engine(jobs_database_url: str) -> Iterator[Engine]:
    engine = make_engine(jobs_database_url)
    yield engine
    engine.dispose()
