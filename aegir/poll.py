"""Wait until something holds, within a deadline: the one poll loop (Docker answering, a restart settling)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

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
