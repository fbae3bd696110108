"""Acting on a host's disk: the prune (Docker SDK), per-app clean-ups (Compose exec)."""

from __future__ import annotations

import dataclasses
import io
import time
from dataclasses import dataclass
from typing import Any

from aegir.compose import cli as compose
from aegir.compose.discovery import Project, select
from aegir.compose.status import discover
from aegir.disk.facts import DockerUsage, docker_state, parse_docker_df, project_images
from aegir.disk.plan import KINDS, Item, PruneOptions, PrunePlan, plan_prune
from aegir.disk.recipe import (
    APP_RECIPE,
    NOT_FOUND,
    Command,
    Recipe,
    apply_override,
    parse_override,
    parse_recipe,
    render,
    shipped_text,
)
from aegir.errors import AegirError
from aegir.host import HostContext
from aegir.sh import Cmd, mask, shell


@dataclass(frozen=True)
class HostPrune:
    """One host's prune plan and Docker's accounting when it was made."""

    plan: PrunePlan
    before: DockerUsage


def gather_prune(hc: HostContext, opts: PruneOptions) -> HostPrune:
    """Facts -> plan, read-only: the /srv projects' images (one round trip; the folders discovery skipped
    count as unknown), Docker's state (three calls)."""
    disc = discover(hc)
    refs = project_images(hc, disc)
    state = docker_state(hc)
    plan = plan_prune(state, refs, opts)
    return HostPrune(plan, state.usage)


@dataclass(frozen=True)
class Done:
    """One planned removal and how it went (`error` None: removed)."""

    item: Item
    error: str | None = None


@dataclass(frozen=True)
class PruneResult:
    """What the prune did on one host: each removal tried, of `planned`; bytes freed per kind from
    Docker's accounting before and after (`after` None: Docker stopped answering, `stopped` says why,
    and the removals after that one were not tried)."""

    done: tuple[Done, ...]
    before: DockerUsage
    after: DockerUsage | None
    planned: int = 0
    stopped: str | None = None

    @property
    def failed(self) -> tuple[Done, ...]:
        return tuple(d for d in self.done if d.error)

    @property
    def removed(self) -> int:
        """How many planned removals were done."""
        return sum(1 for d in self.done if not d.error)

    @property
    def problem(self) -> str | None:
        """Why the host counts as failed, in one line (None: every planned removal was done)."""
        if self.stopped is None and not self.failed:
            return None
        refused = f"; {len(self.failed)} refused by Docker" if self.failed else ""
        return f"removed {self.removed} of {self.planned}{refused}" + (f"; {self.stopped}" if self.stopped else "")

    def freed(self) -> dict[str, int] | None:
        """Bytes freed per line of ``docker system df``, and in all (None: nothing measured after)."""
        if self.after is None:
            return None
        after = self.after
        out = {k: getattr(self.before, k).size - getattr(after, k).size
               for k in ("images", "containers", "volumes", "build_cache")}
        out["total"] = self.before.size - after.size
        return out


def _api_error(exc: Exception) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc).strip().splitlines()[0][:300]


def _remove(api: Any, item: Item) -> None:
    """Remove one item without force: Docker itself refuses a container that runs or an image in use."""
    if item.kind == "container":
        api.remove_container(item.id)
    elif item.kind == "image":
        tags = [t for t in (api.inspect_image(item.id).get("RepoTags") or ()) if t != "<none>:<none>"]
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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0][:200] if text else "") or "no detail"


def apply_prune(hc: HostContext, planned: HostPrune) -> PruneResult:
    """Remove what the plan lists, kind by kind (containers first: they hold images); never forced.

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
        if (why := daemon_gone(exc)) is None:
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
                if (why := daemon_gone(exc)) is None:
                    raise
                return PruneResult(tuple(done), before, None, len(plan.remove), why)
    try:
        after = parse_docker_df(api.df())
    except Exception as exc:
        if (why := daemon_gone(exc)) is None:
            raise
        return PruneResult(tuple(done), before, None, len(plan.remove), f"{why}, after the last removal")
    return PruneResult(tuple(done), before, after, len(plan.remove))


# --------------------------------------------------------------------------- disk.clean

_APP_RECIPE_SCRIPT = 'if [ -f "$1" ]; then printf Y; cat -- "$1"; else printf N; fi'


def folder_size_cmd(path: str) -> Cmd:
    """The bytes a folder holds (``du -s``, one filesystem, no following links)."""
    return Cmd.of("du", "-sxB1", "--", path)


def parse_folder_size(stdout: str) -> int | None:
    head = stdout.split(None, 1)
    return int(head[0]) if head and head[0].isdigit() else None


@dataclass(frozen=True)
class CleanPlan:
    """What disk.clean will run for one app on one host."""

    project: Project
    recipe: Recipe
    commands: tuple[Command, ...]
    lines: tuple[str, ...]  # each command's exact line (`compose exec ...`)


def plan_clean(hc: HostContext, app: str, recipe_name: str | None, now: float) -> CleanPlan | None:
    """Find `app` on the host and render its recipe (None: the host has no such app).

    The recipe: ``aegir-clean.yml`` in the app's folder if there is one (and no
    --recipe), else the shipped one named by --recipe, ``x-aegir.clean.recipe``
    or the app's folder name; then the compose file's ``x-aegir.clean`` settings.
    """
    disc = discover(hc, with_env=True)
    chosen, _ = select(disc.projects, (app,), host=hc.name)
    if not chosen:
        return None
    p = chosen[0]
    if p.error:
        raise AegirError(f"{p.dir}/{p.error}", host=hc.name)
    ov = parse_override(p.compose_text, p.compose_path)
    local_file = f"{p.dir}/{APP_RECIPE}"
    local = hc.run(shell(_APP_RECIPE_SCRIPT, local_file)).stdout if not recipe_name else "N"
    if local.startswith("Y"):
        recipe = parse_recipe(local[1:], local_file, p.folder)
    else:
        name = recipe_name or ov.recipe or p.folder
        file, text = shipped_text(name)
        recipe = parse_recipe(text, file, name)
    recipe = apply_override(recipe, ov)
    from dotenv import dotenv_values  # the app's .env: data, never interpolated from our environment

    env = dotenv_values(stream=io.StringIO(disc.envs.get(p.path, "")), interpolate=False)
    commands = render(recipe, env, now)
    fl = compose.flavour(hc)
    lines = tuple(_exec(fl, p, c, hc.host.docker_host).line for c in commands)
    return CleanPlan(p, recipe, commands, lines)


def _exec(fl: compose.Flavour, p: Project, c: Command, docker_host: str | None) -> Cmd:
    cmd = compose.exec_(fl, p, c.service, c.argv, user=c.user, stdin=c.stdin, docker_host=docker_host)
    return dataclasses.replace(cmd, timeout=c.timeout)


@dataclass(frozen=True)
class CleanStep:
    step: str
    service: str
    user: str | None
    line: str
    exit_code: int
    seconds: float
    state: str  # ok | failed | skipped
    output: str = ""  # the tail of stdout and stderr


@dataclass(frozen=True)
class CleanResult:
    project: str
    recipe: str
    steps: tuple[CleanStep, ...]
    size_before: int | None
    size_after: int | None

    @property
    def failed(self) -> bool:
        return any(s.state == "failed" for s in self.steps)


def _tail(text: str, lines: int = 3) -> str:
    kept = [ln for ln in text.strip().splitlines() if ln.strip()]
    return "\n".join(kept[-lines:])


def run_clean(hc: HostContext, plan: CleanPlan) -> CleanResult:
    """Run every step in its container (each one whatever the others did), timing it; folder size around."""
    p = plan.project
    before = parse_folder_size(hc.run(folder_size_cmd(p.dir)).stdout)
    fl = compose.flavour(hc)
    results = []
    for c, line in zip(plan.commands, plan.lines):
        start = time.monotonic()
        r = hc.run(_exec(fl, p, c, hc.host.docker_host), check=False)
        seconds = time.monotonic() - start
        state = "ok" if r.exited == 0 else ("skipped" if r.exited == NOT_FOUND and c.if_missing == "skip"
                                           else "failed")
        output = mask(_tail(r.stdout + "\n" + r.stderr), [c.stdin] if c.stdin else [])
        results.append(CleanStep(c.step, c.service, c.user, line, r.exited, round(seconds, 3), state, output))
    after = parse_folder_size(hc.run(folder_size_cmd(p.dir)).stdout)
    return CleanResult(p.path, plan.recipe.name, tuple(results), before, after)
