"""What `vitrine serve` runs beside the HTTP API: for the channels whose settings are present,
Telegram long polling (`VITRINE_TELEGRAM_MODE=polling`) or its webhook registered at
`VITRINE_PUBLIC_URL`, and queued messages pushed to Telegram and WhatsApp shoppers; and the
hourly roll-up of the conversion log's closed days for the ops reports."""

from __future__ import annotations

import functools
import logging
import threading
from dataclasses import dataclass, field

from aiogram.exceptions import TelegramAPIError

from bot.channels.push import PushChannel, push_pending
from bot.channels.telegram import TelegramPolling, publish_commands, register_webhook
from core.errors import InvalidInput
from core.periodic import Every
from ops.tally import roll_up
from vitrine.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass
class ChannelWorkers:
    runtime: Runtime
    push: Every | None = None
    upkeep: Every | None = None
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
        # Closed days of the conversion log are rolled up for the reports, hourly.
        self.upkeep = Every(3600, lambda: roll_up(self.runtime.engine), name="vitrine-rollup")
        self.upkeep.start()
        channels = self.runtime.push_channels()
        if channels and settings.push_interval_seconds > 0:
            self.push = Every(settings.push_interval_seconds,
                              lambda: self._push(channels), name="vitrine-push")
            self.push.start()
            started.append(f"queued messages pushed every {settings.push_interval_seconds:g} s")
        return started

    def _push(self, channels: list[PushChannel]) -> None:
        assert self.push is not None
        report = push_pending(self.runtime.engine, self.runtime.assistant, channels,
                              stopping=self.push.stopping)
        if report.shoppers:
            log.info("pushed queued messages: %s", report.as_dict())

    def _poll(self) -> None:
        assert self.polling is not None
        try:
            self.runtime.call_live(self.polling.run)
        except Exception:
            log.exception("Telegram polling stopped")

    def stop(self) -> None:
        """Stop polling and pushing, and wait for both: the runtime's connections close
        next."""
        try:
            if self.polling is not None:
                self.runtime.call_live(self.polling.stop)
        finally:
            if self.upkeep is not None:
                self.upkeep.stop()
            if self.push is not None:
                self.push.stop()
            for thread in self._threads:
                thread.join(timeout=30)
