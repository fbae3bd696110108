"""Apps: the Compose projects under /srv/apps and /srv/users (status, lifecycle, logs, lint, templates).

NAMES are folder names (``cloud``) or ``kind/folder`` (``users/wiki``),
comma-separated: ``inv apps.up cloud,wiki``. Without -H a name acts on every
host that has it; a name no target host has is an error.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

from invoke import Collection, Exit

from aegir import fleet
from aegir.compose import cli as compose
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
from aegir.compose.lint import has_findings, lint_host, lint_json, render_lint
from aegir.compose.status import discover, gather_status, has_problems, render_status, status_json
from aegir.compose.templates import list_templates, new_project, templates_dir
from aegir.errors import AegirError, UsageError
from aegir.host import HostContext, open_context
from aegir.layout import PROJECT_KINDS
from aegir.report import FORMAT_HELP, check_format, emit, failed_row, host_entry, table
from aegir.sh import Cmd
from aegir.tasks.base import confirm, exit_if_failed, fleet_report, is_dry, targets, task

NAMES_HELP = "Projects: folder names or kind/folder, comma-separated (e.g. cloud,users/wiki)."
DRY_HELP = "Print the exact Compose commands and stop."
PARALLEL_HELP = "Projects acted on at once per host (default 4)."
SERVICE_HELP = "Only these services (comma-separated)."


YES_HELP = "Do not ask before stopping projects on several hosts (or a core project)."
ALL_HELP = "Every project of every kind instead of NAMES: core first on the way up, last on the way down."


def act(c: Any, label: str, wanted: Sequence[str], planner: Callable[[HostContext], HostPlan], *, fmt: str,
        dry: bool, yes: bool = False, parallel: int = 4) -> None:
    """The body of every lifecycle task (apps.* and core.*): plan every host, refuse names nothing has
    (exit 2), confirm a destructive plan, then act and verify; one table."""
    fmt = check_format(fmt)
    dry = is_dry(c, dry)
    contexts: dict[str, HostContext] = {}  # one connection per host for both passes
    try:
        plans = plan_fleet(c, targets(c), planner, label=label, dry=dry, contexts=contexts)
        unknown = unknown_everywhere(wanted, plans)
        if unknown:
            silent = [o.host.name for o in plans if not o.ok]
            raise UsageError("; ".join(unknown) + (f" (not asked: {', '.join(silent)}, which did not answer)"
                                                   if silent else "") + "; nothing done")
        question = None if dry else needs_confirmation(plans)
        if question:
            print(render_actions(act_fleet(c, plans, dry=True, label=label), dry=True),
                  file=sys.stderr if fmt == "json" else sys.stdout)
            confirm(question, yes=yes, label=label, verb=label.split(".", 1)[1] + " them")
        outcomes = act_fleet(c, plans, dry=dry, parallel=int(parallel), label=label, contexts=contexts)
    finally:
        fleet.close_all(contexts)
    emit(fmt, data=actions_json(outcomes, dry=dry), text=render_actions(outcomes, dry=dry))
    exit_if_failed(outcomes, problems=actions_failed(outcomes))


def _act(c: Any, label: str, names: str | None, action: str, fmt: str, dry: bool, parallel: int, *, every: bool = False,
         yes: bool = False, services: str = "", force: bool = True, ignore_failures: bool = False) -> None:
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

    act(c, label, wanted, planner, fmt=fmt, dry=dry, yes=yes, parallel=parallel)


def split_services(services: str) -> tuple[str, ...]:
    return tuple(s for s in services.replace(",", " ").split() if s)


@task(help={"names": NAMES_HELP + " Default: every project.", "format": FORMAT_HELP})
def status(c, names="", format="table"):
    """Show the state of every Compose project (core first): services, problems, image age."""
    wanted = split_names(names)
    fleet_report(c, format, "apps.status", lambda hc: gather_status(hc, wanted),
                 data=status_json, text=render_status, problems=has_problems)


@task(help={"names": NAMES_HELP, "force": "Start even while a core project is down.", "all": ALL_HELP,
            "dry": DRY_HELP, "parallel": PARALLEL_HELP, "format": FORMAT_HELP})
def up(c, names, force=False, all=False, dry=False, parallel=4, format="table"):
    """Bring projects up (`compose up -d`); refuse while a core project is down unless --force."""
    _act(c, "apps.up", names, "up", format, dry, parallel, every=all, force=force)


@task(help={"names": NAMES_HELP, "all": ALL_HELP, "yes": YES_HELP, "dry": DRY_HELP, "parallel": PARALLEL_HELP,
            "format": FORMAT_HELP})
def down(c, names, all=False, yes=False, dry=False, parallel=4, format="table"):
    """Stop and remove projects' containers (`compose down`; volumes and data stay)."""
    _act(c, "apps.down", names, "down", format, dry, parallel, every=all, yes=yes)


@task(help={"names": NAMES_HELP, "all": ALL_HELP, "yes": YES_HELP, "dry": DRY_HELP, "parallel": PARALLEL_HELP,
            "format": FORMAT_HELP})
def stop(c, names, all=False, yes=False, dry=False, parallel=4, format="table"):
    """Stop projects' containers and keep them (`compose stop`); `apps.up` starts them again."""
    _act(c, "apps.stop", names, "stop", format, dry, parallel, every=all, yes=yes)


@task(help={"names": NAMES_HELP, "service": SERVICE_HELP, "all": ALL_HELP, "yes": YES_HELP, "dry": DRY_HELP,
            "parallel": PARALLEL_HELP, "format": FORMAT_HELP})
def restart(c, names, service="", all=False, yes=False, dry=False, parallel=4, format="table"):
    """Restart projects, or some of their services (`compose restart`)."""
    _act(c, "apps.restart", names, "restart", format, dry, parallel, every=all, yes=yes, services=service)


@task(help={"names": NAMES_HELP, "ignore_failures": "Keep going past images that cannot be pulled.",
            "all": ALL_HELP, "dry": DRY_HELP, "parallel": PARALLEL_HELP, "format": FORMAT_HELP})
def pull(c, names, ignore_failures=False, all=False, dry=False, parallel=4, format="table"):
    """Pull projects' images (`compose pull`) and say which images changed; containers are not touched."""
    _act(c, "apps.pull", names, "pull", format, dry, parallel, every=all, ignore_failures=ignore_failures)


@task(help={"names": NAMES_HELP, "service": SERVICE_HELP, "force": "Update even while a core project is down.",
            "ignore_failures": "Keep going past images that cannot be pulled.", "dry": DRY_HELP,
            "parallel": PARALLEL_HELP, "format": FORMAT_HELP})
def update(c, names, service="", force=False, ignore_failures=False, dry=False, parallel=4, format="table"):
    """Pull projects' images, then `compose up -d`: only containers whose image or config changed are recreated."""
    _act(c, "apps.update", names, "update", format, dry, parallel, services=service, force=force,
         ignore_failures=ignore_failures)


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


@task(help={"name": "One project: folder name or kind/folder.", "service": SERVICE_HELP,
            "follow": "Keep streaming new lines (one host only).", "tail": "Only the last N lines per container."})
def logs(c, name, service="", follow=False, tail=None):
    """Print a project's logs (any kind), from every target host that has it."""
    show_logs(c, "apps.logs", name, service, follow, tail)


@task(name="compose", help={"name": "One project (any kind: core, apps, users): folder name or kind/folder."})
def compose_(c, name):
    """Run any Compose subcommand for a project: `inv apps.compose NAME -- ps` (exec -T, top, images...).

    Everything after a lone `--` goes to Compose as it was typed (argv, never a
    shell), with the project's --project-directory/-f/-p/--env-file in front, on
    every target host that has the project. No terminal is allocated: use
    `exec -T`. Exit 1 when Compose fails on a host.
    """
    args = list((c.config.get("aegir") or {}).get("remainder") or [])
    if not args:
        raise UsageError("apps.compose: put the Compose subcommand after '--': inv apps.compose NAME -- ps")
    on_each_host(c, "apps.compose", name, lambda hc, p: compose.passthrough(
        compose.flavour(hc), p, args, docker_host=hc.host.docker_host))


@task(help={"names": NAMES_HELP + " Default: every project.", "format": FORMAT_HELP})
def lint(c, names="", format="table"):
    """Check that compose files are publishable: site data only through .env variables."""
    wanted = split_names(names)
    fleet_report(c, format, "apps.lint", lambda hc: lint_host(hc, wanted),
                 data=lint_json, text=render_lint, problems=has_findings)


@task(help={"format": FORMAT_HELP})
def templates(c, format="table"):
    """List the service templates under /srv/templates on every host."""
    fmt = check_format(format)
    outcomes = fleet.each(c, targets(c), list_templates, label="apps.templates")
    rows = [[o.host.name, t.name, t.file or "MISSING", "yes" if t.env_example else "no", "yes" if t.conf else "no"]
            for o in outcomes if o.value for t in o.value]
    rows += [[o.host.name, None, f"no {templates_dir(o.host.srv)}", None, None] for o in outcomes
             if o.ok and o.value is None]
    rows += [failed_row(o, 5, at=2) for o in outcomes if not o.ok]
    data = {"hosts": [host_entry(o, templates=list(o.value or ())) for o in outcomes]}
    emit(fmt, data=data, text=table(["HOST", "TEMPLATE", "COMPOSE FILE", ".ENV.EXAMPLE", "CONF/"], rows)
         if rows else "no templates")
    exit_if_failed(outcomes)


@task(help={"name": "The new project's folder name.", "template": "Template folder under /srv/templates.",
            "users": "Make it under /srv/users instead of /srv/apps.", "dry": "Print the commands and stop.",
            "format": FORMAT_HELP})
def new(c, name, template, users=False, dry=False, format="table"):
    """Make a project folder from a template (.env.example -> .env mode 0600, empty data/); never overwrite."""
    fmt = check_format(format)
    hosts = targets(c)
    if len(hosts) != 1:
        raise AegirError(f"apps.new makes a project on one host; choose it with -H (targets: "
                         f"{', '.join(h.name for h in hosts)})")
    dry = is_dry(c, dry)
    outcomes = fleet.each(c, hosts, lambda hc: new_project(hc, name, template, users=users, dry=dry),
                          label="apps.new")
    rows = [[o.host.name, o.value.project, line, result] for o in outcomes if o.value for line, result in o.value.steps]
    rows += [failed_row(o, 4) for o in outcomes if not o.ok]
    text = table(["HOST", "PROJECT", "COMMAND", "RESULT"], rows)
    text += "".join(f"\nverified: {o.value.verified}" for o in outcomes if o.value and o.value.verified)
    emit(fmt, data={"dry": dry, "hosts": [host_entry(o, result=o.value) for o in outcomes]}, text=text)
    exit_if_failed(outcomes, problems=any(o.value is not None and not o.value.ok for o in outcomes))


ns = Collection("apps")
for _t in (status, up, down, stop, restart, pull, update, logs, compose_, lint, templates, new):
    ns.add_task(_t)
