"""Boot: the hypervisor start-up runbook, one safe and resumable step at a time.

After a reboot: `boot.unlock` (the LUKS passphrase, typed at the terminal),
`boot.mount` (/srv), `boot.check` (mount point, folders, Docker's data-root,
free space), `boot.docker` (only on a mounted and checked /srv, with a data-root known to
be on it: ``--unknown-data-root`` when daemon.json does not say; where aegir
manages the firewall, a ruleset with no container published goes first), `boot.status`
(the Compose projects, core first), or `boot.all` for all of them in order
(`boot.all --start` also starts core, then apps, before the status),
a host stopping at its first failure. Every step says when there is nothing
to do, so running it again is safe. `boot.guard` installs a systemd drop-in
so that Docker cannot start before /srv is mounted, even outside aegir.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from invoke import Collection, Exit

from aegir.boot import DOCKER_TIMEOUT, MIN_FREE_PERCENT
from aegir.errors import AegirError
from aegir.report import FORMAT_HELP, check_format, emit
from aegir.tasks.base import EXIT_PROBLEM, exit_if_failed, is_dry, targets, task

DRY_HELP = "Show what would be done (facts are still read); change nothing."
MIN_FREE_HELP = f"Free space /srv must keep, in percent (default {MIN_FREE_PERCENT:g})."
UNKNOWN_ROOT_HELP = ("Start Docker even when its data-root cannot be read before it runs (no data-root in "
                     "/etc/docker/daemon.json); it is checked once the daemon answers.")
TIMEOUT_HELP = f"Seconds to wait for the Docker daemon to answer after starting it (default {DOCKER_TIMEOUT})."
if TYPE_CHECKING:  # pragma: no cover - the area's code is imported by the task that runs (inv --list stays quick)
    from aegir import fleet
    from aegir.boot.plan import StepResult

UNLOCK_HELP = {
    "same_passphrase": "Ask the passphrase once and try it on every host (default: ask once per host).",
    "passphrase_stdin": "Read passphrases from standard input, one line per try, instead of the terminal.",
    "test_passphrase": "Only check the passphrase (cryptsetup open --test-passphrase); open nothing.",
}

# --------------------------------------------------------------------------- facts


def exit_if_step_failed(outcomes: Sequence[fleet.Outcome[StepResult]]) -> None:
    exit_if_failed(outcomes, problems=any(o.value is not None and not o.value.ok for o in outcomes))


def _plan_then_act(c, fmt: str, step: str, dry: bool, **kw) -> None:
    """Show the step's plan for every host before acting (on stderr under --format json), then its result."""
    from aegir.boot.report import show_steps, step_table
    from aegir.boot.steps import run_planned, run_step

    hosts = targets(c)
    if is_dry(c, dry):
        outcomes, _ = run_step(c, step, hosts, act=False, **kw)
    else:
        def show(planned: Sequence[fleet.Outcome[StepResult]]) -> None:
            print(f"Plan:\n{step_table(planned, step)}\n", file=sys.stderr if fmt == "json" else sys.stdout,
                  flush=True)

        outcomes = run_planned(c, step, hosts, show=show, **kw)
    show_steps(fmt, outcomes, step)
    exit_if_step_failed(outcomes)


# --------------------------------------------------------------------------- tasks


@task(help={"format": FORMAT_HELP, "dry": DRY_HELP, **UNLOCK_HELP})
def unlock(c, format="table", dry=False, same_passphrase=False, passphrase_stdin=False, test_passphrase=False):
    """Open each host's LUKS volume with the passphrase typed at the terminal (three tries)."""
    from aegir.boot.report import show_steps
    from aegir.boot.secrets import Prompter
    from aegir.boot.steps import run_step

    fmt = check_format(format)
    prompter = Prompter(same=same_passphrase, stream=sys.stdin if passphrase_stdin else None)
    outcomes, _ = run_step(c, "unlock", targets(c), act=not is_dry(c, dry), test=test_passphrase, prompter=prompter)
    show_steps(fmt, outcomes, "unlock")
    exit_if_step_failed(outcomes)


@task(help={"format": FORMAT_HELP, "dry": DRY_HELP})
def mount(c, format="table", dry=False):
    """Mount /srv (from /etc/fstab, or the opened LUKS mapping) unless it already is; the plan shows first."""
    _plan_then_act(c, check_format(format), "mount", dry)


@task(help={"format": FORMAT_HELP, "min_free": MIN_FREE_HELP})
def check(c, format="table", min_free=MIN_FREE_PERCENT):
    """Check /srv: a mount point of the right device, its six folders, Docker's data-root, free space."""
    from aegir import fleet
    from aegir.boot.plan import blocking
    from aegir.boot.report import check_json, check_table
    from aegir.boot.steps import check_step

    fmt = check_format(format)
    outcomes = fleet.each(c, targets(c), lambda hc: check_step(hc, min_free=float(min_free)), label="boot.check")
    emit(fmt, data=check_json(outcomes), text=check_table(outcomes))
    exit_if_failed(outcomes, problems=any(o.value is not None and blocking(o.value) for o in outcomes))


@task(help={"format": FORMAT_HELP, "dry": DRY_HELP, "min_free": MIN_FREE_HELP, "timeout": TIMEOUT_HELP,
            "unknown_data_root": UNKNOWN_ROOT_HELP})
def docker(c, format="table", dry=False, min_free=MIN_FREE_PERCENT, timeout=DOCKER_TIMEOUT, unknown_data_root=False):
    """Start Docker, only if /srv is mounted and checked, and wait until it answers; the plan shows first."""
    _plan_then_act(c, check_format(format), "docker", dry, min_free=float(min_free), timeout=float(timeout),
                   unknown_data_root=unknown_data_root)


@task(help={"format": FORMAT_HELP})
def status(c, format="table"):
    """Show every Compose project's state, core first, then apps and users."""
    from aegir.boot.steps import run_step
    from aegir.compose.status import has_problems, render_status, status_json

    fmt = check_format(format)
    _, outcomes = run_step(c, "status", targets(c), act=False)
    emit(fmt, data=status_json(outcomes), text=render_status(outcomes))
    exit_if_failed(outcomes, problems=has_problems(outcomes))


@task(help={"format": FORMAT_HELP, "dry": DRY_HELP,
            "root": "Install under this root directory instead of / (an image, a chroot); no reload then."})
def guard(c, format="table", dry=False, root="/"):
    """Install a systemd drop-in so Docker cannot start before /srv is mounted."""
    from aegir import fleet
    from aegir.boot.plan import guard_dropin, guard_paths
    from aegir.boot.report import step_json, step_table
    from aegir.boot.steps import guard_step

    fmt = check_format(format)
    if not root.startswith("/"):
        raise AegirError(f"--root must be an absolute path, not {root!r}")
    act = not is_dry(c, dry)
    hosts = targets(c)
    outcomes = fleet.each(c, hosts, lambda hc: guard_step(hc, root=root, act=act), label="boot.guard")
    files = {h.srv: guard_dropin(h.srv) for h in hosts}
    text = step_table(outcomes, "guard")
    if not act:
        text += "".join(f"\n\n--- {', '.join(p for _, p in guard_paths(root))} (srv {srv}) ---\n{body}"
                        for srv, body in files.items())
    emit(fmt, data={"step": "guard", "hosts": step_json(outcomes), "dropins": files, "paths": [p for _, p in guard_paths(root)]},
         text=text.rstrip("\n"))
    exit_if_step_failed(outcomes)


@task(name="all", help={"format": FORMAT_HELP, "dry": DRY_HELP, "min_free": MIN_FREE_HELP,
                        "timeout": TIMEOUT_HELP, "same_passphrase": UNLOCK_HELP["same_passphrase"],
                        "passphrase_stdin": UNLOCK_HELP["passphrase_stdin"], "unknown_data_root": UNKNOWN_ROOT_HELP,
                        "start": "Then start what is not up: core first, then apps and users (step `start`)."})
def all_(c, format="table", dry=False, same_passphrase=False, passphrase_stdin=False,
         min_free=MIN_FREE_PERCENT, timeout=DOCKER_TIMEOUT, unknown_data_root=False, start=False):
    """Run the start-up in order: unlock, mount, check, docker, [start,] status; a host stops at its first failure."""
    from aegir.boot.report import all_json, render_all
    from aegir.boot.secrets import Prompter
    from aegir.boot.steps import run_all

    fmt = check_format(format)
    prompter = Prompter(same=same_passphrase, stream=sys.stdin if passphrase_stdin else None)
    boots, full = run_all(c, targets(c), act=not is_dry(c, dry), prompter=prompter, min_free=float(min_free),
                          timeout=float(timeout), unknown_data_root=unknown_data_root, start=start)
    emit(fmt, data=all_json(boots, full), text=render_all(boots, full))
    down = [b.host for b in boots if not b.up]
    if down:
        raise Exit(f"aegir: not up: {', '.join(down)}", code=EXIT_PROBLEM)


ns = Collection("boot")
for _t in (unlock, mount, check, docker, status, all_, guard):
    ns.add_task(_t)
