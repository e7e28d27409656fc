"""Vitrine's own processes, started for a test as an operator would start them: `vitrine
serve` and `vitrine worker` as subprocesses on loopback, with their settings in the
environment."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.loopback import free_port

VITRINE = [sys.executable, "-m", "vitrine.cli"]
ROOT = Path(__file__).resolve().parents[2]


def vitrine_env(**settings: str) -> dict[str, str]:
    """This environment without anything `VITRINE_`, plus `settings` (given without the
    prefix, lower case, as in `core.settings.Settings`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VITRINE_")}
    env.update({f"VITRINE_{k.upper()}": v for k, v in settings.items()})
    env["VITRINE_LOG_FORMAT"] = "text"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def whatsapp_settings(graph_url: str) -> dict[str, str]:
    """The WhatsApp channel's settings of the channel tests, against a Graph API at
    `graph_url`."""
    from tests.bot.channels.test_whatsapp import APP_SECRET, PHONE_ID, VERIFY_TOKEN

    return {"whatsapp_token": "test-graph-token", "whatsapp_phone_id": PHONE_ID,
            "whatsapp_app_secret": APP_SECRET, "whatsapp_verify_token": VERIFY_TOKEN,
            "whatsapp_api_base": graph_url}


def wait_until_up(url: str, process: subprocess.Popen, *, timeout: float = 60.0) -> None:
    """Wait for `GET url/healthz` to answer, failing early if the process died."""
    pause = threading.Event()
    deadline = threading.Event()
    timer = threading.Timer(timeout, deadline.set)
    timer.start()
    try:
        while not deadline.is_set():
            if process.poll() is not None:
                raise AssertionError(f"the server exited with {process.returncode}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            pause.wait(0.1)
        raise AssertionError(f"{url} did not come up within {timeout} s")
    finally:
        timer.cancel()


@contextmanager
def api_process(env: dict[str, str], log: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """One `vitrine serve --no-demo` process on a free loopback port; yields its base URL
    and the process, and stops it with SIGTERM (as a container runtime does) if still up."""
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*VITRINE, "serve", "--no-demo", "--host", "127.0.0.1", "--port", str(port)],
            env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_up(url, process)
            yield url, process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class GraphRecorder:
    """Meta's Graph API on loopback: records every message sent and answers with an id.
    Cleared `flowing`, each send waits until it is set again (a slow Graph API)."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.changed = threading.Condition()
        self.flowing = threading.Event()
        self.flowing.set()
        self.app = Starlette(routes=[Route("/{path:path}", self.endpoint, methods=["POST"])])

    async def endpoint(self, request: Request) -> JSONResponse:
        body = json.loads(await request.body() or b"{}")
        with self.changed:
            self.sent.append(body)
            n = len(self.sent)
            self.changed.notify_all()
        await anyio.to_thread.run_sync(self.flowing.wait, 30)
        return JSONResponse({"messaging_product": "whatsapp",
                             "messages": [{"id": f"wamid.out{n}"}]})

    def texts_to(self, shopper: str) -> list[str]:
        """Each message sent to `shopper`, as JSON text."""
        with self.changed:
            sent = [m for m in self.sent if m.get("to") == shopper]
        return [json.dumps(m, ensure_ascii=False) for m in sent]

    def wait_for_send(self, timeout: float = 30.0) -> None:
        with self.changed:
            if not self.changed.wait_for(lambda: bool(self.sent), timeout=timeout):
                raise AssertionError(f"nothing sent to the Graph API within {timeout} s")
