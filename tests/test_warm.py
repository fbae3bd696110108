"""The warm agent (`aegir.launch`, ``AEGIR_WARM``), through the real program: a command served by the
agent behaves as the same command run cold (output, exit code, stdin, environment, folder, umask,
Ctrl-C, being killed), over real SSH too (the cheap lab: sshd per host), and an unsafe folder is never
used."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aegir import launch
from aegir.boot import secrets
from tests.helpers import REPO, run_inv_on_tty
from tests.lab.sshonly import SshOnlyLab

PROBE = textwrap.dedent("""\
    import json, os, sys, time
    from invoke import task

    @task
    def probe(c, code=0, sleep=0.0):
        mask = os.umask(0)
        os.umask(mask)
        print(json.dumps({"pid": os.getpid(), "ppid": os.getppid(), "cwd": os.getcwd(), "umask": mask,
                          "probe": os.environ.get("PROBE"), "stdin": sys.stdin.readline(), "argv": sys.argv[1:],
                          "tty": os.environ.get("AEGIR_TTY")}), flush=True)
        time.sleep(sleep)
        sys.exit(code)

    @task
    def spawn(c):
        import subprocess
        sleeper = subprocess.Popen(["sleep", "60"])
        print(json.dumps({"pid": os.getpid(), "sleeper": sleeper.pid}), flush=True)
        sleeper.wait()

    @task
    def secret(c):
        from aegir.boot.secrets import read_secret
        print("read", len(read_secret("pw: ")), "characters", flush=True)
""")


@pytest.fixture
def warm() -> Iterator[dict[str, str]]:
    """An environment with the warm path on (its own runtime folder, short: a Unix socket's path is at
    most 107 bytes); every agent it started is ended."""
    run = Path(tempfile.mkdtemp(prefix="aw-", dir="/tmp"))
    env = {**os.environ, "AEGIR_WARM": "30", "XDG_RUNTIME_DIR": str(run)}
    env.pop(launch.TTY_ENV, None)
    yield env
    for pid in agents(run / "aegir"):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    shutil.rmtree(run, ignore_errors=True)


@pytest.fixture
def tasks_dir(tmp_path: Path) -> Path:
    """A folder with its own tasks.py (Invoke finds it from the working directory, warm or cold)."""
    d = tmp_path / "a folder with spaces"
    d.mkdir()
    (d / "tasks.py").write_text(PROBE)
    return d


def agents(where: Path) -> list[int]:
    log = where / launch.LOG
    text = log.read_text() if log.is_file() else ""
    return [int(p) for p in re.findall(r"agent pid (\d+) serves", text)]


def served(where: Path) -> int:
    log = where / launch.LOG
    return len(re.findall(r"served pid", log.read_text())) if log.is_file() else 0


def inv(*args: str, env: dict[str, str], cwd: Path | str = REPO, input: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aegir", *args], cwd=str(cwd), env=env, input=input,
                          capture_output=True, text=True, timeout=120, start_new_session=True)  # no terminal


def until_listening(env: dict[str, str]) -> Path:
    """The agent's socket once it listens (the first command started the agent)."""
    where = Path(env["XDG_RUNTIME_DIR"]) / "aegir"
    deadline = time.monotonic() + 60
    while not agents(where):
        assert time.monotonic() < deadline, "no agent started"
        time.sleep(0.05)
    return where


def warmed(env: dict[str, str], tasks_dir: Path) -> Path:
    """A first command has started the agent, which now listens; its folder."""
    inv("--list", env=env, cwd=tasks_dir)
    return until_listening(env)


def started(env: dict[str, str], tasks_dir: Path, *args: str) -> tuple[subprocess.Popen[str], dict]:
    """``inv ARGS`` running in `tasks_dir` (no terminal), and the first line its task printed (JSON)."""
    proc = subprocess.Popen([sys.executable, "-m", "aegir", *args], cwd=str(tasks_dir), env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout is not None
    return proc, json.loads(proc.stdout.readline())


def state(pid: int) -> str:
    """A process's state letter from /proc (``Z`` a zombie, ``T`` stopped); ``X`` when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "X"


def until_gone(pid: int, why: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while state(pid) not in ("X", "Z"):
        assert time.monotonic() < deadline, why
        time.sleep(0.05)


def test_a_warm_command_is_the_cold_command(warm: dict[str, str], tasks_dir: Path):
    cold = inv("probe", "--code", "3", env={**warm, "AEGIR_WARM": "", "PROBE": "x y"}, cwd=tasks_dir,
               input="first line\nsecond\n")
    first = inv("probe", "--code", "3", env={**warm, "PROBE": "x y"}, cwd=tasks_dir, input="first line\n")
    where = until_listening(warm)
    again = subprocess.run(
        [sys.executable, "-m", "aegir", "probe", "--code", "3"], cwd=str(tasks_dir),
        env={**warm, "PROBE": "x y"}, input="first line\n", capture_output=True, text=True, timeout=120,
        preexec_fn=lambda: os.umask(0o027), start_new_session=True)
    assert served(where) == 1
    outs = [json.loads(r.stdout) for r in (cold, first, again)]
    assert [r.returncode for r in (cold, first, again)] == [3, 3, 3]
    assert outs[2]["ppid"] in agents(where) and outs[1]["ppid"] == os.getpid() == outs[0]["ppid"]
    ours = os.umask(0)
    os.umask(ours)
    for out, mask in zip(outs, (ours, ours, 0o027)):
        assert (out["cwd"], out["probe"], out["stdin"], out["argv"], out["umask"], out["tty"]) == (
            str(tasks_dir), "x y", "first line\n", ["probe", "--code", "3"], mask, None)
    assert [r.stderr for r in (cold, first, again)] == ["", "", ""]
    # aegir's own tasks, from a folder without tasks.py: the same text and exit code
    assert inv("--list", env=warm, cwd="/").stdout == inv("--list", env={**warm, "AEGIR_WARM": ""}, cwd="/").stdout
    nosuch = [inv("nosuch.task", env=e, cwd="/") for e in (warm, {**warm, "AEGIR_WARM": ""})]
    assert nosuch[0].returncode == nosuch[1].returncode != 0 and nosuch[0].stderr == nosuch[1].stderr
    assert served(where) == 3, (where / launch.LOG).read_text()


def test_ctrl_c_reaches_the_warm_child_and_a_killed_command_takes_its_child_along(warm: dict[str, str],
                                                                                 tasks_dir: Path):
    warmed(warm, tasks_dir)
    outcomes = []
    for sig in (signal.SIGINT, signal.SIGKILL):
        proc, seen = started(warm, tasks_dir, "probe", "--sleep", "60")
        child = seen["pid"]
        assert child != proc.pid
        proc.send_signal(sig)
        code = proc.wait(timeout=10)
        until_gone(child, f"the warm child {child} outlived its command ({sig.name})")
        outcomes.append(code)
    assert outcomes == [130, -signal.SIGKILL]


def test_an_unsafe_folder_is_never_used_and_the_command_runs_cold(warm: dict[str, str], tmp_path: Path):
    run = Path(warm["XDG_RUNTIME_DIR"])
    (run / "aegir").mkdir(mode=0o700)
    os.chmod(run / "aegir", 0o777)
    done = inv("--list", env=warm, cwd="/")
    assert done.returncode == 0 and "Available tasks" in done.stdout
    assert done.stderr == f"aegir: the warm agent is not used: {run / 'aegir'} has mode 0777, not 0700\n"
    assert not any((run / "aegir").iterdir())  # no agent, no socket
    os.rmdir(run / "aegir")
    os.symlink(tmp_path, run / "aegir")
    done = inv("--list", env=warm, cwd="/")
    assert done.returncode == 0 and "is not a folder" in done.stderr
    os.unlink(run / "aegir")
    deep = run / ("d" * 60)
    deep.mkdir(mode=0o700)
    done = inv("--list", env={**warm, "XDG_RUNTIME_DIR": str(deep)}, cwd="/")
    assert done.returncode == 0 and "is too long for a Unix socket" in done.stderr


def test_an_idle_agent_exits_and_removes_its_socket(warm: dict[str, str]):
    env = {**warm, "AEGIR_WARM": "1"}
    inv("--list", env=env, cwd="/")
    where = until_listening(env)
    [pid] = agents(where)
    until_gone(pid, "the agent did not exit when idle", timeout=20)
    assert not list(where.glob("*.sock")) and f"agent pid {pid} exits" in (where / launch.LOG).read_text()


def test_the_agent_serves_only_the_code_it_imported(tmp_path: Path):
    package = tmp_path / "aegir"
    (package / "sub").mkdir(parents=True)
    (package / "a.py").write_text("x = 1\n")
    (package / "sub" / "b.py").write_text("y = 2\n")
    first = launch.code_key(package)
    assert launch.code_key(package) == first
    os.utime(package / "sub" / "b.py", ns=(0, 10**9))
    assert launch.code_key(package) != first
    assert launch.idle_seconds({"AEGIR_WARM": "30"}) == 30.0
    assert [launch.idle_seconds({"AEGIR_WARM": v}) for v in ("", "0", "-1", "inf", "nan", "x")] == [None] * 6
    assert launch.TTY_ENV == secrets.TTY_ENV


def test_a_warm_command_over_ssh_reads_the_host_as_the_cold_one(warm: dict[str, str]):
    with SshOnlyLab.start(2) as lab:
        env = {**warm, "AEGIR_INVENTORY": str(lab.inventory_path)}
        cold = inv("disk.report", "-f", "json", env={**env, "AEGIR_WARM": ""})
        inv("--list", env=env, cwd="/")
        where = until_listening(env)
        hot = inv("disk.report", "-f", "json", env=env)
        assert served(where) == 1
        assert cold.returncode == hot.returncode and cold.stderr == hot.stderr

        def shape(text: str) -> list[tuple[str, str, str | None]]:
            return [(h["host"], h["status"], h["error"]) for h in json.loads(text)["hosts"]]

        assert shape(hot.stdout) == shape(cold.stdout) and [h for h, *_ in shape(hot.stdout)] == ["c1", "c2"]


def test_a_warm_child_reads_the_passphrase_from_the_commands_terminal(warm: dict[str, str], tasks_dir: Path):
    where = warmed(warm, tasks_dir)
    done = run_inv_on_tty("secret", inventory="/nonexistent", typed=["hunter2"], env=warm, cwd=tasks_dir)
    assert served(where) == 1
    assert (done.returncode, done.stdout, done.prompts) == (0, "read 7 characters\n", 1), done
    assert "hunter2" not in done.screen  # echo off on the command's terminal, from the warm child
    none = run_inv_on_tty("secret", inventory="/nonexistent", terminal=False, env=warm, cwd=tasks_dir)
    assert none.returncode == 1 and "no terminal to read the passphrase from (/dev/tty" in none.stderr


@pytest.mark.parametrize("fake", ["closes after the request", "never greets"])
def test_an_agent_that_does_not_run_the_command_leaves_it_to_run_cold_and_once(warm: dict[str, str], fake: str):
    # an agent on its way out (idle, or replaced) may accept a command and close; one that is stuck never
    # greets: the command runs cold, and a stuck agent never got the request (it cannot run it twice)
    where = launch.folder(warm)
    path = launch.socket_path(where, launch.code_key())
    got: list[bytes] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(path))
        listener.listen(1)

        def fake_agent() -> None:
            conn, _ = listener.accept()
            if fake == "closes after the request":
                conn.sendall(launch.HELLO)
                got.append(conn.recv(65536))
            else:
                time.sleep(launch.GREETING + 1)  # stuck past the command's patience, then it reads
                conn.settimeout(5)
                got.append(conn.recv(65536))
            conn.close()

        agent = threading.Thread(target=fake_agent)
        agent.start()
        done = inv("--list", env=warm, cwd="/")
        agent.join(15)
        assert not agent.is_alive()
    assert done.returncode == 0 and "Available tasks" in done.stdout and done.stderr == ""
    if fake == "closes after the request":
        assert b'"argv"' in got[0]  # it had the request, and closed before running it
    else:
        assert got == [b""]  # nothing was sent to the agent that did not greet


def test_two_commands_at_once_each_end_with_their_own_child(warm: dict[str, str], tasks_dir: Path):
    warmed(warm, tasks_dir)
    short, seen_short = started(warm, tasks_dir, "probe", "--sleep", "2", "--code", "4")
    long, seen_long = started(warm, tasks_dir, "probe", "--sleep", "30")  # forked while the short one runs
    assert seen_short["ppid"] != os.getpid() and seen_long["ppid"] != os.getpid()  # both served warm
    try:
        # the short one ends with its own child, not with the long one (whose child held a copy of the
        # short one's socket)
        assert short.wait(timeout=20) == 4 and long.poll() is None
    finally:
        long.kill()
        long.wait()


def test_ctrl_c_reaches_what_the_warm_child_runs_as_a_terminal_sends_it_to_the_job(warm: dict[str, str],
                                                                                   tasks_dir: Path):
    warmed(warm, tasks_dir)
    proc, seen = started(warm, tasks_dir, "spawn")
    proc.send_signal(signal.SIGINT)  # Ctrl-C: the terminal signals the command's job; the command, its child's
    assert proc.wait(timeout=10) == 130
    until_gone(seen["sleeper"], "the command the warm child ran outlived Ctrl-C")


def test_ctrl_z_stops_the_warm_child_with_its_command_and_fg_continues_both(warm: dict[str, str], tasks_dir: Path):
    warmed(warm, tasks_dir)
    proc, seen = started(warm, tasks_dir, "spawn")

    def until(pids: list[int], wanted: set[str]) -> None:
        deadline = time.monotonic() + 10
        while not all(state(p) in wanted for p in pids):
            assert time.monotonic() < deadline, [state(p) for p in pids]
            time.sleep(0.05)

    try:
        proc.send_signal(signal.SIGTSTP)  # Ctrl-Z
        until([proc.pid, seen["pid"], seen["sleeper"]], {"T"})
        proc.send_signal(signal.SIGCONT)  # the shell's fg
        until([proc.pid, seen["pid"], seen["sleeper"]], {"S", "R"})
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 130
    finally:
        proc.kill()
        proc.wait()
