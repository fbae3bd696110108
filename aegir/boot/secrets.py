"""Passphrases from the operator: typed at the terminal without echo, tried, never shown.

The LUKS passphrase is read from the operator's terminal (``/dev/tty``, so a
redirected stdin or stdout changes nothing) with echo off, or, when asked for
with ``--passphrase-stdin``, one line per try from standard input (a
terminal there is still read without echo: ``--passphrase-stdin`` typed by
habit at a prompt must not show the passphrase on screen). It is
handed to the command that needs it as its stdin (`aegir.sh.Cmd.stdin`) and
nowhere else: not argv, not the environment, not a message. With no terminal
and no other source, the answer is a clear refusal, never a silent fallback
(`getpass` would fall back to stdin and warn; that is why it is not used).

`Prompter` asks once per host (or once for all with ``same=True``), and
`retry` gives each host three tries, asking again only when the command says
"wrong passphrase" (cryptsetup's exit code 2).
"""

from __future__ import annotations

import io
import os
import sys
import termios
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from aegir.errors import RefusedError
from aegir.report import printable, say

TTY = "/dev/tty"
#: The terminal's device when the program runs in a warm agent's child (`aegir.launch`), which has no
#: controlling terminal of its own: the command that handed it over names its own.
TTY_ENV = "AEGIR_TTY"
TRIES = 3


def terminal() -> str:
    """The path of the operator's terminal: ``/dev/tty``, or the device `aegir.launch` names."""
    return os.environ.get(TTY_ENV) or TTY


class NoPassphrase(RefusedError):
    """No passphrase could be read: no terminal, end of input, or an empty line."""


def read_secret(prompt: str, tty: str | None = None) -> str:
    """Write `prompt` on the terminal and read one line with echo off.

    The terminal's settings are restored whatever happens (Ctrl-C included).
    Raises `NoPassphrase` when there is no terminal or the input ends.
    """
    tty = tty or terminal()
    try:
        fd = os.open(tty, os.O_RDWR | os.O_NOCTTY)
    except OSError as exc:
        raise NoPassphrase(f"no terminal to read the passphrase from ({tty}: {exc.strerror}): "
                           "run it from a terminal, or pipe the passphrase with --passphrase-stdin") from None
    with io.FileIO(fd, "r+") as raw, io.TextIOWrapper(raw, write_through=True) as term:
        try:
            old = termios.tcgetattr(fd)
        except termios.error:
            raise NoPassphrase(f"{tty} is not a terminal: cannot turn echo off") from None
        quiet = list(old)
        quiet[3] &= ~termios.ECHO  # lflags: no echo, canonical line editing kept
        termios.tcsetattr(fd, termios.TCSAFLUSH, quiet)
        try:
            term.write(printable(prompt))
            line = term.readline()
        finally:
            termios.tcsetattr(fd, termios.TCSAFLUSH, old)
            term.write("\n")
    if not line:
        raise NoPassphrase("no passphrase typed (end of input)")
    return line[:-1] if line.endswith("\n") else line


@dataclass
class Prompter:
    """Where passphrases come from for one run: the terminal, or a stream (``--passphrase-stdin``).

    ``same=True`` (``--same-passphrase``) reuses the last accepted passphrase
    as every other host's first try; otherwise each host asks its own.
    Prompts name the host and the device; the passphrase is never echoed.
    """

    same: bool = False
    stream: TextIO | None = None
    tty: str = field(default_factory=terminal)
    tries: int = TRIES
    notes: TextIO = field(default_factory=lambda: sys.stderr)
    _shared: str | None = field(default=None, repr=False)

    def ask(self, host: str, device: str, attempt: int) -> str:
        """The passphrase for try `attempt` (1-based) on `host`."""
        if self.same and self._shared is not None and attempt == 1:
            return self._shared
        if attempt == 1:
            every = " (and the next hosts: --same-passphrase)" if self.same else ""
            prompt = f"{host}: LUKS passphrase for {device}{every}: "
        else:
            prompt = f"{host}: wrong passphrase, try {attempt} of {self.tries}: "
        if self.stream is None or _is_terminal(self.stream):
            passphrase = read_secret(prompt, self.tty)
        else:
            if attempt > 1:
                say(f"{host}: wrong passphrase, reading try {attempt} of {self.tries} from standard input",
                    out=self.notes)
            line = self.stream.readline()
            if not line:
                raise NoPassphrase("no passphrase left on standard input (--passphrase-stdin)")
            passphrase = line.rstrip("\r\n")
        if not passphrase:
            raise NoPassphrase("empty passphrase: nothing tried")
        return passphrase

    def accepted(self, passphrase: str) -> None:
        """Remember a passphrase that worked, for the next hosts under ``same``."""
        if self.same:
            self._shared = passphrase


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def retry(prompter: Prompter, host: str, device: str, attempt: Callable[[str], bool]) -> int:
    """Ask and try up to ``prompter.tries`` times; return the try that worked.

    `attempt(passphrase)` returns True when accepted, False for a wrong
    passphrase (ask again), and raises for anything else (stop at once).
    After the last wrong try: `RefusedError`.
    """
    for n in range(1, prompter.tries + 1):
        passphrase = prompter.ask(host, device, n)
        if attempt(passphrase):
            prompter.accepted(passphrase)
            return n
    raise RefusedError(f"wrong passphrase {prompter.tries} times for {device}: refused, nothing unlocked",
                       host=host)
