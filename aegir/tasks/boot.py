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
from typing import TYPE_CHECKING, Any

from invoke import Collection, Context

from aegir.boot import DOCKER_TIMEOUT, MIN_FREE_PERCENT
from aegir.errors import AegirError
from aegir.report import FORMAT_HELP, check_format
from aegir.tasks.base import finish, is_dry, targets, task
from aegir.tasks.flags import ABS_PATH, PERCENT, SECONDS

DRY_HELP = "Show what would be done (facts are still read); change nothing."
MIN_FREE_HELP = f"Free space /srv must keep, in percent (default {MIN_FREE_PERCENT:g})."
UNKNOWN_ROOT_HELP = ("Start Docker even when its data-root cannot be read before it runs (no data-root in "
                     "/etc/docker/daemon.json); it is checked once the daemon answers.")
TIMEOUT_HELP = f"Seconds to wait for the Docker daemon to answer after starting it (default {DOCKER_TIMEOUT})."
if TYPE_CHECKING:  # pragma: no cover - the area's code is imported by the task that runs (inv --list stays quick)
    from aegir.boot.steps import Options

UNLOCK_HELP = {
    "same_passphrase": "Ask the passphrase once and try it on every host (default: ask once per host).",
    "passphrase_stdin": "Read passphrases from standard input, one line per try, instead of the terminal.",
    "test_passphrase": "Only check the passphrase (cryptsetup open --test-passphrase); open nothing.",
}

# --------------------------------------------------------------------------- the one body of every boot task


def _walk(c: Context, task_name: str, steps: Sequence[str], fmt: str, dry: bool | None,
          opts: Options | None = None, **extra: Any) -> None:
    """Walk `steps` (`aegir.boot.steps.walk`) on the targets; print the report; exit 1 when a host is not up.

    `dry` None: a step that only reads (check, status), whose JSON says ``"dry": null``."""
    from aegir.boot.report import boot_report
    from aegir.boot.steps import Options, walk

    fmt = check_format(fmt)
    acting = None if dry is None else is_dry(c, dry)
    boots = walk(c, targets(c), steps, opts or Options(), dry=bool(acting), fmt=fmt)
    finish(c, fmt, boot_report(task_name, boots, steps, dry=acting, **extra))


def _prompter(same_passphrase: bool, passphrase_stdin: bool) -> Any:
    from aegir.boot.secrets import Prompter

    return Prompter(same=same_passphrase, stream=sys.stdin if passphrase_stdin else None)


# --------------------------------------------------------------------------- tasks


@task(help={"format": FORMAT_HELP, "dry": DRY_HELP, **UNLOCK_HELP})
def unlock(c: Context, format: str = "table", dry: bool = False, same_passphrase: bool = False,
           passphrase_stdin: bool = False, test_passphrase: bool = False) -> None:
    """Open each host's LUKS volume with the passphrase typed at the terminal.

    Three tries per host; --passphrase-stdin reads them from standard input.
    """
    from aegir.boot.steps import Options

    _walk(c, "boot.unlock", ["unlock"], format, dry,
          Options(test=test_passphrase, prompter=_prompter(same_passphrase, passphrase_stdin)))


@task(help={"format": FORMAT_HELP, "dry": DRY_HELP})
def mount(c: Context, format: str = "table", dry: bool = False) -> None:
    """Mount /srv (from /etc/fstab or the opened LUKS mapping) unless it already is.

    The plan shows first.
    """
    _walk(c, "boot.mount", ["mount"], format, dry)


@task(help={"format": FORMAT_HELP, "min_free": MIN_FREE_HELP}, kinds={"min_free": PERCENT})
def check(c: Context, format: str = "table", min_free: int = MIN_FREE_PERCENT) -> None:
    """Check /srv: its device, its folders, Docker's data-root, the free space."""
    from aegir.boot.steps import Options

    _walk(c, "boot.check", ["check"], format, None, Options(min_free=float(min_free)))


@task(help={"format": FORMAT_HELP, "dry": DRY_HELP, "min_free": MIN_FREE_HELP, "timeout": TIMEOUT_HELP,
            "unknown_data_root": UNKNOWN_ROOT_HELP}, kinds={"min_free": PERCENT, "timeout": SECONDS})
def docker(c: Context, format: str = "table", dry: bool = False, min_free: int = MIN_FREE_PERCENT,
           timeout: int = DOCKER_TIMEOUT, unknown_data_root: bool = False) -> None:
    """Start Docker once /srv is mounted and checked; wait until it answers.

    The plan shows first.
    """
    from aegir.boot.steps import Options

    _walk(c, "boot.docker", ["docker"], format, dry, Options(min_free=float(min_free), timeout=float(timeout),
                                                             unknown_data_root=unknown_data_root))


@task(help={"format": FORMAT_HELP})
def status(c: Context, format: str = "table") -> None:
    """Show every Compose project's state, core first, then apps and users."""
    _walk(c, "boot.status", ["status"], format, None)


@task(help={"format": FORMAT_HELP, "dry": DRY_HELP,
            "root": "Install under this root directory instead of / (an image, a chroot); no reload then."},
      kinds={"root": ABS_PATH})
def guard(c: Context, format: str = "table", dry: bool = False, root: str = "/") -> None:
    """Install a systemd drop-in so Docker cannot start before /srv is mounted."""
    from aegir.boot.plan import guard_dropin, guard_paths
    from aegir.boot.steps import Options

    if not root.startswith("/"):
        raise AegirError(f"--root must be an absolute path, not {root!r}")
    files = {h.srv: guard_dropin(h.srv) for h in targets(c)}
    paths = [p for _, p in guard_paths(root)]
    shown = "".join(f"\n\n--- {', '.join(paths)} (srv {srv}) ---\n{body}" for srv, body in files.items())
    _walk(c, "boot.guard", ["guard"], format, dry, Options(root=root), extra={"dropins": files, "paths": paths},
          text_after=shown.rstrip("\n") if is_dry(c, dry) else "")


@task(name="all", help={"format": FORMAT_HELP, "dry": DRY_HELP, "min_free": MIN_FREE_HELP,
                        "timeout": TIMEOUT_HELP, "same_passphrase": UNLOCK_HELP["same_passphrase"],
                        "passphrase_stdin": UNLOCK_HELP["passphrase_stdin"], "unknown_data_root": UNKNOWN_ROOT_HELP,
                        "start": "Then start what is not up: core first, then apps and users (step `start`)."},
      kinds={"min_free": PERCENT, "timeout": SECONDS})
def all_(c: Context, format: str = "table", dry: bool = False, same_passphrase: bool = False,
         passphrase_stdin: bool = False, min_free: int = MIN_FREE_PERCENT, timeout: int = DOCKER_TIMEOUT,
         unknown_data_root: bool = False, start: bool = False) -> None:
    """Run the start-up in order: unlock, mount, check, docker, [start,] status.

    A host stops at its first failure.
    """
    from aegir.boot.steps import ORDER, START, Options

    steps = [*ORDER[:-1], START, ORDER[-1]] if start else list(ORDER)
    _walk(c, "boot.all", steps, format, dry, Options(
        min_free=float(min_free), timeout=float(timeout), unknown_data_root=unknown_data_root,
        prompter=_prompter(same_passphrase, passphrase_stdin)))


ns = Collection("boot")
for _t in (unlock, mount, check, docker, status, all_, guard):
    ns.add_task(_t)
