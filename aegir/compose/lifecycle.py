"""Compose lifecycle on one host: plan (exact commands), act (bounded parallel), verify (Docker API).

`plan_host` turns names into `Action`s (one Compose command each,
from `aegir.compose.commands`); `planned` shows them (``--dry``) or `act_host` has
`run_steps` run them, several projects at once up to a bound (or one after
the other, stopping at the first failure, for core); `verify` reads the
containers again through the Docker API and says whether each project
reached the state its action promises:

=========  ==============================================================
up         every expected service running, none unhealthy or restarting
down       no container left
restart    every container of the (chosen) services started after the act
pull       the images of the project's services, before -> after (an ``image: ${VAR}`` is said unchecked)
stop       no container running, the containers kept
update     ``pull`` then ``up -d`` (Compose recreates only what changed): up, and which
           services got a new container
=========  ==============================================================

Each project's step is journaled on its host (`aegir.host.HostContext.step`)
with a deadline (`step_deadline`): a lost connection, a dead Docker daemon or
a deadline fails that project's row with its cause and starts no further
step on the host; Ctrl-C starts no further step (those rows say "not started").

A fleet action runs in two passes (`plan_fleet`, then `act_fleet`): every
target host is planned first, so that a name no host has refuses the whole
command before anything is touched, and a destructive plan can be confirmed
(`needs_confirmation`) before it runs. Core projects go first (``front``
first, one by one, the rest waiting on them) for actions that start things,
and last (``front`` last) for ``down``/``stop``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aegir import fleet
from aegir.compose import commands as compose
from aegir.compose.discovery import Project, name_clashes, select, unknown_names, warnings_about
from aegir.compose.state import ProjectContainer, project_status
from aegir.compose.status import (
    HostStatus,
    containers,
    discover,
    discovery_fact,
    gather_status,
    missing_everywhere,
    warning_lines,
)
from aegir.docker import image_keys, image_ref
from aegir.errors import AegirError, Interrupted, RefusedError
from aegir.host import as_run
from aegir.interrupt import RUN
from aegir.inventory import Host, Rolling
from aegir.journal import StepState
from aegir.layout import PROJECT_KINDS
from aegir.poll import until
from aegir.report import Result, failed_row, host_entry, table
from aegir.sh import Cmd

if TYPE_CHECKING:  # pragma: no cover
    from invoke import Context

    from aegir.fleet import Outcome
    from aegir.host import HostContext

ACTIONS = ("up", "down", "restart", "pull", "stop", "update")
#: Actions that leave a project's containers stopped.
STOPPING = ("down", "stop")
#: Actions after which apps wait for core: they are not started when a core step failed.
STARTING = ("up", "update")
#: How long `verify` waits for containers to settle after ``up``/``restart``.
SETTLE_SECONDS = 10.0
#: The core project started before every other one.
FRONT = "front"
#: The deadline of a ``compose pull`` (images may be large).
PULL_SECONDS = 1800.0


@dataclass(frozen=True)
class Action:
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


def core_order(projects: Sequence[Project]) -> list[Project]:
    """Core projects in start order: ``front`` first, then by folder name."""
    return sorted(projects, key=lambda p: (p.folder != FRONT, p.folder))


def _shown(hc: "HostContext | Host", step: Action) -> str:
    """The line(s) that will really run there (``sudo -n`` on a sudo host); ``update``: pull && up."""
    host = hc if isinstance(hc, Host) else hc.host
    lines = [as_run(host, c).line for c in (step.pull, step.cmd) if c is not None]
    return " && ".join(lines)


def build_step(hc: "HostContext", p: Project, action: str, services: Sequence[str] = (), *,
               ignore_failures: bool = False) -> Action:
    """The `Action` for `action` on `p` with the host's Compose flavour, and its deadline."""
    fl = compose.flavour(hc)
    dh = hc.host.docker_host
    deadline = step_deadline(p, action, hc.limits.compose)
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
        return Action(p, action, compose.up(fl, p, services, docker_host=dh), tuple(services),
                      pull=_pull(fl, p, services, ignore_failures, dh), deadline=deadline)
    else:  # pragma: no cover - callers pass ACTIONS
        raise ValueError(action)
    return Action(p, action, cmd, tuple(services), deadline=deadline)


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


def check_core_up(hc: "HostContext") -> HostStatus:
    """Refuse (`RefusedError`) when a core project of `hc` is not up; return the core status."""
    core = gather_status(hc, kinds=("core",))
    down = [p for p in core.projects if not p.ok]
    if down:
        what = ", ".join(f"{p.path} is {p.state} ({p.services})" for p in down)
        raise RefusedError(f"core first: {what}; start it with `inv core.up`, or pass --force", host=hc.name)
    return core


def plan_apps(hc: "HostContext", names: Sequence[str], action: str, services: Sequence[str] = (), *,
              ignore_failures: bool = False) -> tuple[list[Action], tuple[str, ...]]:
    """Steps for apps.* on `hc`: the named apps/users projects, and the names `hc` lacks.

    A name that designates a core project is refused: core projects are
    acted on by ``core.*`` (or ``apps.* --all``) in their own order.
    """
    plan = plan_host(hc, names, action, services, ignore_failures=ignore_failures, refuse_core=True)
    return list(plan.steps), plan.missing


@dataclass(frozen=True)
class HostPlan:
    """The steps planned on one host (in the order they run), the names it lacks, what it has."""

    host: str
    action: str
    steps: tuple[Action, ...]
    missing: tuple[str, ...] = ()
    projects: tuple[Project, ...] = ()  # every project of the host: what a mistyped name is compared with
    warnings: tuple[str, ...] = ()


def ordered(projects: Sequence[Project], action: str) -> list[Project]:
    """`projects` in the order `action` takes them: core first (``front`` first) for what starts things,
    core last (``front`` last) for `STOPPING`; the others in their discovery order."""
    core = core_order([p for p in projects if p.kind == "core"])
    rest = [p for p in projects if p.kind != "core"]
    return [*rest, *reversed(core)] if action in STOPPING else [*core, *rest]


def plan_host(hc: "HostContext", names: Sequence[str], action: str, services: Sequence[str] = (), *,
              kinds: Sequence[str] = PROJECT_KINDS, ignore_failures: bool = False,
              refuse_core: bool = False) -> HostPlan:
    """Plan `action` on `hc`: the projects of `kinds` that `names` designate (all of them without names).

    `refuse_core` (apps.* with names): a name designating a core project is refused.
    """
    try:  # the Compose probe rides along with the discovery: one round trip
        hc.facts(discovery_fact(hc.host.srv), compose.FLAVOUR)
    except compose.ComposeMissing:
        pass  # said by `build_step` if this host has something to do
    disc = discover(hc)
    chosen, missing = select(disc.projects, names, PROJECT_KINDS if refuse_core else kinds, host=hc.name)
    core = [p.path for p in chosen if p.kind == "core"]
    if refuse_core and core:
        raise RefusedError(f"{', '.join(core)}: a core project; apps.* act on apps/ and users/ "
                           "(core projects: `inv core.ACTION`, or `inv apps.ACTION --all`)", host=hc.name)
    _refuse_clashes(hc, disc.projects, chosen)
    steps = tuple(build_step(hc, p, action, services, ignore_failures=ignore_failures)
                  for p in ordered(chosen, action))
    notes = warnings_about(disc, chosen, kinds, all_of_kinds=False)
    return HostPlan(hc.name, action, steps, missing, disc.projects, notes)


def _refuse_clashes(hc: "HostContext", projects: Sequence[Project], chosen: Sequence[Project]) -> None:
    """Refuse (`RefusedError`) to act on a project whose Compose name another folder shares."""
    clashes = name_clashes(projects)
    bad = sorted({" and ".join(clashes[p.name]) for p in chosen if p.name in clashes})
    if bad:
        raise RefusedError(f"{'; '.join(bad)} are the same Compose project to Compose (one name): acting on one "
                           "would recreate or remove the other's containers; rename one folder", host=hc.name)


def planned(hc: "HostContext | Host", steps: Sequence[Action]) -> tuple[ActionResult, ...]:
    """The plan as rows (``--dry``): each step's exact command."""
    return tuple(ActionResult(s.project.path, s.action, _shown(hc, s), Result.WOULD) for s in steps)


# --------------------------------------------------------------------------- acting


@dataclass(frozen=True)
class _Before:
    started: dict[str, str]  # container id -> StartedAt, for restart
    images: dict[str, str]  # image reference -> image id, for pull and update
    ids: dict[str, str] = dataclasses.field(default_factory=dict)  # container name -> id, for update


def _unchecked(p: Project) -> list[str]:
    """The project's ``image:`` values `verify` cannot read from the file (interpolated, or refused by Docker)."""
    return sorted({s.image for s in p.services if s.image and image_ref(s.image) is None})


def _images_of(hc: "HostContext", p: Project) -> dict[str, str]:
    """The project's image references (as RepoTags spell them) -> the ID of the local image Docker resolves
    each to, by its RepoTags or RepoDigests ("" when not present)."""
    refs = {str(r): r for s in p.services if s.image and (r := image_ref(s.image))}
    out = dict.fromkeys(sorted(refs), "")
    for img in hc.docker().api.images():
        keys = image_keys(img.get("RepoTags") or (), img.get("RepoDigests") or ())
        for text, ref in refs.items():
            if ref.key in keys:
                out[text] = img["Id"]
    return out


def _started(hc: "HostContext", p: Project, services: Sequence[str],
             found: Sequence[ProjectContainer] | None = None) -> dict[str, str]:
    """StartedAt of `p`'s containers (of `services`), among `found` (default: listed now)."""
    api = hc.docker().api
    out = {}
    for c in containers(hc) if found is None else found:
        if c.working_dir == p.dir and not c.oneoff and (not services or c.service in services):
            out[c.id] = api.inspect_container(c.id)["State"]["StartedAt"]
    return out


def _before(hc: "HostContext", step: Action) -> _Before:
    started = _started(hc, step.project, step.services) if step.action == "restart" else {}
    images = _images_of(hc, step.project) if step.action in ("pull", "update") else {}
    ids = _ids(step.project, containers(hc)) if step.action == "update" else {}
    return _Before(started, images, ids)


def _ids(p: Project, found: Sequence[ProjectContainer]) -> dict[str, str]:
    """Container name -> id, for `p`'s (non one-off) containers among `found`."""
    return {c.name: c.id for c in found if c.working_dir == p.dir and not c.oneoff}


def run_step(hc: "HostContext", step: Action) -> ActionResult:
    """Run one step and verify it through the Docker API, journaled on `hc` with the step's deadline.

    Its row says what happened: ``done``; ``failed`` with the cause (Compose's error, a lost
    connection, a dead daemon, the deadline); ``skipped`` when it was not started (Ctrl-C, or
    the connection was lost by another step).
    """
    line = _shown(hc, step)
    path = step.project.path
    if hc.journal.lost:
        return ActionResult(path, step.action, line, Result.SKIPPED, detail=f"not started: {hc.journal.lost}")
    try:
        with hc.step(step.action, what=path, deadline=step.deadline) as journaled:
            row = _run_and_verify(hc, step, line)
            if not row.ok:
                journaled.fail(row.detail)
            return row
    except Interrupted as exc:
        return ActionResult(path, step.action, line, Result.SKIPPED, detail=exc.message)
    except AegirError as exc:  # a lost connection, a dead daemon, a deadline: the host's journal has it too
        return ActionResult(path, step.action, line, Result.FAILED, detail=exc.message)


def _run_and_verify(hc: "HostContext", step: Action, line: str) -> ActionResult:
    before = _before(hc, step)
    pulled = hc.run(step.pull, check=False) if step.pull is not None else None
    result = pulled if pulled is not None and pulled.exited != 0 else hc.run(step.cmd, check=False)
    if result.exited != 0:
        tail = [ln.strip() for ln in result.stderr.strip().splitlines() if ln.strip()]
        try:
            state = _state(hc, step.project)
        except Exception as exc:  # the failure said first; the state is unknown
            if hc.failure(exc) is None:
                raise
            state = ""
        return ActionResult(step.project.path, step.action, line, Result.FAILED, state,
                            f"exited {result.exited}: {tail[-1] if tail else 'no message'}")
    ok, state, detail = verify(hc, step, before)
    pull_err = (pulled if pulled is not None else result).stderr
    ignored = [ln.strip() for ln in pull_err.splitlines() if " Error " in ln or ln.strip().startswith("Error")]
    if step.action in ("pull", "update") and ignored:  # --ignore-pull-failures: say what was ignored
        detail += f"; ignored: {ignored[-1]}"
    return ActionResult(step.project.path, step.action, line, Result.DONE if ok else Result.FAILED, state, detail)


def _state(hc: "HostContext", p: Project) -> str:
    s = project_status(p, containers(hc), {}, time.time())
    return f"{s.state} {s.services}"


def verify(hc: "HostContext", step: Action, before: _Before, *, settle: float = SETTLE_SECONDS) -> tuple[bool, str, str]:
    """Did `step` reach its promised state? (ok, state, detail), read through the Docker API.

    After Ctrl-C it looks once more and does not wait for the project to settle.
    """
    def look() -> tuple[bool, tuple[bool, tuple[str, str]]]:
        ok, seen = _check(hc, step, before)
        return ok or RUN.stopping, (ok, seen)

    _, (ok, (state, detail)), _ = until(look, timeout=settle, interval=0.5)
    if not ok and RUN.stopping:
        detail += "; not settled when Ctrl-C was pressed"
    return ok, state, detail


def _check(hc: "HostContext", step: Action, before: _Before) -> tuple[bool, tuple[str, str]]:
    """One look at whether `step` holds: (ok, (state, detail))."""
    p = step.project
    found = containers(hc)
    s = project_status(p, found, {}, time.time())
    state = f"{s.state} {s.services}"
    mine = [c for c in found if c.working_dir == p.dir and not c.oneoff]
    if step.action == "up":
        ok, detail = s.ok, "; ".join(s.problems) or "running"
    elif step.action == "down":
        ok, detail = not mine, ("no container left" if not mine else f"{len(mine)} containers remain")
    elif step.action == "stop":
        running = [c for c in mine if c.state in ("running", "restarting")]
        ok = bool(mine) and not running
        detail = (f"{len(running)} containers still running" if running
                  else f"{len(mine)} containers stopped (kept)" if mine else "no container to stop")
    elif step.action == "update":
        after_ids = _ids(p, found)
        new = sorted(n for n, i in after_ids.items() if before.ids.get(n) != i)
        kept = sorted(n for n, i in after_ids.items() if before.ids.get(n) == i)
        changed = [r for r, i in _images_of(hc, p).items() if before.images.get(r) != i]
        ok = s.ok
        detail = "; ".join([
            f"recreated: {', '.join(new)}" if new else "nothing recreated",
            *([f"unchanged: {', '.join(kept)}"] if kept else []),
            f"images updated: {', '.join(sorted(changed))}" if changed else "images unchanged",
            *s.problems])
    elif step.action == "restart":
        after = _started(hc, p, step.services, found)
        stale = [cid for cid, t in after.items() if before.started.get(cid) == t]
        # A whole-project restart must leave the project up; a service restart only that service.
        ok = not stale and bool(after) and (s.ok or bool(step.services))
        detail = (f"{len(after)} containers restarted" if not stale
                  else f"{len(stale)} containers not restarted") + (
                      f"; {'; '.join(s.problems)}" if s.problems else "")
    else:  # pull
        after_images = _images_of(hc, p)
        changed = [r for r, i in after_images.items() if before.images.get(r) != i]
        ok = True
        detail = (f"updated: {', '.join(sorted(changed))}" if changed
                  else f"images unchanged ({len(after_images)})")
        unchecked = _unchecked(p)
        if unchecked:
            detail += f"; not checked (interpolated): {', '.join(unchecked)}"
        return True, (state, detail)  # nothing to wait for
    return ok, (state, detail)


def run_steps(hc: "HostContext", steps: Sequence[Action], *, parallel: int = 4, stop_on_failure: bool = False,
              runner: Callable[["HostContext", Action], ActionResult] | None = None) -> tuple[ActionResult, ...]:
    """Run `steps` with `runner` (default `run_step`): up to `parallel` at once, results in plan order.

    With `stop_on_failure` (core start-up) the steps run one by one and those
    after a failure are ``skipped``.
    """
    runner = runner or run_step
    if stop_on_failure:
        out: list[ActionResult] = []
        failed_at: str | None = None
        for s in steps:
            if failed_at:
                out.append(ActionResult(s.project.path, s.action, _shown(hc, s), Result.SKIPPED,
                                      detail=f"not started: {failed_at} failed"))
                continue
            out.append(runner(hc, s))
            if not out[-1].ok:
                failed_at = out[-1].project
        return tuple(out)
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(steps) or 1)), thread_name_prefix="compose") as pool:
        return tuple(pool.map(lambda s: runner(hc, s), steps))


# --------------------------------------------------------------------------- the report


def render_actions(outcomes: Sequence["Outcome[HostActions]"], *, dry: bool) -> str:
    """One table for the fleet: a row per host x project (the exact command under --dry)."""
    rows: list[list[Any]] = []
    for o in outcomes:
        v = o.value
        if v is None:
            if not dry:  # abandoned part-way: its journal says which projects were done, running, not started
                rows += [[o.host.name, s.what, s.name, _journal_result(s.state), s.error or None] for s in o.steps]
            rows.append(failed_row(o, 5, at=3, reason_at=4) if not dry else failed_row(o, 4))
            continue
        for r in v.rows:
            rows.append([o.host.name, r.project, r.action, r.command] if dry
                        else [o.host.name, r.project, r.action, r.result, f"{r.state}: {r.detail}" if r.state else r.detail])
    if dry:
        text = table(["HOST", "PROJECT", "ACTION", "COMMAND (--dry: not run)"], rows) if rows else "nothing to do"
    else:
        text = table(["HOST", "PROJECT", "ACTION", "RESULT", "STATE / DETAIL"], rows) if rows else "nothing to do"
    return "\n".join([text, *warning_lines(outcomes)])


def _journal_result(state: StepState) -> str:
    """A journaled step's state in a RESULT cell: done, failed, ``running`` (when the host was abandoned),
    ``not started``."""
    return {StepState.DONE: Result.DONE, StepState.FAILED: Result.FAILED}.get(state, str(state))


def actions_json(outcomes: Sequence["Outcome[HostActions]"], *, dry: bool) -> dict[str, Any]:
    return {
        "dry": dry,
        "hosts": [host_entry(
            o,
            steps=[dataclasses.asdict(r) for r in o.value.rows] if o.value else [
                {"project": s.what, "action": s.name, "command": s.command, "result": _journal_result(s.state),
                 "state": "", "detail": s.error} for s in o.steps],
            missing=list(o.value.missing) if o.value else [],
        ) for o in outcomes],
        "missing": list(missing_everywhere(outcomes)),
    }


def actions_failed(outcomes: Sequence["Outcome[HostActions]"]) -> bool:
    """True when a step failed or was skipped, or a name was found on no host."""
    return any(o.value is not None and not o.value.ok for o in outcomes) or bool(missing_everywhere(outcomes))


def act_host(hc: "HostContext", steps: Sequence[Action], *, parallel: int = 4) -> tuple[ActionResult, ...]:
    """Run a host's planned steps: core projects one by one in plan order, the others `parallel` at once.

    For `STARTING` actions core goes first and, when a core step failed, the
    others are ``skipped``; for `STOPPING` ones the others go first, core last.
    """
    hc.journal.expect([(s.action, s.project.path) for s in steps])
    core = [s for s in steps if s.project.kind == "core"]
    rest = [s for s in steps if s.project.kind != "core"]
    action = steps[0].action if steps else ""
    if action in STOPPING:
        return run_steps(hc, rest, parallel=parallel) + run_steps(hc, core, stop_on_failure=True)
    first = run_steps(hc, core, stop_on_failure=True)
    bad = next((r.project for r in first if not r.ok), None)
    if bad and action in STARTING:
        return first + tuple(ActionResult(s.project.path, s.action, _shown(hc, s), Result.SKIPPED,
                                          detail=f"not started: {bad} failed") for s in rest)
    return first + run_steps(hc, rest, parallel=parallel)


def plan_fleet(c: "Context", hosts: Sequence[Host], planner: Callable[["HostContext"], HostPlan], *,
               label: str, dry: bool, contexts: dict[str, "HostContext"] | None = None) -> list["Outcome[HostPlan]"]:
    """The first pass: `planner` on every host (discovery, Compose flavour, checks); nothing is touched.

    `contexts` keeps each host's connection open for `act_fleet` (see `fleet.each`).
    Unless `dry`, the Docker API client that `act_fleet` verifies with is opened
    meanwhile, in parallel: a host with steps whose Docker does not answer fails
    here, before any host acts.
    """
    def plan_one(hc: "HostContext") -> HostPlan:
        if dry:
            return planner(hc)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="docker") as pool:
            warm = pool.submit(hc.docker)
            plan = planner(hc)
            try:
                warm.result()
            except AegirError:
                if plan.steps:
                    raise
        return plan

    return fleet.each(c, hosts, plan_one, label=label, contexts=contexts)


def failed_steps(actions: HostActions) -> str | None:
    """Why a host's actions failed (its failed or skipped steps, in one line), or None when every step held."""
    bad = [f"{r.project} {r.result}" + (f": {r.detail}" if r.detail else "") for r in actions.rows if not r.ok]
    return "; ".join(bad) or None


def unknown_everywhere(names: Sequence[str], plans: Sequence["Outcome[HostPlan]"]) -> tuple[str, ...]:
    """`unknown_names` over every host that answered; () when none did (nothing to compare with)."""
    answered = [o.value for o in plans if o.value is not None]
    if not names or not answered:
        return ()
    return unknown_names(names, [p for v in answered for p in v.projects])


def needs_confirmation(plans: Sequence["Outcome[HostPlan]"]) -> str | None:
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
    question = f"{action.capitalize()} {n} project{'s' if n != 1 else ''} on {', '.join(v.host for v in acting)}"
    if core:
        question += (f", core included ({', '.join(core)}: every app behind it is cut off "
                     f"{'until it is back' if action == 'restart' else 'until core.up'})")
    return question + "?"


def act_fleet(c: "Context", plans: Sequence["Outcome[HostPlan]"], *, dry: bool, parallel: int = 4,
              label: str, contexts: dict[str, "HostContext"] | None = None,
              rolling: Rolling | None = None,
              settled: dict[str, "Outcome[HostActions]"] | None = None) -> list["Outcome[HostActions]"]:
    """The second pass: show the plans (`dry`), or run them on the hosts that have steps, in parallel
    (or batch by batch: `rolling`).

    A host whose planning failed keeps that failure and, in a roll, counts as a failed host
    where it stands among the targets (an unreachable canary stops the roll); a host with
    nothing to do is not connected to again; a host where a step failed is a failed host
    (`failed_steps`): it stops a roll. `settled` (host name -> outcome) gives hosts decided
    before acting (``--all-or-nothing``: not attempted).
    """
    def shown(v: HostPlan, rows: tuple[ActionResult, ...]) -> HostActions:
        return HostActions(v.host, rows, v.missing, v.warnings)

    by_host = {o.host.name: o.value for o in plans if o.value is not None}
    known: dict[str, Outcome[HostActions]] = {
        o.host.name: fleet.Outcome(o.host, None, o.error, o.kind, o.seconds) for o in plans if o.value is None}
    known.update(settled or {})
    acting = {o.host.name for o in plans if o.value is not None and o.value.steps and not dry}
    busy = [o.host for o in plans if o.host.name in acting or (o.host.name in known and acting - set(known))]
    done = {o.host.name: o for o in fleet.each(
        c, busy, lambda hc: shown(by_host[hc.name], act_host(hc, by_host[hc.name].steps, parallel=parallel)),
        label=label, contexts=contexts, rolling=rolling, fails=failed_steps, settled=known)
    } if acting - set(known) else {}
    out: list[Outcome[HostActions]] = []
    for o in plans:
        v = o.value
        if o.host.name in done:
            out.append(done[o.host.name])
        elif o.host.name in known:
            out.append(known[o.host.name])
        else:
            assert v is not None
            out.append(fleet.Outcome(o.host, shown(v, planned(o.host, v.steps)), seconds=o.seconds))
    return out
