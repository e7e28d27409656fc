"""How many shoppers' turns one process works on at once.

A turn is Python work and database round trips under one interpreter lock: past a few at
once, threads only pass the lock to each other (docs/production.md, "Turns at once";
measured in docs/benchmarks.md, "Second round" to "Fourth round"). So a process runs at most
`VITRINE_TURN_CONCURRENCY` turns; the others wait for a slot.

A turn that waits on an outside service (a language model, live merchants, a payment
provider) gives its slot back meanwhile (`waiting`), so a slow service does not stall the
process. Back from it, a turn that has written anything goes on at once, past the limit if
every slot is taken: others may be waiting on its locks (SQLite's write lock, PostgreSQL's
row and advisory locks), and were it to wait for a slot they hold, each would wait for the
other for ever. A turn that has written nothing waits for a slot as a new turn does.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

WROTE = "vitrine_wrote"  # connection.info key: this transaction wrote or took a lock
_local = threading.local()


class TurnSlots:
    """At most `size` turns working at once in this process, and at most `in_flight` begun
    (working, or waiting on an outside service with their slot given back).

    `in_flight` is the connection pool's capacity: a waiting turn keeps its connection, and
    were more turns begun than there are connections, the working ones could wait on the
    pool while the waiting ones, holding every connection, waited for a slot.
    """

    def __init__(self, size: int, *, in_flight: int | None = None) -> None:
        self.size = size
        self._free = threading.BoundedSemaphore(size)
        self._begun = threading.BoundedSemaphore(max(size, in_flight or size))

    @property
    def free(self) -> int:
        """Slots no turn holds right now."""
        return self._free._value  # type: ignore[attr-defined]

    @contextmanager
    def turn(self) -> Iterator[None]:
        """Hold a slot for the turn run inside (a turn inside a turn uses the same one)."""
        if getattr(_local, "slots", None) is not None:
            outer = getattr(_local, "session", None)
            try:
                yield
            finally:
                _local.session = outer
            return
        with self._begun:
            self._free.acquire()
            _local.slots, _local.session, _local.holding = self, None, True
            try:
                yield
            finally:
                holding = _local.holding
                _local.slots = _local.session = None
                if holding:  # a turn back from `waiting` past the limit holds none
                    self._free.release()


def pool_capacity(engine: Engine) -> int | None:
    """How many connections the engine's pool gives out at most (None: no bound)."""
    pool = engine.pool
    size = getattr(pool, "size", None)
    overflow = getattr(pool, "_max_overflow", None)
    if not callable(size) or not isinstance(overflow, int) or overflow < 0:
        return None
    return int(size()) + overflow


def working_in(session: Session) -> None:
    """Tell the turn this thread runs which session it writes through."""
    _local.session = session


@contextmanager
def waiting() -> Iterator[None]:
    """Around a call to an outside service: the turn's slot is free meanwhile; back from it,
    a turn that has written goes on at once (see the module's docstring)."""
    slots: TurnSlots | None = getattr(_local, "slots", None)
    if slots is None:
        yield
        return
    session, holding = _local.session, _local.holding
    _local.slots = None
    if holding:
        slots._free.release()
    try:
        yield
    finally:
        # Without a slot only while others may wait on this turn's locks.
        holding = slots._free.acquire(blocking=not _has_written(session))
        _local.slots, _local.session, _local.holding = slots, session, holding


def _has_written(session: Session | None) -> bool:
    if session is None or not session.in_transaction():
        return False
    return bool(session.connection().info.get(WROTE))


def watch_writes(engine: Engine) -> None:
    """Mark a connection's transaction once it writes or locks anything: any statement but
    a plain SELECT (an INSERT, an UPDATE, a BEGIN IMMEDIATE, SELECT ... FOR UPDATE or SHARE,
    an advisory lock; a SELECT merely naming " for " is taken as one too, which only keeps
    a slot). Cleared when the transaction ends. Statements sent through the engine are
    seen; a turn writes through its session only (`working_in`)."""

    @event.listens_for(engine, "before_cursor_execute")
    def _mark(conn: Connection, _cursor: Any, statement: str, *_: Any) -> None:
        if WROTE not in conn.info:
            head = statement.lstrip()[:6].upper()
            if head != "SELECT":
                conn.info[WROTE] = True
                return
            # SELECT ... FOR UPDATE / NO KEY UPDATE / SHARE / KEY SHARE; advisory locks.
            upper = statement.upper()
            if " FOR " in upper or "ADVISORY" in upper:
                conn.info[WROTE] = True

    @event.listens_for(engine, "commit")
    @event.listens_for(engine, "rollback")
    def _clear(conn: Connection) -> None:
        conn.info.pop(WROTE, None)
