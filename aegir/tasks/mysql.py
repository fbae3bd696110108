"""MySQL/MariaDB: how big the binary logs ("WAL") grow, and checkpoints that cannot lose data.

``mysql.wal`` reports every app with a database across the fleet;
``mysql.checkpoint PATH`` snapshots an app's database and archives and purges
its binary logs, on the host, as one detached process (``cold``: the
runbook's stop/copy/start; ``hot``: mariadb-backup, no interruption);
``mysql.status PATH`` reattaches to it; ``mysql.restore PATH --at ID --into
DIR`` rebuilds a database from a checkpoint and the logs since.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING, Any

from invoke import Collection, Exit

from aegir.errors import AegirError
from aegir.report import FORMAT_HELP, check_format, emit, host_entry
from aegir.tasks.base import EXIT_PROBLEM, confirm, exit_if_failed, inventory, is_dry, one_host, targets, task
from aegir.tasks.flags import ABS_PATH, APP_PATH, POSITIVE, SIZE, choice, formats

if TYPE_CHECKING:  # pragma: no cover - the area's code is imported by the task that runs (inv --list stays quick)
    from aegir import fleet
    from aegir.host import HostContext
    from aegir.mysql.plan import Options

PATH_HELP = "The app: its folder in full (/srv/apps/x), apps/x, users/x or x (= apps/x)."


@task(help={"over": "Flag the apps whose WAL is larger than SIZE (500M, 2G) and exit 1 if any.",
            "archive_over": "Flag the apps whose checkpoint archive is larger than SIZE and exit 1 if any.",
            "format": FORMAT_HELP + " Also 'prometheus': node_exporter's textfile collector format."},
      kinds={"over": SIZE, "archive_over": SIZE, "format": formats("prometheus")})
def wal(c, over=None, archive_over=None, format="table"):
    """Report each app's binary logs (WAL), database and checkpoint archive."""
    from aegir import fleet
    from aegir.mysql import report, steps
    from aegir.mysql.plan import archive_over_limit, over_limit, parse_size

    fmt = format if format == "prometheus" else check_format(format)
    limit = parse_size(over, "--over") if over else None
    archive_limit = parse_size(archive_over, "--archive-over") if archive_over else None

    def flagged(outcomes: list[fleet.Outcome[Any]]) -> set[tuple[str, str]]:
        return {(o.host.name, a.path) for o in outcomes if o.ok for a in over_limit(o.value or (), limit)}

    def archive_flagged(outcomes: list[fleet.Outcome[Any]]) -> set[tuple[str, str]]:
        return {(o.host.name, a.path) for o in outcomes if o.ok
                for a in archive_over_limit(o.value or (), archive_limit)}

    now = time.time()
    outcomes = fleet.each(c, targets(c), steps.wal, label="mysql.wal")
    rows = report.wal_rows(outcomes, flagged(outcomes), now, archive_flagged(outcomes))
    if fmt == "prometheus":
        print(report.wal_prometheus(outcomes), flush=True)
    else:
        archives = {(o.host.name, a.path): a.archive for o in outcomes if o.ok for a in o.value or ()}
        emit(fmt, data={"over": limit, "archive_over": archive_limit, "apps": rows},
             text=report.wal_table(rows, limit, archive_limit, archives, now))
    exit_if_failed(outcomes, problems=bool(flagged(outcomes) or archive_flagged(outcomes)))


def _opts(basedir: str | None, db: str | None, service: str | None, mode: str | None, keep: Any) -> Options:
    from aegir.mysql.plan import Options

    try:
        return Options(basedir, db, service, mode, int(keep) if keep not in (None, "") else None)
    except ValueError:
        raise AegirError(f"--keep must be a number, not {keep!r}") from None


@task(help={"path": PATH_HELP, "basedir": "The folder holding db/ and wal/, when it is not the app's.",
            "db": "The database files' folder, when it is not <basedir>/db.",
            "service": "The database's Compose service (default: the one that mounts the db folder).",
            "mode": "cold (stop, copy, start: the runbook's) or hot (mariadb-backup, no interruption).",
            "keep": "Keep this many checkpoints in the archive (default: x-aegir.mysql.keep, else all).",
            "dry": "Print the plan with its exact commands; change nothing.",
            "yes": "Do not ask for confirmation.", "format": FORMAT_HELP},
      kinds={"path": APP_PATH, "mode": choice("cold", "hot"), "keep": POSITIVE})
def checkpoint(c, path, basedir=None, db=None, service=None, mode=None, keep=None, dry=False, yes=False,
               format="table"):
    """Snapshot an app's database, archive then purge its binary logs (on the host)."""
    from aegir import fleet
    from aegir.mysql import report, steps
    from aegir.mysql.onhost import FAULT_ENV, now_id
    from aegir.mysql.plan import app_path
    from aegir.update import settings as update_settings

    fmt = check_format(format)
    host = one_host(c, "mysql.checkpoint runs on one host")
    opts = _opts(basedir, db, service, mode, keep)
    notifier = update_settings.for_host(inventory(c), host).notifier
    dry = is_dry(c, dry)

    def one(hc: HostContext) -> dict[str, Any]:
        full = app_path(hc.host.srv, path)
        steps.install(hc)
        plan = steps.plan(hc, full, opts)
        if fmt == "table":
            print(report.plan_text(hc.name, plan), flush=True)
        if dry:
            return {"plan": plan, "result": None}
        cold = plan["mode"] == "cold"
        confirm(f"{'Stop' if cold else 'Back up'} {plan['service']} of {full} on {hc.name} and purge its archived "
                "binary logs?", yes=yes, label="mysql.checkpoint", verb="checkpoint")
        told = steps.announce(hc, notifier, full, plan["service"], plan["dependents"], "a few seconds") if cold \
            else "hot mode: no interruption, nobody told"
        print(f"{hc.name}: announce: {told}", file=sys.stderr, flush=True)
        run = now_id()
        t = steps.target(hc, full, opts)
        env = {FAULT_ENV: os.environ[FAULT_ENV]} if os.environ.get(FAULT_ENV) else {}  # the test hook
        offset = steps.log_size(hc, t.state)  # the lines of earlier runs are not shown again
        steps.start(hc, full, opts, run, t.key, env)
        st = steps.follow(hc, t.state, run, offset=offset)
        return {"plan": plan, "announce": told, "result": st.result}

    outcomes = fleet.each(c, [host], one, label="mysql.checkpoint", serial=True)
    _show(fmt, outcomes)


def _show(fmt: str, outcomes: list[fleet.Outcome[dict[str, Any]]]) -> None:
    from aegir.mysql import report

    o = outcomes[0]
    result = o.value.get("result") if o.value else None
    text = report.result_text(o.host.name, result) if o.ok and result else (o.status if not o.ok else "")
    emit(fmt, data=host_entry(o, **(o.value or {})), text=text)
    exit_if_failed(outcomes, problems=bool(result) and not (result or {}).get("ok"))


@task(help={"path": PATH_HELP, "basedir": "As for mysql.checkpoint.", "db": "As for mysql.checkpoint.",
            "format": FORMAT_HELP}, kinds={"path": APP_PATH})
def status(c, path, basedir=None, db=None, format="table"):
    """Reattach to an app's checkpoint: follow it if it runs, then show its result."""
    from aegir import fleet
    from aegir.mysql import steps
    from aegir.mysql.plan import app_path

    fmt = check_format(format)
    host = one_host(c, "mysql.status reads one host")
    opts = _opts(basedir, db, None, None, None)

    def one(hc: HostContext) -> dict[str, Any]:
        t = steps.target(hc, app_path(hc.host.srv, path), opts)
        st = steps.follow(hc, t.state, None)
        return {"result": st.result, "running": st.lock_held and not st.finished(None)}

    outcomes = fleet.each(c, [host], one, label="mysql.status", serial=True)
    _show(fmt, outcomes)


@task(help={"path": PATH_HELP, "at": "The checkpoint to start from (its id, or 'latest').",
            "into": "An empty scratch folder on the host (full path): the restored datadir goes in <into>/db.",
            "until": "Stop replaying at this time ('YYYY-MM-DD HH:MM:SS', the server's clock).",
            "service": "The database's Compose service (default: the one that mounts db/).", "format": FORMAT_HELP},
      kinds={"path": APP_PATH, "into": ABS_PATH},
      no_dry="mysql.restore has no dry run: it writes only into --into, a scratch folder that must be empty")
def restore(c, path, at, into, until=None, service=None, format="table"):
    """Rebuild an app's database in a scratch folder: a checkpoint + the logs since."""
    from aegir import fleet
    from aegir.mysql import steps
    from aegir.mysql.plan import app_path

    fmt = check_format(format)
    host = one_host(c, "mysql.restore runs on one host")

    def one(hc: HostContext) -> Any:
        steps.install(hc)
        return steps.restore(hc, app_path(hc.host.srv, path), at, into, until, service)

    outcomes = fleet.each(c, [host], one, label="mysql.restore")
    o = outcomes[0]
    text = (f"{o.host.name}: restored {o.value['at']} into {o.value['into']}, replaying "
            f"{len(o.value['replayed'])} binary logs ({', '.join(o.value['replayed'])})" if o.ok and o.value
            else f"{o.host.name}: {o.status}")
    emit(fmt, data=host_entry(o, restore=o.value), text=text)
    if not o.ok:
        raise Exit(code=EXIT_PROBLEM)


ns = Collection("mysql")
ns.add_task(wal)
ns.add_task(checkpoint)
ns.add_task(status)
ns.add_task(restore)
