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
