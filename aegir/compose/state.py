"""What Docker's containers say about the Compose projects of a host (pure).

* **Containers** -- `parse_containers` reads the Docker API's container list
  (``GET /containers/json?all=1``, one call per host for every project): each
  Compose container carries ``com.docker.compose.project.working_dir``, which
  ties it to its folder whatever ``-p`` or ``name:`` said.
* **Status** -- `project_status` compares what a project's compose file
  expects with its containers; `find_orphans` lists Compose projects whose
  folder is outside the project folders or gone.

Unit-tested on recorded API output in tests/unit/data/compose_*.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aegir.compose.discovery import Discovery, Project
from aegir.fields import Answer
from aegir.layout import PROJECT_KINDS

#: The labels Compose puts on every container it makes.
LABEL_PROJECT = "com.docker.compose.project"
LABEL_WORKING_DIR = "com.docker.compose.project.working_dir"
LABEL_SERVICE = "com.docker.compose.service"
LABEL_ONEOFF = "com.docker.compose.oneoff"


# --------------------------------------------------------------------------- containers


@dataclass(frozen=True)
class ProjectContainer:
    """A Compose container, as one row of the Docker API's container list."""

    id: str
    name: str
    project: str  # com.docker.compose.project
    working_dir: str  # com.docker.compose.project.working_dir
    service: str
    state: str  # running, exited, restarting, created, paused, dead, removing
    health: str = ""  # healthy, unhealthy, starting, ""
    exit_code: int | None = None
    image_id: str = ""
    oneoff: bool = False

    @property
    def running(self) -> bool:
        return self.state == "running"


_EXIT_RE = re.compile(r"^(?:Exited|Restarting) \((-?\d+)\)")
_HEALTH_RE = re.compile(r"\((healthy|unhealthy|health: starting)\)")


def parse_containers(rows: Any) -> tuple[ProjectContainer, ...]:
    """Read ``client.api.containers(all=True, filters={"label": LABEL_PROJECT})``.

    The list endpoint has no exit code or health field: both come from its
    ``Status`` text (``Exited (137) 2 minutes ago``, ``Up 5 minutes (unhealthy)``).
    A list of another shape is `aegir.fields.ShapeError`.
    """
    out = []
    for r in Answer(rows, "docker /containers/json").items():
        labels = r["Labels"]
        if LABEL_PROJECT not in labels.mapping():
            continue
        status = r["Status"].text()
        m = _EXIT_RE.match(status)
        h = _HEALTH_RE.search(status)
        names = r["Names"].texts()
        out.append(ProjectContainer(
            id=r["Id"].text()[:12],
            name=(names[0].lstrip("/") if names else ""),
            project=labels[LABEL_PROJECT].text(),
            working_dir=labels[LABEL_WORKING_DIR].text(),
            service=labels[LABEL_SERVICE].text(),
            state=r["State"].text().lower(),
            health=("starting" if h.group(1) == "health: starting" else h.group(1)) if h else "",
            exit_code=int(m.group(1)) if m else None,
            image_id=r["ImageID"].text(),
            oneoff=labels[LABEL_ONEOFF].text("False").lower() == "true",
        ))
    return tuple(sorted(out, key=lambda c: (c.working_dir, c.service, c.name)))


def image_created(rows: Any) -> dict[str, int]:
    """``client.api.images()`` -> image ID -> creation time (Unix seconds)."""
    return {r["Id"].text(): r["Created"].number() for r in Answer(rows, "docker /images/json").items()
            if r["Id"].text()}


# --------------------------------------------------------------------------- status


#: Project states; only "up" and "empty" are fine.
STATES = ("up", "empty", "unhealthy", "partial", "down", "error")


@dataclass(frozen=True)
class ProjectStatus:
    """One project's health: services running/expected, problems, age of its oldest image."""

    kind: str
    name: str
    dir: str
    state: str  # one of STATES
    expected: tuple[str, ...]
    running: tuple[str, ...]
    problems: tuple[str, ...] = ()
    containers: int = 0
    image_age: int | None = None  # seconds since the oldest image in use was built

    @property
    def ok(self) -> bool:
        return self.state in ("up", "empty")

    @property
    def path(self) -> str:
        return f"{self.kind}/{self.name}"

    @property
    def services(self) -> str:
        """``running/expected``, e.g. ``2/3``; ``2/?`` when the compose file cannot be read."""
        expected = "?" if self.state == "error" and not self.expected else str(len(self.expected))
        return f"{len(self.running)}/{expected}"


def project_status(p: Project, containers: Sequence[ProjectContainer], images: Mapping[str, int], now: float) -> ProjectStatus:
    """Compare what `p`'s compose file expects with its containers (matched by working dir).

    A service counts as running when all its replicas run; "down" means no expected service runs at all.
    When the compose file cannot be read (`Project.error`), what runs still
    comes from Docker's labels: the services of its running containers.
    """
    mine = [c for c in containers if c.working_dir == p.dir and not c.oneoff]
    expected = p.expected
    wanted = {s.name: s.replicas for s in p.services}
    up = {s: sum(1 for c in mine if c.service == s and c.running) for s in expected}
    running = tuple(s for s in expected if up[s] >= wanted[s])  # every replica runs
    if p.error:
        running = tuple(sorted({c.service for c in mine if c.running}))
    problems: list[str] = []
    if p.error:
        problems.append(p.error)
    sick = False
    for c in mine:
        if c.state == "restarting":
            problems.append(f"{c.service} restarting (exit {c.exit_code})")
            sick = True
        elif c.running and c.health == "unhealthy":
            problems.append(f"{c.service} unhealthy")
            sick = True
        elif c.state in ("exited", "dead"):
            problems.append(f"{c.service} exited ({c.exit_code})" if c.exit_code is not None else f"{c.service} {c.state}")
        elif not c.running:
            problems.append(f"{c.service} {c.state}")
        if not p.error and c.service not in {s.name for s in p.services}:
            problems.append(f"{c.service}: not in {p.file}")
    for s in expected:
        if not any(c.service == s for c in mine):
            problems.append(f"{s} missing")
        elif 0 < up[s] < wanted[s]:
            problems.append(f"{s} {up[s]}/{wanted[s]} replicas running")
    created = [images[c.image_id] for c in mine if c.image_id in images]
    age = int(now - min(created)) if created else None
    if p.error:
        state = "error"
    elif not expected:
        state = "empty" if not any(c.running for c in mine) else "up"
    elif not any(up.values()):
        state = "down"
    elif len(running) < len(expected):
        state = "partial"
    elif sick:
        state = "unhealthy"
    else:
        state = "up"
    return ProjectStatus(p.kind, p.folder, p.dir, state, expected, running, tuple(dict.fromkeys(problems)),
                         len(mine), age)


@dataclass(frozen=True)
class Orphan:
    """A Compose project with containers whose folder is not a project folder under /srv."""

    project: str
    working_dir: str
    reason: str  # "outside SRV/{core,apps,users}" | "folder gone" | "no working_dir label"
    running: int
    containers: int


def find_orphans(discovery: Discovery, containers: Sequence[ProjectContainer]) -> tuple[Orphan, ...]:
    """Compose projects whose working dir is outside ``SRV/{core,apps,users}/*`` or no longer a project."""
    known = {p.dir for p in discovery.projects}
    srv = discovery.srv.rstrip("/")
    groups: dict[tuple[str, str], list[ProjectContainer]] = {}
    for c in containers:
        if c.working_dir not in known:
            groups.setdefault((c.project, c.working_dir), []).append(c)
    out = []
    for (project, wd), cs in sorted(groups.items()):
        parts = wd[len(srv) + 1:].split("/") if wd.startswith(srv + "/") else []
        if not wd:
            reason = "no working_dir label"
        elif len(parts) == 2 and parts[0] in PROJECT_KINDS:
            reason = "folder gone"
        else:
            reason = f"outside {srv}/{{{','.join(PROJECT_KINDS)}}}"
        out.append(Orphan(project, wd, reason, sum(1 for c in cs if c.running), len(cs)))
    return tuple(out)

