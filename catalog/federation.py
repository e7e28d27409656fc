"""Live merchants queried in parallel inside one deadline, behind a circuit breaker and a cache.

Merchants whose catalogs live in Vitrine (feeds, pushed products) are searched in the local
index; merchants reached live (their own UCP MCP server) are asked here, all at once. The
answer is partial rather than late: whoever has not answered when the deadline passes is
left out and named, a merchant that keeps failing is not called for a while, and a repeated
question within a short time is answered from the cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar

import anyio
from pydantic import TypeAdapter, ValidationError

from adapters.base import AdapterResult, CatalogAdapter, CatalogQuery
from adapters.product import Product
from core.errors import AdapterError, AdapterTimeout
from core.shared_state import Circuit, Claim, LocalState, SharedState

log = logging.getLogger(__name__)
T = TypeVar("T")


class BreakerState(StrEnum):
    CLOSED = "closed"  # calls flow
    OPEN = "open"  # failing: no calls until the cool-down ends
    HALF_OPEN = "half_open"  # one probe call decides


class CircuitBreaker:
    """Stops calling a merchant after consecutive failures; probes again after a cool-down.

    Its circuits live in the shared state: with Redis, a merchant one process found failing
    is skipped by every process, and one probe (a claim) goes out for all of them. Times are
    then wall-clock seconds, which every process reads alike; in one process, monotonic.
    """

    def __init__(self, *, failures_to_open: int = 3, cooldown_s: float = 30.0,
                 clock: Callable[[], float] | None = None,
                 store: SharedState | None = None) -> None:
        self.failures_to_open = failures_to_open
        self.cooldown_s = cooldown_s
        self.store: SharedState = store or LocalState()
        self.clock = clock or (time.time if self.store.shared else time.monotonic)
        # Merchants whose circuit this process last read closed with no failure: their
        # success has nothing to reset, which spares two writes to Redis per healthy call.
        # (A failure another process counted meanwhile is then reset by its next success.)
        self._healthy: set[str] = set()

    def _state_of(self, circuit: Circuit) -> BreakerState:
        if circuit.opened_at is None:
            return BreakerState.CLOSED
        if self.clock() - circuit.opened_at >= self.cooldown_s:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def state(self, merchant: str) -> BreakerState:
        """The merchant's circuit now."""
        circuit = self.store.circuit(merchant)
        if circuit == Circuit():
            self._healthy.add(merchant)
        else:
            self._healthy.discard(merchant)
        return self._state_of(circuit)

    def allow(self, merchant: str) -> bool:
        """Whether to call the merchant now (at most one probe while half-open)."""
        state = self.state(merchant)
        if state == BreakerState.HALF_OPEN:
            # A probe that never reports (its process died) frees the way after a cool-down.
            return self.store.claim(PROBE + merchant, hold_s=self.cooldown_s) == Claim.FIRST
        return state == BreakerState.CLOSED

    def record(self, merchant: str, *, ok: bool) -> None:
        """A call's result: success closes the circuit, a failure counts towards opening
        it (and opens it again after a failed probe)."""
        if ok:
            if merchant in self._healthy:
                return  # closed with no failure, and no probe claimed by this call
            self.store.circuit_closed(merchant)
        else:
            self._healthy.discard(merchant)
            self.store.circuit_failed(merchant, at=self.clock(),
                                      failures_to_open=self.failures_to_open)
        self.store.release(PROBE + merchant)


PROBE = "probe:"  # the shared-state claim of a half-open circuit's one probe


@dataclass
class _Cached:
    """A cached answer as stored: when (on the cache's clock), and what."""

    stored_at: float
    result: AdapterResult


_CACHED = TypeAdapter(_Cached)


class ResultCache:
    """A small time-bounded cache of live answers, keyed by merchant and query.

    Answers are kept in the shared state as JSON (so processes sharing Redis share them);
    the time each was stored goes with it, so an answer older than `ttl_s` on the cache's
    clock is a miss whatever the store still holds.
    """

    def __init__(self, *, ttl_s: float = 60.0, max_entries: int = 2000,
                 clock: Callable[[], float] | None = None,
                 store: SharedState | None = None) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.store: SharedState = store or LocalState(max_values=max_entries)
        self.clock = clock or (time.time if self.store.shared else time.monotonic)
        # The answers this process last read or wrote, by name, with the bytes they came
        # from: the same bytes are not parsed again (a hit then costs a comparison).
        self._read: OrderedDict[str, tuple[bytes, _Cached]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(merchant: str, query: CatalogQuery) -> tuple:
        ctx = query.context
        return (merchant, query.text.casefold().strip(), ctx.country, ctx.language, ctx.currency,
                query.categories, query.price_min, query.price_max, query.limit)

    @staticmethod
    def _name(key: tuple) -> str:
        digest = hashlib.sha256(json.dumps(key, default=str).encode("utf-8")).hexdigest()
        return f"live:{key[0]}:{digest[:32]}"

    def get(self, key: tuple) -> AdapterResult | None:
        """The answer cached under `key`, or None when absent or older than `ttl_s`."""
        name = self._name(key)
        raw = self.store.get(name)
        if raw is None:
            return None
        with self._lock:
            known = self._read.get(name)
        if known is not None and known[0] == raw:
            cached = known[1]
        else:
            try:
                cached = _CACHED.validate_json(raw)
            except ValidationError:  # written by another version: asked again
                log.warning("cached answer of %s unreadable; asking the merchant", key[0])
                return None
            self._remember(name, raw, cached)
        if self.clock() - cached.stored_at > self.ttl_s:
            return None
        return cached.result

    def put(self, key: tuple, result: AdapterResult) -> None:
        """Keep a live answer for `ttl_s`."""
        if self.ttl_s <= 0:
            return
        name, cached = self._name(key), _Cached(self.clock(), result)
        raw = _CACHED.dump_json(cached)
        self.store.put(name, raw, ttl_s=self.ttl_s)
        self._remember(name, raw, cached)

    def _remember(self, name: str, raw: bytes, cached: _Cached) -> None:
        with self._lock:
            self._read[name] = (raw, cached)
            self._read.move_to_end(name)
            while len(self._read) > self.max_entries:
                self._read.popitem(last=False)


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
        # Redis is asked over the network: off the event loop, which serves every search.
        self._remote = self.cache.store.shared or self.breaker.store.shared

    async def _io(self, func: Callable[[], T]) -> T:
        """Run the cache's and the breaker's bookkeeping: in a worker thread when it goes to
        Redis, inline when it stays in memory (a thread would only add latency)."""
        if self._remote:
            return await anyio.to_thread.run_sync(func)
        return func()

    async def search(self, adapters: Sequence[CatalogAdapter], query: CatalogQuery
                     ) -> list[LiveAnswer]:
        """One answer per adapter, in the adapters' order, within the total deadline."""
        deadline = time.monotonic() + self.total_deadline_s
        answers = [LiveAnswer(merchant=a.merchant) for a in adapters]

        async def ask(adapter: CatalogAdapter, answer: LiveAnswer) -> None:
            key = self.cache.key(adapter.merchant, query)

            def look() -> tuple[AdapterResult | None, bool]:
                cached = self.cache.get(key)
                return cached, cached is None and self.breaker.allow(adapter.merchant)

            cached, allowed = await self._io(look)
            if cached is not None:
                answer.products, answer.dropped = cached.products, cached.dropped
                answer.ok = answer.cached = True
                return
            if not allowed:
                answer.skipped, answer.error = True, "circuit open"
                return
            own_deadline = min(deadline, time.monotonic() + self.per_merchant_s)
            started = time.monotonic()
            result: AdapterResult | None = None
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
            answer.latency_ms = (time.monotonic() - started) * 1000

            def remember() -> None:
                if result is not None:
                    self.cache.put(key, result)
                self.breaker.record(adapter.merchant, ok=answer.ok)

            await self._io(remember)

        async with anyio.create_task_group() as group:
            for adapter, answer in zip(adapters, answers, strict=True):
                group.start_soon(ask, adapter, answer)
        return answers
