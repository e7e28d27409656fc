"""Conversion events are written with their transaction, in one batch, or not at all."""

from __future__ import annotations

import pytest
from sqlalchemy import event, update
from sqlmodel import Session, col, select

from ops.events import ConversionEvent, EventKind, log_pseudonym, pending_events, record_event


def _events(engine) -> list[ConversionEvent]:
    with Session(engine) as session:
        return list(session.exec(select(ConversionEvent).order_by(col(ConversionEvent.id))))


def test_a_transactions_events_are_written_at_commit_in_one_batch_in_order(runtime):
    inserts: list[bool] = []

    @event.listens_for(runtime.engine, "before_cursor_execute")
    def _count(conn, cursor, statement, params, context, executemany):
        if statement.startswith("INSERT INTO conversionevent"):
            inserts.append(executemany)

    with Session(runtime.engine) as session:
        received = record_event(session, EventKind.MESSAGE_RECEIVED, user_key="web:ana",
                                market="BR")
        for position in (1, 2, 3):
            record_event(session, EventKind.CARDS_SHOWN, user_key="web:ana", market="BR",
                         merchant="loja", product_id=f"P{position}", position=position)
        received.parser = "rules"  # set after recording, as the conversation does
        assert _events(runtime.engine) == []  # nothing before the commit
        session.commit()
    stored = _events(runtime.engine)
    assert [(e.kind, e.position) for e in stored] == [
        ("message_received", None), ("cards_shown", 1), ("cards_shown", 2), ("cards_shown", 3)]
    assert stored[0].parser == "rules" and stored[0].channel == "web"
    assert stored[0].user_hash == log_pseudonym("web:ana") and stored[0].created_at is not None
    assert inserts == [True]


def test_a_rolled_back_transaction_writes_none_of_its_events(runtime):
    with Session(runtime.engine) as session:
        record_event(session, EventKind.MESSAGE_RECEIVED, user_key="web:ana")
        session.rollback()
        assert pending_events(session) == []
        session.commit()
    with Session(runtime.engine) as session:  # closed without a commit
        record_event(session, EventKind.MESSAGE_RECEIVED, user_key="web:ana")
        session.connection()
    assert _events(runtime.engine) == []


def test_an_update_of_the_event_table_reaches_the_events_recorded_before_it(runtime):
    with Session(runtime.engine) as session, session.no_autoflush:
        record_event(session, EventKind.MESSAGE_RECEIVED, user_key="web:ana", text="oi",
                     keep_text=True)
        session.exec(update(ConversionEvent).values(text=None))  # type: ignore[call-overload]
        session.commit()
    [stored] = _events(runtime.engine)
    assert stored.text is None and stored.text_hash == log_pseudonym("oi")


def test_events_recorded_before_a_savepoint_stay_when_it_rolls_back(runtime):
    with Session(runtime.engine) as session:
        record_event(session, EventKind.CHECKOUT_STARTED, user_key="web:ana")
        nested = session.begin_nested()
        record_event(session, EventKind.CHECKOUT_CONFIRMED, user_key="web:ana")
        nested.rollback()
        session.commit()
    assert [e.kind for e in _events(runtime.engine)] == ["checkout_started"]


def test_an_unknown_field_is_refused():
    with pytest.raises(TypeError, match="colour"):
        record_event(Session(), EventKind.CARDS_SHOWN, colour="blue")


def _record_every_kind_of_value(session: Session) -> None:
    record_event(session, EventKind.MESSAGE_RECEIVED, user_key="web:ana", market="BR",
                 language="pt", text='presente "da" mãe, 30% d\'água 🌱', keep_text=True,
                 conversation_id="c1")
    record_event(session, EventKind.INTENT_UNDERSTOOD, user_key="web:ana", parser="llm",
                 tokens_in=812, tokens_out=64, understood="kind:plant for:mother")
    for position, score in ((1, 0.731), (2, float("inf"))):
        record_event(session, EventKind.CARDS_SHOWN, user_key="web:ana", merchant="loja",
                     product_id=f"P{position}", position=position, score=score,
                     sponsored=position == 2, amount=9990, currency="BRL", latency_ms=41)


def _stored(engine) -> list[dict]:
    return [e.model_dump(exclude={"id"}) for e in _events(engine)]


def test_events_written_along_a_statement_are_the_events_written_alone(runtime):
    from bot.models import Conversation
    from core.driver import DriverStatement, write_together
    from ops.events import EVENTS, take_pending_rows

    table = Conversation.__table__
    rename = DriverStatement(update(table).where(table.c.user_key == "web:ana"),
                             column_keys=["language"])
    with Session(runtime.engine) as session:
        session.add(Conversation(user_key="web:ana", conversation_id="c1", market="BR",
                                 language="pt"))
        session.commit()
        _record_every_kind_of_value(session)
        session.commit()
    alone = _stored(runtime.engine)
    statements: list[str] = []

    @event.listens_for(runtime.engine, "before_cursor_execute")
    def _count(conn, cursor, statement, *_):
        statements.append(statement)

    with Session(runtime.engine) as session:
        _record_every_kind_of_value(session)
        assert write_together(session, rename, {"language": "es"},
                              [(EVENTS, take_pending_rows(session))]) == 1
        assert pending_events(session) == []
        session.commit()
    event.remove(runtime.engine, "before_cursor_execute", _count)
    along = _stored(runtime.engine)[len(alone):]
    created = [(e.pop("created_at"), a.pop("created_at"))
               for e, a in zip(along, alone, strict=True)]
    assert along == alone  # every value, in recording order
    assert all(later >= earlier for later, earlier in created)
    with Session(runtime.engine) as session:
        assert session.get(Conversation, "web:ana").language == "es"
    if runtime.engine.dialect.name == "postgresql":  # one round trip for both
        [statement] = statements
        assert statement.startswith("WITH appended_0 AS (INSERT INTO conversionevent")
    else:
        assert [s.split()[0] for s in statements] == ["INSERT", "UPDATE"]


def test_a_commit_with_no_events_takes_no_connection(runtime):
    taken: list[object] = []
    event.listen(runtime.engine, "checkout", lambda *args: taken.append(args))
    with Session(runtime.engine) as session:
        session.commit()
    assert taken == []
