"""A real Redis for tests: the one VITRINE_TEST_REDIS_URL names, else a private
`redis-server` started on a free loopback port (no persistence, in a temporary folder), else
the tests that need one are skipped with the reason.

Import the fixtures where they are needed (`from tests.redis_server import
redis_server_fixture, redis_url_fixture`): `redis_url` gives each test an emptied database.
(The functions are named apart from the fixtures, so that a test asking for `redis_url`
does not shadow the import.)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.loopback import free_port

# Read once, at import: the suite's autouse fixture clears every VITRINE_ variable. Each test
# empties this database (FLUSHDB): name one nothing else uses.
TEST_REDIS_URL = os.environ.get("VITRINE_TEST_REDIS_URL") or None
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
READY_LINE = b"Ready to accept connections"
START_TIMEOUT_S = 10.0


class RedisServer:
    """A private redis-server process on a loopback port."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.folder = tempfile.mkdtemp(prefix="vitrine-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @staticmethod
    def available() -> bool:
        return Path(REDIS_SERVER).exists()

    def start(self) -> RedisServer:
        """Start the server and wait until it says it accepts connections, then PING it."""
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.folder, "--logfile", ""],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        ready = threading.Event()
        output: list[bytes] = []

        def watch() -> None:
            assert self.process is not None and self.process.stdout is not None
            for line in self.process.stdout:
                output.append(line)
                if READY_LINE in line:
                    ready.set()
            ready.set()  # the process ended: stop waiting

        threading.Thread(target=watch, daemon=True).start()
        if not ready.wait(START_TIMEOUT_S) or self.process.poll() is not None:
            self.stop()
            raise RuntimeError("redis-server did not start: " + b"".join(output).decode())
        client = redis.Redis.from_url(self.url, socket_timeout=START_TIMEOUT_S)
        try:
            client.ping()
        finally:
            client.close()
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=START_TIMEOUT_S)
        self.process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="session", name="redis_server_url")
def redis_server_fixture() -> Iterator[str]:
    """The URL of the Redis the tests use (skips when there is none)."""
    if TEST_REDIS_URL is not None:
        yield TEST_REDIS_URL
        return
    if not RedisServer.available():
        pytest.skip(f"needs Redis: set VITRINE_TEST_REDIS_URL or install redis-server "
                    f"({REDIS_SERVER} not found)")
    server = RedisServer().start()
    yield server.url
    server.remove()


@pytest.fixture(name="redis_url")
def redis_url_fixture(redis_server_url: str) -> Iterator[str]:
    """The test's Redis database, emptied before the test."""
    client = redis.Redis.from_url(redis_server_url)
    client.flushdb()
    yield redis_server_url
    client.close()
