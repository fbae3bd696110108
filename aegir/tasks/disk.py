"""Disk: where the space goes on each hypervisor (`/`, `/srv`, Docker, projects)."""

from __future__ import annotations

from invoke import Collection

from aegir import fleet
from aegir.report import FORMAT_HELP, check_format, emit
from aegir.tasks.base import exit_if_failed, targets, task


@task(help={"format": FORMAT_HELP, "top": "Largest projects to list per host (default 5)."})
def report(c, format="table", top=5):
    """Show disk usage per host: /, /srv, Docker (reclaimable) and the largest projects."""
    from aegir.disk.facts import gather  # here, not at the top: inv --list stays quick
    from aegir.disk.report import as_json, render

    fmt = check_format(format)
    top = int(top)
    outcomes = fleet.each(c, targets(c), gather, label="disk.report")
    emit(fmt, data=as_json(outcomes, top), text=render(outcomes, top))
    exit_if_failed(outcomes)


ns = Collection("disk")
ns.add_task(report)
