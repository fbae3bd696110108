"""The one family of expected failures.

Every failure an operator can cause or meet (a bad inventory, a host that does
not answer, a command that exits non-zero, a refused action) is an
`AegirError`: its `str()` is the whole message, one or a few lines, naming the
host, the file and line, or the command, its exit code and the tail of stderr.
Tasks turn these into `invoke.Exit` at their boundary; a traceback means a bug.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

#: How many lines of a failed command's stderr end up in its message.
STDERR_TAIL_LINES = 5


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """`` (did you mean 'disk.report'?)`` when `word` is close to one of `known` (a typo), else ""."""
    close = difflib.get_close_matches(word, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class AegirError(Exception):
    """An expected failure; `str(err)` is the message shown to the operator."""

    def __init__(self, message: str, *, host: str | None = None) -> None:
        self.host = host
        self.message = message
        super().__init__(f"{host}: {message}" if host else message)

    def on(self, host: str) -> "AegirError":
        """This error, said of `host` when it names none yet (a pure parser cannot know the host)."""
        if self.host is None:
            self.host = host
            self.args = (f"{host}: {self.message}", *self.args[1:])
        return self


class InventoryError(AegirError):
    """A hosts.yml problem, located as ``file:line: sentence``."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path = path
        self.line = line
        self.problem = message  # the sentence, without file and line
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {message}")


class TargetError(AegirError):
    """A ``-H`` value that names no host or group of the inventory."""


class UsageError(AegirError):
    """The command line asks for something no target has (a project name that matches nothing): exit 2."""


class UnreachableError(AegirError):
    """The host could not be reached or logged into (DNS, TCP, SSH auth)."""


class HostKeyError(UnreachableError):
    """The host's SSH key is not in known_hosts (or does not match)."""


class ConnectionLost(UnreachableError):
    """A host that was reached stopped answering, or its SSH connection closed, part-way through.

    Unlike a host that could never be reached, something may have been done
    there: the fleet reports it as a failed host with the steps it completed
    (`aegir.journal`), never as "cannot connect".
    """


class Interrupted(AegirError):
    """Ctrl-C: a step that had not started yet was not started (`aegir.interrupt`)."""


class RefusedError(AegirError):
    """A safety check refuses an action (say why and how to proceed)."""


class Declined(AegirError):
    """The operator answered no at a confirmation: the message says what was not done (exit 1)."""


@dataclass(frozen=True)
class _Tail:
    text: str

    def __str__(self) -> str:
        lines = [ln for ln in self.text.strip().splitlines() if ln.strip()]
        return "\n".join("  | " + ln for ln in lines[-STDERR_TAIL_LINES:])


class CommandError(AegirError):
    """A command exited non-zero: host + command + exit code + stderr tail."""

    def __init__(self, host: str, command: str, exited: int, stderr: str = "") -> None:
        self.command = command
        self.exited = exited
        self.stderr = stderr
        tail = str(_Tail(stderr))
        message = f"`{command}` exited {exited}" + (f"\n{tail}" if tail else "")
        super().__init__(message, host=host)


class DeadlineExceeded(CommandError):
    """A command ran past its deadline: aegir stopped waiting (and closed its channel); it may still run there."""

    def __init__(self, host: str, command: str, seconds: float, *, what: str = "") -> None:
        super().__init__(host, command, -1)
        self.seconds = seconds
        self.what = what
        self.message = f"`{command}`{f' for {what}' if what else ''} did not finish within its deadline of {seconds:g} s"
        self.args = (f"{host}: {self.message}" if host else self.message,)
