"""`update.review` on one host: read the facts, classify, record the review on the host.

Round trips: ``apt-get update`` (with ``--refresh``), ``apt-get -s``,
``apt-mark showhold``, one script that downloads the new packages to read
their units and maintainer scripts (`aegir.update.apt.package_info_cmd`), one
or two ``systemctl show`` and one ``dpkg -S``; plus Docker's ``info`` for
live-restore. Nothing on the host changes but the review record.
A package whose new version cannot be downloaded and read fails the
review (exit 2): what its scripts would restart is unknown.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aegir.docker import DockerUnavailable, running_info
from aegir.errors import STDERR_TAIL_LINES, AegirError, CommandError
from aegir.host import HostContext
from aegir.sh import Cmd, write_file_cmd
from aegir.update.apt import (
    PackageInfo,
    dpkg_search_cmd,
    fetch_failure,
    owners,
    package_info_cmd,
    parse_dpkg_search,
    parse_package_info,
    parse_showhold,
    parse_simulation,
    parse_units,
    showhold_cmd,
    simulate_cmd,
    systemctl_show_cmd,
    update_cmd,
)

if TYPE_CHECKING:  # pragma: no cover
    from invoke.runners import Result
from aegir.update.classify import DOCKER_UNITS, HostFacts, HostReview, classify, docker_dependencies
from aegir.update.config import UpdateConfig
from aegir.update.records import REVIEW_PATH, ReviewRecord

#: systemctl's words when systemd is not PID 1 (a container, a chroot, this CI machine).
NO_SYSTEMD = ("has not been booted with systemd", "Failed to connect to bus")


def step(hc: HostContext, cmd: Cmd, what: str) -> "Result":
    """Run `cmd`; a failure says `what` failed (exit code, stderr tail), not the whole script."""
    try:
        return hc.run(cmd)
    except CommandError as exc:
        raise _step_failed(hc, what, exc.exited, exc.stderr) from None


def fetch(hc: HostContext, cmd: Cmd, what: str) -> "Result":
    """Run a command that fetches from the network (bounded on the host); a failure is one line."""
    try:
        return hc.run(cmd)
    except CommandError as exc:
        raise AegirError("cannot fetch packages: " + fetch_failure(what, exc.exited, exc.stderr),
                         host=hc.name) from None


def _step_failed(hc: HostContext, what: str, exited: int, stderr: str) -> AegirError:
    """The error `step` raises: `what` failed, its exit code and the tail of its stderr."""
    tail = [ln for ln in stderr.strip().splitlines() if ln.strip()][-STDERR_TAIL_LINES:]
    return AegirError(f"{what} failed (exit {exited})" + "".join(f"\n  | {ln}" for ln in tail), host=hc.name)


def live_restore(hc: HostContext) -> tuple[bool | None, str | None]:
    """Docker's live-restore setting, or (None, why Docker did not say).

    Docker is asked only when a dockerd process runs: a connection to the
    socket of systemd's docker.socket would start it (on a host rebooted but
    not unlocked yet, onto the unencrypted root disk).
    """
    try:
        info = running_info(hc)
    except DockerUnavailable as exc:
        return None, exc.message
    except Exception as exc:  # the SDK's errors: the review goes on without it
        return None, f"Docker info failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    return bool(info.get("LiveRestoreEnabled")), None


def check_read(wanted: Mapping[str, str], packages: Mapping[str, PackageInfo], *, host: str) -> None:
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


def gather(hc: HostContext, config: UpdateConfig, *, refresh: bool = False, dist: bool = False) -> HostFacts:
    """Read everything `classify` needs from `hc`'s host (read-only, but for apt's lists)."""
    if refresh:
        fetch(hc, update_cmd(), "apt-get update")
    simulation = parse_simulation(hc.run(simulate_cmd(dist)).stdout)
    held = parse_showhold(hc.run(showhold_cmd()).stdout)
    packages: dict[str, PackageInfo] = {}
    if simulation.upgrades:
        wanted = {u.name: u.new for u in simulation.upgrades}
        packages = parse_package_info(fetch(hc, package_info_cmd(wanted), "downloading the new packages").stdout)
        check_read(wanted, packages, host=hc.name)
    shipped = sorted({u for p in packages.values() for u in p.units})
    asked = list(dict.fromkeys([*DOCKER_UNITS, *config.crucial_units, *shipped]))
    shown = hc.run(systemctl_show_cmd(asked), check=False)
    systemd = not (shown.exited != 0 and any(s in shown.stderr for s in NO_SYSTEMD))
    if systemd and shown.exited:
        raise _step_failed(hc, "systemctl show", shown.exited, shown.stderr)
    units = parse_units(shown.stdout) if systemd else {}  # no systemd (a container, a chroot): no unit states
    deps = docker_dependencies(units)
    missing = [u for u in deps if u not in units]
    if missing:
        units.update(parse_units(hc.run(systemctl_show_cmd(missing)).stdout))
    fragments = {u: units[u].fragment_path for u in deps if u in units and units[u].fragment_path}
    unit_owners: dict[str, tuple[str, ...]] = {}
    if fragments:
        found = parse_dpkg_search(hc.run(dpkg_search_cmd(fragments.values()), check=False).stdout)
        by_path = owners(fragments.values(), found)
        unit_owners = {u: by_path[p] for u, p in fragments.items()}
    restore, docker_error = live_restore(hc) if simulation.upgrades else (None, None)
    return HostFacts(simulation, held, packages, units, unit_owners, restore, docker_error, dist, systemd)


@dataclass(frozen=True)
class Reviewed:
    """One host's review and the record written on it."""

    review: HostReview
    record: ReviewRecord
    path: str | None = REVIEW_PATH  # None: not recorded (--dry)


def record_of(review: HostReview, *, now: float, by: str) -> ReviewRecord:
    return ReviewRecord(
        time=now, dist=review.dist, versions=review.versions,
        kinds={p.name: p.kind for p in review.packages},
        risky=(*(p.name for p in review.packages if p.risky), *review.docker_removals),
        effects=review.effects(),
        reasons={p.name: p.reasons for p in review.packages},
        held=review.held, by=by, removals=review.removals,
    )


def review_host(hc: HostContext, config: UpdateConfig, *, refresh: bool, dist: bool, by: str,
                now: float | None = None, record: bool = True) -> Reviewed:
    """Review `hc`'s upgrade and record it on the host for `update.apply` (unless not `record`)."""
    review = classify(gather(hc, config, refresh=refresh, dist=dist), config)
    kept = record_of(review, now=time.time() if now is None else now, by=by)
    if record:
        hc.run(write_file_cmd(REVIEW_PATH, kept.to_json()))
    return Reviewed(review, kept, REVIEW_PATH if record else None)
