"""The mysql changes, one `aegir.action.Action` each: `Checkpoint` (mysql.checkpoint), `Restore` (mysql.restore).

Both plan by asking the on-host program (`aegir.mysql.onhost`) with its text
on stdin, as facts (`aegir.mysql.facts.plan_fact`, `restore_plan_fact`):
nothing is installed, created or locked while a host is planned, so ``--dry``
and a declined question leave the host as it was. Acting installs the program
as ``<srv>/conf/aegir/mysql-checkpoint`` first.

The checkpoint itself runs on the host as one detached process; aegir starts
it and follows its log and result file (`follow`), so a dropped SSH session
stops the following, never the checkpoint: `mysql.status` reattaches
(`status_of`, which only reads).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, TextIO

from aegir import action, report
from aegir.compose.status import srv_checked
from aegir.errors import AegirError, UnreachableError
from aegir.fleet import Outcome
from aegir.mysql import facts, onhost
from aegir.mysql import report as myreport
from aegir.mysql.commands import Options, app_path, program_path, restore_cmd, start_cmd
from aegir.mysql.facts import RunState, parse_program
from aegir.mysql.plan import (
    Checkpointed,
    CheckpointPlan,
    CheckpointStatus,
    Restored,
    RestorePlan,
    checkpoint_question,
    entry_problem,
)
from aegir.notify import Notifier, send
from aegir.sh import Reply, write_file_cmd

if TYPE_CHECKING:  # pragma: no cover
    from aegir.host import HostContext

#: How often the log and the result file are read while a checkpoint runs.
POLL = 0.3
#: A run whose lock is free and that has no result this long after its start is dead.
START_GRACE = 15.0


def mounted(hc: HostContext) -> None:
    """Fail the host when its /srv is not mounted: an unmounted one is the root disk's folder, not its apps."""
    srv_checked(hc)


def install(hc: HostContext) -> str:
    """Write the on-host program (atomically); returns its path."""
    path = program_path(hc.host.srv)
    hc.run(write_file_cmd(path, facts.program_text()))
    return path


def say(line: str, out: TextIO | None = None) -> None:
    """One line of what a run does (announce, the program's log) on stderr (or `out`), host text escaped."""
    report.say(line, err=True, out=out)


# --------------------------------------------------------------------------- mysql.checkpoint


class Checkpoint(action.Action[CheckpointPlan, Checkpointed]):
    """mysql.checkpoint on one host: plan (the program's, on stdin) -> confirm -> install, announce, start
    detached, follow -> check the archive entry is complete."""

    label = "mysql.checkpoint"
    serial = True  # the question and the followed log own the terminal
    verb = "checkpoint"

    def __init__(self, path: str, opts: Options, notifier: Notifier | None,
                 env: Mapping[str, str] | None = None) -> None:
        self.path, self.opts, self.notifier, self.env = path, opts, notifier, dict(env or {})

    def plan(self, hc: HostContext) -> CheckpointPlan:
        srv = hc.host.srv
        full = app_path(srv, self.path)
        mounted(hc)
        run = onhost.now_id()
        return CheckpointPlan(full, run, hc.fact(facts.plan_fact(srv, full, self.opts, run)))

    def question(self, plans: Sequence[Outcome[CheckpointPlan]]) -> str | None:
        return " ".join(checkpoint_question(o.host.name, o.value) for o in plans if o.value is not None) or None

    def act(self, hc: HostContext, plan: CheckpointPlan) -> Checkpointed:
        install(hc)
        told = announce(hc, self.notifier, plan) if plan.mode == "cold" else "hot mode: no interruption, nobody told"
        say(f"{hc.name}: announce: {told}")
        state = str(plan.target.get("state"))
        offset = hc.fact(facts.log_size_fact(state))  # the lines of earlier runs are not shown again
        hc.run(start_cmd(hc.host.srv, plan.path, self.opts, plan.run, key=str(plan.target.get("key")),
                         env=sorted(self.env.items())))
        st = follow(hc, state, plan.run, app=plan.path, offset=offset)
        complete = hc.fact(facts.exists_fact(f"{plan.entry}/{onhost.MANIFEST}", "-f"))
        return Checkpointed(told, st.result, entry_problem(st.result, plan.entry, complete))

    def failed(self, result: Checkpointed) -> str | None:
        return result.why_failed

    def render(self, ran: action.Ran[CheckpointPlan, Checkpointed]) -> action.Report:
        return myreport.checkpoint_report(ran)


def announce(hc: HostContext, notifier: Notifier | None, plan: CheckpointPlan, expected: str = "a few seconds") -> str:
    """Tell users of the coming interruption through the notifier (`aegir.notify`); its answer."""
    if notifier is None:
        return "no notifier configured (update.notify): users were not told"
    deps = plan.dependents
    text = (f"{hc.name}: checkpoint of the database of {plan.path}: {plan.service} stops for {expected}"
            + (f"; {', '.join(deps)} restart afterwards" if deps else "") + "\n")
    document = {"host": hc.name, "message": "mysql checkpoint", "when": "now", "text": text,
                "interruptions": [{"service": s, "expected": expected} for s in (plan.service, *deps)]}
    return send(hc, notifier, text, document, when="now")


def follow(hc: HostContext, state_dir: str, run: str | None, *, app: str = "PATH", out: TextIO | None = None,
           first: RunState | None = None, clock: Callable[[], float] = time.monotonic, offset: int = 0) -> RunState:
    """Print the run's log as it grows (on `out`, stderr by default) until its result is there.

    `offset`: where in the log the run's lines begin (the log's size before it started: earlier runs'
    lines are not shown again). `run` None follows the run `first` (the state read by the caller) names:
    reattach, from at most the last 64 KiB of its log. A dropped SSH connection ends the following with a
    message saying the checkpoint goes on and how to reattach (to `app`); the checkpoint itself is not touched.
    Reads only (`aegir.mysql.facts.run_state_fact`).
    """
    started = clock()
    if run is None:
        if first is None or first.run is None:
            return first or RunState(None, None, "")
        run = first.run
        offset = max(0, len(first.log.encode()) - 64 * 1024)
    while True:
        try:
            st = hc.fact(facts.run_state_fact(state_dir, offset))
        except UnreachableError as exc:
            raise UnreachableError(f"{exc.message}; the checkpoint goes on on the host: reattach with "
                                   f"`inv -H {hc.name} mysql.status {app}`", host=hc.name) from None
        if st.log:
            offset += len(st.log.encode())
            for line in st.log.splitlines():
                say(f"{hc.name}: {line}", out)
        if st.finished(run):
            return st
        began = (st.state or {}).get("run") == run  # it ran, and nothing holds its lock: it died
        if not st.lock_held and (began or clock() - started > START_GRACE):
            raise AegirError(f"checkpoint run {run} is not running and left no result; run mysql.checkpoint "
                             "again: it recovers first", host=hc.name)
        time.sleep(POLL)


# --------------------------------------------------------------------------- mysql.status (reads only)


def status_of(hc: HostContext, path: str) -> CheckpointStatus:
    """An app's checkpoint: follow the run in progress to its end (reattach), then its result.

    One round trip reads whether /srv is mounted, the app's folder and the run's state; nothing is
    written (no lock file: a missing one is free). An app with neither a folder nor a run fails.
    """
    srv = hc.host.srv
    full = app_path(srv, path)
    try:
        t = onhost.target(full, srv=srv)
    except onhost.CheckpointError as exc:
        raise AegirError(str(exc), host=hc.name) from None
    exists, first = srv_checked(hc, facts.exists_fact(full), facts.run_state_fact(t.state))
    if first.run is None:
        if not exists:
            raise AegirError(f"no app {full}, and no checkpoint of it", host=hc.name)
        return CheckpointStatus(full, None, None)
    st = follow(hc, t.state, None, app=full, first=first)
    return CheckpointStatus(full, st.run, st.result, st.lock_held and not st.finished(None))


# --------------------------------------------------------------------------- mysql.restore


class Restore(action.Action[RestorePlan, Restored]):
    """mysql.restore on one host: plan (the checkpoint, the chain of logs, the empty scratch folder: read by
    the program on stdin) -> install, restore -> check the restored datadir is there."""

    label = "mysql.restore"
    verb = "restore"

    def __init__(self, path: str, at: str, into: str, until: str | None, service: str | None) -> None:
        self.path, self.at, self.into, self.until, self.service = path, at, into, until, service

    def plan(self, hc: HostContext) -> RestorePlan:
        srv = hc.host.srv
        full = app_path(srv, self.path)
        mounted(hc)
        return RestorePlan(full, self.until, hc.fact(facts.restore_plan_fact(srv, full, self.at, self.into,
                                                                             self.service)))

    def act(self, hc: HostContext, plan: RestorePlan) -> Restored:
        install(hc)
        done = hc.run(restore_cmd(hc.host.srv, plan.path, str(plan.program.get("at")), self.into, self.until,
                                  self.service), check=False)
        result = parse_program(Reply(done.stdout, done.stderr, done.exited), "restore")
        there = hc.fact(facts.exists_fact(f"{self.into}/db"))
        return Restored(result, None if there else f"the restore says done but {self.into}/db is not there")

    def failed(self, result: Restored) -> str | None:
        return result.problem

    def render(self, ran: action.Ran[RestorePlan, Restored]) -> action.Report:
        return myreport.restore_report(ran)
