"""dns.zone and dns.check output: zone text or a table, and the same data as JSON."""

from __future__ import annotations

from typing import Any

from aegir.dns.check import CheckResult
from aegir.dns.plan import Plan, Zone
from aegir.dns.zonefile import render
from aegir.report import table


def zone_data(zone: Zone) -> dict[str, Any]:
    return {"origin": zone.origin, "role": zone.role,
            "records": [{"name": r.name, "type": r.type, "ttl": r.ttl, "data": r.data} for r in zone.records],
            "text": render(zone)}


def zones_data(plan: Plan, zones: list[Zone], serial: int) -> dict[str, Any]:
    return {"serial": serial, "zones": [zone_data(z) for z in zones], "problems": list(plan.problems)}


def written_table(rows: list[tuple[Zone, str]]) -> str:
    return table(["ZONE", "ROLE", "RECORDS", "FILE"], [[z.origin, z.role, len(z.records), path] for z, path in rows])


def check_data(result: CheckResult, problems: tuple[str, ...]) -> dict[str, Any]:
    return {"server": result.server, "checked": result.checked, "ok": not result.differences,
            "differences": [{"name": d.name, "type": d.type, "status": d.status, "expected": list(d.expected),
                             "served": list(d.served), "detail": d.detail} for d in result.differences],
            "notes": list(result.notes), "problems": list(problems)}


def check_text(result: CheckResult) -> str:
    if not result.differences:
        head = f"{result.checked} record sets checked on {result.server}: no difference"
    else:
        rows = [[d.name, d.type, d.status, "\n".join(d.expected) or None,
                 "\n".join(d.served) or d.detail or None] for d in result.differences]
        head = table(["NAME", "TYPE", "STATUS", "EXPECTED", "SERVED"], rows)
        head += f"\n\n{len(result.differences)} difference(s) in {result.checked} record sets checked on {result.server}"
    return "\n".join([head, *(f"note: {n}" for n in result.notes)])
