"""Fan-out to live merchants: deadline, circuit breaker, cache.

The adapters here are small implementations of the `CatalogAdapter` protocol; the real UCP
MCP client against a real MCP server is tested in tests/adapters/test_ucp_mcp.py.
"""

import anyio
import pytest

from adapters.base import AdapterHealth, AdapterResult, CatalogQuery, ShopperContext
from adapters.product import Product
from catalog.federation import BreakerState, CircuitBreaker, Federation, ResultCache
from core.errors import AdapterError
from tests.factories import ucp_product

pytestmark = pytest.mark.anyio

QUERY = CatalogQuery(text="regador", context=ShopperContext("BR", "pt", "BRL", "regador"))


class Shop:
    def __init__(self, merchant: str, *, hang: bool = False, fail: bool = False) -> None:
        self.merchant, self.hang, self.fail, self.calls = merchant, hang, fail, 0

    async def search(self, query, *, deadline):
        self.calls += 1
        if self.hang:
            await anyio.sleep_forever()  # ignores its deadline on purpose
        if self.fail:
            raise AdapterError("HTTP 500", merchant=self.merchant)
        return AdapterResult(products=[Product.model_validate(ucp_product(f"{self.merchant}-1"))])

    async def lookup(self, ids, *, context, deadline):
        return AdapterResult()

    async def health(self, *, deadline):
        return AdapterHealth(reachable=True)


async def test_a_hanging_merchant_does_not_delay_the_others_past_the_deadline():
    shops = [Shop(f"m{i}") for i in range(9)] + [Shop("slow", hang=True)]
    federation = Federation(total_deadline_s=0.3, per_merchant_s=0.3)
    answers = await federation.search(shops, QUERY)  # returns at all: the hang was cut off
    assert [a.ok for a in answers] == [True] * 9 + [False]
    assert answers[-1].error == "timed out"
    assert sum(len(a.products) for a in answers) == 9


async def test_a_failing_merchant_is_reported_with_its_reason():
    [answer] = await Federation().search([Shop("bad", fail=True)], QUERY)
    assert not answer.ok and answer.error == "HTTP 500"


async def test_the_breaker_stops_calling_a_failing_merchant_and_probes_later():
    now = [0.0]
    breaker = CircuitBreaker(failures_to_open=2, cooldown_s=10, clock=lambda: now[0])
    federation = Federation(breaker=breaker, cache=ResultCache(ttl_s=0))
    shop = Shop("flaky", fail=True)
    for _ in range(2):
        await federation.search([shop], QUERY)
    assert breaker.state("flaky") == BreakerState.OPEN
    [skipped] = await federation.search([shop], QUERY)
    assert skipped.skipped and shop.calls == 2
    now[0] = 11.0
    assert breaker.state("flaky") == BreakerState.HALF_OPEN
    shop.fail = False
    [probe] = await federation.search([shop], QUERY)
    assert probe.ok and shop.calls == 3 and breaker.state("flaky") == BreakerState.CLOSED


async def test_a_failed_probe_opens_the_circuit_again():
    now = [0.0]
    breaker = CircuitBreaker(failures_to_open=1, cooldown_s=5, clock=lambda: now[0])
    breaker.record("m", ok=False)
    now[0] = 6.0
    assert breaker.allow("m") and not breaker.allow("m")  # a single probe
    breaker.record("m", ok=False)
    assert breaker.state("m") == BreakerState.OPEN


async def test_a_repeated_query_is_answered_from_the_cache_until_it_expires():
    now = [0.0]
    federation = Federation(cache=ResultCache(ttl_s=60, clock=lambda: now[0]))
    shop = Shop("m")
    await federation.search([shop], QUERY)
    [again] = await federation.search([shop], QUERY)
    assert again.cached and shop.calls == 1
    now[0] = 61.0
    await federation.search([shop], QUERY)
    assert shop.calls == 2
