"""Core: the infrastructure Compose projects under /srv/core (core/front first), started before any app."""

from __future__ import annotations

from invoke import Collection

from aegir import fleet
from aegir.compose.lifecycle import actions_failed, actions_json, host_actions, plan_core, render_actions
from aegir.compose.status import gather_status, has_problems, render_status, status_json
from aegir.report import FORMAT_HELP, check_format, emit
from aegir.tasks.base import exit_if_failed, fleet_report, is_dry, targets, task


@task(help={"format": FORMAT_HELP})
def status(c, format="table"):
    """Show the state of the core projects on every host; exit 1 when one is not fully up."""
    fleet_report(c, format, "core.status", lambda hc: gather_status(hc, kinds=("core",)),
                 data=status_json, text=render_status, problems=has_problems)


@task(help={"dry": "Print the exact Compose commands and stop.", "format": FORMAT_HELP})
def up(c, dry=False, format="table"):
    """Bring up every core project, front first, one after the other; stop a host at its first failure."""
    fmt = check_format(format)
    dry = is_dry(c, dry)
    outcomes = fleet.each(
        c, targets(c),
        lambda hc: host_actions(hc, lambda: (plan_core(hc), ()), dry=dry, stop_on_failure=True),
        label="core.up")
    emit(fmt, data=actions_json(outcomes, dry=dry), text=render_actions(outcomes, dry=dry))
    exit_if_failed(outcomes, problems=actions_failed(outcomes))


ns = Collection("core")
ns.add_task(status)
ns.add_task(up)
