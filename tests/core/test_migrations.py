"""The schema's migrations: they build what the models declare, on SQLite and PostgreSQL;
databases from before migrations are caught up and stamped; processes starting together
upgrade one at a time; and a revision written by autogenerate applies."""

from __future__ import annotations

import fnmatch
import shutil
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from core import schema
from core.db import make_engine
from core.settings import get_settings
from tests.databases import BOTH_DATABASES, database_of, sqlite_url
from tests.threads import at_once
from vitrine.runtime import create_tables, model_metadata


@pytest.fixture(params=BOTH_DATABASES)
def blank_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no tables at all: a SQLite file, then a new PostgreSQL database."""
    with database_of(request, tmp_path, empty=True) as url:
        yield url


@pytest.fixture
def blank(blank_url: str) -> Iterator[Engine]:
    engine = make_engine(blank_url)
    yield engine
    engine.dispose()


def _differences(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn, opts=dict(schema.COMPARE)),
                                model_metadata())


def test_every_revision_run_from_an_empty_database_builds_what_the_models_declare(blank):
    with blank.connect() as conn:
        command.upgrade(schema.alembic_config(conn, model_metadata()), "head")
        conn.commit()
    assert _differences(blank) == []
    assert schema.current(blank) == schema.head()
    assert schema.check(blank, model_metadata()) is None


def test_an_empty_database_gets_the_models_tables_stamped_at_head(blank):
    """The fast path every start and every test takes: the same schema, at head."""
    create_tables(blank)
    assert _differences(blank) == []
    assert schema.current(blank) == schema.head()
    create_tables(blank)  # the next start finds nothing to do
    assert schema.current(blank) == schema.head()


def test_downgrading_to_nothing_drops_every_table(blank):
    create_tables(blank)
    with blank.connect() as conn:
        command.downgrade(schema.alembic_config(conn, model_metadata()), "base")
        conn.commit()
    assert set(inspect(blank).get_table_names()) <= {schema.VERSION_TABLE}
    assert schema.current(blank) is None


OLD_STATUSES = ("AWAITING_CONFIRMATION", "AWAITING_PAYMENT", "PAID", "FAILED", "CANCELED")
# Optional columns (nullable, or with a server default) that later versions added.
ADDED_LATER = {"order": {"payment_attempt", "payer_name", "payer_email"},
               "conversionevent": {"tokens_in", "tokens_out", "parser"},
               "notification": {"attempts", "not_before", "held_at"},
               "merchant": {"feed_etag", "feed_last_modified"}, "catalogproduct": set()}
# Added by an earlier version's catch-up as nullable, though declared NOT NULL with a default.
LEFT_NULLABLE = {"order": {"instalments"}}
# Declared shorter then; merchant's table is copied to widen it on SQLite, while a product
# refers to it by foreign key.
SHORTER = {("merchant", "slug"): 40}


def _old_shape() -> sa.MetaData:
    """Some tables as earlier Vitrines left them: fewer columns, one nullable that should
    not be, one shorter, no indexes, and order statuses as a database enum of member
    names."""
    old = sa.MetaData()
    for name, table in schema.baseline_tables().tables.items():
        if name not in ADDED_LATER:
            continue
        pk = {c.name for c in table.primary_key.columns}
        loose = LEFT_NULLABLE.get(name, set())
        columns = [sa.Column(c.name, sa.String(SHORTER[name, c.name])
                             if (name, c.name) in SHORTER else c.type, primary_key=c.name in pk,
                             nullable=c.nullable or c.name in loose,
                             server_default=c.server_default.arg if c.server_default else None)
                   for c in table.columns if c.name not in ADDED_LATER[name]]
        if name == "order":
            columns = [sa.Column("status", sa.Enum(*OLD_STATUSES, name="orderstatus"),
                                 nullable=False) if c.name == "status" else c for c in columns]
        uniques = [sa.UniqueConstraint(*[c.name for c in u.columns])
                   for u in table.constraints if isinstance(u, sa.UniqueConstraint)]
        keys = [sa.ForeignKeyConstraint([c.name for c in k.columns],
                                        [e.target_fullname for e in k.elements])
                for k in table.foreign_key_constraints]
        sa.Table(name, old, *columns, *uniques, *keys)
    return old


def _an_old_order(conn: sa.Connection) -> None:
    values = {"id": "ord-1", "user_key": "tg:1", "conversation_id": "c1", "market": "BR",
              "language": "pt", "merchant_slug": "loja", "merchant_name": "Loja",
              "product_id": "p1", "title": "Caneca", "amount": 4990, "shipping": 0, "fee": 0,
              "total": 4990, "currency": "BRL", "rail": "pix", "status": "AWAITING_PAYMENT",
              "created_at": "2024-05-01 12:00:00+00:00"}
    columns = ", ".join(f'"{k}"' for k in values)
    conn.execute(text(f'INSERT INTO "order" ({columns}) VALUES '
                      f"({', '.join(':' + k for k in values)})"), values)


def test_a_database_from_before_migrations_is_caught_up_stamped_and_keeps_its_rows(blank):
    old = _old_shape()
    old.create_all(blank)
    with blank.begin() as conn:
        _an_old_order(conn)
        conn.execute(text('UPDATE "order" SET instalments = NULL'))
        conn.execute(text("INSERT INTO merchant (id, slug, name, market, kind, revision, "
                          "product_count, rejected_count, created_at) VALUES (1, 'loja', "
                          "'Loja', 'BR', 'FEED', 1, 1, 0, '2024-05-01 12:00:00+00:00')"))
        conn.execute(text("INSERT INTO catalogproduct (merchant_id, product_id, title, "
                          "description, categories, price_amount, currency, in_stock, "
                          "updated_at) VALUES (1, 'p1', 'Caneca', '', '', 4990, 'BRL', true, "
                          "'2024-05-01 12:00:00+00:00')"))
        conn.execute(text("INSERT INTO notification (user_key, text, created_at) "
                          "VALUES ('tg:1', 'hello', '2024-05-01 12:00:00+00:00')"))

    create_tables(blank)

    assert schema.current(blank) == schema.head()
    assert _differences(blank) == []  # every missing table, column and index is there
    with blank.connect() as conn:
        assert conn.execute(text('SELECT id, status, instalments FROM "order"')).all() == [
            ("ord-1", "awaiting_payment", 1)]
        assert conn.execute(text("SELECT text, attempts FROM notification")).all() == [
            ("hello", 0)]
        assert conn.execute(text("SELECT m.slug, p.product_id FROM catalogproduct p "
                                 "JOIN merchant m ON m.id = p.merchant_id")).all() == [
            ("loja", "p1")]
    create_tables(blank)  # a second start: already versioned, nothing to redo
    assert schema.current(blank) == schema.head()


def test_a_database_from_before_migrations_is_stamped_at_the_baseline_then_migrated(blank):
    """Catch-up brings it to the baseline, never further: later revisions then run on it
    like on any other database (they would fail on columns added twice otherwise)."""
    schema.baseline_tables().create_all(blank)
    with blank.connect() as conn:
        assert schema.state_of(conn, model_metadata()) is schema.State.BEFORE_MIGRATIONS
    assert schema.catch_up_to_baseline(blank, lambda engine: None) == []
    create_tables(blank)
    assert schema.current(blank) == schema.head()


def test_processes_starting_together_upgrade_one_after_the_other(blank_url):
    """N API replicas and the worker all upgrade at start; each must succeed, the schema be
    built once."""
    engines = [make_engine(blank_url) for _ in range(4)]
    try:
        at_once(*((create_tables, e) for e in engines), timeout=120)
        assert schema.current(engines[0]) == schema.head()
        assert _differences(engines[0]) == []
        with engines[0].connect() as conn:
            assert conn.execute(text(f"SELECT count(*) FROM {schema.VERSION_TABLE}")
                                ).scalar_one() == 1
    finally:
        for engine in engines:
            engine.dispose()


def test_check_names_a_database_behind_and_models_that_drifted(tmp_path):
    engine = make_engine(sqlite_url(tmp_path))
    try:
        assert "no schema revision" in (schema.check(engine, model_metadata()) or "")
        create_tables(engine)
        assert schema.check(engine, model_metadata()) is None
        with engine.begin() as conn:
            conn.execute(text('ALTER TABLE "order" DROP COLUMN payer_email'))
        reason = schema.check(engine, model_metadata())
        assert reason is not None and "add_column order.payer_email" in reason
        assert "\n" not in reason
    finally:
        engine.dispose()


def test_a_revision_written_by_autogenerate_applies_on_sqlite(tmp_path, monkeypatch):
    """The revision template and SQLite's batch mode, as a developer adding a column and a
    table, and widening a column of a table others refer to, would use them."""
    migrations = tmp_path / "migrations"
    shutil.copytree(schema.MIGRATIONS, migrations,
                    ignore=shutil.ignore_patterns("__pycache__"))
    shipped = schema.head()
    revision = f"{int(shipped) + 1:04d}"  # the next one, named as docs/production.md says
    models = sa.MetaData()
    for table in model_metadata().sorted_tables:
        table.to_metadata(models)
    models.tables["order"].append_column(sa.Column("gift_note", sa.String(200)))
    models.tables["merchant"].c.name.type = sa.String(300)
    sa.Table("giftwrap", models, sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("order_id", sa.String(40), nullable=False, index=True))
    engine = make_engine(sqlite_url(tmp_path))
    try:
        create_tables(engine)
        with engine.begin() as conn:  # a product refers to the merchant whose table is copied
            conn.execute(text("INSERT INTO merchant (id, slug, name, market, kind, revision, "
                              "product_count, rejected_count, created_at) VALUES (1, 'loja', "
                              "'Loja', 'BR', 'FEED', 1, 1, 0, '2024-05-01 12:00:00')"))
            conn.execute(text("INSERT INTO catalogproduct (merchant_id, product_id, title, "
                              "description, categories, price_amount, currency, in_stock, "
                              "updated_at) VALUES (1, 'p1', 'Caneca', '', '', 4990, 'BRL', 1, "
                              "'2024-05-01 12:00:00')"))
        with engine.connect() as conn:
            command.revision(schema.alembic_config(conn, models, migrations),
                             message="gift note", autogenerate=True, rev_id=revision)
        written = (migrations / "versions" / f"{revision}_gift_note.py").read_text("utf-8")
        assert "batch_alter_table" in written and "giftwrap" in written

        assert schema.upgrade(engine, metadata=models, migrations=migrations) == revision

        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts=dict(schema.COMPARE))
            assert compare_metadata(context, models) == []
            assert conn.execute(text("SELECT count(*) FROM catalogproduct")).scalar_one() == 1
        # Back, as a developer would with `alembic downgrade` (env.py's own connection).
        monkeypatch.setenv("VITRINE_DATABASE_URL", sqlite_url(tmp_path))
        get_settings.cache_clear()
        command.downgrade(schema.alembic_config(migrations=migrations), shipped)
        assert "gift_note" not in {c["name"] for c in inspect(engine).get_columns("order")}
        assert schema.current(engine) == shipped
    finally:
        engine.dispose()


def test_the_migrations_ship_in_the_wheel():
    """A non-editable install (the Docker image) must find env.py, the revisions and the
    template: their folders are packages, every other file package data."""
    root = schema.MIGRATIONS.parents[1]
    config = tomllib.loads((root / "pyproject.toml").read_text("utf-8"))["tool"]["setuptools"]
    included = config["packages"]["find"]["include"]
    data = config["package-data"].get("core", []) + config["package-data"].get("*", [])
    for folder in (schema.MIGRATIONS, schema.MIGRATIONS / "versions"):
        assert (folder / "__init__.py").exists(), folder
        dotted = folder.relative_to(root).as_posix().replace("/", ".")
        assert any(fnmatch.fnmatch(dotted, pattern) for pattern in included), dotted
    for path in schema.MIGRATIONS.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".py":
            name = path.relative_to(root / "core").as_posix()
            assert any(fnmatch.fnmatch(name, pattern) for pattern in data), name


def test_a_database_a_newer_vitrine_migrated_still_starts_and_check_says_so(tmp_path, caplog):
    """During a rolling deploy the previous version's replicas restart on the new schema."""
    engine = make_engine(sqlite_url(tmp_path))
    try:
        create_tables(engine)
        with engine.begin() as conn:
            conn.execute(text(f"UPDATE {schema.VERSION_TABLE} SET version_num = '9999'"))
        create_tables(engine)
        assert schema.current(engine) == "9999"
        assert "9999" in caplog.text
        reason = schema.check(engine, model_metadata())
        assert reason is not None and "newer than this Vitrine" in reason
    finally:
        engine.dispose()
