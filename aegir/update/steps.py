"""The changes `update` makes, one `aegir.action.Action` each: refresh, review (its record), announce, apply.

Each plans from facts only (`aegir.update.facts`; decisions in
`aegir.update.plan`), and acts on what its plan says: the commands that change
a host are here and nowhere else in `update`.

- `Refresh`: ``apt-get update`` (``update.review --refresh``), before the review reads.
- `Review`: plan = the review (`read_review` + `classify`); act = write its
  record for ``update.apply``, then read it back.
- `Announce`: plan = the text per host; act = send it (`aegir.notify.send`), record it, read it back.
- `Apply`: plan = a fresh review apt can still install alone, announced if
  risky; act = the one gated install (`aegir.update.install`), then the checks
  (dpkg against the review, Docker, the projects, the containers, stale
  processes) and the record of the apply. No host is acted on while another's
  plan is refused.

`review` runs `Refresh` then `Review` (``update.review``), the way
`aegir.boot.steps.walk` runs the boot steps.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from aegir import action
from aegir.compose.status import gather_status
from aegir.docker import DockerUnavailable, client_for, dockerd_fact
from aegir.errors import AegirError, CommandError, RefusedError
from aegir.fleet import Outcome
from aegir.notify import Notifier, send
from aegir.sh import write_file_cmd
from aegir.update import report
from aegir.update.apt import fetch_failure, update_cmd
from aegir.update.classify import classify
from aegir.update.facts import (
    afterwards_fact,
    announce_record_fact,
    exact_fact,
    live_restore,
    read_review,
    review_record_fact,
    simulation_fact,
    stale_fact,
    step_failed,
)
from aegir.update.install import expected_actions, install_cmd, parse_install
from aegir.update.plan import (
    Announced,
    AnnouncePlan,
    ApplyPlan,
    ApplyResult,
    Checked,
    ReviewPlan,
    apply_result,
    kept,
    plan_announce,
    plan_apply,
    record_of,
    services_of,
)
from aegir.update.records import (
    ANNOUNCE_PATH,
    APPLY_PATH,
    REVIEW_PATH,
    AnnounceRecord,
    apply_record,
    check_review,
    log_path,
    retire_review_cmd,
)
from aegir.update.settings import UpdateConfig

if TYPE_CHECKING:  # pragma: no cover
    from invoke import Context

    from aegir.host import HostContext
    from aegir.inventory import Host

#: Seconds the apply waits for Docker to answer again after the install (when it answered before).
DOCKER_WAIT = 60.0

# --------------------------------------------------------------------------- review


class Refresh(action.Action[str, str]):
    """``apt-get update`` (bounded in time, any failed fetch an error): what ``update.review --refresh`` does first."""

    label = "update.review"

    def plan(self, hc: HostContext) -> str:
        return update_cmd().line

    def act(self, hc: HostContext, plan: str) -> str:
        try:
            hc.run(update_cmd())
        except CommandError as exc:
            raise AegirError("cannot fetch packages: " + fetch_failure("apt-get update", exc.exited, exc.stderr),
                             host=hc.name) from None
        return "refreshed"

    def render(self, ran: action.Ran[str, str]) -> action.Report:
        return report.refresh_report(ran)


class Review(action.Action[ReviewPlan, str]):
    """Review each host's upgrade (reads only); record it there for ``update.apply`` (the act)."""

    label = "update.review"

    def __init__(self, configs: Mapping[str, UpdateConfig], *, dist: bool, now: float, by: str,
                 every: bool = False) -> None:
        self.configs, self.dist, self.now, self.by, self.every = configs, dist, now, by, every

    def plan(self, hc: HostContext) -> ReviewPlan:
        review = classify(read_review(hc, self.configs[hc.name], dist=self.dist), self.configs[hc.name])
        return ReviewPlan(review, record_of(review, now=self.now, by=self.by))

    def act(self, hc: HostContext, plan: ReviewPlan) -> str:
        hc.run(write_file_cmd(REVIEW_PATH, plan.record.to_json()))
        back = hc.fact(review_record_fact())
        if back is None or back.checksum != plan.record.checksum:
            raise AegirError(f"{REVIEW_PATH} does not hold the review just written", host=hc.name)
        return REVIEW_PATH

    def render(self, ran: action.Ran[ReviewPlan, str]) -> action.Report:
        return report.review_report(ran, every=self.every)


def review(c: Context, hosts: Sequence[Host], step: Review, *, refresh: bool, dry: bool,
           fmt: str = "table") -> action.Ran[ReviewPlan, str]:
    """`Refresh` (with `refresh`) on `hosts`, then `step` on those it left standing: one outcome per host."""
    failed: dict[str, Outcome[action.HostRun[str, str]]] = {}
    if refresh:
        refreshed = action.run(c, Refresh(), hosts, dry=dry, fmt=fmt)
        failed = {o.host.name: o for o in refreshed.outcomes if not o.ok}
    ran = action.run(c, step, [h for h in hosts if h.name not in failed], dry=dry, fmt=fmt)
    by_host = {o.host.name: o for o in ran.outcomes}
    return action.Ran(tuple(by_host[h.name] if h.name in by_host else
                            Outcome(h, None, failed[h.name].error, failed[h.name].kind, failed[h.name].seconds)
                            for h in hosts), dry=ran.dry, acted=ran.acted)


# --------------------------------------------------------------------------- announce


class Announce(action.Action[AnnouncePlan, Announced]):
    """Tell users what the reviewed upgrade will interrupt, through each host's notifier; record it there."""

    label = "update.announce"

    def __init__(self, notifiers: Mapping[str, Notifier | None], *, message: str, when: str, now: float) -> None:
        self.notifiers, self.message, self.when, self.now = notifiers, message, when, now

    def plan(self, hc: HostContext) -> AnnouncePlan:
        record, running = hc.facts(review_record_fact(), dockerd_fact())
        if record is None:
            raise RefusedError("no review to announce: run `inv update.review` first", host=hc.name)
        restore, why = live_restore(hc, running) if record.risky else (None, None)
        try:  # only once live_restore found Docker running: asking its socket may start it
            services = services_of(hc.docker().containers.list(), hc.host.srv) if record.risky and not why else ()
        except DockerUnavailable:
            services = ()
        notifier = self.notifiers[hc.name]
        return plan_announce(hc.name, record, services, restore, message=self.message, when=self.when,
                             notifier=notifier.kind if notifier else "none")

    def act(self, hc: HostContext, plan: AnnouncePlan) -> Announced:
        notifier = self.notifiers[hc.name]
        if notifier is None:
            raise AegirError("no notifier: set update.notify.command (run on the host) or update.notify.url "
                             "(HTTP POST) in the inventory", host=hc.name)
        response = send(hc, notifier, plan.text, plan.document, when=self.when)
        told = AnnounceRecord(self.now, plan.record.digest, self.message, self.when, notifier.kind, plan.text)
        hc.run(write_file_cmd(ANNOUNCE_PATH, told.to_json()))
        if hc.fact(announce_record_fact()) != told:
            raise AegirError(f"users were told ({response}) but {ANNOUNCE_PATH} does not hold the announcement",
                             host=hc.name)
        return Announced(response)

    def render(self, ran: action.Ran[AnnouncePlan, Announced]) -> action.Report:
        return report.announce_report(ran)


# --------------------------------------------------------------------------- apply


class Apply(action.Action[ApplyPlan, ApplyResult]):
    """Install exactly the reviewed versions, then check dpkg, Docker, the projects and what needs a restart."""

    label = "update.apply"
    verb = "upgrade"
    refused = "nothing upgraded"

    def __init__(self, *, hold: Sequence[str] = (), force: bool = False, now: float | None = None) -> None:
        self.hold, self.force, self.now = tuple(hold), force, now
        self.blocked = False

    def plan(self, hc: HostContext) -> ApplyPlan:
        found, announcement = hc.facts(review_record_fact(), announce_record_fact())
        record = check_review(found, host=hc.name, now=self.now)
        upgrading, removing = kept(record, self.hold)
        exact = [exact_fact(upgrading, removing)] if upgrading or removing else []
        *simulated, current = hc.facts(*exact, simulation_fact(record.dist))
        return plan_apply(record, announcement, simulated[0] if simulated else None, current, hold=self.hold,
                          force=self.force, host=hc.name)

    def refuse(self, plans: Sequence[Outcome[ApplyPlan]]) -> None:
        """Act on no host when one was refused or did not answer (the plans say why; exit 1)."""
        self.blocked = any(not o.ok for o in plans)

    def todo(self, plan: ApplyPlan) -> bool:
        return not self.blocked

    def question(self, plans: Sequence[Outcome[ApplyPlan]]) -> str | None:
        return (f"Upgrade {sum(len(o.value.upgrading) for o in plans if o.value)} packages on "
                f"{', '.join(o.host.name for o in plans)}?")

    def act(self, hc: HostContext, plan: ApplyPlan) -> ApplyResult:
        now = time.time() if self.now is None else self.now
        before = running_containers(hc)
        log = log_path(now)
        cmd = install_cmd(log, plan.upgrading, plan.removing)
        try:
            run = parse_install(hc.run(cmd).stdout)
        except CommandError as exc:
            raise step_failed(f"apt-get install (log: {log})", exc.exited, exc.stderr).on(hc.name) from None
        if refused := run.refused(expected_actions(plan.upgrading, plan.removing)):
            raise RefusedError("apt would not install the reviewed versions alone, nothing was changed: "
                               + "; ".join(refused) + f"; run `inv update.review` again (log: {log})", host=hc.name)
        hc.run(retire_review_cmd())
        result = apply_result(plan, run, log, before, check_after(hc, plan, docker_answered=before[1] is None))
        hc.run(write_file_cmd(APPLY_PATH, apply_record(now, log, result.upgraded, result.removed, plan.hold,
                                                       result.problems, plan.record.checksum,
                                                       result.prediction.as_dict())))
        return result

    def failed(self, result: ApplyResult) -> str | None:
        return "; ".join(result.problems) or None

    def render(self, ran: action.Ran[ApplyPlan, ApplyResult]) -> action.Report:
        return report.apply_report(ran)


def running_containers(hc: HostContext) -> tuple[tuple[str, ...], str | None]:
    """Names of the running containers, from a fresh client (Docker may just have restarted), or why not."""
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


def check_after(hc: HostContext, plan: ApplyPlan, *, docker_answered: bool) -> Checked:
    """The checks after an install: Docker answers again (waiting up to `DOCKER_WAIT` if it did before), the
    core and apps projects, the processes that need a restart, what apt would still upgrade."""
    deadline = time.monotonic() + (DOCKER_WAIT if docker_answered else 0)
    while True:
        names, error = running_containers(hc)
        if error is None or time.monotonic() >= deadline:
            break
        time.sleep(1)
    projects, problems = project_status(hc) if error is None else ((), ())
    stale, afterwards = hc.facts(stale_fact(), afterwards_fact(plan.record.dist))
    return Checked(names, error, projects, problems, stale, afterwards.left, afterwards.error)


def project_status(hc: HostContext) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Core and apps status through the Compose status report (`aegir.compose.status`)."""
    try:
        status = gather_status(hc, kinds=("core", "apps"))
    except AegirError as exc:
        return (), (f"project status failed: {exc.message}",)
    rows = tuple(f"{x.path} {x.state}" for x in status.projects)
    problems = tuple(f"{x.path} is {x.state}" + (f" ({'; '.join(x.problems)})" if x.problems else "")
                     for x in status.projects if not x.ok)
    return rows, problems
