"""A merchant's web server on loopback for feed tests: publishes files, honours ETags."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FeedServer:
    """Serves published bodies by path; a body's ETag is its hash unless given.

    `If-None-Match` with the current ETag gets a 304. Every request is remembered.
    """

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.routes: dict[str, tuple[int, bytes, dict[str, str]]] = {}
        self.lock = threading.Lock()
        self.base = ""

    def publish(self, path: str, body: bytes, headers: dict[str, str] | None = None, *,
                status: int = 200, etag: bool = True) -> None:
        headers = dict(headers or {})
        if etag and status == 200:
            headers.setdefault("ETag", '"' + hashlib.sha256(body).hexdigest()[:16] + '"')
        with self.lock:
            self.routes[path] = (status, body, headers)

    def url(self, path: str) -> str:
        return self.base + path

    def handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with server.lock:
                    server.requests.append((self.path, dict(self.headers.items())))
                    route = server.routes.get(self.path)
                if route is None:
                    self._send(404, b"not found", {})
                    return
                status, body, headers = route
                etag = headers.get("ETag")
                if etag and self.headers.get("If-None-Match") == etag:
                    self._send(304, b"", {"ETag": etag})
                else:
                    self._send(status, body, headers)

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if status != 304:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # keep test output quiet

        return Handler


@contextmanager
def running_feed_server() -> Iterator[FeedServer]:
    feeds = FeedServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), feeds.handler())
    feeds.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield feeds
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
