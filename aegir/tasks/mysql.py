"""MySQL/MariaDB: how big the binary logs ("WAL") grow, and checkpoints that cannot lose data.

``mysql.wal`` reports every app with a database across the fleet;
``mysql.checkpoint PATH`` snapshots an app's database and archives and purges
its binary logs, on the host, as one detached process (``cold``: the
runbook's stop/copy/start; ``hot``: mariadb-backup, no interruption);
``mysql.status PATH`` reattaches to it; ``mysql.restore PATH --at ID --into
DIR`` rebuilds a database from a checkpoint and the logs since. A host whose
/srv is not mounted fails all four ("/srv is not mounted: run boot.mount").
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from invoke import Collection, Context

from aegir.errors import AegirError, UsageError
from aegir.report import FORMAT_HELP, check_format
from aegir.tasks.base import act, finish, fleet_read, inventory, one_host, task
from aegir.tasks.flags import ABS_PATH, APP_PATH, CHECKPOINT, POSITIVE, SERVICE, SIZE, choice, formats

if TYPE_CHECKING:  # pragma: no cover - the area's code is imported by the task that runs (inv --list stays quick)
    from aegir.mysql.commands import Options

PATH_HELP = "The app: its folder in full (/srv/apps/x), apps/x, users/x or x (= apps/x)."


@task(help={"over": "Flag the apps whose WAL is larger than SIZE (500M, 2G) and exit 1 if any.",
            "archive_over": "Flag the apps whose checkpoint archive is larger than SIZE and exit 1 if any.",
            "format": FORMAT_HELP + " Also 'prometheus': node_exporter's textfile collector format."},
      kinds={"over": SIZE, "archive_over": SIZE, "format": formats("prometheus")})
def wal(c: Context, over: str | None = None, archive_over: str | None = None, format: str = "table") -> None:
    """Report each app's binary logs (WAL), database and checkpoint archive."""
    from aegir.action import Report
    from aegir.mysql import facts, report
    from aegir.mysql.plan import parse_size

    fmt = format if format == "prometheus" else check_format(format)
    limit = parse_size(over, "--over") if over else None
    archive_limit = parse_size(archive_over, "--archive-over") if archive_over else None
    outcomes = fleet_read(c, "mysql.wal", facts.read_wal)
    shown = report.wal_report(outcomes, limit, archive_limit, time.time())
    if fmt == "prometheus":
        shown = Report(shown.data, report.wal_prometheus(outcomes), problems=shown.problems, verbatim=True)
    finish(c, fmt, shown, outcomes)


def _opts(basedir: str | None, db: str | None, service: str | None, mode: str | None,
          keep: int | None) -> Options:
    """mysql.checkpoint's arguments, checked before any host is read (`UsageError`, exit 2)."""
    from aegir.mysql.commands import Options

    try:
        return Options(basedir, db, service, mode, keep)
    except AegirError as exc:
        raise UsageError(f"mysql.checkpoint {exc.message}") from None


@task(help={"path": PATH_HELP, "basedir": "The folder holding db/ and wal/, when it is not the app's.",
            "db": "The database files' folder, when it is not <basedir>/db.",
            "service": "The database's Compose service (default: the one that mounts the db folder).",
            "mode": "cold (stop, copy, start: the runbook's) or hot (mariadb-backup, no interruption).",
            "keep": "Keep this many checkpoints in the archive (default: x-aegir.mysql.keep, else all).",
            "dry": "Print the plan with its exact commands; change nothing (nothing installed either).",
            "yes": "Do not ask for confirmation.", "format": FORMAT_HELP},
      kinds={"path": APP_PATH, "service": SERVICE, "mode": choice("cold", "hot"), "keep": POSITIVE})
def checkpoint(c: Context, path: str, basedir: str | None = None, db: str | None = None, service: str | None = None,
               mode: str | None = None, keep: int | None = None, dry: bool = False, yes: bool = False,
               format: str = "table") -> None:
    """Snapshot an app's database, archive then purge its binary logs (on the host)."""
    from aegir.mysql.onhost import FAULT_ENV
    from aegir.mysql.steps import Checkpoint
    from aegir.update import settings as update_settings

    host = one_host(c, "mysql.checkpoint runs on one host")
    notifier = update_settings.for_host(inventory(c), host).notifier
    hook = {FAULT_ENV: os.environ[FAULT_ENV]} if os.environ.get(FAULT_ENV) else {}  # the tests' fault hook
    action = Checkpoint(path, _opts(basedir, db, service, mode, keep), notifier, hook)
    act(c, action, fmt=format, dry=dry, yes=yes, hosts=[host])


@task(help={"path": PATH_HELP, "basedir": "As for mysql.checkpoint.", "db": "As for mysql.checkpoint.",
            "format": FORMAT_HELP}, kinds={"path": APP_PATH})
def status(c: Context, path: str, basedir: str | None = None, db: str | None = None, format: str = "table") -> None:
    """Reattach to an app's checkpoint: follow it if it runs, then show its result."""
    from aegir.mysql import report, steps

    fmt = check_format(format)
    _opts(basedir, db, None, None, None)  # the state folder is the app's, whatever --basedir and --db say
    host = one_host(c, "mysql.status reads one host")
    outcomes = fleet_read(c, "mysql.status", lambda hc: steps.status_of(hc, path), hosts=[host], serial=True)
    finish(c, fmt, report.status_report(outcomes), outcomes)


@task(help={"path": PATH_HELP, "at": "The checkpoint to start from (its id, or 'latest').",
            "into": "An empty scratch folder on the host (full path): the restored datadir goes in <into>/db.",
            "until": "Stop replaying at this time ('YYYY-MM-DD HH:MM:SS', the server's clock).",
            "service": "The database's Compose service (default: the one that mounts db/).",
            "dry": "Check the checkpoint, the chain of logs and the scratch folder, and say what would be "
                   "replayed; write nothing.",
            "format": FORMAT_HELP},
      kinds={"path": APP_PATH, "at": CHECKPOINT, "into": ABS_PATH, "service": SERVICE})
def restore(c: Context, path: str, at: str, into: str, until: str | None = None, service: str | None = None,
            dry: bool = False, format: str = "table") -> None:
    """Rebuild an app's database in a scratch folder: a checkpoint + the logs since."""
    from aegir.mysql.commands import restore_args
    from aegir.mysql.steps import Restore

    try:
        restore_args(at, into, until, service)
    except AegirError as exc:
        raise UsageError(f"mysql.restore {exc.message}") from None
    host = one_host(c, "mysql.restore runs on one host")
    act(c, Restore(path, at, into, until, service), fmt=format, dry=dry, hosts=[host])


ns = Collection("mysql")
ns.add_task(wal)
ns.add_task(checkpoint)
ns.add_task(status)
ns.add_task(restore)
