"""Tables and JSON for `mysql`: the fleet's WAL table, a plan, a checkpoint's result."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

from aegir.disk.facts import Archive
from aegir.disk.report import ARCHIVE_METRICS, archive_cells, archive_samples, labels, metrics_text
from aegir.fleet import Outcome
from aegir.mysql.facts import AppWal
from aegir.report import age, human, printable, table

WAL_HEADERS = ["HOST", "APP", "WAL", "FILES", "OLDEST", "NEWEST", "DB", "ARCHIVE", "CHECKPOINTS", "OLDEST CHECKPOINT",
               "NEWEST CHECKPOINT", "RETENTION", "FLAG"]


def wal_rows(outcomes: Sequence[Outcome[tuple[AppWal, ...]]], flagged: set[tuple[str, str]],
             now: float, archive_flagged: AbstractSet[tuple[str, str]] = frozenset()) -> list[dict[str, Any]]:
    """One row per host x app, sorted by WAL size (largest first); failed hosts keep a row saying why."""
    rows: list[dict[str, Any]] = []
    for o in outcomes:
        if not o.ok:
            rows.append({"host": o.host.name, "app": None, "error": o.status})
            continue
        for a in o.value or ():
            arc = a.archive
            rows.append({
                "host": o.host.name, "app": a.path, "wal_bytes": a.wal_bytes, "files": a.files,
                "oldest": a.oldest, "oldest_age": _age(a.oldest_time, now), "newest": a.newest,
                "newest_age": _age(a.newest_time, now), "db_bytes": a.db_bytes, "checkpoints": a.checkpoints,
                "last_checkpoint_age": _age(a.last_checkpoint, now),
                "archive_bytes": arc.bytes if arc else None,
                "oldest_checkpoint": arc.oldest if arc else None,
                "oldest_checkpoint_age": _age(arc.oldest_time, now) if arc else None,
                "newest_checkpoint": arc.newest if arc else None,
                "keep": arc.keep if arc else None, "retention": arc.retention if arc else None,
                "over": (o.host.name, a.path) in flagged,
                "archive_over": (o.host.name, a.path) in archive_flagged,
            })
    return sorted(rows, key=lambda r: (r.get("app") is not None, r.get("wal_bytes") or 0), reverse=True)


def _age(t: float | None, now: float) -> int | None:
    return None if t is None else int(now - t)


def wal_table(rows: Sequence[Mapping[str, Any]], limit: int | None, archive_limit: int | None = None,
              archives: Mapping[tuple[str, str], Archive | None] | None = None, now: float = 0.0) -> str:
    lines = []
    for r in rows:
        if r.get("app") is None:
            lines.append([r["host"], None, r.get("error"), *[None] * (len(WAL_HEADERS) - 3)])
            continue
        flags = [f"OVER {human(limit)}"] * bool(r["over"]) + [f"ARCHIVE OVER {human(archive_limit)}"] * bool(
            r.get("archive_over"))
        lines.append([
            r["host"], r["app"], human(r["wal_bytes"]), r["files"],
            _file(r["oldest"], r["oldest_age"]), _file(r["newest"], r["newest_age"]), human(r["db_bytes"]),
            *archive_cells((archives or {}).get((r["host"], r["app"])), now), "; ".join(flags),
        ])
    return table(WAL_HEADERS, lines) if lines else "no app with a database (db/ or wal/) on these hosts"


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


def plan_text(host: str, plan: Mapping[str, Any]) -> str:
    """The steps and their exact commands, numbered."""
    t = plan.get("target", {})
    lines = [f"{host}: {plan.get('mode')} checkpoint of {t.get('path')} (db {t.get('db')}, wal {t.get('wal')}), "
             f"service {plan.get('service')}, dependents: {', '.join(plan.get('dependents') or []) or 'none'}",
             f"  archive {t.get('archive')}; state and log in {t.get('state')}"]
    login = plan.get("login") or {}
    if login:
        lines.append(printable(f"  log in as {login.get('user')} using {login.get('how')}, client {login.get('client')}"
                               + (f" ({login['note']})" if login.get("note") else "")))
    for i, s in enumerate(plan.get("steps") or (), 1):
        lines.append(f"  {i:2}. {s['name']}: {s['what']}")
        lines += [f"        $ {c}" for c in s.get("commands") or ()]
    return "\n".join(lines)


def result_text(host: str, result: Mapping[str, Any] | None) -> str:
    if not result:
        return f"{host}: no checkpoint result"
    if not result.get("ok"):
        rec = result.get("recovered") or {}
        did = "; ".join(rec.get("did") or []) if isinstance(rec, dict) else ""
        return (f"{host}: checkpoint run {result.get('run')} FAILED"
                + (f" at step {result['failed_step']}" if result.get("failed_step") else "")
                + f": {result.get('error')}" + (f"\n  recovered: {did}" if did else ""))
    steps = table(["STEP", "SECONDS"], [[s["step"], f"{s['seconds']:.2f}"] for s in result.get("steps") or ()])
    return "\n".join([
        f"{host}: {result.get('mode')} checkpoint {result.get('run')} done: {result.get('entry')}",
        f"  WAL {human(result.get('wal_before'))} -> {human(result.get('wal_after'))}; "
        f"archived {len(result.get('archived') or [])} binary logs; current {result.get('current')}; "
        f"database down {result.get('downtime', 0):.2f}s"
        + (f"; removed old checkpoints {', '.join(result['removed'])}" if result.get("removed") else ""),
        steps,
    ])
