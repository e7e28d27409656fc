"""The shared state's two implementations behave alike (each test runs on both), Redis is
shared by separate state objects as by separate processes, and Redis going away or hanging
leaves every call answered by the process's own state."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterator

import pytest
import redis

from core.redis_state import RedisState
from core.shared_state import (
    Circuit,
    Claim,
    LocalState,
    SharedState,
    build_shared_state,
    once,
)
from tests.loopback import free_port
from tests.redis_server import RedisServer, redis_server_fixture, redis_url_fixture  # noqa: F401

PREFIX = "test:"


@pytest.fixture(params=["local", "redis"])
def make_state(request: pytest.FixtureRequest) -> Iterator[Callable[[], SharedState]]:
    """Builds states of one kind: each RedisState is a process of its own on one Redis."""
    made: list[SharedState] = []

    def make() -> SharedState:
        if request.param == "local":
            state: SharedState = LocalState()
        else:
            state = RedisState.from_url(request.getfixturevalue("redis_url"), prefix=PREFIX)
        made.append(state)
        return state

    yield make
    for state in made:
        state.close()


# The behaviour both implementations promise.

def test_an_id_is_claimed_once_then_in_flight_then_done(make_state):
    state = make_state()
    assert state.claim("once:tg:1") == Claim.FIRST
    assert state.claim("once:tg:1") == Claim.IN_FLIGHT
    state.finish("once:tg:1")
    assert state.claim("once:tg:1") == Claim.DONE
    assert state.claim("once:tg:2") == Claim.FIRST


def test_a_released_claim_can_be_claimed_again_but_a_finished_one_stays_done(make_state):
    state = make_state()
    assert state.claim("once:pay:1") == Claim.FIRST
    state.release("once:pay:1")
    assert state.claim("once:pay:1") == Claim.FIRST
    state.finish("once:pay:1")
    state.release("once:pay:1")
    assert state.claim("once:pay:1") == Claim.DONE


def test_hits_past_the_limit_are_refused_until_the_window_ends(make_state):
    state = make_state()
    allowances = [state.hit("rate:web:ana", limit=3, window_s=60) for _ in range(5)]
    assert [a.allowed for a in allowances] == [True, True, True, False, False]
    assert [a.count for a in allowances] == [1, 2, 3, 4, 5]
    assert 0 < allowances[-1].retry_after_s <= 60
    assert state.hit("rate:web:bia", limit=3, window_s=60).allowed  # counted apart


def test_values_are_kept_for_their_time_to_live(make_state):
    state = make_state()
    assert state.get("live:a") is None
    state.put("live:a", b'{"products": []}', ttl_s=60)
    assert state.get("live:a") == b'{"products": []}'
    state.put("live:b", b"x", ttl_s=0)  # nothing to keep
    assert state.get("live:b") is None


def test_a_circuit_opens_at_its_threshold_reopens_while_open_and_closes(make_state):
    state = make_state()
    assert state.circuit("shop") == Circuit()
    assert state.circuit_failed("shop", at=10.0, failures_to_open=2) == Circuit(1, None)
    assert state.circuit_failed("shop", at=11.5, failures_to_open=2) == Circuit(2, 11.5)
    assert state.circuit_failed("shop", at=50.25, failures_to_open=2) == Circuit(3, 50.25)
    assert state.circuit("shop") == Circuit(3, 50.25)
    state.circuit_closed("shop")
    assert state.circuit("shop") == Circuit()


def test_an_id_recorded_durably_is_claimed_and_finished_or_released(make_state):
    state = make_state()
    rows: set[str] = set()

    def record(key: str) -> Callable[[], bool]:
        def write() -> bool:
            first = key not in rows
            rows.add(key)
            return first
        return write

    assert once(state, "once:wa:m1", record("m1")) == Claim.FIRST
    assert once(state, "once:wa:m1", record("m1")) == Claim.DONE  # the state answers
    rows.add("m2")  # recorded by someone the state never heard of
    assert once(state, "once:wa:m2", record("m2")) == Claim.DONE  # the row answers

    def fails() -> bool:
        raise RuntimeError("database away")

    with pytest.raises(RuntimeError):
        once(state, "once:wa:m3", fails)
    assert once(state, "once:wa:m3", record("m3")) == Claim.FIRST  # delivered again: applied


def test_the_local_state_forgets_claims_and_counts_when_their_time_is_up():
    now = [0.0]
    state = LocalState(clock=lambda: now[0])
    assert state.claim("once:tg:1", hold_s=30) == Claim.FIRST
    assert state.hit("rate:tg:1", limit=1, window_s=60).allowed
    assert not state.hit("rate:tg:1", limit=1, window_s=60).allowed
    now[0] = 61.0
    assert state.claim("once:tg:1") == Claim.FIRST  # its claimer died: claimable again
    assert state.hit("rate:tg:1", limit=1, window_s=60).allowed  # a new window


def test_the_local_state_stays_bounded():
    state = LocalState(max_entries=3, max_values=2)
    for n in range(10):
        state.claim(f"once:{n}")
        state.put(f"live:{n}", b"v", ttl_s=60)
    assert state.claim("once:9") == Claim.IN_FLIGHT and state.claim("once:0") == Claim.FIRST
    assert state.get("live:9") == b"v" and state.get("live:0") is None


# Redis: one state per process, all seeing the same.

def test_redis_is_chosen_by_its_url_and_keeps_keys_under_its_prefix_with_expiry(redis_url):
    assert isinstance(build_shared_state(None), LocalState)
    state = build_shared_state(redis_url)
    try:
        assert isinstance(state, RedisState)
        state.claim("once:tg:7")
        state.hit("rate:tg:7", limit=20, window_s=60)
        raw = redis.Redis.from_url(redis_url)
        assert 0 < raw.pttl("vitrine:once:tg:7") <= 60_000
        assert 0 < raw.pttl("vitrine:rate:tg:7") <= 60_000
        state.finish("once:tg:7")
        assert 60_000 < raw.pttl("vitrine:once:tg:7") <= 24 * 3600 * 1000
        raw.close()
    finally:
        state.close()


def test_two_processes_share_claims_counts_values_and_circuits(redis_url):
    one, other = (RedisState.from_url(redis_url, prefix=PREFIX) for _ in range(2))
    try:
        assert one.claim("once:wa:x") == Claim.FIRST
        assert other.claim("once:wa:x") == Claim.IN_FLIGHT
        one.finish("once:wa:x")
        assert other.claim("once:wa:x") == Claim.DONE
        assert [s.hit("rate:wa:1", limit=3, window_s=60).allowed
                for s in (one, other, one, other)] == [True, True, True, False]
        one.put("live:q", b"answer", ttl_s=60)
        assert other.get("live:q") == b"answer"
        one.circuit_failed("shop", at=100.0, failures_to_open=1)
        assert other.circuit("shop") == Circuit(1, 100.0)
    finally:
        one.close()
        other.close()


# Redis away: the process's own state answers, with one warning.

def test_an_unreachable_redis_leaves_each_call_to_the_process_and_warns_once(caplog):
    state = RedisState.from_url(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.2)
    try:
        with caplog.at_level(logging.WARNING, logger="core.redis_state"):
            assert state.claim("once:tg:1") == Claim.FIRST  # the database row still guards
            assert state.claim("once:tg:1") == Claim.IN_FLIGHT  # within this process
            assert [state.hit("rate:x", limit=1, window_s=60).allowed for _ in range(2)] == \
                [True, False]
            assert state.get("live:q") is None
            state.put("live:q", b"v", ttl_s=60)
            assert state.get("live:q") == b"v"
            assert state.circuit_failed("shop", at=1.0, failures_to_open=1).opened_at == 1.0
            assert state.circuit("shop").opened_at == 1.0
        assert len([r for r in caplog.records if "redis unreachable" in r.message]) == 1
    finally:
        state.close()


def test_a_redis_that_accepts_but_never_answers_times_out_to_the_process():
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        port = silent.getsockname()[1]
        state = RedisState.from_url(f"redis://127.0.0.1:{port}/0", timeout_s=0.1)
        try:
            assert state.claim("once:tg:1") == Claim.FIRST
            assert state.hit("rate:x", limit=5, window_s=60).allowed
        finally:
            state.close()


@pytest.mark.skipif(not RedisServer.available(), reason="needs the redis-server binary")
def test_redis_going_away_and_coming_back_is_used_again_after_the_pause():
    now = [0.0]
    server = RedisServer().start()
    try:
        client = redis.Redis.from_url(server.url, socket_timeout=0.5,
                                      socket_connect_timeout=0.5)
        state = RedisState(client, prefix=PREFIX, pause_s=5, clock=lambda: now[0])
        state.put("live:q", b"shared", ttl_s=60)
        server.stop()
        assert state.get("live:q") is None  # away: the process's own state, empty
        server.start()
        assert state.get("live:q") is None  # within the pause Redis is not asked
        state.put("live:r", b"mine", ttl_s=60)  # kept by the process meanwhile
        now[0] = 6.0
        state.put("live:q", b"again", ttl_s=60)
        assert client.get(PREFIX + "live:q") == b"again"  # in Redis once more
        state.close()
    finally:
        server.remove()
