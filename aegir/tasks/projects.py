"""The bodies shared by the apps.* and core.* tasks: plan, refuse, confirm, act, verify; per-project commands.

`aegir.tasks.apps` and `aegir.tasks.core` import this module inside their
task bodies, so that `inv --list` never loads Compose, the fleet or SSH.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

from invoke import Exit

from aegir import fleet
from aegir.action import go_on_without
from aegir.compose import commands as compose
from aegir.compose.discovery import Project, select, split_names, unknown_names
from aegir.compose.lifecycle import (
    HostPlan,
    act_fleet,
    actions_failed,
    actions_json,
    check_core_up,
    needs_confirmation,
    plan_fleet,
    plan_host,
    render_actions,
    unknown_everywhere,
)
from aegir.compose.status import discover
from aegir.errors import AegirError, UsageError
from aegir.host import HostContext, open_context
from aegir.interrupt import RUN
from aegir.layout import PROJECT_KINDS
from aegir.report import check_format, emit
from aegir.sh import Cmd
from aegir.tasks.base import confirm, exit_if_failed, is_dry, rolling, targets


def act(c: Any, label: str, wanted: Sequence[str], planner: Callable[[HostContext], HostPlan], *, fmt: str,
        dry: bool, yes: bool = False, parallel: int = 4, serial: str | None = None, keep_going: bool = False,
        all_or_nothing: bool = False) -> None:
    """The body of every lifecycle task (apps.* and core.*): plan every host, refuse names nothing has
    (exit 2), confirm a destructive plan, then act (rolling: --serial, or the hosts' group setting) and
    verify; one table.

    Hosts that could not be reached or planned are left out and the others acted on (one line
    says so), unless ``--all-or-nothing``; in a roll they count as failed hosts. After Ctrl-C
    nothing more starts, and the exit line says how to see and finish (exit 130)."""
    fmt = check_format(fmt)
    dry = is_dry(c, dry)
    hosts = targets(c)
    roll = None if dry else rolling(c, hosts, serial, keep_going)
    contexts: dict[str, HostContext] = {}  # one connection per host for both passes
    try:
        plans = plan_fleet(c, hosts, planner, label=label, dry=dry, contexts=contexts)
        unknown = unknown_everywhere(wanted, plans)
        if unknown:
            silent = [o.host.name for o in plans if not o.ok]
            raise UsageError("; ".join(unknown) + (f" (not asked: {', '.join(silent)}, which did not answer)"
                                                   if silent else "") + "; nothing done")
        question = None if dry or RUN.stopping else needs_confirmation(plans)
        if question:
            print(render_actions(act_fleet(c, plans, dry=True, label=label), dry=True),
                  file=sys.stderr if fmt == "json" else sys.stdout)
            confirm(question, yes=yes, label=label, verb=label.split(".", 1)[1] + " them")
        acting = [o.host for o in plans if o.value is not None and o.value.steps]
        settled = {} if dry or RUN.stopping else go_on_without(plans, acting, all_or_nothing=all_or_nothing,
                                                                roll=roll)
        outcomes = act_fleet(c, plans, dry=dry, parallel=int(parallel), label=label, contexts=contexts, rolling=roll,
                             settled=settled)
    finally:
        fleet.close_all(contexts)
    emit(fmt, data=actions_json(outcomes, dry=dry), text=render_actions(outcomes, dry=dry))
    exit_if_failed(outcomes, problems=actions_failed(outcomes), see=f"inv {label.split('.')[0]}.status")


def act_on_names(c: Any, label: str, names: str | None, action: str, fmt: str, dry: bool, parallel: int, *,
                 every: bool = False, yes: bool = False, services: str = "", force: bool = True,
                 ignore_failures: bool = False, serial: str | None = None, keep_going: bool = False,
                 all_or_nothing: bool = False) -> None:
    """apps.up/down/restart/pull/stop/update: NAMES (apps and users), or --all (core too)."""
    wanted = split_names(names)
    if every and wanted:
        raise UsageError(f"{label}: --all or names, not both")
    if not wanted and not every:
        raise UsageError(f"{label}: name at least one project (or --all)")
    svcs = split_services(services)

    def planner(hc: HostContext) -> HostPlan:
        plan = plan_host(hc, wanted, action, svcs, ignore_failures=ignore_failures, refuse_core=not every)
        if plan.steps and not force and not every:
            check_core_up(hc)
        return plan

    act(c, label, wanted, planner, fmt=fmt, dry=dry, yes=yes, parallel=parallel, serial=serial, keep_going=keep_going,
        all_or_nothing=all_or_nothing)


def split_services(services: str) -> tuple[str, ...]:
    return tuple(s for s in services.replace(",", " ").split() if s)


def on_each_host(c: Any, label: str, name: str, make: Callable[[HostContext, Project], Cmd], *,
                 kinds: Sequence[str] = PROJECT_KINDS, one_host: str | None = None) -> None:
    """Run one project's command (logs, a Compose passthrough) on every target host that has it, output
    streamed (a ``==> HOST PROJECT <==`` header when there are several); exit 1 when one fails.

    A name no target host has is refused (exit 2, "did you mean"); `one_host`
    (why) refuses when the project is on several hosts.
    """
    wanted = split_names(name)
    if len(wanted) != 1:
        raise UsageError(f"{label} takes exactly one project")
    found = fleet.each(c, targets(c), lambda hc: discover(hc).projects, label=label)
    for o in found:
        if not o.ok:
            print(f"{o.host.name}: {o.status}", file=sys.stderr)
    unknown = unknown_names(wanted, [p for o in found for p in o.value or () if p.kind in kinds])
    if unknown and any(o.ok for o in found):
        raise UsageError(unknown[0])
    where = [(o.host, p) for o in found for p in select(o.value or (), wanted, kinds, host=o.host.name)[0]]
    if not where:
        raise AegirError(f"no project {wanted[0]!r} on any target host that answered")
    if one_host and len(where) > 1:
        raise AegirError(f"{wanted[0]} is on {', '.join(h.name for h, _ in where)}: {one_host}, choose it with -H")
    bad = []
    for host, project in where:
        hc = open_context(c, host)
        try:
            cmd = make(hc, project)
            if len(where) > 1:
                print(f"==> {host.name} {project.path} <==", flush=True)
            if hc.run(cmd, stream=True, check=False).exited != 0:
                bad.append(host.name)
        finally:
            hc.close()
    if bad or any(not o.ok for o in found):
        raise Exit(f"aegir: failed on {', '.join(bad + [o.host.name for o in found if not o.ok])}", code=1)


def show_logs(c: Any, label: str, name: str, service: str, follow: bool, tail: Any, *,
              kinds: Sequence[str] = PROJECT_KINDS) -> None:
    """apps.logs and core.logs: a project's logs from every target host that has it."""
    svcs = split_services(service)
    if tail is not None and not str(tail).isdigit():
        raise AegirError(f"--tail must be a number of lines (0 or more), not {tail!r}")
    on_each_host(c, label, name, lambda hc, p: compose.logs(
        compose.flavour(hc), p, svcs, follow=follow, tail=None if tail is None else int(tail),
        docker_host=hc.host.docker_host), kinds=kinds, one_host="--follow streams one host" if follow else None)


