"""Core: the infrastructure Compose projects under /srv/core (core/front first), started before any app.

``up``/``restart`` take them front first, one by one; ``down`` takes them
front last. Stopping or restarting a core project cuts every app off from
the outside (core/front is the front door): it asks first, unless --yes.
"""

from __future__ import annotations

from invoke import Collection, Context

from aegir.report import FORMAT_HELP
from aegir.tasks.apps import DRY_HELP, SERVICE_HELP
from aegir.tasks.base import ALL_OR_NOTHING_HELP, ROLLING_HELP, act, fleet_report, task
from aegir.tasks.flags import LINES, PROJECT

NAMES_HELP = "Core projects (folder names, comma-separated). Default: every core project."
YES_HELP = "Do not ask before stopping or restarting core projects."


def _core(c: Context, label: str, names: str, verb: str, *, fmt: str, dry: bool, yes: bool = False,
          ignore_failures: bool = False, serial: str | None = None, keep_going: bool = False,
          all_or_nothing: bool = False) -> None:
    from aegir.tasks.projects import lifecycle

    act(c, lifecycle(c, label, names, verb, dry=dry, ignore_failures=ignore_failures, core=True), fmt=fmt, dry=dry,
        yes=yes, serial=serial, keep_going=keep_going, all_or_nothing=all_or_nothing)


@task(help={"format": FORMAT_HELP})
def status(c: Context, format: str = "table") -> None:
    """Show the core projects' state on every host; exit 1 when one is not fully up."""
    from aegir.compose.status import gather_status, has_problems, render_status, status_envelope

    fleet_report(c, format, "core.status", lambda hc: gather_status(hc, kinds=("core",)),
                 data=status_envelope("core.status"), text=render_status, problems=has_problems)


#: The flags every core lifecycle task shares.
LIFECYCLE_HELP = {"names": NAMES_HELP, "dry": DRY_HELP, "format": FORMAT_HELP, "all_or_nothing": ALL_OR_NOTHING_HELP,
                  **ROLLING_HELP}


@task(help=LIFECYCLE_HELP)
def up(c: Context, names: str = "", dry: bool = False, format: str = "table", serial: str | None = None,
       keep_going: bool = False, all_or_nothing: bool = False) -> None:
    """Bring up the core projects one by one, front first; a host stops at a failure."""
    _core(c, "core.up", names, "up", fmt=format, dry=dry, serial=serial, keep_going=keep_going,
          all_or_nothing=all_or_nothing)


@task(help={**LIFECYCLE_HELP, "yes": YES_HELP})
def down(c: Context, names: str = "", yes: bool = False, dry: bool = False, format: str = "table",
         serial: str | None = None, keep_going: bool = False, all_or_nothing: bool = False) -> None:
    """Stop and remove the core projects' containers, front last (asks first).

    Every app goes offline with core/front, its front door.
    """
    _core(c, "core.down", names, "down", fmt=format, dry=dry, yes=yes, serial=serial, keep_going=keep_going,
          all_or_nothing=all_or_nothing)


@task(help={**LIFECYCLE_HELP, "yes": YES_HELP})
def restart(c: Context, names: str = "", yes: bool = False, dry: bool = False, format: str = "table",
            serial: str | None = None, keep_going: bool = False, all_or_nothing: bool = False) -> None:
    """Restart the core projects one by one, front first (asks: apps are cut off)."""
    _core(c, "core.restart", names, "restart", fmt=format, dry=dry, yes=yes, serial=serial, keep_going=keep_going,
          all_or_nothing=all_or_nothing)


@task(help={**LIFECYCLE_HELP, "ignore_failures": "Keep going past images that cannot be pulled."})
def pull(c: Context, names: str = "", ignore_failures: bool = False, dry: bool = False, format: str = "table",
         serial: str | None = None, keep_going: bool = False, all_or_nothing: bool = False) -> None:
    """Pull the core projects' images and say which changed; containers stay."""
    _core(c, "core.pull", names, "pull", fmt=format, dry=dry, ignore_failures=ignore_failures, serial=serial,
          keep_going=keep_going, all_or_nothing=all_or_nothing)


@task(help={"name": "One core project (folder name).", "service": SERVICE_HELP,
            "follow": "Keep streaming new lines (one host only).", "tail": "Only the last N lines per container."},
      kinds={"name": PROJECT, "tail": LINES})
def logs(c: Context, name: str, service: str = "", follow: bool = False, tail: int | None = None) -> None:
    """Print a core project's logs from every target host that has it."""
    from aegir.tasks.projects import show_logs

    show_logs(c, "core.logs", name, service, follow, tail, kinds=("core",))


ns = Collection("core")
for _t in (status, up, down, restart, pull, logs):
    ns.add_task(_t)
