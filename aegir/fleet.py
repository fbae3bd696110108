"""Run one function per host, in parallel, and collect one result per host.

`each(c, hosts, fn)` opens a `HostContext` (`aegir.host`) for every host, calls
``fn(hc)`` in a bounded thread pool, never stops at the first failure, and
returns an `Outcome` per host in inventory order: its value, or why it failed
(unreachable, refused host key, a command that failed, ...).
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
from aegir.inventory import Host
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
    kind: str = "ok"  # ok | unreachable | failed | bug
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
) -> list[Outcome[T]]:
    """Run ``fn(hc)`` on every host in parallel; one `Outcome` per host, in order.

    At most `limit` hosts at once (default ``aegir.parallel`` from the config,
    else 32). A host that cannot be reached, or whose `fn` raises an
    `AegirError`, gets an outcome saying why; the others carry on. Any other
    exception is a bug: its traceback goes to stderr and the row says so.

    ``serial=True`` runs the hosts one after another in the calling thread,
    with no progress line: for interactive work (a prompt owns the terminal,
    Ctrl-C reaches it, prompts come in inventory order).
    """
    if limit is None:
        limit = int((c.config.get("aegir") or {}).get("parallel") or DEFAULT_LIMIT)
    limit = max(1, min(limit, len(hosts) or 1))

    def one(host: Host) -> Outcome[T]:
        start = time.monotonic()
        hc: HostContext | None = None
        try:
            hc = open_context(c, host)
            value = fn(hc)
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
            if hc is not None:
                hc.close()
            progress.done(host.name)

    if serial:
        progress = Progress(label, [])  # never started: nothing may write over a prompt
        return [one(h) for h in hosts]
    with Progress(label, [h.name for h in hosts]) as progress:
        with ThreadPoolExecutor(max_workers=limit, thread_name_prefix="aegir") as pool:
            return list(pool.map(one, hosts))


