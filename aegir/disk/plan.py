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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aegir.disk.facts import DockerState, ProjectImages

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
