"""How `vitrine serve` runs: uvicorn's own protocol with Nagle's algorithm off, and a heap
the garbage collector leaves alone once the process is ready.

With `--workers N` uvicorn binds the listening socket itself, without naming TCP as its
protocol, and asyncio then leaves TCP_NODELAY unset on every connection it accepts. uvicorn's
h11 protocol writes a response's head and body separately, so the body waited for the
client's delayed ACK: 44 ms on every request on loopback (`bench/load.py`, see
docs/benchmarks.md). A single process binds through asyncio, which sets it.
"""

from __future__ import annotations

import asyncio
import gc
import socket

from uvicorn.protocols.http.auto import AutoHTTPProtocol

# The import path uvicorn is given (`http=`); each worker process imports it.
PROTOCOL = "vitrine.serving:NoDelayHTTPProtocol"


class NoDelayHTTPProtocol(AutoHTTPProtocol):  # type: ignore[misc,valid-type]
    """uvicorn's HTTP/1.1 protocol, sending each write at once."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Turn Nagle's algorithm off on a TCP connection, then serve it as uvicorn does."""
        no_delay(transport)
        super().connection_made(transport)


def no_delay(transport: asyncio.BaseTransport) -> None:
    """Set TCP_NODELAY on a transport's TCP socket (other sockets are left as they are)."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6) \
            and sock.type == socket.SOCK_STREAM:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def settle_heap() -> None:
    """Once a serving process has built what it keeps for its whole life (modules, the
    runtime, mappers, compiled statements), collect what starting left over and move the
    rest out of the garbage collector's sight (`gc.freeze`).

    Those are some 400,000 objects that are never garbage, yet every full collection
    visited them all: about 250 ms with every thread stopped, a few times a minute under
    load (docs/benchmarks.md, "Fourth round"). Objects made afterwards are collected as
    usual.
    """
    gc.collect()
    gc.freeze()
