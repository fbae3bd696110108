"""Disk: where the space goes on each hypervisor (`/`, `/srv`, Docker, projects), and reclaiming it safely.

`disk.report` reads (`aegir.tasks.base.fleet_read`); `disk.prune` and
`disk.clean` are actions (`aegir.disk.steps`), planned on every host, shown,
stopped there under ``--dry``, confirmed, then acted on and checked. A host
whose /srv is not mounted fails `disk.prune` and `disk.clean` (its projects
are not there to read), and `disk.report --warn` (cron must hear of it).
"""

from __future__ import annotations

from invoke import Collection, Context

from aegir.errors import UsageError
from aegir.report import FORMAT_HELP, Progress, check_format
from aegir.tasks.base import (
    ALL_OR_NOTHING_HELP,
    ROLLING_HELP,
    act,
    finish,
    fleet_read,
    task,
)
from aegir.tasks.flags import PERCENT, PROJECT, formats


@task(help={"format": FORMAT_HELP + " Also 'prometheus': node_exporter's textfile collector format.",
            "top": "Largest projects to list per host (default 5; every one in prometheus format).",
            "fast": "Filesystems and Docker only: do not measure the project folders (no du).",
            "warn": "Exit 1 when / or /srv of a host is more than PCT % used, or /srv is not mounted (for cron)."},
      kinds={"format": formats("prometheus"), "warn": PERCENT})
def report(c: Context, format: str = "table", top: int = 5, fast: bool = False, warn: int | None = None) -> None:
    """Show disk usage per host: /, /srv, Docker (reclaimable), the largest projects.

    Project folders are measured with one du each, several at once per host
    (progress on stderr); --fast skips them. With --warn, a host whose /srv is
    not mounted is a failed host ("run boot.mount"); without, its row says so.
    """
    from aegir.disk.facts import gather  # here, not at the top: inv --list stays quick
    from aegir.disk.report import disk_report

    fmt = check_format(format, ("prometheus",))
    with Progress("disk.report: project folders measured", []) as progress:
        outcomes = fleet_read(c, "disk.report", lambda hc: gather(hc, fast=fast, progress=progress,
                                                                   mounted=warn is not None), processes=True)
    shown = disk_report(outcomes, top=int(top), warn=warn, prometheus_format=fmt == "prometheus")
    finish(c, "table" if fmt == "prometheus" else fmt, shown, outcomes)


@task(help={"volumes": "Also remove anonymous volumes no container uses (named volumes: never).",
            "include_project_images": "Also remove images that only /srv projects reference (none runs them).",
            "include_project_containers": "Also remove the stopped service containers of /srv projects.",
            "yes": "Do not ask for confirmation.", "dry": "Show the plan; remove nothing.", "format": FORMAT_HELP,
            "all_or_nothing": ALL_OR_NOTHING_HELP, **ROLLING_HELP})
def prune(c: Context, volumes: bool = False, include_project_images: bool = False,
          include_project_containers: bool = False, yes: bool = False, dry: bool = False, format: str = "table",
          serial: str | None = None, keep_going: bool = False, all_or_nothing: bool = False) -> None:
    """Remove Docker garbage: what /srv projects neither use nor name.

    Stopped containers, unused images, networks and build cache go; what the
    /srv projects use stays. A plan first, per host, with Docker's own byte
    counts; then, with --yes or a `y` typed at the terminal, the removals
    (never forced) and the bytes freed, from Docker's accounting before and
    after. A host that could not be reached or planned (its /srv not mounted,
    say) is left out (a line says so; --all-or-nothing prunes nothing then);
    one whose daemon stops answering mid-way says how many of its removals
    were done.
    """
    from aegir.disk.plan import PruneOptions
    from aegir.disk.steps import Prune

    action = Prune(PruneOptions(volumes=volumes, project_images=include_project_images,
                                project_containers=include_project_containers))
    act(c, action, fmt=format, dry=dry, yes=yes, serial=serial, keep_going=keep_going,
        all_or_nothing=all_or_nothing)


@task(help={"app": "One app: folder name or kind/folder (e.g. mastodon, users/tube).",
            "recipe": "A shipped recipe to use instead of the app's own (mastodon, synapse, peertube).",
            "yes": "Do not ask for confirmation.", "dry": "Print the exact commands per container; run nothing.",
            "format": FORMAT_HELP, "all_or_nothing": ALL_OR_NOTHING_HELP, **ROLLING_HELP},
      kinds={"app": PROJECT})
def clean(c: Context, app: str, recipe: str = "", yes: bool = False, dry: bool = False, format: str = "table",
          serial: str | None = None, keep_going: bool = False, all_or_nothing: bool = False) -> None:
    """Run an app's clean-up recipe in its containers; show each step and its result.

    Each step's exit code and time, and the app folder's size before and after.
    The recipe is data: aegir/disk/recipes/NAME.yml (NAME: --recipe, the
    compose file's x-aegir.clean.recipe, or the app's folder name), or
    aegir-clean.yml in the app's folder; x-aegir.clean may set its service,
    user and vars. Every target host that has the app runs it.
    """
    from aegir.compose.discovery import split_names
    from aegir.disk.steps import Clean

    wanted = split_names(app)
    if len(wanted) != 1:
        raise UsageError("disk.clean takes exactly one app")
    act(c, Clean(wanted[0], recipe or None), fmt=format, dry=dry, yes=yes, serial=serial, keep_going=keep_going,
        all_or_nothing=all_or_nothing)


ns = Collection("disk")
ns.add_task(report)
ns.add_task(prune)
ns.add_task(clean)
