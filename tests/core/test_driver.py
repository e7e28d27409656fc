"""Statements run through the driver (`core.driver`): the same values in and out as through
SQLAlchemy, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import bindparam, event, func, insert, inspect, literal, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from bot.models import Conversation
from core.db import make_engine, session_scope
from core.driver import DriverStatement, loaded, write_together
from tests.databases import BOTH_DATABASES, database_of

TABLE = Conversation.__table__  # type: ignore[attr-defined]
READ = DriverStatement(select(*TABLE.columns, literal(7).label("seven"),
                              func.coalesce(bindparam("fallback"), "none").label("fallback"))
                       .where(TABLE.c.user_key == bindparam("user")))
WRITE = DriverStatement(update(TABLE).where(TABLE.c.user_key == bindparam("key")),
                        column_keys=["shown", "quoted", "language_chosen", "updated_at"])
ADD = DriverStatement(insert(TABLE), column_keys=[c.key for c in TABLE.columns])


@pytest.fixture(params=BOTH_DATABASES)
def engine(request, tmp_path):
    with database_of(request, tmp_path, empty=False) as url:
        engine = make_engine(url)
        yield engine
        engine.dispose()


def _conversation(**changes) -> dict:
    values = dict(user_key="web:ana", conversation_id="c1", market="BR", language="pt",
                  last_query={"text": "presente", "max": 20000}, shown=["loja:P1"],
                  quoted={"loja:P1": 9990}, excluded=[], sponsored_shown=None,
                  language_chosen=None, awaiting_payer=None, home_market="BR",
                  updated_at=datetime(2026, 11, 30, 12, 0, tzinfo=UTC))
    return {**values, **changes}


def test_values_go_in_and_come_out_as_through_sqlalchemy(engine):
    with session_scope(engine) as session:
        ADD.execute(session, _conversation())
    with Session(engine) as session:
        through_orm = session.get(Conversation, "web:ana")
        *row, seven, fallback = READ.one(session, {"user": "web:ana", "fallback": None})
    stored = dict(zip([c.key for c in TABLE.columns], row, strict=True))
    assert stored == through_orm.model_dump()
    assert stored["last_query"] == {"text": "presente", "max": 20000}  # JSON, read back
    assert stored["updated_at"].replace(tzinfo=UTC) == datetime(2026, 11, 30, 12, 0,
                                                                 tzinfo=UTC)
    assert (seven, fallback) == (7, "none")  # the statement's own literals were sent


def test_an_update_sets_only_the_named_columns(engine):
    with session_scope(engine) as session:
        ADD.execute(session, _conversation(awaiting_payer="ord_1"))
    later = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    with session_scope(engine) as session:
        changed = WRITE.execute(session, {"key": "web:ana", "shown": ["loja:P2"],
                                          "quoted": {"loja:P2": 5000},
                                          "language_chosen": True, "updated_at": later})
    assert changed == 1
    with Session(engine) as session:
        conv = session.get(Conversation, "web:ana")
    assert (conv.shown, conv.quoted, conv.language_chosen) == (["loja:P2"],
                                                               {"loja:P2": 5000}, True)
    assert conv.updated_at.replace(tzinfo=UTC) == later
    assert conv.awaiting_payer == "ord_1" and conv.last_query["text"] == "presente"


def test_the_engines_listeners_see_the_statement(engine):
    seen = []

    @event.listens_for(engine, "before_cursor_execute")
    def _seen(_conn, _cursor, statement, parameters, _context, _many):
        seen.append((statement, parameters))

    with Session(engine) as session:
        assert READ.rows(session, {"user": "web:nobody", "fallback": "x"}) == []
    [(statement, parameters)] = seen
    assert statement.startswith("SELECT conversation.user_key")
    assert "web:nobody" in (parameters.values() if isinstance(parameters, dict)
                            else parameters)


def test_a_drivers_error_comes_out_as_sqlalchemys_and_the_session_rolls_back(engine):
    with session_scope(engine) as session:
        ADD.execute(session, _conversation())
    with pytest.raises(IntegrityError), session_scope(engine) as session:
        ADD.execute(session, _conversation(conversation_id="c2"))
    with Session(engine) as session:
        [row] = READ.rows(session, {"user": "web:ana", "fallback": None})
    assert row[1] == "c1"


def test_a_loaded_row_is_in_the_session_as_the_orm_would_have_it(engine):
    with session_scope(engine) as session:
        ADD.execute(session, _conversation())
    names = [c.key for c in TABLE.columns]
    with session_scope(engine) as session:
        *row, _, _ = READ.one(session, {"user": "web:ana", "fallback": None})
        conv = loaded(session, Conversation, dict(zip(names, row, strict=True)))
        assert inspect(conv).persistent and not session.dirty
        assert session.get(Conversation, "web:ana") is conv  # no second copy, no query
        assert loaded(session, Conversation, dict(zip(names, row, strict=True))) is conv
        conv.shown = ["loja:P9"]
        conv.updated_at = conv.updated_at + timedelta(hours=1)
        assert set(inspect(conv).committed_state) == {"shown", "updated_at"}
    with Session(engine) as session:
        assert session.get(Conversation, "web:ana").shown == ["loja:P9"]  # the ORM wrote it


def test_an_expanding_in_is_refused_when_compiled():
    statement = DriverStatement(select(TABLE.c.user_key).where(
        TABLE.c.user_key.in_(bindparam("keys", expanding=True))))
    with pytest.raises(ValueError, match="expanding"):
        statement.compiled(make_engine("sqlite://").dialect)


def test_a_column_whose_name_the_sql_cannot_carry_as_a_bind(engine):
    from sqlalchemy import Column, Integer, MetaData, String, Table

    prices = Table("unit_prices", MetaData(), Column("id", Integer, primary_key=True),
                   Column("unit price.brl", String(20)))
    prices.create(engine)
    add = DriverStatement(insert(prices), column_keys=["id", "unit price.brl"])
    read = DriverStatement(select(prices.c["unit price.brl"]).where(
        prices.c.id == bindparam("id")))
    with session_scope(engine) as session:
        add.execute(session, {"id": 1, "unit price.brl": "99,90"})
        assert read.one(session, {"id": 1}) == ("99,90",)


def _fact_and_profile(user_key: str) -> tuple[dict, dict]:
    at = datetime(2026, 11, 30, 9, 15, 42, 123456, tzinfo=timezone(timedelta(hours=-3)))
    fact = dict(user_key=user_key, subject="mother", kind="interest", value="jardinagem",
                source='"presente" p/ mãe \\ d\'água 🌱', created_at=at)
    profile = dict(user_key=user_key, memory_notice_at=at, link_failures=2_000_000_000,
                   link_failed_at=None, created_at=at + timedelta(seconds=1))
    return fact, profile


def test_rows_appended_are_the_rows_the_orm_writes(engine):
    from bot.models import MemoryFact, ShopperProfile

    with session_scope(engine) as session:
        ADD.execute(session, _conversation())
        orm_fact, orm_profile = _fact_and_profile("web:orm")
        session.add_all([MemoryFact(**orm_fact), ShopperProfile(**orm_profile)])
    fact, profile = _fact_and_profile("web:ana")
    with session_scope(engine) as session:
        assert write_together(session, WRITE, {"key": "web:ana", "shown": [], "quoted": {},
                                               "language_chosen": None,
                                               "updated_at": fact["created_at"]},
                              [(MemoryFact.__table__, [fact]),
                               (ShopperProfile.__table__, [profile])]) == 1

    def stored(user_key):
        with Session(engine) as session:
            facts = session.exec(select(MemoryFact).where(MemoryFact.user_key == user_key))
            [stored_fact] = [f.model_dump(exclude={"id", "user_key"}) for f in facts]
            return stored_fact, session.get(ShopperProfile, user_key).model_dump(
                exclude={"user_key"})

    assert stored("web:ana") == stored("web:orm")
    assert stored("web:ana")[0]["created_at"] == fact["created_at"]  # the same instant, UTC


def test_a_naive_time_is_refused_as_the_orm_refuses_it(engine):
    from sqlalchemy.exc import StatementError

    from bot.models import ShopperProfile

    with session_scope(engine) as session:
        ADD.execute(session, _conversation())
    _, profile = _fact_and_profile("web:ana")
    with pytest.raises((ValueError, StatementError), match="timezone"), \
            session_scope(engine) as session:
        write_together(session, WRITE, {"key": "web:ana", "shown": [], "quoted": {},
                                        "language_chosen": None,
                                        "updated_at": profile["created_at"]},
                       [(ShopperProfile.__table__,
                         [{**profile, "created_at": datetime(2026, 11, 30, 9, 0)}])])


def test_an_appended_column_keyed_apart_from_its_name(engine):
    from sqlalchemy import Column, Integer, MetaData, String, Table

    notes = Table("price_notes", MetaData(), Column("id", Integer, primary_key=True),
                  Column("unit price", String(20), key="unit_price"))
    notes.create(engine)
    with session_scope(engine) as session:
        ADD.execute(session, _conversation())
    with session_scope(engine) as session:
        write_together(session, WRITE, {"key": "web:ana", "shown": [], "quoted": {},
                                        "language_chosen": True,
                                        "updated_at": datetime(2026, 12, 1, tzinfo=UTC)},
                       [(notes, [{"unit_price": "99,90"}, {"unit_price": "5,00"}])])
    with Session(engine) as session:
        rows = session.execute(select(notes.c.id, notes.c.unit_price).order_by(notes.c.id))
        assert [price for _, price in rows] == ["99,90", "5,00"]
