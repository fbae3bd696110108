"""Ctrl-C for the whole run: the first one stops what has not started, the second abandons what runs.

Signals reach a process, not a thread, so the state is one object per process,
`RUN`. The program (`aegir.cli`) installs `RUN.handler` for SIGINT; the fleet
(`aegir.fleet.each`) holds `RUN.guard()` while hosts work in parallel, and the
host context (`aegir.host.HostContext.step`) asks `RUN.check()` before each
step. Then:

- outside a parallel fleet run (a prompt, a task reading facts alone, a
  ``serial`` run owning the terminal) Ctrl-C raises ``KeyboardInterrupt`` as
  Python's default handler does;
- inside one, the first Ctrl-C only sets `stopping`: no new host and no new
  step starts, running steps go on for `grace` seconds (``timeouts.interrupt``);
- the second Ctrl-C, or the end of the grace, sets `abandoned`: the fleet stops
  waiting, reports each host from its journal (the running step "may be
  half-done") and the program exits 130 without waiting for those threads.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from aegir.errors import Interrupted

#: The exit code of a run stopped by Ctrl-C (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130


class Interrupt:
    """The run's Ctrl-C state: how many were pressed, whether running work is asked to stop or abandoned."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._abandoned = threading.Event()
        self._guards = 0
        self.grace: float | None = None  # what the guarding fleet run gives running steps after Ctrl-C
        self.count = 0
        self.first_at: float | None = None  # time.monotonic() of the first Ctrl-C
        self.quiet = False  # a worker process of the fleet (`aegir.fleet`): its parent says what Ctrl-C does

    @property
    def stopping(self) -> bool:
        """True once Ctrl-C was pressed: start nothing new."""
        return self._stopping.is_set()

    @property
    def abandoned(self) -> bool:
        """True once running steps were abandoned (a second Ctrl-C, or the grace ran out)."""
        return self._abandoned.is_set()

    def interrupt(self) -> None:
        """What a Ctrl-C does: the first asks work to stop, the next abandons it."""
        with self._lock:
            self.count += 1
            if self.first_at is None:
                self.first_at = time.monotonic()
                self._stopping.set()
            else:
                self._abandoned.set()

    def abandon(self) -> None:
        """Give up waiting for running steps (the grace after the first Ctrl-C is over)."""
        self._stopping.set()
        self._abandoned.set()

    def grace_over(self, grace: float) -> bool:
        """True when `grace` seconds have passed since the first Ctrl-C."""
        return self.first_at is not None and time.monotonic() - self.first_at >= grace

    def check(self, what: str = "") -> None:
        """Raise `Interrupted` when Ctrl-C was pressed: `what` (a step) is not started."""
        if self.stopping:
            raise Interrupted(f"not started: interrupted (Ctrl-C){f' before {what}' if what else ''}")

    @contextmanager
    def guard(self, grace: float | None = None) -> Iterator[None]:
        """While this block runs, Ctrl-C asks for a stop instead of raising ``KeyboardInterrupt``;
        `grace`: how long running steps may go on after it (said to the operator)."""
        with self._lock:
            self._guards += 1
            self.grace = grace
        try:
            yield
        finally:
            with self._lock:
                self._guards -= 1

    def handler(self, signum: int, frame: FrameType | None) -> None:
        """The SIGINT handler (`install`)."""
        with self._lock:
            guarded = self._guards > 0
        if not guarded:
            with self._lock:
                self.count += 1
                self.first_at = self.first_at or time.monotonic()
                self._stopping.set()
            raise KeyboardInterrupt
        first = not self.stopping
        self.interrupt()
        if self.quiet:
            return
        grace = f"get {self.grace:g} s to finish" if self.grace is not None else "may finish"
        _say(f"aegir: interrupted: no new host or step starts; running steps {grace} "
             "(Ctrl-C again abandons them)" if first else
             "aegir: interrupted again: abandoning the running steps")

    def reset(self) -> None:
        """Forget every Ctrl-C (for tests; a run never needs it)."""
        with self._lock:
            self.count = 0
            self.first_at = None
            self._stopping.clear()
            self._abandoned.clear()


def _say(line: str) -> None:
    """One line on stderr from a signal handler: straight to the file descriptor, no buffered stream's lock."""
    try:
        os.write(2, ("\r\033[K" if os.isatty(2) else "").encode() + line.encode() + b"\n")
    except OSError:
        pass


#: The process's Ctrl-C state.
RUN = Interrupt()


def install() -> None:
    """Make `RUN.handler` the SIGINT handler (the main thread only: the program's entry point)."""
    signal.signal(signal.SIGINT, RUN.handler)
