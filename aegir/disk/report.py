"""What the disk tasks print: the tables, the same data in the JSON envelope, the prometheus gauges.

Every JSON document is `aegir.report.envelope` (``{"task", "dry", "hosts":
[{"host", "status", "error", ...}], "summary"}``); a host that failed or could
not be reached gets `aegir.report.failed_row` in a table (its ``KIND: reason``
line in a text report); warnings are `aegir.report.warning` lines on stderr and
a host's ``"warnings"`` in the JSON.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from aegir.action import HostRun, Ran, Report
from aegir.disk.facts import Archive, Filesystem, HostDisk
from aegir.disk.plan import CleanResult, HostClean, HostPrune, Item, PruneResult
from aegir.fleet import Outcome
from aegir.report import age, envelope, failed_line, failed_row, human, jsonable, printable, table, warning
from aegir.sh import mask_data, mask_values


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


def render(outcomes: Sequence[Outcome[HostDisk]], top: int, now: float | None = None) -> str:
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
    answered = [o.value for o in outcomes if o.value is not None]
    projects = (f"; projects {human(t['projects'])}" if any(d.projects is not None for d in answered)
                else "; projects not measured (--fast)" if answered else "")
    out += ["", f"fleet: {t['hosts_ok']}/{t['hosts']} hosts; {srv}; docker {human(t['docker_size'])} "
                f"({human(t['docker_reclaimable'])} reclaimable){projects}"]
    return "\n".join(out)


def totals(outcomes: Sequence[Outcome[HostDisk]]) -> dict[str, int]:
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


def _warned(o: Outcome[HostDisk], full: Sequence[tuple[str, str]]) -> list[str]:
    """A host's warnings: what its reads complained of, then its filesystems over ``--warn``."""
    return [*(o.value.warnings if o.value else ()), *(text for host, text in full if host == o.host.name)]


def disk_report(outcomes: Sequence[Outcome[HostDisk]], *, top: int, warn: int | None = None,
                prometheus_format: bool = False, now: float | None = None) -> Report:
    """disk.report: the tables (or the prometheus text) and the JSON envelope, the fleet's totals under
    ``summary``; with `warn`, each filesystem over it is a warning and a problem (exit 1)."""
    full = too_full(outcomes, warn) if warn is not None else []

    def fields(o: Outcome[HostDisk]) -> dict[str, Any]:
        d = o.value
        if d is None:
            return {}
        return {"root": d.filesystems.root, "srv": d.filesystems.srv, "srv_state": d.filesystems.srv_state,
                "docker": d.docker, "docker_error": d.docker_error, "warnings": _warned(o, full),
                "projects": None if d.projects is None else list(d.projects[:top]),
                "archives": None if d.archives is None else list(d.archives)}

    data = envelope("disk.report", outcomes, fields, summary=totals(outcomes))
    text = prometheus(outcomes) if prometheus_format else render(outcomes, top, now)
    return Report(data, text, problems=bool(full), warnings=tuple(warning(h, t) for h, t in full),
                  verbatim=prometheus_format)


def left_out(bad: Sequence[Outcome[Any]]) -> str:
    """``hyp2 unreachable``, ``hyp2, hyp3 unreachable; hyp4 failed``: the hosts no plan was made for."""
    groups: dict[str, list[str]] = {}
    for o in bad:
        groups.setdefault("unreachable" if o.kind == "unreachable" else "failed", []).append(o.host.name)
    return "; ".join(f"{', '.join(names)} {kind}" for kind, names in groups.items())


# --------------------------------------------------------------------------- disk.prune


def _kind_counts(items: Sequence[Item]) -> str:
    counts: dict[str, int] = {}
    for i in items:
        counts[i.kind] = counts.get(i.kind, 0) + 1
    return ", ".join(f"{n} {k}{'s' if n > 1 and k != 'build cache' else ''}" for k, n in counts.items()) or "nothing"


def render_prune_plan(outcomes: Sequence[Outcome[HostRun[HostPrune, Any]]]) -> str:
    """Every item to remove (bytes from Docker's accounting), what is kept on purpose, one line per host."""
    planned = [(o, o.value.plan) for o in outcomes if o.value is not None]
    rows = [[o.host.name, i.kind, i.name, human(i.bytes), i.why] for o, p in planned for i in p.plan.remove]
    out = [table(["HOST", "REMOVE", "NAME", "SIZE", "WHY"], rows) if rows else "nothing to prune"]
    kept = [[o.host.name, i.kind, i.name, human(i.bytes), i.why] for o, p in planned for i in p.plan.kept]
    if kept:
        out += ["", table(["HOST", "KEEP", "NAME", "SIZE", "WHY"], kept)]
    out.append("")
    for o in outcomes:
        if o.value is None:
            out.append(failed_line(o))
            continue
        p = o.value.plan
        out.append(printable(f"{o.host.name}: {_kind_counts(p.plan.remove)}; at least {human(p.plan.bytes)} "
                             f"(docker holds {human(p.before.size)})"))
    return "\n".join(out)


PRUNE_HEADERS = ["HOST", "KIND", "REMOVED", "BEFORE", "AFTER", "FREED", "STATUS"]


def _prune_rows(o: Outcome[HostRun[HostPrune, PruneResult]]) -> list[list[Any]]:
    """One host's rows of the prune's result: one per kind (removed, failed, bytes freed), then its total:
    removals done of those planned, and why not all when so. A host Docker stopped answering for has no
    "after": its sizes after are ``?``, not guessed."""
    r = o.value.result if o.value is not None else None
    if r is None:
        if o.value is None or not o.ok:
            return [failed_row(o, len(PRUNE_HEADERS))]
        held = human(o.value.plan.before.size)
        return [[o.host.name, "total", "0 of 0", held, held, human(0), "nothing to do"]]
    rows = []
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
    return rows


def render_prune_result(outcomes: Sequence[Outcome[HostRun[HostPrune, PruneResult]]]) -> str:
    """One row per host and kind, then the host's total (`_prune_rows`)."""
    return table(PRUNE_HEADERS, [row for o in outcomes for row in _prune_rows(o)])


def _prune_fields(o: Outcome[HostRun[HostPrune, PruneResult]]) -> dict[str, Any]:
    """A host's JSON: its plan (what to remove, what is kept and why, its warnings, the bytes, Docker's
    accounting then), and once acted on, what was removed and what Docker refused, `done` of `planned`, why
    it `stopped` early, the accounting before and after (None when Docker stopped answering), the bytes freed."""
    if o.value is None:
        return {}
    p, r = o.value.plan, o.value.result
    out: dict[str, Any] = {"remove": p.plan.remove, "kept": p.plan.kept, "warnings": list(p.plan.warnings),
                           "bytes": p.plan.bytes, "before": p.before}
    if r is not None:
        out.update(removed=[d.item for d in r.done if not d.error],
                   failed=[{"item": d.item, "error": d.error} for d in r.failed], done=r.removed,
                   planned=r.planned, stopped=r.stopped, before=r.before, after=r.after, freed=r.freed())
    return out


def prune_report(ran: Ran[HostPrune, PruneResult]) -> Report:
    """disk.prune: the plan (dry, or nothing to do) or what was done; the JSON envelope; the plans'
    warnings (a project whose images are unknown) as warning lines."""
    plans = ran.plans()
    results = ran.results()
    freed = [r.freed() for _, r in results]
    summary = {"hosts": len(ran.outcomes), "pruned": ran.acted, "removals": sum(len(p.plan.remove) for _, p in plans),
               "bytes": sum(p.plan.bytes for _, p in plans), "removed": sum(r.removed for _, r in results),
               "freed": sum(f["total"] for f in freed if f) if results and all(freed) else None,
               "not_pruned": [o.host.name for o in ran.outcomes  # planned for, yet no removal was tried
                              if ran.acted and (o.value is None or (o.value.result is None and not o.ok))]}
    text = render_prune_result(ran.outcomes) if ran.acted else render_prune_plan(ran.outcomes)
    return Report(envelope("disk.prune", ran.outcomes, _prune_fields, dry=ran.dry, summary=summary), text,
                  warnings=tuple(warning(o.host.name, w) for o, p in plans for w in p.plan.warnings))


# --------------------------------------------------------------------------- disk.clean


def render_clean_plan(outcomes: Sequence[Outcome[HostRun[HostClean, Any]]]) -> str:
    """Per host: the recipe, and each step's exact command in its container (stdin shown, .env values hidden)."""
    out = []
    for o in outcomes:
        if o.value is None:
            out.append(failed_line(o))
            continue
        plan = o.value.plan.plan
        if plan is None:
            out.append(f"{o.host.name}: no such app")
            continue
        out.append(printable(f"{o.host.name}: {plan.project.path}: recipe {plan.recipe.name} ({plan.recipe.file})"))
        for c, line in zip(plan.commands, plan.lines):
            who = f" as {c.user}" if c.user else ""
            out.append(printable(f"  # {c.step} (service {c.service}{who})"))
            out.append(printable(f"  {line}" + (f"  <<< {c.shown_stdin!r}" if c.shown_stdin is not None else "")))
    return "\n".join(out)


CLEAN_HEADERS = ["HOST", "STEP", "SERVICE", "EXIT", "TIME", "RESULT"]


def render_clean_result(outcomes: Sequence[Outcome[HostRun[HostClean, CleanResult]]]) -> str:
    """One row per host and step (exit code, duration), then the app folder's size before and after."""
    rows = []
    sizes = []
    for o in outcomes:
        r = o.value.result if o.value is not None else None
        if r is None:
            if o.value is None or not o.ok:
                rows.append(failed_row(o, len(CLEAN_HEADERS)))
            continue  # no such app there
        for s in r.steps:
            rows.append([o.host.name, s.step, s.service, str(s.exit_code), f"{s.seconds:.1f}s",
                         s.state + (f": {s.output.splitlines()[-1]}" if s.state == "failed" and s.output else "")])
        freed = None if r.size_before is None or r.size_after is None else r.size_before - r.size_after
        sizes.append(printable(f"{o.host.name}: {r.project} {human(r.size_before)} -> {human(r.size_after)} "
                               f"({human(freed)} freed)"))
    return "\n".join([table(CLEAN_HEADERS, rows), "", *sizes])


def _clean_fields(o: Outcome[HostRun[HostClean, CleanResult]]) -> dict[str, Any]:
    """A host's JSON: the app's project and recipe and each command (None: no such app there); once run,
    `result`: each step's exit code, time and state, the folder's size before and after."""
    if o.value is None:
        return {}
    p, r = o.value.plan.plan, o.value.result
    if p is None:
        return {"project": None}
    out: dict[str, Any] = {
        "project": p.project.path, "recipe": p.recipe.name, "recipe_file": p.recipe.file,
        "commands": [{"step": c.step, "service": c.service, "user": c.user, "line": line, "stdin": c.shown_stdin,
                      "if_missing": c.if_missing} for c, line in zip(p.commands, p.lines)]}
    if r is not None:
        out["result"] = r
    return out


def clean_report(ran: Ran[HostClean, CleanResult]) -> Report:
    """disk.clean: each host's plan (dry, or nothing to do) or what its steps did; the JSON envelope."""
    results = ran.results()
    summary = {"hosts": len(ran.outcomes), "ran": ran.acted,
               "found": [o.host.name for o, p in ran.plans() if p.plan is not None],
               "failed_steps": sum(1 for _, r in results for s in r.steps if s.state == "failed")}
    text = render_clean_result(ran.outcomes) if ran.acted else render_clean_plan(ran.outcomes)
    data = envelope("disk.clean", ran.outcomes, _clean_fields, dry=ran.dry, summary=summary)
    # The one boundary every byte of this report passes: no .env value or stdin of any host's plan in it.
    secrets = sorted({s for _, p in ran.plans() if p.plan is not None for s in p.plan.secrets})
    return Report(mask_data(jsonable(data), secrets), mask_values(text, secrets))


# --------------------------------------------------------------------------- --warn, --format prometheus


def used_percent(fs: Filesystem) -> int:
    """Used space as ``df`` prints it: used / (used + available), rounded up (root's reserve excluded).

    >>> used_percent(Filesystem("/dev/x", "/", 100, 90, 5))
    95
    """
    room = fs.used + fs.free
    return -(-fs.used * 100 // room) if room else 0


def too_full(outcomes: Sequence[Outcome[HostDisk]], pct: int) -> list[tuple[str, str]]:
    """(host, what) per filesystem (/ or /srv) of a host that is more than `pct` % used."""
    out = []
    for o in outcomes:
        if o.value is None:
            continue
        fss = o.value.filesystems
        for fs in (fss.root, fss.srv):
            if fs is not None and used_percent(fs) > pct:
                out.append((o.host.name, f"{fs.target} is {used_percent(fs)}% used ({human(fs.free)} free; "
                                         f"warn above {pct}%)"))
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


def prometheus(outcomes: Sequence[Outcome[HostDisk]]) -> str:
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
