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

Beyond one core: a read-only pass that says its results can travel (``processes=True``:
picklable values) over more than ``aegir.process_hosts`` hosts (default 250) is split in
contiguous chunks, one forked worker process each (at most ``aegir.processes``, default
the machine's cores), each running the thread path on its chunk and sending its outcomes
back as data (pickled, the host by its index); the fleet's per-host CPU (SSH handshakes,
paramiko's packets, parsing) is then spread over the cores instead of one GIL. Smaller
fleets keep the thread path (a fork and the pickling cost more than they save there).

Ctrl-C (`aegir.interrupt`): while hosts work in parallel, the first one starts
no new host (those left are ``skipped``, "not started"); running hosts stop
before their next step (``interrupted``); after ``timeouts.interrupt`` seconds,
or at a second Ctrl-C, the fleet stops waiting and reports each host still
running from its journal ("abandoned while running ...: it may be half-done").
"""

from __future__ import annotations

import os
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
from aegir.report import Progress, say

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
    processes: bool = False,
    progress_stream: Any = None,
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

    `processes`: `fn`'s values can be pickled, so a large fleet may be split over worker
    processes (see the module's docstring); never with `serial`, `rolling`, `contexts` or `settled`.
    """
    if limit is None:
        limit = int((c.config.get("aegir") or {}).get("parallel") or DEFAULT_LIMIT)
    workers = _workers(c, len(hosts)) if processes and not (serial or rolling or contexts is not None or settled) else 1
    if workers > 1:
        return _in_processes(c, hosts, fn, workers, label=label, limit=limit, fails=fails)
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
            # a bug: keep the other hosts' results, show the traceback (escaped: its message may quote a host)
            say(traceback.format_exc().rstrip("\n"), err=True)
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

    with RUN.guard(grace), Progress(label, [h.name for h in hosts], stream=progress_stream) as progress:
        pool = ThreadPoolExecutor(max_workers=limit, thread_name_prefix="aegir")
        try:
            if rolling is None:
                return batch(pool, hosts)
            return _roll(lambda group: batch(pool, group), hosts, rolling, progress)
        finally:  # abandoned: the threads still running are left behind (the program exits without them)
            pool.shutdown(wait=not RUN.abandoned, cancel_futures=True)


def _workers(c: "Context", n: int) -> int:
    """How many worker processes `n` hosts get: 1 (the thread path) up to ``aegir.process_hosts`` hosts,
    else one per that many hosts, at most ``aegir.processes`` (default: the machine's cores)."""
    settings = c.config.get("aegir") or {}
    per = max(1, int(settings.get("process_hosts") or PROCESS_HOSTS))
    most = int(settings.get("processes") or os.cpu_count() or 1)
    if n <= per or most <= 1 or not hasattr(os, "fork"):
        return 1
    return min(most, -(-n // per))


#: Hosts per worker process (``aegir.process_hosts``): fewer hosts than this are read by threads alone.
PROCESS_HOSTS = 250

#: Seconds a worker process has, once the fleet stopped waiting (Ctrl-C), to send what it has.
WORKER_GRACE = 2.0


def _in_processes(c: "Context", hosts: Sequence[Host], fn: Callable[[HostContext], T], workers: int, *,
                  label: str, limit: int, fails: Callable[[T], str | None] | None) -> list[Outcome[T]]:
    """`each` over `workers` forked processes, one contiguous chunk of `hosts` each, outcomes in order.

    A worker runs the thread path on its chunk and writes its outcomes to a pipe, pickled (the host
    by its index in `hosts`: an inventory entry holds read-only mappings, which do not pickle), then
    leaves with ``os._exit``. Ctrl-C: the workers ignore SIGINT (a terminal sends it to the whole group,
    a ``kill -INT`` to the parent alone) and the parent passes on each Ctrl-C it counts as a SIGUSR1,
    so every worker stops starting hosts, then abandons its running steps, exactly as the parent does
    (`aegir.interrupt`; quiet: the parent alone says so), and sends what it has; the parent waits
    `WORKER_GRACE` seconds more after abandoning, then ends the workers still at work (by pid) and
    reports their hosts abandoned.
    """
    import pickle
    import selectors
    import signal

    from aegir.host import fabric_config

    fabric_config(c.config)  # Fabric, paramiko and the operator's ssh_config: once, before the fork
    size = -(-len(hosts) // workers)
    chunks = [list(range(i, min(i + size, len(hosts)))) for i in range(0, len(hosts), size)]
    grace = Deadlines.of(c.config).interrupt
    out: dict[int, Outcome[T]] = {}
    with RUN.guard(grace), Progress(label, [h.name for h in hosts]) as progress:
        children: dict[int, tuple[int, list[int], bytearray]] = {}  # read fd -> (pid, indexes, bytes)
        for chunk in chunks:
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:  # the worker
                os.close(r)
                _worker(c, [hosts[i] for i in chunk], chunk, fn, w, label=label, fails=fails,
                        limit=max(1, limit // len(chunks)))  # `limit` hosts at once in all, as threads
            os.close(w)
            children[r] = (pid, chunk, bytearray())
        sel = selectors.DefaultSelector()
        for r in children:
            sel.register(r, selectors.EVENT_READ)
        abandoned_at: float | None = None
        told = 0  # Ctrl-Cs passed on to the workers (they ignore SIGINT: see `_worker`)
        live = set(children)
        while live:
            while told < (2 if RUN.abandoned else 1 if RUN.stopping else 0):
                told += 1
                for fd in live:
                    os.kill(children[fd][0], signal.SIGUSR1)
            for key, _ in sel.select(timeout=0.1):
                r = key.fd if isinstance(key.fd, int) else key.fd.fileno()
                pid, chunk, data = children[r]
                got = os.read(r, 1 << 20)
                if got:
                    data += got
                    continue
                sel.unregister(r)
                live.discard(r)
                os.close(r)
                os.waitpid(pid, 0)
                for i, outcome in _unpickled(pickle, bytes(data), hosts, chunk):
                    out[i] = outcome
                    progress.done(hosts[i].name, outcome.kind)
            if RUN.stopping and not RUN.abandoned and RUN.grace_over(grace):
                RUN.abandon()
            if RUN.abandoned:
                abandoned_at = abandoned_at or time.monotonic()
                if time.monotonic() - abandoned_at > WORKER_GRACE:
                    for fd in list(live):
                        pid, chunk, _ = children[fd]
                        sel.unregister(fd)
                        live.discard(fd)
                        os.close(fd)
                        os.kill(pid, signal.SIGKILL)
                        os.waitpid(pid, 0)
                        for i in chunk:
                            out[i] = Outcome(hosts[i], error="abandoned (Ctrl-C): its worker process was ended "
                                             "before it answered: it may be half-done", kind="interrupted")
                            progress.done(hosts[i].name, "abandoned")
        sel.close()
    return [out[i] for i in range(len(hosts))]


def _worker(c: "Context", hosts: list[Host], indexes: list[int], fn: Callable[[HostContext], T], w: int, *,
            label: str, limit: int, fails: Callable[[T], str | None] | None) -> None:
    """A worker process of `_in_processes`: the thread path on `hosts`, outcomes pickled to fd `w`; never returns."""
    import io
    import pickle
    import signal

    code = 0
    try:
        RUN.quiet = True
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGUSR1, lambda signum, frame: RUN.interrupt())
        # Fresh streams: a thread of the parent may have held the old ones' locks at the fork.
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), errors="backslashreplace",
                                      line_buffering=True)
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), errors="backslashreplace")
        quiet = io.StringIO()
        outcomes = each(c, hosts, fn, label=label, limit=limit, fails=fails, progress_stream=quiet)
        sent = []
        for i, o in zip(indexes, outcomes):
            try:
                sent.append(pickle.dumps((i, o.value, o.error, o.kind, o.seconds, o.steps)))
            except Exception as exc:  # a value that cannot travel: a bug of the task that asked for processes
                sent.append(pickle.dumps((i, None, f"internal error: the result could not be sent back "
                                             f"from the worker process: {exc}", "bug", o.seconds, o.steps)))
        data = pickle.dumps(sent)
        view = memoryview(data)
        while view:
            view = view[os.write(w, view):]
    except BaseException:  # anything else: the parent reports the chunk's hosts as failed
        say(traceback.format_exc().rstrip("\n"), err=True)
        code = 1
    finally:
        try:
            sys.stderr.flush()
        except Exception:
            pass
        os._exit(code)


def _unpickled(pickle: Any, data: bytes, hosts: Sequence[Host], chunk: list[int]) -> list[tuple[int, Outcome[Any]]]:
    """The outcomes a worker sent for the hosts at `chunk`; a worker that died says so on each of its hosts."""
    try:
        rows = [pickle.loads(one) for one in pickle.loads(data)] if data else []
    except Exception as exc:
        rows, why = [], f"{type(exc).__name__}: {exc}"
    else:
        why = "it exited before it said anything"
    got = {i: Outcome(hosts[i], value, error, kind, seconds, steps) for i, value, error, kind, seconds, steps in rows}
    return [(i, got.get(i) or Outcome(hosts[i], error=f"internal error: its worker process failed ({why})",
                                      kind="bug")) for i in chunk]


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
