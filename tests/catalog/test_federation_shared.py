"""The live merchants' cache and circuit breaker kept in the shared state: the same
behaviour in one process and in Redis, and with Redis, what one process learnt about a
merchant is what every process knows.

Two `Federation`s, each with a `RedisState` of its own on one Redis, stand for two API
processes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from adapters.base import AdapterResult
from adapters.product import Product
from catalog.federation import BreakerState, CircuitBreaker, Federation, ResultCache
from core.redis_state import RedisState
from core.shared_state import LocalState, SharedState
from tests.catalog.test_federation import QUERY, Shop
from tests.factories import ucp_product
from tests.redis_server import redis_server_fixture, redis_url_fixture  # noqa: F401

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["local", "redis"])
def make_store(request: pytest.FixtureRequest) -> Iterator[Callable[[], SharedState]]:
    """Builds stores of one kind; with Redis, each is another process on the same server."""
    made: list[SharedState] = []

    def make() -> SharedState:
        store: SharedState = LocalState() if request.param == "local" else \
            RedisState.from_url(request.getfixturevalue("redis_url"))
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


@pytest.fixture
def redis_stores(redis_url: str) -> Iterator[tuple[RedisState, RedisState]]:
    """Two processes' stores on one Redis."""
    stores = RedisState.from_url(redis_url), RedisState.from_url(redis_url)
    yield stores
    for store in stores:
        store.close()


def federation(store: SharedState, *, clock: Callable[[], float] | None = None,
               failures_to_open: int = 2, cache_s: float = 60) -> Federation:
    return Federation(
        breaker=CircuitBreaker(failures_to_open=failures_to_open, cooldown_s=10, clock=clock,
                               store=store),
        cache=ResultCache(ttl_s=cache_s, clock=clock, store=store))


# The same behaviour on either store.

async def test_a_cached_answer_comes_back_whole_until_it_expires(make_store):
    now = [1000.0]
    cache = ResultCache(ttl_s=60, clock=lambda: now[0], store=make_store())
    product = Product.model_validate(ucp_product("P-9", tags=["a", "b"], rating=4.0))
    result = AdapterResult(products=[product], dropped=2, messages=["P-3 not found"])
    key = cache.key("shop", QUERY)
    cache.put(key, result)
    assert cache.get(key) == result
    now[0] += 61
    assert cache.get(key) is None


async def test_the_breaker_opens_skips_probes_once_and_closes(make_store):
    now = [1000.0]
    fed = federation(make_store(), clock=lambda: now[0], cache_s=0)
    shop = Shop("flaky", fail=True)
    for _ in range(2):
        await fed.search([shop], QUERY)
    assert fed.breaker.state("flaky") == BreakerState.OPEN
    [skipped] = await fed.search([shop], QUERY)
    assert skipped.skipped and shop.calls == 2
    now[0] += 11
    assert fed.breaker.allow("flaky") and not fed.breaker.allow("flaky")  # one probe
    fed.breaker.record("flaky", ok=False)
    assert fed.breaker.state("flaky") == BreakerState.OPEN  # the probe failed
    now[0] += 11
    shop.fail = False
    [probe] = await fed.search([shop], QUERY)
    assert probe.ok and fed.breaker.state("flaky") == BreakerState.CLOSED


async def test_an_unreadable_cached_answer_is_a_miss(make_store):
    store = make_store()
    cache = ResultCache(ttl_s=60, store=store)
    key = cache.key("shop", QUERY)
    store.put(cache._name(key), b'{"not": "an answer"}', ttl_s=60)
    assert cache.get(key) is None


# Redis: two processes.

async def test_one_processs_answer_is_served_from_the_cache_in_another(redis_stores):
    one, other = (federation(store) for store in redis_stores)
    shop = Shop("m")
    [first] = await one.search([shop], QUERY)
    [again] = await other.search([shop], QUERY)
    assert first.ok and not first.cached
    assert again.cached and again.products == first.products and shop.calls == 1


async def test_a_circuit_one_process_opened_is_open_in_another(redis_stores):
    one, other = (federation(store, failures_to_open=2, cache_s=0) for store in redis_stores)
    shop = Shop("flaky", fail=True)
    await one.search([shop], QUERY)
    await other.search([shop], QUERY)  # consecutive failures add up across processes
    assert one.breaker.state("flaky") == BreakerState.OPEN
    [skipped] = await other.search([shop], QUERY)
    assert skipped.skipped and shop.calls == 2


async def test_only_one_process_probes_a_half_open_circuit(redis_stores):
    now = [1000.0]
    one, other = (federation(store, clock=lambda: now[0], failures_to_open=1, cache_s=0)
                  for store in redis_stores)
    one.breaker.record("m", ok=False)
    now[0] += 11
    assert other.breaker.state("m") == BreakerState.HALF_OPEN
    assert one.breaker.allow("m") and not other.breaker.allow("m")
    one.breaker.record("m", ok=True)
    assert other.breaker.state("m") == BreakerState.CLOSED and other.breaker.allow("m")


async def test_with_redis_the_breaker_reads_the_wall_clock():
    store = RedisState.from_url("redis://127.0.0.1:1/0")  # never contacted here
    try:
        assert CircuitBreaker(store=store).clock.__name__ == "time"
        assert CircuitBreaker().clock.__name__ == "monotonic"
    finally:
        store.close()
