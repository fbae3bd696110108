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
from aegir.report import FORMAT_HELP
from aegir.tasks.base import ALL_OR_NOTHING_HELP, ROLLING_HELP, act, fleet_report, targets, task
from aegir.tasks.flags import FOLDER, LINES, PROJECT

NAMES_HELP = "Projects: folder names or kind/folder, comma-separated (e.g. cloud,users/wiki)."
DRY_HELP = "Print the exact Compose commands and stop."
PARALLEL_HELP = "Projects acted on at once per host (default 4)."
SERVICE_HELP = "Only these services (comma-separated)."


YES_HELP = "Do not ask before stopping projects on several hosts (or a core project)."
ALL_HELP = "Every project of every kind instead of NAMES: core first on the way up, last on the way down."


@task(help={"names": NAMES_HELP + " Default: every project.", "format": FORMAT_HELP})
def status(c: Context, names: str = "", format: str = "table") -> None:
    """Show every Compose project's state, core first: services, problems, image age."""
    from aegir.compose.discovery import split_names
    from aegir.compose.status import gather_status, has_problems, render_status, status_envelope

    wanted = split_names(names)
    fleet_report(c, format, "apps.status", lambda hc: gather_status(hc, wanted),
                 data=status_envelope("apps.status"), text=render_status, problems=has_problems)


#: The flags every lifecycle task (up, down, stop, restart, pull, update) shares.
LIFECYCLE_HELP = {"names": NAMES_HELP, "dry": DRY_HELP, "parallel": PARALLEL_HELP, "format": FORMAT_HELP,
                  "all_or_nothing": ALL_OR_NOTHING_HELP, **ROLLING_HELP}
PULL_FAILURES_HELP = "Keep going past images that cannot be pulled."


@task(help={**LIFECYCLE_HELP, "force": "Start even while a core project is down.", "all": ALL_HELP})
def up(c: Context, names: str, force: bool = False, all: bool = False, dry: bool = False, parallel: int = 4,
       format: str = "table", serial: str | None = None, keep_going: bool = False,
       all_or_nothing: bool = False) -> None:
    """Bring projects up (`compose up -d`); refuse while core is down unless --force."""
    from aegir.tasks.projects import lifecycle

    act(c, lifecycle(c, "apps.up", names, "up", dry=dry, parallel=parallel, every=all, force=force),
        fmt=format, dry=dry, serial=serial, keep_going=keep_going, all_or_nothing=all_or_nothing)


@task(help={**LIFECYCLE_HELP, "all": ALL_HELP, "yes": YES_HELP})
def down(c: Context, names: str, all: bool = False, yes: bool = False, dry: bool = False, parallel: int = 4,
         format: str = "table", serial: str | None = None, keep_going: bool = False,
         all_or_nothing: bool = False) -> None:
    """Stop and remove projects' containers (`compose down`; volumes and data stay)."""
    from aegir.tasks.projects import lifecycle

    act(c, lifecycle(c, "apps.down", names, "down", dry=dry, parallel=parallel, every=all),
        fmt=format, dry=dry, yes=yes, serial=serial, keep_going=keep_going, all_or_nothing=all_or_nothing)


@task(help={**LIFECYCLE_HELP, "all": ALL_HELP, "yes": YES_HELP})
def stop(c: Context, names: str, all: bool = False, yes: bool = False, dry: bool = False, parallel: int = 4,
         format: str = "table", serial: str | None = None, keep_going: bool = False,
         all_or_nothing: bool = False) -> None:
    """Stop projects' containers and keep them (`compose stop`); apps.up restarts."""
    from aegir.tasks.projects import lifecycle

    act(c, lifecycle(c, "apps.stop", names, "stop", dry=dry, parallel=parallel, every=all),
        fmt=format, dry=dry, yes=yes, serial=serial, keep_going=keep_going, all_or_nothing=all_or_nothing)


@task(help={**LIFECYCLE_HELP, "service": SERVICE_HELP, "all": ALL_HELP, "yes": YES_HELP})
def restart(c: Context, names: str, service: str = "", all: bool = False, yes: bool = False, dry: bool = False,
            parallel: int = 4, format: str = "table", serial: str | None = None, keep_going: bool = False,
            all_or_nothing: bool = False) -> None:
    """Restart projects, or some of their services (`compose restart`)."""
    from aegir.tasks.projects import lifecycle

    act(c, lifecycle(c, "apps.restart", names, "restart", dry=dry, parallel=parallel, every=all, services=service),
        fmt=format, dry=dry, yes=yes, serial=serial, keep_going=keep_going, all_or_nothing=all_or_nothing)


@task(help={**LIFECYCLE_HELP, "ignore_failures": PULL_FAILURES_HELP, "all": ALL_HELP})
def pull(c: Context, names: str, ignore_failures: bool = False, all: bool = False, dry: bool = False,
         parallel: int = 4, format: str = "table", serial: str | None = None, keep_going: bool = False,
         all_or_nothing: bool = False) -> None:
    """Pull projects' images (`compose pull`) and say which changed; containers stay."""
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


@task(name="compose", help={"name": "One project (any kind: core, apps, users): folder name or kind/folder.",
                            "dry": "Show the exact command on each host and stop (reads too).",
                            "yes": "Run a subcommand that stops, removes or (re)creates without asking."},
      kinds={"name": PROJECT})
def compose_(c: Context, name: str, dry: bool = False, yes: bool = False) -> None:
    """Run any Compose subcommand for a project: `inv apps.compose NAME -- ps`.

    Everything after a lone `--` goes to Compose as it was typed (argv, never a
    shell), with the project's --project-directory/-f/-p/--env-file in front, on
    every target host that has the project. Reads (ps, logs, config, images,
    top...) and exec run at once; anything else (down, rm, stop, kill, up,
    pull, run...) shows the command on each host and asks first (--yes: no
    question; a core project says so). No terminal is allocated: use `exec -T`.
    Exit 1 when Compose fails on a host.
    """
    from aegir.compose.discovery import split_names
    from aegir.compose.passthrough import check_args
    from aegir.compose.steps import Passthrough

    args = check_args(list((c.config.get("aegir") or {}).get("remainder") or []))
    [wanted] = split_names(name)
    act(c, Passthrough(wanted, args), fmt="table", dry=dry, yes=yes)


@task(help={"names": NAMES_HELP + " Default: every project.", "format": FORMAT_HELP})
def lint(c: Context, names: str = "", format: str = "table") -> None:
    """Check that compose files are publishable: site data only through .env values."""
    from aegir.compose.discovery import split_names
    from aegir.compose.lint import lint_host
    from aegir.compose.report import lint_json, lint_problems, lint_text

    wanted = split_names(names)
    fleet_report(c, format, "apps.lint", lambda hc: lint_host(hc, wanted),
                 data=lint_json, text=lint_text, problems=lint_problems)


@task(help={"format": FORMAT_HELP})
def templates(c: Context, format: str = "table") -> None:
    """List the service templates under /srv/templates on every host."""
    from aegir.compose.report import templates_json, templates_text
    from aegir.compose.templates import read_templates

    fleet_report(c, format, "apps.templates", read_templates, data=templates_json, text=templates_text)


@task(help={"name": "The new project's folder name.", "template": "Template folder under /srv/templates.",
            "users": "Make it under /srv/users instead of /srv/apps.", "dry": "Print the commands and stop.",
            "format": FORMAT_HELP}, kinds={"name": FOLDER})
def new(c: Context, name: str, template: str, users: bool = False, dry: bool = False, format: str = "table") -> None:
    """Make a project folder from a template; never overwrite one.

    The template's .env.example becomes .env (mode 0600); data/ is made empty.
    """
    from aegir.compose.steps import NewProjectAction

    hosts = targets(c)
    if len(hosts) != 1:
        raise AegirError(f"apps.new makes a project on one host; choose it with -H (targets: "
                         f"{', '.join(h.name for h in hosts)})")
    act(c, NewProjectAction(name, template, users=users), fmt=format, dry=dry, hosts=hosts)


ns = Collection("apps")
for _t in (status, up, down, stop, restart, pull, update, logs, compose_, lint, templates, new):
    ns.add_task(_t)
