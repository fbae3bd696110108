"""``apps.compose NAME -- ARGS``: any Compose subcommand for one project, as an `aegir.action.Action`.

`classify` sorts the subcommand: a read (``ps``, ``logs``, ``config``…) and
``exec`` (what it runs is the user's call) run without a question; anything
else (``down``, ``rm``, ``stop``, ``kill``, ``up``, ``pull``, ``run``, a
subcommand aegir does not know…) stops, removes, creates or recreates
something: the plan (each host's exact command) is shown and the operator
confirms it (or passes ``--yes``); a core project says so in the question, as
``core.down`` does. Under ``--dry`` nothing runs, reads included: the one dry
stop of `aegir.action.run`.

Acting streams Compose's output as it comes, one host after another
(``==> HOST PROJECT <==`` before each when there are several); the exit code
is the result (an arbitrary subcommand has no state to check afterwards).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aegir.compose import commands as compose
from aegir.compose.discovery import Project
from aegir.errors import AegirError, UsageError
from aegir.sh import Cmd

if TYPE_CHECKING:  # pragma: no cover
    pass

#: Subcommands that only read: they run without a question.
READS = frozenset({"ps", "logs", "config", "images", "top", "ls", "version", "port", "events"})
#: Subcommands whose effect is what the user runs in a container: they run without a question.
THROUGH = frozenset({"exec"})
READ, RUN_THROUGH, CHANGE = "read", "exec", "change"


def classify(args: Sequence[str]) -> str:
    """`READ`, `RUN_THROUGH` (``exec``) or `CHANGE` for the Compose words `args` (subcommand first).

    Anything not known to be a read changes something (an unknown subcommand
    too); a read given ``-v``/``--volumes`` (which only removal commands take)
    is counted as a change, ``config --volumes`` (the volumes' names) apart.

    >>> classify(["ps"]), classify(["exec", "-T", "web", "rm", "-v", "x"]), classify(["down", "-v"])
    ('read', 'exec', 'change')
    """
    sub = args[0] if args else ""
    if sub in THROUGH:
        return RUN_THROUGH
    volumes = any(a in ("-v", "--volumes") or a.startswith("--volumes=") for a in args[1:])
    if sub in READS and not (volumes and sub != "config"):
        return READ
    return CHANGE


@dataclass(frozen=True)
class PassPlan:
    """One host's part: the project (every project of the host, for "did you mean") and its command."""

    host: str
    runs: tuple[tuple[str, str, Cmd], ...]  # (project path, project kind, command)
    projects: tuple[Project, ...] = ()


@dataclass(frozen=True)
class PassResult:
    """What ran on one host: (project path, command line, exit code) for each command."""

    ran: tuple[tuple[str, str, int], ...]

    @property
    def failed(self) -> tuple[str, ...]:
        return tuple(f"{line} exited {code}" for _, line, code in self.ran if code != 0)


def check_args(args: Sequence[str]) -> tuple[str, ...]:
    """The words after ``--``: a Compose subcommand first (`UsageError` otherwise)."""
    if not args:
        raise UsageError("apps.compose: put the Compose subcommand after '--': inv apps.compose NAME -- ps")
    try:
        return tuple(compose.check_subcommand(args))
    except AegirError as exc:
        raise UsageError(f"apps.compose: {exc.message}") from None
