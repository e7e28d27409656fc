"""A job run now and then every so often on a daemon thread, until stopped."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


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
