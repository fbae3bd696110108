"""What the fw tasks print: the rulesets, the diffs, the tables, and the same data in the JSON envelope.

Every JSON document is `aegir.report.envelope` (``{"task", "dry", "hosts":
[{"host", "status", "error", ...}], "summary"}``); a host that failed or
could not be reached gets `aegir.report.failed_row` in a table, its
``KIND: reason`` line elsewhere. What the exposures warn of ("port is not
published", an admin address skipped...) is a comment at the top of the
ruleset, a host's ``"warnings"`` in the JSON, and a `aegir.report.warning`
line on stderr (fw.status shows them in its STATUS column instead).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aegir.action import HostRun, Ran, Report
from aegir.fleet import Outcome
from aegir.fw.facts import UNIT_PATH
from aegir.fw.model import hostport
from aegir.fw.plan import Applied, Firewall, Installed, InstallPlan, install_row
from aegir.report import envelope, failed_line, failed_row, printable, say, table, warning

APPLY_HEADERS = ["HOST", "CONTAINERS", "EXPOSURES", "RESULT"]
STATUS_HEADERS = ["HOST", "LIVE TABLE", "PENDING", "EXPOSURES", "WATCHER", "STATUS"]
EXPOSURE_HEADERS = ["HOST", "CONTAINER", "PROTO", "PUBLISHED ON", "CONTAINER ADDRESS"]
INSTALL_HEADERS = ["HOST", "RESULT", "ENABLED", "ACTIVE", "STEPS"]


def summary(fw: Firewall) -> dict[str, Any]:
    """A host's firewall in figures, for the JSON."""
    return {
        "containers": len(fw.exposures.containers),
        "exposures": len(fw.exposures.items),
        "warnings": list(fw.exposures.warnings),
        "template": fw.template,
        "live": fw.state.status if fw.state else None,
    }


def warnings(firewalls: Sequence[tuple[str, Firewall]]) -> tuple[str, ...]:
    """What the exposures of each host warn of, one `aegir.report.warning` line each."""
    return tuple(warning(name, w) for name, fw in firewalls for w in fw.exposures.warnings)


def _firewalls(outcomes: Sequence[Outcome[Firewall]]) -> list[tuple[str, Firewall]]:
    return [(o.host.name, o.value) for o in outcomes if o.value is not None]


# --------------------------------------------------------------------------- fw.render, fw.diff


def render_report(outcomes: Sequence[Outcome[Firewall]]) -> Report:
    """The rulesets (one host: as is; several: each under a ``# ==== HOST ====`` line)."""
    ok = _firewalls(outcomes)
    texts = [fw.text if len(outcomes) == 1 else f"# ==== {name} ====\n{fw.text}" for name, fw in ok]

    def fields(o: Outcome[Firewall]) -> dict[str, Any]:
        fw = o.value
        return {} if fw is None else {"ruleset": fw.text, "exposures": list(fw.exposures.items),
                                      "warnings": list(fw.exposures.warnings)}

    data = envelope("fw.render", outcomes, fields, summary={
        "hosts": len(outcomes), "rendered": len(ok), "exposures": sum(len(fw.exposures.items) for _, fw in ok)})
    return Report(data, printable("\n".join(texts).rstrip("\n")), warnings=warnings(ok), verbatim=True)


def failures(outcomes: Sequence[Outcome[Any]]) -> None:
    """The hosts that could not be rendered, one line each on stderr (stdout holds rulesets only)."""
    for o in outcomes:
        if not o.ok:
            say(failed_line(o), err=True)


def diff_report(outcomes: Sequence[Outcome[Firewall]]) -> Report:
    """Per host: the live table's state, the exposures, and the diff fw.apply would make."""
    parts = []
    for o in outcomes:
        fw = o.value
        if fw is None:
            parts.append(failed_line(o))
            continue
        assert fw.state is not None
        head = f"{o.host.name}: live table {fw.state.status}; {len(fw.exposures.items)} exposures"
        d = fw.diff()
        if not fw.changed:
            parts.append(f"{head}; nothing to do")
        elif d:
            parts.append(f"{head}; fw.apply would change:\n{printable(d.rstrip())}")
        else:
            parts.append(f"{head}; same ruleset as the last apply: fw.apply would load it again")

    def fields(o: Outcome[Firewall]) -> dict[str, Any]:
        fw = o.value
        if fw is None or fw.state is None:
            return {}
        return {"live": fw.state.status, "changed": fw.changed, "diff": fw.diff(),
                "warnings": list(fw.exposures.warnings)}

    ok = _firewalls(outcomes)
    data = envelope("fw.diff", outcomes, fields, summary={"hosts": len(outcomes),
                                                          "changed": sum(fw.changed for _, fw in ok)})
    return Report(data, "\n".join(parts), warnings=warnings(ok), verbatim=True)  # a diff: never wrapped


# --------------------------------------------------------------------------- fw.status


def status_report(outcomes: Sequence[Outcome[tuple[Firewall, str]]]) -> Report:
    """One row per host (live table, pending, exposures, watcher), then what each host publishes."""
    hosts: list[list[Any]] = []
    rows: list[list[Any]] = []
    for o in outcomes:
        if o.value is None:
            hosts.append(failed_row(o, len(STATUS_HEADERS)))
            continue
        fw, watcher = o.value
        assert fw.state is not None
        hosts.append([o.host.name, fw.state.status, "yes" if fw.changed else "no", len(fw.exposures.items),
                      watcher, "; ".join(fw.exposures.warnings) or "ok"])
        rows += [[o.host.name, e.container, e.proto, hostport(e.host_addr, e.host_port),
                  hostport(e.target_addr, e.target_port)] for e in fw.exposures.items]
    text = table(STATUS_HEADERS, hosts)
    if rows:
        text += "\n\n" + table(EXPOSURE_HEADERS, rows)

    def fields(o: Outcome[tuple[Firewall, str]]) -> dict[str, Any]:
        if o.value is None:
            return {}
        fw, watcher = o.value
        return {"pending": fw.changed, **summary(fw), "watcher": watcher, "exposures": list(fw.exposures.items)}

    ok = [o.value[0] for o in outcomes if o.value is not None]
    data = envelope("fw.status", outcomes, fields, summary={
        "hosts": len(outcomes), "pending": sum(fw.changed for fw in ok),
        "exposures": sum(len(fw.exposures.items) for fw in ok)})
    return Report(data, text)


# --------------------------------------------------------------------------- fw.apply


def _planned(o: Outcome[HostRun[Any, Any]]) -> bool:
    """Whether the host has a row of its own: planned, and not failed while acting."""
    return o.value is not None and (o.value.result is not None or o.ok)


def apply_result(fw: Firewall, done: Applied | None, *, dry: bool) -> str:
    """The RESULT cell: applied (how long, why, lines changed), would apply, nothing to do; leftovers deleted."""
    leftovers = len(fw.state.leftovers) if fw.state else 0
    if done is None:
        if dry and fw.load:
            return "would apply (dry)"
        gone = f"; would remove {leftovers} leftover file{'s' if leftovers > 1 else ''} of interrupted runs" \
            if dry and leftovers else ""
        return "nothing to do" + gone
    path = "elements only" if done.elements else "full proof"
    result = (f"applied in {done.seconds:.2f}s ({done.reason}, {path}: +{len(done.added)} -{len(done.removed)} "
              "lines)" if done.changed else "nothing to do")
    if done.swept:
        result += f"; removed {done.swept} leftover file{'s' if done.swept > 1 else ''} of interrupted runs"
    return result


def apply_report(ran: Ran[Firewall, Applied]) -> Report:
    """One row per host: its containers, exposures and what the apply did (or would do)."""
    rows = []
    for o in ran.outcomes:
        if not _planned(o):
            rows.append(failed_row(o, len(APPLY_HEADERS)))
            continue
        assert o.value is not None
        fw = o.value.plan
        rows.append([o.host.name, len(fw.exposures.containers), len(fw.exposures.items),
                     apply_result(fw, o.value.result, dry=ran.dry)])

    def fields(o: Outcome[HostRun[Firewall, Applied]]) -> dict[str, Any]:
        if not _planned(o):
            return {}
        assert o.value is not None
        fw, done = o.value.plan, o.value.result
        return {"result": apply_result(fw, done, dry=ran.dry), "changed": done.changed if done else fw.changed,
                **summary(fw), "added": list(done.added) if done else [],
                "removed": list(done.removed) if done else [],
                "path": None if done is None or not done.changed else "elements" if done.elements else "full",
                "full_because": done.full_because if done and done.changed and not done.elements else None}

    planned = [(o.host.name, p) for o, p in ran.plans()]
    changed = sum(bool(f.get("changed")) for f in map(fields, ran.outcomes))
    data = envelope("fw.apply", ran.outcomes, fields, dry=ran.dry, summary={"hosts": len(ran.outcomes),
                                                                           "changed": changed})
    return Report(data, table(APPLY_HEADERS, rows), warnings=warnings(planned))


# --------------------------------------------------------------------------- fw.install


def _installed(o: Outcome[HostRun[InstallPlan, Installed]]) -> Installed | None:
    if not _planned(o):
        return None
    assert o.value is not None
    return o.value.result if o.value.result is not None else install_row(o.value.plan)


def install_report(ran: Ran[InstallPlan, Installed]) -> Report:
    """One row per host: the result, the unit's enabled and active states, the steps run (or to run)."""
    rows = []
    for o in ran.outcomes:
        r = _installed(o)
        if r is None:
            rows.append(failed_row(o, len(INSTALL_HEADERS), at=1, reason_at=4))
            continue
        done = ", ".join(r.did) or "nothing to do"
        rows.append([o.host.name, r.result.upper() if not r.ok else r.result.value, r.state.enabled or None,
                     r.state.active or None, done + (f"\n{r.problem}" if r.problem else "")])

    def fields(o: Outcome[HostRun[InstallPlan, Installed]]) -> dict[str, Any]:
        r = _installed(o)
        if r is None:
            return {}
        return {"result": r.result.value, "steps": list(r.did), "unit": UNIT_PATH, "booted": r.state.booted,
                "enabled": r.state.enabled, "active": r.state.active, "problem": r.problem}

    results = [r for r in map(_installed, ran.outcomes) if r is not None]
    data = envelope("fw.install", ran.outcomes, fields, dry=ran.dry, summary={
        "hosts": len(ran.outcomes), "running": sum(r.state.running for r in results)})
    return Report(data, table(INSTALL_HEADERS, rows), problems=any(not r.ok for r in results))


# --------------------------------------------------------------------------- fw.watch


def watch_log(line: str) -> None:
    """One line of fw.watch's log on stdout (escaped: it quotes the host's and Docker's words)."""
    say(line)
