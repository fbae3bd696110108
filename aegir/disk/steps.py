"""Acting on a host's disk: the prune (Docker SDK), per-app clean-ups (Compose exec)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aegir.compose.status import discover
from aegir.disk.facts import DockerUsage, docker_state, parse_docker_df, project_images
from aegir.disk.plan import KINDS, Item, PruneOptions, PrunePlan, plan_prune
from aegir.host import HostContext


@dataclass(frozen=True)
class HostPrune:
    """One host's prune plan and Docker's accounting when it was made."""

    plan: PrunePlan
    before: DockerUsage


def gather_prune(hc: HostContext, opts: PruneOptions) -> HostPrune:
    """Facts -> plan, read-only: the /srv projects' images (one round trip), Docker's state (three calls)."""
    disc = discover(hc)
    refs = project_images(hc, disc.projects)
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
    """What the prune did on one host; bytes freed per kind from Docker's accounting before and after."""

    done: tuple[Done, ...]
    before: DockerUsage
    after: DockerUsage

    @property
    def failed(self) -> tuple[Done, ...]:
        return tuple(d for d in self.done if d.error)

    def freed(self) -> dict[str, int]:
        """Bytes freed per line of ``docker system df``, and in all."""
        out = {k: getattr(self.before, k).size - getattr(self.after, k).size
               for k in ("images", "containers", "volumes", "build_cache")}
        out["total"] = self.before.size - self.after.size
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


def apply_prune(hc: HostContext, plan: PrunePlan) -> PruneResult:
    """Remove what `plan` lists, kind by kind (containers first: they hold images); never forced.

    A removal Docker refuses (the container started meanwhile, the image got a
    container) is reported with Docker's reason; the others go on.
    """
    import docker.errors

    api = hc.docker().api
    before = parse_docker_df(api.df())
    done: list[Done] = []
    for kind in KINDS:
        for item in plan.of(kind):
            try:
                _remove(api, item)
                done.append(Done(item))
            except docker.errors.NotFound:
                done.append(Done(item))  # gone meanwhile: what we wanted
            except docker.errors.APIError as exc:
                done.append(Done(item, _api_error(exc)))
    after = parse_docker_df(api.df())
    return PruneResult(tuple(done), before, after)
