"""The disk report: one fleet table, the largest projects, a fleet total; the same as JSON."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from aegir import fleet
from aegir.disk.facts import Archive, Filesystem, HostDisk
from aegir.disk.plan import Item
from aegir.disk.steps import CleanPlan, CleanResult, HostPrune, PruneResult
from aegir.report import age, failed_row, host_entry, human, printable, table


def _fs_cell(fs: Any) -> str:
    return f"{human(fs.used)}/{human(fs.size)} ({human(fs.free)} free)"


def _usage_cell(u: Any) -> str:
    return f"{human(u.size)} ({human(u.reclaimable)})"


#: The columns that describe a checkpoint archive (disk.report and mysql.wal).
ARCHIVE_HEADERS = ["SIZE", "CHECKPOINTS", "OLDEST", "NEWEST", "RETENTION"]


def archive_cells(a: Archive | None, now: float) -> list[str | None]:
    """An archive's size, count, oldest and newest checkpoint (id and age) and retention, as table cells."""
    if a is None:
        return ["-", "0", None, None, None]

    def when(entry: str | None, t: float | None) -> str | None:
        return None if entry is None else printable(f"{entry} ({age(now - t) if t is not None else '?'} ago)")

    return [human(a.bytes), str(a.checkpoints), when(a.oldest, a.oldest_time), when(a.newest, a.newest_time),
            a.retention]


def render(outcomes: Sequence[fleet.Outcome[HostDisk]], top: int, now: float | None = None) -> str:
    """The fleet table, the projects table, the checkpoint archives, and the fleet total line."""
    now = time.time() if now is None else now
    rows = []
    for o in outcomes:
        d = o.value
        if d is None:
            rows.append(failed_row(o, 8))
            continue
        fs = d.filesystems
        srv = _fs_cell(fs.srv) if fs.srv else f"{fs.srv_state}"
        docker = d.docker
        cells = [_usage_cell(getattr(docker, k)) for k in ("images", "containers", "volumes", "build_cache")] \
            if docker else [None] * 4
        status = "ok" if docker else f"no docker: {d.docker_error}"
        if d.warnings:
            status += "; " + "; ".join(d.warnings)
        rows.append([o.host.name, _fs_cell(fs.root) if fs.root else None, srv, *cells, status])
    out = [table(["HOST", "/", "/srv", "IMAGES (RECL.)", "CONTAINERS (RECL.)", "VOLUMES (RECL.)",
                  "BUILD CACHE (RECL.)", "STATUS"], rows)]
    prows = [[o.host.name, p.path, human(p.total), human(p.data), human(p.db), human(p.wal)]
             for o in outcomes if o.value for p in (o.value.projects or ())[:top]]
    if prows:
        out += ["", table(["HOST", "PROJECT", "TOTAL", "DATA", "DB", "WAL"], prows)]
    arows = [[o.host.name, *archive_cells(a, now)] for o in outcomes if o.value for a in o.value.archives or ()]
    if arows:
        out += ["", table(["HOST", "ARCHIVE", *ARCHIVE_HEADERS], arows)]
    t = totals(outcomes)
    srv = f"/srv used {human(t['srv_used'])} of {human(t['srv_size'])}" if t["srv_size"] else "no /srv mounted"
    out += ["", f"fleet: {t['hosts_ok']}/{t['hosts']} hosts; {srv}; docker {human(t['docker_size'])} "
                f"({human(t['docker_reclaimable'])} reclaimable); "
                + (f"projects {human(t['projects'])}" if any(o.value and o.value.projects is not None for o in outcomes)
                   else "projects not measured (--fast)")]
    return "\n".join(out)


def totals(outcomes: Sequence[fleet.Outcome[HostDisk]]) -> dict[str, int]:
    """Fleet sums over the hosts that answered."""
    vals = [o.value for o in outcomes if o.value is not None]
    return {
        "hosts": len(outcomes),
        "hosts_ok": sum(1 for o in outcomes if o.ok),
        "root_used": sum(v.filesystems.root.used for v in vals if v.filesystems.root),
        "srv_size": sum(v.filesystems.srv.size for v in vals if v.filesystems.srv),
        "srv_used": sum(v.filesystems.srv.used for v in vals if v.filesystems.srv),
        "srv_free": sum(v.filesystems.srv.free for v in vals if v.filesystems.srv),
        "docker_size": sum(v.docker.size for v in vals if v.docker),
        "docker_reclaimable": sum(v.docker.reclaimable for v in vals if v.docker),
        "projects": sum(p.total for v in vals for p in v.projects or ()),
        "archives": sum(a.bytes or 0 for v in vals for a in v.archives or ()),
    }


def as_json(outcomes: Sequence[fleet.Outcome[HostDisk]], top: int) -> dict[str, Any]:
    hosts = []
    for o in outcomes:
        d = o.value
        entry = host_entry(o)
        if d is not None:
            entry.update(
                root=d.filesystems.root, srv=d.filesystems.srv, srv_state=d.filesystems.srv_state,
                docker=d.docker, docker_error=d.docker_error, warnings=d.warnings,
                projects=None if d.projects is None else list(d.projects[:top]),
                archives=None if d.archives is None else list(d.archives),
            )
        hosts.append(entry)
    return {"hosts": hosts, "total": totals(outcomes)}


# --------------------------------------------------------------------------- disk.prune


def _kind_counts(items: Sequence[Item]) -> str:
    counts: dict[str, int] = {}
    for i in items:
        counts[i.kind] = counts.get(i.kind, 0) + 1
    return ", ".join(f"{n} {k}{'s' if n > 1 and k != 'build cache' else ''}" for k, n in counts.items()) or "nothing"


def render_prune_plan(outcomes: Sequence[fleet.Outcome[HostPrune]]) -> str:
    """Every item to remove (bytes from Docker's accounting), what is kept on purpose, one line per host."""
    rows = [[o.host.name, i.kind, i.name, human(i.bytes), i.why] for o in outcomes if o.value
            for i in o.value.plan.remove]
    out = [table(["HOST", "REMOVE", "NAME", "SIZE", "WHY"], rows) if rows else "nothing to prune"]
    kept = [[o.host.name, i.kind, i.name, human(i.bytes), i.why] for o in outcomes if o.value
            for i in o.value.plan.kept]
    if kept:
        out += ["", table(["HOST", "KEEP", "NAME", "SIZE", "WHY"], kept)]
    out.append("")
    for o in outcomes:
        if o.value is None:
            out.append(f"{o.host.name}: {o.status}")
            continue
        plan = o.value.plan
        out.append(f"{o.host.name}: {_kind_counts(plan.remove)}; at least {human(plan.bytes)} "
                   f"(docker holds {human(o.value.before.size)})")
        out += [f"{o.host.name}: warning: {w}" for w in plan.warnings]
    return "\n".join(out)


def prune_plan_json(outcomes: Sequence[fleet.Outcome[HostPrune]]) -> list[dict[str, Any]]:
    return [{"host": o.host.name, "status": o.kind, "error": o.error,
             **({"remove": o.value.plan.remove, "kept": o.value.plan.kept, "warnings": o.value.plan.warnings,
                 "bytes": o.value.plan.bytes, "before": o.value.before} if o.value else {})}
            for o in outcomes]


def render_prune_result(outcomes: Sequence[fleet.Outcome[PruneResult]]) -> str:
    """One row per host and kind: removed, failed, bytes freed (Docker's accounting before and after), then
    the host's total: removals done of those planned, and why not all when so. A host Docker stopped
    answering for has no "after": its sizes after are ``?``, not guessed."""
    rows = []
    for o in outcomes:
        r = o.value
        if r is None:
            rows.append(failed_row(o, 7))
            continue
        freed = r.freed()
        for kind, usage_key in (("container", "containers"), ("image", "images"), ("volume", "volumes"),
                                ("build cache", "build_cache"), ("network", None)):
            mine = [d for d in r.done if d.item.kind == kind]
            before = getattr(r.before, usage_key).size if usage_key else None
            after = getattr(r.after, usage_key).size if usage_key and r.after else None
            if not mine and (r.after is None or before == after):
                continue
            errors = "; ".join(f"{d.item.name}: {d.error}" for d in mine if d.error)
            rows.append([o.host.name, kind, str(sum(1 for d in mine if not d.error)), human(before),
                         "?" if r.after is None and usage_key else human(after),
                         "-" if not usage_key else human(freed[usage_key]) if freed else "?", errors or "ok"])
        rows.append([o.host.name, "total", f"{r.removed} of {r.planned}", human(r.before.size),
                     human(r.after.size) if r.after else "?", human(freed["total"]) if freed else "?",
                     r.problem or "ok"])
    return table(["HOST", "KIND", "REMOVED", "BEFORE", "AFTER", "FREED", "STATUS"], rows)


def prune_result_json(outcomes: Sequence[fleet.Outcome[PruneResult]]) -> list[dict[str, Any]]:
    """Per host: what was removed and what Docker refused, `done` of `planned`, why it `stopped` early, the
    accounting before and after (None when Docker stopped answering) and the bytes freed."""
    return [host_entry(o, **({"removed": [d.item for d in o.value.done if not d.error],
                              "failed": [{"item": d.item, "error": d.error} for d in o.value.failed],
                              "done": o.value.removed, "planned": o.value.planned, "stopped": o.value.stopped,
                              "before": o.value.before, "after": o.value.after, "freed": o.value.freed()}
                             if o.value else {}))
            for o in outcomes]


# --------------------------------------------------------------------------- disk.clean


def render_clean_plan(outcomes: Sequence[fleet.Outcome[CleanPlan | None]]) -> str:
    """Per host: the recipe, and each step's exact command in its container (stdin shown, .env values hidden)."""
    out = []
    for o in outcomes:
        plan = o.value
        if plan is None:
            out.append(f"{o.host.name}: {o.status if not o.ok else 'no such app'}")
            continue
        out.append(f"{o.host.name}: {plan.project.path}: recipe {plan.recipe.name} ({plan.recipe.file})")
        for c, line in zip(plan.commands, plan.lines):
            who = f" as {c.user}" if c.user else ""
            out.append(f"  # {c.step} (service {c.service}{who})")
            out.append(f"  {line}" + (f"  <<< {c.shown_stdin!r}" if c.shown_stdin is not None else ""))
    return "\n".join(out)


def clean_plan_json(outcomes: Sequence[fleet.Outcome[CleanPlan | None]]) -> list[dict[str, Any]]:
    hosts = []
    for o in outcomes:
        entry: dict[str, Any] = {"host": o.host.name, "status": o.kind, "error": o.error}
        if o.value is not None:
            p = o.value
            entry.update(project=p.project.path, recipe=p.recipe.name, recipe_file=p.recipe.file, commands=[
                {"step": c.step, "service": c.service, "user": c.user, "line": line, "stdin": c.shown_stdin,
                 "if_missing": c.if_missing} for c, line in zip(p.commands, p.lines)])
        hosts.append(entry)
    return hosts


def render_clean_result(outcomes: Sequence[fleet.Outcome[CleanResult]]) -> str:
    """One row per host and step (exit code, duration), then the app folder's size before and after."""
    rows = []
    sizes = []
    for o in outcomes:
        r = o.value
        if r is None:
            rows.append([o.host.name, None, None, None, None, o.status])
            continue
        for s in r.steps:
            rows.append([o.host.name, s.step, s.service, str(s.exit_code), f"{s.seconds:.1f}s",
                         s.state + (f": {s.output.splitlines()[-1]}" if s.state == "failed" and s.output else "")])
        freed = None if r.size_before is None or r.size_after is None else r.size_before - r.size_after
        sizes.append(f"{o.host.name}: {r.project} {human(r.size_before)} -> {human(r.size_after)} "
                     f"({human(freed)} freed)")
    return "\n".join([table(["HOST", "STEP", "SERVICE", "EXIT", "TIME", "RESULT"], rows), "", *sizes])


def clean_result_json(outcomes: Sequence[fleet.Outcome[CleanResult]]) -> list[dict[str, Any]]:
    return [{"host": o.host.name, "status": o.kind, "error": o.error,
             **({"result": o.value} if o.value else {})} for o in outcomes]


# --------------------------------------------------------------------------- --warn, --format prometheus


def used_percent(fs: Filesystem) -> int:
    """Used space as ``df`` prints it: used / (used + available), rounded up (root's reserve excluded).

    >>> used_percent(Filesystem("/dev/x", "/", 100, 90, 5))
    95
    """
    room = fs.used + fs.free
    return -(-fs.used * 100 // room) if room else 0


def too_full(outcomes: Sequence[fleet.Outcome[HostDisk]], pct: int) -> list[str]:
    """One line per filesystem (/ or /srv) of a host that is more than `pct` % used."""
    out = []
    for o in outcomes:
        if o.value is None:
            continue
        fss = o.value.filesystems
        for fs in (fss.root, fss.srv):
            if fs is not None and used_percent(fs) > pct:
                out.append(f"{o.host.name}: {fs.target} is {used_percent(fs)}% used ({human(fs.free)} free; "
                           f"warn above {pct}%)")
    return out


def labels(**kv: str) -> str:
    def esc(v: str) -> str:
        return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')

    return "{" + ",".join(f'{k}="{esc(v)}"' for k, v in kv.items()) + "}"


#: The gauges of an app's checkpoint archive, the same in disk.report and mysql.wal.
ARCHIVE_METRICS = (
    ("aegir_mysql_archive_bytes", "Bytes of an app's checkpoint archive (<srv>/archive/mysql/<kind>/<app>)."),
    ("aegir_mysql_archive_checkpoints", "Complete checkpoints in an app's archive."),
    ("aegir_mysql_archive_oldest_timestamp_seconds", "When the oldest complete checkpoint was written (Unix time)."),
    ("aegir_mysql_archive_newest_timestamp_seconds", "When the newest complete checkpoint was written (Unix time)."),
    ("aegir_mysql_archive_keep", "The newest checkpoint's retention: checkpoints kept (absent: every one)."),
)


def archive_samples(host: str, archives: Sequence[Archive]) -> dict[str, list[str]]:
    """The `ARCHIVE_METRICS` samples (labels and value) of one host's archives."""
    samples: dict[str, list[str]] = {name: [] for name, _ in ARCHIVE_METRICS}
    for a in archives:
        lab = labels(host=host, app=a.path)
        for name, value in (("aegir_mysql_archive_bytes", a.bytes), ("aegir_mysql_archive_checkpoints", a.checkpoints),
                            ("aegir_mysql_archive_oldest_timestamp_seconds", a.oldest_time),
                            ("aegir_mysql_archive_newest_timestamp_seconds", a.newest_time),
                            ("aegir_mysql_archive_keep", a.keep)):
            if value is not None:
                samples[name].append(f"{lab} {value}")
    return samples


def metrics_text(metrics: Sequence[tuple[str, str]], samples: dict[str, list[str]]) -> str:
    """Prometheus' text format: each metric with samples, its HELP and TYPE (gauge) first."""
    out = []
    for name, help_text in metrics:
        if samples.get(name):
            out += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", *(f"{name}{s}" for s in samples[name])]
    return "\n".join(out)


_METRICS = (
    ("aegir_disk_report_up", "1 when the host answered the disk report, else 0."),
    ("aegir_filesystem_size_bytes", "Size of / and of /srv (df)."),
    ("aegir_filesystem_used_bytes", "Used bytes of / and of /srv (df)."),
    ("aegir_filesystem_avail_bytes", "Bytes available to unprivileged users on / and /srv (df)."),
    ("aegir_docker_bytes", "Bytes per line of docker system df (images, containers, volumes, build_cache)."),
    ("aegir_docker_reclaimable_bytes", "Reclaimable bytes per line of docker system df."),
    ("aegir_project_bytes", "Bytes of a Compose project folder (part: total, data, db, wal)."),
    *ARCHIVE_METRICS,
)


def prometheus(outcomes: Sequence[fleet.Outcome[HostDisk]]) -> str:
    """The report in Prometheus' text format, for node_exporter's textfile collector (every project)."""
    samples: dict[str, list[str]] = {name: [] for name, _ in _METRICS}
    for o in outcomes:
        host = o.host.name
        samples["aegir_disk_report_up"].append(f"{labels(host=host)} {1 if o.ok else 0}")
        d = o.value
        if d is None:
            continue
        for fs in (d.filesystems.root, d.filesystems.srv):
            if fs is None:
                continue
            lab = labels(host=host, mountpoint=fs.target, device=fs.source)
            samples["aegir_filesystem_size_bytes"].append(f"{lab} {fs.size}")
            samples["aegir_filesystem_used_bytes"].append(f"{lab} {fs.used}")
            samples["aegir_filesystem_avail_bytes"].append(f"{lab} {fs.free}")
        if d.docker is not None:
            for kind in ("images", "containers", "volumes", "build_cache"):
                u = getattr(d.docker, kind)
                samples["aegir_docker_bytes"].append(f"{labels(host=host, kind=kind)} {u.size}")
                samples["aegir_docker_reclaimable_bytes"].append(f"{labels(host=host, kind=kind)} {u.reclaimable}")
        for p in d.projects or ():
            for part in ("total", "data", "db", "wal"):
                value = getattr(p, part)
                if value is not None:
                    samples["aegir_project_bytes"].append(f"{labels(host=host, project=p.path, part=part)} {value}")
        for name, lines in archive_samples(host, d.archives or ()).items():
            samples[name] += lines
    return metrics_text(_METRICS, samples)
