"""The Compose lifecycle as one `aegir.action.Action`: apps.* and core.* up/down/stop/restart/pull/update.

`Lifecycle.plan` reads the host's facts (its projects and Compose flavour, in
one round trip; the core's state for apps.* without --force) and lets
`aegir.compose.plan` decide the steps; `Lifecycle.act` runs them
(`act_host`: core projects one by one in plan order, the others several at
once up to a bound), each followed by `verify`, which reads the containers
again through the Docker API and says whether the project reached the state
its action promises:

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
with a deadline (`aegir.compose.plan.step_deadline`): a lost connection, a
dead Docker daemon or a deadline fails that project's row with its cause and
starts no further step on the host; Ctrl-C starts no further step (those rows
say "not started"). The commands run here and nowhere else in compose.
"""

from __future__ import annotations

import dataclasses
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aegir import action
from aegir.action import Action, Ran, Report
from aegir.compose import commands as compose
from aegir.compose import report
from aegir.compose.discovery import Project, select, unknown_names, warnings_about
from aegir.compose.passthrough import CHANGE, PassPlan, PassResult, classify
from aegir.compose.plan import (
    SETTLE_SECONDS,
    STARTING,
    STOPPING,
    ActionResult,
    HostActions,
    HostPlan,
    Step,
    build_step,
    choose,
    failed_steps,
    question,
    refusal,
    shown,
    skipped_rows,
)
from aegir.compose.state import ProjectContainer, project_status
from aegir.compose.status import HostStatus, containers, discover, discovery_fact, gather_status
from aegir.compose.templates import NewPlan, NewProject, plan_project, verify_project
from aegir.docker import image_keys, image_ref
from aegir.errors import AegirError, Interrupted, RefusedError, UsageError
from aegir.fields import Answer
from aegir.fleet import Outcome
from aegir.host import HostContext, open_context
from aegir.interrupt import RUN
from aegir.layout import PROJECT_KINDS
from aegir.poll import until
from aegir.report import Result
from aegir.sh import Cmd

if TYPE_CHECKING:  # pragma: no cover
    from invoke import Context

    from aegir.inventory import Host


class Lifecycle(action.Action[HostPlan, HostActions]):
    """One lifecycle task (``apps.up``, ``core.down``...) on every target host that has the projects named.

    `names` (none: every project of `kinds`); `refuse_core`: a core project named is refused (apps.*
    with names); `core_first`: refuse while a core project of the host is down (apps.up/update
    without --force); `dry`: plan only (the Docker client is then not opened while planning).
    """

    def __init__(self, label: str, verb: str, names: Sequence[str] = (), *, kinds: Sequence[str] = PROJECT_KINDS,
                 services: Sequence[str] = (), ignore_failures: bool = False, refuse_core: bool = False,
                 core_first: bool = False, parallel: int = 4, dry: bool = False) -> None:
        self.label = label
        self.action = verb
        self.verb = f"{verb} them"
        self.see = f"inv {label.split('.')[0]}.status"
        self.names = tuple(names)
        self.kinds = tuple(kinds)
        self.services = tuple(services)
        self.ignore_failures = ignore_failures
        self.refuse_core = refuse_core
        self.core_first = core_first
        self.parallel = max(1, int(parallel))
        self.dry = dry

    def plan(self, hc: HostContext) -> HostPlan:
        """The host's steps; unless dry, the Docker client that `verify` reads with is opened meanwhile
        (a host with steps whose Docker does not answer fails here, before any host acts)."""
        if self.dry:
            return self._plan(hc)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="docker") as pool:
            warm = pool.submit(hc.docker)
            plan = self._plan(hc)
            try:
                warm.result()
            except AegirError:
                if plan.steps:
                    raise
        return plan

    def _plan(self, hc: HostContext) -> HostPlan:
        plan = plan_host(hc, self.names, self.action, self.services, kinds=self.kinds,
                         ignore_failures=self.ignore_failures, refuse_core=self.refuse_core)
        if plan.steps and self.core_first:
            check_core_up(hc)
        return plan

    def todo(self, plan: HostPlan) -> bool:
        return bool(plan.steps)

    def refuse(self, plans: Sequence[Outcome[HostPlan]]) -> None:
        """A name no host that answered has: the whole command is refused (exit 2, "did you mean")."""
        why = refusal(self.names, plans)
        if why:
            raise UsageError(why)

    def question(self, plans: Sequence[Outcome[HostPlan]]) -> str | None:
        return None if RUN.stopping else question(plans)

    def act(self, hc: HostContext, plan: HostPlan) -> HostActions:
        return HostActions(plan.host, act_host(hc, plan.steps, parallel=self.parallel), plan.missing, plan.warnings)

    def failed(self, result: HostActions) -> str | None:
        return failed_steps(result)

    def render(self, ran: action.Ran[HostPlan, HostActions]) -> action.Report:
        return report.lifecycle_report(self.label, ran)


# --------------------------------------------------------------------------- planning (facts only)


def plan_host(hc: HostContext, names: Sequence[str], verb: str, services: Sequence[str] = (), *,
              kinds: Sequence[str] = PROJECT_KINDS, ignore_failures: bool = False,
              refuse_core: bool = False) -> HostPlan:
    """Plan `verb` on `hc`: the projects of `kinds` that `names` designate (all of them without names).

    `refuse_core` (apps.* with names): a name designating a core project is refused.
    """
    try:  # the Compose probe rides along with the discovery: one round trip
        hc.facts(discovery_fact(hc.host.srv), compose.FLAVOUR)
    except compose.ComposeMissing:
        pass  # said below if this host has something to do
    disc = discover(hc)
    chosen, missing = choose(disc.projects, names, verb, host=hc.name, kinds=kinds, refuse_core=refuse_core)
    fl = compose.flavour(hc) if chosen else None  # ComposeMissing here: this host has something to do
    steps = tuple(build_step(fl, p, verb, services, docker_host=hc.host.docker_host,
                             compose_seconds=hc.limits.compose, ignore_failures=ignore_failures)
                  for p in chosen) if fl is not None else ()
    notes = warnings_about(disc, chosen, kinds, all_of_kinds=False)
    return HostPlan(hc.name, verb, steps, missing, disc.projects, notes)


def check_core_up(hc: HostContext) -> HostStatus:
    """Refuse (`RefusedError`) when a core project of `hc` is not up; return the core status."""
    core = gather_status(hc, kinds=("core",))
    down = [p for p in core.projects if not p.ok]
    if down:
        what = ", ".join(f"{p.path} is {p.state} ({p.services})" for p in down)
        raise RefusedError(f"core first: {what}; start it with `inv core.up`, or pass --force", host=hc.name)
    return core


# --------------------------------------------------------------------------- acting


def act_host(hc: HostContext, steps: Sequence[Step], *, parallel: int = 4) -> tuple[ActionResult, ...]:
    """Run a host's planned steps: core projects one by one in plan order, the others `parallel` at once.

    For `STARTING` actions core goes first and, when a core step failed, the
    others are ``skipped``; for `STOPPING` ones the others go first, core last.
    """
    hc.journal.expect([(s.action, s.project.path) for s in steps])
    core = [s for s in steps if s.project.kind == "core"]
    rest = [s for s in steps if s.project.kind != "core"]
    verb = steps[0].action if steps else ""
    if verb in STOPPING:
        return run_steps(hc, rest, parallel=parallel) + run_steps(hc, core, stop_on_failure=True)
    first = run_steps(hc, core, stop_on_failure=True)
    bad = next((r.project for r in first if not r.ok), None)
    if bad and verb in STARTING:
        return first + skipped_rows(hc.host, rest, f"not started: {bad} failed")
    return first + run_steps(hc, rest, parallel=parallel)


def run_steps(hc: HostContext, steps: Sequence[Step], *, parallel: int = 4, stop_on_failure: bool = False,
              runner: Callable[[HostContext, Step], ActionResult] | None = None) -> tuple[ActionResult, ...]:
    """Run `steps` with `runner` (default `run_step`): up to `parallel` at once, results in plan order.

    With `stop_on_failure` (core start-up) the steps run one by one and those
    after a failure are ``skipped``.
    """
    run = runner or run_step
    if stop_on_failure:
        out: list[ActionResult] = []
        for i, s in enumerate(steps):
            out.append(run(hc, s))
            if not out[-1].ok:
                return (*out, *skipped_rows(hc.host, steps[i + 1:], f"not started: {out[-1].project} failed"))
        return tuple(out)
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(steps) or 1)), thread_name_prefix="compose") as pool:
        return tuple(pool.map(lambda s: run(hc, s), steps))


def run_step(hc: HostContext, step: Step) -> ActionResult:
    """Run one step and verify it through the Docker API, journaled on `hc` with the step's deadline.

    Its row says what happened: ``done``; ``failed`` with the cause (Compose's error, a lost
    connection, a dead daemon, the deadline); ``skipped`` when it was not started (Ctrl-C, or
    the connection was lost by another step).
    """
    line = shown(hc.host, step)
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


def _run_and_verify(hc: HostContext, step: Step, line: str) -> ActionResult:
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


# --------------------------------------------------------------------------- verifying (Docker API reads)


@dataclass(frozen=True)
class Before:
    """What `verify` compares with, read before the step."""

    started: dict[str, str]  # container id -> StartedAt, for restart
    images: dict[str, str]  # image reference -> image id, for pull and update
    ids: dict[str, str] = dataclasses.field(default_factory=dict)  # container name -> id, for update


def _unchecked(p: Project) -> list[str]:
    """The project's ``image:`` values `verify` cannot read from the file (interpolated, or refused by Docker)."""
    return sorted({s.image for s in p.services if s.image and image_ref(s.image) is None})


def _images_of(hc: HostContext, p: Project) -> dict[str, str]:
    """The project's image references (as RepoTags spell them) -> the ID of the local image Docker resolves
    each to, by its RepoTags or RepoDigests ("" when not present)."""
    refs = {str(r): r for s in p.services if s.image and (r := image_ref(s.image))}
    out = dict.fromkeys(sorted(refs), "")
    for img in Answer(hc.docker().api.images(), "docker /images/json").items():
        keys = image_keys(img["RepoTags"].texts(), img["RepoDigests"].texts())
        for text, ref in refs.items():
            if ref.key in keys:
                out[text] = img["Id"].text()
    return out


def _started(hc: HostContext, p: Project, services: Sequence[str],
             found: Sequence[ProjectContainer] | None = None) -> dict[str, str]:
    """StartedAt of `p`'s containers (of `services`), among `found` (default: listed now)."""
    api = hc.docker().api
    out = {}
    for c in containers(hc) if found is None else found:
        if c.working_dir == p.dir and not c.oneoff and (not services or c.service in services):
            out[c.id] = Answer(api.inspect_container(c.id), "docker inspect")["State"]["StartedAt"].text()
    return out


def _before(hc: HostContext, step: Step) -> Before:
    started = _started(hc, step.project, step.services) if step.action == "restart" else {}
    images = _images_of(hc, step.project) if step.action in ("pull", "update") else {}
    ids = _ids(step.project, containers(hc)) if step.action == "update" else {}
    return Before(started, images, ids)


def _ids(p: Project, found: Sequence[ProjectContainer]) -> dict[str, str]:
    """Container name -> id, for `p`'s (non one-off) containers among `found`."""
    return {c.name: c.id for c in found if c.working_dir == p.dir and not c.oneoff}


def _state(hc: HostContext, p: Project) -> str:
    s = project_status(p, containers(hc), {}, time.time())
    return f"{s.state} {s.services}"


def verify(hc: HostContext, step: Step, before: Before, *, settle: float | None = None) -> tuple[bool, str, str]:
    """Did `step` reach its promised state? (ok, state, detail), read through the Docker API.

    After Ctrl-C it looks once more and does not wait for the project to settle.
    """
    def look() -> tuple[bool, tuple[bool, tuple[str, str]]]:
        ok, seen = _check(hc, step, before)
        return ok or RUN.stopping, (ok, seen)

    _, (ok, (state, detail)), _ = until(look, timeout=SETTLE_SECONDS if settle is None else settle, interval=0.5)
    if not ok and RUN.stopping:
        detail += "; not settled when Ctrl-C was pressed"
    return ok, state, detail


def _check(hc: HostContext, step: Step, before: Before) -> tuple[bool, tuple[str, str]]:
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
        detail = (f"updated: {', '.join(sorted(changed))}" if changed
                  else f"images unchanged ({len(after_images)})")
        unchecked = _unchecked(p)
        if unchecked:
            detail += f"; not checked (interpolated): {', '.join(unchecked)}"
        return True, (state, detail)  # nothing to wait for
    return ok, (state, detail)


# --------------------------------------------------------------------------- one command, streamed


def stream_each(c: Context, where: Sequence[tuple[Host, Project]],
                make: Callable[[HostContext, Project], Cmd]) -> list[str]:
    """Run `make`'s command for each (host, project), one after another, its output streamed to the terminal
    (a ``==> HOST PROJECT <==`` header when there are several); the names of the hosts where it failed."""
    bad = []
    for host, project in where:
        hc = open_context(c, host)
        try:
            cmd = make(hc, project)
            if len(where) > 1:
                report.stream_header(host.name, project.path)
            if hc.run(cmd, stream=True, check=False).exited != 0:
                bad.append(host.name)
        finally:
            hc.close()
    return bad


# --------------------------------------------------------------------------- apps.compose


class Passthrough(Action[PassPlan, PassResult]):
    """Run `args` (Compose's words) for the project `name` on every target host that has it."""

    label = "apps.compose"
    serial = True  # the output streams to the terminal: one host after another
    refused = "nothing run"

    def __init__(self, name: str, args: Sequence[str], *, kinds: Sequence[str] = PROJECT_KINDS) -> None:
        self.name, self.args, self.kinds = name, tuple(args), tuple(kinds)
        self.kind = classify(self.args)
        self.verb = "run it"
        self._headers = False

    def plan(self, hc: HostContext) -> PassPlan:
        disc = discover(hc)
        chosen, _ = select(disc.projects, (self.name,), self.kinds, host=hc.name)
        fl = compose.flavour(hc) if chosen else None
        runs = tuple((p.path, p.kind, compose.passthrough(fl, p, self.args, docker_host=hc.host.docker_host))
                     for p in chosen if fl is not None)
        return PassPlan(hc.name, runs, tuple(p for p in disc.projects if p.kind in self.kinds))

    def todo(self, plan: PassPlan) -> bool:
        return bool(plan.runs)

    def refuse(self, plans: Sequence[Outcome[PassPlan]]) -> None:
        """A name no host that answered has: a usage error with "did you mean"; several places: headers."""
        answered = [o.value for o in plans if o.value is not None]
        unknown = unknown_names((self.name,), [p for v in answered for p in v.projects])
        if unknown and answered:
            raise UsageError(unknown[0])
        self._headers = sum(len(v.runs) for v in answered) > 1

    def question(self, plans: Sequence[Outcome[PassPlan]]) -> str | None:
        if self.kind != CHANGE:
            return None
        where = [(o.host.name, path, kind) for o in plans if o.value is not None for path, kind, _ in o.value.runs]
        if not where:
            return None
        words = shlex.join(self.args)
        text = f"Run `compose {words}` for {', '.join(f'{h}:{p}' for h, p, _ in where)}"
        core = sorted({p for _, p, kind in where if kind == "core"})
        if core:
            text += (f" ({', '.join(core)}: a core project, every app goes through it; "
                     "whatever this stops stays stopped until core.up)")
        return text + "?"

    def act(self, hc: HostContext, plan: PassPlan) -> PassResult:
        ran = []
        for path, _, cmd in plan.runs:
            if self._headers:
                report.stream_header(hc.name, path)
            result = hc.run(cmd, stream=True, check=False)
            sys.stdout.flush()
            ran.append((path, cmd.line, result.exited))
        return PassResult(tuple(ran))

    def failed(self, result: PassResult) -> str | None:
        return "; ".join(result.failed) or None

    def render(self, ran: Ran[PassPlan, PassResult]) -> Report:
        return report.passthrough_report(ran, quiet=self.kind != CHANGE)


# --------------------------------------------------------------------------- apps.new


class NewProjectAction(Action[NewPlan, NewProject]):
    """apps.new: make a project folder from a template on one host; never overwrite one."""

    label = "apps.new"

    def __init__(self, name: str, template: str, *, users: bool = False) -> None:
        self.name, self.template, self.users = name, template, users

    def plan(self, hc: HostContext) -> NewPlan:
        return plan_project(hc, self.name, self.template, users=self.users)

    def act(self, hc: HostContext, plan: NewPlan) -> NewProject:
        """Each command in turn (none after a failed one), then `verify_project`."""
        results: list[tuple[str, str]] = []
        for cmd in plan.cmds:
            if results and results[-1][1] != Result.DONE:
                results.append((cmd.line, "not run"))
                continue
            r = hc.run(cmd, check=False)
            tail = r.stderr.strip().splitlines()
            results.append((cmd.line, str(Result.DONE) if r.exited == 0
                            else f"failed: exited {r.exited}: {tail[-1] if tail else ''}"))
        return NewProject(hc.name, plan.path, tuple(results), verify_project(hc, plan))

    def failed(self, result: NewProject) -> str | None:
        return None if result.ok else (result.verified if result.verified.startswith("NOT") else
                                       "a command failed: the project folder may be part-made")

    def render(self, ran: Ran[NewPlan, NewProject]) -> Report:
        return report.new_report(ran)
