"""Tables and JSON for `update.review`, `update.announce` and `update.apply` (and the review's exit code).

Each takes a run (`aegir.action.Ran`: a plan per host, and what acting did)
and gives an `aegir.action.Report`: the table, and the one JSON envelope
(`aegir.report.envelope`) whose host entries carry the plan's and the
result's fields. Failed hosts through `aegir.report.failed_row`, warnings
through `aegir.report.warning`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aegir.action import Ran, Report
from aegir.fleet import Outcome
from aegir.report import envelope, failed_row, table, warning
from aegir.update.classify import HostReview, PackageReview, fleet_summary
from aegir.update.plan import Announced, AnnouncePlan, ApplyPlan, ApplyResult, ReviewPlan

#: update.review's exit codes (the runbook's "review before apt upgrade").
EXIT_CLEAN, EXIT_RISKY, EXIT_ERROR = 0, 1, 2

#: What ``update.review --refresh`` says under ``--dry`` (on stderr).
DRY_REFRESH = "aegir: --dry: not running `apt-get update`; reviewing the package lists as they are"

#: The package classes, most serious first (`PackageReview.kind`).
CLASSES = ("docker", "crucial", "reboot", "security", "other")

# --------------------------------------------------------------------------- review


def _review(o: Outcome[Any]) -> HostReview | None:
    """The review of a host that answered (None: it failed, also when only recording it failed)."""
    return o.value.plan.review if o.value is not None and o.ok else None


def review_exit(ran: Ran[ReviewPlan, str]) -> int:
    """2 when a host could not be reviewed (or the review not recorded), else 1 when an upgrade is risky, else 0."""
    if any(not o.ok for o in ran.outcomes):
        return EXIT_ERROR
    return EXIT_RISKY if any(r.risky for o in ran.outcomes if (r := _review(o))) else EXIT_CLEAN


def summary(outcomes: Sequence[Outcome[Any]]) -> str:
    """``2 hosts: hyp4 would restart docker via containerd; hyp5 nothing to upgrade``."""
    return fleet_summary([(o.host.name, _review(o), o.error) for o in outcomes])


def _live_restore(r: HostReview) -> str:
    if r.live_restore is None:
        return f"unknown ({r.docker_error})" if r.docker_error else "-"
    return "on" if r.live_restore else "off"


def needs_decision(p: PackageReview) -> bool:
    """A package the operator must look at before `apt upgrade`: it restarts Docker or a crucial unit, or needs a reboot."""
    return p.risky or "reboot" in p.kinds


def class_counts(r: HostReview) -> str:
    """``6 upgrades: 2 docker, 1 crucial, 1 reboot, 1 security, 1 other``."""
    counts = [(k, len(r.of_kind(k))) for k in CLASSES]
    return f"{len(r.packages)} upgrades: " + ", ".join(f"{n} {k}" for k, n in counts if n)


def stale_rows(host: str, r: HostReview, *, every: bool = False) -> tuple[list[list[Any]], int]:
    """A row per package and process the upgrade leaves on the old code (Docker's and crucial ones; every one
    with `every`), and how many others were not listed."""
    rows: list[list[Any]] = []
    hidden = 0
    for p in r.packages:
        seen: set[str] = set()
        for m in p.stale:
            risky = p.risky and any(t.startswith(f"{p.name}: {m.who} maps ") for t in p.stale_risky)
            if m.who in seen or not (risky or every):
                hidden += m.who not in seen
                seen.add(m.who)
                continue
            seen.add(m.who)
            rows.append([host, p.name, m.who, m.command, m.file, "docker" if m.docker else
                         "crucial" if risky else "-"])
    return rows, hidden


def render_review(outcomes: Sequence[Outcome[Any]], *, every: bool = False) -> str:
    """What needs a decision first: the processes the upgrade leaves on old code and who restarts them; the
    risky and reboot packages, held, kept back and removed ones; then a count per class and host, a row
    per host, the fleet line. `every`: a row for every package and every stale process."""
    stale: list[list[Any]] = []
    outlooks: list[str] = []
    others: list[str] = []
    rows: list[list[Any]] = []
    hosts: list[list[Any]] = []
    counts: list[str] = []
    warnings: list[str] = []
    for o in outcomes:
        r = _review(o)
        if r is None:
            hosts.append(failed_row(o, 5))
            continue
        found, hidden = stale_rows(o.host.name, r, every=every)
        stale += found
        if r.outlook:
            outlooks.append(f"{o.host.name}: {r.outlook}")
        if hidden:
            others.append(f"{o.host.name}: {hidden} other process{'es' if hidden != 1 else ''} left on the old code "
                          "(update.review --all lists them)")
        for p in r.packages:
            if every or needs_decision(p):
                rows.append([o.host.name, p.name, p.old or "(new)", p.new, *([p.origin or None] if every else []),
                             "+".join(p.kinds), "; ".join(p.reasons)])
        pad = [None] if every else []
        rows += [[o.host.name, name, None, None, *pad, "held", "held (apt-mark hold): not upgraded"]
                 for name in r.held]
        rows += [[o.host.name, name, None, None, *pad, "kept back",
                  "needs packages `upgrade` does not install (see --dist)"] for name in r.kept_back]
        rows += [[o.host.name, name, None, "(removed)", *pad, "REMOVED",
                  "dist-upgrade removes it" + ("; a Docker engine package: Docker stops"
                                               if name in r.docker_removals else "")] for name in r.removals]
        hosts.append([o.host.name, len(r.packages), "yes" if r.risky else "no", _live_restore(r), r.headline()])
        warnings += [warning(o.host.name, w) for w in r.warnings]
        if r.packages:
            hidden = 0 if every else sum(not needs_decision(p) for p in r.packages)
            counts.append(f"{o.host.name}: {class_counts(r)}"
                          + (f" ({hidden} not listed: update.review --all lists every package)" if hidden else ""))
    out = []
    if stale or outlooks or others:
        out += ["Left on the old code by the upgrade (until restarted):"]
        if stale:
            out += [table(["HOST", "PACKAGE", "PROCESS", "COMMAND", "MAPS", "WHOSE"], stale)]
        out += [*outlooks, *others, ""]
    if rows:
        head = ["HOST", "PACKAGE", "OLD", "NEW", *(["ORIGIN"] if every else []), "KIND", "WHY"]
        out += [table(head, rows), ""]
    if counts:
        out += [*counts, ""]
    out += [table(["HOST", "UPGRADES", "RISKY", "LIVE-RESTORE", "REVIEW"], hosts), *warnings, "", summary(outcomes)]
    return "\n".join(out)


def _review_fields(o: Outcome[Any]) -> dict[str, Any]:
    if o.value is None:
        return {}
    r, record = o.value.plan.review, o.value.plan.record
    return {
        "risky": r.risky, "headline": r.headline(), "effects": list(r.effects()), "dist": r.dist,
        "live_restore": r.live_restore, "docker_error": r.docker_error,
        "packages": [{"name": p.name, "old": p.old, "new": p.new, "origin": p.origin, "kind": p.kind,
                      "kinds": list(p.kinds), "reasons": list(p.reasons), "restarts": list(p.restarts),
                      "risky": p.risky} for p in r.packages],
        "held": list(r.held), "kept_back": list(r.kept_back), "removals": list(r.removals),
        "docker_removals": list(r.docker_removals),
        "docker_dependencies": {k: list(v) for k, v in r.docker_deps.items()},
        "recorded": o.value.result, "digest": record.digest, "warnings": list(r.warnings),
        "stale": [{"process": m.command, "pid": m.pid, "unit": m.unit, "file": m.file, "package": m.package,
                   "docker": m.docker} for m in r.stale],
        "stale_risky": list(r.stale_risky), "processes_scanned": r.scanned,
        "needrestart": None if r.needrestart is None else {
            "installed": r.needrestart.installed, "run_by_apt": r.needrestart.run_by_apt,
            "mode": r.needrestart.mode, "mode_from": r.needrestart.source,
            "restarts_by_itself": r.needrestart.restarts},
        "restart_outlook": r.outlook,
    }


def review_report(ran: Ran[ReviewPlan, str], *, every: bool = False) -> Report:
    """``update.review``: the table (`render_review`) and the JSON; `review_exit` says the exit code."""
    code = review_exit(ran)
    risky = any(r.risky for o in ran.outcomes if (r := _review(o)))
    data = envelope("update.review", ran.outcomes, _review_fields, dry=ran.dry,
                    summary={"line": summary(ran.outcomes), "risky": risky, "exit": code})
    return Report(data, render_review(ran.outcomes, every=every), problems=code != EXIT_CLEAN)


def refresh_report(ran: Ran[str, str]) -> Report:
    """``apt-get update`` on each host (``update.review --refresh``): what ran, or why not."""
    rows = [failed_row(o, 2) if not o.ok else [o.host.name, o.value.result if o.value and o.value.result
                                                else f"would run: {o.value.plan if o.value else '-'}"]
            for o in ran.outcomes]
    return Report(envelope("update.review", ran.outcomes, lambda o: {}, dry=ran.dry), table(["HOST", "REFRESH"], rows))


# --------------------------------------------------------------------------- announce


def announce_report(ran: Ran[AnnouncePlan, Announced]) -> Report:
    """``update.announce``: each host's text, then a row per host with the notifier's answer."""
    texts: list[str] = []
    rows: list[list[Any]] = []
    for o in ran.outcomes:
        if o.value is None or not o.ok:
            rows.append(failed_row(o, 3))
            continue
        texts.append(o.value.plan.text)
        rows.append([o.host.name, o.value.plan.notifier, _response(o.value.result)])

    def fields(o: Outcome[Any]) -> dict[str, Any]:
        if o.value is None:
            return {}
        plan, result = o.value.plan, o.value.result
        return {"text": plan.text, "notifier": plan.notifier, "response": _response(result),
                "sent": bool(result and result.sent), "interruptions": list(plan.interruptions)}

    data = envelope("update.announce", ran.outcomes, fields, dry=ran.dry,
                    summary={"sent": sum(1 for o in ran.outcomes if o.value is not None and o.value.result)})
    return Report(data, "\n".join(texts) + "\n" + table(["HOST", "NOTIFIER", "RESULT"], rows))


def _response(result: Announced | None) -> str:
    return result.response if result is not None else "not sent (--dry)"


# --------------------------------------------------------------------------- apply


def render_plan(outcomes: Sequence[Outcome[Any]]) -> str:
    """A row per host: how many upgrades, what ``--hold`` keeps, the risky ones, notes (or why it is refused)."""
    rows: list[list[Any]] = []
    for o in outcomes:
        if o.value is None:
            rows.append(failed_row(o, 5))
            continue
        p: ApplyPlan = o.value.plan
        rows.append([o.host.name, len(p.upgrading), ", ".join(p.hold) or None, ", ".join(p.risky) or None,
                     "; ".join(p.notes) or "ok"])
    return table(["HOST", "UPGRADES", "HELD NOW", "RISKY", "PLAN"], rows)


def render_apply(outcomes: Sequence[Outcome[Any]]) -> str:
    """A row per host: what was upgraded, Docker, the containers and projects, the log, the problems;
    then the processes that still run replaced files."""
    rows: list[list[Any]] = []
    stale: list[Any] = []
    for o in outcomes:
        r: ApplyResult | None = o.value.result if o.value is not None else None
        if r is None:
            rows.append(failed_row(o, 7))
            continue
        docker = "answering" if r.docker_ok else "NOT answering"
        running = f"{len(r.containers_after)}/{len(r.containers_before)}"
        rows.append([o.host.name, len(r.upgraded), docker, running, ", ".join(r.projects) or None, r.log,
                     "; ".join([*r.problems, *r.notes]) or "ok"])
        stale += [[o.host.name, s.pid, s.command, s.unit, " ".join(s.files)] for s in r.stale]
    out = [table(["HOST", "UPGRADED", "DOCKER", "CONTAINERS", "PROJECTS", "LOG", "STATUS"], rows)]
    if stale:
        out += ["", "Processes still running replaced files (restart them):",
                table(["HOST", "PID", "COMMAND", "UNIT", "DELETED FILES"], stale)]
    return "\n".join(out)


def _apply_fields(o: Outcome[Any]) -> dict[str, Any]:
    if o.value is None:
        return {}
    p: ApplyPlan = o.value.plan
    out: dict[str, Any] = {
        "upgrading": {k: list(v) for k, v in p.upgrading.items()}, "hold": list(p.hold), "risky": list(p.risky),
        "note": p.note, "review": p.record.digest, "removing": list(p.removing),
        "changed_since_review": list(p.since)}
    r: ApplyResult | None = o.value.result
    if r is not None:
        out.update(upgraded={k: list(v) for k, v in r.upgraded.items()}, log=r.log, docker_ok=r.docker_ok,
                   docker_error=r.docker_error, projects=list(r.projects),
                   containers_before=list(r.containers_before), containers_after=list(r.containers_after),
                   needs_restart=[{"pid": s.pid, "command": s.command, "unit": s.unit, "files": list(s.files)}
                                  for s in r.stale],
                   left=list(r.left), problems=list(r.problems), notes=list(r.notes),
                   differences=list(r.differences), prediction=r.prediction.as_dict())
    return out


def apply_report(ran: Ran[ApplyPlan, ApplyResult]) -> Report:
    """``update.apply``: the plan (dry, refused, or before the question), or what the apply did and found."""
    results = [r for _, r in ran.results()]
    data = envelope("update.apply", ran.outcomes, _apply_fields, dry=ran.dry,
                    summary={"applied": ran.acted, "upgraded": sum(len(r.upgraded) for r in results),
                             "problems": sum(bool(r.problems) for r in results)})
    text = render_apply(ran.outcomes) if ran.acted else render_plan(ran.outcomes)
    return Report(data, text, problems=any(r.problems for r in results))
