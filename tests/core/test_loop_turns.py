"""A web chat turn runs on the event loop when it can. Reaching an outside service or other
long work, it leaves the loop and runs again from the start on a thread."""

import logging
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import anyio
import pytest
from sqlalchemy import text

from catalog.search import CatalogSearch
from core import turns
from core.db import make_engine, session_scope
from core.turns import LoopTurns, TurnSlots, needs_a_thread, waiting

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def loop_turns(clock):
    return LoopTurns(TurnSlots(2), enabled=True, clock=clock)


class Work:
    """A turn: where each run happened, and whether it reached the outside service."""

    def __init__(self, *, calls_out: bool = False, takes_s: float = 0.0,
                 clock: Clock | None = None) -> None:
        self.loop_thread = threading.current_thread()
        self.calls_out, self.takes_s, self.clock = calls_out, takes_s, clock
        self.runs: list[str] = []
        self.called = 0

    def __call__(self) -> str:
        self.runs.append("loop" if threading.current_thread() is self.loop_thread
                         else "thread")
        if self.clock:
            self.clock.now += self.takes_s
        if self.calls_out:
            with waiting():
                self.called += 1
        return "answer"


async def test_a_turn_doing_short_work_runs_on_the_event_loop(loop_turns):
    work = Work()
    assert await loop_turns.run(("BR", "text"), work) == "answer"
    assert work.runs == ["loop"]


async def test_a_turn_reaching_an_outside_service_runs_again_on_a_thread(loop_turns):
    work = Work(calls_out=True)
    assert await loop_turns.run(("US", "text"), work) == "answer"
    assert work.runs == ["loop", "thread"]
    assert work.called == 1  # left before the call, never during it


async def test_a_kind_that_called_out_goes_to_threads_until_it_is_tried_again(loop_turns,
                                                                              clock):
    await loop_turns.run(("US", "text"), Work(calls_out=True))
    again = Work(calls_out=True)
    await loop_turns.run(("US", "text"), again)
    assert again.runs == ["thread"]  # nothing done twice
    other = Work()
    await loop_turns.run(("BR", "text"), other)
    assert other.runs == ["loop"]

    clock.now += turns.CALLS_OUT_FOR_S
    later = Work()
    await loop_turns.run(("US", "text"), later)
    assert later.runs == ["loop"]


async def test_leaving_the_loop_is_not_taken_for_the_outside_service_failing(loop_turns):
    loop_thread = threading.current_thread()
    runs = []

    def work() -> str:
        runs.append(threading.current_thread() is loop_thread)
        try:
            with waiting():
                return "the merchant answered"
        except Exception:
            return "the merchant failed"

    assert await loop_turns.run(("US", "text"), work) == "the merchant answered"
    assert runs == [True, False]


async def test_a_turn_holding_the_loop_too_long_sends_turns_to_threads_for_a_while(
        loop_turns, clock, caplog):
    with caplog.at_level(logging.WARNING, logger="core.turns"):
        slow = Work(takes_s=turns.LOOP_HOLD_LIMIT_S * 2, clock=clock)
        assert await loop_turns.run(("BR", "text"), slow) == "answer"
    assert slow.runs == ["loop"]
    assert "held the event loop" in caplog.text

    for kind in [("BR", "text"), ("MX", "buy")]:
        work = Work()
        await loop_turns.run(kind, work)
        assert work.runs == ["thread"]

    clock.now += turns.LOOP_BACK_OFF_S
    work = Work()
    await loop_turns.run(("BR", "text"), work)
    assert work.runs == ["loop"]


@contextmanager
def another_turn(slots: TurnSlots, *, calling_out: bool) -> Iterator[None]:
    """A turn on a thread of its own, working or waiting on an outside service meanwhile."""
    started, finish = threading.Event(), threading.Event()

    def turn() -> None:
        with slots.turn():
            if calling_out:
                with waiting():
                    started.set()
                    finish.wait(10)
            else:
                started.set()
                finish.wait(10)

    thread = threading.Thread(target=turn)
    thread.start()
    try:
        assert started.wait(10)
        yield
    finally:
        finish.set()
        thread.join(10)


async def runs_of(loop_turns: LoopTurns) -> list[str]:
    """Where a turn of short work ran."""
    work = Work()
    await loop_turns.run(("BR", "text"), work)
    return work.runs


async def test_turns_run_on_threads_while_another_waits_on_an_outside_service(loop_turns):
    with another_turn(loop_turns.slots, calling_out=True):
        assert await runs_of(loop_turns) == ["thread"]
    assert await runs_of(loop_turns) == ["loop"]


async def test_a_turn_working_on_a_thread_keeps_no_other_off_the_loop(loop_turns):
    # Were it to, turns arriving meanwhile would go to threads, and keep the next ones there.
    with another_turn(loop_turns.slots, calling_out=False):
        assert await runs_of(loop_turns) == ["loop"]


async def test_turned_off_every_turn_runs_on_a_thread(clock):
    loop_turns = LoopTurns(TurnSlots(2), enabled=False, clock=clock)
    work = Work()
    await loop_turns.run(("BR", "text"), work)
    assert work.runs == ["thread"]


def test_needing_a_thread_elsewhere_changes_nothing():
    needs_a_thread()
    with waiting():
        pass


async def test_kinds_remembered_as_calling_out_stay_few(loop_turns):
    for n in range(turns._KINDS_KEPT + 10):
        await loop_turns.run(("US", f"verb{n}"), Work(calls_out=True))
    assert len(loop_turns._calls_out) <= turns._KINDS_KEPT
    again = Work(calls_out=True)
    await loop_turns.run(("US", f"verb{turns._KINDS_KEPT + 9}"), again)
    assert again.runs == ["thread"]  # the latest are still known


async def test_a_search_index_to_build_is_built_on_a_thread(demo_runtime, loop_turns):
    search = CatalogSearch(demo_runtime.engine)  # no index built yet
    loop_thread = threading.current_thread()
    runs = []

    def work() -> int:
        runs.append(threading.current_thread() is loop_thread)
        return len(search.index("BR").products)

    assert await loop_turns.run(("BR", "text"), work) > 0
    assert runs == [True, False]
    runs.clear()
    # Built once: the same kind of turn reads it on the loop from now on.
    assert await loop_turns.run(("BR", "text"), work) > 0
    assert runs == [True]


class OnThread:
    """A turn sent to a thread (its kind calls out) that works until `finish` is set, first
    waiting on an outside service once `call` is set, if it is."""

    def __init__(self, slots: TurnSlots) -> None:
        self.slots = slots
        self.started, self.call, self.calling = (threading.Event() for _ in range(3))
        self.finish = threading.Event()

    def __call__(self) -> str:
        with self.slots.turn():
            self.started.set()
            while not self.finish.wait(0.005):
                if self.call.is_set():
                    with waiting():
                        self.calling.set()
                        self.finish.wait(10)
        return "done on a thread"


@asynccontextmanager
async def a_turn_on_a_thread(loop_turns) -> AsyncIterator[OnThread]:
    loop_turns._called_out(("BR", "confirm"))
    turn = OnThread(loop_turns.slots)
    async with anyio.create_task_group() as tg:
        tg.start_soon(loop_turns.run, ("BR", "confirm"), turn)
        try:
            await anyio.to_thread.run_sync(turn.started.wait, 10)
            yield turn
        finally:
            turn.finish.set()


async def test_a_turn_for_the_loop_lets_the_turns_on_threads_finish_first(loop_turns,
                                                                          monkeypatch):
    monkeypatch.setattr(turns, "THREADS_FIRST_S", 30.0)  # no slow machine runs past it
    work = Work()
    async with a_turn_on_a_thread(loop_turns) as other, anyio.create_task_group() as tg:
        waiting_turn = anyio.Event()

        async def run() -> None:
            waiting_turn.set()
            await loop_turns.run(("BR", "text"), work)

        tg.start_soon(run)
        await waiting_turn.wait()
        await anyio.sleep(0.05)
        assert work.runs == []  # still waiting for the thread's turn
        other.finish.set()
    assert work.runs == ["loop"]


async def test_past_a_while_a_turn_for_the_loop_goes_to_a_thread(loop_turns, monkeypatch):
    monkeypatch.setattr(turns, "THREADS_FIRST_S", 0.05)
    async with a_turn_on_a_thread(loop_turns) as other:
        work = Work()
        await loop_turns.run(("BR", "text"), work)
        assert work.runs == ["thread"]
        assert not other.finish.is_set()


async def test_a_turn_for_the_loop_waits_no_longer_once_a_thread_calls_out(loop_turns,
                                                                           monkeypatch):
    monkeypatch.setattr(turns, "THREADS_FIRST_S", 30.0)  # only the call may end the wait
    async with a_turn_on_a_thread(loop_turns) as other, anyio.create_task_group() as tg:
        work = Work()
        done = anyio.Event()

        async def run() -> None:
            await loop_turns.run(("BR", "text"), work)
            done.set()

        tg.start_soon(run)
        await anyio.sleep(0.02)
        other.call.set()  # it may hold locks the turn would wait for, for seconds
        with anyio.fail_after(5):
            await done.wait()
        assert work.runs == ["thread"]
        assert other.calling.is_set() and not other.finish.is_set()


async def test_a_turn_for_the_loop_lets_other_work_on_threads_finish_first(loop_turns,
                                                                            monkeypatch):
    monkeypatch.setattr(turns, "THREADS_FIRST_S", 30.0)
    # A payment provider's webhook, applied on a thread.
    started, finish = threading.Event(), threading.Event()
    order: list[str] = []

    def webhook() -> None:
        started.set()
        finish.wait(10)
        order.append("webhook")

    work = Work()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(loop_turns.on_thread, webhook)
            await anyio.to_thread.run_sync(started.wait, 10)

            async def turn() -> None:
                await loop_turns.run(("BR", "text"), work)
                order.append("turn")

            tg.start_soon(turn)
            await anyio.sleep(0.02)
            finish.set()
    finally:
        finish.set()
    assert order == ["webhook", "turn"]
    assert work.runs == ["loop"]


async def test_a_turn_on_the_loop_waits_for_sqlites_write_lock_only_briefly(tmp_path,
                                                                            loop_turns):
    engine = make_engine(f"sqlite:///{tmp_path}/t.db")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    holding, release, on_thread = threading.Event(), threading.Event(), threading.Event()

    def import_holding_the_lock() -> None:  # a feed import: one long transaction
        with engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO t VALUES (1)")
            holding.set()
            release.wait(10)

    loop_thread = threading.current_thread()
    runs: list[str] = []

    def turn() -> str:
        runs.append("loop" if threading.current_thread() is loop_thread else "thread")
        if runs[-1] == "thread":
            on_thread.set()
        with session_scope(engine) as session:  # waits the usual time for the lock here
            session.execute(text("INSERT INTO t VALUES (2)"))
        return "written"

    importer = threading.Thread(target=import_holding_the_lock)
    importer.start()
    try:
        assert holding.wait(10)
        with anyio.fail_after(5):  # the loop waiting SQLite's usual 30 s would fail this
            async with anyio.create_task_group() as tg:
                result: list[str] = []

                async def run() -> None:
                    result.append(await loop_turns.run(("BR", "text"), turn))

                tg.start_soon(run)
                await anyio.to_thread.run_sync(on_thread.wait, 10)
                release.set()  # the import commits while the thread's try waits for it
        assert result == ["written"] and runs == ["loop", "thread"]
    finally:
        release.set()
        importer.join(10)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT x FROM t ORDER BY x").scalars().all() == [1, 2]
        # The connection the loop used waits the usual time again.
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
