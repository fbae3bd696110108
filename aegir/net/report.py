"""The net namespace's tables and JSON: net.plan (one row per address, subnet or container), net.keys,
net.mesh (one row per host, and the diffs), net.check (one row per pair of hosts)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aegir.action import HostRun, Ran, Report
from aegir.fleet import Outcome
from aegir.net import plan
from aegir.net.facts import NetFacts
from aegir.net.mesh import fingerprint
from aegir.report import Result, envelope, failed_row, printable, table

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


# --------------------------------------------------------------------------- net.keys, net.mesh

KEYS_HEADERS = ["HOST", "RESULT", "PUBLIC KEY", "NOTE"]
MESH_HEADERS = ["HOST", "RESULT", "FILES", "CONNECTIONS", "NOTE"]


def keys_report(ran: Ran[Any, Any]) -> Report:
    """One row per host: made, present or would be made; the public key's fingerprint (never a key)."""
    rows, made = [], 0
    for o in ran.outcomes:
        if o.value is None or (o.value.result is None and not o.ok):
            rows.append(failed_row(o, len(KEYS_HEADERS), at=1, reason_at=3))
            continue
        plan, res = o.value.plan, o.value.result
        if res is not None:
            made += res.result == Result.DONE
            rows.append([o.host.name, res.result.value, fingerprint(res.pubkey), res.problem or "made on the host"])
        elif plan.todo:
            rows.append([o.host.name, Result.WOULD.value, None, "would make a key pair on the host"])
        else:
            rows.append([o.host.name, Result.OK.value, fingerprint(plan.pubkey), "present"])

    def fields(o: Outcome[HostRun[Any, Any]]) -> dict[str, Any]:
        if o.value is None:
            return {}
        res = o.value.result
        key = res.pubkey if res is not None else o.value.plan.pubkey
        result = res.result.value if res is not None else (Result.WOULD if o.value.plan.todo else Result.OK).value
        return {"result": result, "fingerprint": fingerprint(key)}

    data = envelope("net.keys", ran.outcomes, fields, dry=ran.dry, summary={"hosts": len(ran.outcomes), "made": made})
    return Report(data, table(KEYS_HEADERS, rows))


def mesh_report(ran: Ran[Any, Any]) -> Report:
    """One row per host: the files changed (or to change) and the connections loaded; under --dry (or with
    nothing done yet) each changed file's diff below the table."""
    rows, diffs = [], []
    for o in ran.outcomes:
        if o.value is None or (o.value.result is None and not o.ok):
            rows.append(failed_row(o, len(MESH_HEADERS), at=1, reason_at=4))
            continue
        plan, res = o.value.plan, o.value.result
        if res is not None:
            rows.append([o.host.name, res.result.value, "\n".join(res.written) or None, ", ".join(res.loaded),
                         res.problem or ("written and loaded" if res.written else "loaded")])
            continue
        files = "\n".join(f.path for f in plan.changed) or None
        if not plan.todo:
            rows.append([o.host.name, Result.OK.value, None, ", ".join(plan.loaded), "nothing to do"])
        elif not o.ok:
            rows.append([o.host.name, Result.FAILED.value, files, ", ".join(plan.loaded), o.error])
        else:
            note = "would write and load" if plan.changed else "would load (charon has other connections)"
            rows.append([o.host.name, Result.WOULD.value, files, ", ".join(plan.loaded), note])
            for f in plan.changed:
                diffs.append("\n".join(printable(line) for line in [f"# {o.host.name}", *f.diff()]))

    def fields(o: Outcome[HostRun[Any, Any]]) -> dict[str, Any]:
        if o.value is None:
            return {}
        plan, res = o.value.plan, o.value.result
        if res is not None:
            return {"result": res.result.value, "written": list(res.written), "loaded": list(res.loaded),
                    "problem": res.problem}
        return {"result": (Result.WOULD if plan.todo else Result.OK).value,
                "changes": [{"path": f.path, "diff": f.diff()} for f in plan.changed],
                "loaded": list(plan.loaded), "wanted": list(plan.wanted)}

    results = [o.value.result for o in ran.outcomes if o.value is not None and o.value.result is not None]
    data = envelope("net.mesh", ran.outcomes, fields, dry=ran.dry, summary={
        "hosts": len(ran.outcomes), "changed": sum(bool(r.written) for r in results)})
    text = table(MESH_HEADERS, rows) + ("\n\n" + "\n\n".join(diffs) if diffs else "")
    return Report(data, text, problems=any(r.result == Result.FAILED for r in results))


# --------------------------------------------------------------------------- net.check

CHECK_HEADERS = ["PAIR", "SA", "AGE", "BYTES IN/OUT", "REACH", "REASON"]


def _age(seconds: int | None) -> str | None:
    if seconds is None:
        return None
    return f"{seconds}s" if seconds < 120 else f"{seconds // 60}m" if seconds < 7200 else f"{seconds // 3600}h"


def check_report(read: Sequence[Outcome[Any]], pairs: Sequence[Any]) -> Report:
    """One row per pair of hosts (down ones say why), failed hosts' rows below; exit 1 when a pair is down."""
    rows: list[list[Any]] = []
    for p in pairs:
        traffic = f"{p.bytes_in}/{p.bytes_out}" if p.bytes_in is not None else None
        reach = p.reach + (f" (ESP +{p.esp_packets})" if p.reach == "yes" and p.esp_packets else "")
        rows.append([p.name, p.sa, _age(p.age), traffic, reach, p.reason])
    rows += [failed_row(o, len(CHECK_HEADERS)) for o in read if not o.ok]
    down = [p for p in pairs if p.down]

    def fields(o: Outcome[Any]) -> dict[str, Any]:
        v = o.value
        if v is None:
            return {}
        return {"charon": v.sas.down is None, "charon_error": v.sas.down,
                "probe": {"container": v.probe.container, "ipv6": str(v.probe.ipv6)} if v.probe else None}

    data = envelope("net.check", read, fields, summary={"hosts": len(read), "pairs": len(pairs), "down": len(down)},
                    pairs=[{"pair": [p.a, p.b], "sa": p.sa, "age": p.age, "bytes_in": p.bytes_in,
                            "bytes_out": p.bytes_out, "reach": p.reach, "esp_packets": p.esp_packets,
                            "reason": p.reason, "down": p.down} for p in pairs])
    text = table(CHECK_HEADERS, rows) + (f"\n\n{len(down)} of {len(pairs)} pair(s) down" if down
                                         else f"\n\n{len(pairs)} pair(s) up")
    return Report(data, text, problems=bool(down))
