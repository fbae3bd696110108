"""Commands as data: argv lists, one quoting function, validated names, secrets on stdin.

A `Cmd` is what aegir runs on a host. It is built by a pure function, tested as
an exact string (`Cmd.line`), and run by `run()` through an Invoke `Context`
(local) or a Fabric `Connection` (remote) alike. Secrets never enter argv: they
travel as `stdin` and are masked from every message.
"""

from __future__ import annotations

import functools
import io
import json
import re
import secrets
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aegir.errors import AegirError, CommandError, ConnectionLost, DeadlineExceeded

if TYPE_CHECKING:  # pragma: no cover
    from invoke import Context
    from invoke.runners import Result

#: Names that reach a shell or a path (apps, services, databases, mappings).
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")  # \Z: "$" would accept a trailing newline


def check_name(kind: str, value: str) -> str:
    """Return `value` if it is a safe name (letters, digits, ``_ . -``), else raise.

    >>> check_name("app", "mastodon")
    'mastodon'
    """
    if not isinstance(value, str) or not NAME_RE.match(value) or value in {".", ".."}:
        raise AegirError(
            f"invalid {kind} name {value!r}: use letters, digits, '_', '.', '-' "
            "(at most 63, not starting with a symbol)"
        )
    return value


@dataclass(frozen=True)
class Cmd:
    """One command: its argv, optional environment, stdin and a timeout.

    `stdin` is sent to the process and closed; it is where secrets go, and it
    never appears in `line`, logs or errors.
    """

    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    stdin: str | None = field(default=None, repr=False)
    timeout: float | None = None
    sudo: bool = False

    def __post_init__(self) -> None:
        if not self.argv or not all(isinstance(a, str) for a in self.argv):
            raise TypeError(f"argv must be a non-empty sequence of str, got {self.argv!r}")

    @classmethod
    def of(cls, *argv: str, **kw: object) -> "Cmd":
        """`Cmd.of("df", "-B1", "/")` reads like the command line it is."""
        return cls(tuple(argv), **kw)  # type: ignore[arg-type]

    @property
    def full_argv(self) -> tuple[str, ...]:
        """argv with the environment (``env K=V``) and ``sudo -n`` prefixes applied."""
        argv: tuple[str, ...] = self.argv
        if self.env:
            argv = ("env", *(f"{k}={v}" for k, v in sorted(self.env.items())), *argv)
        if self.sudo:
            argv = ("sudo", "-n", "--", *argv)
        return argv

    @property
    def line(self) -> str:
        """The shell line that runs this command, quoted by `shlex.join`."""
        return shlex.join(self.full_argv)

    def __str__(self) -> str:
        return self.line


def shell(script: str, *args: str) -> Cmd:
    """A POSIX ``sh -c`` script whose variable parts arrive as ``$1 $2 …``.

    For the few probes that need a pipe or a loop: the script is a constant,
    the data are positional arguments, so nothing is ever interpolated.
    """
    return Cmd(("sh", "-c", script, "sh", *args))


_WRITE_SCRIPT = """\
set -e
mkdir -p -- "$(dirname -- "$1")"
cat > "$1.aegir-new"
chmod 0644 "$1.aegir-new"
mv -f -- "$1.aegir-new" "$1"
"""


def write_file_cmd(path: str, text: str) -> Cmd:
    """Write `text` (sent on stdin) to `path` atomically, mode 0644, creating its folder."""
    return Cmd(shell(_WRITE_SCRIPT, path).argv, stdin=text)


@dataclass(frozen=True)
class Boundary:
    """A marker between the parts of a command's output that host data cannot forge: a fresh random nonce.

    A fixed separator (a control character) can be printed by the host's data itself, a file's
    name, a log line, a process name in ``ss -p``, and would cut an answer in two. The nonce is
    made here, for one command; the command line carries it as `arg`, octal escapes that
    ``printf '%b'`` turns into `text`, so not even a probe that prints command lines prints it.
    """

    nonce: str = field(default_factory=lambda: secrets.token_hex(12))

    @property
    def text(self) -> str:
        """What the command prints between parts."""
        return f"\x1e{self.nonce}"

    @property
    def arg(self) -> str:
        r"""`text` as the argument of ``printf '%b'``: ``\0036\0141…``."""
        return "".join(f"\\0{ord(ch):03o}" for ch in self.text)

    def split(self, stdout: str) -> list[str]:
        """`stdout` cut at each boundary."""
        return stdout.split(self.text)


_BATCH_SCRIPT = r"""m=$1; shift
for line in "$@"; do
  { err=$(eval "$line" 2>&1 >&3 3>&- </dev/null); rc=$?; } 3>&1
  printf '%b%s\n%s%b' "$m" "$rc" "$err" "$m"
done
"""


@dataclass(frozen=True)
class Batch:
    """Several read-only probes in one round trip (`cmd`); `split` gives back each one's answer.

    Each command runs in turn, whatever the others' exit codes; its stdout, then
    the boundary, its exit code, a newline, its stderr and the boundary again, is
    printed (`Boundary`: a probe's output cannot end an answer early). The probes
    must carry no stdin and no timeout of their own.
    """

    cmds: tuple[Cmd, ...]
    boundary: Boundary = field(default_factory=Boundary)

    def __post_init__(self) -> None:
        if any(c.stdin is not None or c.timeout is not None for c in self.cmds):
            raise ValueError("batch: commands with stdin or a timeout cannot be batched")

    @property
    def cmd(self) -> Cmd:
        """The one command that runs them all; the probes are positional arguments, never in the script."""
        return shell(_BATCH_SCRIPT, self.boundary.arg, *(c.line for c in self.cmds))

    def split(self, stdout: str) -> tuple[Reply, ...]:
        """The answers of the commands, in order (`AegirError` if unreadable)."""
        count = len(self.cmds)
        parts = self.boundary.split(stdout)
        try:
            if len(parts) != 2 * count + 1 or parts[-1]:
                raise ValueError
            replies = []
            for out, tail in zip(parts[0::2], parts[1::2]):
                code, _, err = tail.partition("\n")
                replies.append(Reply(out, err, int(code)))
        except ValueError:
            raise AegirError(f"cannot read the answers of {count} batched commands: {stdout[-200:]!r}") from None
        return tuple(replies)


@dataclass(frozen=True)
class Reply:
    """One command's answer within a `Batch`: the fields of an Invoke Result the parsers read."""

    stdout: str
    stderr: str
    exited: int


def mask(text: str, secrets: Sequence[str]) -> str:
    """Replace every secret in `text` by ``****``."""
    for s in secrets:
        if s:
            text = text.replace(s, "****")
    return text


def mask_values(text: str, values: Sequence[str]) -> str:
    """Replace each of `values` in `text` by ``****``, longest first.

    A value shorter than 4 characters is masked only as a whole word (so that
    ``PORT=80`` does not turn ``line 180`` into ``line 1****``); longer ones wherever they appear.
    """
    return masker(tuple(values))("****", text)


@functools.lru_cache(maxsize=32)
def masker(values: tuple[str, ...]) -> Callable[[str, str], str]:
    """A ``sub(replacement, text)`` for one set of secret values (a .env's, a run's), built once.

    Leftmost, then longest value wins, as a regex alternation would; but values
    are looked up by their first 4 characters, so 20,000 values cost no more
    per character than 20 (a 20,000-way alternation took 28 s for one lint).
    """
    forms = {v.strip() for v in values} | {json.dumps(v.strip(), ensure_ascii=False)[1:-1] for v in values}
    by_head: dict[str, list[str]] = {}
    short: set[str] = set()
    for w in sorted((w for w in forms if w), key=len, reverse=True):
        if len(w) >= 4:
            by_head.setdefault(w[:4], []).append(w)
        else:
            short.add(w)

    def word_edge(text: str, i: int) -> bool:
        return i <= 0 or i >= len(text) or not (text[i - 1].isalnum() and text[i].isalnum())

    def sub(replacement: str, text: str) -> str:
        grams = {text[i:i + k] for k in (1, 2, 3, 4) for i in range(len(text) - k + 1)}
        if grams.isdisjoint(by_head) and grams.isdisjoint(short):  # most messages: no value in them at all
            return text
        out: list[str] = []
        i = 0
        while i < len(text):
            hit = next((w for w in by_head.get(text[i:i + 4], ()) if text.startswith(w, i)), None)
            if hit is None and short:
                hit = next((text[i:i + k] for k in (3, 2, 1) if i + k <= len(text) and text[i:i + k] in short
                            and word_edge(text, i) and word_edge(text, i + k)), None)
            if hit is None:
                out.append(text[i])
                i += 1
            else:
                out.append(replacement)
                i += len(hit)
        return "".join(out)

    return sub


def mask_data(data: Any, values: Sequence[str]) -> Any:
    """`data` (JSON-like: dicts, lists, strings; dataclasses first made plain by the caller) with `mask_values`
    applied to every string in it, keys included."""
    if isinstance(data, str):
        return mask_values(data, values)
    if isinstance(data, dict):
        return {mask_data(k, values): mask_data(v, values) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [mask_data(v, values) for v in data]
    return data


#: What a command without stdin reads, said by the line itself rather than by closing the channel's stdin:
#: paramiko builds that EOF under the channel's lock and sends it after, so a CLOSE (the command done, sent
#: from another thread) can overtake it, and OpenSSH then drops the whole connection ("ieof packet referred
#: to nonexistent channel": paramiko issues #1115 and #1705, seen here as "SSH connection lost" under load).
#: With no stdin thread no EOF is sent apart from the CLOSE, in order. A command given stdin reads it to its
#: end, so the host does not close before our EOF arrives; one that fails before reading it all can still
#: meet the race (paramiko's fix, its PR #1137, is not released).
NO_STDIN = " </dev/null"


class _Feed(io.StringIO):
    """Stdin for `run`: Invoke reads a non-terminal stream one character per 10 ms; give it 64 KiB."""

    def read(self, size: int | None = -1) -> str:
        return super().read(1 << 16)


def _connection_lost(c: "Context", exc: Exception) -> bool:
    """True when `exc` is a remote context's SSH connection dropping mid-command."""
    if not hasattr(c, "transport"):  # a local Context: OSError there is a bug or a missing shell
        return False
    from paramiko.ssh_exception import SSHException

    return isinstance(exc, (EOFError, OSError, SSHException))


def lost_cause(c: "Context", exc: BaseException | None = None) -> tuple[str, bool]:
    """Why `c`'s SSH connection went away, and whether it was silence (no answer within the kernel's
    ``TCP_USER_TIMEOUT``/keepalive, `aegir.host.set_liveness`, which notes how long the peer was
    quiet) rather than a close or a refusal."""
    import errno

    transport = getattr(c, "transport", None)
    cause = exc if exc is not None else getattr(transport, "saved_exception", None)
    liveness = getattr(transport, "aegir_liveness", None)
    if (isinstance(cause, OSError) and cause.errno == errno.ETIMEDOUT or isinstance(cause, TimeoutError)
            or bool(getattr(liveness, "silent", False))):
        return "no answer", True
    if isinstance(cause, EOFError) or cause is None:
        return "the connection was closed", False
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror, False
    return str(cause) or type(cause).__name__, False


def run(c: "Context", cmd: Cmd, *, host: str, check: bool = True, stream: bool = False,
        timeout: float | None = None, out: Any = None, err: Any = None) -> "Result":
    """Run `cmd` through `c` (local Context or Fabric Connection), output captured.

    `stream` also prints the output as it comes (``logs --follow``), to `out` and
    `err` when given (file-like: the caller escapes host text there). `timeout`
    (default: ``cmd.timeout``; None: none) is the command's deadline: past it the
    channel is closed and `DeadlineExceeded` raised.

    Raises `CommandError` (host, command line, exit code, stderr tail) when the
    command fails and `check` is true; otherwise returns the Result whatever
    its exit code. A remote command whose SSH connection dies under it (no exit
    status comes back) raises `ConnectionLost`. stdin is closed after
    `cmd.stdin` is sent; a command without stdin reads /dev/null (`NO_STDIN`).
    """
    secrets = [cmd.stdin] if cmd.stdin else []
    deadline = cmd.timeout if timeout is None else timeout
    # Locally Invoke kills the shell it started when the deadline passes: `exec` makes that shell the
    # command itself, whose end closes the output pipes (a command that forks may still hold them).
    line = cmd.line if hasattr(c, "transport") else "exec " + cmd.line
    try:
        result: Result | None
        if hasattr(c, "transport") and not stream:
            result = _exec(c, line if cmd.stdin else line + NO_STDIN, cmd.stdin, deadline)
        else:
            result = c.run(
                line if cmd.stdin else line + NO_STDIN,
                hide=not stream,
                warn=True,
                echo=False,
                pty=False,
                in_stream=_Feed(cmd.stdin) if cmd.stdin else False,
                echo_stdin=False,
                timeout=deadline,
                **({"out_stream": out, "err_stream": err} if stream and out is not None else {}),
            )
    except Exception as exc:  # invoke.CommandTimedOut, a dropped SSH connection...
        from invoke.exceptions import CommandTimedOut

        if isinstance(exc, CommandTimedOut) and not _gone(c):
            raise DeadlineExceeded(host, cmd.line, float(deadline or 0)) from None
        if isinstance(exc, CommandTimedOut) or _connection_lost(c, exc):
            cause, _ = lost_cause(c, None if isinstance(exc, CommandTimedOut) else exc)
            raise ConnectionLost(f"SSH connection lost while running `{cmd.line}`: {cause}", host=host) from None
        raise
    assert result is not None  # warn=True: Invoke returns the Result of a failed command too
    if result.exited == -1 and hasattr(c, "transport"):  # the channel closed with no exit status
        cause, _ = lost_cause(c)
        raise ConnectionLost(f"SSH connection lost while running `{cmd.line}`: {cause}", host=host)
    if check and result.exited != 0:
        raise CommandError(host, cmd.line, result.exited, mask(result.stderr, secrets))
    return result


def _exec(c: Any, line: str, stdin: str | None, deadline: float | None) -> "Result":
    """Run `line` in one SSH session of Fabric connection `c`, both outputs captured; Invoke's `Result`.

    What ``c.run`` does for a captured command, in this thread alone: Invoke's runner starts three
    threads per command (stdout, stderr, stdin) and polls every 10 ms for the end, which cost most
    of the operator's CPU per host (a fleet of hundreds runs thousands of commands) and up to 10 ms
    of latency per command. Here one select() loop reads both streams as they come (the channel's
    window is given back as they are read, so neither can stall the other). Past `deadline` the
    channel is closed and Invoke's `CommandTimedOut` raised, as ``c.run`` does; a channel that
    closes without an exit status gives ``exited == -1`` (the connection died).
    """
    import select
    import time

    from invoke.exceptions import CommandTimedOut
    from invoke.runners import Result

    if not c.is_connected:
        c.open()
    ends = None if deadline is None else time.monotonic() + deadline
    chan = c.transport.open_session()  # as Fabric opens one (a silent peer: TCP_USER_TIMEOUT ends it)
    out: list[bytes] = []
    err: list[bytes] = []
    try:
        fd = chan.fileno()  # paramiko's pipe: readable while either stream holds data, or at EOF/close
        chan.exec_command(line)
        if stdin:
            # A host that never reads its stdin must not hold this thread past the deadline either.
            chan.settimeout(None if ends is None else max(0.001, ends - time.monotonic()))
            try:
                chan.sendall(stdin.encode())
            except TimeoutError:
                raise CommandTimedOut(Result(command=line, exited=-1), timeout=deadline or 0) from None  # type: ignore[arg-type]  # Invoke's hint says int
            chan.settimeout(None)
            chan.shutdown_write()
        while True:
            if chan.recv_ready():
                out.append(chan.recv(1 << 16))
            elif chan.recv_stderr_ready():
                err.append(chan.recv_stderr(1 << 16))
            elif chan.eof_received or chan.closed:
                break
            else:
                left = None if ends is None else ends - time.monotonic()
                if left is not None and left <= 0:
                    raise CommandTimedOut(Result(command=line, exited=-1), timeout=deadline or 0)  # type: ignore[arg-type]  # Invoke's hint says int
                select.select([fd], [], [], left)
        left = None if ends is None else max(0.0, ends - time.monotonic())
        if not chan.status_event.wait(left) and not chan.closed:
            raise CommandTimedOut(Result(command=line, exited=-1), timeout=deadline or 0)  # type: ignore[arg-type]  # Invoke's hint says int
        exited = chan.exit_status  # -1 when the channel closed without one
    finally:
        chan.close()
    return Result(stdout=b"".join(out).decode("utf-8", "replace"), stderr=b"".join(err).decode("utf-8", "replace"),
                  command=line, exited=exited, hide=("stdout", "stderr"))


def _gone(c: "Context") -> bool:
    """True when `c` is a remote context whose SSH transport is no longer up."""
    transport = getattr(c, "transport", None)
    return transport is not None and not transport.is_active()
