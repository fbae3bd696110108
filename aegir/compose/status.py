"""Compose project status for one host and its fleet table: the API `core`, `apps` and `boot` share.

Usage, from any namespace's task (`aegir.tasks.base.fleet_report` runs it on every host)::

    fleet_report(c, fmt, "x.status", lambda hc: gather_status(hc, kinds=("core",)),
                 data=status_envelope("x.status"), text=render_status, problems=has_problems)

A host whose /srv is not mounted fails (`srv_checked`, the one check of every
task that reads projects).

`gather_status(hc)` costs one SSH round trip (discovery, `discover_cmd`) and
two Docker API calls (all Compose containers, all images), however many
projects the host has: no ``compose ps`` per project.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aegir.compose.discovery import Discovery, discover_cmd, parse_discovery, select, warnings_about
from aegir.compose.state import (
    LABEL_PROJECT,
    Orphan,
    ProjectContainer,
    ProjectStatus,
    find_orphans,
    image_created,
    parse_containers,
    project_status,
)
from aegir.errors import AegirError
from aegir.facts import Fact
from aegir.layout import PROJECT_KINDS
from aegir.report import age, envelope, failed_row, host_entry, table
from aegir.sh import Cmd

if TYPE_CHECKING:  # pragma: no cover
    from aegir.fleet import Outcome
    from aegir.host import HostContext


@dataclass(frozen=True)
class HostStatus:
    """The status of one host's Compose projects (core first, then apps, then users).

    `projects` follow `PROJECT_KINDS` order, then folder name. `missing` are
    names asked for that this host does not have; `orphans` are only looked
    for when no names were given.
    """

    host: str
    srv: str
    projects: tuple[ProjectStatus, ...]
    orphans: tuple[Orphan, ...] = ()
    warnings: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when every project is up (or expects nothing)."""
        return all(p.ok for p in self.projects)


def discovery_fact(srv: str, *, with_env: bool = False) -> Fact[Discovery]:
    """The projects under `srv` (`discover_cmd`), as a fact a caller may batch with others."""
    return Fact("compose.discovery", discover_cmd(srv, with_env=with_env), lambda r: parse_discovery(r.stdout, srv),
                cache=not with_env)  # .env values are secrets: never kept


def srv_mounted_fact(srv: str) -> Fact[bool]:
    """Whether `srv` is a mount point (``findmnt --mountpoint``: exit 1 when nothing is mounted there).

    A task that reads a host's projects reads them from a mounted /srv only:
    an unmounted one is a folder of the root disk, which the mount would hide,
    not the host's projects (`srv_not_mounted`). Asked afresh each time.
    """
    return Fact("compose.srv_mounted", Cmd(("findmnt", "--noheadings", "--output", "TARGET", "--mountpoint", srv)),
                lambda r: r.exited == 0, answers=(0, 1), cache=False)


def srv_not_mounted(host: str, srv: str) -> AegirError:
    """Why a host whose /srv is not mounted fails a task that reads its projects."""
    return AegirError(f"{srv} is not mounted: run boot.mount", host=host)


def srv_checked(hc: "HostContext", *facts: Fact[Any]) -> tuple[Any, ...]:
    """`facts` of `hc`, read in one round trip with whether its /srv is mounted (`srv_mounted_fact`).

    The one check of every task that reads a host's projects: a host whose
    /srv is not mounted fails (`srv_not_mounted`: its projects are on the
    volume the mount would show, not in the root disk's folder), unless its
    inventory entry says ``srv_mount: false`` (a plain folder on purpose).
    """
    if not hc.host.srv_mount:
        return hc.facts(*facts)
    mounted, *read = hc.facts(srv_mounted_fact(hc.host.srv), *facts)
    if not mounted:
        raise srv_not_mounted(hc.name, hc.host.srv)
    return tuple(read)


def discover(hc: "HostContext", *, with_env: bool = False, fresh: bool = False) -> Discovery:
    """Discover `hc`'s projects (one round trip; memoised for the run unless `with_env`) on a mounted /srv
    (`srv_checked`: else the host fails).

    `fresh` forgets a discovery memoised earlier in this run (after ``apps.new``, say).
    """
    fact = discovery_fact(hc.host.srv, with_env=with_env)
    if fresh:
        hc.forget(fact)
    disc: Discovery = srv_checked(hc, fact)[0]
    return disc


def containers(hc: "HostContext") -> tuple[ProjectContainer, ...]:
    """Every Compose container of the host: one Docker API call (`parse_containers`)."""
    rows = hc.docker().api.containers(all=True, filters={"label": LABEL_PROJECT})
    return parse_containers(rows)


def gather_status(hc: "HostContext", names: Sequence[str] | None = (),
                  kinds: Sequence[str] = PROJECT_KINDS) -> HostStatus:
    """Read the status of `hc`'s projects of `kinds` (all of them, or those `names` designate).

    One round trip lists the projects while, at the same time, one Docker call
    lists every Compose container and one more the images (for their age).
    """

    def docker_facts() -> tuple[tuple[ProjectContainer, ...], dict[str, int]]:
        found = containers(hc)
        return found, (image_created(hc.docker().api.images()) if found else {})

    # The discovery round trip and the Docker API (its own SSH channel) overlap.
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="status") as pool:
        facts = pool.submit(docker_facts)
        try:
            disc = discover(hc)  # an unmounted /srv fails the host first: "run boot.mount" comes before Docker
        except AegirError:
            facts.exception()  # let Docker's question end; its answer no longer matters
            raise
        found, images = facts.result()
    chosen, missing = select(disc.projects, names or (), kinds, host=hc.name)
    now = time.time()
    rows = tuple(project_status(p, found, images, now) for p in chosen)
    orphans = find_orphans(disc, found) if not names else ()
    notes = warnings_about(disc, chosen, kinds, all_of_kinds=not names)
    return HostStatus(hc.name, disc.srv, rows, orphans, notes, missing)


def has_problems(outcomes: Sequence["Outcome[HostStatus]"]) -> bool:
    """True when a project is not up on a host that answered, or a name was found nowhere."""
    return any(o.value is not None and not o.value.ok for o in outcomes) or bool(missing_everywhere(outcomes))


def missing_everywhere(outcomes: Sequence["Outcome[Any]"]) -> tuple[str, ...]:
    """Names no host that answered has (a typo, or the wrong -H)."""
    answered = [o.value for o in outcomes if o.value is not None and hasattr(o.value, "missing")]
    if not answered:
        return ()
    first = answered[0].missing
    return tuple(n for n in first if all(n in v.missing for v in answered))


def warning_lines(outcomes: Sequence["Outcome[Any]"]) -> list[str]:
    """``warning: HOST: …`` for each host's discovery warnings, then the names no host has."""
    notes = [f"{o.host.name}: {w}" for o in outcomes if o.value for w in o.value.warnings]
    nowhere = missing_everywhere(outcomes)
    if nowhere:
        notes.append(f"not found on any target host: {', '.join(nowhere)}")
    return ["warning: " + n for n in notes]


def _kind_order(kind: str) -> int:
    return PROJECT_KINDS.index(kind) if kind in PROJECT_KINDS else len(PROJECT_KINDS)


def render_status(outcomes: Sequence["Outcome[HostStatus]"]) -> str:
    """The fleet table: core rows first (every host), then apps, then users; then orphans, warnings.

    A host that failed gets one row saying why. Columns: HOST KIND PROJECT
    SERVICES (running/expected) STATE IMAGE AGE PROBLEMS.
    """
    rows: list[tuple[Any, ...]] = []
    failed_rows = []
    for i, o in enumerate(outcomes):
        if o.value is None:
            failed_rows.append(failed_row(o, 7, at=4, reason_at=6))
            continue
        for p in o.value.projects:
            rows.append((_kind_order(p.kind), i, p.name,
                         [o.host.name, p.kind, p.name, p.services, p.state, age(p.image_age),
                          "; ".join(p.problems) or None]))
    body = [r[-1] for r in sorted(rows, key=lambda r: r[:3])] + failed_rows
    out = [table(["HOST", "KIND", "PROJECT", "SERVICES", "STATE", "IMAGE AGE", "PROBLEMS"], body)
           if body else "no Compose projects found"]
    orphans = [[o.host.name, x.project, x.working_dir or None, f"{x.running}/{x.containers}", x.reason]
               for o in outcomes if o.value for x in o.value.orphans]
    if orphans:
        out += ["", "Orphans (Compose projects without a project folder):",
                table(["HOST", "PROJECT", "WORKING DIR", "RUNNING", "WHY"], orphans)]
    warnings = warning_lines(outcomes)
    if warnings:
        out += ["", *warnings]
    counts = _counts(outcomes)
    out += ["", f"{counts['up']}/{counts['projects']} projects up on {counts['hosts_ok']}/{counts['hosts']} hosts"
                + (f"; {counts['projects'] - counts['up']} need attention" if counts['up'] < counts['projects'] else "")]
    return "\n".join(out)


def _counts(outcomes: Sequence["Outcome[HostStatus]"]) -> dict[str, int]:
    vals = [o.value for o in outcomes if o.value is not None]
    return {
        "hosts": len(outcomes),
        "hosts_ok": sum(1 for o in outcomes if o.ok),
        "projects": sum(len(v.projects) for v in vals),
        "up": sum(1 for v in vals for p in v.projects if p.ok),
    }


def _host_fields(o: "Outcome[HostStatus]") -> dict[str, Any]:
    """One host's keys in the JSON: its /srv, projects (core first), orphans, warnings, names it lacks."""
    v = o.value
    if v is None:
        return {}
    return dict(
        srv=v.srv,
        ok=v.ok,
        projects=[{
            "kind": p.kind, "name": p.name, "dir": p.dir, "state": p.state, "ok": p.ok,
            "expected": list(p.expected), "running": list(p.running), "containers": p.containers,
            "problems": list(p.problems), "image_age_seconds": p.image_age,
        } for p in sorted(v.projects, key=lambda p: (_kind_order(p.kind), p.name))],
        orphans=list(v.orphans),
        warnings=list(v.warnings),
        missing=list(v.missing),
    )


def status_json(outcomes: Sequence["Outcome[HostStatus]"]) -> dict[str, Any]:
    """The same report for scripts: ``{"hosts": [...], "missing": [...], "total": {...}}`` (core.status,
    boot's; `status_envelope` is the envelope of every task)."""
    return {"hosts": [host_entry(o, **_host_fields(o)) for o in outcomes],
            "missing": list(missing_everywhere(outcomes)), "total": _counts(outcomes)}


def status_envelope(task: str) -> Callable[[Sequence["Outcome[HostStatus]"]], dict[str, Any]]:
    """The JSON of `task` (``apps.status``): `aegir.report.envelope`, the counts as its summary and
    ``missing`` (names no host has) beside it."""
    def data(outcomes: Sequence["Outcome[HostStatus]"]) -> dict[str, Any]:
        return envelope(task, outcomes, _host_fields, summary=_counts(outcomes),
                        missing=list(missing_everywhere(outcomes)))
    return data
