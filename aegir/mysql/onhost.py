#!/usr/bin/env python3
"""aegir mysql-checkpoint: snapshot a MariaDB/MySQL app's base and archive its binary logs, on the host.

This file is self-contained (Python 3 standard library only): aegir installs
it as ``<srv>/conf/aegir/mysql-checkpoint`` and starts it detached from the SSH
session (``systemd-run``, else ``setsid``), so a dropped connection never
leaves a database stopped. It is also the runbook's script, by hand::

    mysql-checkpoint checkpoint /srv/apps/<app> [--basedir B] [--db D] [--mode cold|hot] [--keep N]
    mysql-checkpoint plan <app>                    # the plan and its exact commands (JSON; reads only)
    mysql-checkpoint restore /srv/apps/<app> --at ID --into DIR [--until 'YYYY-MM-DD HH:MM:SS']
    mysql-checkpoint restore-plan <app> --at ID --into DIR   # what restore would replay (JSON; reads only)

``plan`` and ``restore-plan`` create no folder and write no file: aegir asks
them while it plans, the program streamed on stdin (``python3 - --srv SRV
plan ...``), before anything is installed on the host.

It logs in as the app's database is set up to be logged into: through the
server's socket first, then with the password the service is given
(``MARIADB_ROOT_PASSWORD``, ``MYSQL_ROOT_PASSWORD``, their ``_FILE`` variants
read from the secret or bind-mounted file on the host, or the variable
``x-aegir.mysql.password_var`` names, for ``x-aegir.mysql.user``), as
``docker compose config`` resolves it. The password reaches the client only
through its environment (``MYSQL_PWD``, passed by name: ``compose exec -e
MYSQL_PWD`` takes the value from this program's environment, Compose >= 2.1.1),
never argv, a file, the log or the result. The client (``mariadb`` or
``mysql``) and the other tools are those the image has, found once per run.

Every step is logged with its duration to ``<state>/log``; the outcome goes to
``<state>/result.json`` (``<state>`` = ``<srv>/conf/aegir/mysql/<kind>-<app>``).
A guardian process waits for the worker: if the worker dies mid-run, the
guardian starts the database and its dependents again and records what it
found. A run that finds an earlier run dead (guardian killed too) does the same
first. Binary logs (wherever ``@@log_bin_basename`` and the index put them) are
copied by name, fsynced and checksum-verified into the archive entry, and its
``MANIFEST.json`` written, before ``PURGE BINARY LOGS TO`` the current file,
which happens only when every log before it in the server's index is in the
archive: never ``rm``, never ``RESET MASTER``. An entry without a manifest is
unfinished and removed by the recovery (what it holds is still in ``db/`` and
the logs' folder).

``AEGIR_MYSQL_FAULT=<step>`` (a test hook) makes the worker kill itself with
SIGKILL as that step starts.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import posixpath
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

COMPOSE_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
KINDS = ("core", "apps", "users")
MODES = ("cold", "hot")
COLD_STEPS = ("lock", "inspect", "position", "precopy", "stop", "snapshot", "start", "wait", "dependents", "verify",
              "archive-logs", "purge", "retention")
HOT_STEPS = ("lock", "inspect", "position", "backup", "prepare", "verify", "flush", "archive-logs", "purge",
             "retention")
MANIFEST = "MANIFEST.json"
FAULT_ENV = "AEGIR_MYSQL_FAULT"
#: The variable the MariaDB and MySQL clients (and mariadb-backup) read a password from.
PASSWORD_ENV = "MYSQL_PWD"
#: Where the official images take root's password from, in this order (each also as NAME_FILE).
ROOT_PASSWORD_VARS = ("MARIADB_ROOT_PASSWORD", "MYSQL_ROOT_PASSWORD")
#: The programs looked for in the database's image, by role, preferred name first.
TOOL_NAMES: Mapping[str, tuple[str, ...]] = {
    "client": ("mariadb", "mysql"), "binlog": ("mariadb-binlog", "mysqlbinlog"), "server": ("mariadbd", "mysqld"),
    "backup": ("mariadb-backup", "mariabackup"), "mbstream": ("mbstream",),
}
_TOOLS_PROBE = ("for t in " + " ".join(n for names in TOOL_NAMES.values() for n in names)
                + '; do command -v "$t" >/dev/null 2>&1 && echo "$t"; done; exit 0')
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")
_VAR_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}\Z")
_BINLOG_RE = re.compile(r"^([A-Za-z0-9_.-]+)\.(\d{6,})\Z")
_DENIED_RE = re.compile(r"ERROR (1045|1698)\b")


class CheckpointError(Exception):
    """A step failed: the message says which command and why."""


class LoginError(CheckpointError):
    """aegir cannot log in to the database: no password where it looked, or a refused one (not worth retrying)."""


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
    """The compose file's ``x-aegir: {mysql: {...}}`` (service, dependents, mode, keep, user, password_var), validated."""
    ext = config.get("x-aegir") or {}
    section = ext.get("mysql") if isinstance(ext, dict) else None
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise CheckpointError("x-aegir.mysql must be a mapping")
    known = {"service", "dependents", "mode", "keep", "user", "password_var"}
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
    user = section.get("user")
    if user is not None and not (isinstance(user, str) and _NAME_RE.match(user)):
        raise CheckpointError("x-aegir.mysql.user must be a database user name (letters, digits, '_', '.', '-')")
    var = section.get("password_var")
    if var is not None and not (isinstance(var, str) and _VAR_RE.match(var)):
        raise CheckpointError("x-aegir.mysql.password_var must be the name of a variable of the service's environment")
    if user not in (None, "root") and var is None:
        raise CheckpointError(f"x-aegir.mysql.user is {user!r}: name the variable holding its password with "
                              "x-aegir.mysql.password_var")
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


# --------------------------------------------------------------------------- pure: logging in


@dataclass(frozen=True)
class Secret:
    """Where the password of the user aegir logs in as is: a variable's value, a file on the host, or nowhere.

    `var` names what gave it (``MARIADB_ROOT_PASSWORD`` or ``MARIADB_ROOT_PASSWORD_FILE``); `looked_for`
    every variable looked for, in order (the error line names them).
    """

    user: str
    looked_for: tuple[str, ...]
    var: str | None = None
    value: str | None = field(default=None, repr=False)
    file: str | None = None  # the host file a NAME_FILE variable points at

    def where(self, service: str) -> str:
        at = f" ({self.file})" if self.file else ""
        return f"{self.var}{at} of service {service!r}"


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's environment as ``compose config`` gives it (a mapping; a list of NAME=VALUE in raw files).

    Compose prints a ``$`` of a value as ``$$`` (its own escape, so that the output is a compose file
    again): the values here are the ones the container gets. Variables without a value (``NAME:`` or
    ``- NAME``) are left out.
    """
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = [str(e).partition("=") for e in env]
        return {k: v.replace("$$", "$") for k, eq, v in pairs if eq}
    if not isinstance(env, dict):
        return {}
    return {str(k): str(v).replace("$$", "$") for k, v in env.items() if v is not None}


def password_source(config: dict[str, Any], service: str) -> Secret:
    """Where the service's own environment keeps the password aegir logs in with (pure: nothing is read).

    ``x-aegir.mysql.password_var`` names the variable (for ``x-aegir.mysql.user``, root by default);
    otherwise the official images' ``MARIADB_ROOT_PASSWORD`` then ``MYSQL_ROOT_PASSWORD``. Each
    variable is looked for as such, then as ``NAME_FILE`` (a Docker secret or a bind-mounted file:
    mapped back to the host file through the compose config). An empty value counts as unset.
    """
    own = settings(config)
    user = own.get("user") or "root"
    names = (own["password_var"],) if own.get("password_var") else ROOT_PASSWORD_VARS
    env = environment((config.get("services") or {}).get(service) or {})
    looked: list[str] = []
    for name in names:
        looked += [name, f"{name}_FILE"]
        if env.get(name):
            return Secret(user, tuple(looked), name, env[name])
        if env.get(f"{name}_FILE"):
            return Secret(user, tuple(looked), f"{name}_FILE",
                          file=secret_file(config, service, env[f"{name}_FILE"], f"{name}_FILE"))
    return Secret(user, tuple(looked))


def secret_file(config: dict[str, Any], service: str, inside: str, var: str) -> str:
    """The host file behind `inside`, a path in `service`'s container: a secret's ``file``, else a bind mount."""
    inside = posixpath.normpath(inside)
    secrets = config.get("secrets") or {}
    for s in (config.get("services") or {}).get(service, {}).get("secrets") or []:
        source = s if isinstance(s, str) else str(s.get("source") or "")
        target = (None if isinstance(s, str) else s.get("target")) or source
        if not target.startswith("/"):
            target = f"/run/secrets/{target}"
        if posixpath.normpath(target) != inside:
            continue
        top = secrets.get(source) or {}
        if top.get("file"):
            return str(top["file"])
        how = f"Compose takes it from the variable {top['environment']}" if top.get("environment") else "no file"
        raise LoginError(f"{var}={inside} is the secret {source!r} ({how}): aegir cannot read it; "
                         "name a variable with x-aegir.mysql.password_var")
    found = host_path(config, service, inside)
    if found is None:
        raise LoginError(f"{var}={inside}: that file is neither a secret of service {service!r} nor on one of its "
                         "bind mounts, so aegir cannot read it on the host")
    return found


@dataclass(frozen=True)
class Tools:
    """The programs the database's image has, by role (None: it has none)."""

    client: str | None = "mariadb"
    binlog: str | None = "mariadb-binlog"
    server: str | None = "mariadbd"
    backup: str | None = "mariadb-backup"
    mbstream: str | None = "mbstream"


def pick_tools(found: Iterable[str]) -> Tools:
    """The first name of each role (`TOOL_NAMES`) that `found` (what ``command -v`` answered) holds."""
    have = set(found)
    return Tools(**{role: next((n for n in names if n in have), None) for role, names in TOOL_NAMES.items()})


@dataclass(frozen=True)
class Login:
    """How this run runs SQL in the database's container: which client, as whom, with which password.

    The password goes only into the environment of the processes that need it (`env`), passed into
    the container by name (``-e MYSQL_PWD``): never argv, never a file.
    """

    tools: Tools = Tools()
    user: str = "root"
    password: str | None = field(default=None, repr=False)
    how: str = "the socket"

    @property
    def client(self) -> str:
        return self.tools.client or "mariadb"

    def exec_flags(self) -> list[str]:
        """What ``compose exec`` needs to hand the password in: ``-e MYSQL_PWD`` (the value: our environment)."""
        return ["-e", PASSWORD_ENV] if self.password is not None else []

    def env(self) -> dict[str, str] | None:
        return {**os.environ, PASSWORD_ENV: self.password} if self.password is not None else None

    def sql_argv(self, statement: str) -> list[str]:
        return [self.client, f"-u{self.user}", "-N", "-B", "-e", statement]


def denied(stderr: str) -> bool:
    """Whether a client's stderr says the login was refused (1045: bad password, 1698: socket login refused)."""
    return bool(_DENIED_RE.search(stderr))


def no_password_line(secret: Secret, service: str) -> str:
    return (f"{secret.user} cannot log in to service {service!r} through its socket and no password was found: "
            f"looked for {', '.join(secret.looked_for)} in its environment (compose config, with .env and "
            "env_file); name another variable with x-aegir.mysql.password_var")


# --------------------------------------------------------------------------- pure: binary logs


def binlog_number(name: str) -> int:
    m = _BINLOG_RE.match(name)
    if not m:
        raise CheckpointError(f"not a binary log name: {name!r}")
    return int(m.group(2))


def binlog_base(name: str) -> str:
    """``mysql-bin.000004`` -> ``mysql-bin``."""
    m = _BINLOG_RE.match(name)
    if not m:
        raise CheckpointError(f"not a binary log name: {name!r}")
    return m.group(1)


def parse_binary_logs(text: str) -> list[tuple[str, int]]:
    """``SHOW BINARY LOGS`` in batch mode (``name<TAB>size[<TAB>…]``, the index's order) -> [(name, size)]."""
    out = []
    for line in text.splitlines():
        words = line.split("\t")
        if len(words) >= 2 and words[1].strip().isdigit():
            binlog_number(words[0])
            out.append((words[0], int(words[1])))
    return out


def parse_index(text: str, datadir: str) -> list[str]:
    """A binary log index file -> the logs' paths in the container, in order (relative ones are the datadir's)."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line:
            out.append(posixpath.normpath(line if line.startswith("/") else posixpath.join(datadir, line)))
    return out


def to_archive(logs: Sequence[str], current: str) -> tuple[str, ...]:
    """The logs to archive, by name: every one before `current` in the index's order (never `current`).

    ``PURGE BINARY LOGS TO current`` removes exactly those, whatever their basename or number.
    """
    if current not in logs:
        raise CheckpointError(f"the current binary log {current} is not in the server's index ({', '.join(logs)})")
    return tuple(logs[:list(logs).index(current)])


def unarchived(logs: Sequence[str], current: str, archived: Iterable[str]) -> tuple[str, ...]:
    """The logs ``PURGE BINARY LOGS TO current`` would remove that the archive does not hold (empty: safe)."""
    held = set(archived)
    return tuple(n for n in to_archive(logs, current) if n not in held)


def first_new_log(logs: Sequence[str], at_stop: Iterable[str]) -> str:
    """The first log (index order) of a restarted server that was not there when it stopped: where writes
    made since the restart begin."""
    before = set(at_stop)
    for name in logs:
        if name not in before:
            return name
    raise CheckpointError(f"the restarted server started no new binary log (its logs: {', '.join(logs)})")


def log_sequence(lists: Iterable[Sequence[str]]) -> tuple[str, ...]:
    """Every log once, in the order the server wrote them: each archive entry's logs (oldest entry first),
    then the server's index."""
    seen: dict[str, None] = {}
    for names in lists:
        for n in names:
            seen.setdefault(n, None)
    return tuple(seen)


def replay_chain(start: tuple[str, int], sequence: Sequence[str]) -> tuple[str, ...]:
    """The logs a restore replays, in order: from the base's `start` file on, with no gap.

    A gap is a missing number within one basename; a change of basename (``mysql-bin.*`` ->
    ``db1-bin.*``) follows the index's order.
    """
    if start[0] not in sequence:
        raise CheckpointError(f"the binary log {start[0]} the base starts from is neither archived nor in the "
                              "server's index (wal)")
    chain = tuple(sequence[list(sequence).index(start[0]):])
    for a, b in zip(chain, chain[1:]):
        if binlog_base(a) == binlog_base(b) and binlog_number(b) != binlog_number(a) + 1:
            raise CheckpointError(f"binary logs missing between {a} and {b}")
    return chain


def entry_logs(manifest: Mapping[str, Any]) -> list[str]:
    """The logs an archive entry holds, in the server's order (older manifests: by number)."""
    if isinstance(manifest.get("order"), list):
        return [str(n) for n in manifest["order"]]
    return sorted(manifest.get("binlogs") or {}, key=binlog_number)


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


# --------------------------------------------------------------------------- pure: what the cold snapshot copies

_KINDS = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISSOCK, "a socket"), (stat.S_ISFIFO, "a FIFO"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISCHR, "a character device"))


def walk_db(root: Path, exclude: Iterable[str] = ()) -> tuple[list[str], list[str]]:
    """The folders and regular files under `root` (relative, sorted), leaving out `exclude` (relative paths).

    Anything else (a symbolic link, a socket, a FIFO, a device) raises: the snapshot copies regular
    files and folders only, and never follows a link out of the datadir.
    """
    skip = set(exclude)
    dirs: list[str] = []
    files: list[str] = []

    def visit(folder: Path, rel: str) -> None:
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            sub = f"{rel}{entry.name}"
            if sub in skip:
                continue
            try:
                mode = entry.stat(follow_symlinks=False).st_mode
            except FileNotFoundError:  # a temporary file the running server removed meanwhile
                continue
            if stat.S_ISDIR(mode):
                dirs.append(sub)
                visit(Path(entry.path), f"{sub}/")
            elif stat.S_ISREG(mode):
                files.append(sub)
            else:
                what = next((w for test, w in _KINDS if test(mode)), "not a regular file")
                raise CheckpointError(f"{entry.path} is {what}: the cold snapshot copies regular files and folders "
                                      f"only; move it out of {root}")

    visit(root, "")
    return dirs, files


def binlog_files_in(folder: str, paths: Iterable[str]) -> set[str]:
    """The members of `paths` (host paths of binary logs and their index) inside `folder`, relative to it."""
    folder = os.path.normpath(folder)
    return {os.path.relpath(p, folder) for p in map(os.path.normpath, paths)
            if p.startswith(folder.rstrip("/") + "/")}


# --------------------------------------------------------------------------- pure: the plan


@dataclass(frozen=True)
class Step:
    name: str
    what: str
    commands: tuple[str, ...] = ()


def plan(t: Target, *, mode: str, compose: Sequence[str], service: str, deps: Sequence[str], entry: str,
         keep: int | None, login: Login | None = None) -> tuple[Step, ...]:
    """The checkpoint's steps, with the exact commands each runs (``--dry`` prints this)."""
    c = list(compose)
    lg = login or Login()
    tools = lg.tools

    def sql(statement: str) -> str:
        return shlex.join([*c, "exec", "-T", *lg.exec_flags(), service, *lg.sql_argv(statement)])

    steps = [
        Step("lock", f"take {t.state}/lock (flock: a dead run does not hold it)"),
        Step("inspect", f"find {service} (mounts {t.db}) and its dependents: {', '.join(deps) or 'none'}; "
                        f"log in as {lg.user} using {lg.how}, client {lg.client}",
             (shlex.join([*c, "config", "--format", "json"]),)),
        Step("position", "find the binary logs (basename, index) and list them",
             (sql("SELECT @@log_bin_basename, @@log_bin_index, @@datadir"), sql("SHOW BINARY LOGS"))),
    ]
    if mode == "cold":
        steps += [
            Step("precopy", f"copy {t.db} to {entry}/base while {service} runs (regular files and folders only, "
                            "not the binary logs; sha256 of every file)"),
            Step("stop", f"stop {service} cleanly", (shlex.join([*c, "stop", service]),)),
            Step("snapshot", f"copy again every file of {t.db} whose size or mtime changed since the precopy; "
                             "list the binary logs there are at the stop"),
            Step("start", f"start {service}", (shlex.join([*c, "start", service]),)),
            Step("wait", f"wait until {service} answers; the first binary log it started is where the restore "
                         "replays from", (sql("SELECT 1"), sql("SHOW BINARY LOGS"))),
            Step("dependents", f"restart {', '.join(deps) or 'no dependent'}",
                 (shlex.join([*c, "restart", *deps]),) if deps else ()),
            Step("verify", f"fsync {entry}/base and read it back against the checksums (the database runs)"),
        ]
    else:
        steps += [
            Step("backup", f"{tools.backup} while {service} runs, streamed to {entry}/base.mbstream",
                 (shlex.join([*c, "exec", "-T", *lg.exec_flags(), service, tools.backup or "mariadb-backup",
                              "--backup", f"--user={lg.user}", "--stream=mbstream", "--target-dir=/tmp"])
                  + f" > {shlex.quote(entry)}/base.mbstream",)),
            Step("prepare", f"extract and prepare it in a throw-away container of {service}'s image",
                 (shlex.join(["docker", "run", "--rm", "--network", "none", "--entrypoint", "sh", "-v",
                              f"{entry}:/aegir", "IMAGE", "-c", prepare_script(tools)]),)),
            Step("verify", f"sha256 of every file of {entry}/base, read back"),
            Step("flush", "close the current binary log", (sql("FLUSH BINARY LOGS"),)),
        ]
    steps += [
        Step("archive-logs", f"copy every binary log before the current one (by name, in the index's order) to "
                             f"{entry}/binlogs (fsync, sha256 read back), then write {entry}/{MANIFEST}"),
        Step("purge", "make the server forget the archived logs, once every log before the current one is archived",
             (sql("PURGE BINARY LOGS TO 'CURRENT'"),)),
        Step("retention", f"keep the newest {keep} checkpoints in {t.archive}" if keep else "keep every checkpoint"),
    ]
    return tuple(steps)


def prepare_script(tools: Tools) -> str:
    """The shell line that extracts and prepares a hot backup in a throw-away container of the image."""
    return (f"set -e; rm -rf /aegir/base; mkdir /aegir/base; {tools.mbstream or 'mbstream'} -x -C /aegir/base "
            f"< /aegir/base.mbstream; {tools.backup or 'mariadb-backup'} --prepare --target-dir=/aegir/base")


def refuse_hot(tools: Tools, service: str) -> str | None:
    """Why a hot checkpoint cannot run with the image's tools (None: it can)."""
    if tools.backup is None:
        return (f"hot mode needs mariadb-backup, and the image of service {service!r} has none (mariadb-backup is "
                f"MariaDB's; MySQL's images have no such tool; client: {tools.client}): use --mode cold")
    if tools.mbstream is None:
        return f"hot mode needs mbstream (to extract the backup), and the image of service {service!r} has none"
    return None


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
    """Timestamped lines in <state>/log (and on stderr); `path` None: no file (a plan writes nothing)."""

    def __init__(self, path: Path | None, quiet: bool = False) -> None:
        self.path = path
        self.quiet = quiet

    def __call__(self, text: str) -> None:
        line = f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {text}\n"
        if self.path is not None:
            with self.path.open("a") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
        if not self.quiet:
            sys.stderr.write(line)


def run(argv: Sequence[str], *, cwd: str | None = None, stdout: Any = None, timeout: float | None = 600,
        check: bool = True, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `argv` (stdin: nothing); `env` replaces the environment (how a password reaches a client)."""
    done = subprocess.run(list(argv), cwd=cwd, stdin=subprocess.DEVNULL, text=stdout is None,
                          stdout=stdout if stdout is not None else subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout, env=dict(env) if env is not None else None)
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
        if v.returncode == 0 and compose_version_ok(v.stdout):
            return [*prefix, "--project-directory", t.path, "-f", os.path.join(t.path, files[0]), "-p", t.project]
    raise CheckpointError("no Docker Compose 2.1.1 or later (`docker compose` or docker-compose) on this host")


def compose_version_ok(text: str) -> bool:
    """Compose >= 2.1.1: ``config --format json``, and ``exec -e NAME`` taking NAME's value from our environment.

    >>> compose_version_ok("v2.40.3"), compose_version_ok("2.1.0"), compose_version_ok("1.29.2")
    (True, False, False)
    """
    nums = [int(n) for n in re.findall(r"\d+", text.strip().lstrip("v").split("-")[0])[:3]]
    return tuple(nums + [0] * (3 - len(nums))) >= (2, 1, 1)


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
    login: Login | None = None

    @property
    def entry(self) -> Path:
        return Path(self.t.archive) / self.run_id

    def exec_argv(self, argv: Sequence[str], login: Login | None = None) -> list[str]:
        """``compose exec -T [-e MYSQL_PWD] SERVICE ARGV``."""
        assert self.service
        return [*self.compose, "exec", "-T", *(login or self.login or Login()).exec_flags(), self.service, *argv]

    def sql(self, statement: str, timeout: float = 60) -> str:
        if self.login is None:
            self.login = log_in(self)
        lg = self.login
        return run(self.exec_argv(lg.sql_argv(statement)), env=lg.env(), timeout=timeout).stdout

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


def compose_config(r: Run) -> dict[str, Any]:
    if not r.config:
        r.config = json.loads(run([*r.compose, "config", "--format", "json"], cwd=r.t.path).stdout)
    return r.config


def log_in(r: Run) -> Login:
    """Find the image's client and log in as the app's database is set up for: the socket first, then the
    password the service is given (`password_source`). One probe of the image's tools, at most two logins."""
    assert r.service
    config = compose_config(r)
    probe = run(r.exec_argv(["sh", "-c", _TOOLS_PROBE], Login()), check=False, timeout=60)
    if probe.returncode != 0:
        raise CheckpointError(f"cannot run sh in service {r.service!r} (is it running?): "
                              f"{probe.stderr.strip()[-300:]}")
    tools = pick_tools(probe.stdout.split())
    if tools.client is None:
        raise LoginError(f"the image of service {r.service!r} has neither mariadb nor mysql in its PATH")
    secret = password_source(config, r.service)
    socket = Login(tools, secret.user)
    tried = run(r.exec_argv(socket.sql_argv("SELECT 1"), socket), check=False, timeout=60)
    if tried.returncode == 0:
        r.log(f"info: logged in to {r.service} as {secret.user} through the socket; tools: {_tools_line(tools)}")
        return socket
    if not denied(tried.stderr):
        raise CheckpointError(f"`{shlex.join(r.exec_argv(socket.sql_argv('SELECT 1'), socket))}` exited "
                              f"{tried.returncode}: {tried.stderr.strip()[-300:]}")
    if secret.var is None:
        raise LoginError(no_password_line(secret, r.service))
    if secret.value is not None:
        password = secret.value
    else:
        try:
            password = Path(str(secret.file)).read_text().rstrip("\n")
        except OSError as exc:
            raise LoginError(f"cannot read {secret.where(r.service)}: {exc.strerror}") from None
    login = Login(tools, secret.user, password, f"the password from {secret.var}")
    again = run(r.exec_argv(login.sql_argv("SELECT 1"), login), check=False, timeout=60, env=login.env())
    if again.returncode == 0:
        r.log(f"info: logged in to {r.service} as {secret.user} with the password from {secret.where(r.service)}; "
              f"tools: {_tools_line(tools)}")
        return login
    last = (again.stderr.strip().splitlines() or [f"exit {again.returncode}"])[-1][-300:]
    if denied(again.stderr):
        raise LoginError(f"{secret.user} cannot log in to service {r.service!r}: the password from "
                         f"{secret.where(r.service)} is refused ({last})")
    raise CheckpointError(f"logging in to service {r.service!r} failed: {last}")


def _tools_line(tools: Tools) -> str:
    return ", ".join(f"{role} {name or 'none'}" for role, name in asdict(tools).items())


def inspect(r: Run) -> None:
    r.compose = compose_argv(r.t)
    compose_config(r)
    own = settings(r.config)
    r.service = r.service or own.get("service")
    r.service, r.facts["datadir"] = db_service(r.config, r.t.db, r.service)
    r.deps = dependents(r.config, r.service)
    r.keep = r.keep or own.get("keep")
    r.log(f"info: database service {r.service}; dependents: {', '.join(r.deps) or 'none'}; archive {r.entry}")
    r.login = log_in(r)
    if r.mode == "hot" and (why := refuse_hot(r.login.tools, r.service)):
        raise CheckpointError(why)


def binary_logs(r: Run) -> list[tuple[str, int]]:
    """The server's binary logs, in its index's order, with their sizes."""
    return parse_binary_logs(r.sql("SHOW BINARY LOGS"))


def position(r: Run) -> dict[str, Any]:
    """Where the server writes its binary logs (host folder, index file on the host) and which it has now."""
    assert r.service
    words = r.sql("SELECT @@log_bin_basename, @@log_bin_index, @@datadir").strip().split("\t")
    basename, index, datadir = (words + ["", "", ""])[:3]
    if not basename or basename == "NULL":
        raise CheckpointError("binary logging is off on the server (set log-bin)")
    found = host_path(r.config, r.service, posixpath.dirname(basename))
    if found is None:
        raise CheckpointError(f"the binary logs ({posixpath.dirname(basename)} in the container) are not on a bind "
                              "mount")
    logs = binary_logs(r)
    if not logs:
        raise CheckpointError("binary logging is off: SHOW BINARY LOGS is empty (set log-bin)")
    r.facts.update(wal_dir=found, basename=posixpath.basename(basename), datadir=datadir or r.facts.get("datadir"),
                   index=host_path(r.config, r.service, index) if index and index != "NULL" else None)
    return {"current": logs[-1][0], "size": logs[-1][1], "logs": len(logs), "bytes": sum(s for _, s in logs),
            "folder": found, "index": r.facts["index"]}


def index_paths(r: Run) -> dict[str, str]:
    """The binary logs the index file lists (read on the host), name -> host path ({} if unreadable)."""
    if not r.facts.get("index"):
        return {}
    try:
        text = Path(r.facts["index"]).read_text()
    except OSError:
        return {}
    out = {}
    for inside in parse_index(text, r.facts.get("datadir") or "/var/lib/mysql"):
        on_host = host_path(r.config, r.service or "", inside)
        if on_host is not None and _BINLOG_RE.match(posixpath.basename(inside)):
            out[posixpath.basename(inside)] = on_host
    return out


def logs_on_disk(r: Run) -> set[str]:
    """The binary logs there are (the index, plus every file of the basename in the logs' folder)."""
    names = set(index_paths(r))
    folder = Path(r.facts["wal_dir"])
    names |= {p.name for p in folder.glob(f"{r.facts['basename']}.*") if _BINLOG_RE.match(p.name)}
    return names


def binlog_paths(r: Run) -> set[str]:
    """Host paths of the binary logs and of their index: what the cold snapshot leaves to the archive."""
    folder = Path(r.facts["wal_dir"])
    paths = set(index_paths(r).values())
    paths |= {str(p) for p in folder.glob(f"{r.facts['basename']}.*") if _BINLOG_RE.match(p.name)}
    if r.facts.get("index"):
        paths.add(r.facts["index"])
    return paths


def wait_ready(r: Run, timeout: float = 120) -> float:
    started = time.monotonic()
    last = ""
    while time.monotonic() - started < timeout:
        try:
            r.sql("SELECT 1", timeout=15)
            return time.monotonic() - started
        except LoginError:
            raise
        except (CheckpointError, subprocess.TimeoutExpired) as exc:
            last = str(exc)
            time.sleep(0.2)
    raise CheckpointError(f"{r.service} did not answer within {timeout:.0f}s: {last}")


def restarted(r: Run, at_stop: set[str] | None) -> tuple[str, int] | None:
    """Wait until the server answers; then, before anything else runs, where the restore must replay from:
    the first binary log the restarted server started (`first_new_log`)."""
    wait_ready(r)
    if at_stop is None:
        return None
    start = first_new_log([n for n, _ in binary_logs(r)], at_stop)
    r.log(f"info: the restarted server writes from {start}: a restore of this checkpoint replays from there")
    return start, 4


def cold_snapshot(r: Run, known: dict[str, str] | None = None) -> dict[str, str]:
    """Copy db/ into the entry's base; returns every file's checksum.

    Regular files and folders only (`walk_db` refuses anything else before a byte is copied), and not the
    binary logs nor their index when they live in db/: the archive keeps those. With `known` (the
    checksums of a pre-copy taken while the server ran), a file whose size and mtime (ns) match its
    pre-copied twin is kept, as rsync's quick check does; every other file is copied again and files gone
    from db/ are removed. fsync and read-back come after the restart (`_verify`).
    """
    base = r.entry / "base"
    dirs, files = walk_db(Path(r.t.db), binlog_files_in(r.t.db, binlog_paths(r)))
    sums: dict[str, str] = {}
    for rel in dirs:
        (base / rel).mkdir(parents=True, exist_ok=True)
    for rel in files:
        src, dst = Path(r.t.db) / rel, base / rel
        if known is not None and rel in known and dst.is_file():
            a, b = src.stat(), dst.stat()
            if (a.st_size, a.st_mtime_ns) == (b.st_size, b.st_mtime_ns):
                sums[rel] = known[rel]
                continue
        try:
            sums[rel] = copy_summed(src, dst, sync=False)
        except FileNotFoundError:
            if known is not None:  # the server is stopped: nothing may vanish
                raise
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
    assert r.service and r.login
    lg, tool = r.login, r.login.tools.backup
    assert tool, "inspect refuses hot mode without mariadb-backup"
    r.entry.mkdir(parents=True, exist_ok=True)
    with (r.entry / "base.mbstream").open("wb") as out:
        run(r.exec_argv([tool, "--backup", f"--user={lg.user}", "--stream=mbstream", "--target-dir=/tmp"]),
            stdout=out, timeout=3600, env=lg.env())
        out.flush()
        os.fsync(out.fileno())


def hot_prepare(r: Run) -> tuple[str, int]:
    assert r.login
    image = container_image(r)
    run(["docker", "run", "--rm", "--network", "none", "--entrypoint", "sh", "-v", f"{r.entry}:/aegir", image,
         "-c", prepare_script(r.login.tools)], timeout=3600)
    (r.entry / "base.mbstream").unlink()
    for name in ("mariadb_backup_binlog_info", "xtrabackup_binlog_info"):
        info = r.entry / "base" / name
        if info.is_file():
            return parse_binlog_info(info.read_text())
    raise CheckpointError("mariadb-backup wrote no binlog position (is log-bin on?)")


def archive_logs(r: Run, current: str, start: tuple[str, int]) -> dict[str, str]:
    """Copy every log before `current` in the index (by name) into the entry, verified; then the manifest.

    Each log is found where the index says it is (mapped to the host through the bind mounts), else in
    the folder of ``@@log_bin_basename``; a log found in neither stops the run before anything is purged.
    """
    names = [n for n, _ in binary_logs(r)]
    todo = to_archive(names, current)
    where = index_paths(r)
    paths = {n: Path(where.get(n) or Path(r.facts["wal_dir"]) / n) for n in todo}
    if missing := [n for n in todo if not paths[n].is_file()]:
        raise CheckpointError(f"binary logs {', '.join(missing)} are in the server's index but not on the host "
                              f"(looked at {', '.join(str(paths[n]) for n in missing[:3])}): nothing archived, "
                              "nothing purged")
    sums = {}
    for name in todo:
        sums[name] = copy_verified(paths[name], r.entry / "binlogs" / name)
        if sha256_file(paths[name]) != sums[name]:
            raise CheckpointError(f"{paths[name]} changed while it was archived")
    if (r.entry / "binlogs").is_dir():
        _fsync_dir(r.entry / "binlogs")
    write_json(r.entry / MANIFEST, {
        "id": r.run_id, "mode": r.mode, "created": time.time(), "service": r.service,
        "start": {"file": start[0], "position": start[1]}, "current": current, "binlogs": sums, "order": list(todo),
        "binlog_dir": r.facts["wal_dir"], "index": r.facts.get("index"), "datadir": r.facts.get("datadir"),
        "keep": r.keep, "base": r.facts.get("base_sums", {}),
    })
    _fsync_dir(r.entry)
    return sums


def purge(r: Run, current: str, archived: Iterable[str]) -> None:
    """``PURGE BINARY LOGS TO current``, only when every log it would remove is in the archive."""
    names = [n for n, _ in binary_logs(r)]
    if left := unarchived(names, current, archived):
        raise CheckpointError(f"not purging: {', '.join(left)} come before {current} in the server's index but are "
                              "not in the archive")
    binlog_number(current)  # a log's name: letters, digits, '_', '.', '-' only, nothing to quote
    r.sql(f"PURGE BINARY LOGS TO '{current}'")


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
    r.facts["position"] = r.step("position", lambda: position(r))
    wal_before = r.facts["position"]["bytes"]
    r.entry.mkdir(parents=True, exist_ok=True)
    assert r.service
    if r.mode == "cold":
        early = r.step("precopy", lambda: cold_snapshot(r))  # while it runs: the stop only copies what changed
        down = time.monotonic()
        r.step("stop", lambda: run([*r.compose, "stop", r.service], timeout=300))  # type: ignore[list-item]
        at_stop: set[str] | None = None
        try:
            r.facts["base_sums"], at_stop = r.step("snapshot", lambda: (cold_snapshot(r, early), logs_on_disk(r)))
        finally:
            r.step("start", lambda: run([*r.compose, "start", r.service], timeout=300))  # type: ignore[list-item]
            start = r.step("wait", lambda: restarted(r, at_stop))  # the writes since the restart begin here
            r.facts["downtime"] = round(time.monotonic() - down, 3)
            if r.deps:
                r.step("dependents", lambda: run([*r.compose, "restart", *r.deps], timeout=300))
        r.step("verify", lambda: _verify(r.entry / "base", r.facts["base_sums"]))
    else:
        r.step("backup", lambda: hot_backup(r))
        start = r.step("prepare", lambda: hot_prepare(r))  # the backup's own position
        r.facts["base_sums"] = r.step("verify", lambda: tree_sums(r.entry / "base"))
        r.step("flush", lambda: r.sql("FLUSH BINARY LOGS"))
        r.facts["downtime"] = 0.0
    current = binary_logs(r)[-1][0]  # read now: every log before it is closed, whatever rotated meanwhile
    archived = r.step("archive-logs", lambda: archive_logs(r, current, start))
    r.step("purge", lambda: purge(r, current, archived))
    after = binary_logs(r)
    if left := [n for n, _ in after if n in archived]:
        raise CheckpointError(f"the server still lists archived logs after PURGE: {', '.join(left)}")
    done, _ = entries(Path(r.t.archive))
    gone = r.step("retention", lambda: _retention(r.t, done, r.keep))
    return {"entry": str(r.entry), "start": list(start), "archived": list(archived), "current": current,
            "wal_before": wal_before, "wal_after": sum(size for _, size in after), "downtime": r.facts["downtime"],
            "removed": list(gone), "service": r.service, "dependents": list(r.deps), "login": r.login.how if r.login
            else None, "binlog_dir": r.facts.get("wal_dir")}


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


def restore_plan(t: Target, at: str, into: Path, service: str | None) -> dict[str, Any]:
    """What a restore of entry `at` into `into` would do, read only: the complete checkpoint (``latest``
    resolved), the scratch folder (missing or empty), the chain of binary logs to replay from the base's
    position, each found in the archive or still on the server, and the image of the throw-away server.

    The logs are chained in the order the server wrote them (each entry's manifest, then the index
    file the newest manifest names). `CheckpointError` when any of it does not hold.
    """
    archive = Path(t.archive)
    done, _ = entries(archive)
    if at == "latest" and done:
        at = done[-1]
    if at not in done:
        raise CheckpointError(f"no complete checkpoint {at!r} in {archive} (have: {', '.join(done) or 'none'})")
    if into.exists() and not into.is_dir():
        raise CheckpointError(f"{into} is not a folder: restore goes into a scratch folder")
    if into.exists() and any(into.iterdir()):
        raise CheckpointError(f"{into} is not empty: restore goes into a scratch folder")
    manifest = read_json(archive / at / MANIFEST) or {}
    start = (manifest["start"]["file"], int(manifest["start"]["position"]))
    sources: dict[str, Path] = {}
    lists = []
    for name in done[done.index(at):]:
        lists.append(entry_logs(read_json(archive / name / MANIFEST) or {}))
        for f in sorted((archive / name / "binlogs").glob("*")):
            sources.setdefault(f.name, f)
    compose = compose_argv(t)
    config = json.loads(run([*compose, "config", "--format", "json"], cwd=t.path).stdout)
    svc, datadir = db_service(config, t.db, service)
    live = live_logs(config, svc, read_json(archive / done[-1] / MANIFEST) or {}, Path(t.wal), datadir)
    for name, path in live:
        sources.setdefault(name, path)
    chain = replay_chain(start, log_sequence([*lists, [n for n, _ in live]]))
    missing = [n for n in chain if n not in sources]
    if missing:
        raise CheckpointError(f"the chain of binary logs from {start[0]} lacks {', '.join(missing)}: "
                              "neither archived nor on the server")
    image = config["services"][svc].get("image")
    if not image:
        raise CheckpointError(f"service {svc!r} names no image: no throw-away server to replay with")
    return {"at": at, "mode": manifest.get("mode"), "base": str(archive / at / "base"), "into": str(into),
            "start": list(start), "chain": list(chain), "sources": {n: str(sources[n]) for n in chain},
            "service": svc, "image": image}


def restore(t: Target, at: str, into: Path, until: str | None, service: str | None, log: Log) -> dict[str, Any]:
    """Base of entry `at` + archived logs + the logs still on the server, replayed into `into` (`restore_plan`).

    The replay runs in a throw-away server of the app's image started
    with ``--skip-grant-tables`` (no network, no login needed, so no password), which loads the grant
    tables before the first replayed statement so that user statements in the logs apply.
    """
    p = restore_plan(t, at, into, service)
    at, archive = p["at"], Path(t.archive)
    manifest = read_json(archive / at / MANIFEST)
    start, chain, image = (p["start"][0], int(p["start"][1])), p["chain"], p["image"]
    log(f"restore: base {at} ({manifest['mode']}), replay from {start[0]}:{start[1]}")
    shutil.copytree(archive / at / "base", into / "db")
    _verify(into / "db", manifest["base"])
    (into / "binlogs").mkdir(parents=True)
    for name in chain:
        shutil.copy2(p["sources"][name], into / "binlogs" / name)
    tools = image_tools(image)
    name = f"aegir-restore-{t.project}-{os.getpid()}"
    run(["docker", "run", "-d", "--name", name, "--network", "none", "-v", f"{into / 'db'}:/var/lib/mysql",
         "-v", f"{into / 'binlogs'}:/aegir-binlogs:ro", "--entrypoint", str(tools.server), image, "--user=root",
         "--datadir=/var/lib/mysql", "--skip-log-bin", "--skip-networking", "--skip-grant-tables"])
    try:
        started = time.monotonic()
        while run(["docker", "exec", name, str(tools.client), "-uroot", "-e", "SELECT 1"],
                  check=False).returncode != 0:
            if time.monotonic() - started > 120:
                raise CheckpointError(f"the restored server did not answer: {run(['docker', 'logs', name], check=False).stderr[-400:]}")
            time.sleep(0.3)
        flags = [f"--start-position={start[1]}"] + ([f"--stop-datetime={until}"] if until else [])
        files = " ".join(shlex.quote(f"/aegir-binlogs/{n}") for n in chain)
        script = (f"{{ echo 'FLUSH PRIVILEGES;'; {tools.binlog} {' '.join(map(shlex.quote, flags))} {files}; }} "
                  f"| {tools.client} -uroot")
        run(["docker", "exec", name, "sh", "-c", script], timeout=3600)
        log(f"restore: replayed {len(chain)} binary logs: {', '.join(chain)}")
        run(["docker", "stop", "-t", "300", name], timeout=330)  # SIGTERM: a clean shutdown
    finally:
        run(["docker", "rm", "-f", name], check=False)
    shutil.rmtree(into / "binlogs")
    return {"at": at, "into": str(into / "db"), "replayed": list(chain), "until": until}


def live_logs(config: dict[str, Any], service: str, newest: Mapping[str, Any], wal: Path,
              datadir: str) -> list[tuple[str, Path]]:
    """The logs still on the server, in its index's order: the index file the newest manifest names
    (mapped to the host), else the binary logs of its folder (or of wal/), by number."""
    index = newest.get("index")
    if index:
        try:
            text = Path(index).read_text()
        except OSError:
            text = None
        if text is not None:
            out = []
            for inside in parse_index(text, newest.get("datadir") or datadir):
                on_host = host_path(config, service, inside)
                if on_host and _BINLOG_RE.match(posixpath.basename(inside)) and Path(on_host).is_file():
                    out.append((posixpath.basename(inside), Path(on_host)))
            return out
    folder = Path(newest.get("binlog_dir") or wal)
    files = [f for f in folder.glob("*") if _BINLOG_RE.match(f.name)] if folder.is_dir() else []
    return [(f.name, f) for f in sorted(files, key=lambda f: (binlog_base(f.name), binlog_number(f.name)))]


def image_tools(image: str) -> Tools:
    """The server, client and binlog reader `image` has (a throw-away container, no network)."""
    found = run(["docker", "run", "--rm", "--network", "none", "--entrypoint", "sh", image, "-c", _TOOLS_PROBE],
                timeout=120).stdout.split()
    tools = pick_tools(found)
    for role in ("server", "client", "binlog"):
        if getattr(tools, role) is None:
            raise CheckpointError(f"the image {image} has no {' or '.join(TOOL_NAMES[role])}: cannot restore with it")
    return tools


# --------------------------------------------------------------------------- the program


#: The verbs that only read: they create no folder and write no log (aegir asks them while it plans, with this
#: program on stdin, before anything is installed).
READ_ONLY = ("plan", "restore-plan")


def _args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="mysql-checkpoint", description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--srv", help="the /srv folder (default: the one this program is installed in)")
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("checkpoint", "restore", "plan", "restore-plan"):
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
        if name in ("restore", "restore-plan"):
            s.add_argument("--at", required=True)
            s.add_argument("--until")
            s.add_argument("--into", required=True)
    a = p.parse_args(argv)
    if a.srv is None:  # <srv>/conf/aegir/mysql-checkpoint; read from stdin (`python3 -`) it must be given
        here = Path(globals().get("__file__") or "-").resolve()
        if here.name != "mysql-checkpoint" or len(here.parents) < 3:
            p.error("--srv is required when the program is not installed as <srv>/conf/aegir/mysql-checkpoint")
        a.srv = str(here.parents[2])
    return a


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
    if a.cmd in READ_ONLY:
        log = Log(None, quiet=True)
    else:
        Path(t.state).mkdir(parents=True, exist_ok=True)
        log = Log(Path(t.state) / "log", quiet=getattr(a, "quiet", False))
    if a.cmd == "restore-plan":
        try:
            print(json.dumps(restore_plan(t, a.at, Path(a.into), a.service)))
            return 0
        except (CheckpointError, OSError, ValueError, KeyError, subprocess.TimeoutExpired) as exc:
            print(f"mysql-checkpoint: {exc}", file=sys.stderr)
            return 1
    if a.cmd == "restore":
        try:
            print(json.dumps(restore(t, a.at, Path(a.into), a.until, a.service, log)))
            return 0
        except CheckpointError as exc:
            print(f"mysql-checkpoint: {exc}", file=sys.stderr)
            return 1
    if a.cmd == "plan":
        try:
            return _plan_main(t, a, log)
        except (CheckpointError, OSError, ValueError, subprocess.TimeoutExpired) as exc:
            print(f"mysql-checkpoint: {exc}", file=sys.stderr)
            return 1
    return _checkpoint_main(t, a, log)


def _plan_main(t: Target, a: argparse.Namespace, log: Log) -> int:
    """Print the plan as JSON (reads the compose file, logs in to find the tools; changes nothing)."""
    r = Run(t, a.mode or "cold", a.service, a.keep, a.run or now_id(), log)
    r.log.quiet = True
    r.compose = compose_argv(t)
    compose_config(r)
    own = settings(r.config)
    mode = a.mode or own.get("mode") or "cold"
    r.service, _ = db_service(r.config, t.db, a.service or own.get("service"))
    note = None
    try:
        r.login = log_in(r)
    except LoginError:
        raise
    except (CheckpointError, subprocess.TimeoutExpired) as exc:  # down: an earlier run died; this one recovers first
        note = f"the database does not answer now ({exc}); the run starts it first, then logs in"
    if r.login and mode == "hot" and (why := refuse_hot(r.login.tools, r.service)):
        raise CheckpointError(why)
    deps = dependents(r.config, r.service)
    lg = r.login or Login()
    steps = plan(t, mode=mode, compose=r.compose, service=r.service, deps=deps, entry=str(r.entry),
                 keep=a.keep or own.get("keep"), login=lg)
    print(json.dumps({"target": asdict(t), "mode": mode, "service": r.service, "dependents": list(deps),
                      "login": {"user": lg.user, "how": lg.how, "client": lg.client, "note": note},
                      "steps": [asdict(s) for s in steps]}))
    return 0


def _take(lock: IO[str], tries: int = 20, pause: float = 0.05) -> bool:
    """Take the app's lock; False when another run holds it. A reader probing whether a run is alive
    (`flock -n lock true`, mysql.status and the operator's follow) holds it for a moment: a lock still taken
    after a second is a run's."""
    for _ in range(tries):
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            time.sleep(pause)
    return False


def _checkpoint_main(t: Target, a: argparse.Namespace, log: Log) -> int:
    run_id = a.run or now_id()
    lock = open(Path(t.state) / "lock", "w")
    if not _take(lock):
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
