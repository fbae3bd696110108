"""Apps: the Compose projects under /srv/apps and /srv/users (status, lifecycle, logs, lint, templates).

NAMES are folder names (``cloud``) or ``kind/folder`` (``users/wiki``),
comma-separated: ``inv apps.up cloud,wiki``. Without -H a name acts on every
host that has it; a name no target host has is an error.

Compose, the fleet and SSH are imported inside the task bodies (from
`aegir.tasks.projects` and `aegir.compose`): `inv --list` never loads them.
"""

from __future__ import annotations

from invoke import Collection, Context

from aegir.errors import AegirError
from aegir.report import FORMAT_HELP, check_format, emit, failed_row, host_entry, table
from aegir.tasks.base import ALL_OR_NOTHING_HELP, ROLLING_HELP, exit_if_failed, fleet_report, is_dry, targets, task
from aegir.tasks.flags import FOLDER, LINES, PROJECT

NAMES_HELP = "Projects: folder names or kind/folder, comma-separated (e.g. cloud,users/wiki)."
DRY_HELP = "Print the exact Compose commands and stop."
PARALLEL_HELP = "Projects acted on at once per host (default 4)."
SERVICE_HELP = "Only these services (comma-separated)."


YES_HELP = "Do not ask before stopping projects on several hosts (or a core project)."
ALL_HELP = "Every project of every kind instead of NAMES: core first on the way up, last on the way down."


@task(help={"names": NAMES_HELP + " Default: every project.", "format": FORMAT_HELP})
def status(c, names="", format="table"):
    """Show every Compose project's state, core first: services, problems, image age."""
    from aegir.compose.discovery import split_names
    from aegir.compose.status import gather_status, has_problems, render_status, status_json

    wanted = split_names(names)
    fleet_report(c, format, "apps.status", lambda hc: gather_status(hc, wanted),
                 data=status_json, text=render_status, problems=has_problems)


#: The flags every lifecycle task (up, down, stop, restart, pull, update) shares.
LIFECYCLE_HELP = {"names": NAMES_HELP, "dry": DRY_HELP, "parallel": PARALLEL_HELP, "format": FORMAT_HELP,
                  "all_or_nothing": ALL_OR_NOTHING_HELP, **ROLLING_HELP}
PULL_FAILURES_HELP = "Keep going past images that cannot be pulled."


@task(help={**LIFECYCLE_HELP, "force": "Start even while a core project is down.", "all": ALL_HELP})
def up(c: Context, names: str, force: bool = False, all: bool = False, dry: bool = False, parallel: int = 4,
       format: str = "table", serial: str | None = None, keep_going: bool = False,
       all_or_nothing: bool = False) -> None:
    """Bring projects up (`compose up -d`); refuse while core is down unless --force."""
    from aegir.tasks.base import act
    from aegir.tasks.projects import lifecycle

    act(c, lifecycle(c, "apps.up", names, "up", dry=dry, parallel=parallel, every=all, force=force),
        fmt=format, dry=dry, serial=serial, keep_going=keep_going, all_or_nothing=all_or_nothing)


@task(help={**LIFECYCLE_HELP, "all": ALL_HELP, "yes": YES_HELP})
def down(c: Context, names: str, all: bool = False, yes: bool = False, dry: bool = False, parallel: int = 4,
         format: str = "table", serial: str | None = None, keep_going: bool = False,
         all_or_nothing: bool = False) -> None:
    """Stop and remove projects' containers (`compose down`; volumes and data stay)."""
    from aegir.tasks.base import act
    from aegir.tasks.projects import lifecycle

    act(c, lifecycle(c, "apps.down", names, "down", dry=dry, parallel=parallel, every=all),
        fmt=format, dry=dry, yes=yes, serial=serial, keep_going=keep_going, all_or_nothing=all_or_nothing)


@task(help={**LIFECYCLE_HELP, "all": ALL_HELP, "yes": YES_HELP})
def stop(c: Context, names: str, all: bool = False, yes: bool = False, dry: bool = False, parallel: int = 4,
         format: str = "table", serial: str | None = None, keep_going: bool = False,
         all_or_nothing: bool = False) -> None:
    """Stop projects' containers and keep them (`compose stop`); apps.up restarts."""
    from aegir.tasks.base import act
    from aegir.tasks.projects import lifecycle

    act(c, lifecycle(c, "apps.stop", names, "stop", dry=dry, parallel=parallel, every=all),
        fmt=format, dry=dry, yes=yes, serial=serial, keep_going=keep_going, all_or_nothing=all_or_nothing)


@task(help={**LIFECYCLE_HELP, "service": SERVICE_HELP, "all": ALL_HELP, "yes": YES_HELP})
def restart(c: Context, names: str, service: str = "", all: bool = False, yes: bool = False, dry: bool = False,
            parallel: int = 4, format: str = "table", serial: str | None = None, keep_going: bool = False,
            all_or_nothing: bool = False) -> None:
    """Restart projects, or some of their services (`compose restart`)."""
    from aegir.tasks.base import act
    from aegir.tasks.projects import lifecycle

    act(c, lifecycle(c, "apps.restart", names, "restart", dry=dry, parallel=parallel, every=all, services=service),
        fmt=format, dry=dry, yes=yes, serial=serial, keep_going=keep_going, all_or_nothing=all_or_nothing)


@task(help={**LIFECYCLE_HELP, "ignore_failures": PULL_FAILURES_HELP, "all": ALL_HELP})
def pull(c: Context, names: str, ignore_failures: bool = False, all: bool = False, dry: bool = False,
         parallel: int = 4, format: str = "table", serial: str | None = None, keep_going: bool = False,
         all_or_nothing: bool = False) -> None:
    """Pull projects' images (`compose pull`) and say which changed; containers stay."""
    from aegir.tasks.base import act
    from aegir.tasks.projects import lifecycle

    act(c, lifecycle(c, "apps.pull", names, "pull", dry=dry, parallel=parallel, every=all,
                     ignore_failures=ignore_failures),
        fmt=format, dry=dry, serial=serial, keep_going=keep_going, all_or_nothing=all_or_nothing)


@task(help={**LIFECYCLE_HELP, "service": SERVICE_HELP, "force": "Update even while a core project is down.",
            "ignore_failures": PULL_FAILURES_HELP})
def update(c: Context, names: str, service: str = "", force: bool = False, ignore_failures: bool = False,
           dry: bool = False, parallel: int = 4, format: str = "table", serial: str | None = None,
           keep_going: bool = False, all_or_nothing: bool = False) -> None:
    """Pull projects' images, then `compose up -d`: recreate only what changed.

    Only the containers whose image or configuration changed are recreated.
    """
    from aegir.tasks.base import act
    from aegir.tasks.projects import lifecycle

    act(c, lifecycle(c, "apps.update", names, "update", dry=dry, parallel=parallel, services=service, force=force,
                     ignore_failures=ignore_failures),
        fmt=format, dry=dry, serial=serial, keep_going=keep_going, all_or_nothing=all_or_nothing)


@task(help={"name": "One project: folder name or kind/folder.", "service": SERVICE_HELP,
            "follow": "Keep streaming new lines (one host only).", "tail": "Only the last N lines per container."},
      kinds={"name": PROJECT, "tail": LINES})
def logs(c, name, service="", follow=False, tail=None):
    """Print a project's logs (any kind), from every target host that has it."""
    from aegir.tasks.projects import show_logs

    show_logs(c, "apps.logs", name, service, follow, tail)


@task(name="compose", help={"name": "One project (any kind: core, apps, users): folder name or kind/folder."},
      kinds={"name": PROJECT})
def compose_(c, name):
    """Run any Compose subcommand for a project: `inv apps.compose NAME -- ps`.

    Everything after a lone `--` goes to Compose as it was typed (argv, never a
    shell), with the project's --project-directory/-f/-p/--env-file in front, on
    every target host that has the project (exec -T, top, images...). No
    terminal is allocated: use `exec -T`. Exit 1 when Compose fails on a host.
    """
    from aegir.compose import commands as compose
    from aegir.errors import UsageError
    from aegir.tasks.projects import on_each_host

    args = list((c.config.get("aegir") or {}).get("remainder") or [])
    if not args:
        raise UsageError("apps.compose: put the Compose subcommand after '--': inv apps.compose NAME -- ps")
    on_each_host(c, "apps.compose", name, lambda hc, p: compose.passthrough(
        compose.flavour(hc), p, args, docker_host=hc.host.docker_host))


@task(help={"names": NAMES_HELP + " Default: every project.", "format": FORMAT_HELP})
def lint(c, names="", format="table"):
    """Check that compose files are publishable: site data only through .env values."""
    from aegir.compose.discovery import split_names
    from aegir.compose.lint import has_findings, lint_host, lint_json, render_lint

    wanted = split_names(names)
    fleet_report(c, format, "apps.lint", lambda hc: lint_host(hc, wanted),
                 data=lint_json, text=render_lint, problems=has_findings)


@task(help={"format": FORMAT_HELP})
def templates(c, format="table"):
    """List the service templates under /srv/templates on every host."""
    from aegir import fleet
    from aegir.compose.templates import list_templates, templates_dir

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
            "format": FORMAT_HELP}, kinds={"name": FOLDER})
def new(c, name, template, users=False, dry=False, format="table"):
    """Make a project folder from a template; never overwrite one.

    The template's .env.example becomes .env (mode 0600); data/ is made empty.
    """
    from aegir import fleet
    from aegir.compose.templates import new_project

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
