"""Disk facts: filesystems (`df`), Compose project sizes (`du`), Docker's accounting.

Each fact is a command builder and a pure parser; `tests/unit/test_facts_disk.py`
checks both on recorded output.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from aegir import yamldoc
from aegir.compose import cli as compose
from aegir.compose.discovery import Project
from aegir.compose.lifecycle import image_ref
from aegir.compose.state import LABEL_ONEOFF, LABEL_PROJECT, LABEL_WORKING_DIR
from aegir.docker import DockerNetwork, DockerUnavailable, parse_networks
from aegir.errors import CommandError
from aegir.host import HostContext
from aegir.layout import PROJECT_KINDS, PROJECT_PARTS
from aegir.report import Progress
from aegir.sh import Cmd, batch, shell, split_batch
from aegir.yamldoc import YamlError


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
echo '@@projects'
nproc 2>/dev/null || echo 1
cd "$1" 2>/dev/null || exit 0
for d in core/*/ apps/*/ users/*/; do [ -d "$d" ] && printf '%s\\n' "${d%/}"; done
exit 0
"""


def usage_cmd(srv: str) -> Cmd:
    """One probe, one SSH session: ``df`` of / and /srv in bytes, the host's CPU count, and
    every project folder under core/ apps/ users/ (each then measured by its own `du_cmd`)."""
    return shell(_USAGE_SCRIPT, srv)


def split_usage(stdout: str) -> tuple[str, int, tuple[str, ...]]:
    """`usage_cmd` output -> (df part, CPU count, project folders as ``kind/name``)."""
    df, _, rest = stdout.partition("@@projects\n")
    lines = rest.splitlines()
    cpus = int(lines[0]) if lines and lines[0].isdigit() else 1
    return df, cpus, tuple(ln for ln in lines[1:] if ln.partition("/")[0] in PROJECT_KINDS)


_DU_SCRIPT = 'cd "$1" && exec du -B1 -x -d1 -- "$2"'


def du_cmd(srv: str, folder: str) -> Cmd:
    """The size of one project folder and of each of its direct subfolders (``kind/name[/part]``)."""
    return shell(_DU_SCRIPT, srv, folder)


def du_workers(cpus: int, folders: int) -> int:
    """How many ``du`` run at once on a host: two per CPU (each waits on the disk half the time), at most 8.

    >>> du_workers(2, 30), du_workers(16, 30), du_workers(4, 1)
    (4, 8, 1)
    """
    return max(1, min(folders, 8, 2 * max(1, cpus)))


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
    """Everything `disk.report` knows about one host (`projects` None: not measured, ``--fast``)."""

    filesystems: Filesystems
    projects: tuple[ProjectSize, ...] | None
    docker: DockerUsage | None
    docker_error: str | None = None
    warnings: tuple[str, ...] = field(default=())


def gather(hc: HostContext, *, fast: bool = False, progress: Progress | None = None) -> HostDisk:
    """Read the disk facts of one host (read-only): one probe, then one ``du`` per project, several at
    once (`du_workers`), each reported to `progress` as it ends; ``fast``: no ``du`` at all. Docker's
    accounting is asked meanwhile, over its own channel."""
    with ThreadPoolExecutor(1, thread_name_prefix=f"df-{hc.name}") as side:
        docker = side.submit(docker_usage, hc)
        filesystems, projects, warnings = _filesystems_and_projects(hc, fast, progress)
        usage, error = docker.result()
    return HostDisk(filesystems, projects, usage, error, tuple(warnings))


def docker_usage(hc: HostContext) -> tuple[DockerUsage | None, str | None]:
    """Docker's ``/system/df`` of the host, or why Docker did not answer."""
    try:
        return parse_docker_df(hc.docker().df()), None
    except DockerUnavailable as exc:
        return None, exc.message


def _filesystems_and_projects(hc: HostContext, fast: bool, progress: Progress | None
                              ) -> tuple[Filesystems, tuple[ProjectSize, ...] | None, list[str]]:
    srv = hc.host.srv
    cmd = usage_cmd(srv)
    probe = hc.run(cmd, check=False)
    df_text, cpus, folders = split_usage(probe.stdout)
    filesystems = parse_df(df_text, probe.stderr, srv)
    if filesystems.root is None:
        raise CommandError(hc.name, cmd.line, probe.exited, probe.stderr)
    warnings: list[str] = []
    if probe.exited != 0 and probe.stderr.strip() and filesystems.srv_state != "missing":
        warnings.append(probe.stderr.strip().splitlines()[-1])
    if fast:
        return filesystems, None, warnings
    names = [f"{hc.name}:{f}" for f in folders]
    if progress is not None:
        progress.add(names)

    def measure(i: int) -> tuple[str, str]:
        try:
            r = hc.run(du_cmd(srv, folders[i]), check=False)
            return r.stdout, (r.stderr.strip().splitlines() or [""])[-1] if r.exited else ""
        finally:
            if progress is not None:
                progress.done(names[i])

    with ThreadPoolExecutor(du_workers(cpus, len(folders)), thread_name_prefix=f"du-{hc.name}") as pool:
        answers = list(pool.map(measure, range(len(folders))))
    warnings += [err for _, err in answers if err]
    return filesystems, parse_du("".join(out for out, _ in answers)), warnings


# --------------------------------------------------------------------------- what Docker holds (disk.prune)

#: The label Docker (23+) puts on the volumes it names itself.
LABEL_ANONYMOUS_VOLUME = "com.docker.volume.anonymous"
_HEX64 = re.compile(r"^[0-9a-f]{64}\Z")


@dataclass(frozen=True)
class DockerImage:
    """One image as ``/system/df`` lists it: tags, digests, total and shared bytes, containers using it."""

    id: str
    tags: tuple[str, ...] = ()
    digests: tuple[str, ...] = ()
    size: int = 0
    shared: int = 0
    containers: int = 0

    @property
    def unique(self) -> int:
        """The bytes only this image holds: what removing it alone frees."""
        return max(0, self.size - max(0, self.shared))

    @property
    def name(self) -> str:
        return self.tags[0] if self.tags else f"<none> {self.id.removeprefix('sha256:')[:12]}"


@dataclass(frozen=True)
class DockerContainer:
    """One container: its state, image, Compose labels, writable-layer bytes, networks and volumes."""

    id: str
    name: str
    image_id: str
    state: str  # running, exited, created, paused, restarting, dead, removing
    working_dir: str = ""  # com.docker.compose.project.working_dir
    project: str = ""
    oneoff: bool = False
    size_rw: int = 0
    networks: tuple[str, ...] = ()  # network IDs
    volumes: tuple[str, ...] = ()  # volume names

    @property
    def stopped(self) -> bool:
        return self.state in ("exited", "created", "dead")


@dataclass(frozen=True)
class DockerVolume:
    """A volume; `anonymous` when Docker named it (a named volume is never pruned)."""

    name: str
    anonymous: bool
    size: int = 0


@dataclass(frozen=True)
class DockerState:
    """Everything disk.prune weighs on one host, and Docker's own accounting of it."""

    images: tuple[DockerImage, ...]
    containers: tuple[DockerContainer, ...]
    networks: tuple[DockerNetwork, ...]
    volumes: tuple[DockerVolume, ...]
    usage: DockerUsage


def _labels(row: Mapping[str, Any]) -> Mapping[str, str]:
    return row.get("Labels") or {}


def parse_docker_state(df: Mapping[str, Any], containers: Sequence[Mapping[str, Any]],
                       networks: Sequence[Mapping[str, Any]]) -> DockerState:
    """``/system/df``, ``/containers/json?all=1`` and ``/networks`` -> `DockerState`.

    Sizes come from df (Docker's accounting); a container's networks and
    volumes from the container list (df's rows may lack them).
    """
    images = tuple(sorted((DockerImage(
        id=str(i.get("Id") or ""),
        tags=tuple(t for t in (i.get("RepoTags") or ()) if t != "<none>:<none>"),
        digests=tuple(d for d in (i.get("RepoDigests") or ()) if d != "<none>@<none>"),
        size=int(i.get("Size") or 0), shared=max(0, int(i.get("SharedSize") or 0)),
        containers=max(0, int(i.get("Containers") or 0)),
    ) for i in df.get("Images") or ()), key=lambda i: (i.name, i.id)))
    sizes = {str(c.get("Id")): int(c.get("SizeRw") or 0) for c in df.get("Containers") or ()}
    out = []
    for c in containers:
        labels = _labels(c)
        nets = ((c.get("NetworkSettings") or {}).get("Networks") or {}).values()
        names = c.get("Names") or []
        out.append(DockerContainer(
            id=str(c.get("Id") or ""), name=names[0].lstrip("/") if names else "",
            image_id=str(c.get("ImageID") or ""), state=str(c.get("State") or "").lower(),
            working_dir=labels.get(LABEL_WORKING_DIR, ""), project=labels.get(LABEL_PROJECT, ""),
            oneoff=str(labels.get(LABEL_ONEOFF, "False")).lower() == "true",
            size_rw=sizes.get(str(c.get("Id")), 0),
            networks=tuple(sorted(str(n.get("NetworkID")) for n in nets if n.get("NetworkID"))),
            volumes=tuple(sorted(str(m["Name"]) for m in c.get("Mounts") or () if m.get("Type") == "volume"
                                 and m.get("Name"))),
        ))
    vols = tuple(sorted((DockerVolume(
        name=str(v.get("Name")),
        anonymous=LABEL_ANONYMOUS_VOLUME in _labels(v)
        or (bool(_HEX64.match(str(v.get("Name")))) and "com.docker.compose.volume" not in _labels(v)),
        size=max(0, int((v.get("UsageData") or {}).get("Size") or 0)),
    ) for v in df.get("Volumes") or ()), key=lambda v: v.name))
    return DockerState(images, tuple(sorted(out, key=lambda c: c.name)), parse_networks(networks), vols,
                       parse_docker_df(df))


def docker_state(hc: HostContext) -> DockerState:
    """Read what Docker holds on `hc` (three API calls; sizes from ``/system/df``)."""
    api = hc.docker().api
    return parse_docker_state(api.df(), api.containers(all=True), api.networks())


@dataclass(frozen=True)
class ProjectImages:
    """The images a Compose project under /srv references (None: they cannot be read)."""

    path: str
    dir: str
    refs: tuple[str, ...] | None
    error: str | None = None


def implied_images(project: str, services: Iterable[str]) -> tuple[str, ...]:
    """The names Compose gives the image of a service that has ``build:`` and no ``image:``.

    >>> implied_images("cloud", ["web"])
    ('cloud-web:latest', 'cloud_web:latest')
    """
    return tuple(f"{project}{sep}{s}:latest" for s in services for sep in ("-", "_"))


def parse_project_images(path: str, dir: str, project: str, raw_text: str, resolved: str | None,
                         error: str | None) -> ProjectImages:
    """A project's image references: Compose's resolved file (`resolved`, from ``compose config``) plus
    every literal ``image:`` of its own file (services behind profiles too), as RepoTags spell them.

    When Compose could not resolve the file (`resolved` None) and the file interpolates an image,
    the references are unknown (`refs` None): the caller keeps every tagged image then.
    """
    refs: set[str] = set()
    builds: set[str] = set()
    unknown = False
    for text in (raw_text, resolved):
        if text is None:
            continue
        try:
            data = yamldoc.load(text).data
        except YamlError as exc:
            return ProjectImages(path, dir, None, f"{path}: {exc}")
        services = data.get("services") if isinstance(data, dict) else None
        for name, svc in (services or {}).items() if isinstance(services, dict) else ():
            svc = svc if isinstance(svc, dict) else {}
            image = svc.get("image")
            if isinstance(image, str):
                ref = image_ref(image)
                if ref is None:
                    unknown = unknown or text is raw_text and resolved is None
                else:
                    refs.add(ref)
            elif "build" in svc:
                builds.add(str(name))
    if unknown:
        return ProjectImages(path, dir, None, f"{path}: images interpolated from .env, and `compose config` "
                                              f"failed: {error or 'no output'}")
    return ProjectImages(path, dir, tuple(sorted(refs | set(implied_images(project, sorted(builds))))))


def project_images(hc: HostContext, projects: Sequence[Project]) -> tuple[ProjectImages, ...]:
    """Ask Compose, in one round trip, how it resolves every project's file; read their images."""
    if not projects:
        return ()
    fl = compose.flavour(hc)
    cmds = [compose.config(fl, p, docker_host=hc.host.docker_host) for p in projects]
    replies = split_batch(hc.run(batch(cmds)).stdout, len(cmds))
    out = []
    for p, r in zip(projects, replies):
        ok = r.exited == 0 and not p.error
        tail = (r.stderr.strip().splitlines() or [f"exit code {r.exited}"])[-1]
        out.append(parse_project_images(p.path, p.dir, p.name, p.compose_text, r.stdout if ok else None,
                                        None if ok else (p.error or tail)))
    return tuple(out)
