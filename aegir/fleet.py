"""Run one function per host, in parallel, and collect one result per host.

`each(c, hosts, fn)` opens a `HostContext` (`aegir.host`) for every host, calls
``fn(hc)`` in a bounded thread pool, never stops at the first failure, and
returns an `Outcome` per host in inventory order: its value, or why it failed
(unreachable, refused host key, a command that failed, ...).

``rolling=`` (an `aegir.inventory.Rolling`, from ``--serial`` or a group's
``rolling:`` in hosts.yml) runs an action batch by batch instead: the first
batch is the canary, a failed host stops the roll (unless ``keep_going``,
which the canary ignores), and every host after it gets a ``skipped`` outcome
saying it was not attempted, and why.

``settled=`` (host name -> `Outcome`) gives hosts whose outcome is already
known (a plan pass found them unreachable): they are not run again, and in a
roll they count where they stand, so an unreachable canary stops the roll.

A host that was reached and then failed (a lost connection, a dead Docker
daemon, a deadline) is ``failed``, never ``unreachable``: its outcome carries
the host's step journal (`aegir.journal`), what was done and what was not.

Ctrl-C (`aegir.interrupt`): while hosts work in parallel, the first one starts
no new host (those left are ``skipped``, "not started"); running hosts stop
before their next step (``interrupted``); after ``timeouts.interrupt`` seconds,
or at a second Ctrl-C, the fleet stops waiting and reports each host still
running from its journal ("abandoned while running ...: it may be half-done").
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from aegir.errors import AegirError, Interrupted, UnreachableError
from aegir.host import Deadlines, HostContext, open_context
from aegir.interrupt import RUN
from aegir.inventory import Host, Rolling
from aegir.journal import StepRecord, StepState, in_states, summary
from aegir.report import Progress

if TYPE_CHECKING:  # pragma: no cover
    from invoke import Context

T = TypeVar("T")

DEFAULT_LIMIT = 32


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """What happened on one host: a value, or an error message and its kind; the steps it went through.

    `kind`: ``ok``; ``unreachable`` (never reached: nothing was done); ``failed`` (reached, then a
    step, the connection, Docker or a deadline failed); ``bug``; ``skipped`` (not started: a roll
    stopped before it, or Ctrl-C); ``interrupted`` (Ctrl-C stopped it part-way). `steps`: its
    journal, when the function journaled steps (`aegir.host.HostContext.step`).
    """

    host: Host
    value: T | None = None
    error: str | None = None
    kind: str = "ok"  # ok | unreachable | failed | bug | skipped | interrupted
    seconds: float = 0.0
    steps: tuple[StepRecord, ...] = ()

    @property
    def half_done(self) -> bool:
        """True when a step was running as the host failed or was abandoned: it may be half-done."""
        return not self.ok and bool(in_states(self.steps, StepState.RUNNING))

    @property
    def unsure(self) -> bool:
        """True when the host may be part-way: a step abandoned, or cut short by a fault (see the journal)."""
        return self.half_done or any(s.cut for s in self.steps)

    @property
    def ok(self) -> bool:
        return self.kind == "ok"


def failed(outcomes: Sequence[Outcome[Any]]) -> list[Outcome[Any]]:
    """The outcomes that are not ok."""
    return [o for o in outcomes if not o.ok]


def each(
    c: "Context",
    hosts: Sequence[Host],
    fn: Callable[[HostContext], T],
    *,
    label: str = "aegir",
    limit: int | None = None,
    serial: bool = False,
    rolling: Rolling | None = None,
    fails: Callable[[T], str | None] | None = None,
    contexts: dict[str, HostContext] | None = None,
    settled: Mapping[str, Outcome[T]] | None = None,
) -> list[Outcome[T]]:
    """Run ``fn(hc)`` on every host in parallel; one `Outcome` per host, in order.

    At most `limit` hosts at once (default ``aegir.parallel`` from the config,
    else 32). A host that cannot be reached, or whose `fn` raises an
    `AegirError`, gets an outcome saying why; the others carry on. Any other
    exception is a bug: its traceback goes to stderr and the row says so.

    ``serial=True`` runs the hosts one after another in the calling thread,
    with no progress line: for interactive work (a prompt owns the terminal,
    Ctrl-C reaches it, prompts come in inventory order).

    ``rolling`` runs the hosts batch by batch (see the module's docstring).

    ``fails(value)`` says why a host whose `fn` returned counts as failed all the
    same (an install that failed, an upgrade after which Docker does not
    answer), or None: such an outcome keeps its value, is of kind ``failed``
    with that reason, shows as failed in the progress, in the exit and in the
    JSON, and stops a roll like any failure.

    `contexts` (host name -> open `HostContext`) lets several passes share one
    connection per host: a context found there is reused, one opened here is
    added, and none is closed (the caller closes them, `close_all`).

    `settled` (host name -> `Outcome`): hosts whose outcome is known already
    (a plan pass's failure); they are not run, and count as they are in a roll.
    """
    if limit is None:
        limit = int((c.config.get("aegir") or {}).get("parallel") or DEFAULT_LIMIT)
    limit = max(1, min(limit, len(hosts) or 1))
    live: dict[str, HostContext] = {}  # the hosts at work, for the journal of one that is abandoned

    def attempt(host: Host) -> Outcome[T]:
        if settled is not None and host.name in settled:
            return settled[host.name]
        if RUN.stopping:
            return Outcome(host, error="not started: interrupted (Ctrl-C)", kind="skipped")
        start = time.monotonic()
        hc: HostContext | None = None

        def took() -> float:
            return time.monotonic() - start

        def steps() -> tuple[StepRecord, ...]:
            return hc.journal.records() if hc is not None else ()

        try:
            hc = contexts.get(host.name) if contexts is not None else None
            if hc is None:
                hc = open_context(c, host)
                if contexts is not None:
                    contexts[host.name] = hc
            live[host.name] = hc
            value = fn(hc)
            why = fails(value) if fails is not None else None
            if why:
                kind = "interrupted" if hc.journal.interrupted and RUN.stopping else "failed"
                return Outcome(host, value, error=why, kind=kind, seconds=took(), steps=steps())
            return Outcome(host, value, seconds=took(), steps=steps())
        except Interrupted as exc:
            return Outcome(host, error=_with_steps(exc.message, steps()), kind="interrupted", seconds=took(),
                           steps=steps())
        except UnreachableError as exc:
            if hc is not None and hc.reached:  # lost after it was reached: something may have been done
                return Outcome(host, error=_with_steps(exc.message, steps()), kind="failed", seconds=took(),
                               steps=steps())
            return Outcome(host, error=exc.message, kind="unreachable", seconds=took())
        except AegirError as exc:
            return Outcome(host, error=_with_steps(exc.message, steps()), kind="failed", seconds=took(),
                           steps=steps())
        except Exception as exc:
            err = hc.failure(exc) if hc is not None else None
            if err is not None:  # Docker or SSH failing under the host: its failure, not a bug of aegir's
                return Outcome(host, error=_with_steps(err.message, steps()), kind="failed", seconds=took(),
                               steps=steps())
            traceback.print_exc(file=sys.stderr)  # a bug: keep the other hosts' results, show the traceback
            return Outcome(host, error=f"internal error {type(exc).__name__}: {exc}", kind="bug",
                           seconds=took(), steps=steps())
        finally:
            if hc is not None and contexts is None and not RUN.abandoned:
                hc.close()

    def one(host: Host) -> Outcome[T]:
        outcome = attempt(host)
        progress.done(host.name, outcome.kind)
        return outcome

    if serial:
        progress = Progress(label, [])  # never started: nothing may write over a prompt
        return [one(h) for h in hosts]
    grace = Deadlines.of(c.config).interrupt

    def batch(pool: ThreadPoolExecutor, group: Sequence[Host]) -> list[Outcome[T]]:
        futures = [pool.submit(one, h) for h in group]
        _wait(futures, grace)
        out = []
        for h, f in zip(group, futures):
            if f.done() and not f.cancelled():
                out.append(f.result())
            else:
                out.append(_abandoned(h, live.get(h.name)))
                progress.done(h.name, "abandoned")
        return out

    with RUN.guard(grace), Progress(label, [h.name for h in hosts]) as progress:
        pool = ThreadPoolExecutor(max_workers=limit, thread_name_prefix="aegir")
        try:
            if rolling is None:
                return batch(pool, hosts)
            return _roll(lambda group: batch(pool, group), hosts, rolling, progress)
        finally:  # abandoned: the threads still running are left behind (the program exits without them)
            pool.shutdown(wait=not RUN.abandoned, cancel_futures=True)


def _wait(futures: Sequence[Future[Any]], grace: float) -> None:
    """Wait for `futures`, unless Ctrl-C abandons them: a second one, or `grace` seconds after the first."""
    pending = set(futures)
    while pending:
        _, pending = wait(pending, timeout=0.1)
        if RUN.stopping and not RUN.abandoned and RUN.grace_over(grace):
            RUN.abandon()
        if RUN.abandoned:
            return


def _with_steps(message: str, steps: Sequence[StepRecord]) -> str:
    """`message`, and where the host's steps stood when it failed (when it had any)."""
    said = summary(steps)
    return f"{message} ({said})" if said else message


def _abandoned(host: Host, hc: HostContext | None) -> Outcome[Any]:
    """The outcome of a host still at work when the fleet stopped waiting (Ctrl-C): from its journal."""
    if hc is None:
        return Outcome(host, error="abandoned (Ctrl-C) while connecting: nothing done", kind="skipped")
    steps = hc.journal.records()
    running = in_states(steps, StepState.RUNNING)
    if running:
        what = "; ".join((f"`{s.command}` for {s.what}" if s.command and s.what else s.label)
                         + (f" ({s.seconds:.0f} s in)" if s.seconds is not None else "") for s in running)
        error = f"abandoned (Ctrl-C) while running {what}: it may be half-done"
    else:
        error = "abandoned (Ctrl-C) before it finished"
    others = [s for s in steps if s.state is not StepState.RUNNING]
    return Outcome(host, error=_with_steps(error, others), kind="interrupted", steps=steps)


def _roll(batch: Callable[[Sequence[Host]], list[Outcome[T]]], hosts: Sequence[Host], rolling: Rolling,
          progress: Progress) -> list[Outcome[T]]:
    """Batch after batch; at a failure that stops the roll (or Ctrl-C), every host left gets a `skipped` outcome."""
    out: list[Outcome[T]] = []
    batches = rolling.batches(hosts)
    for i, group in enumerate(batches):
        if RUN.stopping:
            left = [h for b in batches[i:] for h in b]
            for h in left:
                progress.done(h.name, "not started")
            return out + [Outcome(h, error="not started: interrupted (Ctrl-C)", kind="skipped") for h in left]
        done = batch(group)
        out.extend(done)
        bad = [o.host.name for o in done if not o.ok]
        if bad and not RUN.stopping and (i == 0 or not rolling.keep_going) and i + 1 < len(batches):
            left = [h for b in batches[i + 1:] for h in b]
            why = stop_reason(bad, rolling, canary=i == 0 and len(batches) > 1)
            for h in left:
                progress.done(h.name, "not attempted")
            return out + [Outcome(h, error=why, kind="skipped") for h in left]
    return out


def stop_reason(bad: Sequence[str], rolling: Rolling, *, canary: bool) -> str:
    """Why the hosts after a failed batch were not attempted, in one sentence."""
    which = ("the canary batch" if canary else rolling.spelled if rolling.origin == "--serial"
             else f"the rolling setting of {rolling.origin}")
    after = "" if canary or rolling.keep_going else "; --keep-going goes on past a failed host"
    return f"not attempted: {', '.join(bad)} failed and {which} stops there{after}"


def close_all(contexts: dict[str, HostContext]) -> None:
    """Close the contexts `each` kept open for later passes, all at once (as `each` closes its own)."""
    if contexts:
        with ThreadPoolExecutor(max_workers=len(contexts), thread_name_prefix="close") as pool:
            list(pool.map(HostContext.close, contexts.values()))
        contexts.clear()
