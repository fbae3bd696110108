"""Shared test helpers: run the real `inv` program as an operator would."""

from __future__ import annotations

import fcntl
import os
import re
import select
import subprocess
import sys
import tempfile
import termios
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aegir.poll import Background

if TYPE_CHECKING:
    import paramiko

    from tests.lab import Lab, LabHost

REPO = Path(__file__).resolve().parent.parent

#: $COLUMNS for the program unless a test sets it: one table row per line, as a script that reads tables from a
#: pipe would ask (without $COLUMNS a pipe gets 80 columns; the tests of that set it or leave it out on purpose).
WIDE = "500"


def run_inv(*args: str, inventory: str | os.PathLike[str] | None = None, cwd: str | os.PathLike[str] | None = None,
            env: dict[str, str] | None = None, input: str | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``inv ARGS`` (this checkout's program) and capture its output.

    `inventory` sets $AEGIR_INVENTORY; the working directory defaults to the
    repository, so ``tasks.py`` is found like stock ``inv`` finds it. Stdout is
    a pipe and $COLUMNS is `WIDE` unless `env` sets it (``{"COLUMNS": ""}``:
    unset, the program's default of 80 for a pipe).
    """
    full_env = {**os.environ, "COLUMNS": WIDE, **(env or {})}
    if not full_env["COLUMNS"]:
        del full_env["COLUMNS"]
    if inventory is not None:
        full_env["AEGIR_INVENTORY"] = str(inventory)
    return subprocess.run(
        [sys.executable, "-m", "aegir", *args],
        cwd=str(cwd or REPO), env=full_env, input=input if input is not None else "",
        capture_output=True, text=True, timeout=timeout,
    )


def read_table(text: str) -> list[dict[str, str]]:
    """The rows of the first table in `text` (as `aegir.report.table` prints it, cells wrapped), each a dict
    header -> the whole cell: a cell's lines joined with a space, or with nothing after a '/' or a '-' where it
    wrapped. A new row starts where the first column is not blank."""
    lines = text.splitlines()
    rule = next(i for i, line in enumerate(lines) if line.startswith("-") and set(line) <= {"-", " "})
    starts = [m.start() for m in re.finditer(r"-+", lines[rule])]

    def cells(line: str) -> list[str]:
        return [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None])]

    heads = [" ".join(part for part in column if part) for column in zip(*(cells(line) for line in lines[:rule]))]
    rows: list[list[str]] = []
    for line in lines[rule + 1:]:
        if not line.strip():
            break
        parts = cells(line)
        if parts[0] or not rows:
            rows.append(parts)
        else:
            rows[-1] = [a + b if a.endswith(("/", "-")) or not a or not b else f"{a} {b}"
                        for a, b in zip(rows[-1], parts)]
    return [dict(zip(heads, row)) for row in rows]


def start_inv(*args: str, inventory: str | os.PathLike[str], env: dict[str, str] | None = None,
              ) -> subprocess.Popen[str]:
    """Start ``inv ARGS`` (as `run_inv` runs it) without waiting: for a test that injects a fault mid-run
    or sends it a signal. Read its output with ``communicate()``."""
    full_env = {**os.environ, "COLUMNS": WIDE, **(env or {}), "AEGIR_INVENTORY": str(inventory)}
    return subprocess.Popen([sys.executable, "-m", "aegir", *args], cwd=str(REPO), env=full_env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def write_inventory(tmp_path: Path, text: str) -> Path:
    """``tmp_path/hosts.yml`` holding `text`: an inventory a test hands to `run_inv`."""
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(text, encoding="utf-8")
    return inventory


def usage_error(*args: str, inventory: str | os.PathLike[str], timeout: float = 30) -> str:
    """Run ``inv ARGS``, which must be refused as a usage error (exit 2, nothing on stdout, no traceback).

    Returns its stderr, stripped.
    """
    res = run_inv(*args, inventory=inventory, timeout=timeout)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and res.stdout == "", (res.stdout, res.stderr)
    return res.stderr.strip()


def remove_compose_containers(host: "LabHost") -> None:
    """Remove every Compose container of a lab host (forced), and the networks left unused."""
    from aegir.compose.state import LABEL_PROJECT

    client = host.docker_client()
    try:
        for r in client.api.containers(all=True, filters={"label": LABEL_PROJECT}):
            client.api.remove_container(r["Id"], force=True)
        client.api.prune_networks()
    finally:
        client.close()


# --------------------------------------------------------------------------- SSH to a lab host, as the operator


def lab_ssh(lab: "Lab", host: "LabHost", address: object = None, *, known_hosts: Path | None = None,
            timeout: float = 10) -> "paramiko.SSHClient":
    """A new paramiko session as root on `host` (its admin IPv4 unless `address`), with the lab's key.

    The host key is checked against `known_hosts` (default: the lab's), never added.
    """
    import paramiko

    client = paramiko.SSHClient()
    client.load_host_keys(str(known_hosts or lab.known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(str(address or host.addresses.admin_ipv4), port=host.options.ssh_port, username="root",
                   key_filename=str(lab.identity), look_for_keys=False, allow_agent=False, timeout=timeout,
                   banner_timeout=timeout, auth_timeout=timeout)
    return client


def ssh_run(client: "paramiko.SSHClient", command: str, timeout: float = 30) -> str:
    """Run `command` in the session; its stdout, stripped (asserts it exits 0)."""
    _, stdout, stderr = client.exec_command(command, timeout=timeout)
    out, err = stdout.read().decode(), stderr.read().decode()
    assert stdout.channel.recv_exit_status() == 0, f"{command!r} failed: {err}"
    return out.strip()


# --------------------------------------------------------------------------- terminals and /proc (boot.unlock)


@dataclass(frozen=True)
class TtyRun:
    """What an operator at a terminal saw, plus the program's separate stdout/stderr."""

    returncode: int
    stdout: str
    stderr: str
    screen: str  # everything written on the terminal (prompts), \r removed
    prompts: int  # how many prompts were answered


def run_inv_on_tty(*args: str, inventory: str | os.PathLike[str], typed: Sequence[str] = (),
                   terminal: bool = True, input: str = "", timeout: float = 120,
                   env: Mapping[str, str] | None = None, cwd: str | os.PathLike[str] | None = None) -> TtyRun:
    """Run ``inv ARGS`` with a real pseudo-terminal as its controlling terminal.

    /dev/tty in the program is the pty's slave side; stdin/stdout/stderr are
    pipes, as under a script. Each time the terminal shows a prompt (a line
    ending in ``: ``) the next string of `typed` is typed, with Enter. With
    ``terminal=False`` the program runs in a new session without any
    controlling terminal (opening /dev/tty fails), as under cron or CI.
    """
    master, slave = os.openpty() if terminal else (None, None)
    slave_path = os.ttyname(slave) if slave is not None else None

    def take_terminal() -> None:  # in the child, after setsid(): the pty becomes its terminal
        if slave_path is not None:
            fd = os.open(slave_path, os.O_RDWR)
            fcntl.ioctl(fd, termios.TIOCSCTTY, 0)
            os.close(fd)

    full_env = {**os.environ, "COLUMNS": WIDE, "AEGIR_INVENTORY": str(inventory), **(env or {})}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, "-m", "aegir", *args], cwd=str(cwd or REPO), env=full_env,
                                stdin=subprocess.PIPE, stdout=out, stderr=err, text=True,
                                start_new_session=True, preexec_fn=take_terminal)
        assert proc.stdin is not None
        proc.stdin.write(input)
        proc.stdin.close()
        screen, answered = b"", 0
        left = list(typed)
        deadline = time.monotonic() + timeout
        try:
            while True:
                done = proc.poll() is not None
                if master is not None:
                    while select.select([master], [], [], 0 if done else 0.05)[0]:
                        try:
                            chunk = os.read(master, 4096)
                        except OSError:  # EIO: no process holds the terminal any more
                            chunk = b""
                        if not chunk:
                            break
                        screen += chunk
                        if left and screen.endswith(b": "):
                            os.write(master, left.pop(0).encode() + b"\n")
                            answered += 1
                elif not done:
                    time.sleep(0.05)
                if done:
                    break
                if time.monotonic() > deadline:
                    proc.kill()
                    raise TimeoutError(f"inv {' '.join(args)} did not finish in {timeout}s; screen: {screen!r}")
        finally:
            proc.wait()
            for fd in (master, slave):
                if fd is not None:
                    os.close(fd)
        out.seek(0)
        err.seek(0)
        return TtyRun(proc.returncode, out.read(), err.read(), screen.decode(errors="replace").replace("\r", ""),
                      answered)


def answered_at_a_terminal(inventory: str | os.PathLike[str], answer: str, *args: str,
                           timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``inv ARGS`` with a pseudo-terminal as stdin, `answer` typed ahead (output still captured)."""
    master, slave = os.openpty()
    try:
        os.write(master, answer.encode() + b"\n")
        return subprocess.run([sys.executable, "-m", "aegir", *args], cwd=REPO, stdin=slave, capture_output=True,
                              text=True, timeout=timeout, env={**os.environ, "COLUMNS": WIDE, "AEGIR_INVENTORY": str(inventory)})
    finally:
        os.close(master)
        os.close(slave)


class ProcScan(Background):
    """Scan every process's command line and environment, in a thread, for secrets.

    ``with ProcScan(secret, watch="cryptsetup") as scan: ...``; afterwards
    `scan.hits` lists (pid, file, text around it) where a secret was found, and
    `scan.watched` the distinct command lines containing `watch` that the scan
    caught (proof that it looked while the sensitive command ran). `where` limits the scan (e.g. to
    ``("cmdline",)`` where a process is given the secret in its environment on purpose).
    """

    def __init__(self, *secrets: str, watch: str, where: tuple[str, ...] = ("cmdline", "environ")) -> None:
        self.where = where
        self.secrets = [s.encode() for s in secrets if s]
        self.watch = watch.encode()
        self.hits: list[tuple[int, str, str]] = []
        self.watched: dict[int, str] = {}
        self.passes = 0
        super().__init__()

    def _loop(self) -> None:
        me = os.getpid()
        while not self._stop.is_set():
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit() or int(entry.name) == me:
                    continue
                for what in self.where:
                    try:
                        with open(f"/proc/{entry.name}/{what}", "rb") as f:
                            data = f.read()
                    except OSError:
                        continue
                    for s in self.secrets:
                        at = data.find(s)
                        if at >= 0 and (int(entry.name), what) not in {h[:2] for h in self.hits}:
                            near = data[max(0, at - 40):at + len(s) + 10].replace(b"\0", b" ")
                            self.hits.append((int(entry.name), what, near.decode(errors="replace")))
                    joined = data.replace(b"\0", b" ")  # argv is NUL-separated: b"cryptsetup\0open"
                    if what == "cmdline" and self.watch in joined:
                        self.watched[int(entry.name)] = joined.decode(errors="replace").strip()
            self.passes += 1
