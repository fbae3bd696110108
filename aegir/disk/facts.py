"""Disk facts: filesystems (`df`), Compose project sizes (`du`), Docker's accounting, what projects name.

Each host read is an `aegir.facts.Fact` (a command builder, the exit codes that
answer, a pure parser), asked through `HostContext.facts`, which batches what it
can into one round trip; Docker's state is read through the SDK. `gather` reads
one host for `disk.report`, `prune_facts` for `disk.prune`'s plan;
`tests/unit/test_facts_disk.py` checks the commands and parsers on recorded output.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from aegir import yamldoc
from aegir.compose import commands as compose
from aegir.compose.discovery import Discovery, Project, Skipped
from aegir.compose.lint import refs as refs_in
from aegir.compose.state import LABEL_ONEOFF, LABEL_PROJECT, LABEL_WORKING_DIR
from aegir.compose.status import discover, srv_checked
from aegir.docker import (
    DEFAULT_TAG,
    HUB,
    OFFICIAL,
    DockerNetwork,
    DockerUnavailable,
    ImageRef,
    InvalidReference,
    dockerd_fact,
    image_keys,
    parse_image_ref,
    parse_networks,
)
from aegir.errors import CommandError
from aegir.facts import Fact
from aegir.fields import Answer
from aegir.host import HostContext
from aegir.layout import PROJECT_KINDS, PROJECT_PARTS
from aegir.report import Progress
from aegir.sh import Cmd, Reply, shell
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


def read_du(reply: Reply) -> tuple[tuple[ProjectSize, ...], str | None]:
    """One `du_cmd` answer: the project's sizes (`parse_du`), and du's last complaint when it failed (a folder
    it could not read: what it measured still counts)."""
    error = (reply.stderr.strip().splitlines() or [""])[-1] if reply.exited else ""
    return parse_du(reply.stdout), error or None


def du_fact(srv: str, folder: str) -> Fact[tuple[tuple[ProjectSize, ...], str | None]]:
    """One project folder's sizes (`du_cmd`, `read_du`): every exit code answers; sizes change, so never kept."""
    return Fact("disk.du", du_cmd(srv, folder), read_du, answers=None, cache=False)


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
class Probe:
    """`usage_cmd`'s answer: the filesystems, the CPU count, the project folders; `exited` and `stderr` as
    the probe ended (`Probe.failed`: df printed no row for /, the host's disk cannot be read at all)."""

    filesystems: Filesystems
    cpus: int
    folders: tuple[str, ...]
    exited: int = 0
    stderr: str = ""

    @property
    def failed(self) -> bool:
        return self.filesystems.root is None

    @property
    def warning(self) -> str | None:
        """df's complaint when it failed on something else than a missing /srv (which `srv_state` says)."""
        if self.exited and self.stderr.strip() and self.filesystems.srv_state != "missing":
            return self.stderr.strip().splitlines()[-1]
        return None


def read_usage(reply: Reply, srv: str) -> Probe:
    """`usage_cmd`'s answer, whatever its exit code (`Probe.failed` says when it is no answer)."""
    df_text, cpus, folders = split_usage(reply.stdout)
    return Probe(parse_df(df_text, reply.stderr, srv), cpus, folders, reply.exited, reply.stderr)


def usage_fact(srv: str) -> Fact[Probe]:
    """df of / and `srv`, the CPU count and the project folders (`usage_cmd`): never kept (sizes change)."""
    return Fact("disk.usage", usage_cmd(srv), lambda r: read_usage(r, srv), answers=None, cache=False)


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


def parse_docker_df(df: Any) -> DockerUsage:
    """Docker's ``/system/df`` answer -> the four lines of ``docker system df``.

    Same arithmetic as the docker CLI: images reclaim what no container uses,
    containers what stopped ones wrote, volumes what no container references,
    build cache what is neither in use nor shared. An answer of another shape is
    `aegir.fields.ShapeError` (``docker /system/df: Images[3].Size: expected a number, got a string``).
    """
    return _usage(Answer(df, DF_ANSWER))


#: How errors name Docker's ``/system/df`` answer.
DF_ANSWER = "docker /system/df"


def _usage(df: Answer) -> DockerUsage:
    images = [(i["Containers"].number() > 0, max(0, i["Size"].number() - max(0, i["SharedSize"].number())))
              for i in df["Images"].items()]  # (used, unique bytes)
    layers = df["LayersSize"].number()
    used_images = [unique for used, unique in images if used]
    in_use = sum(used_images)
    containers = df["Containers"].items()
    volumes = df["Volumes"].items()
    sizes = [max(0, v["UsageData"]["Size"].number()) for v in volumes]
    refs = [max(0, v["UsageData"]["RefCount"].number()) for v in volumes]
    rw = [(c["SizeRw"].number(), c["State"].text() == "running") for c in containers]
    cache = [(b["Size"].number(), b["InUse"].flag(), b["Shared"].flag()) for b in df["BuildCache"].items()]
    return DockerUsage(
        images=Usage(len(images), len(used_images), layers, max(0, layers - in_use)),
        containers=Usage(len(rw), sum(1 for _, running in rw if running), sum(size for size, _ in rw),
                         sum(size for size, running in rw if not running)),
        volumes=Usage(len(volumes), sum(1 for r in refs if r > 0), sum(sizes),
                      sum(s for s, r in zip(sizes, refs) if r == 0)),
        build_cache=Usage(
            len(cache),
            sum(1 for _, in_use, _ in cache if in_use),
            sum(size for size, _, shared in cache if not shared),
            sum(size for size, in_use, shared in cache if not in_use and not shared),
        ),
    )


# --------------------------------------------------------------------------- the checkpoint archive (mysql)

#: Where `mysql.checkpoint` keeps each app's checkpoints (under /srv), as `aegir.mysql.onhost` lays it out.
ARCHIVE_ROOT = "archive/mysql"

_ARCHIVE_SCRIPT = r"""cd "$1" 2>/dev/null || exit 0
for d in archive/mysql/core/*/ archive/mysql/apps/*/ archive/mysql/users/*/; do
  [ -d "$d" ] || continue
  d=${d%/}
  printf 'R\t%s\t%s\n' "${d#archive/mysql/}" "$(du -sb -- "$d" 2>/dev/null | cut -f1)"
  find "$d" -mindepth 2 -maxdepth 2 -name MANIFEST.json -printf 'E\t%h\t%T@\n'
  last=
  for m in "$d"/*/MANIFEST.json; do [ -f "$m" ] && last=$m; done
  [ -n "$last" ] && printf 'K\t%s\t%s\n' "${d#archive/mysql/}" "$(grep -o '"keep": *[0-9a-z]*' "$last" | head -n 1)"
done
exit 0
"""


def archive_cmd(srv: str) -> Cmd:
    """Every app's checkpoint archive under `srv`: its size, its complete checkpoints, the newest one's
    retention (``keep``), in one round trip."""
    return shell(_ARCHIVE_SCRIPT, srv)


@dataclass(frozen=True)
class Archive:
    """One app's checkpoint archive (``<srv>/archive/mysql/<kind>/<app>``): what the backup system picks up."""

    path: str  # apps/shop
    bytes: int | None
    checkpoints: int = 0  # complete ones (with a MANIFEST.json)
    oldest: str | None = None  # the entries' ids (UTC times)
    newest: str | None = None
    oldest_time: float | None = None  # when they were written (the manifest's mtime)
    newest_time: float | None = None
    keep: int | None = None  # the newest checkpoint's retention: keep that many (None: every one)
    keep_known: bool = False  # False: the newest manifest does not say (older aegir)

    @property
    def retention(self) -> str:
        return "unknown" if not self.keep_known else f"keep {self.keep}" if self.keep else "keep all"


def parse_archives(stdout: str) -> tuple[Archive, ...]:
    """Read `archive_cmd` output: one `Archive` per app, by path."""
    sizes: dict[str, int | None] = {}
    found: dict[str, list[tuple[str, float]]] = {}
    keeps: dict[str, str] = {}
    for line in stdout.splitlines():
        tag, _, rest = line.partition("\t")
        parts = rest.split("\t")
        if tag == "R" and len(parts) == 2 and parts[0].partition("/")[0] in PROJECT_KINDS:
            sizes[parts[0]] = int(parts[1]) if parts[1].isdigit() else None
        elif tag == "E" and len(parts) == 2 and parts[0].startswith(ARCHIVE_ROOT + "/"):
            path, _, entry = parts[0][len(ARCHIVE_ROOT) + 1:].rpartition("/")
            try:
                found.setdefault(path, []).append((entry, float(parts[1])))
            except ValueError:
                continue
        elif tag == "K" and len(parts) == 2:
            keeps[parts[0]] = parts[1].partition(":")[2].strip()
    out = []
    for path, size in sizes.items():
        done = sorted(found.get(path, ()))
        keep = keeps.get(path, "")
        out.append(Archive(path, size, len(done), done[0][0] if done else None, done[-1][0] if done else None,
                           done[0][1] if done else None, done[-1][1] if done else None,
                           int(keep) if keep.isdigit() else None, keep.isdigit() or keep == "null"))
    return tuple(sorted(out, key=lambda a: a.path))


def archive_fact(srv: str) -> Fact[tuple[Archive, ...]]:
    """Every app's checkpoint archive under `srv` (`archive_cmd`, `parse_archives`): never kept (sizes change)."""
    return Fact("disk.archives", archive_cmd(srv), lambda r: parse_archives(r.stdout), cache=False)


# --------------------------------------------------------------------------- read on a host


@dataclass(frozen=True)
class HostDisk:
    """Everything `disk.report` knows about one host (`projects` None: not measured, ``--fast``)."""

    filesystems: Filesystems
    projects: tuple[ProjectSize, ...] | None
    docker: DockerUsage | None
    docker_error: str | None = None
    warnings: tuple[str, ...] = field(default=())
    archives: tuple[Archive, ...] | None = None  # mysql checkpoint archives (None: not measured, --fast)


def gather(hc: HostContext, *, fast: bool = False, progress: Progress | None = None,
           mounted: bool = False) -> HostDisk:
    """Read the disk facts of one host (read-only): one round trip (df, the project folders, the checkpoint
    archives), then one ``du`` per project, several at once (`du_workers`), each reported to `progress` as it
    ends; ``fast``: no ``du`` and no archive. Docker's accounting is asked meanwhile, over its own channel.

    `mounted`: the host fails unless its /srv is mounted (`srv_checked`), before any ``du``.
    """
    srv = hc.host.srv
    usage, archives, dockerd = usage_fact(srv), archive_fact(srv), dockerd_fact()
    asked: list[Fact[Any]] = [usage, *([] if fast else [archives]), dockerd]
    answers: dict[Fact[Any], Any] = dict(zip(asked, srv_checked(hc, *asked) if mounted else hc.facts(*asked)))
    probe: Probe = answers[usage]
    if probe.failed:
        raise CommandError(hc.name, usage.cmd.line, probe.exited, probe.stderr)
    running: bool = answers[dockerd]
    if not running:  # no dockerd: nothing to ask over a second channel (and no thread to start)
        dockers, error = docker_usage(hc, running)
        projects, warnings = (None, []) if fast else _measure(hc, probe.folders, probe.cpus, progress)
    else:
        with ThreadPoolExecutor(1, thread_name_prefix=f"df-{hc.name}") as side:
            docker = side.submit(docker_usage, hc, running)
            projects, warnings = (None, []) if fast else _measure(hc, probe.folders, probe.cpus, progress)
            dockers, error = docker.result()
    found = None if probe.filesystems.srv_state == "missing" else answers.get(archives)
    early = [probe.warning] if probe.warning else []
    return HostDisk(probe.filesystems, projects, dockers, error, tuple(early + warnings), found)


def docker_usage(hc: HostContext, running: bool | None = None) -> tuple[DockerUsage | None, str | None]:
    """Docker's ``/system/df`` of the host, or why Docker did not answer (`running`: whether a dockerd
    runs, when the caller asked already: `aegir.docker.dockerd_fact`)."""
    try:
        return parse_docker_df(hc.docker(running).df()), None
    except DockerUnavailable as exc:
        return None, exc.message


def _measure(hc: HostContext, folders: Sequence[str], cpus: int, progress: Progress | None
             ) -> tuple[tuple[ProjectSize, ...], list[str]]:
    """Every project folder's sizes, one `du_fact` each, `du_workers` at once; du's complaints."""
    names = [f"{hc.name}:{f}" for f in folders]
    if progress is not None:
        progress.add(names)

    def measure(i: int) -> tuple[tuple[ProjectSize, ...], str | None]:
        try:
            return hc.fact(du_fact(hc.host.srv, folders[i]))
        finally:
            if progress is not None:
                progress.done(names[i])

    with ThreadPoolExecutor(du_workers(cpus, len(folders)), thread_name_prefix=f"du-{hc.name}") as pool:
        answers = list(pool.map(measure, range(len(folders))))
    sizes = sorted((p for found, _ in answers for p in found), key=lambda p: (-p.total, p.path))
    return tuple(sizes), [err for _, err in answers if err]


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
        """Its first tag, else its first digest (``nginx@sha256:…``), else ``<none> ID``."""
        return (self.tags or self.digests or (f"<none> {self.id.removeprefix('sha256:')[:12]}",))[0]

    @property
    def keys(self) -> frozenset[str]:
        """Every reference Docker finds it by (`aegir.docker.image_keys`)."""
        return image_keys(self.tags, self.digests)


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


def parse_docker_state(df: Any, containers: Any, networks: Any) -> DockerState:
    """``/system/df``, ``/containers/json?all=1`` and ``/networks`` -> `DockerState`.

    Sizes come from df (Docker's accounting); a container's networks and
    volumes from the container list (df's rows may lack them). An answer of
    another shape is `aegir.fields.ShapeError`.
    """
    d = Answer(df, DF_ANSWER)
    images = tuple(sorted((DockerImage(
        id=i["Id"].text(),
        tags=tuple(t for t in i["RepoTags"].texts() if t != "<none>:<none>"),
        digests=tuple(t for t in i["RepoDigests"].texts() if t != "<none>@<none>"),
        size=i["Size"].number(), shared=max(0, i["SharedSize"].number()),
        containers=max(0, i["Containers"].number()),
    ) for i in d["Images"].items()), key=lambda i: (i.name, i.id)))
    sizes = {c["Id"].text(): c["SizeRw"].number() for c in d["Containers"].items()}
    out = []
    for c in Answer(containers, "docker /containers/json").items():
        labels = c["Labels"]
        names = c["Names"].texts()
        cid = c["Id"].text()
        out.append(DockerContainer(
            id=cid, name=names[0].lstrip("/") if names else "",
            image_id=c["ImageID"].text(), state=c["State"].text().lower(),
            working_dir=labels[LABEL_WORKING_DIR].text(), project=labels[LABEL_PROJECT].text(),
            oneoff=labels[LABEL_ONEOFF].text("False").lower() == "true",
            size_rw=sizes.get(cid, 0),
            networks=tuple(sorted(n for _, net in c["NetworkSettings"]["Networks"].pairs()
                                  if (n := net["NetworkID"].text()))),
            volumes=tuple(sorted(m["Name"].text() for m in c["Mounts"].items()
                                 if m["Type"].text() == "volume" and m["Name"].text())),
        ))
    vols = []
    for v in d["Volumes"].items():
        name, volume_labels = v["Name"].text(), v["Labels"].mapping()
        vols.append(DockerVolume(
            name=name,
            anonymous=LABEL_ANONYMOUS_VOLUME in volume_labels
            or (bool(_HEX64.match(name)) and "com.docker.compose.volume" not in volume_labels),
            size=max(0, v["UsageData"]["Size"].number())))
    return DockerState(images, tuple(sorted(out, key=lambda c: c.name)), parse_networks(networks),
                       tuple(sorted(vols, key=lambda v: v.name)), _usage(d))


def docker_state(hc: HostContext) -> DockerState:
    """Read what Docker holds on `hc` (three API calls; sizes from ``/system/df``)."""
    api = hc.docker().api
    return parse_docker_state(api.df(), api.containers(all=True), api.networks())


@dataclass(frozen=True)
class ProjectImages:
    """The images a Compose project under /srv names (`refs`), and, when they cannot all be known, why
    (`unknown`: then `refs` holds only those that could be read)."""

    path: str
    dir: str
    refs: tuple[ImageRef, ...] = ()
    unknown: str | None = None


def implied_images(project: str, services: Iterable[str]) -> tuple[ImageRef, ...]:
    """The names Compose gives the image of a service that has ``build:`` and no ``image:``
    (v2 ``project-service``, v1 ``project_service``; tag ``latest``).

    >>> [str(r) for r in implied_images("cloud", ["web"])]
    ['cloud-web:latest', 'cloud_web:latest']
    """
    return tuple(ImageRef(f"{HUB}/{OFFICIAL}{project}{sep}{s}", DEFAULT_TAG) for s in services for sep in ("-", "_"))


#: Compose's word for a variable it interpolated as "": v2 ``The "X" variable is not set``, v1 ``The X variable…``.
_UNSET = re.compile(r'The \\?"?([A-Za-z_][A-Za-z0-9_]*)\\?"? variable is not set')


def unset_variables(stderr: str) -> frozenset[str]:
    """The variables ``compose config`` says it replaced by a blank string.

    >>> sorted(unset_variables('WARN[0000] The "TAG" variable is not set. Defaulting to a blank string.'))
    ['TAG']
    """
    return frozenset(_UNSET.findall(stderr))


def _services(text: str) -> tuple[dict[str, Any], bool]:
    """A compose text's services by name (each a mapping), and whether it pulls services from elsewhere
    (``extends:``, top-level ``include:``); raises `YamlError`."""
    data = yamldoc.load(text).data
    data = data if isinstance(data, dict) else {}
    raw = data.get("services")
    services = {str(k): (v if isinstance(v, dict) else {}) for k, v in raw.items()} if isinstance(raw, dict) else {}
    return services, "include" in data or any("extends" in v for v in services.values())


def _first(reasons: Sequence[str]) -> str:
    return reasons[0] + (f" (and {len(reasons) - 1} more)" if len(reasons) > 1 else "")


def parse_project_images(path: str, dir: str, project: str, raw_text: str, resolved: str | None, *,
                         error: str | None = None, config_error: str | None = None,
                         unset: Iterable[str] = ()) -> ProjectImages:
    """A project's image references: every literal ``image:`` of its own file (services behind profiles
    too), plus Compose's resolution of it (`resolved`: ``compose config`` with every profile, None when it
    failed with `config_error`; `unset`: the variables it said were not set), plus the names Compose gives
    ``build:`` images.

    The images are unknown (`ProjectImages.unknown` says why) when the file could not be read (`error`),
    when an ``image:`` is not a reference Docker reads, when an interpolated one is not resolved: Compose
    failed, left its service out (a profile it did not enable), or replaced a variable of it by "".
    """
    if error is not None:
        return ProjectImages(path, dir, (), error)
    try:
        raw, imports = _services(raw_text)
        done, _ = _services(resolved) if resolved is not None else ({}, False)
    except YamlError as exc:
        return ProjectImages(path, dir, (), f"invalid YAML: {exc}")
    refs: set[ImageRef] = set()
    builds: set[str] = set()
    reasons: list[str] = []
    unset = frozenset(unset)

    def read(service: str, image: Any, how: str) -> None:
        if not isinstance(image, str):
            reasons.append(f"service {service}: image{how} is not a string")
            return
        try:
            refs.add(parse_image_ref(image))
        except InvalidReference as exc:
            reasons.append(f"service {service}: image{how} {image!r}: {exc.message}")

    interpolated: dict[str, str] = {}
    for name, svc in raw.items():
        image = svc.get("image")
        if isinstance(image, str) and "$" in image:
            interpolated[name] = image
        elif image is not None:
            read(name, image, "")
        elif "build" in svc:
            builds.add(name)
    for name, svc in done.items():
        if svc.get("image") is not None and (name in interpolated or raw.get(name, {}).get("image") is None):
            read(name, svc["image"], " as Compose resolves it")
        elif "build" in svc and svc.get("image") is None:
            builds.add(name)
    for name, image in interpolated.items():
        profiles = raw[name].get("profiles")
        where = f"service {name}" + (f" (profiles: {', '.join(map(str, profiles))})"
                                     if isinstance(profiles, list) and profiles else "")
        blank = sorted({r.name for r in refs_in(image)} & unset)
        if blank:
            reasons.append(f"{where}: image {image}: {', '.join(blank)} {'is' if len(blank) == 1 else 'are'} not set")
        elif resolved is None:
            reasons.append(f"{where}: image {image}: `compose config` failed: {config_error or 'no output'}")
        elif name not in done:
            reasons.append(f"{where}: image {image} is left out by `compose config`")
    if resolved is None and imports:
        reasons.append(f"services from other files (extends, include): `compose config` failed: "
                       f"{config_error or 'no output'}")
    found = tuple(sorted(refs | set(implied_images(project, sorted(builds))), key=str))
    return ProjectImages(path, dir, found, _first(reasons) if reasons else None)


def skipped_images(srv: str, folder: Skipped) -> ProjectImages:
    """A folder discovery skipped: its compose file, if it has one, names images no task reads."""
    return ProjectImages(folder.path, f"{srv}/{folder.path}", (),
                         f"discovery skipped this folder ({folder.reason}), so its {folder.compose_file} is not read")


def read_project_images(p: Project, reply: Reply) -> ProjectImages:
    """A project's images (`parse_project_images`) from its file and Compose's answer to `compose config`."""
    ok = reply.exited == 0
    tail = (reply.stderr.strip().splitlines() or [f"exit code {reply.exited}"])[-1]
    return parse_project_images(p.path, p.dir, p.name, p.compose_text, reply.stdout if ok else None,
                                error=p.error, config_error=None if ok else tail, unset=unset_variables(reply.stderr))


def images_fact(fl: compose.Flavour, p: Project, docker_host: str | None = None) -> Fact[ProjectImages]:
    """How Compose resolves `p`'s file with every profile enabled (Compose v2's ``--profile '*'``; v1 has
    none: its profiled services stay unresolved), read by `read_project_images`. Every exit code answers;
    never kept (the resolved file holds the .env's values)."""
    cmd = compose.config(fl, p, docker_host=docker_host, profiles=() if fl.v1 else ("*",))
    return Fact("disk.project_images", cmd, lambda r: read_project_images(p, r), answers=None, cache=False)


def project_images(hc: HostContext, disc: Discovery) -> tuple[ProjectImages, ...]:
    """Every project's images: one `images_fact` each, in one round trip. A folder discovery skipped with a
    compose file in it, and a /srv that cannot be entered, are unknown."""
    out = [skipped_images(disc.srv, s) for s in disc.skipped if s.compose_file]
    if disc.srv_missing:
        out.append(ProjectImages(disc.srv, disc.srv, (), f"{disc.srv} cannot be entered: its projects are unknown"))
    if not disc.projects:
        return tuple(out)
    fl = compose.flavour(hc)
    return (*out, *hc.facts(*(images_fact(fl, p, hc.host.docker_host) for p in disc.projects)))


def mounted_projects(hc: HostContext, *, with_env: bool = False) -> Discovery:
    """The projects under the host's /srv (one round trip), which must be mounted (`srv_checked`): an
    unmounted /srv is a folder of the root disk, and the projects are on the volume the mount would show.
    `with_env`: their .env files too (never kept)."""
    return discover(hc, with_env=with_env)


def prune_facts(hc: HostContext) -> tuple[tuple[ProjectImages, ...], DockerState]:
    """What `disk.prune` plans from, read-only: the images the /srv projects name, Docker's state. On a
    host whose /srv is not mounted every image the projects name would look unused: it fails instead."""
    return project_images(hc, mounted_projects(hc)), docker_state(hc)


# --------------------------------------------------------------------------- disk.clean

_APP_RECIPE_SCRIPT = 'if [ -f "$1" ]; then printf Y; cat -- "$1"; else printf N; fi'


def app_recipe_fact(path: str) -> Fact[str | None]:
    """The text of an app's own recipe file at `path` (None: there is none)."""
    return Fact("disk.app_recipe", shell(_APP_RECIPE_SCRIPT, path),
                lambda r: r.stdout[1:] if r.stdout.startswith("Y") else None)


#: At most this much of each ``env_file:`` is read (its values are masked in disk.clean's output, never shown).
ENV_FILE_BYTES = 1 << 20
_ENV_FILES_SCRIPT = f"""cd "$1" 2>/dev/null || exit 0
shift
for f in "$@"; do printf '\\035%s\\n' "$f"; head -c {ENV_FILE_BYTES} -- "$f" 2>/dev/null; done
exit 0
"""


def env_files_fact(folder: str, paths: Sequence[str]) -> Fact[dict[str, str]]:
    """The texts of a project's ``env_file:`` files (`paths`, relative to its `folder`) by path; a file that
    cannot be read is empty. Asked afresh: they hold secrets, never kept."""
    def parse(r: Reply) -> dict[str, str]:
        parts = (part.partition("\n") for part in r.stdout.split("\035")[1:])
        return {name: text for name, _, text in parts}
    return Fact("disk.env_files", shell(_ENV_FILES_SCRIPT, folder, *paths), parse, cache=False)


def folder_size_cmd(path: str) -> Cmd:
    """The bytes a folder holds (``du -s``, one filesystem, no following links)."""
    return Cmd.of("du", "-sxB1", "--", path)


def parse_folder_size(stdout: str) -> int | None:
    head = stdout.split(None, 1)
    return int(head[0]) if head and head[0].isdigit() else None


def folder_size_fact(path: str) -> Fact[int | None]:
    """A folder's size in bytes (`folder_size_cmd`), asked afresh each time (before and after a clean-up)."""
    return Fact("disk.folder_size", folder_size_cmd(path), lambda r: parse_folder_size(r.stdout), cache=False)
