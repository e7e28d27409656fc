"""Live merchants queried in parallel inside one deadline, behind a circuit breaker and a cache.

Merchants whose catalogs live in Vitrine (feeds, pushed products) are searched in the local
index; merchants reached live (their own UCP MCP server) are asked here, all at once. The
answer is partial rather than late: whoever has not answered when the deadline passes is
left out and named, a merchant that keeps failing is not called for a while, and a repeated
question within a short time is answered from the cache.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import anyio

from adapters.base import AdapterResult, CatalogAdapter, CatalogQuery
from adapters.product import Product
from core.errors import AdapterError, AdapterTimeout


class BreakerState(StrEnum):
    CLOSED = "closed"  # calls flow
    OPEN = "open"  # failing: no calls until the cool-down ends
    HALF_OPEN = "half_open"  # one probe call decides


@dataclass
class _Circuit:
    failures: int = 0
    opened_at: float | None = None
    probing: bool = False


class CircuitBreaker:
    """Stops calling a merchant after consecutive failures; probes again after a cool-down."""

    def __init__(self, *, failures_to_open: int = 3, cooldown_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.failures_to_open = failures_to_open
        self.cooldown_s = cooldown_s
        self.clock = clock
        self._circuits: dict[str, _Circuit] = {}
        self._lock = threading.Lock()

    def state(self, merchant: str) -> BreakerState:
        circuit = self._circuits.get(merchant)
        if circuit is None or circuit.opened_at is None:
            return BreakerState.CLOSED
        if self.clock() - circuit.opened_at >= self.cooldown_s:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def allow(self, merchant: str) -> bool:
        """Whether to call the merchant now (at most one probe while half-open)."""
        with self._lock:
            state = self.state(merchant)
            if state == BreakerState.CLOSED:
                return True
            if state == BreakerState.HALF_OPEN:
                circuit = self._circuits[merchant]
                if not circuit.probing:
                    circuit.probing = True
                    return True
            return False

    def record(self, merchant: str, *, ok: bool) -> None:
        with self._lock:
            circuit = self._circuits.setdefault(merchant, _Circuit())
            circuit.probing = False
            if ok:
                circuit.failures, circuit.opened_at = 0, None
                return
            circuit.failures += 1
            if circuit.failures >= self.failures_to_open or circuit.opened_at is not None:
                circuit.opened_at = self.clock()


class ResultCache:
    """A small time-bounded cache of live answers, keyed by merchant and query."""

    def __init__(self, *, ttl_s: float = 60.0, max_entries: int = 2000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.clock = clock
        self._entries: OrderedDict[tuple, tuple[float, AdapterResult]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(merchant: str, query: CatalogQuery) -> tuple:
        ctx = query.context
        return (merchant, query.text.casefold().strip(), ctx.country, ctx.language, ctx.currency,
                query.categories, query.price_min, query.price_max, query.limit)

    def get(self, key: tuple) -> AdapterResult | None:
        with self._lock:
            hit = self._entries.get(key)
            if hit is None or self.clock() - hit[0] > self.ttl_s:
                self._entries.pop(key, None)
                return None
            self._entries.move_to_end(key)
            return hit[1]

    def put(self, key: tuple, result: AdapterResult) -> None:
        with self._lock:
            self._entries[key] = (self.clock(), result)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)


@dataclass
class LiveAnswer:
    """What one live merchant gave for one query."""

    merchant: str
    products: list[Product] = field(default_factory=list)
    dropped: int = 0
    ok: bool = False
    skipped: bool = False  # circuit open: not called at all
    cached: bool = False
    latency_ms: float = 0.0
    error: str | None = None


class Federation:
    """Asks every live merchant of a market at once and returns within the deadline."""

    def __init__(self, *, breaker: CircuitBreaker | None = None,
                 cache: ResultCache | None = None, total_deadline_s: float = 1.5,
                 per_merchant_s: float = 1.2) -> None:
        self.breaker = breaker or CircuitBreaker()
        self.cache = cache or ResultCache()
        self.total_deadline_s = total_deadline_s
        self.per_merchant_s = per_merchant_s

    async def search(self, adapters: Sequence[CatalogAdapter], query: CatalogQuery
                     ) -> list[LiveAnswer]:
        """One answer per adapter, in the adapters' order, within the total deadline."""
        deadline = time.monotonic() + self.total_deadline_s
        answers = [LiveAnswer(merchant=a.merchant) for a in adapters]

        async def ask(adapter: CatalogAdapter, answer: LiveAnswer) -> None:
            key = self.cache.key(adapter.merchant, query)
            cached = self.cache.get(key)
            if cached is not None:
                answer.products, answer.dropped = cached.products, cached.dropped
                answer.ok = answer.cached = True
                return
            if not self.breaker.allow(adapter.merchant):
                answer.skipped, answer.error = True, "circuit open"
                return
            own_deadline = min(deadline, time.monotonic() + self.per_merchant_s)
            started = time.monotonic()
            try:
                # The hard stop does not trust the adapter to honour its deadline.
                with anyio.fail_after(max(0.0, own_deadline - time.monotonic())):
                    result = await adapter.search(query, deadline=own_deadline)
            except (TimeoutError, AdapterTimeout):
                answer.error = "timed out"
            except AdapterError as exc:
                answer.error = exc.reason
            except Exception as exc:  # one merchant's bug must not sink the rest
                answer.error = f"unexpected error: {type(exc).__name__}"
            else:
                answer.products, answer.dropped, answer.ok = result.products, result.dropped, True
                self.cache.put(key, result)
            answer.latency_ms = (time.monotonic() - started) * 1000
            self.breaker.record(adapter.merchant, ok=answer.ok)

        async with anyio.create_task_group() as group:
            for adapter, answer in zip(adapters, answers, strict=True):
                group.start_soon(ask, adapter, answer)
        return answers
