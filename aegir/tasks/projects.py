"""The bodies shared by the apps.* and core.* tasks: the lifecycle action, and per-project commands.

`aegir.tasks.apps` and `aegir.tasks.core` import this module inside their
task bodies, so that `inv --list` never loads Compose, the fleet or SSH.
A lifecycle task builds its `aegir.compose.steps.Lifecycle` here
(`lifecycle`) and runs it with `aegir.tasks.base.act` (plan every host,
refuse names nothing has, stop if dry, confirm, act and verify, one report).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from invoke import Context, Exit

from aegir.compose import commands as compose
from aegir.compose.discovery import Project, select, split_names, unknown_names
from aegir.compose.status import discover
from aegir.compose.steps import Lifecycle, stream_each
from aegir.errors import AegirError, UsageError
from aegir.host import HostContext
from aegir.layout import PROJECT_KINDS
from aegir.report import failed_line, printable, warn
from aegir.sh import Cmd
from aegir.tasks.base import fleet_read, is_dry


def lifecycle(c: Context, label: str, names: str | None, verb: str, *, dry: bool, parallel: int = 4,
              every: bool = False, services: str = "", force: bool = True, ignore_failures: bool = False,
              core: bool = False) -> Lifecycle:
    """The action of apps.up/down/stop/restart/pull/update: NAMES (apps and users), or --all (core too);
    `core`: of core.* (NAMES among the core projects, every one without). The task runs it with
    `aegir.tasks.base.act`.

    Hosts that could not be reached or planned are left out and the others acted on (one line
    says so), unless ``--all-or-nothing``; in a roll they count as failed hosts. After Ctrl-C
    nothing more starts, and the exit line says how to see and finish (exit 130)."""
    wanted = split_names(names)
    if not core and every and wanted:
        raise UsageError(f"{label}: --all or names, not both")
    if not core and not wanted and not every:
        raise UsageError(f"{label}: name at least one project (or --all)")
    return Lifecycle(label, verb, wanted, kinds=("core",) if core else PROJECT_KINDS,
                     services=split_services(services), ignore_failures=ignore_failures,
                     refuse_core=not core and not every, core_first=not core and not force and not every,
                     parallel=parallel, dry=is_dry(c, dry))


def split_services(services: str) -> tuple[str, ...]:
    return tuple(s for s in services.replace(",", " ").split() if s)


def on_each_host(c: Context, label: str, name: str, make: Callable[[HostContext, Project], Cmd], *,
                 kinds: Sequence[str] = PROJECT_KINDS, one_host: str | None = None) -> None:
    """Run one project's command (logs, a Compose passthrough) on every target host that has it, output
    streamed (a ``==> HOST PROJECT <==`` header when there are several); exit 1 when one fails.

    A name no target host has is refused (exit 2, "did you mean"); `one_host`
    (why) refuses when the project is on several hosts.
    """
    wanted = split_names(name)
    if len(wanted) != 1:
        raise UsageError(f"{label} takes exactly one project")
    found = fleet_read(c, label, lambda hc: discover(hc).projects)
    for o in found:
        if not o.ok:
            warn(failed_line(o))
    unknown = unknown_names(wanted, [p for o in found for p in o.value or () if p.kind in kinds])
    if unknown and any(o.ok for o in found):
        raise UsageError(unknown[0])
    where = [(o.host, p) for o in found for p in select(o.value or (), wanted, kinds, host=o.host.name)[0]]
    if not where:
        raise AegirError(f"no project {wanted[0]!r} on any target host that answered")
    if one_host and len(where) > 1:
        raise AegirError(f"{wanted[0]} is on {', '.join(h.name for h, _ in where)}: {one_host}, choose it with -H")
    bad = stream_each(c, where, make)
    if bad or any(not o.ok for o in found):
        raise Exit(printable(f"aegir: failed on {', '.join(bad + [o.host.name for o in found if not o.ok])}"), code=1)


def show_logs(c: Context, label: str, name: str, service: str, follow: bool, tail: int | str | None, *,
              kinds: Sequence[str] = PROJECT_KINDS) -> None:
    """apps.logs and core.logs: a project's logs from every target host that has it."""
    svcs = split_services(service)
    if tail is not None and not str(tail).isdigit():
        raise AegirError(f"--tail must be a number of lines (0 or more), not {tail!r}")
    on_each_host(c, label, name, lambda hc, p: compose.logs(
        compose.flavour(hc), p, svcs, follow=follow, tail=None if tail is None else int(tail),
        docker_host=hc.host.docker_host), kinds=kinds, one_host="--follow streams one host" if follow else None)
