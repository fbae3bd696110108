#!/usr/bin/env python3
"""aegir mysql-checkpoint: snapshot a MariaDB/MySQL app's base and archive its binary logs, on the host.

This file is self-contained (Python 3 standard library only): aegir installs
it as ``<srv>/conf/aegir/mysql-checkpoint`` and starts it detached from the SSH
session (``systemd-run``, else ``setsid``), so a dropped connection never
leaves a database stopped. It is also the runbook's script, by hand::

    mysql-checkpoint checkpoint /srv/apps/<app> [--basedir B] [--db D] [--mode cold|hot] [--keep N]
    mysql-checkpoint checkpoint <app> --dry        # the plan and its exact commands
    mysql-checkpoint restore /srv/apps/<app> --at ID --into DIR [--until 'YYYY-MM-DD HH:MM:SS']

Every step is logged with its duration to ``<state>/log``; the outcome goes to
``<state>/result.json`` (``<state>`` = ``<srv>/conf/aegir/mysql/<kind>-<app>``).
A guardian process waits for the worker: if the worker dies mid-run, the
guardian starts the database and its dependents again and records what it
found. A run that finds an earlier run dead (guardian killed too) does the same
first. Binary logs are copied, fsynced and checksum-verified into the archive
entry, and its ``MANIFEST.json`` written, before ``PURGE BINARY LOGS TO`` the
current file: never ``rm``, never ``RESET MASTER``. An entry without a
manifest is unfinished and removed by the recovery (what it holds is still in
``db/`` and ``wal/``).

``AEGIR_MYSQL_FAULT=<step>`` (a test hook) makes the worker kill itself with
SIGKILL as that step starts.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

COMPOSE_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
KINDS = ("core", "apps", "users")
MODES = ("cold", "hot")
COLD_STEPS = ("lock", "inspect", "position", "precopy", "stop", "snapshot", "start", "wait", "dependents", "verify",
              "archive-logs", "purge", "retention")
HOT_STEPS = ("lock", "inspect", "position", "backup", "prepare", "verify", "flush", "archive-logs", "purge",
             "retention")
MANIFEST = "MANIFEST.json"
FAULT_ENV = "AEGIR_MYSQL_FAULT"
_SQL_CLIENT = ("mariadb", "-uroot", "-N", "-B", "-e")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")
_BINLOG_RE = re.compile(r"^[A-Za-z0-9_.-]+\.(\d{6,})\Z")


class CheckpointError(Exception):
    """A step failed: the message says which command and why."""


# --------------------------------------------------------------------------- pure: where things are


@dataclass(frozen=True)
class Target:
    """One app's checkpoint: its folders, compose project, archive and state folder."""

    path: str  # the app folder: /srv/apps/cloud
    basedir: str  # where db/ and wal/ are (the app folder unless --basedir)
    db: str  # the database files: <basedir>/db unless --db
    wal: str  # the binary logs: <basedir>/wal
    srv: str
    key: str  # apps-cloud: names the state folder, the archive and the lock
    project: str  # Compose project name: the folder's, as Compose normalises it
    archive: str  # <srv>/archive/mysql/<kind>/<app>
    state: str  # <srv>/conf/aegir/mysql/<key>


def compose_name(folder: str) -> str:
    return re.sub(r"[^a-z0-9_-]+", "", folder.lower()).lstrip("_-")


def target(path: str, *, srv: str, basedir: str | None = None, db: str | None = None,
           archive: str | None = None) -> Target:
    """Resolve the script's arguments as the runbook's script did (`path` in full, or ``apps/x``, or ``x``)."""
    srv = srv.rstrip("/") or "/"
    if not path.startswith("/"):
        kind, _, folder = path.rpartition("/")
        path = f"{srv}/{kind or 'apps'}/{folder}"
    path = os.path.normpath(path)
    base = os.path.normpath(os.path.join(path, basedir)) if basedir else path
    dbdir = os.path.normpath(os.path.join(base, db or "db"))
    rel = os.path.relpath(path, srv)
    parts = rel.split("/")
    if len(parts) == 2 and parts[0] in KINDS and not rel.startswith(".."):
        key = f"{parts[0]}-{parts[1]}"
    else:
        key = "x-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", path.strip("/"))
    folder = os.path.basename(path)
    if not _NAME_RE.match(folder):
        raise CheckpointError(f"invalid app folder name {folder!r}")
    return Target(path, base, dbdir, os.path.join(base, "wal"), srv, key, compose_name(folder),
                  archive or f"{srv}/archive/mysql/{rel if not rel.startswith('..') else key}",
                  f"{srv}/conf/aegir/mysql/{key}")


def _binds(service: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for v in service.get("volumes") or []:
        if isinstance(v, dict) and v.get("type") == "bind" and v.get("source") and v.get("target"):
            out.append((os.path.normpath(str(v["source"])), os.path.normpath(str(v["target"]))))
    return out


def db_service(config: dict[str, Any], db_dir: str, wanted: str | None = None) -> tuple[str, str]:
    """The service that mounts `db_dir` (or `wanted`) and the path it mounts it at."""
    services = config.get("services") or {}
    if wanted:
        if wanted not in services:
            raise CheckpointError(f"no service {wanted!r} in the compose file (services: {', '.join(services)})")
        for source, tgt in _binds(services[wanted]):
            if source == os.path.normpath(db_dir):
                return wanted, tgt
        raise CheckpointError(f"service {wanted!r} does not mount {db_dir}")
    hits = [(name, tgt) for name, svc in services.items() for source, tgt in _binds(svc)
            if source == os.path.normpath(db_dir)]
    if len(hits) != 1:
        found = ", ".join(h[0] for h in hits) or "none"
        raise CheckpointError(f"cannot tell the database service: services mounting {db_dir}: {found} "
                              "(name it with --service)")
    return hits[0]


def settings(config: dict[str, Any]) -> dict[str, Any]:
    """The compose file's ``x-aegir: {mysql: {...}}`` (service, dependents, mode, keep), validated."""
    ext = config.get("x-aegir") or {}
    section = ext.get("mysql") if isinstance(ext, dict) else None
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise CheckpointError("x-aegir.mysql must be a mapping")
    known = {"service", "dependents", "mode", "keep"}
    if unknown := set(section) - known:
        raise CheckpointError(f"x-aegir.mysql: unknown keys {', '.join(sorted(unknown))} (known: {', '.join(sorted(known))})")
    deps = section.get("dependents", [])
    if not isinstance(deps, list) or not all(isinstance(d, str) and _NAME_RE.match(d) for d in deps):
        raise CheckpointError("x-aegir.mysql.dependents must be a list of service names")
    if section.get("mode") not in (None, *MODES):
        raise CheckpointError(f"x-aegir.mysql.mode must be one of {', '.join(MODES)}")
    keep = section.get("keep")
    if keep is not None and (not isinstance(keep, int) or isinstance(keep, bool) or keep < 1):
        raise CheckpointError("x-aegir.mysql.keep must be a number of checkpoints (1 or more)")
    return section


def dependents(config: dict[str, Any], service: str) -> tuple[str, ...]:
    """Services whose ``depends_on`` names `service`, then those ``x-aegir.mysql.dependents`` lists."""
    services = config.get("services") or {}
    out = [name for name, svc in services.items()
           if name != service and service in (svc.get("depends_on") or {})]
    for extra in settings(config).get("dependents", []):
        if extra not in services:
            raise CheckpointError(f"x-aegir.mysql.dependents names {extra!r}, which is not a service")
        if extra != service and extra not in out:
            out.append(extra)
    return tuple(out)


def host_path(config: dict[str, Any], service: str, inside: str) -> str | None:
    """The host folder a path inside `service`'s container lives in (through its bind mounts)."""
    inside = os.path.normpath(inside)
    best = None
    for source, tgt in _binds((config.get("services") or {}).get(service, {})):
        if inside == tgt or inside.startswith(tgt.rstrip("/") + "/"):
            if best is None or len(tgt) > len(best[1]):
                best = (source, tgt)
    if best is None:
        return None
    rest = os.path.relpath(inside, best[1])
    return best[0] if rest == "." else os.path.join(best[0], rest)


def binlog_number(name: str) -> int:
    m = _BINLOG_RE.match(name)
    if not m:
        raise CheckpointError(f"not a binary log name: {name!r}")
    return int(m.group(1))


def to_archive(logs: Sequence[str], current: str) -> tuple[str, ...]:
    """The binary logs to archive and purge: every one before `current` (never `current` itself)."""
    return tuple(n for n in logs if binlog_number(n) < binlog_number(current))


def replay_chain(start: tuple[str, int], available: Sequence[str]) -> tuple[str, ...]:
    """The logs a restore replays, in order: from the base's `start` file on, with no gap."""
    names = sorted({n for n in available if binlog_number(n) >= binlog_number(start[0])}, key=binlog_number)
    if not names or names[0] != start[0]:
        raise CheckpointError(f"the binary log {start[0]} the base starts from is neither archived nor in wal/")
    for a, b in zip(names, names[1:]):
        if binlog_number(b) != binlog_number(a) + 1:
            raise CheckpointError(f"binary logs missing between {a} and {b}")
    return tuple(names)


def expired(entries: Sequence[str], keep: int | None) -> tuple[str, ...]:
    """Complete archive entries (sorted by id = time) beyond the newest `keep`."""
    if not keep:
        return ()
    return tuple(sorted(entries)[:-keep]) if len(entries) > keep else ()


def parse_binlog_info(text: str) -> tuple[str, int]:
    """``mysql-bin.000003<TAB>1234[<TAB>gtid]`` (mariadb-backup's binlog info file) -> (file, position)."""
    words = text.split()
    if len(words) < 2 or not words[1].isdigit():
        raise CheckpointError(f"unreadable binlog info from mariadb-backup: {text[:120]!r}")
    binlog_number(words[0])
    return words[0], int(words[1])


def parse_master_status(text: str) -> tuple[str, int]:
    """``SHOW MASTER STATUS`` in batch mode (``file<TAB>pos<TAB>…``) -> (file, position)."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    words = line.split("\t")
    if len(words) < 2 or not words[1].strip().isdigit():
        raise CheckpointError("binary logging is off: SHOW MASTER STATUS is empty (set log-bin)")
    binlog_number(words[0])
    return words[0], int(words[1])


# --------------------------------------------------------------------------- pure: the plan


@dataclass(frozen=True)
class Step:
    name: str
    what: str
    commands: tuple[str, ...] = ()


def plan(t: Target, *, mode: str, compose: Sequence[str], service: str, deps: Sequence[str], entry: str,
         keep: int | None) -> tuple[Step, ...]:
    """The checkpoint's steps, with the exact commands each runs (``--dry`` prints this)."""
    c = list(compose)
    sql = [*c, "exec", "-T", service, *_SQL_CLIENT]
    steps = [
        Step("lock", f"take {t.state}/lock (flock: a dead run does not hold it)"),
        Step("inspect", f"find {service} (mounts {t.db}) and its dependents: {', '.join(deps) or 'none'}",
             (shlex.join([*c, "config", "--format", "json"]),)),
        Step("position", "record the binary log position", (shlex.join([*sql, "SHOW MASTER STATUS"]),)),
    ]
    if mode == "cold":
        steps += [
            Step("precopy", f"copy {t.db} to {entry}/base while {service} runs (sha256 of every file)"),
            Step("stop", f"stop {service} cleanly", (shlex.join([*c, "stop", service]),)),
            Step("snapshot", f"copy again every file of {t.db} whose size or mtime changed since the precopy"),
            Step("start", f"start {service}", (shlex.join([*c, "start", service]),)),
            Step("wait", f"wait until {service} answers", (shlex.join([*sql, "SELECT 1"]),)),
            Step("dependents", f"restart {', '.join(deps) or 'no dependent'}",
                 (shlex.join([*c, "restart", *deps]),) if deps else ()),
            Step("verify", f"fsync {entry}/base and read it back against the checksums (the database runs)"),
        ]
    else:
        steps += [
            Step("backup", f"mariadb-backup while {service} runs, streamed to {entry}/base.mbstream",
                 (shlex.join([*c, "exec", "-T", service, "mariadb-backup", "--backup", "--user=root",
                              "--stream=mbstream", "--target-dir=/tmp"]) + f" > {shlex.quote(entry)}/base.mbstream",)),
            Step("prepare", f"extract and prepare it in a throw-away container of {service}'s image",
                 (shlex.join(["docker", "run", "--rm", "--network", "none", "--entrypoint", "sh", "-v",
                              f"{entry}:/aegir", "IMAGE", "-c", _PREPARE]),)),
            Step("verify", f"sha256 of every file of {entry}/base, read back"),
            Step("flush", "close the current binary log", (shlex.join([*sql, "FLUSH BINARY LOGS"]),)),
        ]
    steps += [
        Step("archive-logs", f"copy every binary log before the current one from {t.wal} to {entry}/binlogs "
                             f"(fsync, sha256 read back), then write {entry}/{MANIFEST}"),
        Step("purge", "make the server forget the archived logs",
             (shlex.join([*sql, "PURGE BINARY LOGS TO 'CURRENT'"]),)),
        Step("retention", f"keep the newest {keep} checkpoints in {t.archive}" if keep else "keep every checkpoint"),
    ]
    return tuple(steps)


_PREPARE = ("set -e; rm -rf /aegir/base; mkdir /aegir/base; mbstream -x -C /aegir/base < /aegir/base.mbstream; "
            "mariadb-backup --prepare --target-dir=/aegir/base")


# --------------------------------------------------------------------------- acting


def fault(step: str, log: Callable[[str], None]) -> None:
    """The test hook: ``AEGIR_MYSQL_FAULT=STEP`` kills the worker as STEP starts, ``STEP:all`` its
    guardian too (the whole process group), ``STEP:sleep=N`` pauses N seconds there."""
    where, _, how = os.environ.get(FAULT_ENV, "").partition(":")
    if where != step:
        return
    if how.startswith("sleep="):
        log(f"step {step}: {FAULT_ENV} says pause {how[6:]}s here")
        time.sleep(float(how[6:]))
        return
    log(f"step {step}: {FAULT_ENV} says die here (SIGKILL{' to the guardian too' if how == 'all' else ''})")
    if how == "all":
        os.killpg(os.getpgid(0), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def now_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


class Log:
    """Timestamped lines in <state>/log (and on stderr)."""

    def __init__(self, path: Path, quiet: bool = False) -> None:
        self.path = path
        self.quiet = quiet

    def __call__(self, text: str) -> None:
        line = f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {text}\n"
        with self.path.open("a") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        if not self.quiet:
            sys.stderr.write(line)


def run(argv: Sequence[str], *, cwd: str | None = None, stdout: Any = None, timeout: float | None = 600,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(argv), cwd=cwd, stdin=subprocess.DEVNULL, text=stdout is None,
                          stdout=stdout if stdout is not None else subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout)
    if check and done.returncode != 0:
        err = done.stderr if isinstance(done.stderr, str) else done.stderr.decode(errors="replace")
        raise CheckpointError(f"`{shlex.join(argv)}` exited {done.returncode}: {err.strip()[-400:]}")
    return done


def compose_argv(t: Target) -> list[str]:
    """``docker compose -f <file> -p <name>`` for the app (Compose v2: ``config --format json``)."""
    files = [f for f in COMPOSE_FILES if os.path.isfile(os.path.join(t.path, f))]
    if not files:
        raise CheckpointError(f"{t.path}: no compose file ({', '.join(COMPOSE_FILES)})")
    for prefix in (["docker", "compose"], ["docker-compose"]):
        try:
            v = subprocess.run([*prefix, "version", "--short"], capture_output=True, text=True, timeout=30)
        except OSError:
            continue
        if v.returncode == 0 and v.stdout.strip().lstrip("v")[:1] not in ("", "1"):
            return [*prefix, "--project-directory", t.path, "-f", os.path.join(t.path, files[0]), "-p", t.project]
    raise CheckpointError("no Docker Compose v2 (`docker compose` or docker-compose 2.x) on this host")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: Path, *, sync: bool = False) -> str:
    """The file's checksum; `sync` also fsyncs it (its data reach the disk before anything relies on them)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
        if sync:
            os.fsync(f.fileno())
    return h.hexdigest()


def copy_summed(src: Path, dst: Path, *, sync: bool = True) -> str:
    """Copy `src` to `dst` (fsync unless `sync` is false); returns the checksum of what was read."""
    h = hashlib.sha256()
    dst.parent.mkdir(parents=True, exist_ok=True)
    with src.open("rb") as fi, dst.open("wb") as fo:
        while chunk := fi.read(1 << 20):
            h.update(chunk)
            fo.write(chunk)
        fo.flush()
        if sync:
            os.fsync(fo.fileno())
    shutil.copystat(src, dst)
    return h.hexdigest()


def copy_verified(src: Path, dst: Path) -> str:
    """Copy `src` to `dst` (fsync), read `dst` back and compare checksums; returns the checksum."""
    h = copy_summed(src, dst)
    if sha256_file(dst) != h:
        raise CheckpointError(f"{dst}: the copy of {src} does not read back identical")
    return h


def tree_sums(root: Path, *, sync: bool = False) -> dict[str, str]:
    sums = {str(p.relative_to(root)): sha256_file(p, sync=sync) for p in sorted(root.rglob("*")) if p.is_file()}
    if sync:
        for d in [root, *(p for p in root.rglob("*") if p.is_dir())]:
            _fsync_dir(d)
    return sums


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".new")
    with tmp.open("w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    _fsync_dir(path.parent)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class Run:
    """One checkpoint run: its target, options, compose command and what it has done so far."""

    t: Target
    mode: str
    service: str | None
    keep: int | None
    run_id: str
    log: Log
    compose: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    deps: tuple[str, ...] = ()
    steps: list[dict[str, Any]] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def entry(self) -> Path:
        return Path(self.t.archive) / self.run_id

    def sql(self, statement: str, timeout: float = 60) -> str:
        assert self.service
        return run([*self.compose, "exec", "-T", self.service, *_SQL_CLIENT, statement], timeout=timeout).stdout

    def step(self, name: str, fn: Callable[[], Any]) -> Any:
        state = Path(self.t.state) / "state.json"
        write_json(state, {"run": self.run_id, "pid": os.getpid(), "guardian": os.getppid(), "step": name,
                           "mode": self.mode, "entry": str(self.entry), "service": self.service,
                           "dependents": list(self.deps), "compose": self.compose})
        fault(name, self.log)
        self.log(f"step {name} ...")
        started = time.monotonic()
        try:
            value = fn()
        except Exception as exc:
            self.log(f"step {name} FAILED after {time.monotonic() - started:.2f}s: {exc}")
            raise
        took = time.monotonic() - started
        self.steps.append({"step": name, "seconds": round(took, 3)})
        self.log(f"step {name} done in {took:.2f}s")
        return value


def inspect(r: Run) -> None:
    r.compose = compose_argv(r.t)
    r.config = json.loads(run([*r.compose, "config", "--format", "json"], cwd=r.t.path).stdout)
    own = settings(r.config)
    r.service = r.service or own.get("service")
    r.service, _ = db_service(r.config, r.t.db, r.service)
    r.deps = dependents(r.config, r.service)
    r.keep = r.keep or own.get("keep")
    r.log(f"info: database service {r.service}; dependents: {', '.join(r.deps) or 'none'}; archive {r.entry}")


def wal_dir(r: Run) -> Path:
    assert r.service
    basename = r.sql("SELECT @@log_bin_basename").strip()
    if not basename or basename == "NULL":
        raise CheckpointError("binary logging is off on the server (set log-bin)")
    found = host_path(r.config, r.service, os.path.dirname(basename))
    if found is None:
        raise CheckpointError(f"the binary logs ({os.path.dirname(basename)} in the container) are not on a bind mount")
    return Path(found)


def wait_ready(r: Run, timeout: float = 120) -> float:
    started = time.monotonic()
    last = ""
    while time.monotonic() - started < timeout:
        try:
            r.sql("SELECT 1", timeout=15)
            return time.monotonic() - started
        except (CheckpointError, subprocess.TimeoutExpired) as exc:
            last = str(exc)
            time.sleep(0.2)
    raise CheckpointError(f"{r.service} did not answer within {timeout:.0f}s: {last}")


def cold_snapshot(r: Run, known: dict[str, str] | None = None) -> dict[str, str]:
    """Copy db/ into the entry's base; returns every file's checksum.

    With `known` (the checksums of a pre-copy taken while the server ran), a
    file whose size and mtime (ns) match its pre-copied twin is kept, as rsync's
    quick check does; every other file is copied again and files gone from db/
    are removed. fsync and read-back come after the restart (`_verify`).
    """
    base = r.entry / "base"
    sums: dict[str, str] = {}
    for src in sorted(Path(r.t.db).rglob("*")):
        rel = src.relative_to(r.t.db)
        dst = base / rel
        if src.is_dir() and not src.is_symlink():
            dst.mkdir(parents=True, exist_ok=True)
        elif src.is_file():
            if known is not None and str(rel) in known and dst.is_file():
                a, b = src.stat(), dst.stat()
                if (a.st_size, a.st_mtime_ns) == (b.st_size, b.st_mtime_ns):
                    sums[str(rel)] = known[str(rel)]
                    continue
            sums[str(rel)] = copy_summed(src, dst, sync=False)
    if known is not None:
        for gone in set(known) - set(sums):
            (base / gone).unlink(missing_ok=True)
    return sums


def container_image(r: Run) -> str:
    assert r.service
    cid = run([*r.compose, "ps", "-q", r.service]).stdout.split()
    if not cid:
        raise CheckpointError(f"{r.service} has no container")
    return run(["docker", "inspect", "-f", "{{.Image}}", cid[0]]).stdout.strip()


def hot_backup(r: Run) -> None:
    assert r.service
    r.entry.mkdir(parents=True, exist_ok=True)
    with (r.entry / "base.mbstream").open("wb") as out:
        run([*r.compose, "exec", "-T", r.service, "mariadb-backup", "--backup", "--user=root", "--stream=mbstream",
             "--target-dir=/tmp"], stdout=out, timeout=3600)
        out.flush()
        os.fsync(out.fileno())


def hot_prepare(r: Run) -> tuple[str, int]:
    image = container_image(r)
    run(["docker", "run", "--rm", "--network", "none", "--entrypoint", "sh", "-v", f"{r.entry}:/aegir", image,
         "-c", _PREPARE], timeout=3600)
    (r.entry / "base.mbstream").unlink()
    for name in ("mariadb_backup_binlog_info", "xtrabackup_binlog_info"):
        info = r.entry / "base" / name
        if info.is_file():
            return parse_binlog_info(info.read_text())
    raise CheckpointError("mariadb-backup wrote no binlog position (is log-bin on?)")


def archive_logs(r: Run, current: str, start: tuple[str, int]) -> dict[str, str]:
    """Copy every log before `current` into the entry, verified; then write the manifest."""
    logs = r.sql("SHOW BINARY LOGS").split("\n")
    names = [line.split("\t")[0] for line in logs if line.strip()]
    wal = Path(r.facts["wal_dir"])
    sums = {}
    for name in to_archive(names, current):
        sums[name] = copy_verified(wal / name, r.entry / "binlogs" / name)
        if sha256_file(wal / name) != sums[name]:
            raise CheckpointError(f"{wal / name} changed while it was archived")
    if (r.entry / "binlogs").is_dir():
        _fsync_dir(r.entry / "binlogs")
    write_json(r.entry / MANIFEST, {
        "id": r.run_id, "mode": r.mode, "created": time.time(), "service": r.service,
        "start": {"file": start[0], "position": start[1]}, "current": current, "binlogs": sums,
        "base": r.facts.get("base_sums", {}),
    })
    _fsync_dir(r.entry)
    return sums


def entries(archive: Path) -> tuple[list[str], list[str]]:
    """(complete, unfinished) entry names in an app's archive."""
    if not archive.is_dir():
        return [], []
    done: list[str] = []
    partial: list[str] = []
    for p in sorted(archive.iterdir()):
        if p.is_dir() and not p.name.startswith("."):
            (done if (p / MANIFEST).is_file() else partial).append(p.name)
    return done, partial


def recover(t: Target, log: Log, previous: dict[str, Any]) -> dict[str, Any]:
    """After a worker died: database and dependents up again, unfinished archive entries removed."""
    found = f"run {previous.get('run')} died at step {previous.get('step')!r}"
    log(f"recover: {found}")
    did = []
    compose, service = previous.get("compose") or [], previous.get("service")
    if compose and service:
        run([*compose, "start", service], timeout=300)
        did.append(f"started {service}")
        r = Run(t, previous.get("mode") or "cold", service, None, "recover", log, compose=compose)
        wait_ready(r)
        did.append(f"{service} answers")
        if previous.get("mode") == "cold" and previous.get("step") in ("stop", "snapshot", "start", "wait",
                                                                          "dependents"):
            deps = previous.get("dependents") or []
            if deps:
                run([*compose, "restart", *deps], timeout=300)
                did.append(f"restarted {', '.join(deps)}")
    _, partial = entries(Path(t.archive))
    for name in partial:
        shutil.rmtree(Path(t.archive) / name)
        did.append(f"removed the unfinished archive entry {name} (its data is still in db/ and wal/)")
    log("recover: " + "; ".join(did or ["nothing to do"]))
    return {"found": found, "did": did}


def checkpoint(r: Run) -> dict[str, Any]:
    steps = COLD_STEPS if r.mode == "cold" else HOT_STEPS
    assert steps[0] == "lock"
    r.step("inspect", lambda: inspect(r))
    wal, r.facts["position"] = r.step("position", lambda: (wal_dir(r), parse_master_status(r.sql("SHOW MASTER STATUS"))))
    r.facts["wal_dir"] = str(wal)
    wal_before = sum(p.stat().st_size for p in Path(r.facts["wal_dir"]).iterdir() if p.is_file())
    r.entry.mkdir(parents=True, exist_ok=True)
    assert r.service
    if r.mode == "cold":
        early = r.step("precopy", lambda: cold_snapshot(r))  # while it runs: the stop only copies what changed
        down = time.monotonic()
        r.step("stop", lambda: run([*r.compose, "stop", r.service], timeout=300))  # type: ignore[list-item]
        try:
            r.facts["base_sums"] = r.step("snapshot", lambda: cold_snapshot(r, early))
        finally:
            r.step("start", lambda: run([*r.compose, "start", r.service], timeout=300))  # type: ignore[list-item]
            r.step("wait", lambda: wait_ready(r))
            r.facts["downtime"] = round(time.monotonic() - down, 3)
            if r.deps:
                r.step("dependents", lambda: run([*r.compose, "restart", *r.deps], timeout=300))
        r.step("verify", lambda: _verify(r.entry / "base", r.facts["base_sums"]))
        current, _ = parse_master_status(r.sql("SHOW MASTER STATUS"))
        start = (current, 4)  # a clean shutdown closed every earlier log: the base holds all of them
    else:
        r.step("backup", lambda: hot_backup(r))
        start = r.step("prepare", lambda: hot_prepare(r))
        r.facts["base_sums"] = r.step("verify", lambda: tree_sums(r.entry / "base"))
        r.step("flush", lambda: r.sql("FLUSH BINARY LOGS"))
        current, _ = parse_master_status(r.sql("SHOW MASTER STATUS"))
        r.facts["downtime"] = 0.0
    archived = r.step("archive-logs", lambda: archive_logs(r, current, start))
    r.step("purge", lambda: r.sql(f"PURGE BINARY LOGS TO '{current}'"))
    left = [line.split("\t")[0] for line in r.sql("SHOW BINARY LOGS").splitlines() if line.strip()]
    if any(n in left for n in archived):
        raise CheckpointError(f"the server still lists archived logs after PURGE: {', '.join(left)}")
    done, _ = entries(Path(r.t.archive))
    gone = r.step("retention", lambda: _retention(r.t, done, r.keep))
    wal_after = sum(p.stat().st_size for p in Path(r.facts["wal_dir"]).iterdir() if p.is_file())
    return {"entry": str(r.entry), "start": list(start), "archived": sorted(archived), "current": current,
            "wal_before": wal_before, "wal_after": wal_after, "downtime": r.facts["downtime"], "removed": list(gone),
            "service": r.service, "dependents": list(r.deps)}


def _verify(base: Path, sums: dict[str, str]) -> None:
    """fsync the snapshot and read it back against the checksums taken while copying."""
    again = tree_sums(base, sync=True)
    if again != sums:
        bad = sorted(k for k in set(sums) | set(again) if sums.get(k) != again.get(k))
        raise CheckpointError(f"the snapshot does not read back identical: {', '.join(bad[:5])}")


def _retention(t: Target, done: list[str], keep: int | None) -> list[str]:
    old = expired(done, keep)
    for name in old:
        shutil.rmtree(Path(t.archive) / name)
    return list(old)


# --------------------------------------------------------------------------- restore


def restore(t: Target, at: str, into: Path, until: str | None, service: str | None, log: Log) -> dict[str, Any]:
    """Base of entry `at` + archived logs + the logs still in wal/, replayed with mysqlbinlog into `into`."""
    archive = Path(t.archive)
    done, _ = entries(archive)
    if at == "latest" and done:
        at = done[-1]
    if at not in done:
        raise CheckpointError(f"no complete checkpoint {at!r} in {archive} (have: {', '.join(done) or 'none'})")
    if into.exists() and any(into.iterdir()):
        raise CheckpointError(f"{into} is not empty: restore goes into a scratch folder")
    manifest = read_json(archive / at / MANIFEST)
    start = (manifest["start"]["file"], int(manifest["start"]["position"]))
    log(f"restore: base {at} ({manifest['mode']}), replay from {start[0]}:{start[1]}")
    shutil.copytree(archive / at / "base", into / "db")
    _verify(into / "db", manifest["base"])
    sources: dict[str, Path] = {}
    for name in done[done.index(at):]:
        for f in sorted((archive / name / "binlogs").glob("*")):
            sources.setdefault(f.name, f)
    compose = compose_argv(t)
    config = json.loads(run([*compose, "config", "--format", "json"], cwd=t.path).stdout)
    svc, _ = db_service(config, t.db, service)
    wal = Path(t.wal)
    for f in sorted(wal.glob("*")):
        if _BINLOG_RE.match(f.name):
            sources.setdefault(f.name, f)
    chain = replay_chain(start, list(sources))
    (into / "binlogs").mkdir(parents=True)
    for name in chain:
        shutil.copy2(sources[name], into / "binlogs" / name)
    image = config["services"][svc].get("image")
    name = f"aegir-restore-{t.project}-{os.getpid()}"
    run(["docker", "run", "-d", "--name", name, "--network", "none", "-v", f"{into / 'db'}:/var/lib/mysql",
         "-v", f"{into / 'binlogs'}:/aegir-binlogs:ro", "--entrypoint", "mariadbd", image, "--user=root",
         "--datadir=/var/lib/mysql", "--skip-log-bin", "--skip-networking"])
    try:
        started = time.monotonic()
        while run(["docker", "exec", name, "mariadb", "-uroot", "-e", "SELECT 1"], check=False).returncode != 0:
            if time.monotonic() - started > 120:
                raise CheckpointError(f"the restored server did not answer: {run(['docker', 'logs', name], check=False).stderr[-400:]}")
            time.sleep(0.3)
        flags = [f"--start-position={start[1]}"] + ([f"--stop-datetime={until}"] if until else [])
        files = " ".join(shlex.quote(f"/aegir-binlogs/{n}") for n in chain)
        script = f"mariadb-binlog {' '.join(map(shlex.quote, flags))} {files} | mariadb -uroot"
        run(["docker", "exec", name, "sh", "-c", script], timeout=3600)
        log(f"restore: replayed {len(chain)} binary logs: {', '.join(chain)}")
        run(["docker", "stop", "-t", "300", name], timeout=330)  # SIGTERM: a clean shutdown
    finally:
        run(["docker", "rm", "-f", name], check=False)
    shutil.rmtree(into / "binlogs")
    return {"at": at, "into": str(into / "db"), "replayed": list(chain), "until": until}


# --------------------------------------------------------------------------- the program


def _args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="mysql-checkpoint", description=__doc__.split("\n\n")[0])
    p.add_argument("--srv", default=str(Path(__file__).resolve().parents[2]), help="the /srv folder")
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("checkpoint", "restore", "plan"):
        s = sub.add_parser(name)
        s.add_argument("path")
        s.add_argument("--basedir")
        s.add_argument("--db")
        s.add_argument("--service")
        s.add_argument("--archive")
        if name in ("checkpoint", "plan"):
            s.add_argument("--mode", choices=MODES)
            s.add_argument("--keep", type=int)
            s.add_argument("--run", default=None, help="the run id (default: the time, UTC)")
            s.add_argument("--quiet", action="store_true", help="log to <state>/log only")
        if name == "restore":
            s.add_argument("--at", required=True)
            s.add_argument("--until")
            s.add_argument("--into", required=True)
    return p.parse_args(argv)


def _result(t: Target, data: dict[str, Any]) -> int:
    write_json(Path(t.state) / "result.json", data)
    return 0 if data.get("ok") else 1


def main(argv: Sequence[str] | None = None) -> int:
    a = _args(argv)
    try:
        t = target(a.path, srv=a.srv, basedir=a.basedir, db=a.db, archive=a.archive)
    except CheckpointError as exc:
        print(f"mysql-checkpoint: {exc}", file=sys.stderr)
        return 2
    Path(t.state).mkdir(parents=True, exist_ok=True)
    log = Log(Path(t.state) / "log", quiet=getattr(a, "quiet", False))
    if a.cmd == "restore":
        try:
            print(json.dumps(restore(t, a.at, Path(a.into), a.until, a.service, log)))
            return 0
        except CheckpointError as exc:
            print(f"mysql-checkpoint: {exc}", file=sys.stderr)
            return 1
    if a.cmd == "plan":
        try:
            r = Run(t, a.mode or "cold", a.service, a.keep, a.run or now_id(), log)
            r.log.quiet = True
            r.compose = compose_argv(t)
            r.config = json.loads(run([*r.compose, "config", "--format", "json"], cwd=t.path).stdout)
            own = settings(r.config)
            mode = a.mode or own.get("mode") or "cold"
            svc, _ = db_service(r.config, t.db, a.service or own.get("service"))
            steps = plan(t, mode=mode, compose=r.compose, service=svc, deps=dependents(r.config, svc),
                         entry=str(r.entry), keep=a.keep or own.get("keep"))
            print(json.dumps({"target": asdict(t), "mode": mode, "service": svc,
                              "dependents": list(dependents(r.config, svc)), "steps": [asdict(s) for s in steps]}))
            return 0
        except (CheckpointError, OSError, ValueError) as exc:
            print(f"mysql-checkpoint: {exc}", file=sys.stderr)
            return 1
    return _checkpoint_main(t, a, log)


def _checkpoint_main(t: Target, a: argparse.Namespace, log: Log) -> int:
    run_id = a.run or now_id()
    lock = open(Path(t.state) / "lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log(f"run {run_id}: another checkpoint of {t.path} is running; not starting")
        return _result(t, {"run": run_id, "ok": False, "error": "another checkpoint of this app is running"})
    log(f"run {run_id}: checkpoint of {t.path} (pid {os.getpid()})")
    state = Path(t.state) / "state.json"
    previous = read_json(state)
    last = read_json(Path(t.state) / "result.json")
    recovered = None
    if previous and previous.get("run") and (not last or last.get("run") != previous.get("run")):
        recovered = recover(t, log, previous)  # an earlier run died with its guardian
        _result(t, {"run": previous["run"], "ok": False, "error": "died", "recovered": recovered})
    child = os.fork()
    if child == 0:  # the worker
        code = 1
        try:
            code = _worker(t, a, run_id, log)
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    if os.WIFEXITED(status) and (read_json(Path(t.state) / "result.json") or {}).get("run") == run_id:
        state.unlink(missing_ok=True)
        return os.WEXITSTATUS(status)
    how = f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"exit {os.WEXITSTATUS(status)}"
    previous = read_json(state) or {}
    log(f"run {run_id}: the worker died ({how}) at step {previous.get('step')!r}")
    try:
        did = recover(t, log, previous)
    except CheckpointError as exc:
        did = {"error": str(exc)}
    state.unlink(missing_ok=True)
    return _result(t, {"run": run_id, "ok": False, "error": f"the worker died ({how})",
                       "failed_step": previous.get("step"), "recovered": did})


def _worker(t: Target, a: argparse.Namespace, run_id: str, log: Log) -> int:
    r = Run(t, a.mode or "", a.service, a.keep, run_id, log)
    r.step("lock", lambda: None)
    try:
        if not r.mode:
            r.compose = compose_argv(t)
            conf = json.loads(run([*r.compose, "config", "--format", "json"], cwd=t.path).stdout)
            r.mode = settings(conf).get("mode") or "cold"
        result = checkpoint(r)
    except (CheckpointError, OSError, subprocess.TimeoutExpired, ValueError) as exc:
        step = json.loads((Path(t.state) / "state.json").read_text()).get("step")
        data = {"run": run_id, "ok": False, "error": str(exc), "failed_step": step, "steps": r.steps}
        prev = read_json(Path(t.state) / "state.json") or {}
        try:
            data["recovered"] = recover(t, log, prev) if prev.get("service") else None
        except CheckpointError as again:
            data["recovered"] = {"error": str(again)}
        log(f"run {run_id}: FAILED: {exc}")
        return _result(t, data)
    log(f"run {run_id}: done: {result['entry']}; wal {result['wal_before']} -> {result['wal_after']} bytes")
    return _result(t, {"run": run_id, "ok": True, "mode": r.mode, "steps": r.steps, **result})


if __name__ == "__main__":
    sys.exit(main())
