"""MySQL/MariaDB facts of a host: WAL (binary log) and database sizes, checkpoint archive, run state.

* `wal_cmd` lists, in one round trip, every project folder under
  ``SRV/{core,apps,users}`` that holds a ``wal/`` or ``db/`` folder: the size of
  each and its binary log files (size, mtime, name): those in ``wal/``, and those
  in ``db/`` named after a ``<basename>.index`` there (logs kept in the datadir);
  `parse_wal` reads it, with the archives (`aegir.disk.facts.archive_cmd`: size,
  checkpoints, retention), into `AppWal` rows.
* `run_state_cmd` reads a checkpoint's state folder (``SRV/conf/aegir/mysql/<kind>-<app>``):
  the log from a byte offset, ``state.json`` and ``result.json``; `parse_run_state`.

Pure parsers over recorded text, tested in tests/unit/test_mysql.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aegir.disk.facts import Archive
from aegir.errors import AegirError
from aegir.sh import Cmd, shell

_WAL_SCRIPT = r"""cd "$1" 2>/dev/null || { echo X; exit 0; }
for d in core/*/ apps/*/ users/*/; do
  d=${d%/}
  [ -d "$d/wal" ] || [ -d "$d/db" ] || continue
  printf 'A\t%s\n' "$d"
  for sub in wal db; do
    [ -d "$d/$sub" ] && printf 'S\t%s\t%s\t%s\n' "$d" "$sub" "$(du -sb -- "$d/$sub" 2>/dev/null | cut -f1)"
  done
  [ -d "$d/wal" ] && find "$d/wal" -maxdepth 1 -type f -name '*.[0-9][0-9][0-9][0-9][0-9][0-9]*' -printf 'F\t%h\t%s\t%T@\t%f\n'
  for idx in "$d"/db/*.index; do
    [ -f "$idx" ] || continue
    b=${idx##*/}
    find "$d/db" -maxdepth 1 -type f -name "${b%.index}.[0-9][0-9][0-9][0-9][0-9][0-9]*" -printf 'F\t%h\t%s\t%T@\t%f\n'
  done
done
exit 0
"""

_BINLOG_NAME = re.compile(r"^[A-Za-z0-9_.-]+\.\d{6,}\Z")


def wal_cmd(srv: str) -> Cmd:
    """Every app with a database under `srv`, its WAL files and sizes: one round trip."""
    return shell(_WAL_SCRIPT, srv)


@dataclass(frozen=True)
class AppWal:
    """One app's database files as `mysql.wal` reports them."""

    path: str  # apps/cloud
    wal_bytes: int | None  # None: no binary log and no wal/ folder
    db_bytes: int | None  # the datadir, binary logs kept there left out
    files: int
    oldest: str | None  # the oldest binary log's name
    oldest_time: float | None
    newest: str | None
    newest_time: float | None
    archive: Archive | None = None  # its checkpoints (None: never checkpointed)

    @property
    def kind(self) -> str:
        return self.path.split("/", 1)[0]

    @property
    def checkpoints(self) -> int:
        return self.archive.checkpoints if self.archive else 0

    @property
    def last_checkpoint(self) -> float | None:
        return self.archive.newest_time if self.archive else None


def parse_wal(stdout: str, archives: Sequence[Archive] = ()) -> tuple[AppWal, ...]:
    """Read `wal_cmd` output (``X`` = no SRV: no apps), joined with the apps' archives by path.

    An app whose folder is gone but whose archive is still there keeps a row: the archive takes room.
    """
    apps: dict[str, dict[str, Any]] = {}

    def app(path: str) -> dict[str, Any]:
        return apps.setdefault(path, {"wal": None, "db": None, "files": {}})

    for line in stdout.splitlines():
        tag, _, rest = line.partition("\t")
        parts = rest.split("\t")
        if tag == "A" and rest:
            app(rest)
        elif tag == "S" and len(parts) == 3 and parts[2].isdigit():
            app(parts[0])[parts[1]] = int(parts[2])
        elif tag == "F" and len(parts) == 4 and parts[0].rpartition("/")[2] in ("wal", "db") \
                and _BINLOG_NAME.match(parts[3]):
            folder, _, sub = parts[0].rpartition("/")
            try:
                app(folder)["files"].setdefault(sub, []).append((float(parts[2]), parts[3], int(parts[1])))
            except ValueError:
                continue
    by_path = {a.path: a for a in archives}
    for path in by_path:
        apps.setdefault(path, {"wal": None, "db": None, "files": {}, "gone": True})
    out = []
    for path, a in apps.items():
        in_db = a["files"].get("db", [])
        files = sorted(a["files"].get("wal", []) or in_db, key=lambda f: f[1])
        logs_in_db = sum(f[2] for f in in_db)
        wal = a["wal"] if a["files"].get("wal") or not in_db else logs_in_db
        db = None if a["db"] is None else max(0, a["db"] - logs_in_db)
        out.append(AppWal(
            path, wal, db, len(files),
            files[0][1] if files else None, files[0][0] if files else None,
            files[-1][1] if files else None, files[-1][0] if files else None, by_path.get(path),
        ))
    return tuple(out)


# --------------------------------------------------------------------------- a checkpoint run's state


_STATE_SCRIPT = r"""cd "$1" 2>/dev/null || { printf 'NONE\n'; exit 0; }
for f in state.json result.json; do
  printf '\036%s\n' "$f"; cat "$f" 2>/dev/null
done
if flock -n lock true 2>/dev/null; then printf '\036lock\nfree'; else printf '\036lock\nheld'; fi
printf '\036log\n'; tail -c "+$(( $2 + 1 ))" log 2>/dev/null
exit 0
"""


def run_state_cmd(state_dir: str, offset: int = 0) -> Cmd:
    """``state.json``, ``result.json`` and the log from byte `offset` of a checkpoint's state folder."""
    return shell(_STATE_SCRIPT, state_dir, str(int(offset)))


@dataclass(frozen=True)
class RunState:
    """What a checkpoint's state folder says: the run in progress (if any), the last result, new log text."""

    state: Mapping[str, Any] | None
    result: Mapping[str, Any] | None
    log: str
    lock_held: bool = False  # a checkpoint process of this app is alive (it holds the flock)

    def finished(self, run: str | None) -> bool:
        """Whether `run` (or the run in progress, when None) has its result."""
        wanted = run or (self.state or {}).get("run")
        return bool(self.result) and (wanted is None or (self.result or {}).get("run") == wanted)


def parse_run_state(stdout: str) -> RunState:
    if stdout.strip() == "NONE":
        return RunState(None, None, "")
    parts = stdout.split("\036")[1:]
    found: dict[str, str] = {}
    for part in parts:
        name, _, body = part.partition("\n")
        found[name] = body
    return RunState(_json(found.get("state.json", "")), _json(found.get("result.json", "")), found.get("log", ""),
                    found.get("lock", "").strip() == "held")


def _json(text: str) -> Mapping[str, Any] | None:
    if not text.strip():
        return None
    try:
        value = json.loads(text)
    except ValueError:
        raise AegirError(f"unreadable checkpoint state: {text[:120]!r}") from None
    return value if isinstance(value, dict) else None
