"""Work that comes round on a clock: `Periodic` names each period of a schedule (so the work
of one period is queued once, however many workers tick), and `Every` runs a function now and
then every so often on a daemon thread."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

log = logging.getLogger(__name__)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Periodic:
    """A job kind due once per period of `every`, each period starting `at` past a multiple
    of `every` since the Unix epoch (UTC): `every=1 day, at=14 h` is daily at 14:00 UTC."""

    kind: str
    every: timedelta
    at: timedelta = timedelta(0)
    max_attempts: int = 1  # the next period is the retry, unless said otherwise

    def __post_init__(self) -> None:
        if self.every <= timedelta(0):
            raise ValueError(f"{self.kind}: the period must be above zero")

    def tick(self, now: datetime) -> datetime:
        """When the period that holds `now` began."""
        periods = (now - EPOCH - self.at) // self.every
        return EPOCH + self.at + periods * self.every

    def next_tick(self, now: datetime) -> datetime:
        """When the period after the one that holds `now` begins."""
        return self.tick(now) + self.every

    def __str__(self) -> str:
        day = timedelta(days=1)
        if self.every == day:
            return f"{self.kind} daily at {(EPOCH + self.at):%H:%M} UTC"
        seconds = self.every.total_seconds()
        if seconds % 3600 == 0:
            return f"{self.kind} every {seconds / 3600:g} h"
        if seconds % 60 == 0:
            return f"{self.kind} every {seconds / 60:g} min"
        return f"{self.kind} every {seconds:g} s"

    def key(self, now: datetime) -> str:
        """The queue key of the period that holds `now`, like `rollup:2026-11-29T23:00:00`."""
        moment = self.tick(now)
        stamp = moment.strftime("%Y-%m-%dT%H:%M:%S")
        if self.every % timedelta(seconds=1):  # periods under a second apart need the rest
            stamp += moment.strftime(".%f")
        return f"{self.kind}:{stamp}"


class Every:
    """Runs `job` now and then every `interval_s`, until `stop`; a run that fails is logged
    and the job runs again at the next turn. A long job can ask `stopping` between steps."""

    def __init__(self, interval_s: float, job: Callable[[], object], *, name: str) -> None:
        self.interval_s, self.job = interval_s, job
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=name)

    def start(self) -> None:
        self._thread.start()

    def stopping(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        """Stop after the run under way; waits for it."""
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.job()
            except Exception:
                log.exception("%s failed", self._thread.name)
            self._stop.wait(self.interval_s)
