"""The suite's own databases (tests/databases.py): one per test, on SQLite or PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text
from sqlmodel import Session, func, select

from catalog.models import Merchant
from checkout.models import Order
from core.db import make_engine
from tests.databases import PostgresDatabases
from vitrine.runtime import create_tables


def _rows(url: str) -> tuple[int, int]:
    engine = make_engine(url)
    try:
        create_tables(engine)
        with Session(engine) as session:
            return (session.exec(select(func.count()).select_from(Merchant)).one(),
                    session.exec(select(func.count()).select_from(Order)).one())
    finally:
        engine.dispose()


def test_a_test_database_starts_with_no_rows(database_url: str):
    assert _rows(database_url) == (0, 0)


def test_a_database_with_tables_and_an_empty_one_are_apart(database_url: str,
                                                            empty_database_url: str):
    engine = make_engine(database_url)
    create_tables(engine)
    with Session(engine) as session:
        session.add(Merchant(slug="loja", name="Loja", market="BR"))
        session.commit()
    engine.dispose()
    assert _rows(database_url) == (1, 0)
    assert empty_database_url != database_url
    empty = make_engine(empty_database_url)
    try:
        assert inspect(empty).get_table_names() == []
    finally:
        empty.dispose()


@pytest.mark.postgres
def test_a_database_left_with_open_connections_is_dropped(
        postgres_databases: PostgresDatabases):
    name = postgres_databases.create()
    engine = make_engine(postgres_databases.url_of(name))
    left_open = engine.connect()
    left_open.execute(text("SELECT count(*) FROM merchant"))  # idle in a transaction
    postgres_databases.drop(name)
    postgres_databases.settle()
    assert name not in postgres_databases.names()
    left_open.invalidate()
    engine.dispose()
