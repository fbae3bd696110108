"""What the compose tasks print: tables, the JSON envelope, warnings.

Every JSON document is `aegir.report.envelope` (``{"task", "dry", "hosts":
[{"host", "status", "error", ...}], "summary"}``); a host that failed or could
not be reached gets `aegir.report.failed_row` in a table; warnings are
`aegir.report.warning` lines (on stderr) and a host's ``"warnings"`` in the JSON.

The lifecycle (apps.* and core.* up/down/stop/restart/pull/update):
`lifecycle_report` (a run of `aegir.compose.steps.Lifecycle`), from
`lifecycle_outcomes` (each host's rows: the plan's, or what acting did),
`lifecycle_table` and `lifecycle_json`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from aegir.action import Ran, Report
from aegir.compose.plan import HostActions, HostPlan, planned_rows
from aegir.compose.status import missing_everywhere
from aegir.fleet import Outcome
from aegir.journal import StepRecord, StepState
from aegir.report import Result, envelope, failed_row, table, warning

# --------------------------------------------------------------------------- the lifecycle


def lifecycle_report(task: str, ran: Ran[HostPlan, HostActions]) -> Report:
    """A lifecycle run: the plan's commands (``--dry``, or before a question), else each step's result;
    problems when a step failed or was skipped, or a name is on no host."""
    outcomes = lifecycle_outcomes(ran)
    planned = not ran.acted and (ran.dry or any(o.value and o.value.rows for o in outcomes))
    return Report(lifecycle_json(task, outcomes, dry=ran.dry),
                  lifecycle_table(outcomes, planned=planned),
                  problems=lifecycle_failed(outcomes), warnings=tuple(lifecycle_warnings(outcomes)))


def lifecycle_outcomes(ran: Ran[HostPlan, HostActions]) -> list[Outcome[HostActions]]:
    """One outcome per host whose value is its rows: what acting did, else its plan (``would`` rows); None
    for a host that could not be planned, or failed or was left out before its act returned."""
    out: list[Outcome[HostActions]] = []
    for o in ran.outcomes:
        run, value = o.value, None
        if run is not None and run.result is not None:
            value = run.result
        elif run is not None and o.ok:
            p = run.plan
            value = HostActions(p.host, planned_rows(o.host, p.steps), p.missing, p.warnings)
        out.append(Outcome(o.host, value, o.error, o.kind, o.seconds, o.steps))
    return out


def lifecycle_table(outcomes: Sequence[Outcome[HostActions]], *, planned: bool) -> str:
    """One table for the fleet: a row per host x project (the exact command when `planned`)."""
    rows: list[list[Any]] = []
    for o in outcomes:
        v = o.value
        if v is None:
            if not planned:  # abandoned part-way: its journal says which projects were done, running, not started
                rows += [[o.host.name, s.what, s.name, _journal_result(s.state), s.error or None] for s in o.steps]
            rows.append(failed_row(o, 4) if planned else failed_row(o, 5, at=3, reason_at=4))
            continue
        for r in v.rows:
            rows.append([o.host.name, r.project, r.action, r.command] if planned
                        else [o.host.name, r.project, r.action, r.result, f"{r.state}: {r.detail}" if r.state else r.detail])
    if not rows:
        return "nothing to do"
    if planned:
        return table(["HOST", "PROJECT", "ACTION", "COMMAND (--dry: not run)"], rows)
    return table(["HOST", "PROJECT", "ACTION", "RESULT", "STATE / DETAIL"], rows)


def lifecycle_warnings(outcomes: Sequence[Outcome[HostActions]]) -> list[str]:
    """``warning: HOST: …`` for each host's discovery warnings, then the names no host has."""
    lines = [warning(o.host.name, w) for o in outcomes if o.value for w in o.value.warnings]
    nowhere = missing_everywhere(outcomes)
    return lines + ([warning(None, f"not found on any target host: {', '.join(nowhere)}")] if nowhere else [])


def lifecycle_json(task: str, outcomes: Sequence[Outcome[HostActions]], *, dry: bool) -> dict[str, Any]:
    """The envelope: each host's ``steps`` (its rows; the journal of a host left part-way), ``missing``
    (the names it lacks) and ``warnings``; the summary counts the steps by result."""
    def fields(o: Outcome[HostActions]) -> dict[str, Any]:
        v = o.value
        steps = [dataclasses.asdict(r) for r in v.rows] if v else [_journal_step(s) for s in o.steps]
        return {"steps": steps, "missing": list(v.missing) if v else [], "warnings": list(v.warnings) if v else []}

    results = [r.result for o in outcomes if o.value for r in o.value.rows]
    missing = list(missing_everywhere(outcomes))
    summary = {"steps": len(results), **{str(k): results.count(k) for k in Result if results.count(k)},
               "missing": missing}
    return envelope(task, outcomes, fields, dry=dry, summary=summary, missing=missing)


def lifecycle_failed(outcomes: Sequence[Outcome[HostActions]]) -> bool:
    """True when a step failed or was skipped, or a name was found on no host."""
    return any(o.value is not None and not o.value.ok for o in outcomes) or bool(missing_everywhere(outcomes))


def _journal_step(s: StepRecord) -> dict[str, Any]:
    return {"project": s.what, "action": s.name, "command": s.command, "result": _journal_result(s.state),
            "state": "", "detail": s.error}


def _journal_result(state: StepState) -> str:
    """A journaled step's state in a RESULT cell: done, failed, ``running`` (when the host was abandoned),
    ``not started``."""
    return {StepState.DONE: Result.DONE, StepState.FAILED: Result.FAILED}.get(state, str(state))
