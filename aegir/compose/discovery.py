"""Compose projects on a host: which there are (one round trip), and choosing among them by name.

* **Discovery** -- `discover_cmd` lists every project folder under
  ``SRV/core``, ``SRV/apps`` and ``SRV/users`` (a folder holding
  ``compose.yaml``, ``compose.yml``, ``docker-compose.yaml`` or
  ``docker-compose.yml``) with its compose file's text and its ``.env`` mode, in
  one shell round trip; `parse_discovery` turns that into `Project`s plus
  warnings (folder without a compose file, several compose files, a ``name:``
  that differs from the folder, a folder Compose would rename) and the folders
  it leaves out (`Skipped`: a name aegir cannot pass to a shell, a hidden
  folder holding a compose file), which disk.prune must not take for absent.

Everything here is pure (text or dicts in, frozen dataclasses out) and is
unit-tested on recorded output in tests/unit/data/compose_*.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import io
import re
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aegir import limits, yamldoc
from aegir.errors import AegirError
from aegir.layout import PROJECT_KINDS
from aegir.sh import Cmd, check_name, shell
from aegir.yamldoc import YamlError

#: Compose's own order of preference when a folder holds several files.
COMPOSE_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
ENV_FILE = ".env"


# --------------------------------------------------------------------------- projects


@dataclass(frozen=True)
class Service:
    """A service a compose file asks for, and how many containers it should run."""

    name: str
    replicas: int = 1
    image: str | None = None
    stop_grace: float = 10.0  # seconds ``stop_grace_period`` gives it to stop (Docker's default: 10)


@dataclass(frozen=True)
class Project:
    """One Compose project folder: ``SRV/<kind>/<folder>``.

    Its Compose project name is the folder's name (`compose_name`), whatever
    the file's ``name:`` says. `services` are those started by a plain
    ``up`` (services behind ``profiles:`` are not expected to run).
    """

    kind: str  # core | apps | users
    folder: str
    dir: str  # absolute: /srv/apps/cloud
    file: str  # compose file name in `dir`
    env_mode: int | None = None  # permission bits of .env; None: no .env
    declared_name: str | None = None  # the file's top-level `name:`
    services: tuple[Service, ...] = ()
    error: str | None = None  # unreadable compose file or invalid YAML
    compose_text: str = field(default="", repr=False, compare=False)

    @property
    def name(self) -> str:
        """The Compose project name: the folder's name as Compose normalises it."""
        return compose_name(self.folder)

    @property
    def path(self) -> str:
        """``kind/folder``: how tables and ``NAME`` arguments spell it."""
        return f"{self.kind}/{self.folder}"

    @property
    def compose_path(self) -> str:
        return f"{self.dir}/{self.file}"

    @property
    def env_path(self) -> str | None:
        return f"{self.dir}/{ENV_FILE}" if self.env_mode is not None else None

    @property
    def expected(self) -> tuple[str, ...]:
        """Services a plain ``up`` starts (at least one replica)."""
        return tuple(s.name for s in self.services if s.replicas > 0)


def compose_name(folder: str) -> str:
    """The project name Compose derives from a folder name (lower case, ``[a-z0-9_-]``).

    >>> compose_name("Nextcloud.prod")
    'nextcloudprod'
    """
    return re.sub(r"[^a-z0-9_-]+", "", folder.lower()).lstrip("_-")


@dataclass(frozen=True)
class Skipped:
    """A folder under SRV/<kind> that discovery leaves out, and why; `compose_file` names the compose file
    it holds (None: none), whose images no task reads."""

    path: str  # kind/folder as found on the host (any character but "/")
    reason: str
    compose_file: str | None = None


@dataclass(frozen=True)
class Discovery:
    """What `discover_cmd` found under one host's /srv."""

    srv: str
    projects: tuple[Project, ...]
    warnings: tuple[str, ...] = ()
    srv_missing: bool = False
    skipped: tuple[Skipped, ...] = ()
    #: ``.env`` texts by project path, only when asked (`discover_cmd(with_env=True)`).
    envs: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    def by_path(self) -> dict[str, Project]:
        return {p.path: p for p in self.projects}


_DISCOVER_SCRIPT = """\
cd "$1" 2>/dev/null || { echo X; exit 0; }
with_env=$2
max=$3
nl='
'
tab='\t'
set --
for kind in core apps users; do
  for d in "$kind"/*/ "$kind"/.[!.]*/ "$kind"/..?*/; do
    [ -d "$d" ] || continue
    d=${d%/}
    files=
    for f in compose.yaml compose.yml docker-compose.yaml docker-compose.yml; do
      [ -f "$d/$f" ] && files="$files${files:+,}$f"
    done
    case $d in *"$nl"*|*"$tab"*) [ -n "$files" ] && printf 'B\\t%s\\t%s\\n' "$kind" "$files"; continue ;; esac
    if [ -z "$files" ]; then printf 'N\\t%s\\n' "$d"; continue; fi
    printf 'P\\t%s\\t%s\\n' "$d" "$files"
    set -- "$@" "$d/${files%%,*}"
    [ "$with_env" = env ] && [ -f "$d/.env" ] && set -- "$@" "$d/.env"
  done
done
stat -c 'M %a %n' -- core/*/.env apps/*/.env users/*/.env 2>/dev/null
set -f
big=$(find -L "$@" -maxdepth 0 -type f -size +"$max"c -printf '%s\t%p\n' 2>/dev/null)
if [ -n "$big" ]; then
  for f do
    shift
    case "$nl$big$nl" in *"$tab$f$nl"*) ;; *) set -- "$@" "$f" ;; esac
  done
  ifs=$IFS; IFS=$nl
  for line in $big; do printf 'L\t%s\n' "$line"; done
  IFS=$ifs
fi
[ "$#" -eq 0 ] && exit 0
printf 'T\\t'
tar -chf - -- "$@" 2>/dev/null | base64 | tr -d '\\n'
printf '\\n'
"""


def discover_cmd(srv: str, *, with_env: bool = False) -> Cmd:
    """List every project under SRV/{core,apps,users} with its compose text, in one round trip.

    The script forks a fixed number of processes however many projects there
    are: one ``stat`` for every ``.env`` mode, one ``tar`` of every compose file
    (and, only `with_env`, of every ``.env``: lint reads them, status never does).
    Lines: ``P<TAB>kind/folder<TAB>file[,file…]``, ``N<TAB>kind/folder`` (no compose
    file), ``B<TAB>kind<TAB>file[,file…]`` (a folder whose name holds a tab or a newline),
    ``M mode kind/folder/.env``, ``L<TAB>bytes<TAB>kind/folder/file`` (a file over
    `limits.YAML_BYTES`, left out of the tar: the host sends no more than that per file),
    ``T<TAB>base64(tar)``, ``X`` (no SRV). Hidden folders
    are listed too: one that holds a compose file is a skipped folder, not an absent one.
    """
    return shell(_DISCOVER_SCRIPT, srv, "env" if with_env else "", str(limits.YAML_BYTES.value))


def _untar(b64: str) -> dict[str, bytes]:
    """The members of the base64 tar stream (a truncated stream keeps what it holds)."""
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        return {}
    out: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            for m in tar:
                f = tar.extractfile(m) if m.isfile() else None
                if f is not None:
                    out[m.name] = f.read()
    except tarfile.TarError:
        pass
    return out


def parse_discovery(stdout: str, srv: str) -> Discovery:
    """Read `discover_cmd` output into a `Discovery` (projects in kind order, then by name)."""
    srv = srv.rstrip("/") or "/"
    found: list[tuple[str, str, list[str]]] = []
    modes: dict[str, str] = {}
    members: dict[str, bytes] = {}
    warnings: list[str] = []
    skipped: list[Skipped] = []
    too_big: dict[str, int] = {}
    for line in stdout.splitlines():
        tag, _, rest = line.partition("\t")
        parts = rest.split("\t")
        if tag == "L" and len(parts) == 2 and parts[0].isdigit():
            too_big[parts[1]] = int(parts[0])
            continue
        if tag == "X":
            return Discovery(srv, (), (f"{srv} does not exist or cannot be entered",), srv_missing=True)
        if tag == "T":
            members = _untar(rest)
            continue
        if line.startswith("M "):
            mode, _, env_path = line[2:].partition(" ")
            modes[env_path.rsplit("/", 1)[0]] = mode
            continue
        if tag == "B" and len(parts) == 2 and parts[0] in PROJECT_KINDS:
            why = "its name holds a tab or a newline"
            skipped.append(Skipped(f"{parts[0]}/?", why, parts[1].split(",")[0]))
            warnings.append(f"{srv}/{parts[0]}/?: skipped: {why}")
            continue
        kind, _, folder = parts[0].partition("/")
        if tag not in ("N", "P") or kind not in PROJECT_KINDS or not folder:
            continue
        if tag == "N" and folder.startswith("."):
            continue  # a hidden folder without a compose file: nothing of Compose's
        try:
            check_name("project folder", folder)
        except AegirError as exc:
            file = parts[1].split(",")[0] if tag == "P" and len(parts) == 2 else None
            skipped.append(Skipped(parts[0], str(exc), file))
            warnings.append(f"{srv}/{parts[0]}: skipped: {exc}")
            continue
        if tag == "N":
            warnings.append(f"{srv}/{parts[0]}: no compose file ({', '.join(COMPOSE_FILES)})")
        elif len(parts) == 2:
            found.append((kind, folder, parts[1].split(",")))
    projects: list[Project] = []
    envs: dict[str, str] = {}
    for kind, folder, files in found:
        path = f"{kind}/{folder}"
        raw = members.get(f"{path}/{files[0]}")
        project, notes = _project(srv, kind, folder, files, modes.get(path, "-"),
                                  None if raw is None else raw.decode("utf-8", "replace"),
                                  too_big.get(f"{path}/{files[0]}"))
        projects.append(project)
        warnings.extend(notes)
        env = members.get(f"{path}/{ENV_FILE}")
        if env is not None:
            envs[path] = env.decode("utf-8", "replace")
        elif f"{path}/{ENV_FILE}" in too_big:
            warnings.append(f"{srv}/{path}/{ENV_FILE}: not read: {_over_limit(too_big[f'{path}/{ENV_FILE}'])}")
    order = {k: i for i, k in enumerate(PROJECT_KINDS)}
    projects.sort(key=lambda p: (order[p.kind], p.folder))
    clashes = name_clashes(projects)
    for p in projects:
        if p.name in clashes:
            others = ", ".join(q for q in clashes[p.name] if q != p.path)
            warnings.append(f"{p.dir}: Compose project {p.name!r} is also {others}: the same project to Compose, "
                            "so aegir does not start or stop it; rename one folder")
    skipped.sort(key=lambda s: (order[s.path.partition("/")[0]], s.path))
    return Discovery(srv, tuple(projects), tuple(warnings), envs=envs, skipped=tuple(skipped))


def name_clashes(projects: Iterable[Project]) -> dict[str, tuple[str, ...]]:
    """Compose project names that several folders share (``apps/cloud``, ``users/cloud``) -> their paths.

    Compose knows a project by its name only: ``up`` in one folder would recreate the other's
    containers of the same service, ``down`` would remove them.
    """
    by_name: dict[str, list[str]] = {}
    for p in projects:
        by_name.setdefault(p.name, []).append(p.path)
    return {n: tuple(paths) for n, paths in by_name.items() if len(paths) > 1}


def _over_limit(size: int) -> str:
    """What `yamldoc.load` says of a text of `size` bytes over `limits.YAML_BYTES`."""
    return limits.YAML_BYTES.over(f"the text has {size:,} bytes")


def _project(srv: str, kind: str, folder: str, files: list[str], mode: str, text: str | None,
             too_big: int | None = None) -> tuple[Project, list[str]]:
    d = f"{srv}/{kind}/{folder}"
    notes: list[str] = []
    file = files[0]
    if len(files) > 1:
        notes.append(f"{d}: several compose files ({', '.join(files)}); using {file}, as Compose does")
    env_mode = int(mode, 8) if re.fullmatch(r"[0-7]{3,4}", mode) else None
    if text is None:
        why = f":?: {_over_limit(too_big)}" if too_big is not None else ": cannot read it"
        return Project(kind, folder, d, file, env_mode, error=f"{file}{why}"), notes
    spec = parse_compose_spec(text)
    if spec.error:
        return Project(kind, folder, d, file, env_mode, error=f"{file}:{spec.error}", compose_text=text), notes
    name = compose_name(folder)
    if name != folder:
        notes.append(f"{d}: Compose names this project {name!r}, not {folder!r} (lower case, [a-z0-9_-])")
    if spec.name is not None and spec.name != name:
        notes.append(f"{d}/{file}:{spec.name_line}: name: {spec.name!r} differs from the folder; "
                     f"aegir runs it as {name!r}")
    return Project(kind, folder, d, file, env_mode, spec.name, spec.services, compose_text=text), notes


@dataclass(frozen=True)
class ComposeSpec:
    """The parts of a compose file status needs: `name:` and the services `up` starts."""

    name: str | None = None
    name_line: int | None = None
    services: tuple[Service, ...] = ()
    error: str | None = None  # "LINE: problem" when the YAML cannot be read


def parse_compose_spec(text: str) -> ComposeSpec:
    """Read a compose file's ``name:`` and services (replicas from ``deploy.replicas``/``scale``).

    Services with ``profiles:`` are left out: a plain ``up`` does not start them.
    """
    try:
        doc = yamldoc.load(text)
    except YamlError as exc:
        return ComposeSpec(error=str(exc))
    data = {} if doc.data is None else doc.data
    if not isinstance(data, dict):
        return ComposeSpec(error="1: the top level is not a mapping")
    name_line = doc.lines.get(("name",))
    raw = data.get("services") or {}
    if not isinstance(raw, dict):
        return ComposeSpec(error="?: 'services' is not a mapping")
    services = []
    for sname, svc in raw.items():
        svc = svc if isinstance(svc, dict) else {}
        if svc.get("profiles"):
            continue
        replicas = 1
        deploy: dict[str, Any] = svc["deploy"] if isinstance(svc.get("deploy"), dict) else {}
        for value in (deploy.get("replicas"), svc.get("scale")):
            if isinstance(value, int) and not isinstance(value, bool):
                replicas = value
        image = svc.get("image") if isinstance(svc.get("image"), str) else None
        grace = parse_duration(svc.get("stop_grace_period"))
        services.append(Service(str(sname), replicas, image, 10.0 if grace is None else grace))
    name = data.get("name")
    return ComposeSpec(None if name is None else str(name), name_line, tuple(services))


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: object) -> float | None:
    """A Compose duration (``1m30s``, ``500ms``, ``10s``; a bare number is seconds) in seconds; None when
    absent or unreadable (Compose would refuse the file; the caller keeps its default).

    >>> parse_duration("1m30s"), parse_duration(20), parse_duration("soon")
    (90.0, 20.0, None)
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value) if value >= 0 else None
    text = str(value).strip()
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)


# --------------------------------------------------------------------------- selecting


def split_names(names: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"cloud, users/wiki"`` -> ``("cloud", "users/wiki")``; each part validated.

    A name is a folder name, or ``kind/folder`` to pick one kind.
    """
    if not names:
        return ()
    words = names.replace(",", " ").split() if isinstance(names, str) else list(names)
    out: list[str] = []
    for w in words:
        kind, sep, folder = w.rpartition("/")
        if sep and kind not in PROJECT_KINDS:
            raise AegirError(f"invalid project {w!r}: the part before '/' must be one of {', '.join(PROJECT_KINDS)}")
        check_name("project", folder)
        if w not in out:
            out.append(w)
    return tuple(out)


def select(projects: Sequence[Project], names: Sequence[str] = (), kinds: Sequence[str] = PROJECT_KINDS,
           *, host: str | None = None) -> tuple[tuple[Project, ...], tuple[str, ...]]:
    """The projects `names` designate among `projects` of `kinds`, and the names not found.

    No names: every project of `kinds`. A bare name that matches in two kinds
    (``apps/x`` and ``users/x``) is ambiguous and raises `AegirError`.
    """
    pool = [p for p in projects if p.kind in kinds]
    if not names:
        return tuple(pool), ()
    chosen: list[Project] = []
    missing: list[str] = []
    for n in names:
        hits = [p for p in pool if (p.path == n if "/" in n else p.folder == n)]
        if len(hits) > 1:
            raise AegirError(f"{n!r} is ambiguous: {', '.join(p.path for p in hits)}; name one of them", host=host)
        if not hits:
            missing.append(n)
        elif hits[0] not in chosen:
            chosen.append(hits[0])
    return tuple(chosen), tuple(missing)


def unknown_names(names: Sequence[str], found: Iterable[Project], *, what: str = "project") -> tuple[str, ...]:
    """One sentence per name of `names` that designates none of `found` (every target host's projects),
    with Compose's own kind of "did you mean" (`difflib`) when a name is close to one; `what` the name is
    of (a project; an app for disk.clean).

    >>> unknown_names(["clowd", "wiki"], [Project("apps", "cloud", "/srv/apps/cloud", "compose.yaml")])
    ("no project 'clowd' on any target host (did you mean cloud?)", "no project 'wiki' on any target host")
    """
    found = list(found)
    out = []
    for n in names:
        if any((p.path == n if "/" in n else p.folder == n) for p in found):
            continue
        pool = sorted({p.path if "/" in n else p.folder for p in found})
        close = difflib.get_close_matches(n, pool, n=3, cutoff=0.6)
        out.append(f"no {what} {n!r} on any target host" + (f" (did you mean {' or '.join(close)}?)" if close else ""))
    return tuple(out)


def warnings_about(disc: Discovery, chosen: Sequence[Project], kinds: Sequence[str] = PROJECT_KINDS,
                   *, all_of_kinds: bool = True) -> tuple[str, ...]:
    """The discovery warnings a report on `chosen` should show.

    A warning about a folder is kept when that folder is one of `chosen`, or,
    with `all_of_kinds` (no names asked), when it is under one of `kinds`;
    warnings about /srv itself are always kept.
    """
    paths = {p.path for p in chosen}
    out = []
    for w in disc.warnings:
        rest = w[len(disc.srv) + 1:] if w.startswith(disc.srv + "/") else ""
        kind, _, folder = rest.partition("/")
        folder = re.split(r"[/:]", folder, maxsplit=1)[0]
        if kind not in PROJECT_KINDS or f"{kind}/{folder}" in paths or (all_of_kinds and kind in kinds):
            out.append(w)
    return tuple(out)
