"""What `disk.prune` removes on a host: a pure function of Docker's state and the /srv projects.

The runbook's ``docker system prune`` + ``docker images -q | xargs docker rmi``
removes too much: a project that is down is not garbage, and its image may not
be pullable again. `plan_prune` keeps, unless asked otherwise:

* every image a Compose project under /srv references (by its file, resolved
  by Compose, or through one of its containers), running or stopped, however
  the file spells it (Docker's normalisation: ``docker.io/``, ``library/``,
  tag ``latest``; a ``name@digest`` matches the image of that RepoDigest);
* when a project's images cannot all be known (`ProjectImages.unknown`: a
  profile or a variable Compose did not resolve, a file aegir could not read,
  a folder discovery skipped), every image with a tag or a digest: only
  images with neither, which no ``image:`` can name, may go then;
* the stopped containers of a project under /srv (its one-off ``run``
  containers are garbage);
* every named volume, always; anonymous ones go only with ``--volumes``;
* every network a remaining container is attached to.

`disk.clean`'s plan is pure too (`plan_clean`): the recipe (the app's own
file's text, else a shipped one), the compose file's ``x-aegir.clean``, the
app's ``.env`` -> each step's exact ``compose exec`` line. The plans and what
acting on them did (`HostPrune`, `PruneResult`, `HostClean`, `CleanResult`)
are here, for `aegir.disk.steps` (which acts) and `aegir.disk.report`.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Sequence
from dataclasses import dataclass

from aegir import yamldoc
from aegir.compose import commands as compose
from aegir.compose.discovery import ENV_FILE, Project
from aegir.compose.lint import env_files, looks_secret, parse_env
from aegir.disk.facts import DockerState, DockerUsage, ProjectImages
from aegir.disk.recipe import (
    APP_RECIPE,
    Command,
    Recipe,
    apply_override,
    parse_override,
    parse_recipe,
    render,
    shipped_text,
)
from aegir.errors import AegirError
from aegir.sh import Cmd, mask_values
from aegir.yamldoc import YamlError

#: The kinds of things a prune removes, in the order it removes them.
KINDS = ("container", "image", "network", "volume", "build cache")


@dataclass(frozen=True)
class PruneOptions:
    volumes: bool = False  # anonymous volumes no container uses
    project_images: bool = False  # images only /srv projects reference (no container uses them)
    project_containers: bool = False  # stopped service containers of /srv projects


@dataclass(frozen=True)
class Item:
    """One thing to remove (or kept, with `why`): its kind, Docker ID or name, label, bytes."""

    kind: str
    id: str
    name: str
    bytes: int = 0
    why: str = ""


@dataclass(frozen=True)
class PrunePlan:
    """What to remove, what is kept on purpose (and why), and what could not be judged."""

    remove: tuple[Item, ...]
    kept: tuple[Item, ...] = ()
    warnings: tuple[str, ...] = ()

    def of(self, kind: str) -> tuple[Item, ...]:
        return tuple(i for i in self.remove if i.kind == kind)

    @property
    def bytes(self) -> int:
        return sum(i.bytes for i in self.remove)


def plan_prune(state: DockerState, projects: Sequence[ProjectImages], opts: PruneOptions = PruneOptions(),
               *, build_cache: bool = True) -> PrunePlan:
    """The prune plan of one host (see the module's docstring for what is kept).

    A project whose images are unknown keeps every image of the host that has a tag or a digest, and
    `warnings` names the project and says why.
    """
    dirs = {p.dir: p.path for p in projects}
    named: dict[str, set[str]] = {}
    for p in projects:
        for r in p.refs:
            for key in r.keys:
                named.setdefault(key, set()).add(p.path)
    blind = [p for p in projects if p.unknown]
    warnings = [f"{p.path}: {p.unknown}; no image with a tag or a digest is pruned on this host" for p in blind]
    unknown = f"images of {', '.join(p.path for p in blind)} unknown"
    remove: list[Item] = []
    kept: list[Item] = []

    gone: set[str] = set()
    for c in state.containers:
        if not c.stopped:
            continue
        project = dirs.get(c.working_dir)
        if project and not c.oneoff and not opts.project_containers:
            kept.append(Item("container", c.id, c.name, c.size_rw, f"stopped service of {project}"))
            continue
        why = f"one-off container of {project}" if project and c.oneoff else (
            f"stopped service of {project}" if project else "stopped container")
        remove.append(Item("container", c.id, c.name, c.size_rw, why))
        gone.add(c.id)
    staying = [c for c in state.containers if c.id not in gone]

    project_of_image: dict[str, list[str]] = {}
    for c in state.containers:
        if c.working_dir in dirs:
            project_of_image.setdefault(c.image_id, []).append(dirs[c.working_dir])
    used = {c.image_id for c in staying}
    for img in state.images:
        if img.id in used:
            continue
        by = sorted({p for key in img.keys for p in named.get(key, ())} | set(project_of_image.get(img.id, ())))
        if by and not opts.project_images:
            kept.append(Item("image", img.id, img.name, img.unique, f"referenced by {', '.join(by)}"))
        elif (img.tags or img.digests) and blind and not opts.project_images:
            kept.append(Item("image", img.id, img.name, img.unique, unknown))
        else:
            why = (f"only {', '.join(by)} references it" if by else "unused tag" if img.tags
                   else "unused digest" if img.digests else "dangling")
            remove.append(Item("image", img.id, img.name, img.unique, why))

    attached = {n for c in staying for n in c.networks}
    for n in state.networks:
        if not n.builtin and n.id not in attached:
            remove.append(Item("network", n.id, n.name, 0, "no container attached"))

    mounted = {v for c in staying for v in c.volumes}
    for v in state.volumes:
        if v.name in mounted:
            continue
        if not v.anonymous:
            kept.append(Item("volume", v.name, v.name, v.size, "named volume"))
        elif opts.volumes:
            remove.append(Item("volume", v.name, v.name, v.size, "anonymous, unused"))

    cache = state.usage.build_cache
    if build_cache and cache.reclaimable:
        remove.append(Item("build cache", "", f"{cache.count - cache.active} records", cache.reclaimable,
                           "not in use"))
    def order(i: Item) -> tuple[int, str, str]:
        return KINDS.index(i.kind), i.name, i.id

    return PrunePlan(tuple(sorted(remove, key=order)), tuple(sorted(kept, key=order)), tuple(warnings))


@dataclass(frozen=True)
class HostPrune:
    """One host's prune plan and Docker's accounting when it was made."""

    plan: PrunePlan
    before: DockerUsage


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


# --------------------------------------------------------------------------- disk.clean


@dataclass(frozen=True)
class CleanPlan:
    """What disk.clean will run for one app on one host."""

    project: Project
    recipe: Recipe
    commands: tuple[Command, ...]
    lines: tuple[str, ...]  # each command's exact line (`compose exec ...`)
    #: What no output may show (`clean_secrets`): values of the app's .env and env_file: files, each step's
    #: whole stdin; `aegir.sh.mask_values` masks them in the step outputs and in the whole report.
    secrets: tuple[str, ...] = dataclasses.field(default=(), repr=False)


@dataclass(frozen=True)
class HostClean:
    """One host's disk.clean plan: the app's (None: the host has no such app), and the host's projects (for
    "did you mean" when no host has it)."""

    plan: CleanPlan | None
    projects: tuple[Project, ...] = ()


def exec_cmd(fl: compose.Flavour, p: Project, c: Command, docker_host: str | None) -> Cmd:
    """A recipe command as it runs: ``compose exec -T`` in the service's container, with the step's timeout."""
    cmd = compose.exec_(fl, p, c.service, c.argv, user=c.user, stdin=c.stdin, docker_host=docker_host)
    return dataclasses.replace(cmd, timeout=c.timeout)


def env_file_paths(p: Project) -> list[str]:
    """The ``env_file:`` files of `p`'s services other than its .env (read with it: their values are masked
    too); none when the compose file cannot be read (`plan_clean` then says why)."""
    try:
        data = yamldoc.load(p.compose_text).data
    except YamlError:
        return []
    return [f for f in env_files(data) if f not in (ENV_FILE, f"./{ENV_FILE}")]


def plan_clean(p: Project, fl: compose.Flavour, *, own: str | None, recipe_name: str | None, env_text: str,
               now: float, docker_host: str | None = None, host: str | None = None,
               env_file_texts: Sequence[str] = ()) -> CleanPlan:
    """The clean-up of project `p`: `own` (the text of its folder's ``aegir-clean.yml``, None: it has none)
    unless `recipe_name` (--recipe) names a shipped one; else the shipped one named by --recipe,
    ``x-aegir.clean.recipe`` or the folder's name; then the compose file's ``x-aegir.clean`` settings and
    the app's ``.env`` (`env_text`: data, never interpolated from aegir's environment); `env_file_texts`: the
    texts of its other ``env_file:`` files, whose values are masked like the .env's."""
    from dotenv import dotenv_values

    if p.error:
        raise AegirError(f"{p.dir}/{p.error}", host=host)
    ov = parse_override(p.compose_text, p.compose_path)
    if own is not None and not recipe_name:
        recipe = parse_recipe(own, f"{p.dir}/{APP_RECIPE}", p.folder)
    else:
        name = recipe_name or ov.recipe or p.folder
        file, text = shipped_text(name)
        recipe = parse_recipe(text, file, name)
    recipe = apply_override(recipe, ov)
    env = dotenv_values(stream=io.StringIO(env_text), interpolate=False)
    commands = render(recipe, env, now)
    lines = tuple(exec_cmd(fl, p, c, docker_host).line for c in commands)
    shown = "\n".join((p.path, recipe.name, recipe.file, *lines, *(c.step for c in commands),
                       *(c.shown_stdin or "" for c in commands)))
    return CleanPlan(p, recipe, commands, lines, clean_secrets((env_text, *env_file_texts), commands, shown))


def clean_secrets(env_texts: Sequence[str], commands: Sequence[Command], shown: str) -> tuple[str, ...]:
    """What disk.clean's output may never show: each step's whole stdin, every value of a secret-looking
    key (`looks_secret`: ``POSTGRES_PASSWORD``) of the .env and the other ``env_file:`` files
    (`env_texts`), and every other value of theirs (as written and as interpolated) unless the plan shows
    it from the recipe and compose file alone (`shown`: a user name that is also the service's name,
    ``synapse``, stays readable) or it is too plain to hide (`_plain`: ``DEBUG=1`` would turn every exit
    code 1 and size 1.5M of the report into ``****``)."""
    from dotenv import dotenv_values

    secret: set[str] = set()
    values: set[str] = set()
    for text in env_texts:
        env = dotenv_values(stream=io.StringIO(text), interpolate=False)
        secret |= {v.strip() for k, v in env.items() if v and v.strip() and looks_secret(k)}
        values |= {v for v in parse_env(text).values if not _plain(v) and mask_values(shown, (v,)) == shown}
    return tuple(sorted(secret | values | {c.stdin for c in commands if c.stdin}))


_PLAIN_WORDS = frozenset({"true", "false", "yes", "no", "on", "off", "none", "null"})


def _plain(value: str) -> bool:
    """A value of a key that does not look secret, too plain to hide: under 4 characters, a number, a boolean.

    >>> [_plain(v) for v in ("1", "8008", "0.5", "True", "matrix", "hunter2")]
    [True, True, True, True, False, False]
    """
    v = value.strip()
    if len(v) < 4 or v.lower() in _PLAIN_WORDS:
        return True
    try:
        float(v)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class CleanStep:
    """One step as it ran: its command line, exit code, time, state (ok, failed, skipped) and output's tail."""

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
    """What disk.clean did on one host: each step, and the app folder's size before and after."""

    project: str
    recipe: str
    steps: tuple[CleanStep, ...]
    size_before: int | None
    size_after: int | None

    @property
    def failed(self) -> bool:
        return any(s.state == "failed" for s in self.steps)
