"""net.plan's table and JSON: one row per address, subnet or container; problems counted below."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aegir.fleet import Outcome
from aegir.net import plan
from aegir.net.facts import NetFacts
from aegir.report import envelope, failed_row, table

HEADERS = ["HOST", "ROLE", "IPV4", "IPV6", "PREFIX/NETWORK", "CHECK"]


def rows(outcomes: Sequence[Outcome[NetFacts]]) -> list[plan.Row]:
    """Every host's rows (the inventory's view where a host could not be read), then overlapping prefixes."""
    out = [r for o in outcomes for r in plan.rows(o.host, o.value)]
    return out + plan.overlaps([o.host for o in outcomes])


def problems(outcomes: Sequence[Outcome[NetFacts]]) -> list[plan.Row]:
    return [r for r in rows(outcomes) if r.problem]


def text(outcomes: Sequence[Outcome[NetFacts]]) -> str:
    body = [[r.host, r.role, r.ipv4, r.ipv6, r.where, r.problem or r.note or "ok"] for r in rows(outcomes)]
    body += [failed_row(o, len(HEADERS)) for o in outcomes if not o.ok]
    found = len(problems(outcomes))
    return table(HEADERS, body) + (f"\n\n{found} problem(s)" if found else "\n\nno problem")


def data(outcomes: Sequence[Outcome[NetFacts]]) -> dict[str, Any]:
    """The envelope: per host whether Docker was asked and its problems' count; the fleet's addressing
    table (``rows``, overlapping prefixes included) and its ``problems``, figures under ``summary``."""
    table_rows, found = rows(outcomes), problems(outcomes)

    def fields(o: Outcome[NetFacts]) -> dict[str, Any]:
        return {"docker": o.value.docker if o.value else None, "problems": sum(r.host == o.host.name for r in found)}

    return envelope("net.plan", outcomes, fields, summary={"hosts": len(outcomes), "rows": len(table_rows),
                                                            "problems": len(found)},
                    rows=table_rows, problems=[{"host": r.host, "role": r.role, "problem": r.problem} for r in found])
