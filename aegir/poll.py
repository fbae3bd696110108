"""Wait until something holds, within a deadline: the one poll loop (Docker answering, a restart settling).

And `Background`: a loop in a thread for the length of a ``with`` block (a progress line, a watcher).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Self, TypeVar

T = TypeVar("T")


def until(attempt: Callable[[], tuple[bool, T]], *, timeout: float, interval: float = 0.5) -> tuple[bool, T, float]:
    """Call `attempt` until it says done or `timeout` seconds have passed; at least once.

    `attempt` returns ``(done, value)``. Returns ``(done, value, seconds)`` of the
    last attempt: the caller says what a timeout means. Sleeps `interval` between
    attempts, never past the deadline.
    """
    start = time.monotonic()
    while True:
        done, value = attempt()
        elapsed = time.monotonic() - start
        if done or elapsed >= timeout:
            return done, value, elapsed
        time.sleep(max(0.0, min(interval, timeout - elapsed)))


class Background:
    """Runs `_loop` in a daemon thread from the start of a ``with`` block to its end.

    `_loop` must return once `_stop` is set (it waits on it, or looks at it
    between passes); leaving the block sets `_stop` and joins the thread.
    """

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        raise NotImplementedError
