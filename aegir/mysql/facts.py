"""MySQL/MariaDB facts of a host: WAL (binary log) and database sizes, checkpoint archive, run state.

* `wal_cmd` lists, in one round trip, every project folder under
  ``SRV/{core,apps,users}`` that holds a ``wal/`` or ``db/`` folder: the size of
  each and its binary log files (size, mtime, name): those in ``wal/``, and those
  in ``db/`` named after a ``<basename>.index`` there (logs kept in the datadir);
  `parse_wal` reads it, with the archives (`aegir.disk.facts.archive_fact`: size,
  checkpoints, retention), into `AppWal` rows.
* `run_state_cmd` reads a checkpoint's state folder (``SRV/conf/aegir/mysql/<kind>-<app>``):
  the log from a byte offset, ``state.json`` and ``result.json``; `parse_run_state`.

Pure parsers over recorded text, tested in tests/unit/test_mysql.py.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aegir.compose.status import srv_checked
from aegir.disk.facts import Archive, archive_fact
from aegir.errors import AegirError
from aegir.facts import Fact
from aegir.fields import Answer
from aegir.mysql import onhost
from aegir.mysql.commands import Options, plan_cmd, restore_plan_cmd
from aegir.sh import Cmd, Reply, shell

if TYPE_CHECKING:  # pragma: no cover
    from aegir.host import HostContext

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
            files[-1][1] if files else None, files[-1][0] if files else None,
        ))
    return with_archives(out, archives)


def with_archives(apps: Sequence[AppWal], archives: Sequence[Archive]) -> tuple[AppWal, ...]:
    """`apps` joined with their archives by path; an app whose folder is gone but whose archive is still
    there keeps a row (after the others): the archive takes room."""
    by_path = {a.path: a for a in archives}
    known = {a.path for a in apps}
    return (*(replace(a, archive=by_path.get(a.path)) for a in apps),
            *(AppWal(path, None, None, 0, None, None, None, None, arc) for path, arc in by_path.items()
              if path not in known))


def wal_fact(srv: str) -> Fact[tuple[AppWal, ...]]:
    """Every app with a database under `srv` (`wal_cmd`), without its archive (`with_archives`)."""
    return Fact("mysql.wal", wal_cmd(srv), lambda r: parse_wal(r.stdout), cache=False)


def read_wal(hc: HostContext) -> tuple[AppWal, ...]:
    """`mysql.wal` of one host: its apps' binary logs and archives, in one round trip with whether /srv is
    mounted (a host whose /srv is not mounted fails: its folders are the root disk's)."""
    srv = hc.host.srv
    apps, kept = srv_checked(hc, wal_fact(srv), archive_fact(srv))
    return with_archives(apps, kept)


# --------------------------------------------------------------------------- a checkpoint run's state


# The order is the proof: state.json, then the lock, then result.json. A run writes state.json after it takes
# the lock and its result before it lets the lock go, so a lock seen free after a state.json that names the
# run means its result (if it wrote one) is there when result.json is read. Read the other way round, a run
# that ends between the two reads looks dead with no result.
_STATE_SCRIPT = r"""cd "$1" 2>/dev/null || { printf 'NONE\n'; exit 0; }
printf '\035state.json\n'; cat state.json 2>/dev/null
if [ ! -e lock ] || flock -n lock true 2>/dev/null; then printf '\035lock\nfree'; else printf '\035lock\nheld'; fi
printf '\035result.json\n'; cat result.json 2>/dev/null
printf '\035log\n'; tail -c "+$(( $2 + 1 ))" log 2>/dev/null
exit 0
"""


def run_state_cmd(state_dir: str, offset: int = 0) -> Cmd:
    """``state.json``, ``result.json``, whether a run holds the lock, and the log from byte `offset`, of a
    checkpoint's state folder. Reads only: a missing lock file is free (flock would create it); sections
    are separated by \\035: the JSON files escape it, and the log, which may hold it, is the last section."""
    return shell(_STATE_SCRIPT, state_dir, str(int(offset)))


def run_state_fact(state_dir: str, offset: int = 0) -> Fact[RunState]:
    """`run_state_cmd` as a fact, asked afresh each time (a run changes it)."""
    return Fact("mysql.run_state", run_state_cmd(state_dir, offset), lambda r: parse_run_state(r.stdout), cache=False)


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

    @property
    def run(self) -> str | None:
        """The run in progress, else the last one that has a result (None: no checkpoint ran)."""
        return (self.state or {}).get("run") or (self.result or {}).get("run")


def parse_run_state(stdout: str) -> RunState:
    """Read `run_state_cmd` output (``NONE``: no state folder). The log is the last section, taken whole."""
    if stdout.strip() == "NONE":
        return RunState(None, None, "")
    found: dict[str, str] = {}
    for part in stdout.split("\035", 4)[1:]:
        name, _, body = part.partition("\n")
        found[name] = body
    result = _json(found.get("result.json", ""))
    return RunState(_json(found.get("state.json", "")), result and check_result(result, "checkpoint result.json"),
                    found.get("log", ""), found.get("lock", "").strip() == "held")


def _json(text: str) -> Mapping[str, Any] | None:
    if not text.strip():
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise AegirError(f"unreadable checkpoint state: {text[:120]!r}") from None
    return value if isinstance(value, dict) else None


# --------------------------------------------------------------------------- the program's answers, by shape
# The reports read these answers' fields as numbers, lists and mappings: each is checked here, where the
# answer is read, so that a host's bad answer is its failed row (`aegir.fields.ShapeError`).


def check_result(value: Mapping[str, Any], what: str) -> Mapping[str, Any]:
    """A checkpoint run's result (``result.json``, the program's ``run`` answer), its shape checked."""
    a = Answer(value, what)
    for key in ("wal_before", "wal_after"):
        a[key].real()
    if "downtime" in value:  # shown as seconds: a null is no number either
        a["downtime"].present("a number").real()
    a["archived"].items()
    a["removed"].texts()
    for s in a["steps"].items():
        s["step"].present()
        s["seconds"].present().real()
    rec = a["recovered"]
    if isinstance(rec.value, Mapping):
        rec["did"].texts()
    return value


def _check_plan(a: Answer) -> None:
    a["target"].mapping()
    a["login"].mapping()
    a["dependents"].texts()
    for s in a["steps"].items():
        s["name"].present()
        s["what"].present()
        s["commands"].items()


def _check_restore_plan(a: Answer) -> None:
    a["chain"].texts()
    start = a["start"].items()
    if a["start"].value is not None and len(start) != 2:
        raise a["start"].fail("a list of a file and a position")


def _check_restored(a: Answer) -> None:
    a["replayed"].texts()


_CHECKS: dict[str, Callable[[Answer], None]] = {
    "plan": _check_plan, "restore-plan": _check_restore_plan, "restore": _check_restored}


def log_size_fact(state_dir: str) -> Fact[int]:
    """The size of a checkpoint's log now: where the next run's lines begin (asked afresh)."""
    return Fact("mysql.log_size", shell('stat -c %s -- "$1" 2>/dev/null || echo 0', f"{state_dir}/log"),
                lambda r: int(r.stdout.strip() or 0), cache=False)


def exists_fact(path: str, kind: str = "-d") -> Fact[bool]:
    """Whether `path` is a folder (``-d``) or a file (``-f``) on the host (asked afresh)."""
    return Fact("mysql.exists", Cmd(("test", kind, path)), lambda r: r.exited == 0, answers=(0, 1), cache=False)


# --------------------------------------------------------------------------- the program, asked while planning


@functools.cache
def program_text() -> str:
    """The on-host program (`aegir.mysql.onhost`), as it is installed and as a plan streams it on stdin."""
    return Path(onhost.__file__).read_text(encoding="utf-8")


def parse_program(reply: Reply, verb: str) -> Mapping[str, Any]:
    """The program's JSON answer (its last line), or `AegirError` with its own words (exit 1 or 2).

    >>> parse_program(Reply('{"at": "X"}\\n', "", 0), "restore-plan")
    {'at': 'X'}
    """
    if reply.exited == 0:
        try:
            value = json.loads((reply.stdout.strip().splitlines() or [""])[-1])
        except (ValueError, RecursionError):
            value = None
        if not isinstance(value, dict):
            raise AegirError(f"mysql-checkpoint {verb} printed no JSON: {reply.stdout[-200:]!r}")
        if verb in _CHECKS:
            _CHECKS[verb](Answer(value, f"mysql-checkpoint {verb}"))
        return value
    said = reply.stderr.strip()
    at = said.rfind("mysql-checkpoint: ")
    raise AegirError(said[at:] if at >= 0 else f"mysql-checkpoint {verb} exited {reply.exited}: "
                     + (said.splitlines() or [""])[-1][-300:])


def plan_fact(srv: str, path: str, opts: Options, run: str) -> Fact[Mapping[str, Any]]:
    """The program's checkpoint plan of `path` (it reads the compose file and logs in; writes nothing)."""
    return Fact("mysql.plan", plan_cmd(srv, path, opts, run, program=program_text()),
                lambda r: parse_program(r, "plan"), answers=(0, 1, 2), cache=False)


def restore_plan_fact(srv: str, path: str, at: str, into: str, service: str | None) -> Fact[Mapping[str, Any]]:
    """The program's restore plan: the checkpoint, the empty scratch folder, the chain of logs (reads only)."""
    return Fact("mysql.restore_plan", restore_plan_cmd(srv, path, at, into, service, program=program_text()),
                lambda r: parse_program(r, "restore-plan"), answers=(0, 1, 2), cache=False)
