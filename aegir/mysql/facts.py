"""MySQL/MariaDB facts of a host: WAL (binary log) and database sizes, checkpoint archive, run state.

* `wal_cmd` lists, in one round trip, every project folder under
  ``SRV/{core,apps,users}`` that holds a ``wal/`` or ``db/`` folder: the size of
  each, its binary log files (size, mtime, name) and the checkpoints complete
  in its archive (``SRV/archive/mysql/<kind>/<app>/<id>/MANIFEST.json``);
  `parse_wal` reads it into `AppWal` rows.
* `run_state_cmd` reads a checkpoint's state folder (``SRV/conf/aegir/mysql/<kind>-<app>``):
  the log from a byte offset, ``state.json`` and ``result.json``; `parse_run_state`.

Pure parsers over recorded text, tested in tests/unit/test_mysql.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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
  [ -d "archive/mysql/$d" ] && find "archive/mysql/$d" -mindepth 2 -maxdepth 2 -name MANIFEST.json -printf 'C\t%h\t%T@\n'
done
exit 0
"""

_BINLOG_NAME = re.compile(r"^[A-Za-z0-9_.-]+\.\d{6,}\Z")


def wal_cmd(srv: str) -> Cmd:
    """Every app with a database under `srv`, its WAL files and sizes, its checkpoints: one round trip."""
    return shell(_WAL_SCRIPT, srv)


@dataclass(frozen=True)
class AppWal:
    """One app's database files as `mysql.wal` reports them."""

    path: str  # apps/cloud
    wal_bytes: int | None  # None: no wal/ folder
    db_bytes: int | None
    files: int
    oldest: str | None  # the oldest binary log's name
    oldest_time: float | None
    newest: str | None
    newest_time: float | None
    checkpoints: int
    last_checkpoint: float | None  # mtime of the newest MANIFEST.json

    @property
    def kind(self) -> str:
        return self.path.split("/", 1)[0]


def parse_wal(stdout: str) -> tuple[AppWal, ...]:
    """Read `wal_cmd` output (``X`` = no SRV: no apps)."""
    apps: dict[str, dict[str, Any]] = {}

    def app(path: str) -> dict[str, Any]:
        return apps.setdefault(path, {"wal": None, "db": None, "files": [], "checkpoints": []})

    for line in stdout.splitlines():
        tag, _, rest = line.partition("\t")
        parts = rest.split("\t")
        if tag == "A" and rest:
            app(rest)
        elif tag == "S" and len(parts) == 3 and parts[2].isdigit():
            app(parts[0])[parts[1]] = int(parts[2])
        elif tag == "F" and len(parts) == 4 and parts[0].endswith("/wal") and _BINLOG_NAME.match(parts[3]):
            try:
                app(parts[0][:-4])["files"].append((float(parts[2]), parts[3], int(parts[1])))
            except ValueError:
                continue
        elif tag == "C" and len(parts) == 2 and parts[0].startswith("archive/mysql/"):
            path = parts[0][len("archive/mysql/"):].rsplit("/", 1)[0]
            try:
                app(path)["checkpoints"].append(float(parts[1]))
            except ValueError:
                continue
    out = []
    for path, a in apps.items():
        files = sorted(a["files"], key=lambda f: f[1])
        out.append(AppWal(
            path, a["wal"], a["db"], len(files),
            files[0][1] if files else None, files[0][0] if files else None,
            files[-1][1] if files else None, files[-1][0] if files else None,
            len(a["checkpoints"]), max(a["checkpoints"]) if a["checkpoints"] else None,
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
