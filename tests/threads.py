"""Calls released at the same moment on threads of their own: races a test provokes."""

from __future__ import annotations

import threading


def at_once(*calls: tuple, timeout: float = 60) -> list:
    """Run each `(function, *args)` on its own thread, released at the same moment; their
    results in order. The first exception one raised is raised again, and a call still
    running after `timeout` seconds fails the caller with TimeoutError."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)
    errors: list[BaseException] = []

    def run(i: int, function, *args) -> None:  # type: ignore[no-untyped-def]
        barrier.wait(timeout=30)
        try:
            results[i] = function(*args)
        except BaseException as exc:  # raised again in the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, *call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    if errors:
        raise errors[0]
    if any(thread.is_alive() for thread in threads):
        raise TimeoutError(f"a call was still running after {timeout} s")
    return results
