"""Task flags: one short letter per meaning, and value kinds that parse and say what they accept.

`LETTERS` is the one table of short flags. `aegir.tasks.base.task` turns Invoke's
automatic letters off and gives a flag a letter from this table only, so a letter
means the same flag in every task; and a letter the program has (`-d`, `-H`, `-R`,
`-t`...) means the same flag after the task name as before it (the program's
`-d/-R` is `--dry`, and so is every task's `-d`).

A `Kind` reads a flag's text when Invoke parses the command line, before any task
runs: ``--top x`` is refused there, in one line naming the task, the flag and what
it accepts (``aegir: disk.report --top: expected a whole number (0 or more), not
'x'``; exit 2), never as a traceback. ``--help`` shows its `Kind.metavar`
(``--warn=PCT``). Every flag that takes a value has a kind: declared in the task's
decorator (``kinds={"warn": PERCENT}``), else inferred from its name or default
(`kind_for`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from invoke.exceptions import ParseError

from aegir import fields
from aegir.errors import AegirError

#: The short letters of task flags: letter -> the long flag it stands for, in every task that has that flag.
#: A task flag gets no letter unless it is here. Program letters (`PROGRAM_LETTERS`) are never given to a
#: different flag.
LETTERS: dict[str, str] = {
    "a": "all",
    "d": "dry",
    "f": "format",
    "F": "follow",
    "k": "keep-going",
    "m": "message",
    "n": "names",
    "s": "serial",
    "y": "yes",
}

#: The program's letters (before or after the task name) -> the long flag; `aegir.cli` builds its flags from it.
#: Invoke's ``-f`` (--config), ``-F`` (--list-format) and ``-d`` (--debug) are gone: the tasks' --format and
#: --follow, and --dry, use those letters; their long names still work.
PROGRAM_LETTERS: dict[str, str] = {
    "c": "collection", "d": "dry", "D": "list-depth", "e": "echo", "h": "help", "H": "hosts", "i": "identity",
    "l": "list", "p": "pty", "r": "search-root", "R": "dry", "S": "ssh-config", "t": "connect-timeout",
    "T": "command-timeout", "V": "version", "w": "warn-only",
}

#: Task parameters that name projects, shown as ``--names`` in every task (one meaning, one spelling).
PROJECT_PARAMS = ("name", "app", "path")


class FlagError(ParseError):
    """A flag's value that its kind refuses; `str()` is the whole ``aegir: ...`` line."""


@dataclass(frozen=True)
class Kind:
    """How a flag's value is read: `parse` (text -> value, `ValueError` when refused), the `accepts`
    phrase of the refusal, and the `metavar` --help shows after the flag."""

    metavar: str
    accepts: str
    parse: Callable[[str], Any] = field(compare=False)
    values: tuple[str, ...] = ()  # a choice's values, which the flag's help must name


@dataclass(frozen=True)
class Bound:
    """A `Kind` bound to one flag of one task: what Invoke's `Argument` calls with the typed text."""

    kind: Kind
    flag: str  # --top
    task: str = ""  # disk.report, once the program knows the task's full name

    @property
    def __name__(self) -> str:  # Invoke's Argument repr names its kind
        return self.kind.metavar

    def at(self, task: str) -> Bound:
        return replace(self, task=task)

    def __call__(self, text: Any) -> Any:
        where = f"{self.task} {self.flag}" if self.task else self.flag
        try:
            return self.kind.parse(str(text))
        except ValueError:
            raise FlagError(f"aegir: {where}: expected {self.kind.accepts}, not {text!r}") from None
        except AegirError as exc:  # a validator's own sentence ("invalid project name 'a b': ...")
            raise FlagError(f"aegir: {where}: {exc}") from None


# --------------------------------------------------------------------------- the parsers


# What aegir.fields reads in hosts.yml and x-aegir (whole numbers, durations, sizes, names, choices) is read the
# same way on the command line: its parsers raise a ValueError, which `Bound` words for the flag.


def _count(low: int) -> Callable[[str], int]:
    return lambda text: fields.whole(text.strip(), least=low, text=True)


def _seconds(text: str) -> float:
    return fields.duration(text)


def _percent(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+)\s*%?\s*", text)
    if not m or int(m[1]) > 100:
        raise ValueError
    return int(m[1])


def _rolling(text: str) -> str:
    from aegir.inventory import parse_serial

    parse_serial(text)
    return text.strip()  # the task reads it with parse_serial (aegir.tasks.base.rolling)


def _size(text: str) -> str:
    fields.size(text)
    return text.strip()  # the task reads it again (aegir.mysql.plan.parse_size)


def _projects(one: bool) -> Callable[[str], str]:
    def parse(text: str) -> str:
        from aegir.compose.discovery import split_names

        names = split_names(text)  # AegirError says which name and why
        if not names or (one and len(names) != 1):
            raise ValueError
        return text
    return parse


def _folder(text: str) -> str:
    return fields.name("project")(text)


def _app_path(text: str) -> str:
    from aegir.mysql.commands import app_path

    app_path("/srv", text)
    return text


def _abs_path(text: str) -> str:
    if not text.startswith("/"):
        raise ValueError
    return text


def _server(text: str) -> str:
    from aegir.dns.check import parse_server

    parse_server(text)
    return text


def _soa_serial(text: str) -> int:
    if not re.fullmatch(r"[0-9]{1,10}", text.strip()) or not 0 < int(text) < 2**32:
        raise ValueError
    return int(text)


def joined(values: Sequence[str]) -> str:
    """``a``, ``a or b``, ``a, b or c``."""
    return values[0] if len(values) == 1 else f"{', '.join(values[:-1])} or {values[-1]}"


def choice(*values: str, metavar: str = "") -> Kind:
    """One of `values`, as typed."""
    return Kind(metavar or "|".join(values), joined(values), fields.choice(*values), values)


def formats(*extra: str) -> Kind:
    """``--format``: table, json (the report's JSON), and this task's `extra` formats."""
    from aegir.report import FORMATS

    return choice(*FORMATS, *extra, metavar="FORMAT")


def count(low: int = 0, metavar: str = "N") -> Kind:
    """A whole number, `low` or more."""
    return Kind(metavar, f"a whole number ({low} or more)", _count(low))


COUNT = count()
POSITIVE = count(1)
LINES = count(0, "LINES")
SECONDS = Kind("SECONDS", "a number of seconds above 0 (or 30s, 5m, 2h)", _seconds)
PERCENT = Kind("PCT", "a percentage from 0 to 100 (90 or 90%)", _percent)
SIZE = Kind("SIZE", "a size such as 500M or 2G (K, M, G, T: powers of 1024)", _size)
ROLLING = Kind("N|N%", "a number of hosts (1 or more) or a percentage of them (1% to 100%)", _rolling)
PROJECTS = Kind("NAMES", "project names, comma-separated: folder or kind/folder (cloud,users/wiki)",
                _projects(one=False))
PROJECT = Kind("NAME", "one project: its folder name or kind/folder (cloud, users/wiki)", _projects(one=True))
FOLDER = Kind("NAME", "a folder name (letters, digits, '_', '.', '-'; at most 63)", _folder)
APP_PATH = Kind("NAME", "one app: x, apps/x, users/x or its full path", _app_path)
SERVICE = Kind("SERVICE", "one Compose service name (letters, digits, '_', '.', '-'; at most 63)",
               fields.name("service"))
CHECKPOINT = Kind("ID", "a checkpoint's id (letters, digits, '_', '.', '-') or 'latest'", fields.name("checkpoint"))
ABS_PATH = Kind("PATH", "an absolute path (starting with /)", _abs_path)
SERVER = Kind("ADDR[:PORT]", "an IP address, with an optional port (192.0.2.53:5353, [2001:db8::53]:53)", _server)
SOA_SERIAL = Kind("SERIAL", f"a SOA serial from 1 to {2**32 - 1}", _soa_serial)


def kind_for(param: str, default: Any) -> Kind | None:
    """The kind of a flag no task declared: by its name (format, names, serial), else by its default's type."""
    if param == "format":
        return formats()
    if param == "names":
        return PROJECTS
    if param == "serial":
        return ROLLING
    if param == "parallel":
        return POSITIVE
    if isinstance(default, bool):
        return None
    if isinstance(default, int):
        return COUNT
    if isinstance(default, float):
        return Kind("NUMBER", "a number (0 or more)", _nonnegative)
    return None


def _nonnegative(text: str) -> float:
    value = float(text)
    if not 0 <= value < float("inf"):
        raise ValueError
    return value


def letter_for(flag: str) -> str | None:
    """The short letter of long flag `flag` (``keep-going`` -> ``k``), if the table gives it one."""
    return next((letter for letter, name in LETTERS.items() if name == flag), None)
