"""Classify each package of an upgrade, and explain why (pure: facts in, review out).

Kinds, most serious first; a package gets every kind that applies and is
shown under the first:

- ``docker``: it is the Docker engine (docker.io, containerd, runc, ...), or it
  ships (or its scripts restart) a unit that docker.service or docker.socket
  ``Requires=``, ``BindsTo=``, ``Requisite=`` or is ``PartOf=``: restarting
  that unit restarts or stops Docker. Running containers stop with Docker
  unless ``live-restore`` is on, which the reason says.
- ``crucial``: its maintainer scripts restart a unit that is active on the
  host and in the crucial list (`aegir.update.settings`).
- ``reboot``: it takes effect only after a reboot (kernel, libc, systemd...).
- ``security``: apt takes it from a security archive.
- ``other``: none of those (restarts of non-crucial units are mentioned).

A package whose files a running process maps now leaves that process on the
old code (`aegir.update.mapped`): when the process is Docker's engine
(dockerd, containerd, a shim) the package is ``docker``, when its unit is
crucial it is ``crucial`` ("libssl3: containerd.service maps
/usr/lib/x86_64-linux-gnu/libssl.so.3"); other processes are mentioned. A
unit the upgrade's maintainer scripts restart is not left stale.

``docker`` and ``crucial`` packages make the upgrade *risky*, and so does a
dist-upgrade that removes a Docker engine package (`HostReview.docker_removals`).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from aegir.update.apt import PackageInfo, Simulation, Unit
from aegir.update.mapped import Mapped, MapsScan, Needrestart, restart_outlook
from aegir.update.scripts import Restart, restarts
from aegir.update.settings import UpdateConfig

KINDS = ("docker", "crucial", "reboot", "security", "other")
RISKY = ("docker", "crucial")
DOCKER_UNITS = ("docker.service", "docker.socket")
#: Dependencies through which restarting (or stopping) a unit restarts (or stops) Docker.
RESTART_DEPS = ("Requires", "BindsTo", "Requisite", "PartOf")
#: How an effect that restarts Docker begins (the announcement reads which packages follow).
DOCKER_RESTART = "would restart docker via "
_RESTARTABLE = (".service", ".socket")


@dataclass(frozen=True)
class HostFacts:
    """What `aegir.update.facts.read_review` read on one host."""

    simulation: Simulation
    held: tuple[str, ...] = ()
    packages: Mapping[str, PackageInfo] = field(default_factory=dict)
    units: Mapping[str, Unit] = field(default_factory=dict)
    unit_owners: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # unit -> packages
    live_restore: bool | None = None
    docker_error: str | None = None
    dist: bool = False
    systemd: bool = True  # False: systemd is not running, unit states are unknown
    maps: MapsScan = field(default_factory=MapsScan)
    needrestart: Needrestart | None = None


@dataclass(frozen=True)
class PackageReview:
    """One package of the upgrade: versions, origin, kinds (most serious first), reasons."""

    name: str
    old: str | None
    new: str
    origin: str
    kinds: tuple[str, ...]
    reasons: tuple[str, ...]
    restarts: tuple[str, ...] = ()  # units its upgrade restarts
    crucial: tuple[str, ...] = ()  # those of them that are active and crucial
    stale: tuple[Mapped, ...] = ()  # the processes its upgrade leaves on the old code
    stale_risky: tuple[str, ...] = ()  # "libssl3: containerd.service maps /usr/lib/...": Docker's or crucial
    stale_docker_only: bool = False  # "docker" only because it leaves Docker on old code: it restarts nothing

    @property
    def restarts_docker(self) -> bool:
        """Its upgrade restarts (or stops) Docker: a Docker package, or one restarting a unit Docker needs."""
        return "docker" in self.kinds and not self.stale_docker_only

    @property
    def kind(self) -> str:
        return self.kinds[0]

    @property
    def risky(self) -> bool:
        return self.kind in RISKY


@dataclass(frozen=True)
class HostReview:
    """The review of one host's upgrade."""

    packages: tuple[PackageReview, ...] = ()
    held: tuple[str, ...] = ()
    kept_back: tuple[str, ...] = ()
    removals: tuple[str, ...] = ()
    docker_removals: tuple[str, ...] = ()  # removals that stop Docker (Docker engine packages)
    docker_deps: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    live_restore: bool | None = None
    docker_error: str | None = None
    dist: bool = False
    warnings: tuple[str, ...] = ()
    stale: tuple[Mapped, ...] = ()  # every process the upgrade leaves on the old code
    stale_before: tuple[tuple[int, str], ...] = ()  # (pid, file) stale already at the review
    needrestart: Needrestart | None = None
    outlook: str | None = None  # who restarts the stale services (`aegir.update.mapped.restart_outlook`)
    scanned: int = 0  # processes whose maps were read

    @property
    def risky(self) -> bool:
        return any(p.risky for p in self.packages) or bool(self.docker_removals)

    @property
    def stale_risky(self) -> tuple[str, ...]:
        """``libssl3: containerd.service maps /usr/lib/...``: what leaves Docker or a crucial unit stale."""
        return tuple(r for p in self.packages for r in p.stale_risky)

    def of_kind(self, kind: str) -> tuple[PackageReview, ...]:
        return tuple(p for p in self.packages if p.kind == kind)

    @property
    def versions(self) -> dict[str, tuple[str | None, str]]:
        return {p.name: (p.old, p.new) for p in self.packages}

    def effects(self) -> tuple[str, ...]:
        """What the upgrade does that users notice, one phrase each: what it leaves stale first."""
        out = list(self.stale_risky)
        if self.docker_removals:
            out.append("would stop docker: removes " + ", ".join(self.docker_removals))
        docker = [p for p in self.of_kind("docker") if p.restarts_docker]
        if docker:
            out.append(DOCKER_RESTART + ", ".join(p.name for p in docker))
        crucial: dict[str, list[str]] = {}
        for p in self.of_kind("crucial"):
            for u in p.crucial:
                crucial.setdefault(u, []).append(p.name)
        for unit, pkgs in crucial.items():
            out.append(f"would restart {unit} via {', '.join(pkgs)}")
        return tuple(out)

    def headline(self) -> str:
        """``would restart docker via containerd`` / ``3 upgrades, nothing risky`` / ``nothing to upgrade``."""
        if not self.packages and not self.removals:
            return "nothing to upgrade"
        effects = self.effects()
        if effects:
            return "; ".join((*effects, *((self.outlook,) if self.outlook and self.stale_risky else ())))
        reboot = " (reboot needed after)" if self.of_kind("reboot") else ""
        return f"{len(self.packages)} upgrade{'s' if len(self.packages) != 1 else ''}, nothing risky{reboot}"


def docker_dependencies(units: Mapping[str, Unit]) -> dict[str, tuple[str, ...]]:
    """Units whose restart restarts Docker -> how (``docker.service Requires=``).

    Only services and sockets: packages do not restart targets, slices or mounts.
    """
    out: dict[str, list[str]] = {}
    for name in DOCKER_UNITS:
        unit = units.get(name)
        if unit is None or not unit.loaded:
            continue
        for dep in RESTART_DEPS:
            for other in unit.deps.get(dep, ()):
                if other.endswith(_RESTARTABLE) and other not in DOCKER_UNITS:
                    out.setdefault(other, []).append(f"{name} {dep}=")
    return {k: tuple(v) for k, v in out.items()}


def _names(unit: str, units: Mapping[str, Unit]) -> set[str]:
    info = units.get(unit)
    return {unit, *(info.names if info else ()), *((info.id,) if info else ())}


def _live_restore_note(live_restore: bool | None, docker_error: str | None) -> str:
    if live_restore:
        return "containers keep running (live-restore is on)"
    if live_restore is False:
        return "running containers stop and restart with it (live-restore is off)"
    return f"live-restore unknown ({docker_error or 'Docker did not say'})"


def classify(facts: HostFacts, config: UpdateConfig) -> HostReview:
    """Classify every package `facts.simulation` would upgrade."""
    units = facts.units
    docker_deps = docker_dependencies(units)
    shipped_by: dict[str, set[str]] = {}
    for unit, pkgs in facts.unit_owners.items():
        for p in pkgs:
            shipped_by.setdefault(p, set()).add(unit)
    crucial = set(config.crucial_units)
    note = _live_restore_note(facts.live_restore, facts.docker_error)
    predicted = stale_after(facts)
    reviews = []
    for up in facts.simulation.upgrades:
        info = facts.packages.get(up.name) or PackageInfo(up.name)
        restarted: tuple[Restart, ...] = restarts(info.scripts)
        by_unit = {r.unit: r for r in restarted}
        kinds: list[str] = []
        reasons: list[str] = []
        if up.name in config.docker_packages:
            kinds.append("docker")
            what = "; ".join(f"restarts {r.unit} ({r})" for r in restarted)
            reasons.append(f"Docker engine package{': ' + what if what else ''}; {note}")
        ships = set(info.units) | shipped_by.get(up.name, set())
        explained = {r.unit for r in restarted} if "docker" in kinds else set()
        for dep_unit, how in sorted(docker_deps.items()):
            names = _names(dep_unit, units)
            shipped, restarting = bool(names & ships), dep_unit in by_unit
            if not (shipped or restarting):
                continue
            if "docker" not in kinds:
                kinds.append("docker")
            what = (f"ships {dep_unit}" if shipped else f"touches {dep_unit}") + f", which {' and '.join(how)}"
            if restarting:
                what += f", and restarts it ({by_unit[dep_unit]})"
            reasons.append(f"{what}; {note}")
            explained.add(dep_unit)
        for r in restarted:
            if r.unit in DOCKER_UNITS:
                if "docker" not in kinds:
                    kinds.append("docker")
                reasons.append(f"restarts {r.unit} ({r}); {note}")
                explained.add(r.unit)
        restarting_docker = "docker" in kinds
        stale = tuple(m for m in predicted if m.package == up.name)
        stale_risky = []
        others: list[str] = []
        for who, rows in _by_who(stale).items():
            m, files = rows[0], list(dict.fromkeys(r.file for r in rows))
            text = f"{up.name}: {who} maps {files[0]}" + (f" (+{len(files) - 1} more)" if len(files) > 1 else "")
            crucial_unit = bool(m.unit and _names(m.unit, units) & crucial)
            if m.docker or crucial_unit:
                kind = "docker" if m.docker else "crucial"
                if kind not in kinds:
                    kinds.append(kind)
                stale_risky.append(text)
                reasons.append(text)
            else:
                others.append(who)
        if others:
            reasons.append(f"leaves {len(others)} other process{'es' if len(others) != 1 else ''} on the old code "
                           f"until restarted: {', '.join(others[:5])}{', ...' if len(others) > 5 else ''}")
        crucial_restarts = []
        for r in restarted:
            info_u = units.get(r.unit)
            if not facts.systemd:  # states unknown: a crucial unit counts as active
                if r.unit in crucial:
                    crucial_restarts.append(r.unit)
                    if r.unit not in explained:
                        reasons.append(f"restarts {r.unit}, crucial, state unknown ({r})")
                elif r.unit.endswith(".service"):
                    reasons.append(f"restarts {r.unit} if it runs, not crucial ({r})")
                continue
            if info_u is None or not info_u.active:
                continue
            if _names(r.unit, units) & crucial:
                crucial_restarts.append(r.unit)
                if r.unit not in explained:
                    reasons.append(f"restarts {r.unit}, active and crucial ({r})")
            else:
                reasons.append(f"restarts {r.unit}, active but not crucial ({r})")
        if crucial_restarts and "crucial" not in kinds:
            kinds.append("crucial")
        if any(fnmatch.fnmatchcase(up.name, pat) for pat in config.reboot_packages):
            kinds.append("reboot")
            reasons.append("takes effect after a reboot")
        if up.security:
            kinds.append("security")
            reasons.append(f"security update ({up.origin})")
        if info.download_error:
            reasons.append(f"could not read its scripts: {info.download_error}")
        if not kinds:
            kinds.append("other")
            if not any(r.startswith("restarts") for r in reasons):
                reasons.append("restarts nothing crucial")
        reviews.append(PackageReview(up.name, up.old, up.new, up.origin, tuple(kinds), tuple(reasons),
                                     tuple(r.unit for r in restarted), tuple(crucial_restarts), stale,
                                     tuple(stale_risky), "docker" in kinds and not restarting_docker))
    order = {k: i for i, k in enumerate(KINDS)}
    reviews.sort(key=lambda p: (order[p.kind], p.name))
    held = set(facts.held)
    services = tuple(dict.fromkeys(m.unit for m in predicted if m.unit))
    return HostReview(
        packages=tuple(reviews),
        held=tuple(sorted(held)),
        kept_back=tuple(k for k in facts.simulation.kept_back if k not in held),
        removals=facts.simulation.removals,
        docker_removals=tuple(r for r in facts.simulation.removals if r.split(":")[0] in config.docker_packages),
        docker_deps=docker_deps,
        live_restore=facts.live_restore,
        docker_error=facts.docker_error,
        dist=facts.dist,
        warnings=() if facts.systemd else (
            "systemd is not running: unit states and Docker's unit dependencies are unknown; "
            "restarts of crucial units are counted as risky",),
        stale=predicted,
        stale_before=facts.maps.stale_before,
        needrestart=facts.needrestart,
        outlook=(restart_outlook(facts.needrestart, services, facts.live_restore)
                 if facts.needrestart is not None and services else None),
        scanned=facts.maps.scanned,
    )


def stale_after(facts: HostFacts) -> tuple[Mapped, ...]:
    """The processes the upgrade leaves on the old code: those mapping a file it replaces, less those whose
    unit its maintainer scripts restart (when systemd runs: without it, deb-systemd-invoke restarts nothing)."""
    if not facts.systemd:
        return facts.maps.mapped
    restarted = {r.unit for up in facts.simulation.upgrades
                 for r in restarts((facts.packages.get(up.name) or PackageInfo(up.name)).scripts)}
    return tuple(m for m in facts.maps.mapped if not (m.unit and _names(m.unit, facts.units) & restarted))


def _by_who(rows: Sequence[Mapped]) -> dict[str, list[Mapped]]:
    out: dict[str, list[Mapped]] = {}
    for m in rows:
        out.setdefault(m.who, []).append(m)
    return out


def fleet_summary(results: Sequence[tuple[str, HostReview | None, str | None]]) -> str:
    """``3 hosts: hyp2 would restart docker via containerd; hyp1 nothing to upgrade; hyp3 FAILED``."""
    parts = []
    for host, review, error in results:
        if review is None:
            first = (error or "").strip().splitlines()[0][:120] if (error or "").strip() else ""
            parts.append(f"{host} failed ({first})" if first else f"{host} failed")
        else:
            parts.append(f"{host} {review.headline()}")
    n = len(results)
    return f"{n} host{'s' if n != 1 else ''}: " + "; ".join(parts)
