"""The disk report: one fleet table, the largest projects, a fleet total; the same as JSON."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aegir import fleet
from aegir.disk.facts import HostDisk
from aegir.report import failed_row, host_entry, human, table


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
        entry = host_entry(o)
        if d is not None:
            entry.update(
                root=d.filesystems.root, srv=d.filesystems.srv, srv_state=d.filesystems.srv_state,
                docker=d.docker, docker_error=d.docker_error, warnings=d.warnings,
                projects=list(d.projects[:top]),
            )
        hosts.append(entry)
    return {"hosts": hosts, "total": totals(outcomes)}
