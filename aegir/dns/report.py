"""dns.zone and dns.check output: zone text or a table, the same data in the JSON envelope.

The zones and the check are fleet-wide: the envelope's ``hosts`` say what was
read on each host (the names its projects publish, its files' mistakes as
``warnings``); the zones (``zones``), the differences a server has
(``differences``, ``notes``) and every problem (``problems``) are keys of
their own, the figures under ``summary``. Problems are printed on stderr as
warnings (`aegir.report.warning`) and make the exit code 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aegir.action import Report
from aegir.dns.check import CheckResult
from aegir.dns.plan import Plan, Zone
from aegir.dns.services import Read
from aegir.dns.steps import ZoneFile
from aegir.dns.zonefile import render
from aegir.fleet import Outcome
from aegir.report import envelope, failed_row, table, warning

HOST_HEADERS = ["HOST", "PROJECTS", "NAMES", "RESULT"]
FILE_HEADERS = ["ZONE", "ROLE", "RECORDS", "FILE", "RESULT"]


def host_fields(o: Outcome[Read]) -> dict[str, Any]:
    """A host's own keys: the names each of its projects publishes, and the mistakes in their files."""
    names: dict[str, list[str]] = {}
    for p in o.value.publications if o.value else ():
        names.setdefault(p.project, []).extend(n.name for n in p.names)
    return {"names": names, "warnings": list(o.value.problems) if o.value else []}


def unread(task: str, outcomes: Sequence[Outcome[Read]], *, dry: bool | None, what: str) -> Report:
    """The report when a host could not be read: a row per host, and `what` was not done (the zones would
    lack that host's names)."""
    rows = []
    for o in outcomes:
        if o.ok and o.value is not None:
            projects = {p.project for p in o.value.publications}
            rows.append([o.host.name, len(projects), sum(len(p.names) for p in o.value.publications), "ok"])
        else:
            rows.append(failed_row(o, len(HOST_HEADERS)))
    bad = sum(not o.ok for o in outcomes)
    text = (f"{table(HOST_HEADERS, rows)}\n\n{what}: {bad} of {len(outcomes)} hosts could not be read, "
            "and the zones hold every host's names")
    return Report(envelope(task, outcomes, host_fields, dry=dry, summary={"hosts": len(outcomes), "unread": bad}),
                  text, problems=True)


def warnings(plan: Plan) -> tuple[str, ...]:
    """Every problem of the plan as a warning line (a host's own already start with its name)."""
    return tuple(warning(None, p) for p in plan.problems)


def zone_data(zone: Zone, file: ZoneFile | None = None) -> dict[str, Any]:
    written = {"file": file.path, "result": file.result} if file else {}
    return {"origin": zone.origin, "role": zone.role, "serial": zone.serial,
            "records": [{"name": r.name, "type": r.type, "ttl": r.ttl, "data": r.data} for r in zone.records],
            "text": render(zone), **written}


def zone_report(outcomes: Sequence[Outcome[Read]], plan: Plan, zones: Sequence[Zone], *, dry: bool,
                files: Sequence[ZoneFile] | None = None) -> Report:
    """The zones as text (or, with `files`, the table of their files), and the JSON of both."""
    by_origin = {f.zone.origin: f for f in files or ()}
    serials = sorted({z.serial for z in zones})
    summary = {"serial": max(serials, default=None), "serials": serials, "zones": len(zones), "records": sum(len(z.records) for z in zones),
               "problems": len(plan.problems)}
    data = envelope("dns.zone", outcomes, host_fields, dry=dry, summary=summary,
                    zones=[zone_data(z, by_origin.get(z.origin)) for z in zones], problems=list(plan.problems))
    if files is None:
        text = "\n".join(render(z) for z in zones).rstrip("\n")
    else:
        text = table(FILE_HEADERS, [[f.zone.origin, f.zone.role, len(f.zone.records), f.path, f.result]
                                    for f in files])
    return Report(data, text, bool(plan.problems), warnings(plan), verbatim=files is None)


def check_report(outcomes: Sequence[Outcome[Read]], plan: Plan, result: CheckResult) -> Report:
    """The differences a server has with the plan (a table, or "no difference"), and the JSON."""
    summary = {"server": result.server, "checked": result.checked, "ok": not result.differences,
               "differences": len(result.differences), "problems": len(plan.problems)}
    data = envelope("dns.check", outcomes, host_fields, summary=summary,
                    differences=[{"name": d.name, "type": d.type, "status": d.status, "expected": list(d.expected),
                                  "served": list(d.served), "detail": d.detail} for d in result.differences],
                    notes=list(result.notes), problems=list(plan.problems))
    return Report(data, check_text(result), bool(result.differences or plan.problems), warnings(plan))


def check_text(result: CheckResult) -> str:
    if not result.differences:
        head = f"{result.checked} record sets checked on {result.server}: no difference"
    else:
        rows = [[d.name, d.type, d.status, "\n".join(d.expected) or None,
                 "\n".join(d.served) or d.detail or None] for d in result.differences]
        head = table(["NAME", "TYPE", "STATUS", "EXPECTED", "SERVED"], rows)
        head += f"\n\n{len(result.differences)} difference(s) in {result.checked} record sets checked on {result.server}"
    return "\n".join([head, *(f"note: {n}" for n in result.notes)])
