"""How a task ends: exit 0, 1 (a host failed or a check found something) or 130 (Ctrl-C), with one last
line naming the hosts, and what to run next when a host was left part-way."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence

from invoke import Exit

from aegir.report import HostResult, printable

EXIT_PROBLEM = 1


def exit_if_failed(outcomes: Sequence[HostResult], *, problems: bool = False, see: str | None = None) -> None:
    """Exit 1 when a host failed (its row already says why) or `problems` is set; 130 after Ctrl-C.

    A host left part-way (a step cut short by a lost connection, a dead daemon, a deadline,
    or abandoned: `aegir.fleet.Outcome.unsure`) gets a line before the last one: `see` (e.g.
    ``inv apps.status``) shows where it stands, the same command again finishes the job.
    """
    from aegir.interrupt import EXIT_INTERRUPTED, RUN

    if RUN.count:
        raise Exit(printable(interrupted_line(outcomes, see)), code=EXIT_INTERRUPTED)
    bad = [o for o in outcomes if o.kind != "ok"]
    if bad or problems:
        unsure = [o.host.name for o in bad if getattr(o, "unsure", False)]
        hint = (f"aegir: {', '.join(unsure)} may be part-way: {_next(see)}\n" if unsure else "")
        raise Exit(printable(hint + hosts_line(bad)) or None, code=EXIT_PROBLEM)


def hosts_line(bad: Sequence[HostResult]) -> str:
    """``aegir: failed on hyp2; not attempted: hyp3`` (a roll's skipped hosts apart), or "" when none."""
    parts = [f"{what} {', '.join(names)}" for what, names in (
        ("failed on", [o.host.name for o in bad if o.kind != "skipped"]),
        ("not attempted:", [o.host.name for o in bad if o.kind == "skipped"])) if names]
    return "aegir: " + "; ".join(parts) if parts else ""


def interrupted_line(outcomes: Sequence[HostResult], see: str | None = None) -> str:
    """After Ctrl-C: each host's state in one line, then how to see and how to finish.

    ``aegir: interrupted (Ctrl-C): done on hyp1; interrupted on hyp2 (may be half-done: hyp2);
    not started: hyp3`` and ``aegir: inv apps.status shows where things stand; run `inv …` again
    to finish``.
    """
    states = [(what, [o.host.name for o in outcomes if test(o)]) for what, test in (
        ("done on", lambda o: o.kind == "ok"),
        ("failed on", lambda o: o.kind in ("failed", "bug")),
        ("unreachable:", lambda o: o.kind == "unreachable"),
        ("interrupted on", lambda o: o.kind == "interrupted"),
        ("not started:", lambda o: o.kind == "skipped"),
        ("may be half-done:", lambda o: bool(getattr(o, "half_done", False))))]
    parts = "; ".join(f"{what} {', '.join(names)}" for what, names in states if names)
    return f"aegir: interrupted (Ctrl-C){': ' + parts if parts else ''}\naegir: {_next(see)}"


def _next(see: str | None) -> str:
    """What to run next after a run left hosts part-way: `see`, and this very command again."""
    again = shlex.join(["inv", *sys.argv[1:]])
    return (f"`{see}` shows where things stand; " if see else "") + f"`{again}` again finishes the job"
