"""The boot tables and JSON: one row per host and step, failures in capitals."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aegir import fleet
from aegir.boot.plan import FAILED, WOULD, CheckItem, StepResult, blocking
from aegir.boot.steps import HostBoot
from aegir.compose.status import HostStatus, render_status, status_json
from aegir.report import emit, failed_row, host_entry, table


def _rows(outcomes: Sequence[fleet.Outcome[StepResult]], step: str) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for o in outcomes:
        r = o.value
        if r is None:
            rows.append([o.host.name, step, *failed_row(o, 4, at=2, reason_at=3)[2:]])
            continue
        rows.append([o.host.name, r.step, *_cells(r)])
    return rows


def _cells(r: StepResult) -> list[str]:
    """RESULT and DETAIL cells: failures in capitals; planned commands and warnings under the detail."""
    detail = r.detail
    if r.state == WOULD and r.commands:
        detail += "\nwould run: " + "\n           ".join(r.commands)
    detail += "".join(f"\nwarning: {w}" for w in r.warnings)
    return [r.state.upper() if r.state == FAILED else r.state, detail]


def step_table(outcomes: Sequence[fleet.Outcome[StepResult]], step: str) -> str:
    return table(["HOST", "STEP", "RESULT", "DETAIL"], _rows(outcomes, step))


def step_json(outcomes: Sequence[fleet.Outcome[StepResult]]) -> list[dict[str, Any]]:
    return [host_entry(o, result=o.value) for o in outcomes]


def show_steps(fmt: str, outcomes: Sequence[fleet.Outcome[StepResult]], step: str) -> None:
    emit(fmt, data={"step": step, "hosts": step_json(outcomes)}, text=step_table(outcomes, step))


def render_all(boots: Sequence[HostBoot], full: Sequence[fleet.Outcome[HostStatus]]) -> str:
    """The steps table, the Compose status table, and one verdict line per host."""
    rows: list[list[Any]] = []
    for b in boots:
        rows += [[b.host, r.step, *_cells(r)] for r in b.steps]
        if b.error:
            rows.append([b.host, b.error[0], "FAILED", b.error[1]])
    text = table(["HOST", "STEP", "RESULT", "DETAIL"], rows)
    if full:
        text += "\n\n" + render_status(full)
    return text + "\n\n" + "\n".join(b.verdict for b in boots)


def all_json(boots: Sequence[HostBoot], full: Sequence[fleet.Outcome[HostStatus]]) -> dict[str, Any]:
    return {"hosts": [{"host": b.host, "up": b.up, "verdict": b.verdict, "steps": b.steps,
                       "error": dict(zip(("step", "message"), b.error)) if b.error else None} for b in boots],
            "status": status_json(full) if full else None}


def check_table(outcomes: Sequence[fleet.Outcome[tuple[CheckItem, ...]]]) -> str:
    """``boot.check``: one row per host and check item, failures in capitals."""
    rows: list[list[Any]] = [[o.host.name, i.name, i.status if i.status == "ok" else i.status.upper(), i.detail]
            for o in outcomes if o.value for i in o.value]
    rows += [failed_row(o, 4, at=2, reason_at=3) for o in outcomes if o.value is None]
    return table(["HOST", "CHECK", "RESULT", "DETAIL"], rows)


def check_json(outcomes: Sequence[fleet.Outcome[tuple[CheckItem, ...]]]) -> dict[str, Any]:
    return {"step": "check", "hosts": [host_entry(o, items=o.value, ok=o.value is not None and not blocking(o.value))
                                       for o in outcomes]}
