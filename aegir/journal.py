"""What one host's act did, step by step: the record the fleet reports when a host fails part-way.

A step is one thing an act does to a host (``docker compose up -d`` of
apps/cloud, a ruleset load, a removal). `aegir.host.HostContext.step` opens
one around the code that does it: it refuses to start once Ctrl-C was pressed
or the connection was lost, gives the commands inside it the step's deadline,
and writes its start and end here. When the host's function fails (a lost
connection, a dead daemon, a deadline) or is abandoned (a second Ctrl-C), the
fleet's `Outcome` carries this journal, so its row can say which steps were
done, which one was running, and which were never started.

This is the recording half of a step model: a plan may `expect` its steps
first, so that those never started are reported too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum


class StepState(StrEnum):
    """Where a step is: planned but `PENDING`, `RUNNING`, `DONE`, `FAILED` (its error says why)."""

    PENDING = "not started"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class StepRecord:
    """One step of a host's act: its name (``up``), what it acts on (``apps/cloud``), where it is."""

    name: str
    what: str = ""
    state: StepState = StepState.PENDING
    command: str = ""  # the command line it was running last, if any
    deadline: float | None = None  # seconds it may take
    started: float | None = None  # time.monotonic()
    seconds: float | None = None  # how long it took (or has run, in `Journal.records`)
    error: str = ""
    cut: bool = False  # cut short by a fault (connection, daemon, deadline): what it did is unknown

    @property
    def label(self) -> str:
        """``up apps/cloud``: the step as a row or a sentence names it."""
        return f"{self.name} {self.what}".strip()


class Journal:
    """The steps of one host's act, in the order they were planned or started; safe across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._steps: list[StepRecord] = []
        self.lost: str | None = None  # why the connection was lost part-way, once it was
        self.interrupted = False  # a step was refused because of Ctrl-C

    def expect(self, steps: Sequence[tuple[str, str]]) -> None:
        """Record (name, what) steps a plan will run, as `StepState.PENDING`."""
        with self._lock:
            self._steps.extend(StepRecord(name, what) for name, what in steps)

    def start(self, name: str, what: str = "", deadline: float | None = None) -> int:
        """Mark a step running (the pending one of that name and target, else a new one); its index."""
        with self._lock:
            now = time.monotonic()
            for i, s in enumerate(self._steps):
                if (s.name, s.what, s.state) == (name, what, StepState.PENDING):
                    self._steps[i] = replace(s, state=StepState.RUNNING, deadline=deadline, started=now)
                    return i
            self._steps.append(StepRecord(name, what, StepState.RUNNING, deadline=deadline, started=now))
            return len(self._steps) - 1

    def running_command(self, index: int, command: str) -> None:
        """The command step `index` runs now (said if it is still running when the host fails)."""
        with self._lock:
            self._steps[index] = replace(self._steps[index], command=command)

    def end(self, index: int, error: str | None = None, *, cut: bool = False) -> None:
        """Step `index` ended: done, or failed with `error` (`cut`: by a fault, leaving it in an unknown state)."""
        with self._lock:
            s = self._steps[index]
            took = time.monotonic() - s.started if s.started is not None else None
            self._steps[index] = replace(s, state=StepState.FAILED if error else StepState.DONE, seconds=took,
                                         error=error or "", cut=bool(error) and cut)

    def records(self) -> tuple[StepRecord, ...]:
        """Every step so far; a running one with how long it has run."""
        with self._lock:
            now = time.monotonic()
            return tuple(replace(s, seconds=now - s.started) if s.state is StepState.RUNNING and s.started
                         else s for s in self._steps)

    def __bool__(self) -> bool:
        with self._lock:
            return bool(self._steps)


def in_states(steps: Sequence[StepRecord], *states: StepState) -> list[StepRecord]:
    """The steps in one of `states`, in order."""
    return [s for s in steps if s.state in states]


def summary(steps: Sequence[StepRecord]) -> str:
    """One sentence of where a host's act stood: ``done: up apps/wiki; running: up apps/cloud (12 s); not
    started: up users/blog`` ("" when there were no steps)."""
    parts = []
    for state, word in ((StepState.DONE, "done"), (StepState.FAILED, "failed"), (StepState.RUNNING, "running"),
                        (StepState.PENDING, "not started")):
        mine = in_states(steps, state)
        if mine:
            shown = [s.label + (f" ({s.seconds:.0f} s)" if state is StepState.RUNNING and s.seconds is not None
                                else "") for s in mine]
            parts.append(f"{word}: {', '.join(shown)}")
    return "; ".join(parts)
