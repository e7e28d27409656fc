from sqlalchemy import Column, Integer, MetaData, String, Table, inspect, text

from core.db import add_missing_columns, make_engine


def test_a_new_optional_column_is_added_to_an_old_table_without_losing_rows(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
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


def test_a_new_column_with_a_server_default_gives_old_rows_that_value(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
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
