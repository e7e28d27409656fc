"""`vitrine serve`'s HTTP protocol: responses leave at once, whoever bound the socket; and
its heap, settled once the process is ready."""

from __future__ import annotations

import asyncio
import gc
import socket
import weakref

import pytest
from uvicorn import Config, Server

from vitrine import serving

pytestmark = pytest.mark.anyio


async def app(scope, receive, send):  # a bare ASGI app: the protocol is what is tested
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def test_connections_on_a_socket_bound_like_uvicorn_workers_bind_it_have_no_delay():
    # `uvicorn --workers` binds without naming TCP (proto 0), and asyncio then leaves
    # TCP_NODELAY off: the response's body waited 44 ms for the client's delayed ACK.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    assert listener.proto == 0
    config = Config(app, http=serving.PROTOCOL, log_level="warning", lifespan="off")
    config.load()
    server = Server(config)
    server.lifespan = config.lifespan_class(config)  # what `Server.serve` sets up first
    await server.startup(sockets=[listener])
    try:
        reader, writer = await asyncio.open_connection(*listener.getsockname())
        writer.write(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        assert (await reader.readuntil(b"ok")).startswith(b"HTTP/1.1 200")
        [accepted] = list(server.server_state.connections)
        sock = accepted.transport.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        writer.close()
    finally:
        await server.shutdown()


def test_a_unix_socket_is_left_as_it_is():
    class Transport(asyncio.BaseTransport):
        def __init__(self, sock: socket.socket) -> None:
            super().__init__()
            self.sock = sock

        def get_extra_info(self, name, default=None):
            return self.sock if name == "socket" else default

    one, other = socket.socketpair(socket.AF_UNIX)
    with one, other:
        serving.no_delay(Transport(one))  # no TCP option on a Unix socket: no error


def test_settling_the_heap_collects_startup_garbage_and_freezes_the_rest():
    class Node:
        other: object = None

    left_over = Node()
    left_over.other = left_over  # a cycle: only the collector frees it
    gone = weakref.ref(left_over)
    del left_over
    try:
        serving.settle_heap()
        assert gone() is None  # collected, not frozen for the process's life
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
