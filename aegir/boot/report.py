"""The boot tables and JSON: one row per host and step, failures in capitals; the check and status views."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aegir import action
from aegir.boot.plan import FAILED, WOULD, CheckItem, HostBoot, Planned, StepResult
from aegir.compose.status import HostStatus, render_status, status_json
from aegir.fleet import Outcome
from aegir.report import envelope, failed_row, table

HEADERS = ["HOST", "STEP", "RESULT", "DETAIL"]


def _cells(r: StepResult) -> list[str]:
    """RESULT and DETAIL cells: failures in capitals; planned commands and warnings under the detail."""
    detail = r.detail
    if r.state == WOULD and r.commands:
        detail += "\nwould run: " + "\n           ".join(r.commands)
    detail += "".join(f"\nwarning: {w}" for w in r.warnings)
    return [r.state.upper() if r.state == FAILED else r.state, detail]


def step_report(ran: action.Ran[Planned, StepResult], step: str) -> action.Report:
    """One step's plans or results (the plan shown before ``boot.mount`` and ``boot.docker`` act)."""
    rows: list[list[Any]] = []
    for o in ran.outcomes:
        if o.value is None:
            rows.append([o.host.name, step, *failed_row(o, 4, at=2, reason_at=3)[2:]])
        else:
            rows.append([o.host.name, step, *_cells(o.value.result or o.value.plan.row)])
    text = table(HEADERS, rows)
    return action.Report({"hosts": [{"host": o.host.name} for o in ran.outcomes]}, f"Plan:\n{text}\n")


def _steps_table(boots: Sequence[HostBoot]) -> str:
    rows: list[list[Any]] = []
    for b in boots:
        rows += [[b.host.name, r.step, *_cells(r)] for r in b.steps]
        if b.failed_at:
            rows.append([b.host.name, b.failed_at[0], *failed_row(b, 4, at=2, reason_at=3)[2:]])
    return table(HEADERS, rows)


def _statuses(boots: Sequence[HostBoot]) -> list[Outcome[HostStatus]]:
    """The Compose status of each host that got to the status step (or failed there)."""
    out: list[Outcome[HostStatus]] = []
    for b in boots:
        st = next((w for w in b.works if isinstance(w, HostStatus)), None)
        if st is not None:
            out.append(Outcome(b.host, st))
        elif b.failed_at and b.failed_at[0] == "status":
            out.append(Outcome(b.host, None, b.failed_at[1], b.kind))
    return out


def _check_rows(boots: Sequence[HostBoot]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for b in boots:
        items: tuple[CheckItem, ...] | None = next((w for w in b.works if isinstance(w, tuple)), None)
        if items is None:
            rows.append(failed_row(b, 4, at=2, reason_at=3))
        else:
            rows += [[b.host.name, i.name, i.status if i.status == "ok" else i.status.upper(), i.detail] for i in items]
    return rows


def boot_report(task: str, boots: Sequence[HostBoot], steps: Sequence[str], *, dry: bool | None,
                extra: dict[str, Any] | None = None, text_after: str = "") -> action.Report:
    """The report of a boot task: `steps` walked on `boots`; one step alone reads as that step's view."""
    single = steps[0] if len(steps) == 1 else None
    problems = any(not b.up for b in boots)
    summary = {"up": sum(b.up for b in boots), "hosts": len(boots)}
    if single == "check":
        data = envelope(task, boots, lambda b: {"items": next((w for w in b.works if isinstance(w, tuple)), None),
                                                "ok": b.failed_at is None and b.up}, dry=dry, summary=summary)
        return action.Report(data, table(["HOST", "CHECK", "RESULT", "DETAIL"], _check_rows(boots)), problems)
    if single == "status":
        statuses = _statuses(boots)
        data = status_json(statuses)
        data = {"task": task, "dry": dry, **data, "summary": data.get("summary", summary)}  # the envelope's keys
        return action.Report(data, render_status(statuses), problems)
    if single is not None:
        data = envelope(task, boots, lambda b: {"result": b.steps[-1] if b.steps else None}, dry=dry,
                        summary=summary, **(extra or {}))
        return action.Report(data, _steps_table(boots) + text_after, problems)
    statuses = _statuses(boots)
    text = _steps_table(boots)
    if statuses:
        text += "\n\n" + render_status(statuses)
    text += "\n\n" + "\n".join(b.verdict for b in boots)
    data = envelope(task, boots, lambda b: {"up": b.up, "verdict": b.verdict, "steps": list(b.steps)},
                    dry=dry, summary=summary, status=status_json(statuses) if statuses else None)
    return action.Report(data, text, problems)
