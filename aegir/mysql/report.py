"""What the mysql tasks print: the fleet's WAL table, a checkpoint's plan and result, a restore, a status.

Every JSON document is `aegir.report.envelope` (``{"task", "dry", "hosts":
[{"host", "status", "error", ...}], "summary"}``); a host that failed or could
not be reached is a `aegir.report.failed_row` in a table. ``mysql.wal
--format prometheus`` prints gauges instead (`wal_prometheus`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from aegir.action import HostRun, Ran, Report
from aegir.disk.report import ARCHIVE_METRICS, archive_cells, archive_samples, labels, metrics_text
from aegir.fleet import Outcome
from aegir.mysql.facts import AppWal
from aegir.mysql.plan import (
    Checkpointed,
    CheckpointPlan,
    CheckpointStatus,
    Restored,
    RestorePlan,
    archive_over_limit,
    over_limit,
)
from aegir.report import age, envelope, failed_row, human, printable, table

P = TypeVar("P")
R = TypeVar("R")

WAL_HEADERS = ["HOST", "APP", "WAL", "FILES", "OLDEST", "NEWEST", "DB", "ARCHIVE", "CHECKPOINTS", "OLDEST CHECKPOINT",
               "NEWEST CHECKPOINT", "RETENTION", "FLAG"]
FAILED_HEADERS = ["HOST", "RESULT"]


def failed_table(outcomes: Sequence[Outcome[Any]]) -> str:
    """The hosts of `outcomes` that failed or could not be reached, one `failed_row` each ("" when none)."""
    rows = [failed_row(o, len(FAILED_HEADERS)) for o in outcomes if not o.ok]
    return table(FAILED_HEADERS, rows) if rows else ""


def _joined(*parts: str) -> str:
    return "\n\n".join(p for p in parts if p)


# --------------------------------------------------------------------------- mysql.wal


def app_row(a: AppWal, now: float, over: bool, archive_over: bool) -> dict[str, Any]:
    """One app of a host in mysql.wal's JSON (ages in seconds)."""
    arc = a.archive
    return {
        "app": a.path, "wal_bytes": a.wal_bytes, "files": a.files,
        "oldest": a.oldest, "oldest_age": _age(a.oldest_time, now), "newest": a.newest,
        "newest_age": _age(a.newest_time, now), "db_bytes": a.db_bytes, "checkpoints": a.checkpoints,
        "last_checkpoint_age": _age(a.last_checkpoint, now),
        "archive_bytes": arc.bytes if arc else None,
        "oldest_checkpoint": arc.oldest if arc else None,
        "oldest_checkpoint_age": _age(arc.oldest_time, now) if arc else None,
        "newest_checkpoint": arc.newest if arc else None,
        "keep": arc.keep if arc else None, "retention": arc.retention if arc else None,
        "over": over, "archive_over": archive_over,
    }


def _age(t: float | None, now: float) -> int | None:
    return None if t is None else int(now - t)


def wal_report(outcomes: Sequence[Outcome[tuple[AppWal, ...]]], limit: int | None, archive_limit: int | None,
               now: float) -> Report:
    """Every app of every host, largest WAL first, flagged over `limit` / `archive_limit` (exit 1 if any);
    then the hosts that could not be read, a row each saying why (exit 1 too)."""
    flagged = {(o.host.name, a.path) for o in outcomes for a in over_limit(o.value or (), limit)}
    arch = {(o.host.name, a.path) for o in outcomes for a in archive_over_limit(o.value or (), archive_limit)}
    apps = sorted(((o.host.name, a) for o in outcomes if o.ok for a in o.value or ()),
                  key=lambda ha: ha[1].wal_bytes or 0, reverse=True)
    lines: list[list[Any]] = []
    for host, a in apps:
        flags = [f"OVER {human(limit)}"] * ((host, a.path) in flagged) + [
            f"ARCHIVE OVER {human(archive_limit)}"] * ((host, a.path) in arch)
        lines.append([host, a.path, human(a.wal_bytes), a.files, _file(a.oldest, _age(a.oldest_time, now)),
                      _file(a.newest, _age(a.newest_time, now)), human(a.db_bytes), *archive_cells(a.archive, now),
                      "; ".join(flags)])

    def fields(o: Outcome[tuple[AppWal, ...]]) -> dict[str, Any]:
        host = o.host.name
        return {"apps": [app_row(a, now, (host, a.path) in flagged, (host, a.path) in arch)
                         for name, a in apps if name == host]} if o.ok else {}

    data = envelope("mysql.wal", outcomes, fields, summary={
        "apps": len(apps), "over": limit, "archive_over": archive_limit, "flagged": len(flagged),
        "archive_flagged": len(arch)})
    text = _joined(table(WAL_HEADERS, lines) if lines else "", failed_table(outcomes)) or \
        "no app with a database (db/ or wal/) on these hosts"
    return Report(data, text, problems=bool(flagged or arch))


def _file(name: str | None, seconds: int | None) -> str | None:
    return None if name is None else f"{name} ({age(seconds)})"


#: mysql.wal's own gauges, then the archive's (the same as disk.report's).
WAL_METRICS = (
    ("aegir_mysql_wal_up", "1 when the host answered mysql.wal, else 0."),
    ("aegir_mysql_wal_bytes", "Bytes of an app's binary logs (wal/, or the logs kept in its datadir)."),
    ("aegir_mysql_wal_files", "Binary log files of an app."),
    ("aegir_mysql_db_bytes", "Bytes of an app's datadir (db/), binary logs kept there left out."),
    *ARCHIVE_METRICS,
)


def wal_prometheus(outcomes: Sequence[Outcome[tuple[AppWal, ...]]]) -> str:
    """mysql.wal in Prometheus' text format (node_exporter's textfile collector)."""
    samples: dict[str, list[str]] = {name: [] for name, _ in WAL_METRICS}
    for o in outcomes:
        host = o.host.name
        samples["aegir_mysql_wal_up"].append(f"{labels(host=host)} {1 if o.ok else 0}")
        for a in o.value or ():
            lab = labels(host=host, app=a.path)
            for name, value in (("aegir_mysql_wal_bytes", a.wal_bytes), ("aegir_mysql_wal_files", a.files),
                                ("aegir_mysql_db_bytes", a.db_bytes)):
                if value is not None:
                    samples[name].append(f"{lab} {value}")
        for name, lines in archive_samples(host, [a.archive for a in o.value or () if a.archive]).items():
            samples[name] += lines
    return metrics_text(WAL_METRICS, samples)


# --------------------------------------------------------------------------- mysql.checkpoint, mysql.status


def plan_text(host: str, plan: Mapping[str, Any]) -> str:
    """The steps and their exact commands, numbered (the program's plan; host text escaped)."""
    t = plan.get("target", {})
    lines = [f"{host}: {plan.get('mode')} checkpoint of {t.get('path')} (db {t.get('db')}, wal {t.get('wal')}), "
             f"service {plan.get('service')}, dependents: {', '.join(plan.get('dependents') or []) or 'none'}",
             f"  archive {t.get('archive')}; state and log in {t.get('state')}"]
    login = plan.get("login") or {}
    if login:
        lines.append(f"  log in as {login.get('user')} using {login.get('how')}, client {login.get('client')}"
                     + (f" ({login['note']})" if login.get("note") else ""))
    for i, s in enumerate(plan.get("steps") or (), 1):
        lines.append(f"  {i:2}. {s['name']}: {s['what']}")
        lines += [f"        $ {c}" for c in s.get("commands") or ()]
    return printable("\n".join(lines))


def result_text(host: str, result: Mapping[str, Any] | None) -> str:
    """A checkpoint run's result: its steps and durations, or why it failed and what the recovery did."""
    if not result:
        return f"{host}: no checkpoint result"
    if not result.get("ok"):
        rec = result.get("recovered") or {}
        did = "; ".join(rec.get("did") or []) if isinstance(rec, dict) else ""
        return printable(f"{host}: checkpoint run {result.get('run')} FAILED"
                         + (f" at step {result['failed_step']}" if result.get("failed_step") else "")
                         + f": {result.get('error')}" + (f"\n  recovered: {did}" if did else ""))
    steps = table(["STEP", "SECONDS"], [[s["step"], f"{s['seconds']:.2f}"] for s in result.get("steps") or ()])
    return "\n".join([printable(
        f"{host}: {result.get('mode')} checkpoint {result.get('run')} done: {result.get('entry')}\n"
        f"  WAL {human(result.get('wal_before'))} -> {human(result.get('wal_after'))}; "
        f"archived {len(result.get('archived') or [])} binary logs; current {result.get('current')}; "
        f"database down {result.get('downtime', 0):.2f}s"
        + (f"; removed old checkpoints {', '.join(result['removed'])}" if result.get("removed") else "")),
        steps,
    ])


def run_text(ran: Ran[P, R], planned: Callable[[str, P], str], acted: Callable[[str, R], str]) -> str:
    """A run as text: each host's plan (not acted: ``--dry``, before the question) or what acting returned,
    then the hosts that failed without a result (planning failed, or acting raised), a row each."""
    texts = []
    for o in ran.outcomes:
        if o.value is not None and not ran.acted:
            texts.append(planned(o.host.name, o.value.plan))
        elif o.value is not None and o.value.result is not None:
            texts.append(acted(o.host.name, o.value.result))
    unexplained = [o for o in ran.outcomes if not o.ok and (o.value is None or o.value.result is None)]
    return _joined("\n\n".join(texts), failed_table(unexplained))


def checkpoint_report(ran: Ran[CheckpointPlan, Checkpointed]) -> Report:
    """The plan with its exact commands (``--dry``, and before the question), then the run's result."""
    text = run_text(ran, lambda host, plan: plan_text(host, plan.program),
                    lambda host, done: result_text(host, done.result)
                    + (f"\n  {printable(done.problem)}" if done.problem else ""))

    def fields(o: Outcome[HostRun[CheckpointPlan, Checkpointed]]) -> dict[str, Any]:
        if o.value is None:
            return {}
        plan, done = o.value.plan, o.value.result
        return {"path": plan.path, "run": plan.run, "plan": plan.program,
                "announce": done.announce if done else None, "result": done.result if done else None,
                "problem": done.problem if done else None}

    done = [r for _, r in ran.results()]
    data = envelope("mysql.checkpoint", ran.outcomes, fields, dry=ran.dry, summary={
        "hosts": len(ran.outcomes), "planned": len(ran.plans()), "done": sum(r.why_failed is None for r in done)})
    return Report(data, text)


def status_report(outcomes: Sequence[Outcome[CheckpointStatus]]) -> Report:
    """Each app's last (or followed) run and its result; "no checkpoint ran" said as such. Exit 1 when the
    last run failed."""
    texts = []
    for o in outcomes:
        st = o.value
        if st is None:
            continue
        if st.run is None:
            texts.append(printable(f"{o.host.name}: no checkpoint ran for {st.path}"))
        elif st.result is None or st.result.get("run") != st.run:
            texts.append(printable(f"{o.host.name}: checkpoint run {st.run} of {st.path} has no result yet"))
        else:
            texts.append(result_text(o.host.name, st.result))

    def fields(o: Outcome[CheckpointStatus]) -> dict[str, Any]:
        st = o.value
        return {} if st is None else {"path": st.path, "run": st.run, "running": st.running, "result": st.result}

    found = [o.value for o in outcomes if o.value is not None]
    data = envelope("mysql.status", outcomes, fields, summary={
        "hosts": len(outcomes), "runs": sum(st.run is not None for st in found),
        "failed_runs": sum(bool(st.result) and not (st.result or {}).get("ok") for st in found)})
    problems = any(st.result is not None and not st.result.get("ok") for st in found)
    return Report(data, _joined("\n\n".join(texts), failed_table(outcomes)), problems=problems)


# --------------------------------------------------------------------------- mysql.restore


def restore_plan_text(host: str, plan: RestorePlan) -> str:
    """What a restore will do: the base, the logs it replays from where, the scratch folder, the image."""
    p = plan.program
    chain = list(p.get("chain") or ())
    start = p.get("start") or ["?", "?"]
    return printable(
        f"{host}: restore {plan.path} from checkpoint {p.get('at')} ({p.get('mode')}) into {p.get('into')}/db\n"
        f"  base {p.get('base')}\n"
        f"  replay {len(chain)} binary logs from {start[0]}:{start[1]}"
        + (f" until {plan.until}" if plan.until else "") + f": {', '.join(chain)}\n"
        f"  in a throw-away server of {p.get('image')} (no network, --skip-grant-tables); "
        f"the app's database ({p.get('service')}) is not touched")


def restored_text(host: str, done: Restored) -> str:
    """What a restore replayed, and where the restored datadir is."""
    r = done.result
    return printable(f"{host}: restored {r.get('at')} into {r.get('into')}, replaying "
                     f"{len(r.get('replayed') or [])} binary logs ({', '.join(r.get('replayed') or [])})"
                     + (f"\n  {done.problem}" if done.problem else ""))


def restore_report(ran: Ran[RestorePlan, Restored]) -> Report:
    """The restore's plan (``--dry``), or what it replayed."""
    text = run_text(ran, restore_plan_text, restored_text)

    def fields(o: Outcome[HostRun[RestorePlan, Restored]]) -> dict[str, Any]:
        if o.value is None:
            return {}
        done = o.value.result
        return {"path": o.value.plan.path, "plan": o.value.plan.program, "restore": done.result if done else None}

    data = envelope("mysql.restore", ran.outcomes, fields, dry=ran.dry, summary={
        "hosts": len(ran.outcomes), "restored": sum(r.problem is None for _, r in ran.results())})
    return Report(data, text)
