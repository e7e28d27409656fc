"""State that every Vitrine process must agree on: webhook de-duplication claims, per-shopper
rate limits, the live merchants' answer cache and their circuit breakers.

Two implementations, registered in `SHARED_STATES` and chosen by `VITRINE_REDIS_URL`:

- `LocalState` keeps it in this process's memory: right for one process. The database
  still refuses every repeated webhook durably; what one process cannot see is another's
  rate counts, cache and open circuits.
- `RedisState` (`core.redis_state`) keeps it in one Redis all processes talk to. Redis is
  a help, never a dependency: when it cannot be reached, the call is answered by the
  process's own `LocalState` (with a warning), and Redis is left alone for a few seconds,
  so that a dead server costs one socket timeout, not one per call.

Keys are logical names (`once:tg:1234`, `rate:web:ana`); `RedisState` puts its prefix in
front. Nothing is pickled: values are bytes the caller serialised (JSON).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, Protocol, TypeVar

T = TypeVar("T")

# A claim not finished within this long is treated as abandoned (its process died): the
# sender's next delivery is then processed. Longer than any webhook takes to apply.
IN_FLIGHT_HOLD_S = 60.0
# How long a processed id is refused without asking the database. Providers redeliver
# within minutes to hours; a later repeat still meets the database row.
DONE_KEEP_S = 24 * 3600.0


class Claim(StrEnum):
    """What claiming an outside party's id (an update, a message, a payment event) found."""

    FIRST = "first"  # nobody had it: process it, then `finish` (or `release` on failure)
    IN_FLIGHT = "in_flight"  # another process is on it now: have the sender deliver again
    DONE = "done"  # processed already: acknowledge without effect


@dataclass(frozen=True)
class Allowance:
    """A rate limit's answer: whether this hit is within the limit, and when the window
    that counts it ends."""

    allowed: bool
    count: int
    retry_after_s: float


@dataclass(frozen=True)
class Circuit:
    """A merchant's circuit as stored: consecutive failures, and when it opened (seconds on
    the breaker's clock; None while closed)."""

    failures: int = 0
    opened_at: float | None = None


class SharedState(Protocol):
    """Small pieces of state that several Vitrine processes read and write together."""

    # Whether other processes see this state; their clocks must then agree (wall time).
    shared: bool

    def claim(self, key: str, *, hold_s: float = IN_FLIGHT_HOLD_S) -> Claim:
        """Claim an id for processing, atomically across every process sharing the state.

        Args:
            key: the id, named by its source (`once:wa:wamid.X`).
            hold_s: how long the claim holds if never finished or released (its process
                died): afterwards the id can be claimed again.

        Returns:
            `FIRST` to the one caller that now holds it; `IN_FLIGHT` while another holds it;
            `DONE` once it was finished.
        """
        ...

    def finish(self, key: str, *, keep_s: float = DONE_KEEP_S) -> None:
        """Mark a claimed id processed: for `keep_s`, claims answer `DONE`."""
        ...

    def release(self, key: str) -> None:
        """Give up a claim whose processing failed, so that the sender's next delivery is
        processed; an id already finished stays finished."""
        ...

    def hit(self, key: str, *, limit: int, window_s: float) -> Allowance:
        """Count one hit in `key`'s fixed window of `window_s` seconds (the window starts
        at its first hit).

        Returns:
            Whether the count, this hit included, is within `limit`, and when the window
            ends. Hits past the limit are counted too.
        """
        ...

    def get(self, key: str) -> bytes | None:
        """The value put under `key`, or None when absent or expired."""
        ...

    def put(self, key: str, value: bytes, *, ttl_s: float) -> None:
        """Keep `value` under `key` for `ttl_s` seconds (it may be evicted sooner)."""
        ...

    def circuit(self, name: str) -> Circuit:
        """A circuit as last recorded; closed with no failures when never recorded."""
        ...

    def circuit_failed(self, name: str, *, at: float, failures_to_open: int) -> Circuit:
        """Count one more consecutive failure, atomically: the circuit opens (`opened_at`
        = `at`) at `failures_to_open`, and an open one is opened again from `at`.

        Returns:
            The circuit after the failure.
        """
        ...

    def circuit_closed(self, name: str) -> None:
        """Close a circuit: a call succeeded, the failures are forgotten."""
        ...

    def close(self) -> None:
        """Release connections; the state is not used afterwards."""
        ...


class _Expiring(Generic[T]):
    """A bounded map whose entries expire; the least recently used go first when full.
    Not thread-safe: its owner holds a lock."""

    def __init__(self, max_entries: int, clock: Callable[[], float]) -> None:
        self.max_entries = max_entries
        self.clock = clock
        self._entries: OrderedDict[str, tuple[T, float]] = OrderedDict()

    def get(self, key: str) -> tuple[T, float] | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[1] <= self.clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry

    def set(self, key: str, value: T, expires_at: float) -> None:
        self._entries[key] = (value, expires_at)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def pop(self, key: str) -> None:
        self._entries.pop(key, None)


class LocalState:
    """Shared state for one process, in memory, thread-safe. Claims, counters and values
    are bounded (least recently used go first): each guards only what is recent, and the
    database guards the rest."""

    shared = False

    def __init__(self, *, max_entries: int = 100_000, max_values: int = 2000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._claims: _Expiring[str] = _Expiring(max_entries, clock)
        self._counters: _Expiring[int] = _Expiring(max_entries, clock)
        self._values: _Expiring[bytes] = _Expiring(max_values, clock)
        self._circuits: dict[str, Circuit] = {}

    def claim(self, key: str, *, hold_s: float = IN_FLIGHT_HOLD_S) -> Claim:
        """See `SharedState.claim`."""
        with self._lock:
            held = self._claims.get(key)
            if held is not None:
                return Claim(held[0])
            self._claims.set(key, Claim.IN_FLIGHT, self.clock() + hold_s)
            return Claim.FIRST

    def finish(self, key: str, *, keep_s: float = DONE_KEEP_S) -> None:
        """See `SharedState.finish`."""
        with self._lock:
            self._claims.set(key, Claim.DONE, self.clock() + keep_s)

    def release(self, key: str) -> None:
        """See `SharedState.release`."""
        with self._lock:
            held = self._claims.get(key)
            if held is not None and held[0] == Claim.IN_FLIGHT:
                self._claims.pop(key)

    def hit(self, key: str, *, limit: int, window_s: float) -> Allowance:
        """See `SharedState.hit`."""
        with self._lock:
            now = self.clock()
            entry = self._counters.get(key)
            count, ends = (entry[0] + 1, entry[1]) if entry else (1, now + window_s)
            self._counters.set(key, count, ends)
        return Allowance(allowed=count <= limit, count=count, retry_after_s=ends - now)

    def get(self, key: str) -> bytes | None:
        """See `SharedState.get`."""
        with self._lock:
            entry = self._values.get(key)
        return entry[0] if entry else None

    def put(self, key: str, value: bytes, *, ttl_s: float) -> None:
        """See `SharedState.put`."""
        if ttl_s <= 0:
            return
        with self._lock:
            self._values.set(key, value, self.clock() + ttl_s)

    def circuit(self, name: str) -> Circuit:
        """See `SharedState.circuit`."""
        with self._lock:
            return self._circuits.get(name, Circuit())

    def circuit_failed(self, name: str, *, at: float, failures_to_open: int) -> Circuit:
        """See `SharedState.circuit_failed`."""
        with self._lock:
            before = self._circuits.get(name, Circuit())
            failures = before.failures + 1
            opens = failures >= failures_to_open or before.opened_at is not None
            after = self._circuits[name] = Circuit(failures, at if opens else None)
            return after

    def circuit_closed(self, name: str) -> None:
        """See `SharedState.circuit_closed`."""
        with self._lock:
            self._circuits.pop(name, None)

    def close(self) -> None:
        """Nothing to release."""


def _redis_state(url: str | None) -> SharedState:
    # Imported here: a deployment without Redis never loads its client.
    from core.redis_state import RedisState

    return RedisState.from_url(url or "redis://localhost:6379/0")


# Implementations by stable name, registered explicitly.
SHARED_STATES: dict[str, Callable[[str | None], SharedState]] = {
    "local": lambda _url: LocalState(),
    "redis": _redis_state,
}


def build_shared_state(redis_url: str | None) -> SharedState:
    """Redis's when a URL is configured, else this process's own."""
    return SHARED_STATES["redis" if redis_url else "local"](redis_url)


def once(state: SharedState | None, key: str, record: Callable[[], bool]) -> Claim:
    """Claim an outside party's id in the shared state, then record it durably with
    `record` (the database row, which returns False when it was there already).

    The claim is finished as soon as the row is written, and released if writing it fails,
    so that a crash between the two leaves the id claimable again after `IN_FLIGHT_HOLD_S`.
    Without a shared state, the row alone decides.
    """
    if state is None:
        return Claim.FIRST if record() else Claim.DONE
    claim = state.claim(key)
    if claim != Claim.FIRST:
        return claim
    try:
        first = record()
    except BaseException:
        state.release(key)
        raise
    state.finish(key)
    return Claim.FIRST if first else Claim.DONE
