"""What `update` decides from what it read (pure): the review's record, the apply's plan, the announcement.

- review: `classify` (in `aegir.update.classify`) turns the facts into a
  `HostReview`; `record_of` is what is written on the host for the apply.
- apply: `plan_apply` refuses (`RefusedError`) a review that apt can no longer
  install alone (`exact_changes`) and a risky upgrade nobody announced (unless
  ``--force``), and notes what changed in the package lists since the review;
  `apply_result` reads what the install and the checks after it found.
- announce: what each service should expect (`interruptions`), the text users
  read (`compose_text`) and the document an HTTP notifier receives (`payload`).

Plans and results are frozen dataclasses: `aegir.update.steps` acts on them,
`aegir.update.report` shows them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from aegir.compose.state import LABEL_PROJECT, LABEL_WORKING_DIR
from aegir.errors import RefusedError
from aegir.update.apt import Simulation, StaleProcess
from aegir.update.classify import DOCKER_RESTART, HostReview
from aegir.update.install import InstallRun, differences, installed
from aegir.update.mapped import Comparison, compare
from aegir.update.records import (
    AnnounceRecord,
    ReviewRecord,
    Versions,
    check_announced,
    differing,
    removal_changes,
    version_changes,
)

# --------------------------------------------------------------------------- review


@dataclass(frozen=True)
class ReviewPlan:
    """One host's review, and the record `update.review` writes there for `update.apply`."""

    review: HostReview
    record: ReviewRecord


def record_of(review: HostReview, *, now: float, by: str) -> ReviewRecord:
    """The record of `review`, made at `now` by `by` (``user@machine``)."""
    return ReviewRecord(
        time=now, dist=review.dist, versions=review.versions,
        kinds={p.name: p.kind for p in review.packages},
        risky=(*(p.name for p in review.packages if p.risky), *review.docker_removals),
        effects=review.effects(),
        reasons={p.name: p.reasons for p in review.packages},
        held=review.held, by=by, removals=review.removals,
        stale=tuple(sorted((m.pid, m.file, m.who, m.package) for m in review.stale)), stale_before=review.stale_before,
    )


# --------------------------------------------------------------------------- apply


@dataclass(frozen=True)
class ApplyPlan:
    """What `update.apply` will do on one host, once nothing was refused."""

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


def kept(record: ReviewRecord, hold: Sequence[str]) -> tuple[dict[str, tuple[str | None, str]], tuple[str, ...]]:
    """The review's upgrades and removals less the ``--hold`` names: what the apply installs and removes."""
    return ({k: v for k, v in record.versions.items() if k not in hold},
            tuple(p for p in record.removals if p not in hold))


def exact_changes(upgrading: Versions, removing: Sequence[str], simulated: Versions,
                  simulated_removals: Sequence[str], hold: Sequence[str] = ()) -> list[str]:
    """Why apt cannot install the reviewed versions alone: what its simulation does differently."""
    out = []
    for name, want, got in differing(upgrading, simulated):
        if want is None:
            assert got is not None
            held = " (kept by --hold)" if name in hold else ""
            out.append(f"it would also install {name} {got[1]}{held}")
        elif got is None:
            out.append(f"it would not install {name} {want[1]} (no longer available, or already installed)")
        else:
            out.append(f"{name}: reviewed {want[0] or 'new'} -> {want[1]}, it would do {got[0] or 'new'} -> {got[1]}")
    out += [f"it would also remove {n}" for n in sorted(set(simulated_removals) - set(removing))]
    out += [f"it would not remove {n}" for n in sorted(set(removing) - set(simulated_removals))]
    return out


def plan_apply(record: ReviewRecord, announcement: AnnounceRecord | None, exact: Simulation | None,
               current: Simulation, *, hold: Sequence[str] = (), force: bool = False, host: str) -> ApplyPlan:
    """The apply of a checked review (`records.check_review`), or `RefusedError` saying why not.

    `exact`: apt's simulation of installing exactly the kept versions (None
    when nothing is kept); `current`: the upgrade apt would do now.
    """
    upgrading, removing = kept(record, hold)
    if exact is not None:
        if changes := exact_changes(upgrading, removing, exact.versions, exact.removals, hold):
            raise RefusedError("apt cannot install the reviewed versions alone: " + "; ".join(changes)
                               + "; run `inv update.review` again", host=host)
    since = version_changes(record.versions, current.versions) + removal_changes(record.removals, current.removals)
    note = check_announced(record, announcement, set(upgrading) | set(removing), force=force, host=host)
    return ApplyPlan(record, upgrading, tuple(p for p in hold if p in record.versions or p in record.removals), note,
                     removing, tuple(since))


@dataclass(frozen=True)
class ApplyResult:
    """What `update.apply` did on one host and what the checks after it found."""

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
    removed: tuple[str, ...] = ()
    prediction: Comparison = field(default_factory=Comparison)  # the review's stale processes against `stale`

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


def install_problems(run: InstallRun, p: ApplyPlan) -> tuple[str, ...]:
    """Where apt failed and where dpkg's state differs from the review after the install."""
    apt_error: tuple[str, ...] = ()
    if run.exit != 0:
        why = next((ln for ln in reversed(run.tail) if ln.startswith("E: ")), run.tail[-1] if run.tail else "")
        apt_error = (f"apt-get install failed (exit {run.exit}): {why}",)
    return apt_error + differences(run, p.upgrading, p.removing)


@dataclass(frozen=True)
class Checked:
    """What `update.apply` reads after the install: Docker and its containers, the projects, stale processes,
    what apt would still upgrade (or why it cannot say)."""

    containers: tuple[str, ...]
    docker_error: str | None
    projects: tuple[str, ...] = ()
    project_problems: tuple[str, ...] = ()
    stale: tuple[StaleProcess, ...] = ()
    left: tuple[str, ...] = ()
    left_error: str | None = None


def apply_result(p: ApplyPlan, run: InstallRun, log: str, before: tuple[tuple[str, ...], str | None],
                 after: Checked) -> ApplyResult:
    """The result of an apply: the plan, the install's run, the containers before, the checks after."""
    names, before_error = before
    notes = tuple(n for n in (*p.notes, f"Docker was not answering before the upgrade: {before_error}"
                              if before_error else None, after.left_error) if n)
    upgraded = {k: v for k, v in p.upgrading.items() if run.after.get(k, ("", ""))[0] == v[1]}
    removed = tuple(r for r in p.removing if not installed(run.after.get(r, ("", "un"))[1]))
    prediction = compare([(pid, f, who) for pid, f, who, pkg in p.record.stale if pkg in upgraded],
                         p.record.stale_before,
                         {s.pid: (s.unit or f"pid {s.pid} ({s.command})", s.files) for s in after.stale})
    return ApplyResult(upgraded, log, after.docker_error is None, after.docker_error, after.projects,
                       after.project_problems, names, after.containers, after.stale, after.left,
                       (*notes, *prediction.notes()), install_problems(run, p), removed, prediction)


# --------------------------------------------------------------------------- announce


@dataclass(frozen=True)
class Interruption:
    """One service and what the upgrade does to it."""

    service: str
    expected: str


def services_of(containers: Sequence[Any], srv: str) -> tuple[str, ...]:
    """Running services from Docker container objects: ``apps/web`` per Compose project, else the name."""
    out = []
    for c in containers:
        labels = getattr(c, "labels", None) or {}
        workdir = labels.get(LABEL_WORKING_DIR, "")
        if labels.get(LABEL_PROJECT):
            prefix = srv.rstrip("/") + "/"
            out.append(workdir[len(prefix):] if workdir.startswith(prefix) else labels[LABEL_PROJECT])
        else:
            out.append(getattr(c, "name", "?"))
    return tuple(sorted(set(out)))


def interruptions(record: ReviewRecord, services: Sequence[str], live_restore: bool | None) -> tuple[Interruption, ...]:
    """What each service should expect from the reviewed upgrade."""
    out: list[Interruption] = []
    via = next((e for e in record.effects if e.startswith(DOCKER_RESTART)), "")  # not "leaves Docker on old code"
    docker = via[len(DOCKER_RESTART):].split(", ") if via else []
    if docker:
        if live_restore:
            expected = "keeps running (live-restore); Docker's API pauses for a few seconds"
        else:
            expected = f"stops and restarts with Docker ({', '.join(docker)}): about a minute"
        out += [Interruption(s, expected) for s in services] or [Interruption("docker", expected)]
    for effect in record.effects:
        if effect.startswith("would restart ") and not effect.startswith("would restart docker"):
            unit, _, via = effect[len("would restart "):].partition(" via ")
            out.append(Interruption(unit, f"restarts ({via}): a few seconds"))
    return tuple(out)


def compose_text(host: str, message: str, when: str, record: ReviewRecord,
                 cuts: Sequence[Interruption]) -> str:
    """The announcement for one host, as users read it."""
    lines = [message.strip()]
    if when:
        lines.append(f"When: {when}")
    n = len(record.versions)
    lines.append(f"{host}: {n} package{'s' if n != 1 else ''} upgraded"
                 + (f"; {'; '.join(record.effects)}" if record.effects else "; no service interruption expected"))
    lines += [f"  - {c.service}: {c.expected}" for c in cuts]
    return "\n".join(lines) + "\n"


def payload(host: str, message: str, when: str, text: str, record: ReviewRecord,
            cuts: Sequence[Interruption]) -> dict[str, Any]:
    """The JSON document an HTTP notifier receives."""
    return {"host": host, "message": message, "when": when, "text": text, "effects": list(record.effects),
            "packages": {k: list(v) for k, v in record.versions.items()},
            "interruptions": [asdict(c) for c in cuts]}


@dataclass(frozen=True)
class AnnouncePlan:
    """One host's announcement: the review it announces, its text, the notifier's kind and document."""

    record: ReviewRecord
    text: str
    notifier: str  # "command" | "http" | "none"
    interruptions: tuple[Interruption, ...] = ()
    document: Mapping[str, Any] = field(default_factory=dict)


def plan_announce(host: str, record: ReviewRecord, services: Sequence[str], live_restore: bool | None, *,
                  message: str, when: str, notifier: str) -> AnnouncePlan:
    """The announcement of `record` on `host` to the users of `services`."""
    cuts = interruptions(record, services, live_restore)
    text = compose_text(host, message, when, record, cuts)
    return AnnouncePlan(record, text, notifier, cuts, payload(host, message, when, text, record, cuts))


@dataclass(frozen=True)
class Announced:
    """What the notifier answered (``exit 0: delivered``, ``HTTP 204``) once the announcement was sent."""

    response: str
    sent: bool = True
