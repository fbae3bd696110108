"""The disk's changes, one `aegir.action.Action` each: disk.prune (`Prune`), disk.clean (`Clean`).

Each plans from facts only (`aegir.disk.facts`; decisions in `aegir.disk.plan`)
and acts on what its plan says: the removals (Docker SDK) and the recipes'
``compose exec`` runs are here and nowhere else in `disk`. A host whose /srv is
not mounted fails while it is planned: its projects are not there to read.

- `Prune`: plan = Docker's state against what the /srv projects name
  (`aegir.disk.plan.plan_prune`); act = the removals, kind by kind, never
  forced (`apply_prune`), then Docker's accounting again (the bytes freed).
- `Clean`: plan = the app's recipe rendered to exact commands
  (`aegir.disk.plan.plan_clean`); act = each step in its container, the app
  folder's size before and after (`run_clean`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from aegir import action
from aegir.compose import commands as compose
from aegir.compose.discovery import select, unknown_names
from aegir.disk import report
from aegir.disk.facts import (
    app_recipe_fact,
    env_files_fact,
    folder_size_fact,
    mounted_projects,
    parse_docker_df,
    prune_facts,
)
from aegir.disk.plan import (
    KINDS,
    CleanResult,
    CleanStep,
    Done,
    HostClean,
    HostPrune,
    Item,
    PruneOptions,
    PruneResult,
    env_file_paths,
    exec_cmd,
    plan_clean,
    plan_prune,
)
from aegir.disk.recipe import APP_RECIPE, NOT_FOUND
from aegir.errors import AegirError, ConnectionLost, UsageError
from aegir.fields import Answer
from aegir.fleet import Outcome
from aegir.report import human
from aegir.sh import mask_values

if TYPE_CHECKING:  # pragma: no cover
    from aegir.host import HostContext


# --------------------------------------------------------------------------- disk.prune


class Prune(action.Action[HostPrune, PruneResult]):
    """disk.prune on every target: what the /srv projects neither use nor name goes (`aegir.disk.plan`)."""

    label = "disk.prune"
    verb = "prune"
    refused = "nothing pruned"

    def __init__(self, opts: PruneOptions) -> None:
        self.opts = opts

    def plan(self, hc: HostContext) -> HostPrune:
        refs, state = prune_facts(hc)
        return HostPrune(plan_prune(state, refs, self.opts), state.usage)

    def todo(self, plan: HostPrune) -> bool:
        return bool(plan.plan.remove)

    def question(self, plans: Sequence[Outcome[HostPrune]]) -> str | None:
        busy = [(o.host.name, o.value) for o in plans if o.value is not None and self.todo(o.value)]
        left = [o for o in plans if not o.ok]
        return (f"Remove all this on {', '.join(name for name, _ in busy)} "
                f"(at least {human(sum(p.plan.bytes for _, p in busy))})?"
                + (f" ({report.left_out(left)}: not pruned)" if left else ""))

    def act(self, hc: HostContext, plan: HostPrune) -> PruneResult:
        return apply_prune(hc, plan)

    def failed(self, result: PruneResult) -> str | None:
        return result.problem

    def render(self, ran: action.Ran[HostPrune, PruneResult]) -> action.Report:
        return report.prune_report(ran)


def _api_error(exc: Exception) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc).strip().splitlines()[0][:300]


def _remove(api: Any, item: Item) -> None:
    """Remove one item without force: Docker itself refuses a container that runs or an image in use."""
    if item.kind == "container":
        api.remove_container(item.id)
    elif item.kind == "image":
        tags = [t for t in Answer(api.inspect_image(item.id), "docker inspect")["RepoTags"].texts()
                if t != "<none>:<none>"]
        for tag in tags:  # untag one by one: the last untag deletes the image (no -f needed)
            api.remove_image(tag)
        if not tags:
            api.remove_image(item.id)
    elif item.kind == "network":
        api.remove_network(item.id)
    elif item.kind == "volume":
        api.remove_volume(item.id)
    elif item.kind == "build cache":
        api.prune_builds()
    else:  # pragma: no cover - KINDS is closed
        raise ValueError(item.kind)


def daemon_gone(exc: BaseException) -> str | None:
    """Why Docker stopped answering, when `exc` says so (None: a refusal of one request, or a bug).

    The SDK's transport errors (a connection reset or refused, the daemon's
    socket gone, a read timeout), the SSH link they ride on, and aegir's own
    errors reaching the daemon; never an `APIError` (Docker answered).
    """
    import docker.errors
    import requests.exceptions

    if isinstance(exc, docker.errors.APIError):
        return None
    if isinstance(exc, AegirError):
        return exc.message.splitlines()[0]
    if isinstance(exc, requests.exceptions.Timeout):
        return f"the Docker daemon stopped answering ({type(exc).__name__}: {_first_line(exc)})"
    if isinstance(exc, (requests.exceptions.ConnectionError, docker.errors.DockerException, OSError, EOFError)):
        return f"the Docker daemon stopped answering ({type(exc).__name__}: {_first_line(exc)})"
    from paramiko.ssh_exception import SSHException

    if isinstance(exc, SSHException):
        return f"the SSH connection to the Docker daemon was lost ({type(exc).__name__}: {_first_line(exc)})"
    return None


def stopped(hc: HostContext, exc: BaseException) -> str | None:
    """Why the removals stop at `exc` (None: a bug): the SSH connection the Docker API rides on, lost
    (the host's own words, `HostContext.failure`: no answer for timeouts.silent, or a close and why), else
    why Docker stopped answering (`daemon_gone`). Before, a killed sshd or a silent host read as a dead
    daemon."""
    why = daemon_gone(exc)
    if why is not None and isinstance(exc, Exception) and not isinstance(exc, AegirError):
        lost = hc.failure(exc)
        if isinstance(lost, ConnectionLost):
            return lost.message.splitlines()[0]
    return why


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0][:200] if text else "") or "no detail"


def apply_prune(hc: HostContext, planned: HostPrune) -> PruneResult:
    """Remove what the plan lists, kind by kind (containers first: they hold images); never forced; then
    read Docker's accounting again (the verification: what was freed).

    A removal Docker refuses (the container started meanwhile, the image got a
    container) is reported with Docker's reason; the others go on. When the
    daemon stops answering (it died, the connection dropped, a timeout), the
    removals stop there: the result says how many of the planned ones were done
    and why the rest was not tried.
    """
    import docker.errors

    plan = planned.plan
    done: list[Done] = []
    try:
        api = hc.docker().api
        before = parse_docker_df(api.df())
    except Exception as exc:
        if (why := stopped(hc, exc)) is None:
            raise
        return PruneResult((), planned.before, None, len(plan.remove), why)
    for kind in KINDS:
        for item in plan.of(kind):
            try:
                _remove(api, item)
                done.append(Done(item))
            except docker.errors.NotFound:
                done.append(Done(item))  # gone meanwhile: what we wanted
            except docker.errors.APIError as exc:
                done.append(Done(item, _api_error(exc)))
            except Exception as exc:
                if (why := stopped(hc, exc)) is None:
                    raise
                return PruneResult(tuple(done), before, None, len(plan.remove), why)
    try:
        after = parse_docker_df(api.df())
    except Exception as exc:
        if (why := stopped(hc, exc)) is None:
            raise
        return PruneResult(tuple(done), before, None, len(plan.remove), f"{why}, after the last removal")
    return PruneResult(tuple(done), before, after, len(plan.remove))


# --------------------------------------------------------------------------- disk.clean


class Clean(action.Action[HostClean, CleanResult]):
    """disk.clean APP on every target that has the app: its recipe's steps in its containers."""

    label = "disk.clean"
    verb = "clean up"
    refused = "nothing cleaned"

    def __init__(self, app: str, recipe: str | None = None, now: float | None = None) -> None:
        self.app = app
        self.recipe = recipe
        self.now = time.time() if now is None else now  # one time for every host's {days_ago_ms:...}

    def plan(self, hc: HostContext) -> HostClean:
        """The app's recipe rendered (one round trip to find the app, one for Compose and its own recipe)."""
        disc = mounted_projects(hc, with_env=True)
        chosen, _ = select(disc.projects, (self.app,), host=hc.name)
        if not chosen:
            return HostClean(None, disc.projects)
        p = chosen[0]
        paths = env_file_paths(p)
        own = [] if self.recipe else [app_recipe_fact(f"{p.dir}/{APP_RECIPE}")]
        fl, *found = hc.facts(compose.FLAVOUR, *own, *([env_files_fact(p.dir, paths)] if paths else []))
        texts = list(found.pop().values()) if paths else []
        return HostClean(plan_clean(p, fl, own=found[0] if found else None, recipe_name=self.recipe,
                                    env_text=disc.envs.get(p.path, ""), now=self.now,
                                    docker_host=hc.host.docker_host, host=hc.name, env_file_texts=texts),
                         disc.projects)

    def todo(self, plan: HostClean) -> bool:
        return plan.plan is not None

    def refuse(self, plans: Sequence[Outcome[HostClean]]) -> None:
        """No host has the app, and every host answered: a usage error, with "did you mean"."""
        answered = [o.value for o in plans if o.value is not None]
        if len(answered) == len(plans) and not any(h.plan for h in answered):
            raise UsageError(unknown_names([self.app], [p for h in answered for p in h.projects], what="app")[0])

    def question(self, plans: Sequence[Outcome[HostClean]]) -> str | None:
        found = [o.host.name for o in plans if o.value is not None and o.value.plan is not None]
        return f"Run these clean-ups on {', '.join(found)}?"

    def act(self, hc: HostContext, plan: HostClean) -> CleanResult:
        assert plan.plan is not None
        return run_clean(hc, plan)

    def failed(self, result: CleanResult) -> str | None:
        return "a clean-up step failed" if result.failed else None

    def render(self, ran: action.Ran[HostClean, CleanResult]) -> action.Report:
        return report.clean_report(ran)


def _tail(text: str, lines: int = 3) -> str:
    kept = [ln for ln in text.strip().splitlines() if ln.strip()]
    return "\n".join(kept[-lines:])


def run_clean(hc: HostContext, planned: HostClean) -> CleanResult:
    """Run every step in its container (each one whatever the others did), timing it; then the app folder's
    size again (the verification: what was freed)."""
    plan = planned.plan
    assert plan is not None
    p = plan.project
    size = folder_size_fact(p.dir)
    before = hc.fact(size)
    fl = compose.flavour(hc)
    results = []
    for c, line in zip(plan.commands, plan.lines):
        start = time.monotonic()
        r = hc.run(exec_cmd(fl, p, c, hc.host.docker_host), check=False)
        seconds = time.monotonic() - start
        state = "ok" if r.exited == 0 else ("skipped" if r.exited == NOT_FOUND and c.if_missing == "skip"
                                           else "failed")
        output = mask_values(_tail(r.stdout + "\n" + r.stderr), plan.secrets)
        results.append(CleanStep(c.step, c.service, c.user, line, r.exited, round(seconds, 3), state, output))
    return CleanResult(p.path, plan.recipe.name, tuple(results), before, hc.fact(size))
