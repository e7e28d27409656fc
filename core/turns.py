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

A web chat turn runs on the event loop itself when it can (`LoopTurns`): handing it to a
thread and passing the interpreter lock between that thread and the loop on every database
round trip cost a sixth of a message's CPU (docs/benchmarks.md, "Fifth round"). It can
unless a turn of the process is waiting on an outside service, and it stays there only
while it does short work: reaching an outside service or other long work
(`needs_a_thread`), it is rolled back and runs again from the start on a thread, as turns
already run again after a conflict. Turns of the kind that reached an outside service then
go straight to threads for a while; turns for the loop let those on threads finish first.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import anyio
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

WROTE = "vitrine_wrote"  # connection.info key: this transaction wrote or took a lock
_local = threading.local()
log = logging.getLogger(__name__)
T = TypeVar("T")

# A turn that held the event loop longer than this (a slow database, a lock to wait for)
# sends the process's turns to threads for `LOOP_BACK_OFF_S`: meanwhile, the loop serves
# other requests while a turn waits.
LOOP_HOLD_LIMIT_S = 0.25
LOOP_BACK_OFF_S = 60.0
# A kind of turn that reached an outside service runs on threads this long: the next such
# turn most likely reaches it too, and each one sent back wastes the work done before.
CALLS_OUT_FOR_S = 300.0
# A turn for the loop first lets the turns sent to threads finish, this long at most: run
# beside them, it would take the interpreter lock and the slot from them at every step, and
# they would take many times longer (a "Confirm" on a thread: 42 ms at the median instead of
# 18, on the load test). Past it, the turn goes to a thread too.
THREADS_FIRST_S = 0.2
_THREADS_CHECKED_EVERY_S = 0.005  # meanwhile: one of them may start waiting on a service
_KINDS_KEPT = 1024  # kinds of turn remembered as calling out, at most
# How long a turn on the loop waits for SQLite's write lock (`core.db`) before it runs again
# on a thread: a feed import or another process's write may hold it for long.
LOOP_LOCK_WAIT_MS = 50


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
        self._calling_out = 0
        self._calling_out_lock = threading.Lock()

    @property
    def free(self) -> int:
        """Slots no turn holds right now."""
        return self._free._value  # type: ignore[attr-defined]

    @property
    def calling_out(self) -> int:
        """Turns waiting on an outside service right now."""
        return self._calling_out

    def _count_calling_out(self, change: int) -> None:
        with self._calling_out_lock:
            self._calling_out += change

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


class LeaveTheLoop(BaseException):
    """Raised in a turn running on the event loop as it reaches work that may take long. A
    BaseException, so that no `except Exception` on its way (a live merchant's failure, a
    language model's) takes it for the outside service failing."""

    def __init__(self, *, outside: bool) -> None:
        super().__init__("outside service" if outside else "long work")
        self.outside = outside


def needs_a_thread(*, outside: bool = False) -> None:
    """Called before work that may hold the thread long: a turn running on the event loop
    leaves it here, to run again on a thread. Elsewhere, nothing happens.

    `outside`: the work is a call to an outside service, which the next turn of the same
    kind most likely makes too. Other long work (building a search index) happens once."""
    if on_the_loop():
        raise LeaveTheLoop(outside=outside)


def on_the_loop() -> bool:
    """Whether the work running here is a turn on the event loop."""
    return bool(getattr(_local, "on_loop", False))


def _lock_busy(error: OperationalError) -> bool:
    """SQLite's write lock stayed taken past the connection's wait."""
    return getattr(error.orig, "sqlite_errorname", None) in ("SQLITE_BUSY", "SQLITE_LOCKED")


class LoopTurns:
    """Runs a turn on the event loop when it can, else on a thread (the module's docstring).

    It runs on the loop when enabled, unless a turn of this process is waiting on an outside
    service (it may hold locks the turn would wait for, as long as the service takes), this
    kind of turn reached an outside service within `CALLS_OUT_FOR_S`, or a turn held the
    loop past `LOOP_HOLD_LIMIT_S` within `LOOP_BACK_OFF_S`. Turns this sent to threads and
    still working do not send it to a thread: were they to, turns arriving meanwhile would
    go to threads, and keep the next ones there. It lets them finish first instead
    (`THREADS_FIRST_S`). A kind is the caller's to choose: what tells turns that call out
    from those that do not (the market and the button's verb).
    """

    def __init__(self, slots: TurnSlots, *, enabled: bool,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.slots = slots
        self.enabled = enabled
        self._clock = clock
        self._calls_out: dict[Hashable, float] = {}  # kind -> on threads until
        self._threads_until = 0.0
        self._on_threads = 0  # turns this sent to threads, not finished
        self._threads_done: anyio.Event | None = None

    def on_loop(self, kind: Hashable) -> bool:
        """Whether a turn of this kind would run on the event loop now."""
        if not self.enabled or self.slots.calling_out:
            return False
        now = self._clock()
        return now >= self._threads_until and now >= self._calls_out.get(kind, now)

    async def run(self, kind: Hashable, work: Callable[[], T]) -> T:
        """`work()`, on the loop or on a thread; run again on a thread if it left the loop.

        `work` must be a turn that can run again from the start: nothing it did before
        `needs_a_thread` outlives its rolled-back transaction."""
        if self.on_loop(kind) and await self._threads_finished() and self.on_loop(kind):
            started = self._clock()
            _local.on_loop = True
            try:
                return work()
            except LeaveTheLoop as leaving:
                if leaving.outside:
                    self._called_out(kind)
            except OperationalError as error:
                if not _lock_busy(error):  # waited briefly for the lock: on a thread now
                    raise
            finally:
                _local.on_loop = False
                self._held(self._clock() - started)
        return await self.on_thread(work)

    async def _threads_finished(self) -> bool:
        """Wait, the loop serving meanwhile, until the turns sent to threads are done; False
        if they took longer than `THREADS_FIRST_S`."""
        with anyio.move_on_after(THREADS_FIRST_S):
            while self._on_threads and not self.slots.calling_out:
                if self._threads_done is None:
                    self._threads_done = anyio.Event()
                with anyio.move_on_after(_THREADS_CHECKED_EVERY_S):
                    await self._threads_done.wait()
            return True
        return False

    async def on_thread(self, work: Callable[[], T]) -> T:
        """`work()` on a thread, among the work turns for the loop let finish first: for the
        process's other short work (a payment provider's webhook), which would otherwise
        take the interpreter lock between the loop's turns only."""
        self._on_threads += 1
        try:
            return await anyio.to_thread.run_sync(work)
        finally:
            self._on_threads -= 1
            if not self._on_threads and self._threads_done is not None:
                self._threads_done.set()
                self._threads_done = None

    def _called_out(self, kind: Hashable) -> None:
        now = self._clock()
        if len(self._calls_out) >= _KINDS_KEPT:  # kinds come from requests: keep them few
            self._calls_out = {k: t for k, t in self._calls_out.items() if t > now}
            if len(self._calls_out) >= _KINDS_KEPT:
                self._calls_out.clear()
        self._calls_out[kind] = now + CALLS_OUT_FOR_S

    def _held(self, seconds: float) -> None:
        if seconds > LOOP_HOLD_LIMIT_S:
            self._threads_until = self._clock() + LOOP_BACK_OFF_S
            log.warning("a turn held the event loop %.2f s: turns run on threads for %.0f s",
                        seconds, LOOP_BACK_OFF_S)


@contextmanager
def waiting() -> Iterator[None]:
    """Around a call to an outside service: the turn's slot is free meanwhile; back from it,
    a turn that has written goes on at once (see the module's docstring). A turn on the
    event loop leaves it first (`needs_a_thread`)."""
    needs_a_thread(outside=True)
    slots: TurnSlots | None = getattr(_local, "slots", None)
    if slots is None:
        yield
        return
    session, holding = _local.session, _local.holding
    _local.slots = None
    slots._count_calling_out(1)
    if holding:
        slots._free.release()
    try:
        yield
    finally:
        slots._count_calling_out(-1)
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
