"""WhatsApp Cloud API (Meta's Graph API) client: sends one message, retrying when the API
is busy, and never raises to the webhook that asked for it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import httpx

log = logging.getLogger(__name__)

# Meta answers within a second or two; a stuck connection must not hold the webhook long.
GRAPH_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
ATTEMPTS = 4
BACKOFF_S = 0.5
MAX_BACKOFF_S = 8.0


def _retryable(status: int) -> bool:
    return status == 429 or status >= 500


class WhatsAppApi:
    """Sends messages as one WhatsApp business phone number."""

    def __init__(self, *, http: httpx.Client, base_url: str, phone_id: str, token: str,
                 attempts: int = ATTEMPTS, backoff_s: float = BACKOFF_S,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.http = http
        self.url = f"{base_url.rstrip('/')}/{phone_id}/messages"
        self.media_url = f"{base_url.rstrip('/')}/{phone_id}/media"
        self.token = token
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s
        # Injected so tests run the retry path without waiting.
        self.sleep = sleep

    def send(self, *, to: str, message: dict[str, Any]) -> str | None:
        """Send one message (`{"type": "text", "text": {...}}` and the like) to a WhatsApp
        user; the id WhatsApp gave it, or None when it could not be sent (logged)."""
        payload = {"messaging_product": "whatsapp", "recipient_type": "individual",
                   "to": to, **message}
        response = self._post(self.url, what=f"message to {_masked(to)}", json=payload)
        return _message_id(response) if response is not None else None

    def upload_png(self, data: bytes, *, filename: str) -> str | None:
        """Upload a PNG picture to send by id; its media id, or None (logged)."""
        response = self._post(self.media_url, what="picture upload",
                              data={"messaging_product": "whatsapp", "type": "image/png"},
                              files={"file": (filename, data, "image/png")})
        try:
            return str(response.json()["id"]) if response is not None else None
        except (ValueError, LookupError, TypeError):
            return None

    def _post(self, url: str, *, what: str, **content: Any) -> httpx.Response | None:
        """POST with retries on 429, 5xx and transport errors; the answer, or None."""
        headers = {"Authorization": f"Bearer {self.token}"}
        for attempt in range(1, self.attempts + 1):
            delay = min(self.backoff_s * 2 ** (attempt - 1), MAX_BACKOFF_S)
            try:
                response = self.http.post(url, headers=headers, timeout=GRAPH_TIMEOUT,
                                          **content)
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.is_success:
                    return response
                problem = f"HTTP {response.status_code}: {response.text[:300]}"
                if not _retryable(response.status_code):
                    break
                delay = max(delay, _retry_after(response))
            if attempt < self.attempts:
                self.sleep(delay)
        log.error("whatsapp %s not sent after %d attempt(s): %s", what, attempt, problem)
        return None

    def close(self) -> None:
        self.http.close()


def _message_id(response: httpx.Response) -> str | None:
    try:
        return str(response.json()["messages"][0]["id"])
    except (ValueError, LookupError, TypeError):
        return None


def _retry_after(response: httpx.Response) -> float:
    """Seconds the API asked to wait (`Retry-After`), capped; 0 when it did not say."""
    try:
        return min(float(response.headers.get("Retry-After", 0)), MAX_BACKOFF_S)
    except ValueError:
        return 0.0


def _masked(phone: str) -> str:
    # Phone numbers are personal data: the logs keep only enough to tell shoppers apart.
    return f"…{phone[-4:]}"
