"""What every task module shares: targets from -H, --dry, the error boundary.

A task body has one shape: targets -> facts -> plan -> show -> stop if dry ->
act -> check again. `task` turns `AegirError` into a one-line `invoke.Exit`;
anything else escaping a task is a bug and keeps its traceback.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import invoke
from invoke import Argument, Exit

from aegir.errors import AegirError, InventoryError, TargetError, UsageError
from aegir.report import HostResult, check_format, emit, printable, say, warn
from aegir.tasks.exits import EXIT_PROBLEM, exit_if_failed
from aegir.tasks.flags import PROJECT_PARAMS, Bound, Kind, kind_for, letter_for

if TYPE_CHECKING:  # pragma: no cover
    from aegir.action import Action, Ran, Report
    from aegir.fleet import Outcome
    from aegir.host import HostContext
    from aegir.inventory import Host, Inventory, Rolling

# The fleet, the host context and the inventory (paramiko's and YAML's import chain)
# are imported in the function bodies: `inv --list` and `--help` never load them.

T = TypeVar("T")

#: Exit codes: 0 all fine, 1 something failed or needs attention (`EXIT_PROBLEM`), 2 bad input/config.
EXIT_USAGE = 2


def task(*args: Any, **kwargs: Any) -> Any:
    """`invoke.task`, plus the boundary that prints an `AegirError` as one line, and aegir's flags.

    Flags (`aegir.tasks.flags`): a short letter from `flags.LETTERS` only (the
    same letter means the same flag in every task); each value read by its kind
    when the command line is parsed (`kinds`: ``{param: Kind}``, else by name or
    default); a parameter naming a project (``name``, ``app``, ``path``) is
    ``-n/--names`` on the command line. `long_only` lists parameters that keep no
    letter (a flag whose name means something else in this task). `no_dry` says
    why the task has no dry run: the program's --dry is then refused (exit 2)
    instead of ignored.
    """
    options = {"kinds": kwargs.pop("kinds", {}), "long_only": tuple(kwargs.pop("long_only", ()))}
    no_dry: str | None = kwargs.pop("no_dry", None)

    def decorate(fn: Callable[..., Any]) -> invoke.Task:
        sig = inspect.signature(fn)
        renamed = {p: "names" for p in sig.parameters if p in PROJECT_PARAMS}

        @functools.wraps(fn)
        def body(c: invoke.Context, *a: Any, **kw: Any) -> Any:
            for param, flag in renamed.items():
                if flag in kw:
                    kw[param] = kw.pop(flag)
            try:
                if no_dry and is_dry(c):
                    raise UsageError(f"--dry: {no_dry}")
                return fn(c, *a, **kw)
            except (InventoryError, TargetError, UsageError) as exc:
                raise Exit(f"aegir: {printable(str(exc))}", code=EXIT_USAGE) from None
            except AegirError as exc:
                raise Exit(f"aegir: {printable(str(exc))}", code=EXIT_PROBLEM) from None
            finally:
                _say_dry()

        body.__signature__ = sig.replace(parameters=[  # type: ignore[attr-defined]
            p.replace(name=renamed.get(p.name, p.name)) for p in sig.parameters.values()])
        kw = dict(kwargs)
        kw["help"] = {renamed.get(k, k): v for k, v in (kwargs.get("help") or {}).items()}
        kinds = {renamed.get(k, k): v for k, v in options["kinds"].items()}
        return invoke.task(klass=AegirTask, kinds=kinds, long_only=options["long_only"], **kw)(body)

    if len(args) == 1 and callable(args[0]) and not kwargs:
        return decorate(args[0])
    return decorate


def _say_dry() -> None:
    """After a task that stopped at the dry stop (`aegir.action.run`), say on stderr that nothing changed."""
    act = sys.modules.get("aegir.action")  # never imported by `inv --list`: only tasks that act load it
    if act is not None and act.stopped_dry():
        say(act.DRY_LINE, err=True)


class AegirTask(invoke.Task):
    """Invoke's `Task` whose flags follow `aegir.tasks.flags`: letters from the one table, typed values."""

    def __init__(self, body: Callable[..., Any], *, kinds: dict[str, Kind] | None = None,
                 long_only: Sequence[str] = (), **kwargs: Any) -> None:
        kwargs["auto_shortflags"] = False  # letters come from flags.LETTERS, not from each flag's first free letter
        super().__init__(body, **kwargs)
        self.kinds = dict(kinds or {})
        self.long_only = tuple(long_only)

    def get_arguments(self, ignore_unknown_help: bool | None = None) -> list[Argument]:
        kept = dict(self.help)  # Invoke's get_arguments pops help texts: keep them for the next parser
        try:
            args = super().get_arguments(ignore_unknown_help)
        finally:
            self.help = kept
        for arg in args:
            param, flag = arg.attr_name or arg.names[0], arg.names[0]
            if arg.takes_value and arg.kind is not list:
                kind = self.kinds.get(param) or kind_for(param, arg.default)
                if kind is not None:
                    arg.kind = Bound(kind, f"--{flag}")
            letter = letter_for(flag)
            if letter and param not in self.long_only:
                arg.names = (flag, letter)
        return args


def inventory(c: invoke.Context) -> Inventory:
    """The inventory chosen by --inventory / $AEGIR_INVENTORY / the search path."""
    from aegir.inventory import for_context

    return for_context(c)


def targets(c: invoke.Context) -> tuple[Host, ...]:
    """The hosts named by -H (hosts, groups, user@host:port, ``!`` to leave out), or every host; less --exclude."""
    settings = c.config.get("aegir") or {}
    return inventory(c).resolve(settings.get("hosts"), settings.get("exclude"))


#: The flags of every action that changes hosts: ``help={**ROLLING_HELP, ...}`` on the task,
#: ``serial=None, keep_going=False`` in its signature, ``rolling=rolling(c, hosts, serial, keep_going)``
#: to `aegir.fleet.each`.
ROLLING_HELP = {
    "serial": "Roll: change N hosts at a time, or a percentage (25%); the first batch is the canary, "
              "a failed host stops the roll. Default: the targets' group 'rolling:' in hosts.yml, else all at once.",
    "keep_going": "Rolling: go on after a host fails (a failed canary batch still stops the roll).",
}

#: ``--all-or-nothing`` of the actions that otherwise go on with the hosts they could plan on.
ALL_OR_NOTHING_HELP = "Act on no host unless every target was reached and planned (default: go on with the others, and say which were left out)."


def rolling(c: invoke.Context, hosts: Sequence[Host], serial: str | None = None,
            keep_going: bool = False) -> Rolling | None:
    """How an action rolls over `hosts`: ``--serial``, else their groups' ``rolling:``, else None (all at once).

    `TargetError` (exit 2) for a --serial that is not N or N%.
    """
    if serial is not None:
        from aegir.inventory import parse_serial

        try:
            return parse_serial(serial, keep_going=keep_going)
        except ValueError as exc:
            raise TargetError(f"--{exc}") from None
    found = inventory(c).rolling_for(hosts)
    if found is not None and keep_going:
        return dataclasses.replace(found, keep_going=True)
    return found


def one_host(c: invoke.Context, why: str) -> Host:
    """The single host -H names, or `AegirError` (`why` says what needs one host)."""
    hosts = targets(c)
    if len(hosts) != 1:
        raise AegirError(f"{why}; pick it with -H (of {', '.join(h.name for h in hosts)})")
    return hosts[0]


def is_dry(c: invoke.Context, flag: bool = False) -> bool:
    """True under the task's own --dry or the program's --dry."""
    return bool(flag or (c.config.get("aegir") or {}).get("dry"))


def finish(c: invoke.Context, fmt: str, report: Report, hosts: Sequence[HostResult] = (), *,
           see: str | None = None) -> None:
    """Print `report` (the table, or its JSON under ``--format json``) and its warnings on stderr; exit 1
    when a host of `hosts` failed (a line names them; `see`: what shows a host left part-way) or the
    report found problems. An empty table prints nothing (apps.compose: Compose's own output was the
    report)."""
    if fmt == "json" or report.text:
        emit(fmt, data=report.data, text=report.text, verbatim=report.verbatim)
    for line in report.warnings:
        warn(line)
    exit_if_failed(hosts, problems=report.problems, see=see)


def act(c: invoke.Context, action: Action[Any, Any], *, fmt: str, dry: bool = False, yes: bool = False,
        serial: str | None = None, keep_going: bool = False, all_or_nothing: bool = False,
        preview: bool = False, hosts: Sequence[Host] | None = None) -> Ran[Any, Any]:
    """The body of every task that changes hosts: `aegir.action.run` on the targets (or `hosts`), then its
    report (`Action.render`) and the exit code; the run is returned for a task that says more."""
    from aegir import action as actions

    fmt = check_format(fmt)
    dry = is_dry(c, dry)
    hosts = targets(c) if hosts is None else hosts
    roll = None if dry else rolling(c, hosts, serial, keep_going)
    ran = actions.run(c, action, hosts, dry=dry, yes=yes, rolling=roll, all_or_nothing=all_or_nothing, fmt=fmt,
                      preview=preview)
    finish(c, fmt, action.render(ran), ran.outcomes, see=action.see)
    return ran


def fleet_report(c: invoke.Context, fmt: str, label: str, fn: Callable[[HostContext], T], *,
                 data: Callable[[list[Outcome[T]]], Any], text: Callable[[list[Outcome[T]]], str],
                 problems: Callable[[list[Outcome[T]]], bool] | None = None) -> list[Outcome[T]]:
    """The body of a read-only report: `fn` on every target, one table (or JSON), exit 1 on a failed host.

    `problems` says whether what was found needs attention (exit 1 as well).
    """
    fmt = check_format(fmt)
    outcomes = fleet_read(c, label, fn)
    emit(fmt, data=data(outcomes), text=text(outcomes))
    exit_if_failed(outcomes, problems=bool(problems and problems(outcomes)))
    return outcomes


def fleet_read(c: invoke.Context, label: str, fn: Callable[[HostContext], T], *,
               hosts: Sequence[Host] | None = None, serial: bool = False,
               processes: bool = False) -> list[Outcome[T]]:
    """`fn` on every target (or on `hosts`) in parallel, one outcome per host: the reads of a report.

    `fleet_report` prints them; a task whose report is fleet-wide (the DNS
    zones of every host's names) reads here, then builds it; its only change,
    if any, is on the operator's machine, after `aegir.action.dry_stop`.
    `serial`: one host after another, without a progress line (`fn` prints as
    it reads: mysql.status follows a checkpoint's log). `processes`: `fn`'s values pickle, so a large
    fleet may be read by several worker processes (`aegir.fleet`).
    """
    from aegir import fleet

    return fleet.each(c, targets(c) if hosts is None else hosts, fn, label=label, serial=serial,
                      processes=processes)


def confirm(question: str, *, yes: bool, label: str, verb: str, refused: str = "nothing done") -> None:
    """`aegir.action.confirm`: for the tasks that confirm outside an action (none should, in the end)."""
    from aegir.action import confirm as ask

    ask(question, yes=yes, label=label, verb=verb, refused=refused)
