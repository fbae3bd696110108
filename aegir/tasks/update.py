"""Update: review an `apt upgrade` before it restarts Docker, tell users, then apply it safely.

The runbook's order: ``inv update.review`` (what restarts Docker or a crucial
daemon, what needs a reboot, what is a security fix), ``inv update.announce``
(users are told, per service, what to expect), ``inv update.apply`` (only
the reviewed package set, non-interactive, checked afterwards).
"""

from __future__ import annotations

import getpass
import socket
import sys
import time
from typing import TYPE_CHECKING

from invoke import Collection, Exit

from aegir.errors import AegirError
from aegir.report import FORMAT_HELP, check_format, emit, table
from aegir.tasks.base import ROLLING_HELP, confirm, exit_if_failed, inventory, is_dry, rolling, targets, task

if TYPE_CHECKING:  # pragma: no cover - the area's code is imported by the task that runs (inv --list stays quick)
    from aegir.update.config import UpdateConfig


def _configs(c) -> tuple[dict[str, UpdateConfig], tuple]:
    """The target hosts and each one's validated ``update:`` section (inventory errors exit 2)."""
    from aegir.update import config as update_config

    inv, hosts = inventory(c), targets(c)
    return {h.name: update_config.for_host(inv, h) for h in hosts}, tuple(hosts)


def _operator() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


@task(help={"refresh": "Run `apt-get update` first.", "dist": "Review `dist-upgrade` instead of `upgrade`.",
            "all": "List every package (default: what needs a decision, then a count per class).",
            "format": FORMAT_HELP})
def review(c, refresh=False, dist=False, all_=False, format="table"):
    """Review what `apt upgrade` would do: what restarts Docker or a crucial daemon, and why.

    The review is recorded on each host (/var/lib/aegir/update-review.json) for
    update.apply, except under the program's --dry (which also skips --refresh). Exit 0: nothing risky,
    1: an upgrade restarts Docker or a crucial unit, 2: a host could not be reviewed.
    """
    from aegir import fleet
    from aegir.update.report import EXIT_ERROR, render_review, review_exit, review_json
    from aegir.update.review import review_host

    fmt = check_format(format)
    try:
        configs, hosts = _configs(c)
    except AegirError as exc:
        raise Exit(f"aegir: {exc}", code=EXIT_ERROR) from None
    now, by, record = time.time(), _operator(), not is_dry(c)
    if refresh and not record:
        print("aegir: --dry: not running `apt-get update`; reviewing the package lists as they are", file=sys.stderr)
        refresh = False
    outcomes = fleet.each(c, hosts, lambda hc: review_host(hc, configs[hc.name], refresh=refresh, dist=dist,
                                                           by=by, now=now, record=record), label="update.review")
    emit(fmt, data=review_json(outcomes), text=render_review(outcomes, every=all_))
    code = review_exit(outcomes)
    if code:
        raise Exit(code=code)


@task(help={"message": "What to tell users (required).", "when": "When the update happens, as users should read it.",
            "dry": "Print the announcement; send and record nothing.", "format": FORMAT_HELP})
def announce(c, message="", when="", dry=False, format="table"):
    """Tell users what the reviewed update will interrupt, through the configured notifier."""
    from aegir import fleet
    from aegir.update.notify import announce_host

    fmt = check_format(format)
    if not message.strip():
        raise AegirError("update.announce: --message is required")
    configs, hosts = _configs(c)
    dry, now = is_dry(c, dry), time.time()
    outcomes = fleet.each(c, hosts, lambda hc: announce_host(hc, configs[hc.name].notifier, message=message,
                                                             when=when, dry=dry, now=now), label="update.announce")
    rows = [[o.host.name, o.value.notifier if o.value else None, o.value.response if o.value else o.status]
            for o in outcomes]
    texts = "\n".join(o.value.text for o in outcomes if o.value)
    emit(fmt, data={"hosts": [{"host": o.host.name, "status": o.kind, "error": o.error,
                               **({"text": o.value.text, "notifier": o.value.notifier, "response": o.value.response,
                                   "sent": o.value.sent, "interruptions": o.value.interruptions} if o.value else {})}
                              for o in outcomes]},
         text=f"{texts}\n{table(['HOST', 'NOTIFIER', 'RESULT'], rows)}")
    exit_if_failed(outcomes)


@task(iterable=["hold"], auto_shortflags=False,
      help={"yes": "Do not ask for confirmation.", "hold": "Keep this package at its version (repeatable).",
            "force": "Apply a risky upgrade that was not announced.", "dry": "Check and show the plan; change nothing.",
            "format": FORMAT_HELP, **ROLLING_HELP})
def apply(c, yes=False, hold=None, force=False, dry=False, format="table", serial=None, keep_going=False):
    """Install exactly the reviewed versions (non-interactive, conffiles kept), then check Docker and the services.

    Installs each reviewed `name=version` and removes each reviewed removal, nothing
    else: apt is stopped before dpkg runs if it would do more, and dpkg's state is
    compared with the review afterwards (a difference: exit 1). Needs a review less
    than an hour old whose versions apt can still install alone; what changed in the
    package lists since then is said and left for the next review. A risky upgrade
    also needs `update.announce` (or --force). The transcript stays on the host,
    under /var/log/aegir.
    """
    from aegir import fleet
    from aegir.update.apply import apply as apply_host
    from aegir.update.apply import plan as plan_host
    from aegir.update.apt import check_package
    from aegir.update.report import apply_json, plan_json, render_apply, render_plan

    fmt = check_format(format)
    holds = tuple(check_package(p) for h in (hold or []) for p in h.split(",") if p)
    _, hosts = _configs(c)
    roll = rolling(c, hosts, serial, keep_going)
    plans = fleet.each(c, hosts, lambda hc: plan_host(hc, hold=holds, force=force), label="update.apply")
    if fleet.failed(plans) or is_dry(c, dry):
        emit(fmt, data={"plan": plan_json(plans), "applied": False}, text=render_plan(plans))
        exit_if_failed(plans)
        return
    print(render_plan(plans), file=sys.stderr if fmt == "json" else sys.stdout)
    confirm(f"Upgrade {sum(len(p.value.upgrading) for p in plans)} packages on "
            f"{', '.join(o.host.name for o in plans)}?", yes=yes, label="update.apply", verb="upgrade",
            refused="nothing upgraded")
    by_host = {o.host.name: o.value for o in plans}
    outcomes = fleet.each(c, hosts, lambda hc: apply_host(hc, by_host[hc.name]), label="update.apply",
                          rolling=roll, fails=lambda r: "; ".join(r.problems) or None)
    emit(fmt, data={"plan": plan_json(plans), "applied": True, **apply_json(outcomes)}, text=render_apply(outcomes))
    exit_if_failed(outcomes, problems=any(o.value and o.value.problems for o in outcomes))


ns = Collection("update")
ns.add_task(review)
ns.add_task(announce)
ns.add_task(apply)
