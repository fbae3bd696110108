"""The program's entry point, and the opt-in warm agent that saves each command its imports.

Every ``inv`` is a fresh Python that imports Invoke, Fabric, paramiko and the Docker SDK before its
first command: ~0.2 s, as long as an SSH login. With ``AEGIR_WARM=SECONDS`` in the environment (an
operator's shell profile), the first command also starts a *warm agent*: a process that has done those
imports and waits on a Unix socket. The next commands connect to it, hand over their standard streams,
arguments, environment, working directory and umask, and the agent forks a child that runs the command
exactly as ``inv`` would (`aegir.cli.main`), with a fresh SSH connection and the same host-key checks
(nothing of a run is kept: the agent has only imported code). The agent exits after SECONDS without a
command. This is OpenSSH's ControlPersist idea applied to the program rather than the connection: a
forked child cannot share the parent's SSH session (its cipher state), but it can share the imports.

Safety:

- The socket lives in a folder of the user's own with mode 0700 (``$XDG_RUNTIME_DIR/aegir``, else
  ``/tmp/aegir-warm-UID``), checked (owner, mode, not a symlink) before each use, and the agent serves
  only a peer of its own user id (``SO_PEERCRED``): the trust of ``ssh-agent`` or a ControlMaster socket.
- The socket's name is a hash of the interpreter and of every file of the ``aegir`` package (path, size,
  mtime): after an upgrade or an edit the next command starts a new agent; the old one idles out.
- Ctrl-C and other signals the command gets are passed to the child; when the command dies (killed, its
  terminal closed), its child is killed (SIGKILL) as the command itself would have been.
- The exit code is the child's (128 + N for a signal N), read by the agent with ``waitpid``.
- Anything wrong with the warm path (no agent, a stale socket, an unsafe folder, an agent that does not
  greet within `GREETING` seconds) runs the command the ordinary way; an unsafe folder is said on stderr.
  A command is run once: it sends its request only after the agent's greeting, and runs cold only when
  no child said it took the command over.

This module imports only the standard library until it runs the program: a command served warm costs a
Python start, this module and the fork.
"""

from __future__ import annotations

import array
import json
import os
import select
import signal
import site
import socket
import stat
import struct
import sys
import time
import zlib
from pathlib import Path

TYPE_CHECKING = False  # typing is not imported at run time: this module's imports are a warm command's cost
if TYPE_CHECKING:
    from typing import Any, NoReturn

#: Opt in: seconds the agent waits for the next command before it exits.
ENV = "AEGIR_WARM"
#: Where the passphrase prompt opens the operator's terminal (`aegir.boot.secrets`): a warm child has
#: no controlling terminal of its own, so the command tells it its terminal's device.
TTY_ENV = "AEGIR_TTY"
#: A line per command served, in the agent's folder (pid and time only: argv may hold paths the
#: operator did not mean to log).
LOG = "agent.log"
#: The signals a command passes to its child.
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
#: The modules the agent imports before it serves (the ones a command pays for), besides all of aegir's.
PRELOAD = ("aegir.cli", "aegir.tasks", "fabric", "paramiko", "docker", "docker.transport.sshconn", "urllib3",
           "requests", "yaml", "tabulate", "dotenv", "jinja2", "jinja2.sandbox")
PACKAGE = Path(__file__).resolve().parent
_HEADER = struct.Struct("!I")
#: What the agent says once it accepted a command, and how long a command waits for it before it runs cold.
HELLO = b"aegir-warm 1\n"
GREETING = 3.0


class Unsafe(Exception):
    """The agent's folder is not the user's own private folder: the warm path is not used."""


def idle_seconds(environ: dict[str, str] | os._Environ[str] | None = None) -> float | None:
    """``AEGIR_WARM`` as seconds (> 0), or None: the warm path is off."""
    raw = (os.environ if environ is None else environ).get(ENV, "").strip()
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if 0 < value < float("inf") else None


def code_key(package: Path = PACKAGE, executable: str = sys.executable) -> str:
    """A checksum of the interpreter and of every file of the package (path, size, mtime in ns): a new
    agent for new code. (CRC-32 and Adler-32, not a cryptographic hash: it tells versions apart, the
    socket's folder keeps others out; hashlib would cost a warm command 4 ms of import.)"""
    text = [f"{executable}\0{sys.version}\0{package}"]
    for entry in site.getsitepackages():  # a package installed or upgraded changes its folder's mtime
        try:
            text.append(f"{entry}\0{os.stat(entry).st_mtime_ns}")
        except OSError:
            pass
    for root, dirs, files in os.walk(package):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith((".py", ".j2", ".txt", ".json", ".yml", ".yaml", ".sh")):
                st = os.stat(os.path.join(root, name))
                text.append(f"{os.path.join(root, name)}\0{st.st_size}\0{st.st_mtime_ns}")
    data = "\0".join(text).encode(errors="surrogateescape")
    return f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}{len(data):x}"


def folder(environ: dict[str, str] | os._Environ[str] | None = None) -> Path:
    """The agent's folder (created 0700 if missing); `Unsafe` unless it is a real folder of this user's,
    closed to everyone else."""
    env = os.environ if environ is None else environ
    runtime = env.get("XDG_RUNTIME_DIR", "")
    path = Path(runtime) / "aegir" if runtime.startswith("/") else Path(f"/tmp/aegir-warm-{os.getuid()}")
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise Unsafe(f"cannot create {path}: {exc.strerror}") from None
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise Unsafe(f"{path} is not a folder")
    if st.st_uid != os.getuid():
        raise Unsafe(f"{path} belongs to uid {st.st_uid}, not {os.getuid()}")
    if st.st_mode & 0o077:
        raise Unsafe(f"{path} has mode {stat.S_IMODE(st.st_mode):04o}, not 0700")
    return path


#: The longest path a Unix socket may have (``sun_path``, with its NUL), counting the agent's temporary name.
SUN_PATH = 107


def socket_path(where: Path, key: str) -> Path:
    """The agent's socket in `where`; `Unsafe` when the path is too long for a Unix socket."""
    path = where / f"{key}.sock"
    if len(os.fsencode(path)) + 8 > SUN_PATH:
        raise Unsafe(f"{path} is too long for a Unix socket (set XDG_RUNTIME_DIR to a shorter folder)")
    return path


# --------------------------------------------------------------------------- the command's side


def main() -> None:
    """The console entry point of ``inv``, ``aegir`` and ``python -m aegir``: served by a warm agent when
    ``AEGIR_WARM`` says so and one answers, else the ordinary program (`aegir.cli.main`)."""
    idle = idle_seconds()
    if idle is not None:
        try:
            path = socket_path(folder(), code_key())
        except Unsafe as exc:
            sys.stderr.write(f"aegir: the warm agent is not used: {exc}\n")
        else:
            code = served(path)
            if code is not None:
                sys.exit(code)
            spawn(path, idle)
    os.environ.pop(TTY_ENV, None)  # only a warm child is told its terminal
    from aegir.cli import main as cold

    cold()


def served(path: Path) -> int | None:
    """Run this command in the agent at `path`; its exit code, or None when no agent answers."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.settimeout(2.0)
        conn.connect(str(path))
    except OSError:
        conn.close()
        return None
    conn.settimeout(None)
    env = dict(os.environ)
    fds = [0, 1, 2]
    tty = _terminal()
    env.pop(TTY_ENV, None)
    if tty is not None:
        env[TTY_ENV] = tty
    mask = os.umask(0)
    os.umask(mask)
    request = json.dumps({"argv": sys.argv, "env": env, "cwd": os.getcwd(), "umask": mask}).encode()
    try:
        # Nothing is sent before the agent says it reads: an agent that does not (busy, stopped, exiting)
        # leaves the command to run cold, and never gets a request to run it a second time.
        conn.settimeout(GREETING)
        if conn.recv(len(HELLO)) != HELLO:
            raise OSError("no greeting")
        conn.settimeout(None)
        conn.sendmsg([_HEADER.pack(len(request)) + request],
                     [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
    except OSError:
        conn.close()
        return None
    return _wait(conn)


def _terminal() -> str | None:
    """The device of this command's controlling terminal (e.g. /dev/pts/3), or None. Read from
    /proc/self/stat (``tty_nr``): ``ttyname`` of an fd opened as /dev/tty names /dev/tty itself."""
    try:
        with open("/proc/self/stat") as f:
            number = int(f.read().rsplit(")", 1)[1].split()[4])
    except (OSError, IndexError, ValueError):
        return None
    if number == 0:
        return None
    major, minor = os.major(number), os.minor(number)
    candidates = [f"/dev/pts/{(major - 136) * 256 + minor}"] if 136 <= major <= 143 else []
    candidates += [os.ttyname(fd) for fd in (0, 1, 2) if os.isatty(fd)]
    for path in candidates:
        try:
            device = os.stat(path).st_rdev
        except OSError:
            continue
        if (os.major(device), os.minor(device)) == (major, minor):
            return path
    return None


def _wait(conn: socket.socket) -> int | None:
    """Pass signals to the child until the agent says how it ended: its exit code. None when the agent
    closed before it started the child (it was exiting): the command was not run, run it cold.

    Ctrl-Z stops the child's process group, then this command (the shell sees its job stopped); the
    shell's ``fg`` or ``bg`` continues this command, which continues the child's group."""
    child = 0

    def forward(signum: int, _frame: Any) -> None:
        try:
            conn.sendall(b"%d\n" % signum)
        except OSError:
            pass

    def stop(_signum: int, _frame: Any) -> None:
        if child:
            _signal_group(child, signal.SIGSTOP)
        os.kill(os.getpid(), signal.SIGSTOP)

    def resume(_signum: int, _frame: Any) -> None:
        if child:
            _signal_group(child, signal.SIGCONT)

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    previous[signal.SIGTSTP] = signal.signal(signal.SIGTSTP, stop)
    previous[signal.SIGCONT] = signal.signal(signal.SIGCONT, resume)
    data = b""
    while True:
        try:
            chunk = conn.recv(4096)
        except InterruptedError:
            continue
        except OSError:
            chunk = b""
        if not chunk:
            break
        data += chunk
        words = data.decode(errors="replace").split()
        if not child and len(words) >= 2 and words[0] == "run" and words[1].isdigit():
            child = int(words[1])
        if b"exit " in data and data.endswith(b"\n"):
            break
    conn.close()
    words = data.decode(errors="replace").split()
    if words[:1] != ["run"]:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        return None
    if len(words) == 4 and words[2] == "exit" and words[3].lstrip("-").isdigit():
        return int(words[3])
    sys.stderr.write("aegir: the warm agent ended without this command's exit code\n")
    return 1


def _signal_group(leader: int, sig: int) -> None:
    try:
        os.killpg(leader, sig)
    except OSError:  # it ended meanwhile
        pass


def spawn(path: Path, idle: float) -> None:
    """Start an agent for `path` in the background (its own session, no terminal); it serves the
    next command."""
    import subprocess

    subprocess.Popen([sys.executable, "-m", "aegir.launch", "--agent", str(path), repr(idle)],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True, close_fds=True, cwd="/")


# --------------------------------------------------------------------------- the agent


def agent(path: Path, idle: float) -> None:
    """Import what commands need, listen at `path`, fork a child per command, exit after `idle` seconds
    without one (or when another agent took `path`)."""
    import importlib
    import pkgutil

    own = [m.name for m in pkgutil.walk_packages([str(PACKAGE)], "aegir.") if m.name != "aegir.__main__"]
    for name in (*PRELOAD, *own):  # every module of aegir: the tasks import theirs when they run
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a module that fails here fails the same way in the command
            pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    temporary = path.with_name(f".{os.getpid()}")  # shorter than the socket's name: it fits too
    temporary.unlink(missing_ok=True)
    listener.bind(str(temporary))
    listener.listen(16)
    os.rename(temporary, path)  # atomic: a command never finds a socket that does not listen yet
    mine = os.stat(path).st_ino
    _log(path.parent, f"agent pid {os.getpid()} serves {path.name} until {idle:g} s without a command")
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda *_: _poke(wake_w))
    children: dict[int, socket.socket] = {}
    last = time.monotonic()
    try:
        while True:
            ready, _, _ = select.select([listener.fileno(), wake_r], [], [], 0.5)
            if wake_r in ready:
                os.read(wake_r, 512)
            _reap(children)
            if listener.fileno() in ready:
                conn, _ = listener.accept()
                last = time.monotonic()
                _serve(listener, conn, children, path.parent, (wake_r, wake_w))
            if children:
                last = time.monotonic()
            elif time.monotonic() - last > idle or _replaced(path, mine):
                break
    finally:
        if not _replaced(path, mine):
            path.unlink(missing_ok=True)
        _log(path.parent, f"agent pid {os.getpid()} exits")


def _poke(fd: int) -> None:
    try:
        os.write(fd, b"x")
    except OSError:
        pass


def _replaced(path: Path, inode: int) -> bool:
    try:
        return os.stat(path).st_ino != inode
    except OSError:
        return True


def _reap(children: dict[int, socket.socket]) -> None:
    """Tell each ended child's command its exit code."""
    for pid in list(children):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done == 0:
            continue
        conn = children.pop(pid)
        code = os.waitstatus_to_exitcode(status)
        try:
            conn.sendall(b"exit %d\n" % (code if code >= 0 else 128 - code))
        except OSError:
            pass
        conn.close()


def _serve(listener: socket.socket, conn: socket.socket, children: dict[int, socket.socket], where: Path,
           own: tuple[int, ...]) -> None:
    """Read one command (its fds, argv, environment) and fork the child that runs it."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _, uid, _ = struct.unpack("3i", creds)
    fds: list[int] = []
    try:
        if uid != os.getuid():
            raise ValueError(f"a peer of uid {uid}")
        conn.settimeout(5.0)
        conn.sendall(HELLO)
        request, fds = _receive(conn)
        if len(fds) != 3:
            raise ValueError("not three standard streams")
        conn.settimeout(None)
    except (OSError, ValueError):
        for fd in fds:
            os.close(fd)
        conn.close()
        return
    pid = os.fork()
    if pid == 0:
        # the child keeps only its command's socket: a copy of another command's would keep that command
        # waiting for its end after its exit code
        listener.close()
        for other in children.values():
            other.close()
        for fd in own:
            os.close(fd)
        _child(conn, request, fds)
    for fd in fds:
        os.close(fd)
    children[pid] = conn
    _log(where, f"served pid {pid}")


def _log(where: Path, line: str) -> None:
    with open(where / LOG, "a") as log:
        log.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {line}\n")


def _receive(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    fds = array.array("i")
    msg, ancdata, _, _ = conn.recvmsg(65536, socket.CMSG_SPACE(4 * fds.itemsize))
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
    got = list(fds)
    if len(msg) < _HEADER.size:
        raise ValueError("no request")
    (size,) = _HEADER.unpack(msg[:_HEADER.size])
    body = msg[_HEADER.size:]
    while len(body) < size:
        more = conn.recv(size - len(body))
        if not more:
            raise ValueError("a short request")
        body += more
    request = json.loads(body)
    if not isinstance(request, dict):
        raise ValueError("not a request")
    return request, got


def _child(conn: socket.socket, request: dict[str, Any], fds: list[int]) -> NoReturn:
    """In the forked child: become the command (its streams, environment, folder, umask, argv), then run
    the program. Its exit code reaches the command through the agent's waitpid."""
    code = 1
    try:
        # First of all: the command is now this child's (it must not run it cold any more), and its pid.
        conn.sendall(b"run %d\n" % os.getpid())
        os.setsid()
        for sig in (signal.SIGCHLD, *FORWARDED):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        _streams()
        os.environ.clear()
        os.environ.update({str(k): str(v) for k, v in dict(request["env"]).items()})
        os.chdir(str(request["cwd"]))
        os.umask(int(request["umask"]))
        sys.argv = [str(a) for a in request["argv"]]
        _watch(conn)
        from aegir.cli import main as cold

        cold()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        code = 130
    except BaseException as exc:  # noqa: BLE001 - the command's traceback, on its own stderr
        import traceback

        traceback.print_exception(exc)
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
    os._exit(code)


def _streams() -> None:
    """New sys.stdin/stdout/stderr on fds 0-2, buffered as Python buffers them at its start (stdout line
    buffered on a terminal, stderr always)."""
    import io

    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        old = getattr(sys, name)
        raw = open(fd, mode + "b", closefd=False)  # noqa: SIM115 - the stream lives as long as the process
        line = fd == 2 or (fd == 1 and os.isatty(fd))
        setattr(sys, name, io.TextIOWrapper(raw, encoding=old.encoding, errors=old.errors, line_buffering=line))


#: The signals a terminal sends to its whole foreground job (Ctrl-C, Ctrl-\\): passed to the child's process
#: group, so that the commands it runs get them as they would have in a cold run.
JOB_SIGNALS = (signal.SIGINT, signal.SIGQUIT)


def _watch(conn: socket.socket) -> None:
    """A thread that raises in this process each signal the command passes on (Ctrl-C and Ctrl-\\ in
    its process group, as a terminal does), and kills it when the command is gone."""
    import threading

    def run() -> None:
        pending = b""
        while True:
            try:
                chunk = conn.recv(64)
            except OSError:
                chunk = b""
            if not chunk:
                os.kill(os.getpid(), signal.SIGKILL)
                return
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                if line.strip().isdigit() and int(line) in {int(s) for s in FORWARDED}:
                    if int(line) in {int(s) for s in JOB_SIGNALS}:
                        os.killpg(os.getpgrp(), int(line))  # this child leads its group (setsid)
                    else:
                        os.kill(os.getpid(), int(line))

    threading.Thread(target=run, name="aegir-warm", daemon=True).start()


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--agent":
        agent(Path(sys.argv[2]), float(sys.argv[3]))
    else:
        main()
