"""`vitrine db upgrade | current | check`."""

import pytest
from sqlalchemy import text

from core import schema
from core.db import make_engine
from core.settings import get_settings
from vitrine.cli import main


@pytest.fixture
def db(monkeypatch, empty_database_url):
    monkeypatch.setenv("VITRINE_DATABASE_URL", empty_database_url)
    get_settings.cache_clear()
    yield empty_database_url
    get_settings.cache_clear()


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_upgrade_prints_the_revision_reached_and_check_then_passes(db, capsys):
    code, out, err = run(capsys, "db", "check")
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "run `vitrine db upgrade`" in err
    assert run(capsys, "db", "current")[1].startswith("none")

    code, out, _ = run(capsys, "db", "upgrade")
    assert (code, out) == (0, f"{schema.head()}\n")
    assert run(capsys, "db", "current")[:2] == (0, f"{schema.head()}\n")
    code, out, _ = run(capsys, "db", "check")
    assert code == 0 and out.startswith("ok")


def test_check_fails_with_one_line_when_the_models_drifted_from_the_database(db, capsys):
    assert run(capsys, "db", "upgrade")[0] == 0
    engine = make_engine(db)
    with engine.begin() as conn:
        conn.execute(text('ALTER TABLE "order" DROP COLUMN payer_email'))
    engine.dispose()
    code, out, err = run(capsys, "db", "check")
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "add_column order.payer_email" in err


def test_an_unreachable_database_is_one_line_not_a_traceback(monkeypatch, capsys):
    monkeypatch.setenv("VITRINE_DATABASE_URL", "postgresql://nobody:wrong@127.0.0.1:1/none")
    get_settings.cache_clear()
    code, out, err = run(capsys, "db", "current")
    get_settings.cache_clear()
    assert code == 1 and out == ""
    assert err.startswith("vitrine: error: cannot reach the database at postgresql+psycopg://")
    assert "wrong" not in err and err.count("\n") == 1
