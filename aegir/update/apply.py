"""`update.apply` on one host: check the review, upgrade non-interactively, check again.

`plan` refuses (`RefusedError`) without a fresh review of the same package
set, and a risky upgrade without an announcement (unless forced). `apply`
holds what ``--hold`` names for the duration of the run, runs
``apt-get upgrade`` (or ``dist-upgrade``, as reviewed) with no prompt and
existing conffiles kept, logs the transcript on the host, then checks:
Docker answers, the Compose projects are up (`aegir.compose.status`), the
containers that ran before run again, and which processes still map
deleted files (they need a restart).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from aegir.compose.status import gather_status
from aegir.docker import DockerUnavailable, client_for
from aegir.errors import AegirError, RefusedError
from aegir.host import HostContext
from aegir.sh import Cmd, shell, write_file_cmd
from aegir.update.apt import (
    APT_ENV,
    StaleProcess,
    check_package,
    needrestart_cmd,
    parse_needrestart,
    parse_showhold,
    parse_simulation,
    showhold_cmd,
    simulate_cmd,
)
from aegir.update.records import (
    ANNOUNCE_PATH,
    APPLY_PATH,
    LOG_DIR,
    REVIEW_PATH,
    AnnounceRecord,
    ReviewRecord,
    check_announced,
    check_review,
    read_cmd,
    retire_review_cmd,
)
from aegir.update.review import step

#: No prompt from apt, dpkg, debconf, needrestart or apt-listchanges.
UPGRADE_ENV = {**APT_ENV, "NEEDRESTART_MODE": "l", "APT_LISTCHANGES_FRONTEND": "none"}
DOCKER_WAIT = 60.0

_LOG_SCRIPT = """\
log=$1; shift
mkdir -p -- "${log%/*}" || exit 1
echo "# aegir update.apply $(date -u +%Y-%m-%dT%H:%M:%SZ): $*" > "$log" || exit 1
"$@" >> "$log" 2>&1 </dev/null
rc=$?
echo "# exit $rc" >> "$log"
[ "$rc" -eq 0 ] || tail -n 15 "$log" >&2
exit "$rc"
"""


def upgrade_cmd(log: str, dist: bool) -> Cmd:
    """``apt-get -y upgrade`` keeping existing conffiles, its transcript in `log` on the host."""
    argv = ("apt-get", "-y", "-q", "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold",
            "dist-upgrade" if dist else "upgrade")
    return Cmd(shell(_LOG_SCRIPT, log, *argv).argv, env=UPGRADE_ENV, timeout=3600)


def hold_cmd(packages: Sequence[str], hold: bool = True) -> Cmd:
    return Cmd(("apt-mark", "hold" if hold else "unhold", *(check_package(p) for p in packages)), env=APT_ENV)


def log_path(now: float) -> str:
    return f"{LOG_DIR}/update-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(now))}.log"


@dataclass(frozen=True)
class ApplyPlan:
    """What `apply` will do on one host, once `plan` found nothing to refuse."""

    record: ReviewRecord
    upgrading: dict[str, tuple[str | None, str]]
    hold: tuple[str, ...]  # --hold names this host would otherwise upgrade
    note: str | None = None  # e.g. "not announced: going on because of --force"

    @property
    def risky(self) -> tuple[str, ...]:
        return tuple(p for p in self.record.risky
                     if p in self.upgrading or (p in self.record.removals and p not in self.hold))


def plan(hc: HostContext, *, hold: Sequence[str] = (), force: bool = False, now: float | None = None) -> ApplyPlan:
    """Check the review (fresh, same package set) and the announcement; `RefusedError` if not."""
    record = ReviewRecord.from_json(hc.run(read_cmd(REVIEW_PATH)).stdout, hc.name)
    current = parse_simulation(hc.run(simulate_cmd(record.dist if record else False)).stdout)
    record = check_review(record, current.versions, host=hc.name, removals=current.removals, now=now)
    upgrading = {k: v for k, v in record.versions.items() if k not in hold}
    announcement = AnnounceRecord.from_json(hc.run(read_cmd(ANNOUNCE_PATH)).stdout)
    removing = {p for p in record.removals if p not in hold}
    note = check_announced(record, announcement, set(upgrading) | removing, force=force, host=hc.name)
    return ApplyPlan(record, upgrading, tuple(p for p in hold if p in record.versions or p in record.removals), note)


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

    @property
    def containers_lost(self) -> tuple[str, ...]:
        return tuple(c for c in self.containers_before if c not in self.containers_after)

    @property
    def problems(self) -> tuple[str, ...]:
        out = []
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
    """Upgrade the planned packages on `hc`, then run the checks; the transcript stays on the host."""
    now = time.time() if now is None else now
    before, before_error = _running(hc)
    already = set(parse_showhold(hc.run(showhold_cmd()).stdout))
    newly_held = [x for x in p.hold if x not in already]
    log = log_path(now)
    if newly_held:
        hc.run(hold_cmd(newly_held))
    try:
        simulation = parse_simulation(hc.run(simulate_cmd(p.record.dist)).stdout)
        current = simulation.versions
        unreviewed = [f"{k} {v[1]}" for k, v in current.items() if p.record.versions.get(k) != v]
        unreviewed += [f"removal of {r}" for r in simulation.removals if r not in p.record.removals]
        if unreviewed:
            raise RefusedError("with the holds, apt would also upgrade what was not reviewed: "
                               + ", ".join(unreviewed) + "; run `inv update.review` again", host=hc.name)
        step(hc, upgrade_cmd(log, p.record.dist), f"apt-get {'dist-upgrade' if p.record.dist else 'upgrade'} (log: {log})")
    finally:
        if newly_held:
            hc.run(hold_cmd(newly_held, hold=False), check=False)
    hc.run(retire_review_cmd())
    after, error = _wait_docker(hc, before_error is None)
    projects, problems = _project_status(hc) if error is None else ((), ())
    stale = parse_needrestart(step(hc, needrestart_cmd(), "looking for processes to restart").stdout)
    left = tuple(parse_simulation(hc.run(simulate_cmd(p.record.dist)).stdout).versions)
    notes = tuple(n for n in (p.note, f"Docker was not answering before the upgrade: {before_error}"
                              if before_error else None) if n)
    result = ApplyResult(current, log, error is None, error, projects, problems, before, after, stale, left, notes)
    record = {"time": now, "log": log, "upgraded": {k: list(v) for k, v in current.items()},
              "held": list(p.hold), "problems": list(result.problems), "review": p.record.digest}
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
