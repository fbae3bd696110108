"""The on-host program's command lines and arguments: where it is installed, how a plan asks it on stdin, the
detached start, the restore. Pure: each is tested as an exact string (tests/unit/test_mysql.py).

Commands that only read (`streamed_cmd`: the program's ``plan`` and ``restore-plan``, sent on stdin) are
asked as facts (`aegir.mysql.facts`); the others run from `aegir.mysql.steps` only.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from aegir.errors import AegirError
from aegir.mysql import onhost
from aegir.sh import Cmd, check_name, shell

MODES = onhost.MODES
PROGRAM = "conf/aegir/mysql-checkpoint"


def program_path(srv: str) -> str:
    """Where aegir installs the on-host program: ``<srv>/conf/aegir/mysql-checkpoint``."""
    return f"{srv.rstrip('/')}/{PROGRAM}"


def app_path(srv: str, path: str) -> str:
    """``apps/x``, ``x`` or a full path, as the runbook's script took it; names are validated."""
    srv = srv.rstrip("/") or "/"
    if path.startswith("/"):
        parts = [p for p in path.split("/") if p]
        if not parts or any(p in (".", "..") for p in parts):
            raise AegirError(f"invalid app path {path!r}")
        for p in parts:
            check_name("path part", p)
        return "/" + "/".join(parts)
    kind, _, folder = path.rpartition("/")
    if kind and kind not in onhost.KINDS:
        raise AegirError(f"invalid app {path!r}: the part before '/' must be one of {', '.join(onhost.KINDS)}")
    check_name("app", folder)
    return f"{srv}/{kind or 'apps'}/{folder}"


@dataclass(frozen=True)
class Options:
    """`mysql.checkpoint`'s arguments, as the program takes them."""

    basedir: str | None = None
    db: str | None = None
    service: str | None = None
    mode: str | None = None
    keep: int | None = None

    def __post_init__(self) -> None:
        if self.mode is not None and self.mode not in MODES:
            raise AegirError(f"--mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.keep is not None and int(self.keep) < 1:
            raise AegirError(f"--keep must be 1 or more, not {self.keep}")
        if self.service is not None:
            check_name("service", self.service)
        for what, value in (("--basedir", self.basedir), ("--db", self.db)):
            if value is not None and (not value or any(p == ".." for p in value.split("/"))):
                raise AegirError(f"{what} {value!r}: give a folder below the app's (or a full path), without '..'")

    def argv(self) -> list[str]:
        out: list[str] = []
        for flag, value in (("--basedir", self.basedir), ("--db", self.db), ("--service", self.service),
                            ("--mode", self.mode), ("--keep", self.keep)):
            if value is not None:
                out += [flag, str(value)]
        return out


def program_cmd(srv: str, verb: str, path: str, *args: str) -> Cmd:
    """``python3 <srv>/conf/aegir/mysql-checkpoint --srv SRV VERB PATH ARGS``."""
    return Cmd(("python3", program_path(srv), "--srv", srv, verb, path, *args))


def streamed_cmd(srv: str, verb: str, path: str, *args: str, program: str) -> Cmd:
    """``python3 - --srv SRV VERB PATH ARGS``, the program's text on stdin: how a plan asks it, read only,
    before it is installed (`aegir.mysql.onhost.READ_ONLY` verbs create no folder and write no file)."""
    if verb not in onhost.READ_ONLY:
        raise ValueError(f"{verb} changes the host: run the installed program (program_cmd)")
    return Cmd(("python3", "-", "--srv", srv, verb, path, *args), stdin=program)


def plan_cmd(srv: str, path: str, opts: Options, run: str, *, program: str) -> Cmd:
    """The program's own plan of run `run` (JSON: target, service, dependents, steps with their commands)."""
    return streamed_cmd(srv, "plan", path, *opts.argv(), "--run", check_name("run", run), program=program)


_START_SCRIPT = """\
unit=$1; shift
if [ -d /run/systemd/system ] && command -v systemd-run >/dev/null 2>&1; then
  exec systemd-run --quiet --collect --unit="$unit" -- "$@"
fi
setsid -f "$@" </dev/null >/dev/null 2>&1
echo "started with setsid"
"""


def start_cmd(srv: str, path: str, opts: Options, run: str, *, key: str,
              env: Sequence[tuple[str, str]] = ()) -> Cmd:
    """Start the checkpoint detached from the session: ``systemd-run``, else ``setsid``."""
    check_name("run", run)
    prog = program_cmd(srv, "checkpoint", path, *opts.argv(), "--run", run, "--quiet")
    argv = ("env", *(f"{k}={v}" for k, v in env), *prog.argv) if env else prog.argv
    return shell(_START_SCRIPT, f"aegir-mysql-checkpoint-{key}-{run}", *argv)


def restore_args(at: str, into: str, until: str | None, service: str | None) -> list[str]:
    """``--at AT --into INTO [--until T] [--service S]``, each checked (`AegirError` saying which)."""
    check_name("checkpoint", at)
    if not into.startswith("/"):
        raise AegirError(f"--into must be a full path, not {into!r}")
    args = ["--at", at, "--into", into]
    if until:
        if not re.fullmatch(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d(:\d\d)?", until):
            raise AegirError(f"--until {until!r}: give 'YYYY-MM-DD HH:MM[:SS]' (the server's time)")
        args += ["--until", until.replace("T", " ")]
    if service:
        args += ["--service", check_name("service", service)]
    return args


def restore_cmd(srv: str, path: str, at: str, into: str, until: str | None, service: str | None) -> Cmd:
    """The installed program's restore (its last line: JSON, what it replayed)."""
    return program_cmd(srv, "restore", path, *restore_args(at, into, until, service))


def restore_plan_cmd(srv: str, path: str, at: str, into: str, service: str | None, *, program: str) -> Cmd:
    """What the restore would replay (JSON), asked of the program on stdin: reads only."""
    return streamed_cmd(srv, "restore-plan", path, *restore_args(at, into, None, service), program=program)
