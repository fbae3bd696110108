"""Disk: where the space goes on each hypervisor (`/`, `/srv`, Docker, projects), and reclaiming it safely."""

from __future__ import annotations

import sys

from invoke import Collection

from aegir import fleet
from aegir.report import FORMAT_HELP, check_format, emit, human
from aegir.tasks.base import confirm, exit_if_failed, is_dry, targets, task


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


@task(help={"volumes": "Also remove anonymous volumes no container uses (named volumes: never).",
            "include_project_images": "Also remove images that only /srv projects reference (none runs them).",
            "include_project_containers": "Also remove the stopped service containers of /srv projects.",
            "yes": "Do not ask for confirmation.", "dry": "Show the plan; remove nothing.", "format": FORMAT_HELP})
def prune(c, volumes=False, include_project_images=False, include_project_containers=False, yes=False, dry=False,
          format="table"):
    """Remove Docker garbage (stopped containers, unused images, networks, build cache), keeping /srv projects'.

    A plan first, per host, with Docker's own byte counts; then, with --yes or
    a `y` typed at the terminal, the removals (never forced) and the bytes
    freed, from Docker's accounting before and after.
    """
    from aegir.disk.plan import PruneOptions
    from aegir.disk.report import prune_plan_json, prune_result_json, render_prune_plan, render_prune_result
    from aegir.disk.steps import apply_prune, gather_prune

    fmt = check_format(format)
    opts = PruneOptions(volumes=volumes, project_images=include_project_images,
                        project_containers=include_project_containers)
    hosts = targets(c)
    plans = fleet.each(c, hosts, lambda hc: gather_prune(hc, opts), label="disk.prune")
    todo = [o for o in plans if o.value and o.value.plan.remove]
    if fleet.failed(plans) or is_dry(c, dry) or not todo:
        emit(fmt, data={"plan": prune_plan_json(plans), "pruned": False}, text=render_prune_plan(plans))
        exit_if_failed(plans)
        return
    print(render_prune_plan(plans), file=sys.stderr if fmt == "json" else sys.stdout, flush=True)
    total = sum(o.value.plan.bytes for o in todo if o.value)
    confirm(f"Remove all this on {', '.join(o.host.name for o in todo)} (at least {human(total)})?", yes=yes,
            label="disk.prune", verb="prune", refused="nothing pruned")
    by_host = {o.host.name: o.value.plan for o in todo if o.value}
    outcomes = fleet.each(c, [o.host for o in todo], lambda hc: apply_prune(hc, by_host[hc.name]),
                          label="disk.prune")
    emit(fmt, data={"plan": prune_plan_json(plans), "pruned": True, "hosts": prune_result_json(outcomes)},
         text=render_prune_result(outcomes))
    exit_if_failed(outcomes, problems=any(o.value and o.value.failed for o in outcomes))


ns = Collection("disk")
ns.add_task(report)
ns.add_task(prune)
