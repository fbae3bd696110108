"""Disk facts: filesystems (`df`), Compose project sizes (`du`), Docker's accounting.

Each fact is a command builder and a pure parser; `tests/unit/test_facts_disk.py`
checks both on recorded output.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aegir.docker import DockerUnavailable
from aegir.errors import CommandError
from aegir.host import HostContext
from aegir.layout import PROJECT_KINDS, PROJECT_PARTS
from aegir.sh import Cmd, shell

#: Where Compose projects live under /srv, in start-up order.


@dataclass(frozen=True)
class Filesystem:
    """One `df` row, sizes in bytes."""

    source: str
    target: str
    size: int
    used: int
    free: int


@dataclass(frozen=True)
class Filesystems:
    """`/` and the filesystem holding /srv; `srv_state` says whether /srv is its own mount."""

    root: Filesystem | None
    srv: Filesystem | None
    srv_state: str  # "mounted" | "not mounted" | "missing"


_USAGE_SCRIPT = """\
LC_ALL=C df -B1 --output=source,size,used,avail,target / "$1"
echo '@@du'
cd "$1" 2>/dev/null || exit 0
set --
for d in core/*/ apps/*/ users/*/; do [ -d "$d" ] && set -- "$@" "${d%/}"; done
[ "$#" -eq 0 ] || exec du -B1 -x -d1 -- "$@"
"""


def usage_cmd(srv: str) -> Cmd:
    """One probe, one SSH session: ``df`` of / and /srv in bytes, then ``du`` of every
    folder under core/ apps/ users/ and its direct subfolders (a single pass)."""
    return shell(_USAGE_SCRIPT, srv)


def split_usage(stdout: str) -> tuple[str, str]:
    """`usage_cmd` output -> (df part, du part)."""
    df, _, du = stdout.partition("@@du\n")
    return df, du


def parse_df(stdout: str, stderr: str, srv: str) -> Filesystems:
    """Read the df part of `usage_cmd` output. /srv not being its own mount point is 'not mounted'."""
    rows: list[Filesystem] = []
    for line in stdout.splitlines()[1:]:
        parts = line.split(None, 4)
        if len(parts) == 5 and all(p.isdigit() for p in parts[1:4]):
            rows.append(Filesystem(parts[0], parts[4], int(parts[1]), int(parts[2]), int(parts[3])))
    root = rows[0] if rows else None
    if f"{srv}: No such file or directory" in stderr or f"'{srv}': No such file or directory" in stderr:
        return Filesystems(root, None, "missing")
    srv_row = rows[1] if len(rows) > 1 else None
    if srv_row is None or srv_row.target != srv:
        return Filesystems(root, None, "not mounted")
    return Filesystems(root, srv_row, "mounted")


@dataclass(frozen=True)
class ProjectSize:
    """A project folder's size and that of its data/db/wal folders (None: absent)."""

    kind: str
    name: str
    total: int
    data: int | None = None
    db: int | None = None
    wal: int | None = None

    @property
    def path(self) -> str:
        return f"{self.kind}/{self.name}"


def parse_du(stdout: str) -> tuple[ProjectSize, ...]:
    """Read the du part of `usage_cmd` output (``bytes<TAB>kind/name[/part]``), largest project first."""
    totals: dict[tuple[str, str], int] = {}
    parts: dict[tuple[str, str], dict[str, int]] = {}
    for line in stdout.splitlines():
        size, _, path = line.partition("\t")
        if not size.isdigit():
            continue
        bits = path.split("/")
        if len(bits) < 2 or bits[0] not in PROJECT_KINDS:
            continue
        key = (bits[0], bits[1])
        if len(bits) == 2:
            totals[key] = int(size)
        elif len(bits) == 3 and bits[2] in PROJECT_PARTS:
            parts.setdefault(key, {})[bits[2]] = int(size)
    out = [ProjectSize(k, n, t, **parts.get((k, n), {})) for (k, n), t in totals.items()]
    return tuple(sorted(out, key=lambda p: (-p.total, p.path)))


@dataclass(frozen=True)
class Usage:
    """One line of ``docker system df``: how many, how many in use, bytes, reclaimable bytes."""

    count: int
    active: int
    size: int
    reclaimable: int


@dataclass(frozen=True)
class DockerUsage:
    images: Usage
    containers: Usage
    volumes: Usage
    build_cache: Usage

    @property
    def size(self) -> int:
        return self.images.size + self.containers.size + self.volumes.size + self.build_cache.size

    @property
    def reclaimable(self) -> int:
        return (self.images.reclaimable + self.containers.reclaimable
                + self.volumes.reclaimable + self.build_cache.reclaimable)


def parse_docker_df(df: Mapping[str, Any]) -> DockerUsage:
    """Docker's ``/system/df`` answer -> the four lines of ``docker system df``.

    Same arithmetic as the docker CLI: images reclaim what no container uses,
    containers what stopped ones wrote, volumes what no container references,
    build cache what is neither in use nor shared.
    """
    images = df.get("Images") or []
    layers = int(df.get("LayersSize") or 0)
    used_images = [i for i in images if (i.get("Containers") or 0) > 0]
    in_use = sum(max(0, (i.get("Size") or 0) - max(0, i.get("SharedSize") or 0)) for i in used_images)
    containers = df.get("Containers") or []
    volumes = df.get("Volumes") or []

    def vsize(v: Mapping[str, Any]) -> int:
        return max(0, ((v.get("UsageData") or {}).get("Size")) or 0)

    def vrefs(v: Mapping[str, Any]) -> int:
        return max(0, ((v.get("UsageData") or {}).get("RefCount")) or 0)

    cache = df.get("BuildCache") or []
    return DockerUsage(
        images=Usage(len(images), len(used_images), layers, max(0, layers - in_use)),
        containers=Usage(
            len(containers),
            sum(1 for c in containers if c.get("State") == "running"),
            sum(c.get("SizeRw") or 0 for c in containers),
            sum(c.get("SizeRw") or 0 for c in containers if c.get("State") != "running"),
        ),
        volumes=Usage(
            len(volumes),
            sum(1 for v in volumes if vrefs(v) > 0),
            sum(vsize(v) for v in volumes),
            sum(vsize(v) for v in volumes if vrefs(v) == 0),
        ),
        build_cache=Usage(
            len(cache),
            sum(1 for b in cache if b.get("InUse")),
            sum(b.get("Size") or 0 for b in cache if not b.get("Shared")),
            sum(b.get("Size") or 0 for b in cache if not b.get("InUse") and not b.get("Shared")),
        ),
    )


# --------------------------------------------------------------------------- read on a host


@dataclass(frozen=True)
class HostDisk:
    """Everything `disk.report` knows about one host."""

    filesystems: Filesystems
    projects: tuple[ProjectSize, ...]
    docker: DockerUsage | None
    docker_error: str | None = None
    warnings: tuple[str, ...] = field(default=())


def gather(hc: HostContext) -> HostDisk:
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
