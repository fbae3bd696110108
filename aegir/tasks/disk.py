"""Disk: where the space goes on each hypervisor (`/`, `/srv`, Docker, projects)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from invoke import Collection

from .. import fleet
from ..docker import DockerUnavailable
from ..errors import CommandError
from ..facts.disk import (DockerUsage, Filesystems, ProjectSize, parse_df, parse_docker_df, parse_du,
                          split_usage, usage_cmd)
from ..report import FORMAT_HELP, check_format, emit, human, table
from .base import exit_if_failed, targets, task


@dataclass(frozen=True)
class HostDisk:
    """Everything `disk.report` knows about one host."""

    filesystems: Filesystems
    projects: tuple[ProjectSize, ...]
    docker: DockerUsage | None
    docker_error: str | None = None
    warnings: tuple[str, ...] = field(default=())


def gather(hc: fleet.HostContext) -> HostDisk:
    """Read the disk facts of one host (read-only)."""
    srv = hc.host.srv
    cmd = usage_cmd(srv)
    probe = hc.run(cmd, check=False)
    df_text, du_text = split_usage(probe.stdout)
    filesystems = parse_df(df_text, probe.stderr, srv)
    if filesystems.root is None:
        raise CommandError(hc.name, cmd.line, probe.exited, probe.stderr)
    projects: tuple[ProjectSize, ...] = parse_du(du_text)
    warnings: list[str] = []
    if probe.exited != 0 and probe.stderr.strip() and filesystems.srv_state != "missing":
        warnings.append(probe.stderr.strip().splitlines()[-1])
    try:
        usage: DockerUsage | None = parse_docker_df(hc.docker().df())
        error = None
    except DockerUnavailable as exc:
        usage, error = None, exc.message
    return HostDisk(filesystems, projects, usage, error, tuple(warnings))


def _fs_cell(fs: Any) -> str:
    return f"{human(fs.used)}/{human(fs.size)} ({human(fs.free)} free)"


def _usage_cell(u: Any) -> str:
    return f"{human(u.size)} ({human(u.reclaimable)})"


def render(outcomes: Sequence[fleet.Outcome[HostDisk]], top: int) -> str:
    """The fleet table, the projects table, and the fleet total line."""
    rows = []
    for o in outcomes:
        d = o.value
        if d is None:
            rows.append([o.host.name, None, None, None, None, None, None, o.status])
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
             for o in outcomes if o.value for p in o.value.projects[:top]]
    if prows:
        out += ["", table(["HOST", "PROJECT", "TOTAL", "DATA", "DB", "WAL"], prows)]
    t = totals(outcomes)
    srv = f"/srv used {human(t['srv_used'])} of {human(t['srv_size'])}" if t["srv_size"] else "no /srv mounted"
    out += ["", f"fleet: {t['hosts_ok']}/{t['hosts']} hosts; {srv}; docker {human(t['docker_size'])} "
                f"({human(t['docker_reclaimable'])} reclaimable); projects {human(t['projects'])}"]
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
        "projects": sum(p.total for v in vals for p in v.projects),
    }


def as_json(outcomes: Sequence[fleet.Outcome[HostDisk]], top: int) -> dict[str, Any]:
    hosts = []
    for o in outcomes:
        d = o.value
        entry: dict[str, Any] = {"host": o.host.name, "status": o.kind, "error": o.error}
        if d is not None:
            entry.update(
                root=d.filesystems.root, srv=d.filesystems.srv, srv_state=d.filesystems.srv_state,
                docker=d.docker, docker_error=d.docker_error, warnings=d.warnings,
                projects=list(d.projects[:top]),
            )
        hosts.append(entry)
    return {"hosts": hosts, "total": totals(outcomes)}


@task(help={"format": FORMAT_HELP, "top": "Largest projects to list per host (default 5)."})
def report(c, format="table", top=5):
    """Show disk usage per host: /, /srv, Docker (reclaimable) and the largest projects."""
    fmt = check_format(format)
    top = int(top)
    outcomes = fleet.each(c, targets(c), gather, label="disk.report")
    emit(fmt, data=as_json(outcomes, top), text=render(outcomes, top))
    exit_if_failed(outcomes)


ns = Collection("disk")
ns.add_task(report)
