"""Disk: where the space goes on each hypervisor (`/`, `/srv`, Docker, projects), and reclaiming it safely."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from invoke import Collection, Exit

from aegir.errors import AegirError, UsageError
from aegir.report import FORMAT_HELP, Progress, check_format, emit, human
from aegir.tasks.base import (
    ALL_OR_NOTHING_HELP,
    EXIT_PROBLEM,
    ROLLING_HELP,
    confirm,
    exit_if_failed,
    failed_line,
    is_dry,
    rolling,
    targets,
    task,
)
from aegir.tasks.flags import PERCENT, PROJECT, formats

if TYPE_CHECKING:  # pragma: no cover
    from aegir import fleet
    from aegir.disk.steps import PruneResult
    from aegir.host import HostContext


@task(help={"format": FORMAT_HELP + " Also 'prometheus': node_exporter's textfile collector format.",
            "top": "Largest projects to list per host (default 5; every one in prometheus format).",
            "fast": "Filesystems and Docker only: do not measure the project folders (no du).",
            "warn": "Exit 1 when / or /srv of a host is more than PCT % used (for cron)."},
      kinds={"format": formats("prometheus"), "warn": PERCENT})
def report(c, format="table", top=5, fast=False, warn=None):
    """Show disk usage per host: /, /srv, Docker (reclaimable), the largest projects.

    Project folders are measured with one du each, several at once per host
    (progress on stderr); --fast skips them.
    """
    from aegir import fleet
    from aegir.disk.facts import gather  # here, not at the top: inv --list stays quick
    from aegir.disk.report import as_json, prometheus, render, too_full

    fmt = format if format == "prometheus" else check_format(format)
    top = int(top)
    pct = None if warn is None else int(warn)
    with Progress("disk.report: project folders measured", []) as progress:
        outcomes = fleet.each(c, targets(c), lambda hc: gather(hc, fast=fast, progress=progress),
                              label="disk.report")
    if fmt == "prometheus":
        print(prometheus(outcomes), flush=True)
    else:
        emit(fmt, data=as_json(outcomes, top), text=render(outcomes, top))
    full = too_full(outcomes, pct) if pct is not None else []
    for line in full:
        print(f"aegir: {line}", file=sys.stderr)
    exit_if_failed(outcomes, problems=bool(full))


@task(help={"volumes": "Also remove anonymous volumes no container uses (named volumes: never).",
            "include_project_images": "Also remove images that only /srv projects reference (none runs them).",
            "include_project_containers": "Also remove the stopped service containers of /srv projects.",
            "yes": "Do not ask for confirmation.", "dry": "Show the plan; remove nothing.", "format": FORMAT_HELP,
            "all_or_nothing": ALL_OR_NOTHING_HELP, **ROLLING_HELP})
def prune(c, volumes=False, include_project_images=False, include_project_containers=False, yes=False, dry=False,
          format="table", serial=None, keep_going=False, all_or_nothing=False):
    """Remove Docker garbage: what /srv projects neither use nor name.

    Stopped containers, unused images, networks and build cache go; what the
    /srv projects use stays. A plan first, per host, with Docker's own byte
    counts; then, with --yes or a `y` typed at the terminal, the removals
    (never forced) and the bytes freed, from Docker's accounting before and
    after. A host that could not be reached or planned is left out (a line
    says so; --all-or-nothing prunes nothing then); one whose daemon stops
    answering mid-way says how many of its removals were done.
    """
    from aegir import fleet
    from aegir.disk.plan import PruneOptions
    from aegir.disk.report import prune_plan_json, prune_result_json, render_prune_plan, render_prune_result
    from aegir.disk.steps import apply_prune, gather_prune

    fmt = check_format(format)
    opts = PruneOptions(volumes=volumes, project_images=include_project_images,
                        project_containers=include_project_containers)
    hosts = targets(c)
    roll = rolling(c, hosts, serial, keep_going)
    plans = fleet.each(c, hosts, lambda hc: gather_prune(hc, opts), label="disk.prune")
    todo = [o for o in plans if o.value and o.value.plan.remove]
    unplanned = fleet.failed(plans)
    left_out = _left_out(unplanned)
    if is_dry(c, dry) or not todo or (unplanned and all_or_nothing):
        emit(fmt, data={"plan": prune_plan_json(plans), "pruned": False}, text=render_prune_plan(plans))
        if unplanned and todo and not is_dry(c, dry):
            raise Exit(f"aegir: {left_out}: nothing pruned (--all-or-nothing)", code=EXIT_PROBLEM)
        if unplanned and len(unplanned) < len(plans) and not is_dry(c, dry):
            raise Exit(f"aegir: {left_out}: not pruned; nothing to prune on the other hosts", code=EXIT_PROBLEM)
        exit_if_failed(plans)
        return
    print(render_prune_plan(plans), file=sys.stderr if fmt == "json" else sys.stdout, flush=True)
    total = sum(o.value.plan.bytes for o in todo if o.value)
    confirm(f"Remove all this on {', '.join(o.host.name for o in todo)} (at least {human(total)})?"
            + (f" ({left_out}: not pruned)" if unplanned else ""), yes=yes,
            label="disk.prune", verb="prune", refused="nothing pruned")
    by_host = {o.host.name: o.value for o in todo if o.value}
    failed_plans = {o.host.name: o for o in unplanned}

    def act(hc: HostContext) -> PruneResult:
        if hc.name in failed_plans:  # a roll attempts it in its turn, reachable again or not: it counts as failed
            raise AegirError(f"not pruned: no plan ({failed_plans[hc.name].error})", host=hc.name)
        return apply_prune(hc, by_host[hc.name])

    # a roll counts a host it could not plan on as a failed host (an unreachable canary stops it);
    # all at once, such a host is only left out
    acting = [o.host for o in plans if o.host.name in by_host or (roll is not None and o.host.name in failed_plans)]
    acted = {o.host.name: o for o in fleet.each(c, acting, act, label="disk.prune", rolling=roll,
                                                fails=lambda r: r.problem)}
    outcomes = [acted.get(o.host.name, o) for o in plans if o.host.name in acted or not o.ok]
    emit(fmt, data={"plan": prune_plan_json(plans), "pruned": True, "hosts": prune_result_json(outcomes),
                    "not_pruned": [o.host.name for o in outcomes if o.value is None]},
         text=render_prune_result(outcomes))
    bad = [o for o in outcomes if not o.ok and o.host.name not in failed_plans]
    if unplanned or bad:
        parts = [failed_line(bad).removeprefix("aegir: ")] if bad else []
        if unplanned:
            parts.append(f"{left_out}: not pruned" + ("" if bad else "; the other hosts were"))
        raise Exit("aegir: " + "; ".join(parts), code=EXIT_PROBLEM)


def _left_out(bad: Sequence[fleet.Outcome[Any]]) -> str:
    """``hyp2 unreachable``, ``hyp2, hyp3 unreachable; hyp4 failed``: the hosts no plan was made for."""
    groups: dict[str, list[str]] = {}
    for o in bad:
        groups.setdefault("unreachable" if o.kind == "unreachable" else "failed", []).append(o.host.name)
    return "; ".join(f"{', '.join(names)} {kind}" for kind, names in groups.items())


@task(help={"app": "One app: folder name or kind/folder (e.g. mastodon, users/tube).",
            "recipe": "A shipped recipe to use instead of the app's own (mastodon, synapse, peertube).",
            "yes": "Do not ask for confirmation.", "dry": "Print the exact commands per container; run nothing.",
            "format": FORMAT_HELP, **ROLLING_HELP}, kinds={"app": PROJECT})
def clean(c, app, recipe="", yes=False, dry=False, format="table", serial=None, keep_going=False):
    """Run an app's clean-up recipe in its containers; show each step and its result.

    Each step's exit code and time, and the app folder's size before and after.
    The recipe is data: aegir/disk/recipes/NAME.yml (NAME: --recipe, the
    compose file's x-aegir.clean.recipe, or the app's folder name), or
    aegir-clean.yml in the app's folder; x-aegir.clean may set its service,
    user and vars. Every target host that has the app runs it.
    """
    from aegir import fleet
    from aegir.compose.discovery import split_names
    from aegir.disk.report import clean_plan_json, clean_result_json, render_clean_plan, render_clean_result
    from aegir.disk.steps import plan_clean, run_clean

    fmt = check_format(format)
    wanted = split_names(app)
    if len(wanted) != 1:
        raise UsageError("disk.clean takes exactly one app")
    now = time.time()
    hosts = targets(c)
    roll = rolling(c, hosts, serial, keep_going)
    plans = fleet.each(c, hosts, lambda hc: plan_clean(hc, wanted[0], recipe or None, now), label="disk.clean")
    found = [o for o in plans if o.value is not None]
    if not found and not fleet.failed(plans):
        raise UsageError(f"no app {wanted[0]!r} on any target host")
    if fleet.failed(plans) or is_dry(c, dry):
        emit(fmt, data={"plan": clean_plan_json(plans), "ran": False}, text=render_clean_plan(plans))
        exit_if_failed(plans)
        return
    print(render_clean_plan(plans), file=sys.stderr if fmt == "json" else sys.stdout, flush=True)
    confirm(f"Run these clean-ups on {', '.join(o.host.name for o in found)}?", yes=yes, label="disk.clean",
            verb="clean up", refused="nothing cleaned")
    by_host = {o.host.name: o.value for o in found if o.value}
    outcomes = fleet.each(c, [o.host for o in found], lambda hc: run_clean(hc, by_host[hc.name]), label="disk.clean",
                          rolling=roll, fails=lambda r: "a clean-up step failed" if r.failed else None)
    emit(fmt, data={"plan": clean_plan_json(plans), "ran": True, "hosts": clean_result_json(outcomes)},
         text=render_clean_result(outcomes))
    exit_if_failed(outcomes, problems=any(o.value and o.value.failed for o in outcomes))


ns = Collection("disk")
ns.add_task(report)
ns.add_task(prune)
ns.add_task(clean)
