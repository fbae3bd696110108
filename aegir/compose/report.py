"""What the compose tasks print: tables, the JSON envelope, warnings.

Every JSON document is `aegir.report.envelope` (``{"task", "dry", "hosts":
[{"host", "status", "error", ...}], "summary"}``); a host that failed or could
not be reached gets `aegir.report.failed_row` in a table; warnings are
`aegir.report.warning` lines (on stderr) and a host's ``"warnings"`` in the JSON.

The lifecycle (apps.* and core.* up/down/stop/restart/pull/update):
`lifecycle_report` (a run of `aegir.compose.steps.Lifecycle`), from
`lifecycle_outcomes` (each host's rows: the plan's, or what acting did),
`lifecycle_table` and `lifecycle_json`.

The read and passthrough tasks, each function named after its task:
apps.lint (``lint_*``), apps.templates (``templates_*``), apps.new
(``new_*``), apps.compose (``passthrough_*``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from aegir.action import Ran, Report
from aegir.compose.plan import HostActions, HostPlan, planned_rows
from aegir.compose.status import missing_everywhere, warning_lines
from aegir.compose.templates import templates_dir
from aegir.fleet import Outcome
from aegir.journal import StepRecord, StepState
from aegir.report import Result, envelope, failed_row, say, table, warning

if TYPE_CHECKING:  # pragma: no cover
    from aegir.compose.lint import HostLint
    from aegir.compose.passthrough import PassPlan, PassResult
    from aegir.compose.templates import NewPlan, NewProject, ServiceTemplate

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


# --------------------------------------------------------------------------- apps.lint


def lint_text(outcomes: Sequence[Outcome[HostLint]]) -> str:
    """One table of findings for the fleet (HOST FILE:LINE RULE MESSAGE), then a summary line."""
    rows = []
    for o in outcomes:
        if o.value is None:
            rows.append(failed_row(o, 4, at=2, reason_at=3))
            continue
        rows.extend([o.host.name, f.where, f.rule, f.message] for p in o.value.projects for f in p.findings)
    summary = lint_summary(outcomes)
    out = [table(["HOST", "FILE:LINE", "RULE", "MESSAGE"], rows) if rows else "no findings"]
    out += warning_lines(outcomes)
    out += ["", f"{summary['findings']} findings in {summary['projects']} projects on "
                f"{summary['hosts_ok']}/{summary['hosts']} hosts"]
    return "\n".join(out)


def lint_summary(outcomes: Sequence[Outcome[HostLint]]) -> dict[str, int]:
    vals = [o.value for o in outcomes if o.value is not None]
    return {"findings": sum(v.findings for v in vals), "projects": sum(len(v.projects) for v in vals),
            "hosts": len(outcomes), "hosts_ok": len(vals)}


def lint_json(outcomes: Sequence[Outcome[HostLint]]) -> dict[str, Any]:
    """The envelope: each host's projects and findings; ``missing`` (names no host has) and ``findings``
    (their count, as in the summary) beside it."""
    def fields(o: Outcome[HostLint]) -> dict[str, Any]:
        v = o.value
        return {"projects": [{"kind": p.kind, "name": p.name, "findings": list(p.findings)}
                             for p in (v.projects if v else ())],
                "missing": list(v.missing) if v else [], "warnings": list(v.warnings) if v else []}

    summary = lint_summary(outcomes)
    return envelope("apps.lint", outcomes, fields, summary=summary, missing=list(missing_everywhere(outcomes)),
                    findings=summary["findings"])


def lint_problems(outcomes: Sequence[Outcome[HostLint]]) -> bool:
    """Exit 1: a finding, or a name no host has."""
    return any(o.value is not None and o.value.findings for o in outcomes) or bool(missing_everywhere(outcomes))


# --------------------------------------------------------------------------- apps.templates

def templates_text(outcomes: Sequence[Outcome[tuple[ServiceTemplate, ...] | None]]) -> str:
    """HOST TEMPLATE COMPOSE-FILE .ENV.EXAMPLE CONF/ (a host without SRV/templates says so)."""
    rows: list[list[Any]] = []
    for o in outcomes:
        if not o.ok:
            rows.append(failed_row(o, 5, at=2))
        elif o.value is None:
            rows.append([o.host.name, None, f"no {templates_dir(o.host.srv)}", None, None])
        else:
            rows += [[o.host.name, t.name, t.file or "MISSING", "yes" if t.env_example else "no",
                      "yes" if t.conf else "no"] for t in o.value]
    return table(["HOST", "TEMPLATE", "COMPOSE FILE", ".ENV.EXAMPLE", "CONF/"], rows) if rows else "no templates"


def templates_json(outcomes: Sequence[Outcome[tuple[ServiceTemplate, ...] | None]]) -> dict[str, Any]:
    """The envelope: each host's ``templates`` (empty when it has no SRV/templates: ``"dir": null``)."""
    def fields(o: Outcome[tuple[ServiceTemplate, ...] | None]) -> dict[str, Any]:
        return {"templates": list(o.value or ()),
                "dir": templates_dir(o.host.srv) if o.ok and o.value is not None else None}

    return envelope("apps.templates", outcomes, fields,
                    summary={"templates": sum(len(o.value or ()) for o in outcomes)})


# --------------------------------------------------------------------------- apps.new


def new_report(ran: Ran[NewPlan, NewProject]) -> Report:
    """HOST PROJECT COMMAND RESULT: the plan (``would``), or each command's result; then what discovery
    shows of the new project."""
    rows: list[list[Any]] = []
    done = {o.host.name: r for o, r in ran.results()}
    for o, plan in ran.plans():
        result = done.get(o.host.name)
        if result is None and not o.ok:  # acting failed before any result
            rows.append(failed_row(o, 4))
            continue
        steps = result.steps if result is not None else tuple((c.line, str(Result.WOULD)) for c in plan.cmds)
        rows += [[o.host.name, plan.path, line, res] for line, res in steps]
    rows += [failed_row(o, 4) for o in ran.outcomes if o.value is None]
    text = table(["HOST", "PROJECT", "COMMAND", "RESULT"], rows)
    text += "".join(f"\nverified: {r.verified}" for _, r in ran.results() if r.verified)

    def fields(o: Outcome[Any]) -> dict[str, Any]:
        if o.value is None:
            return {"result": None}
        plan, result = o.value.plan, o.value.result
        return {"result": result if result is not None else
                {"host": plan.host, "project": plan.path,
                 "steps": [(c.line, str(Result.WOULD)) for c in plan.cmds], "verified": ""}}

    data = envelope("apps.new", ran.outcomes, fields, dry=ran.dry,
                    summary={"made": sum(1 for _, r in ran.results() if r.ok)})
    return Report(data, text)


# --------------------------------------------------------------------------- apps.compose


def passthrough_report(ran: Ran[PassPlan, PassResult], *, quiet: bool) -> Report:
    """HOST PROJECT COMMAND RESULT: the plan (``would``: under --dry, before a question), or what ran.

    `quiet` (a read, an exec): after acting only failures get a row, Compose's own output said the rest;
    the text is empty when nothing failed.
    """
    rows: list[list[Any]] = []
    done = {o.host.name: r for o, r in ran.results()}
    for o, plan in ran.plans():
        result = done.get(o.host.name)
        if result is None:
            if not ran.acted:
                rows += [[o.host.name, path, cmd.line, str(Result.WOULD)] for path, _, cmd in plan.runs]
            elif not o.ok:
                rows.append(failed_row(o, 4))
            continue
        rows += [[o.host.name, path, line, str(Result.DONE) if code == 0 else f"{Result.FAILED}: exited {code}"]
                 for path, line, code in result.ran if code != 0 or not quiet]
    rows += [failed_row(o, 4) for o in ran.outcomes if o.value is None]
    text = table(["HOST", "PROJECT", "COMMAND", "RESULT"], rows) if rows else ""

    def fields(o: Outcome[Any]) -> dict[str, Any]:
        if o.value is None:
            return {"runs": []}
        result = o.value.result
        if result is None:
            return {"runs": [{"project": p, "command": c.line, "result": str(Result.WOULD)}
                             for p, _, c in o.value.plan.runs]}
        return {"runs": [{"project": p, "command": line, "exited": code} for p, line, code in result.ran]}

    return Report(envelope("apps.compose", ran.outcomes, fields, dry=ran.dry), text)


def stream_header(host: str, path: str) -> None:
    """``==> HOST PROJECT <==`` on stdout before a host's streamed output when several stream (logs,
    apps.compose); the project path is the host's data, so it is escaped."""
    say(f"==> {host} {path} <==")
