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

import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aegir.action import Action, Ran, Report
from aegir.compose import commands as compose
from aegir.compose.discovery import Project, select, unknown_names
from aegir.compose.status import discover
from aegir.errors import AegirError, UsageError
from aegir.layout import PROJECT_KINDS
from aegir.sh import Cmd

if TYPE_CHECKING:  # pragma: no cover
    from aegir.fleet import Outcome
    from aegir.host import HostContext

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


class Passthrough(Action[PassPlan, PassResult]):
    """Run `args` (Compose's words) for the project `name` on every target host that has it."""

    label = "apps.compose"
    serial = True  # the output streams to the terminal: one host after another
    refused = "nothing run"

    def __init__(self, name: str, args: Sequence[str], *, kinds: Sequence[str] = PROJECT_KINDS) -> None:
        self.name, self.args, self.kinds = name, tuple(args), tuple(kinds)
        self.kind = classify(self.args)
        self.verb = "run it"
        self._headers = False

    def plan(self, hc: HostContext) -> PassPlan:
        disc = discover(hc)
        chosen, _ = select(disc.projects, (self.name,), self.kinds, host=hc.name)
        fl = compose.flavour(hc) if chosen else None
        runs = tuple((p.path, p.kind, compose.passthrough(fl, p, self.args, docker_host=hc.host.docker_host))
                     for p in chosen if fl is not None)
        return PassPlan(hc.name, runs, tuple(p for p in disc.projects if p.kind in self.kinds))

    def todo(self, plan: PassPlan) -> bool:
        return bool(plan.runs)

    def refuse(self, plans: Sequence[Outcome[PassPlan]]) -> None:
        """A name no host that answered has: a usage error with "did you mean"; several places: headers."""
        answered = [o.value for o in plans if o.value is not None]
        unknown = unknown_names((self.name,), [p for v in answered for p in v.projects])
        if unknown and answered:
            raise UsageError(unknown[0])
        self._headers = sum(len(v.runs) for v in answered) > 1

    def question(self, plans: Sequence[Outcome[PassPlan]]) -> str | None:
        if self.kind != CHANGE:
            return None
        where = [(o.host.name, path, kind) for o in plans if o.value is not None for path, kind, _ in o.value.runs]
        if not where:
            return None
        words = shlex.join(self.args)
        text = f"Run `compose {words}` for {', '.join(f'{h}:{p}' for h, p, _ in where)}"
        core = sorted({p for _, p, kind in where if kind == "core"})
        if core:
            text += (f" ({', '.join(core)}: a core project, every app goes through it; "
                     "whatever this stops stays stopped until core.up)")
        return text + "?"

    def act(self, hc: HostContext, plan: PassPlan) -> PassResult:
        ran = []
        for path, _, cmd in plan.runs:
            if self._headers:
                print(f"==> {hc.name} {path} <==", flush=True)
            result = hc.run(cmd, stream=True, check=False)
            sys.stdout.flush()
            ran.append((path, cmd.line, result.exited))
        return PassResult(tuple(ran))

    def failed(self, result: PassResult) -> str | None:
        return "; ".join(result.failed) or None

    def render(self, ran: Ran[PassPlan, PassResult]) -> Report:
        from aegir.compose.report import passthrough_report

        return passthrough_report(ran, quiet=self.kind != CHANGE)


def check_args(args: Sequence[str]) -> tuple[str, ...]:
    """The words after ``--``: a Compose subcommand first (`UsageError` otherwise)."""
    if not args:
        raise UsageError("apps.compose: put the Compose subcommand after '--': inv apps.compose NAME -- ps")
    try:
        return tuple(compose.check_subcommand(args))
    except AegirError as exc:
        raise UsageError(f"apps.compose: {exc.message}") from None
