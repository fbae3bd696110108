"""Update: review an `apt upgrade` before it restarts Docker, tell users, then apply it safely.

The runbook's order: ``inv update.review`` (what restarts Docker or a crucial
daemon, what needs a reboot, what is a security fix), ``inv update.announce``
(users are told, per service, what to expect), ``inv update.apply`` (only
the reviewed package set, non-interactive, checked afterwards).
"""

from __future__ import annotations

import getpass
import socket
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from invoke import Collection, Context, Exit

from aegir.errors import AegirError, UsageError
from aegir.report import FORMAT_HELP, check_format, emit, say
from aegir.tasks.base import ROLLING_HELP, act, finish, inventory, is_dry, targets, task

if TYPE_CHECKING:  # pragma: no cover - the area's code is imported by the task that runs (inv --list stays quick)
    from aegir.inventory import Host
    from aegir.update.settings import UpdateConfig


def _configs(c: Context) -> tuple[dict[str, UpdateConfig], tuple[Host, ...]]:
    """Each target host's validated ``update:`` section (inventory errors exit 2), and the targets."""
    from aegir.update import settings

    inv, hosts = inventory(c), targets(c)
    return {h.name: settings.for_host(inv, h) for h in hosts}, tuple(hosts)


def _operator() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


@task(help={"refresh": "Run `apt-get update` first.", "dist": "Review `dist-upgrade` instead of `upgrade`.",
            "all": "List every package (default: what needs a decision, then a count per class).",
            "format": FORMAT_HELP})
def review(c: Context, refresh: bool = False, dist: bool = False, all_: bool = False, format: str = "table") -> None:
    """Review what `apt upgrade` would restart (Docker, crucial daemons), and why.

    It leads with the running processes the upgrade leaves on old code (those
    mapping a file it replaces, e.g. a library: Docker's daemons and crucial
    units make it risky) and whether needrestart restarts them by itself.
    The review is recorded on each host (/var/lib/aegir/update-review.json) for
    update.apply, which compares the stale processes it finds with it, except
    under the program's --dry (which also skips --refresh).
    Exit 0: nothing risky, 1: an upgrade restarts Docker or a crucial unit or
    leaves one on old code, 2: a host could not be reviewed.
    """
    from aegir.update import steps
    from aegir.update.report import DRY_REFRESH, review_exit

    fmt = check_format(format)
    configs, hosts = _configs(c)
    dry = is_dry(c)
    if refresh and dry:
        say(DRY_REFRESH, err=True)
    step = steps.Review(configs, dist=dist, now=time.time(), by=_operator(), every=all_)
    ran = steps.review(c, hosts, step, refresh=refresh, dry=dry, fmt=fmt)
    shown = step.render(ran)
    emit(fmt, data=shown.data, text=shown.text)
    code = review_exit(ran)
    if code:
        raise Exit(code=code)


@task(help={"message": "What to tell users (required).", "when": "When the update happens, as users should read it.",
            "dry": "Print the announcement; send and record nothing.", "format": FORMAT_HELP})
def announce(c: Context, message: str = "", when: str = "", dry: bool = False, format: str = "table") -> None:
    """Tell users what the reviewed update will interrupt (the configured notifier)."""
    from aegir.action import run
    from aegir.update.steps import Announce

    fmt = check_format(format)
    if not message.strip():
        raise UsageError("update.announce: --message is required: what to tell users")
    configs, hosts = _configs(c)
    step = Announce({h: cfg.notifier for h, cfg in configs.items()}, message=message, when=when, now=time.time())
    ran = run(c, step, hosts, dry=is_dry(c, dry), fmt=fmt)  # never rolls: base.act would take a group's rolling:
    finish(c, fmt, step.render(ran), ran.outcomes)


@task(iterable=["hold"],
      help={"yes": "Do not ask for confirmation.", "hold": "Keep this package at its version (repeatable).",
            "force": "Apply a risky upgrade that was not announced.", "dry": "Check and show the plan; change nothing.",
            "format": FORMAT_HELP, **ROLLING_HELP})
def apply(c: Context, yes: bool = False, hold: Sequence[str] | None = None, force: bool = False, dry: bool = False,
          format: str = "table", serial: str | None = None, keep_going: bool = False) -> None:
    """Install exactly the reviewed versions, then check Docker and the services.

    Non-interactive, conffiles kept. Installs each reviewed `name=version` and
    removes each reviewed removal, nothing else: apt is stopped before dpkg runs
    if it would do more, and dpkg's state is compared with the review afterwards
    (a difference: exit 1). Needs a review less than an hour old whose versions
    apt can still install alone; what changed in the package lists since then is
    said and left for the next review. A risky upgrade also needs
    `update.announce` (or --force). The transcript stays on the host, under
    /var/log/aegir.
    """
    from aegir.update.apt import check_package
    from aegir.update.steps import Apply

    try:
        holds = tuple(check_package(p) for h in (hold or []) for p in h.split(",") if p)
    except AegirError as exc:
        raise UsageError(f"update.apply --hold: {exc.message}") from None
    _, hosts = _configs(c)
    act(c, Apply(hold=holds, force=force), fmt=format, dry=dry, yes=yes, serial=serial, keep_going=keep_going,
        hosts=hosts)


ns = Collection("update")
ns.add_task(review)
ns.add_task(announce)
ns.add_task(apply)
