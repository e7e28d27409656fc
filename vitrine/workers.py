"""What `vitrine serve` runs beside the HTTP API when it is one process: for the channels
whose settings are present, Telegram long polling (`VITRINE_TELEGRAM_MODE=polling`) or its
webhook registered at `VITRINE_PUBLIC_URL`; and the job worker (`vitrine.worker`) on threads,
the same one `vitrine worker` runs, so the embedded default needs no second process: queued
messages pushed to Telegram and WhatsApp shoppers, merchants' order webhooks, feed syncs,
payment sweeps, reminders, retention and the ops roll-up."""

from __future__ import annotations

import functools
import logging
import threading
from dataclasses import dataclass, field

from aiogram.exceptions import TelegramAPIError

from bot.channels.telegram import TelegramPolling, publish_commands, register_webhook
from core.errors import InvalidInput
from vitrine.jobs import schedule
from vitrine.runtime import Runtime
from vitrine.worker import JobWorker

log = logging.getLogger(__name__)


@dataclass
class ChannelWorkers:
    runtime: Runtime
    jobs: JobWorker | None = None
    polling: TelegramPolling | None = None
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> list[str]:
        """Start what the settings ask for; a line for each, to tell the operator."""
        started: list[str] = []
        settings = self.runtime.settings
        telegram = self.runtime.telegram_channel()
        if telegram is not None:
            try:
                self.runtime.call_live(publish_commands, telegram.bot)
            except TelegramAPIError as exc:
                log.warning("Telegram command menu not set: %s", exc)
        if telegram is not None and settings.telegram_mode == "polling":
            self.polling = TelegramPolling(telegram)
            thread = threading.Thread(target=self._poll, daemon=True, name="vitrine-telegram")
            thread.start()
            self._threads.append(thread)
            started.append("Telegram: long polling")
        elif telegram is not None:
            try:
                url = self.runtime.call_live(functools.partial(
                    register_webhook, telegram.bot, public_url=settings.public_url,
                    secret=settings.telegram_webhook_secret))
                started.append(f"Telegram: webhook at {url}")
            except (InvalidInput, TelegramAPIError) as exc:
                # The API still serves: the webhook may have been set by hand already.
                started.append(f"Telegram: webhook not registered ({exc})")
        periodic = schedule(self.runtime)
        self.jobs = JobWorker(self.runtime, concurrency=settings.worker_concurrency,
                              schedule=periodic)
        self.jobs.start()
        if any(p.kind == "push" for p in periodic):
            started.append(f"queued messages pushed every {settings.push_interval_seconds:g} s")
        return started

    def _poll(self) -> None:
        assert self.polling is not None
        try:
            self.runtime.call_live(self.polling.run)
        except Exception:
            log.exception("Telegram polling stopped")

    def stop(self) -> None:
        """Stop polling, and the job worker (jobs under way get the grace period to finish);
        the runtime's connections close next."""
        try:
            if self.polling is not None:
                self.runtime.call_live(self.polling.stop)
        finally:
            if self.jobs is not None:
                self.jobs.stop(self.runtime.settings.worker_grace_seconds)
            for thread in self._threads:
                thread.join(timeout=30)
