"""Acting on a host for `mysql`: install the on-host program, ask its plan, announce, start, follow.

The checkpoint itself runs on the host as one detached process (the program
in `aegir.mysql.onhost`, installed as ``<srv>/conf/aegir/mysql-checkpoint``);
aegir only starts it and follows its log and result file, so a dropped SSH
session stops the following, never the checkpoint. `follow` is also how
`mysql.status` reattaches.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from aegir.disk.facts import archive_cmd, parse_archives
from aegir.errors import AegirError, UnreachableError
from aegir.mysql import onhost
from aegir.mysql.facts import AppWal, RunState, parse_run_state, parse_wal, run_state_cmd, wal_cmd
from aegir.mysql.plan import Options, plan_cmd, program_path, restore_cmd, start_cmd
from aegir.notify import Notifier, send
from aegir.sh import batch, split_batch, write_file_cmd

if TYPE_CHECKING:  # pragma: no cover
    from aegir.host import HostContext

#: How often the log and the result file are read while a checkpoint runs.
POLL = 0.3
#: A run whose lock is free and that has no result this long after its start is dead.
START_GRACE = 15.0


def wal(hc: "HostContext") -> tuple[AppWal, ...]:
    """Every app's binary logs and database size, with its checkpoint archive: one round trip."""
    logs, kept = split_batch(hc.run(batch([wal_cmd(hc.host.srv), archive_cmd(hc.host.srv)])).stdout, 2)
    return parse_wal(logs.stdout, parse_archives(kept.stdout))


def install(hc: "HostContext") -> str:
    """Write the on-host program (atomically); returns its path."""
    path = program_path(hc.host.srv)
    hc.run(write_file_cmd(path, Path(onhost.__file__).read_text()))
    return path


def target(hc: "HostContext", path: str, opts: Options) -> onhost.Target:
    try:
        return onhost.target(path, srv=hc.host.srv, basedir=opts.basedir, db=opts.db)
    except onhost.CheckpointError as exc:
        raise AegirError(str(exc), host=hc.name) from None


def plan(hc: "HostContext", path: str, opts: Options) -> Mapping[str, Any]:
    """The program's plan for `path` (reads the compose file on the host; changes nothing)."""
    done = hc.run(plan_cmd(hc.host.srv, path, opts))
    try:
        return json.loads(done.stdout)
    except ValueError:
        raise AegirError(f"the checkpoint program printed no plan: {done.stdout[-200:]!r}", host=hc.name) from None


def announce(hc: "HostContext", notifier: Notifier | None, path: str, service: str, deps: list[str],
             expected: str) -> str:
    """Tell users of the coming interruption through update.announce's notifier."""
    if notifier is None:
        return "no notifier configured (update.notify): users were not told"
    text = (f"{hc.name}: checkpoint of the database of {path}: {service} stops for {expected}"
            + (f"; {', '.join(deps)} restart afterwards" if deps else "") + "\n")
    document = {"host": hc.name, "message": "mysql checkpoint", "when": "now", "text": text,
                "interruptions": [{"service": s, "expected": expected} for s in (service, *deps)]}
    return send(hc, notifier, text, document, when="now")


def start(hc: "HostContext", path: str, opts: Options, run: str, key: str,
          env: Mapping[str, str] | None = None) -> None:
    hc.run(start_cmd(hc.host.srv, path, opts, run, key=key, env=sorted((env or {}).items())))


def log_size(hc: "HostContext", state_dir: str) -> int:
    """The size of a checkpoint's log now (where the next run's lines will begin)."""
    return len(read_state(hc, state_dir).log.encode())


def read_state(hc: "HostContext", state_dir: str, offset: int = 0) -> RunState:
    return parse_run_state(hc.run(run_state_cmd(state_dir, offset)).stdout)


def follow(hc: "HostContext", state_dir: str, run: str | None, *, out: TextIO | None = None,
           since: float | None = None, clock: Callable[[], float] = time.monotonic, offset: int = 0) -> RunState:
    """Print the run's log as it grows (on `out`, stderr by default) until its result is there.

    `offset`: where in the log the run's lines begin (the log's size before it started: earlier runs'
    lines are not shown again). `run` None follows whatever run is in progress (reattach). A dropped SSH
    connection ends the following with a message saying the checkpoint goes
    on and how to reattach; the checkpoint itself is not touched.
    """
    out = out or sys.stderr
    started = since if since is not None else clock()
    if run is None:  # reattach: show only this run's log, from its start
        first = read_state(hc, state_dir)
        run = (first.state or {}).get("run") or (first.result or {}).get("run")
        if run is None:
            return first
        offset = max(0, len(first.log.encode()) - 64 * 1024)
    while True:
        try:
            st = read_state(hc, state_dir, offset)
        except UnreachableError as exc:
            raise UnreachableError(f"{exc.message}; the checkpoint goes on on the host: reattach with "
                                   f"`inv -H {hc.name} mysql.status PATH`", host=hc.name) from None
        if st.log:
            offset += len(st.log.encode())
            out.write("".join(f"{hc.name}: {line}\n" for line in st.log.splitlines()))
            out.flush()
        if st.finished(run):
            return st
        began = (st.state or {}).get("run") == run  # it ran, and nothing holds its lock: it died
        if not st.lock_held and (began or clock() - started > START_GRACE):
            raise AegirError(f"checkpoint run {run} is not running and left no result; run mysql.checkpoint "
                             "again: it recovers first", host=hc.name)
        time.sleep(POLL)


def restore(hc: "HostContext", path: str, at: str, into: str, until: str | None,
            service: str | None) -> Mapping[str, Any]:
    done = hc.run(restore_cmd(hc.host.srv, path, at, into, until, service))
    return json.loads(done.stdout.strip().splitlines()[-1])
