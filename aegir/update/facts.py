"""What `update` reads of a host: `aegir.facts.Fact`s over apt's, dpkg's and systemd's answers and the records.

The commands and their parsers are in `aegir.update.apt` (apt, dpkg,
systemctl), `aegir.update.install` (the exact simulation) and
`aegir.update.records` (what update remembers on the host); here each becomes
a Fact: the exit codes that answer, and what an answer that is not one means
(a fetch that failed, systemd not running, apt refusing the reviewed set).
None is cached: apt's and Docker's state change under a run (an apply reads
some of them again after installing).

`read_review` is the review's reading sequence: three round trips at most
(what apt would do, which units matter, then what the new packages ship and
restart and who owns the units Docker needs), plus Docker's ``info``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aegir.docker import DockerUnavailable, dockerd_fact, running_info
from aegir.errors import STDERR_TAIL_LINES, AegirError, RefusedError
from aegir.facts import Fact
from aegir.fields import Answer, ShapeError
from aegir.sh import Reply
from aegir.update.apt import (
    PackageInfo,
    Simulation,
    StaleProcess,
    Unit,
    dpkg_search_cmd,
    fetch_failure,
    needrestart_cmd,
    owners,
    package_info_cmd,
    parse_dpkg_search,
    parse_needrestart,
    parse_package_info,
    parse_showhold,
    parse_simulation,
    parse_units,
    showhold_cmd,
    simulate_cmd,
    systemctl_show_cmd,
)
from aegir.update.classify import DOCKER_UNITS, HostFacts, docker_dependencies
from aegir.update.install import exact_simulate_cmd
from aegir.update.mapped import (
    MapsScan,
    Needrestart,
    maps_cmd,
    needrestart_conf_cmd,
    parse_maps,
    parse_needrestart_conf,
)
from aegir.update.records import ANNOUNCE_PATH, REVIEW_PATH, AnnounceRecord, ReviewRecord, read_cmd
from aegir.update.settings import UpdateConfig

if TYPE_CHECKING:  # pragma: no cover
    from aegir.host import HostContext

#: systemctl's words when systemd is not PID 1 (a container, a chroot, this CI machine).
NO_SYSTEMD = ("has not been booted with systemd", "Failed to connect to bus")


def step_failed(what: str, exited: int, stderr: str) -> AegirError:
    """`what` failed: its exit code and the tail of its stderr (not the whole script's line)."""
    tail = [ln for ln in stderr.strip().splitlines() if ln.strip()][-STDERR_TAIL_LINES:]
    return AegirError(f"{what} failed (exit {exited})" + "".join(f"\n  | {ln}" for ln in tail))


# --------------------------------------------------------------------------- apt


def simulation_fact(dist: bool = False) -> Fact[Simulation]:
    """What ``apt-get -s upgrade`` (or ``dist-upgrade``) would do now."""
    return Fact("update.simulation", simulate_cmd(dist), lambda r: parse_simulation(r.stdout), cache=False)


@dataclass(frozen=True)
class Afterwards:
    """What apt would still upgrade after an install, or why it cannot say (a failed install)."""

    left: tuple[str, ...] = ()
    error: str | None = None


def _afterwards(r: Reply) -> Afterwards:
    if r.exited != 0:
        return Afterwards(error="after the install: " + fetch_failure("apt-get -s", r.exited, r.stderr))
    return Afterwards(tuple(parse_simulation(r.stdout).versions))


def afterwards_fact(dist: bool) -> Fact[Afterwards]:
    """`simulation_fact` after an install: apt may refuse to plan then, which is said, not raised."""
    return Fact("update.simulation.after", simulate_cmd(dist), _afterwards, answers=None, cache=False)


def held_fact() -> Fact[tuple[str, ...]]:
    """The packages ``apt-mark hold`` keeps."""
    return Fact("update.held", showhold_cmd(), lambda r: parse_showhold(r.stdout), cache=False)


def check_read(wanted: Mapping[str, str], packages: Mapping[str, PackageInfo], *, host: str | None = None) -> None:
    """Raise when a package's new version could not be downloaded and read.

    What its maintainer scripts restart is then unknown: calling it "nothing
    risky" would be a guess, so the review fails (exit 2) and says which.
    """
    unread = {n: (packages[n].download_error if n in packages else None) or "no answer" for n in wanted
              if n not in packages or packages[n].download_error}
    if unread:
        raise AegirError("cannot review: could not read the maintainer scripts of "
                         + "; ".join(f"{n} {wanted[n]} ({why.strip().splitlines()[-1]})" for n, why in unread.items()),
                         host=host)


def _packages(r: Reply, wanted: Mapping[str, str]) -> dict[str, PackageInfo]:
    if r.exited != 0:
        raise AegirError("cannot fetch packages: " + fetch_failure("downloading the new packages", r.exited, r.stderr))
    packages = parse_package_info(r.stdout)
    check_read(wanted, packages)
    return packages


def packages_fact(wanted: Mapping[str, str]) -> Fact[dict[str, PackageInfo]]:
    """The units and maintainer scripts of the `wanted` versions (downloaded) and of the installed ones;
    a package that could not be read is an error (`check_read`)."""
    return Fact("update.packages", package_info_cmd(wanted), lambda r: _packages(r, wanted), answers=None,
                cache=False)


def exact_fact(upgrading: Mapping[str, tuple[str | None, str]], removing: tuple[str, ...]) -> Fact[Simulation]:
    """What apt would do to install exactly `upgrading` and remove `removing`; `RefusedError` if it cannot."""
    def read(r: Reply) -> Simulation:
        if r.exited != 0:
            why = next((ln for ln in reversed(r.stderr.splitlines()) if ln.startswith("E: ")), r.stderr.strip())
            raise RefusedError(f"apt cannot install the reviewed versions ({why[:300]}): "
                               "run `inv update.review` again")
        return parse_simulation(r.stdout)

    return Fact("update.exact", exact_simulate_cmd(upgrading, removing), read, answers=None, cache=False)


def stale_fact() -> Fact[tuple[StaleProcess, ...]]:
    """The processes still mapping files an upgrade replaced (they need a restart)."""
    return Fact("update.stale", needrestart_cmd(), lambda r: parse_needrestart(r.stdout), cache=False)


def maps_fact(packages: list[str]) -> Fact[MapsScan]:
    """The host's processes mapping files that upgrading `packages` replaces (`aegir.update.mapped`)."""
    return Fact("update.maps", maps_cmd(packages), lambda r: parse_maps(r.stdout), cache=False)


def needrestart_fact() -> Fact[Needrestart]:
    """Whether needrestart is installed, run by apt, and in which mode."""
    return Fact("update.needrestart", needrestart_conf_cmd(), lambda r: parse_needrestart_conf(r.stdout), cache=False)


# --------------------------------------------------------------------------- systemd and dpkg


@dataclass(frozen=True)
class UnitStates:
    """What ``systemctl show`` said of some units; `systemd` False: it is not running (no states at all)."""

    units: Mapping[str, Unit]
    systemd: bool = True


def _units(r: Reply) -> UnitStates:
    if r.exited != 0 and any(s in r.stderr for s in NO_SYSTEMD):
        return UnitStates({}, systemd=False)
    if r.exited != 0:
        raise step_failed("systemctl show", r.exited, r.stderr)
    return UnitStates(parse_units(r.stdout))


def units_fact(units: list[str]) -> Fact[UnitStates]:
    """The files, dependencies and states of `units` (none when systemd is not running)."""
    return Fact("update.units", systemctl_show_cmd(units), _units, answers=None, cache=False)


def owners_fact(paths: list[str]) -> Fact[dict[str, tuple[str, ...]]]:
    """path -> the packages shipping it, under either spelling (``dpkg -S`` exits 1 for an unknown path)."""
    return Fact("update.owners", dpkg_search_cmd(paths), lambda r: owners(paths, parse_dpkg_search(r.stdout)),
                answers=None, cache=False)


# --------------------------------------------------------------------------- records


def review_record_fact() -> Fact[ReviewRecord | None]:
    """The review recorded on the host (None: none), its every field and checksum checked."""
    return Fact("update.review-record", read_cmd(REVIEW_PATH), lambda r: ReviewRecord.from_json(r.stdout),
                cache=False)


def announce_record_fact() -> Fact[AnnounceRecord | None]:
    """The last announcement recorded on the host (None: none, or unreadable)."""
    return Fact("update.announce-record", read_cmd(ANNOUNCE_PATH), lambda r: AnnounceRecord.from_json(r.stdout),
                cache=False)


# --------------------------------------------------------------------------- Docker


def live_restore(hc: HostContext, running: bool | None = None) -> tuple[bool | None, str | None]:
    """Docker's live-restore setting, or (None, why Docker did not say).

    Docker is asked only when a dockerd process runs (`running`: the answer of
    `aegir.docker.dockerd_fact`, when already read): a connection to the socket
    of systemd's docker.socket would start it (on a host rebooted but not
    unlocked yet, onto the unencrypted root disk).
    """
    try:
        info = running_info(hc, running)
    except DockerUnavailable as exc:
        return None, exc.message
    except Exception as exc:  # the SDK's errors: the review goes on without it
        return None, f"Docker info failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    try:
        return Answer(info, "docker info")["LiveRestoreEnabled"].flag(), None
    except ShapeError as exc:
        return None, exc.message


# --------------------------------------------------------------------------- the review's reads


def read_review(hc: HostContext, config: UpdateConfig, *, dist: bool = False) -> HostFacts:
    """Everything `aegir.update.classify.classify` needs of `hc`'s host, read-only, in three round trips at most.

    1. the simulation, the holds, the Docker and crucial units, whether dockerd runs, needrestart's setup;
    2. the new packages (downloaded and read), the processes mapping files they replace, and the units
       Docker depends on not asked yet;
    3. the units the new packages ship not asked yet, and the packages owning the units Docker depends on.
    """
    asked = list(dict.fromkeys([*DOCKER_UNITS, *config.crucial_units]))
    simulation, held, first, running, restarter = hc.facts(simulation_fact(dist), held_fact(), units_fact(asked),
                                                           dockerd_fact(), needrestart_fact())
    units: dict[str, Unit] = dict(first.units)
    wanted = {u.name: u.new for u in simulation.upgrades}
    missing = [u for u in docker_dependencies(units) if u not in units] if first.systemd else []
    second: list[Fact[Any]] = [packages_fact(wanted), maps_fact(list(wanted))] if wanted else []
    second += [units_fact(missing)] if missing else []
    answers = list(hc.facts(*second)) if second else []
    packages: dict[str, PackageInfo] = answers.pop(0) if wanted else {}
    maps: MapsScan = answers.pop(0) if wanted else MapsScan()
    if missing:
        units.update(answers.pop(0).units)
    shipped = [u for u in dict.fromkeys(u for p in packages.values() for u in p.units) if u not in units]
    shipped = [u for u in sorted(shipped) if u not in asked and u not in missing]
    deps = docker_dependencies(units)
    fragments = {u: units[u].fragment_path for u in deps if u in units and units[u].fragment_path}
    third: list[Fact[Any]] = (([units_fact(shipped)] if shipped and first.systemd else [])
                              + ([owners_fact(list(fragments.values()))] if fragments else []))
    answers = list(hc.facts(*third)) if third else []
    if shipped and first.systemd:
        units.update(answers.pop(0).units)
    by_path = answers.pop(0) if fragments else {}
    unit_owners = {u: by_path[p] for u, p in fragments.items()}
    restore, docker_error = live_restore(hc, running) if simulation.upgrades else (None, None)
    return HostFacts(simulation, held, packages, units, unit_owners, restore, docker_error, dist, first.systemd,
                     maps, restarter)
