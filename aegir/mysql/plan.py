"""The mysql actions as data: plans and results, and the pure decisions on them.

The checkpoint's steps themselves are computed by the on-host program
(`aegir.mysql.onhost.plan`, the same code that runs them); here are the plans
and results of `mysql.checkpoint` and `mysql.restore` around it, the question
asked before a checkpoint, the check after one, what `mysql.status` found, the
reading of ``--over`` and the WAL table's flags.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aegir import fields
from aegir.errors import AegirError
from aegir.mysql.facts import AppWal

# --------------------------------------------------------------------------- plans and results


@dataclass(frozen=True)
class CheckpointPlan:
    """One host's checkpoint as planned: the app, the id its run will have, and the program's own plan
    (``target``, ``mode``, ``service``, ``dependents``, ``login``, ``steps``: `aegir.mysql.onhost._plan_main`)."""

    path: str  # /srv/apps/shop
    run: str  # 20261201T010000Z: the archive entry's name
    program: Mapping[str, Any]

    @property
    def mode(self) -> str:
        return str(self.program.get("mode") or "cold")

    @property
    def service(self) -> str:
        return str(self.program.get("service"))

    @property
    def dependents(self) -> list[str]:
        return list(self.program.get("dependents") or ())

    @property
    def target(self) -> Mapping[str, Any]:
        return self.program.get("target") or {}

    @property
    def entry(self) -> str:
        """The archive entry the run writes."""
        return f"{self.target.get('archive')}/{self.run}"


def checkpoint_question(host: str, plan: CheckpointPlan) -> str:
    """What to ask before a checkpoint (a cold one stops the database)."""
    verb = "Stop" if plan.mode == "cold" else "Back up"
    return f"{verb} {plan.service} of {plan.path} on {host} and purge its archived binary logs?"


@dataclass(frozen=True)
class Checkpointed:
    """What a checkpoint did: whom it told, the program's result (None: it left none), and what the check
    after it found wrong (`problem`: the result says ok but its archive entry is not complete)."""

    announce: str
    result: Mapping[str, Any] | None
    problem: str | None = None

    @property
    def why_failed(self) -> str | None:
        """Why the host counts as failed, or None."""
        r = self.result or {}
        if self.problem:
            return self.problem
        if not r.get("ok"):
            at = f" at step {r['failed_step']}" if r.get("failed_step") else ""
            return f"checkpoint run {r.get('run')} failed{at}: {r.get('error')}"
        return None


def entry_problem(result: Mapping[str, Any] | None, entry: str, complete: bool) -> str | None:
    """The check after a run: a run that says ok must have left `entry` complete (its manifest written)."""
    if result and result.get("ok") and not complete:
        return f"the run says ok but {entry} has no MANIFEST.json: the checkpoint is not complete"
    return None


@dataclass(frozen=True)
class RestorePlan:
    """One host's restore as planned: the app, --until, and the program's restore plan (``at``, ``mode``,
    ``base``, ``into``, ``start``, ``chain``, ``sources``, ``service``, ``image``: `onhost.restore_plan`)."""

    path: str
    until: str | None
    program: Mapping[str, Any]


@dataclass(frozen=True)
class Restored:
    """What a restore did (the program's answer: ``at``, ``into``, ``replayed``) and what the check found."""

    result: Mapping[str, Any]
    problem: str | None = None


@dataclass(frozen=True)
class CheckpointStatus:
    """`mysql.status` of one app: its last (or current) run and that run's result (None: none yet)."""

    path: str
    run: str | None  # None: no checkpoint ran for this app
    result: Mapping[str, Any] | None
    running: bool = False


# --------------------------------------------------------------------------- mysql.wal


def parse_size(text: str, flag: str = "--over") -> int:
    """``--over 500M`` -> bytes (`aegir.fields.size`: K, M, G, T, P are powers of 1024)."""
    try:
        return fields.size(text)
    except fields.FieldError:
        raise AegirError(f"{flag} {text!r}: give a size such as 500M or 2G") from None


def over_limit(apps: Sequence[AppWal], limit: int | None) -> tuple[AppWal, ...]:
    """The apps whose WAL is larger than `limit` bytes (none when there is no limit)."""
    if limit is None:
        return ()
    return tuple(a for a in apps if (a.wal_bytes or 0) > limit)


def archive_over_limit(apps: Sequence[AppWal], limit: int | None) -> tuple[AppWal, ...]:
    """The apps whose checkpoint archive is larger than `limit` bytes (none when there is no limit)."""
    if limit is None:
        return ()
    return tuple(a for a in apps if a.archive is not None and (a.archive.bytes or 0) > limit)
