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
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from aegir.errors import AegirError, UnreachableError
from aegir.host import HostContext, open_context
from aegir.inventory import Host, Rolling
from aegir.report import Progress

if TYPE_CHECKING:  # pragma: no cover
    from invoke import Context

T = TypeVar("T")

DEFAULT_LIMIT = 32


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """What happened on one host: a value, or an error message and its kind."""

    host: Host
    value: T | None = None
    error: str | None = None
    kind: str = "ok"  # ok | unreachable | failed | bug | skipped (a roll stopped before it)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.kind == "ok"

    @property
    def status(self) -> str:
        """One cell for a table: 'ok', or the kind and reason."""
        return "ok" if self.ok else f"{self.kind.upper()}: {self.error}"


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
    """
    if limit is None:
        limit = int((c.config.get("aegir") or {}).get("parallel") or DEFAULT_LIMIT)
    limit = max(1, min(limit, len(hosts) or 1))

    def attempt(host: Host) -> Outcome[T]:
        start = time.monotonic()
        hc: HostContext | None = None
        try:
            hc = contexts.get(host.name) if contexts is not None else None
            if hc is None:
                hc = open_context(c, host)
                if contexts is not None:
                    contexts[host.name] = hc
            value = fn(hc)
            why = fails(value) if fails is not None else None
            if why:
                return Outcome(host, value, error=why, kind="failed", seconds=time.monotonic() - start)
            return Outcome(host, value, seconds=time.monotonic() - start)
        except UnreachableError as exc:
            return Outcome(host, error=exc.message, kind="unreachable", seconds=time.monotonic() - start)
        except AegirError as exc:
            return Outcome(host, error=exc.message, kind="failed", seconds=time.monotonic() - start)
        except Exception as exc:  # a bug: keep the other hosts' results, show the traceback
            traceback.print_exc(file=sys.stderr)
            return Outcome(host, error=f"internal error {type(exc).__name__}: {exc}", kind="bug",
                           seconds=time.monotonic() - start)
        finally:
            if hc is not None and contexts is None:
                hc.close()

    def one(host: Host) -> Outcome[T]:
        outcome = attempt(host)
        progress.done(host.name, outcome.kind)
        return outcome

    if serial:
        progress = Progress(label, [])  # never started: nothing may write over a prompt
        return [one(h) for h in hosts]
    with Progress(label, [h.name for h in hosts]) as progress:
        with ThreadPoolExecutor(max_workers=limit, thread_name_prefix="aegir") as pool:
            if rolling is None:
                return list(pool.map(one, hosts))
            return _roll(pool, hosts, one, rolling, progress)


def _roll(pool: ThreadPoolExecutor, hosts: Sequence[Host], one: Callable[[Host], Outcome[T]],
          rolling: Rolling, progress: Progress) -> list[Outcome[T]]:
    """Batch after batch; at a failure that stops the roll, every host left gets a `skipped` outcome."""
    out: list[Outcome[T]] = []
    batches = rolling.batches(hosts)
    for i, batch in enumerate(batches):
        done = list(pool.map(one, batch))
        out.extend(done)
        bad = [o.host.name for o in done if not o.ok]
        if bad and (i == 0 or not rolling.keep_going) and i + 1 < len(batches):
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
