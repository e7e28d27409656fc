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


def test_a_turn_that_wrote_goes_on_at_once_after_waiting_even_past_the_limit(tmp_path):
    engine = _with_a_table(tmp_path)
    slots = TurnSlots(1, in_flight=2)
    other_has_it, other_may_go = threading.Event(), threading.Event()

    def other_turn() -> None:
        with slots.turn():
            other_has_it.set()
            other_may_go.wait(10)

    with ThreadPoolExecutor(1) as pool, slots.turn(), Session(engine) as session:
        working_in(session)
        session.execute(text("INSERT INTO t VALUES (1)"))
        with waiting():
            assert slots.free == 1
            other = pool.submit(other_turn)
            assert other_has_it.wait(10)
        # Back without a slot: the other turn keeps the only one.
        assert slots.free == 0 and not other.done()
        session.commit()
        other_may_go.set()
        other.result(timeout=10)
        assert slots.free == 1
    assert slots.free == 1  # the turn gave back no slot it did not hold


def test_a_turn_holding_the_write_lock_and_one_waiting_for_it_both_finish(tmp_path):
    # One slot. The first turn writes, then waits on a provider; the second takes the slot
    # and waits for SQLite's write lock. Back from the provider, the first must commit
    # without waiting for the slot the second holds, or neither would ever finish.
    engine = _with_a_table(tmp_path)
    slots = TurnSlots(1, in_flight=2)
    second_started = threading.Event()

    def writing_turn(value: int, provider_call: bool) -> int:
        with slots.turn(), Session(engine) as session:
            working_in(session)
            if not provider_call:
                second_started.set()
            session.execute(text("INSERT INTO t VALUES (:x)"), {"x": value})
            if provider_call:
                with waiting():
                    assert second_started.wait(10)
                    time.sleep(0.2)  # the second is blocked on the write lock by now
            session.commit()
        return value

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(writing_turn, 1, True)
        second = pool.submit(writing_turn, 2, False)
        assert (first.result(timeout=20), second.result(timeout=20)) == (1, 2)
    assert slots.free == 1


def _with_a_table(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/t.db")
    with Session(engine) as session:
        session.execute(text("CREATE TABLE t (x INTEGER)"))
        session.commit()
    return engine


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


def test_a_turn_waiting_on_the_payment_provider_lets_others_work(demo_runtime, monkeypatch):
    bot = demo_runtime.assistant
    card = next(c for m in bot.handle(user_key="web:ana", text="presente para minha mãe",
                                      market="BR").messages for c in m.cards)
    confirm = bot.handle(user_key="web:ana", action=f"buy:{card.ref}").messages[0].buttons[0]
    rail = bot.rails["pix"]
    free_during_call = []
    initiate = rail.initiate

    def slow_provider(order, *, txid):
        free_during_call.append(bot.turns.free)
        return initiate(order, txid=txid)

    monkeypatch.setattr(rail, "initiate", slow_provider)
    reply = bot.handle(user_key="web:ana", action=confirm.action)
    assert "Pix" in " ".join(m.text for m in reply.messages)
    assert free_during_call == [bot.turns.size]
    assert bot.turns.free == bot.turns.size
