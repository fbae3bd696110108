"""Compose lifecycle plans, pure: which projects an action takes, in which order, with which command.

Nothing here reads a host: `aegir.compose.steps` reads the facts (the
projects found, the host's Compose flavour) and hands them to `plan_projects`
and `build_step`; what is decided here is tested on exact strings.

Core projects go first (``front`` first, one by one, the rest waiting on
them) for actions that start things, and last (``front`` last) for
``down``/``stop`` (`ordered`). Stopping projects on more than one host, and
stopping or restarting a core project, asks first (`question`); a name no
host has refuses the whole command (`unknown_everywhere`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aegir.compose import commands as compose
from aegir.compose.discovery import Project, name_clashes, select, unknown_names
from aegir.errors import RefusedError
from aegir.host import as_run
from aegir.inventory import Host
from aegir.layout import PROJECT_KINDS
from aegir.report import Result
from aegir.sh import Cmd

if TYPE_CHECKING:  # pragma: no cover
    from aegir.fleet import Outcome

ACTIONS = ("up", "down", "restart", "pull", "stop", "update")
#: Actions that leave a project's containers stopped.
STOPPING = ("down", "stop")
#: Actions after which apps wait for core: they are not started when a core step failed.
STARTING = ("up", "update")
#: How long `aegir.compose.steps.verify` waits for containers to settle after ``up``/``restart``.
SETTLE_SECONDS = 10.0
#: The core project started before every other one.
FRONT = "front"
#: The deadline of a ``compose pull`` (images may be large).
PULL_SECONDS = 1800.0


@dataclass(frozen=True)
class Step:
    """One Compose command for one project."""

    project: Project
    action: str
    cmd: Cmd
    services: tuple[str, ...] = ()
    pull: Cmd | None = None  # ``update``: the pull that runs before `cmd`
    deadline: float | None = None  # seconds the whole step may take (`step_deadline`); None: timeouts.command


@dataclass(frozen=True)
class ActionResult:
    """What one step did: a `aegir.report.Result` (``would`` under --dry, ``done``, ``failed``, ``skipped``); the state after, and why."""

    project: str  # kind/folder
    action: str
    command: str
    result: str
    state: str = ""
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.result in (Result.WOULD, Result.DONE)


@dataclass(frozen=True)
class HostActions:
    """The steps of one host, in plan order, and the names it does not have."""

    host: str
    rows: tuple[ActionResult, ...]
    missing: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)


@dataclass(frozen=True)
class HostPlan:
    """The steps planned on one host (in the order they run), the names it lacks, what it has."""

    host: str
    action: str
    steps: tuple[Step, ...]
    missing: tuple[str, ...] = ()
    projects: tuple[Project, ...] = ()  # every project of the host: what a mistyped name is compared with
    warnings: tuple[str, ...] = ()


def core_order(projects: Sequence[Project]) -> list[Project]:
    """Core projects in start order: ``front`` first, then by folder name."""
    return sorted(projects, key=lambda p: (p.folder != FRONT, p.folder))


def ordered(projects: Sequence[Project], action: str) -> list[Project]:
    """`projects` in the order `action` takes them: core first (``front`` first) for what starts things,
    core last (``front`` last) for `STOPPING`; the others in their discovery order."""
    core = core_order([p for p in projects if p.kind == "core"])
    rest = [p for p in projects if p.kind != "core"]
    return [*rest, *reversed(core)] if action in STOPPING else [*core, *rest]


def shown(host: Host, step: Step) -> str:
    """The line(s) that will really run there (``sudo -n`` on a sudo host); ``update``: pull && up."""
    return " && ".join(as_run(host, c).line for c in (step.pull, step.cmd) if c is not None)


def planned_rows(host: Host, steps: Sequence[Step]) -> tuple[ActionResult, ...]:
    """The plan as rows (``--dry``, the question's preview): each step's exact command."""
    return tuple(ActionResult(s.project.path, s.action, shown(host, s), Result.WOULD) for s in steps)


def skipped_rows(host: Host, steps: Sequence[Step], why: str) -> tuple[ActionResult, ...]:
    """Rows of steps that were not started (``not started: core/front failed``)."""
    return tuple(ActionResult(s.project.path, s.action, shown(host, s), Result.SKIPPED, detail=why) for s in steps)


def step_deadline(p: Project, action: str, compose_seconds: float) -> float:
    """How long `action` on `p` may take: `compose_seconds` (``timeouts.compose``), plus the services'
    ``stop_grace_period`` (each replica's) where containers may stop (``up`` recreates changed ones),
    plus `PULL_SECONDS` where images are pulled; and `SETTLE_SECONDS` to verify.

    >>> step_deadline(Project("apps", "a", "/srv/apps/a", "compose.yml"), "down", 300)
    310.0
    """
    grace = sum(s.stop_grace * max(1, s.replicas) for s in p.services)
    if action == "pull":
        return PULL_SECONDS
    total = compose_seconds + grace + SETTLE_SECONDS
    return total + PULL_SECONDS if action == "update" else total


def _pull(fl: compose.Flavour, p: Project, services: Sequence[str], ignore_failures: bool, dh: str | None) -> Cmd:
    return dataclasses.replace(compose.pull(fl, p, services, ignore_failures=ignore_failures, docker_host=dh),
                               timeout=PULL_SECONDS)


def build_step(fl: compose.Flavour, p: Project, action: str, services: Sequence[str] = (), *,
               docker_host: str | None = None, compose_seconds: float, ignore_failures: bool = False) -> Step:
    """The `Step` for `action` on `p` with the host's Compose flavour `fl`, and its deadline."""
    dh = docker_host
    deadline = step_deadline(p, action, compose_seconds)
    if action == "up":
        cmd = compose.up(fl, p, services, docker_host=dh)
    elif action == "down":
        cmd = compose.down(fl, p, docker_host=dh)
    elif action == "restart":
        cmd = compose.restart(fl, p, services, docker_host=dh)
    elif action == "pull":
        cmd = _pull(fl, p, services, ignore_failures, dh)
    elif action == "stop":
        cmd = compose.stop(fl, p, docker_host=dh)
    elif action == "update":
        return Step(p, action, compose.up(fl, p, services, docker_host=dh), tuple(services),
                    pull=_pull(fl, p, services, ignore_failures, dh), deadline=deadline)
    else:  # pragma: no cover - callers pass ACTIONS
        raise ValueError(action)
    return Step(p, action, cmd, tuple(services), deadline=deadline)


def choose(projects: Sequence[Project], names: Sequence[str], action: str, *, host: str,
           kinds: Sequence[str] = PROJECT_KINDS, refuse_core: bool = False) -> tuple[list[Project], tuple[str, ...]]:
    """The projects of `kinds` that `names` designate (all of them without names), in `action`'s order,
    and the names not found.

    `refuse_core` (apps.* with names): a name designating a core project is
    refused (`RefusedError`); so is a project whose Compose name another folder
    shares (acting on one would recreate or remove the other's containers).
    """
    chosen, missing = select(projects, names, PROJECT_KINDS if refuse_core else kinds, host=host)
    core = [p.path for p in chosen if p.kind == "core"]
    if refuse_core and core:
        raise RefusedError(f"{', '.join(core)}: a core project; apps.* act on apps/ and users/ "
                           "(core projects: `inv core.ACTION`, or `inv apps.ACTION --all`)", host=host)
    clashes = name_clashes(projects)
    bad = sorted({" and ".join(clashes[p.name]) for p in chosen if p.name in clashes})
    if bad:
        raise RefusedError(f"{'; '.join(bad)} are the same Compose project to Compose (one name): acting on one "
                           "would recreate or remove the other's containers; rename one folder", host=host)
    return ordered(chosen, action), missing


# --------------------------------------------------------------------------- fleet-wide decisions


def unknown_everywhere(names: Sequence[str], plans: Sequence[Outcome[HostPlan]]) -> tuple[str, ...]:
    """`unknown_names` over every host that answered; () when none did (nothing to compare with)."""
    answered = [o.value for o in plans if o.value is not None]
    if not names or not answered:
        return ()
    return unknown_names(names, [p for v in answered for p in v.projects])


def refusal(names: Sequence[str], plans: Sequence[Outcome[HostPlan]]) -> str | None:
    """The usage error of names no host has (with "did you mean", and the hosts not asked), or None."""
    unknown = unknown_everywhere(names, plans)
    if not unknown:
        return None
    silent = [o.host.name for o in plans if not o.ok]
    return "; ".join(unknown) + (f" (not asked: {', '.join(silent)}, which did not answer)"
                                 if silent else "") + "; nothing done"


def question(plans: Sequence[Outcome[HostPlan]]) -> str | None:
    """The question to ask before acting, or None: a `STOPPING` action on more than one host,
    or ``down``/``stop``/``restart`` of a core project (the front door of every app)."""
    acting = [o.value for o in plans if o.value is not None and o.value.steps]
    if not acting:
        return None
    action = acting[0].action
    core = sorted({f"{v.host}:{s.project.path}" for v in acting for s in v.steps if s.project.kind == "core"})
    if not ((action in STOPPING and len(acting) > 1) or (core and action in (*STOPPING, "restart"))):
        return None
    n = sum(len(v.steps) for v in acting)
    asked = f"{action.capitalize()} {n} project{'s' if n != 1 else ''} on {', '.join(v.host for v in acting)}"
    if core:
        asked += (f", core included ({', '.join(core)}: every app behind it is cut off "
                  f"{'until it is back' if action == 'restart' else 'until core.up'})")
    return asked + "?"


def failed_steps(actions: HostActions) -> str | None:
    """Why a host's actions failed (its failed or skipped steps, in one line), or None when every step held."""
    bad = [f"{r.project} {r.result}" + (f": {r.detail}" if r.detail else "") for r in actions.rows if not r.ok]
    return "; ".join(bad) or None
