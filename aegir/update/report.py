"""Tables and JSON for `update.review`, `update.announce` and `update.apply`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aegir.fleet import Outcome
from aegir.report import host_entry, table
from aegir.update.apply import ApplyPlan, ApplyResult
from aegir.update.classify import HostReview, PackageReview, fleet_summary
from aegir.update.review import Reviewed

#: update.review's exit codes (the runbook's "review before apt upgrade").
EXIT_CLEAN, EXIT_RISKY, EXIT_ERROR = 0, 1, 2


def review_exit(outcomes: Sequence[Outcome[Reviewed]]) -> int:
    """2 when a host could not be reviewed, else 1 when an upgrade is risky, else 0."""
    if any(not o.ok for o in outcomes):
        return EXIT_ERROR
    return EXIT_RISKY if any(o.value and o.value.review.risky for o in outcomes) else EXIT_CLEAN


def summary(outcomes: Sequence[Outcome[Reviewed]]) -> str:
    return fleet_summary([(o.host.name, o.value.review if o.value else None, o.error) for o in outcomes])


def _live_restore(r: HostReview) -> str:
    if r.live_restore is None:
        return f"unknown ({r.docker_error})" if r.docker_error else "-"
    return "on" if r.live_restore else "off"


#: The package classes, most serious first (`PackageReview.kind`).
CLASSES = ("docker", "crucial", "reboot", "security", "other")


def needs_decision(p: PackageReview) -> bool:
    """A package the operator must look at before `apt upgrade`: it restarts Docker or a crucial unit, or needs a reboot."""
    return p.risky or "reboot" in p.kinds


def class_counts(r: HostReview) -> str:
    """``6 upgrades: 2 docker, 1 crucial, 1 reboot, 1 security, 1 other``."""
    counts = [(k, len(r.of_kind(k))) for k in CLASSES]
    return f"{len(r.packages)} upgrades: " + ", ".join(f"{n} {k}" for k, n in counts if n)


def render_review(outcomes: Sequence[Outcome[Reviewed]], *, every: bool = False) -> str:
    """What needs a decision first: the risky and reboot packages, held, kept back and removed ones;
    then a count per class and host, a row per host, the fleet line. `every`: a row for every package."""
    rows: list[list[Any]] = []
    hosts: list[list[Any]] = []
    counts: list[str] = []
    for o in outcomes:
        if o.value is None:
            hosts.append([o.host.name, None, None, None, o.status])
            continue
        r = o.value.review
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
        if r.packages:
            hidden = 0 if every else sum(not needs_decision(p) for p in r.packages)
            counts.append(f"{o.host.name}: {class_counts(r)}"
                          + (f" ({hidden} not listed: update.review --all lists every package)" if hidden else ""))
    out = []
    if rows:
        head = ["HOST", "PACKAGE", "OLD", "NEW", *(["ORIGIN"] if every else []), "KIND", "WHY"]
        out += [table(head, rows), ""]
    if counts:
        out += [*counts, ""]
    out += [table(["HOST", "UPGRADES", "RISKY", "LIVE-RESTORE", "REVIEW"], hosts)]
    out += [f"warning: {o.host.name}: {w}" for o in outcomes if o.value for w in o.value.review.warnings]
    out += ["", summary(outcomes)]
    return "\n".join(out)


def review_json(outcomes: Sequence[Outcome[Reviewed]]) -> dict[str, Any]:
    hosts = []
    for o in outcomes:
        entry = host_entry(o)
        if o.value is not None:
            r = o.value.review
            entry.update(
                risky=r.risky, headline=r.headline(), effects=list(r.effects()), dist=r.dist,
                live_restore=r.live_restore, docker_error=r.docker_error,
                packages=[{"name": p.name, "old": p.old, "new": p.new, "origin": p.origin, "kind": p.kind,
                           "kinds": list(p.kinds), "reasons": list(p.reasons), "restarts": list(p.restarts),
                           "risky": p.risky} for p in r.packages],
                held=list(r.held), kept_back=list(r.kept_back), removals=list(r.removals),
                docker_removals=list(r.docker_removals),
                docker_dependencies={k: list(v) for k, v in r.docker_deps.items()},
                recorded=o.value.path, digest=o.value.record.digest, warnings=list(r.warnings),
            )
        hosts.append(entry)
    return {"hosts": hosts, "summary": summary(outcomes),
            "risky": any(h.get("risky") for h in hosts), "exit": review_exit(outcomes)}


def render_plan(outcomes: Sequence[Outcome[ApplyPlan]]) -> str:
    rows: list[list[Any]] = []
    for o in outcomes:
        if o.value is None:
            rows.append([o.host.name, None, None, None, o.status])
            continue
        p = o.value
        rows.append([o.host.name, len(p.upgrading), ", ".join(p.hold) or None, ", ".join(p.risky) or None,
                     "; ".join(p.notes) or "ok"])
    return table(["HOST", "UPGRADES", "HELD NOW", "RISKY", "PLAN"], rows)


def plan_json(outcomes: Sequence[Outcome[ApplyPlan]]) -> list[dict[str, Any]]:
    out = []
    for o in outcomes:
        entry = host_entry(o)
        if o.value is not None:
            entry.update(upgrading={k: list(v) for k, v in o.value.upgrading.items()}, hold=list(o.value.hold),
                         risky=list(o.value.risky), note=o.value.note, review=o.value.record.digest,
                         removing=list(o.value.removing), changed_since_review=list(o.value.since))
        out.append(entry)
    return out


def render_apply(outcomes: Sequence[Outcome[ApplyResult]]) -> str:
    rows: list[list[Any]] = []
    stale: list[Any] = []
    for o in outcomes:
        r = o.value
        if r is None:
            rows.append([o.host.name, None, None, None, None, None, o.status])
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


def apply_json(outcomes: Sequence[Outcome[ApplyResult]]) -> dict[str, Any]:
    hosts = []
    for o in outcomes:
        entry = host_entry(o)
        r = o.value
        if r is not None:
            entry.update(upgraded={k: list(v) for k, v in r.upgraded.items()}, log=r.log, docker_ok=r.docker_ok,
                         docker_error=r.docker_error, projects=list(r.projects),
                         containers_before=list(r.containers_before), containers_after=list(r.containers_after),
                         needs_restart=[{"pid": s.pid, "command": s.command, "unit": s.unit, "files": list(s.files)}
                                        for s in r.stale],
                         left=list(r.left), problems=list(r.problems), notes=list(r.notes),
                         differences=list(r.differences))
        hosts.append(entry)
    return {"hosts": hosts}
