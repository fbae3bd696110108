"""Apps: the Compose projects under /srv/apps and /srv/users (status, lifecycle, logs, lint, templates).

NAMES are folder names (``cloud``) or ``kind/folder`` (``users/wiki``),
comma-separated: ``inv apps.up cloud,wiki``. Without -H a name acts on every
host that has it; a name no target host has is an error.
"""

from __future__ import annotations

from typing import Any

from invoke import Collection

from aegir import fleet
from aegir.compose import cli as compose
from aegir.compose.discovery import select, split_names
from aegir.compose.lifecycle import actions_failed, actions_json, check_core_up, host_actions, plan_apps, render_actions
from aegir.compose.lint import has_findings, lint_host, lint_json, render_lint
from aegir.compose.status import discover, gather_status, has_problems, render_status, status_json
from aegir.compose.templates import list_templates, new_project, templates_dir
from aegir.errors import AegirError
from aegir.host import HostContext, open_context
from aegir.report import FORMAT_HELP, check_format, emit, failed_row, host_entry, table
from aegir.tasks.base import exit_if_failed, fleet_report, is_dry, targets, task

NAMES_HELP = "Projects: folder names or kind/folder, comma-separated (e.g. cloud,users/wiki)."
DRY_HELP = "Print the exact Compose commands and stop."
PARALLEL_HELP = "Projects acted on at once per host (default 4)."
SERVICE_HELP = "Only these services (comma-separated)."


def _act(c: Any, label: str, names: str, action: str, fmt: str, dry: bool, parallel: int, *,
         services: str = "", force: bool = True, ignore_failures: bool = False) -> None:
    """The shared body of apps.up/down/restart/pull: plan per host, show or act, one table."""
    fmt = check_format(fmt)
    wanted = split_names(names)
    if not wanted:
        raise AegirError(f"{label}: name at least one project")
    svcs = tuple(s for s in services.replace(",", " ").split() if s)
    dry = is_dry(c, dry)

    def one(hc: HostContext):
        def plan():
            steps, missing = plan_apps(hc, wanted, action, svcs, ignore_failures=ignore_failures)
            if steps and not force:
                check_core_up(hc)
            return steps, missing
        return host_actions(hc, plan, dry=dry, parallel=int(parallel))

    outcomes = fleet.each(c, targets(c), one, label=label)
    emit(fmt, data=actions_json(outcomes, dry=dry), text=render_actions(outcomes, dry=dry))
    exit_if_failed(outcomes, problems=actions_failed(outcomes))


@task(help={"names": NAMES_HELP + " Default: every project.", "format": FORMAT_HELP})
def status(c, names="", format="table"):
    """Show the state of every Compose project (core first): services, problems, image age."""
    wanted = split_names(names)
    fleet_report(c, format, "apps.status", lambda hc: gather_status(hc, wanted),
                 data=status_json, text=render_status, problems=has_problems)


@task(help={"names": NAMES_HELP, "force": "Start even while a core project is down.", "dry": DRY_HELP,
            "parallel": PARALLEL_HELP, "format": FORMAT_HELP})
def up(c, names, force=False, dry=False, parallel=4, format="table"):
    """Bring projects up (`compose up -d`); refuse while a core project is down unless --force."""
    _act(c, "apps.up", names, "up", format, dry, parallel, force=force)


@task(help={"names": NAMES_HELP, "dry": DRY_HELP, "parallel": PARALLEL_HELP, "format": FORMAT_HELP})
def down(c, names, dry=False, parallel=4, format="table"):
    """Stop and remove projects' containers (`compose down`; volumes and data stay)."""
    _act(c, "apps.down", names, "down", format, dry, parallel)


@task(help={"names": NAMES_HELP, "service": SERVICE_HELP, "dry": DRY_HELP, "parallel": PARALLEL_HELP,
            "format": FORMAT_HELP})
def restart(c, names, service="", dry=False, parallel=4, format="table"):
    """Restart projects, or some of their services (`compose restart`)."""
    _act(c, "apps.restart", names, "restart", format, dry, parallel, services=service)


@task(help={"names": NAMES_HELP, "ignore_failures": "Keep going past images that cannot be pulled.",
            "dry": DRY_HELP, "parallel": PARALLEL_HELP, "format": FORMAT_HELP})
def pull(c, names, ignore_failures=False, dry=False, parallel=4, format="table"):
    """Pull projects' images (`compose pull`) and say which images changed; containers are not touched."""
    _act(c, "apps.pull", names, "pull", format, dry, parallel, ignore_failures=ignore_failures)


@task(help={"name": "One project: folder name or kind/folder.", "service": SERVICE_HELP,
            "follow": "Keep streaming new lines (one host only).", "tail": "Only the last N lines per container."})
def logs(c, name, service="", follow=False, tail=None):
    """Print a project's logs (any kind), from every target host that has it."""
    wanted = split_names(name)
    if len(wanted) != 1:
        raise AegirError("apps.logs takes exactly one project")
    svcs = tuple(s for s in service.replace(",", " ").split() if s)
    if tail is not None and not str(tail).isdigit():
        raise AegirError(f"--tail must be a number of lines (0 or more), not {tail!r}")
    found = fleet.each(c, targets(c), lambda hc: select(discover(hc).projects, wanted, host=hc.name)[0],
                       label="apps.logs")
    for o in found:
        if not o.ok:
            print(f"{o.host.name}: {o.status}")
    where = [(o.host, o.value[0]) for o in found if o.value]
    if not where:
        raise AegirError(f"no project {wanted[0]!r} on any target host that answered")
    if follow and len(where) > 1:
        raise AegirError(f"{wanted[0]} is on {', '.join(h.name for h, _ in where)}: "
                         "--follow streams one host, choose it with -H")
    for host, project in where:
        hc = open_context(c, host)
        try:
            cmd = compose.logs(compose.flavour(hc), project, svcs, follow=follow,
                               tail=None if tail is None else int(tail), docker_host=host.docker_host)
            if len(where) > 1:
                print(f"==> {host.name} {project.path} <==", flush=True)
            hc.run(cmd, stream=True)
        finally:
            hc.close()
    if any(not o.ok for o in found):
        exit_if_failed(found)


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
for _t in (status, up, down, restart, pull, logs, lint, templates, new):
    ns.add_task(_t)
