"""`update.apply` on one host: check the review, install exactly what it reviewed, check again.

`plan` refuses (`RefusedError`) without a fresh review, when apt can no
longer install the reviewed versions alone (`aegir.update.install`), and a
risky upgrade without an announcement (unless forced); it notes what changed
in the package lists since the review (a newer version is left for the next
review). `apply` runs the one gated script of `aegir.update.install`
(``apt-get install name=version ... name-``, nothing else: ``--hold``
only leaves names out of it), logs the transcript on the host, compares
dpkg's state with the review (any difference is a problem: exit 1), then
checks: Docker answers, the Compose projects are up (`aegir.compose.status`),
the containers that ran before run again, and which processes still map
deleted files (they need a restart).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from aegir.compose.status import gather_status
from aegir.docker import DockerUnavailable, client_for
from aegir.errors import AegirError, CommandError, RefusedError
from aegir.host import HostContext
from aegir.sh import write_file_cmd
from aegir.update.apt import (
    StaleProcess,
    fetch_failure,
    needrestart_cmd,
    parse_needrestart,
    parse_simulation,
    simulate_cmd,
)
from aegir.update.install import (
    differences,
    exact_simulate_cmd,
    expected_actions,
    install_cmd,
    installed,
    parse_install,
)
from aegir.update.records import (
    ANNOUNCE_PATH,
    APPLY_PATH,
    LOG_DIR,
    REVIEW_PATH,
    AnnounceRecord,
    ReviewRecord,
    Versions,
    check_announced,
    check_review,
    differing,
    read_cmd,
    removal_changes,
    retire_review_cmd,
    version_changes,
)
from aegir.update.review import step

DOCKER_WAIT = 60.0


def log_path(now: float) -> str:
    return f"{LOG_DIR}/update-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(now))}.log"


@dataclass(frozen=True)
class ApplyPlan:
    """What `apply` will do on one host, once `plan` found nothing to refuse."""

    record: ReviewRecord
    upgrading: dict[str, tuple[str | None, str]]
    hold: tuple[str, ...]  # --hold names this host would otherwise upgrade
    note: str | None = None  # e.g. "not announced: going on because of --force"
    removing: tuple[str, ...] = ()
    since: tuple[str, ...] = ()  # what apt would do differently now than at the review: not applied

    @property
    def risky(self) -> tuple[str, ...]:
        return tuple(p for p in self.record.risky if p in self.upgrading or p in self.removing)

    @property
    def notes(self) -> tuple[str, ...]:
        since = ("changed since the review, left for the next one: " + "; ".join(self.since),) if self.since else ()
        return (*((self.note,) if self.note else ()), *since)


def exact_changes(upgrading: Versions, removing: Sequence[str], simulated: Versions,
                  simulated_removals: Sequence[str], hold: Sequence[str] = ()) -> list[str]:
    """Why apt cannot install the reviewed versions alone: what its simulation does differently."""
    out = []
    for name, want, got in differing(upgrading, simulated):
        if want is None:
            held = " (kept by --hold)" if name in hold else ""
            out.append(f"it would also install {name} {got[1]}{held}")  # type: ignore[index]
        elif got is None:
            out.append(f"it would not install {name} {want[1]} (no longer available, or already installed)")
        else:
            out.append(f"{name}: reviewed {want[0] or 'new'} -> {want[1]}, it would do {got[0] or 'new'} -> {got[1]}")
    out += [f"it would also remove {n}" for n in sorted(set(simulated_removals) - set(removing))]
    out += [f"it would not remove {n}" for n in sorted(set(removing) - set(simulated_removals))]
    return out


def plan(hc: HostContext, *, hold: Sequence[str] = (), force: bool = False, now: float | None = None) -> ApplyPlan:
    """Check the review (valid, fresh, still installable alone) and the announcement; `RefusedError` if not."""
    record = check_review(ReviewRecord.from_json(hc.run(read_cmd(REVIEW_PATH)).stdout, hc.name),
                          host=hc.name, now=now)
    upgrading = {k: v for k, v in record.versions.items() if k not in hold}
    removing = tuple(p for p in record.removals if p not in hold)
    if upgrading or removing:
        try:
            exact = parse_simulation(hc.run(exact_simulate_cmd(upgrading, removing)).stdout)
        except CommandError as exc:
            why = next((ln for ln in reversed(exc.stderr.splitlines()) if ln.startswith("E: ")), exc.stderr.strip())
            raise RefusedError(f"apt cannot install the reviewed versions ({why[:300]}): "
                               "run `inv update.review` again", host=hc.name) from None
        if changes := exact_changes(upgrading, removing, exact.versions, exact.removals, hold):
            raise RefusedError("apt cannot install the reviewed versions alone: " + "; ".join(changes)
                               + "; run `inv update.review` again", host=hc.name)
    current = parse_simulation(hc.run(simulate_cmd(record.dist)).stdout)
    since = version_changes(record.versions, current.versions) + removal_changes(record.removals, current.removals)
    announcement = AnnounceRecord.from_json(hc.run(read_cmd(ANNOUNCE_PATH)).stdout)
    note = check_announced(record, announcement, set(upgrading) | set(removing), force=force, host=hc.name)
    return ApplyPlan(record, upgrading, tuple(p for p in hold if p in record.versions or p in record.removals), note,
                     removing, tuple(since))


@dataclass(frozen=True)
class ApplyResult:
    """What `apply` did on one host and what the checks found."""

    upgraded: dict[str, tuple[str | None, str]]
    log: str
    docker_ok: bool
    docker_error: str | None = None
    projects: tuple[str, ...] = ()  # "apps/web up"
    project_problems: tuple[str, ...] = ()
    containers_before: tuple[str, ...] = ()
    containers_after: tuple[str, ...] = ()
    stale: tuple[StaleProcess, ...] = ()
    left: tuple[str, ...] = ()  # still upgradable (held, kept back)
    notes: tuple[str, ...] = field(default=())
    differences: tuple[str, ...] = ()  # where apt failed, or dpkg's state differs from the review


    @property
    def containers_lost(self) -> tuple[str, ...]:
        return tuple(c for c in self.containers_before if c not in self.containers_after)

    @property
    def problems(self) -> tuple[str, ...]:
        out = list(self.differences)
        if not self.docker_ok:
            out.append(f"Docker is not answering: {self.docker_error}")
        out += self.project_problems
        if self.containers_lost:
            out.append("not running any more: " + ", ".join(self.containers_lost))
        return tuple(out)


def _running(hc: HostContext) -> tuple[tuple[str, ...], str | None]:
    """Names of the running containers, from a fresh client (Docker may just have restarted)."""
    try:
        client = client_for(hc)
    except DockerUnavailable as exc:
        return (), exc.message
    try:
        return tuple(sorted(c.name for c in client.containers.list())), None
    except Exception as exc:  # an SDK error: report it as Docker not answering
        return (), str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    finally:
        client.close()


def _wait_docker(hc: HostContext, before_ok: bool) -> tuple[tuple[str, ...], str | None]:
    deadline = time.monotonic() + (DOCKER_WAIT if before_ok else 0)
    while True:
        names, error = _running(hc)
        if error is None or time.monotonic() >= deadline:
            return names, error
        time.sleep(1)


def apply(hc: HostContext, p: ApplyPlan, *, now: float | None = None) -> ApplyResult:
    """Install exactly the planned versions on `hc`, compare dpkg with the review, then run the checks."""
    now = time.time() if now is None else now
    before, before_error = _running(hc)
    log = log_path(now)
    run = parse_install(step(hc, install_cmd(log, p.upgrading, p.removing), f"apt-get install (log: {log})").stdout)
    if refused := run.refused(expected_actions(p.upgrading, p.removing)):
        raise RefusedError("apt would not install the reviewed versions alone, nothing was changed: "
                           + "; ".join(refused) + f"; run `inv update.review` again (log: {log})", host=hc.name)
    found = differences(run, p.upgrading, p.removing)
    apt_error = None
    if run.exit != 0:
        why = next((ln for ln in reversed(run.tail) if ln.startswith("E: ")), run.tail[-1] if run.tail else "")
        apt_error = f"apt-get install failed (exit {run.exit}): {why}"
    hc.run(retire_review_cmd())
    after, error = _wait_docker(hc, before_error is None)
    projects, problems = _project_status(hc) if error is None else ((), ())
    stale = parse_needrestart(step(hc, needrestart_cmd(), "looking for processes to restart").stdout)
    after_sim = hc.run(simulate_cmd(p.record.dist), check=False)  # after a failed install apt may refuse to plan
    left = tuple(parse_simulation(after_sim.stdout).versions) if after_sim.exited == 0 else ()
    still = None if after_sim.exited == 0 else ("after the install: "
                                               + fetch_failure("apt-get -s", after_sim.exited, after_sim.stderr))
    notes = tuple(n for n in (*p.notes, f"Docker was not answering before the upgrade: {before_error}"
                              if before_error else None, still) if n)
    upgraded = {k: v for k, v in p.upgrading.items() if run.after.get(k, ("", ""))[0] == v[1]}
    result = ApplyResult(upgraded, log, error is None, error, projects, problems, before, after, stale, left, notes,
                         differences=((apt_error,) if apt_error else ()) + found)
    record = {"time": now, "log": log, "upgraded": {k: list(v) for k, v in upgraded.items()},
              "removed": [r for r in p.removing if not installed(run.after.get(r, ("", "un"))[1])],
              "held": list(p.hold), "problems": list(result.problems), "review": p.record.checksum}
    hc.run(write_file_cmd(APPLY_PATH, json.dumps(record, indent=2, sort_keys=True) + "\n"))
    return result


def _project_status(hc: HostContext) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Core and apps status through the Compose status report (`aegir.compose.status`)."""
    try:
        status = gather_status(hc, kinds=("core", "apps"))
    except AegirError as exc:
        return (), (f"project status failed: {exc.message}",)
    rows = tuple(f"{x.path} {x.state}" for x in status.projects)
    problems = tuple(f"{x.path} is {x.state}" + (f" ({'; '.join(x.problems)})" if x.problems else "")
                     for x in status.projects if not x.ok)
    return rows, problems
