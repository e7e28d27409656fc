"""A process works on a few turns at once; a turn waiting on an outside service lets
another work meanwhile, unless it holds locks others may be waiting on."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from sqlalchemy import create_engine, text
from sqlmodel import Session

from core.db import make_engine
from core.turns import TurnSlots, pool_capacity, waiting, watch_writes, working_in
from tests.bot.test_llm_conversion_log import with_llm
from tests.fake_llm_server import FakeLlm, completion, understanding
from vitrine.runtime import build_runtime, seed_demo


def test_a_turn_waiting_before_it_wrote_gives_its_slot_back_meanwhile(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/t.db")
    slots = TurnSlots(1)
    with slots.turn(), Session(engine) as session:
        working_in(session)
        session.execute(text("SELECT 1"))  # reading takes no lock
        with waiting():
            assert slots.free == 1
        assert slots.free == 0
    assert slots.free == 1


def test_a_turn_that_wrote_keeps_its_slot_while_it_waits(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/t.db")
    with Session(engine) as session:
        session.execute(text("CREATE TABLE t (x INTEGER)"))
        session.commit()
    slots = TurnSlots(1)
    with slots.turn(), Session(engine) as session:
        working_in(session)
        session.execute(text("INSERT INTO t VALUES (1)"))
        with waiting():
            assert slots.free == 0  # another turn could wait on SQLite's write lock
        session.commit()
        # A new transaction has written nothing yet.
        session.execute(text("SELECT x FROM t"))
        with waiting():
            assert slots.free == 1


def test_waiting_outside_a_turn_changes_nothing():
    slots = TurnSlots(2)
    with waiting():
        assert slots.free == 2


def test_turns_waiting_on_the_language_model_do_not_hold_the_process(settings):
    # One turn at a time, and two shoppers whose requests go to the model: both must reach
    # it together (the barrier needs both), which they cannot if a waiting turn kept its slot.
    both_asking = threading.Barrier(2, timeout=10)

    def answer(request: httpx.Request) -> httpx.Response:
        both_asking.wait()
        return httpx.Response(200, json=completion(understanding(product_types=["mug"])))

    fake = FakeLlm(default=answer)
    runtime = build_runtime(with_llm(settings, turn_concurrency=1), llm_http=fake.client())
    try:
        seed_demo(runtime)
        with ThreadPoolExecutor(2) as pool:
            replies = list(pool.map(lambda user: runtime.assistant.handle(
                user_key=user, text="uma caneca para o meu pai", market="BR"),
                ["web:a", "web:b"]))
        assert len(fake.requests) == 2
        assert all(reply.messages for reply in replies)
        assert runtime.assistant.turns.free == 1
    finally:
        runtime.close()


def test_turns_waiting_with_their_connections_never_starve_a_working_turn(tmp_path):
    # Two connections. Two turns wait on an outside service with theirs; a third must not
    # take the free slot and then wait for a connection the waiting two keep while they
    # wait for that slot (each side would wait for the other until the pool timed out).
    engine = create_engine(f"sqlite:///{tmp_path}/t.db", pool_size=2, max_overflow=0,
                           pool_timeout=5)
    watch_writes(engine)
    slots = TurnSlots(1, in_flight=pool_capacity(engine))
    both_waiting = threading.Barrier(2, timeout=10)
    waited = threading.Event()

    def waiting_turn() -> str:
        with slots.turn(), Session(engine) as session:
            working_in(session)
            session.execute(text("SELECT 1"))
            with waiting():
                both_waiting.wait()
                waited.set()
                time.sleep(0.1)  # the third turn arrives meanwhile
            session.execute(text("SELECT 2"))
        return "ok"

    def third_turn() -> str:
        waited.wait(10)
        with slots.turn(), Session(engine) as session:
            session.execute(text("SELECT 3"))
        return "ok"

    with ThreadPoolExecutor(3) as pool:
        results = [pool.submit(waiting_turn), pool.submit(waiting_turn),
                   pool.submit(third_turn)]
        assert [r.result(timeout=30) for r in results] == ["ok", "ok", "ok"]
    assert pool_capacity(engine) == 2
