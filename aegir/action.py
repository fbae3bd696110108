"""Every change aegir makes has one shape: plan every host, show, stop if dry, confirm, act and verify.

An `Action` is what a task changes, told in a few methods: how to plan one
host (`Action.plan`: facts -> a plan, reading only), whether a plan changes
anything there (`todo`), what to refuse across the fleet before anything is
shown (`refuse`: a name no host has), what to ask before acting (`question`),
how to act on one host and check the result (`act`: the change, then its
verification), when a result counts as a failed host (`failed`), and how the
whole run reads (`render`: the table and the JSON). `run` does the rest, the
same way for every task:

1. plan every target host in parallel (`aegir.fleet.each`), keeping each
   connection for the act; while a host is planned its context is read-only
   (`HostContext.planning`: a command that is not a `aegir.facts.Fact` is a bug);
2. `refuse` (exit 2 through the task's boundary);
3. **the dry stop** (`dry_stop`): under ``--dry``, or when no host has anything
   to do, the plans are the result; nothing below it runs, and under ``--dry``
   a line on stderr says so. This is the only place an action stops for ``--dry``;
4. show the plans; under ``--all-or-nothing`` on a partly planned fleet,
   act on no host (each busy one is "not attempted", `go_on_without`);
   else ask the `question` (or take ``--yes``);
5. act on the hosts with something to do: in parallel, rolling
   (``--serial``), or one after another (`Action.serial`: a prompt owns the
   terminal); a host whose planning failed is never acted on: it is left out
   (`go_on_without` says so in one line) and, in a roll, counts as a failed
   host where it stands, so an unreachable canary stops the roll.

Read-only reports need none of this: `aegir.tasks.base.fleet_report` runs one
function per host (`fleet_read`, for a report built from every host's reads).
Together they are the only callers of `aegir.fleet.each`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from aegir import fleet
from aegir.errors import RefusedError
from aegir.fleet import Outcome
from aegir.inventory import Host, Rolling
from aegir.report import ask, say

if TYPE_CHECKING:  # pragma: no cover
    from invoke import Context

    from aegir.host import HostContext

P = TypeVar("P")  # one host's plan
R = TypeVar("R")  # what acting did on one host

#: The line every dry run ends with, on stderr (the plan above it is on stdout).
DRY_LINE = "aegir: --dry: stopped before acting; nothing was changed"


@dataclass(frozen=True)
class Report:
    """What a run prints: `data` for ``--format json``, `text` for the table; `problems`: exit 1 even if
    every host answered (a check found something, a step failed); `warnings`: lines spelled by
    `aegir.report.warning`, printed on stderr (the JSON holds them too, where the report puts them);
    `verbatim`: `text` is read by another program (a zone), never wrapped to the width."""

    data: Any
    text: str
    problems: bool = False
    warnings: tuple[str, ...] = ()
    verbatim: bool = False


@dataclass(frozen=True)
class HostRun(Generic[P, R]):
    """One host of a run: its plan, and what acting did (None: not acted on: dry, nothing to do, not attempted)."""

    plan: P
    result: R | None = None


@dataclass(frozen=True)
class Ran(Generic[P, R]):
    """A whole run: one outcome per target host, in inventory order, and whether it stopped before acting.

    An outcome's value is the host's `HostRun` when it was planned (also when
    acting then failed: the plan stays, the outcome says why), None when its
    planning failed.
    """

    outcomes: tuple[Outcome[HostRun[P, R]], ...]
    dry: bool
    acted: bool

    def plans(self) -> list[tuple[Outcome[HostRun[P, R]], P]]:
        """The hosts that were planned, with their plans."""
        return [(o, o.value.plan) for o in self.outcomes if o.value is not None]

    def results(self) -> list[tuple[Outcome[HostRun[P, R]], R]]:
        """The hosts that were acted on and returned, with what they returned."""
        return [(o, o.value.result) for o in self.outcomes if o.value is not None and o.value.result is not None]


class Action(Generic[P, R]):
    """What one task changes. Override `plan`, `act` and `render`; the others have safe defaults."""

    #: The task's name (``apps.up``): progress lines, questions, refusals.
    label: str = "aegir"
    #: Act on one host after another, in inventory order, without a progress line (a prompt owns the terminal).
    serial: bool = False
    #: The verb of "pass --yes to VERB without a prompt".
    verb: str = "go on"
    #: What the task says when the question is answered no.
    refused: str = "nothing done"
    #: The command that shows where things stand after a run left a host part-way (``inv apps.status``).
    see: str | None = None

    def plan(self, hc: HostContext) -> P:
        """Read the host's facts and decide what to do there. Reads only (the context refuses commands)."""
        raise NotImplementedError

    def todo(self, plan: P) -> bool:
        """Whether `plan` changes anything on its host (False: "nothing to do", the host is not acted on)."""
        return True

    def refuse(self, plans: Sequence[Outcome[P]]) -> None:
        """Raise (`aegir.errors.UsageError`, `RefusedError`) when the command as a whole cannot go on."""

    def question(self, plans: Sequence[Outcome[P]]) -> str | None:
        """What to ask at the terminal before acting on the planned hosts (None: nothing to ask)."""
        return None

    def act(self, hc: HostContext, plan: P) -> R:
        """Carry `plan` out on the host, then check that it holds; the result says what was done."""
        raise NotImplementedError

    def failed(self, result: R) -> str | None:
        """Why a host whose `act` returned counts as failed all the same (it stops a roll), or None."""
        return None

    def render(self, ran: Ran[P, R]) -> Report:
        """The table and the JSON of a run (plans only when ``ran.acted`` is false)."""
        raise NotImplementedError


def run(c: Context, action: Action[P, R], hosts: Sequence[Host], *, dry: bool, yes: bool = False,
        rolling: Rolling | None = None, all_or_nothing: bool = False, fmt: str = "table",
        preview: bool = False) -> Ran[P, R]:
    """Plan `action` on `hosts`, stop there under `dry` (or with nothing to do), else confirm, act and verify.

    The plans are shown before acting when the action asks a question, or with
    `preview`: on stdout for a table, on stderr under ``--format json`` (stdout
    then carries one document).
    """
    contexts: dict[str, HostContext] = {}
    try:
        plans = fleet.each(c, hosts, lambda hc: _planned(action, hc), label=action.label, contexts=contexts)
        action.refuse(plans)
        busy = [o for o in plans if o.value is not None and action.todo(o.value)]
        if dry_stop(dry, todo=bool(busy)):
            return Ran(tuple(_as_run(o) for o in plans), dry=dry, acted=False)
        skipped = go_on_without(plans, [o.host for o in busy], all_or_nothing=all_or_nothing, roll=rolling)
        if skipped:  # --all-or-nothing and a host could not be planned: the plans are the result, none acted on
            return Ran(tuple(_merged(o, skipped.get(o.host.name)) for o in plans), dry=False, acted=False)
        question = action.question(plans)
        if question or preview:
            shown = action.render(Ran(tuple(_as_run(o) for o in plans), dry=False, acted=False)).text
            say(shown, err=fmt == "json")
        if question:
            confirm(question, yes=yes, label=action.label, verb=action.verb, refused=action.refused)
        by_host = {o.host.name: o.value for o in busy}

        def act(hc: HostContext) -> R:
            plan = by_host[hc.name]
            assert plan is not None
            return action.act(hc, plan)

        # in a roll a host that could not be planned counts as failed where it stands (an unreachable canary
        # stops the roll); all at once it is only left out
        unplanned: dict[str, Outcome[R]] = {o.host.name: Outcome(o.host, None, o.error, o.kind, o.seconds)
                                            for o in plans if o.value is None} if rolling is not None else {}
        acting = [o.host for o in plans if o.host.name in unplanned or any(o is b for b in busy)]
        acted = {o.host.name: o for o in fleet.each(
            c, acting, act, label=action.label, contexts=contexts, rolling=rolling,
            serial=action.serial, fails=action.failed, settled=unplanned)}
    finally:
        fleet.close_all(contexts)
    return Ran(tuple(_merged(o, acted.get(o.host.name)) for o in plans), dry=False, acted=True)


_stops: list[bool] = []  # one entry per run that stopped before acting: True when for --dry


def dry_stop(dry: bool, *, todo: bool = True) -> bool:
    """The dry stop: True when the task must stop before acting, under ``--dry`` or with nothing to do.

    `run` stops here for every `Action`; a task whose one change is on the
    operator's machine, made once for the fleet (``dns.zone --out``), calls it
    itself between its plan and its write. A stop under ``--dry`` is recorded:
    the task's boundary then says `DRY_LINE`.
    """
    if dry or not todo:
        _stops.append(dry)
        return True
    return False


def stopped_dry() -> bool:
    """Whether a run of this process stopped at the dry stop (the task's boundary then says `DRY_LINE`)."""
    return any(_stops)


def _planned(action: Action[P, R], hc: HostContext) -> P:
    """`action.plan(hc)` with the context read-only for its length."""
    with hc.planning():
        return action.plan(hc)


def _as_run(o: Outcome[P]) -> Outcome[HostRun[P, Any]]:
    return Outcome(o.host, HostRun(o.value) if o.value is not None else None, o.error, o.kind, o.seconds)


def _merged(plan: Outcome[P], act: Outcome[R] | None) -> Outcome[HostRun[P, R]]:
    """A host's outcome in the run: its plan's, then its act's (which keeps the plan)."""
    if act is None or plan.value is None:
        return _as_run(plan)
    return Outcome(act.host, HostRun(plan.value, act.value), act.error, act.kind, plan.seconds + act.seconds,
                   act.steps)


def go_on_without(plans: Sequence[Outcome[Any]], acting: Sequence[Host], *, all_or_nothing: bool = False,
                  roll: Rolling | None = None) -> dict[str, Outcome[Any]]:
    """The one policy for the hosts a plan pass could not reach or plan (`plans` not ok).

    By default the action goes on with the others and one line on stderr says so (in a roll the
    failed hosts count where they stand: an unreachable canary stops it); under ``--all-or-nothing``
    none of the `acting` hosts is touched: each gets a ``skipped`` outcome (for `aegir.fleet.each`'s
    ``settled``), and the line says that instead. Returns those outcomes ({} when going on).
    """
    bad = [o for o in plans if not o.ok]
    if not bad or not acting:
        return {}
    left_out = ", ".join(f"{o.host.name} ({o.kind})" for o in bad)
    names = ", ".join(h.name for h in acting)
    if all_or_nothing:
        say(f"aegir: --all-or-nothing: {left_out} could not be planned, so nothing is done on {names}", err=True)
        why = f"not attempted: --all-or-nothing and {', '.join(o.host.name for o in bad)} could not be planned"
        return {h.name: Outcome(h, error=why, kind="skipped") for h in acting}
    then = ("the roll counts it as a failed host" if len(bad) == 1 else "the roll counts them as failed hosts"
            ) if roll is not None else f"going on with {names}"
    say(f"aegir: left out: {left_out}; {then} (--all-or-nothing: act on none)", err=True)
    return {}


def confirm(question: str, *, yes: bool, label: str, verb: str, refused: str = "nothing done") -> None:
    """Ask `question` at the terminal before a destructive action; ``--yes`` skips it.

    Without ``--yes``, a stdin that is not a terminal refuses (`RefusedError`:
    "LABEL: stdin is not a terminal; pass --yes to VERB without a prompt"); any
    answer but y/yes refuses with `refused` (`aegir.errors.Declined`, exit 1).
    """
    from aegir.errors import Declined

    if yes:
        return
    if not sys.stdin.isatty():
        raise RefusedError(f"{label}: stdin is not a terminal; pass --yes to {verb} without a prompt")
    if ask(f"{question} [y/N] ").strip().lower() not in ("y", "yes"):
        raise Declined(refused)
