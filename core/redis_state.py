"""The shared state in Redis (`VITRINE_REDIS_URL`), for several processes.

Every operation is one round trip (a Lua script or a MULTI pipeline where it must be atomic).
Redis is a help, never a dependency: a call Redis does not answer within a short timeout is
answered by the process's own `LocalState`, with a warning, and Redis is then left alone for
`PAUSE_S` seconds, so that a server that is down or hanging costs one timeout now and then,
not one per call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.retry import Retry

from core.shared_state import (
    DONE_KEEP_S,
    IN_FLIGHT_HOLD_S,
    Allowance,
    Circuit,
    Claim,
    LocalState,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

# Redis on the same network answers in a millisecond; a server that does not answer in
# this long is treated as down for `PAUSE_S`.
SOCKET_TIMEOUT_S = 0.25
PAUSE_S = 5.0
WARN_EVERY_S = 60.0
# An idle circuit's record is forgotten after a day (a merchant removed, or long healthy).
CIRCUIT_KEEP_S = 24 * 3600.0

# Claim an id unless held: nil when claimed now, else what holds it ("in_flight" or "done").
_CLAIM = """
local held = redis.call('GET', KEYS[1])
if held then return held end
redis.call('SET', KEYS[1], 'in_flight', 'PX', ARGV[1])
return false
"""
# Give up a claim, but never an id already finished.
_RELEASE = """
if redis.call('GET', KEYS[1]) == 'in_flight' then redis.call('DEL', KEYS[1]) end
return 0
"""
# One more consecutive failure; opens at the threshold, and an open circuit opens again.
_FAILED = """
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
local opened = redis.call('HGET', KEYS[1], 'opened_at')
if failures >= tonumber(ARGV[2]) or opened then
  redis.call('HSET', KEYS[1], 'opened_at', ARGV[1])
  opened = ARGV[1]
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {failures, opened}
"""


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class RedisState:
    """Shared state in Redis, for several processes. Each call falls back to the process's
    own `LocalState` while Redis cannot be reached."""

    shared = True

    def __init__(self, client: redis.Redis, *, prefix: str = "vitrine:",
                 fallback: LocalState | None = None, pause_s: float = PAUSE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.prefix = prefix
        self.fallback = fallback or LocalState()
        self.pause_s = pause_s
        self.clock = clock
        self._paused_until = 0.0
        self._warned_at: float | None = None
        self._claim = client.register_script(_CLAIM)
        self._release = client.register_script(_RELEASE)
        self._failed = client.register_script(_FAILED)

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "vitrine:",
                 timeout_s: float = SOCKET_TIMEOUT_S) -> RedisState:
        """A state on the Redis at `url` (`redis://host:6379/0`); nothing connects yet."""
        # One retry, at once, of a broken connection only: a pooled connection the server
        # closed (a restart) is replaced, while a server that hangs costs one timeout.
        retry = Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
        client = redis.Redis.from_url(url, socket_timeout=timeout_s,
                                      socket_connect_timeout=timeout_s, retry=retry,
                                      client_name="vitrine")
        return cls(client, prefix=prefix)

    def _either(self, remote: Callable[[], T], local: Callable[[], T]) -> T:
        """`remote()` against Redis; `local()` when it fails or failed moments ago."""
        now = self.clock()
        if now < self._paused_until:
            return local()
        try:
            result = remote()
        except RedisError as exc:
            self._paused_until = now + self.pause_s
            if self._warned_at is None or now - self._warned_at >= WARN_EVERY_S:
                self._warned_at = now
                log.warning("redis unreachable (%s: %s): this process uses its own state "
                            "for now", type(exc).__name__, exc)
            return local()
        if self._warned_at is not None:
            self._warned_at = None
            log.info("redis reachable again: state shared with the other processes")
        return result

    def claim(self, key: str, *, hold_s: float = IN_FLIGHT_HOLD_S) -> Claim:
        """See `SharedState.claim`."""
        def remote() -> Claim:
            held = self._claim(keys=[self.prefix + key], args=[_ms(hold_s)])
            return Claim.FIRST if held is None else Claim(held.decode())
        return self._either(remote, lambda: self.fallback.claim(key, hold_s=hold_s))

    def finish(self, key: str, *, keep_s: float = DONE_KEEP_S) -> None:
        """See `SharedState.finish`."""
        self._either(lambda: self.client.set(self.prefix + key, Claim.DONE.value,
                                             px=_ms(keep_s)),
                     lambda: self.fallback.finish(key, keep_s=keep_s))

    def release(self, key: str) -> None:
        """See `SharedState.release`."""
        self._either(lambda: self._release(keys=[self.prefix + key]),
                     lambda: self.fallback.release(key))

    def hit(self, key: str, *, limit: int, window_s: float) -> Allowance:
        """See `SharedState.hit`: INCR in a window that SET NX PX started, one round trip."""
        def remote() -> Allowance:
            name = self.prefix + key
            pipe = self.client.pipeline(transaction=True)
            pipe.set(name, 0, nx=True, px=_ms(window_s))
            pipe.incr(name)
            pipe.pttl(name)
            _, count, ttl_ms = pipe.execute()
            if ttl_ms < 0:  # a counter without expiry would refuse forever
                self.client.pexpire(name, _ms(window_s))
                ttl_ms = _ms(window_s)
            return Allowance(allowed=count <= limit, count=count, retry_after_s=ttl_ms / 1000)
        return self._either(remote, lambda: self.fallback.hit(key, limit=limit,
                                                              window_s=window_s))

    def get(self, key: str) -> bytes | None:
        """See `SharedState.get`."""
        def remote() -> bytes | None:
            value = self.client.get(self.prefix + key)
            return value if isinstance(value, bytes) else None
        return self._either(remote, lambda: self.fallback.get(key))

    def put(self, key: str, value: bytes, *, ttl_s: float) -> None:
        """See `SharedState.put`."""
        if ttl_s <= 0:
            return
        self._either(lambda: self.client.set(self.prefix + key, value, px=_ms(ttl_s)),
                     lambda: self.fallback.put(key, value, ttl_s=ttl_s))

    def circuit(self, name: str) -> Circuit:
        """See `SharedState.circuit`."""
        def remote() -> Circuit:
            failures, opened_at = self.client.hmget(self.prefix + "circuit:" + name,
                                                    ["failures", "opened_at"])
            return Circuit(int(failures or 0), float(opened_at) if opened_at else None)
        return self._either(remote, lambda: self.fallback.circuit(name))

    def circuit_failed(self, name: str, *, at: float, failures_to_open: int) -> Circuit:
        """See `SharedState.circuit_failed`."""
        def remote() -> Circuit:
            failures, opened_at = self._failed(
                keys=[self.prefix + "circuit:" + name],
                args=[repr(at), failures_to_open, _ms(CIRCUIT_KEEP_S)])
            return Circuit(int(failures), float(opened_at) if opened_at else None)
        return self._either(remote, lambda: self.fallback.circuit_failed(
            name, at=at, failures_to_open=failures_to_open))

    def circuit_closed(self, name: str) -> None:
        """See `SharedState.circuit_closed`."""
        # The process's own record too: one opened while Redis was away must not linger.
        self.fallback.circuit_closed(name)
        self._either(lambda: self.client.delete(self.prefix + "circuit:" + name),
                     lambda: None)

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()
