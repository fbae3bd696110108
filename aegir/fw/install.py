"""The firewall watcher as a systemd service: is it installed, enabled, running; install it idempotently.

`probe_cmd` reads the unit file, ``systemctl is-enabled``, ``systemctl
is-active`` and whether systemd runs the host (``/run/systemd/system``, as
``sd_booted(3)`` decides) in one round trip; `plan` (pure) says which of
write, ``daemon-reload``, ``enable``, ``start``/``restart`` are needed; `install`
runs them and reads the state back. The unit is the one shipped in
``aegir/fw/examples/aegir-fw-watch.service``.

Where systemd is not running (a container, a chroot, the lab's hosts), the
unit can still be written and enabled (``systemctl enable`` works offline) but
not started: the result says so and is not ``ok``, since the watcher does not run.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from aegir.host import HostContext
from aegir.report import Result
from aegir.sh import Cmd, shell, write_file_cmd

UNIT = "aegir-fw-watch.service"
UNIT_PATH = f"/etc/systemd/system/{UNIT}"

_PROBE = """\
if [ -d /run/systemd/system ]; then echo booted=yes; else echo booted=no; fi
echo "enabled=$(systemctl is-enabled "$1" 2>/dev/null)"
echo "active=$(systemctl is-active "$1" 2>/dev/null)"
if [ -f "$2" ]; then echo file=yes; cat -- "$2"; else echo file=no; fi
"""


def unit_text() -> str:
    """The shipped unit file."""
    return resources.files("aegir.fw").joinpath("examples", UNIT).read_text(encoding="utf-8")


def probe_cmd(unit: str = UNIT, path: str = UNIT_PATH) -> Cmd:
    """One read-only command: systemd running?, is-enabled, is-active, the unit file's text."""
    return shell(_PROBE, unit, path)


@dataclass(frozen=True)
class UnitState:
    """What a host says of the watcher's unit."""

    booted: bool  # systemd runs this host (PID 1)
    enabled: str  # systemctl is-enabled: enabled, disabled, ... ("" when systemctl knows no such unit)
    active: str  # systemctl is-active: active, inactive, failed, ...
    text: str | None  # the unit file (None: absent)

    @property
    def running(self) -> bool:
        return self.active == "active"

    @property
    def summary(self) -> str:
        """``active (enabled)``, ``inactive (enabled)``, ``not installed``."""
        if self.text is None and not self.enabled:
            return "not installed"
        return f"{self.active or 'unknown'} ({self.enabled or 'unknown'})"


def parse_probe(stdout: str) -> UnitState:
    """`probe_cmd`'s output -> `UnitState` (`ValueError` when it is not that output)."""
    head = stdout.split("\n", 4)
    if len(head) < 4 or [h.split("=", 1)[0] for h in head[:4]] != ["booted", "enabled", "active", "file"]:
        raise ValueError(f"unexpected probe output: {stdout[:200]!r}")
    values = [h.split("=", 1)[1] for h in head[:4]]
    text = (head[4] if len(head) > 4 else "") if values[3] == "yes" else None
    return UnitState(values[0] == "yes", values[1].strip(), values[2].strip(), text)


@dataclass(frozen=True)
class InstallPlan:
    """The commands that bring a host to "unit written, enabled, running", each with what it does."""

    steps: tuple[tuple[str, Cmd], ...]
    cannot_start: str | None = None  # why the watcher cannot be started here, if it cannot

    @property
    def empty(self) -> bool:
        return not self.steps


def plan(state: UnitState, wanted: str) -> InstallPlan:
    """Pure: what to do from `state` so that the unit is `wanted`, enabled and (where systemd runs) running."""
    steps: list[tuple[str, Cmd]] = []
    changed = state.text != wanted
    if changed:
        steps.append((f"write {UNIT_PATH}", write_file_cmd(UNIT_PATH, wanted)))
        if state.booted:
            steps.append(("daemon-reload", Cmd.of("systemctl", "daemon-reload")))
    if state.enabled != "enabled":
        steps.append(("enable", Cmd.of("systemctl", "enable", UNIT)))
    if not state.booted:
        return InstallPlan(tuple(steps), "systemd is not running this host (no /run/systemd/system): "
                                         "enabled, the watcher starts at the next boot, not now")
    if not state.running:
        steps.append(("start", Cmd.of("systemctl", "start", UNIT)))
    elif changed:
        steps.append(("restart", Cmd.of("systemctl", "restart", UNIT)))
    return InstallPlan(tuple(steps))


@dataclass(frozen=True)
class Installed:
    """What `install` did (or would do) on one host, and the unit's state after it."""

    result: Result  # ok (nothing to do), done, would, failed (not running afterwards)
    did: tuple[str, ...]
    state: UnitState
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.result != Result.FAILED


def read_state(hc: HostContext) -> UnitState:
    return parse_probe(hc.run(probe_cmd()).stdout)


def install(hc: HostContext, *, act: bool, wanted: str | None = None) -> Installed:
    """Write, enable and start the watcher's unit on `hc` unless it already is; read it back after."""
    wanted = unit_text() if wanted is None else wanted
    before = read_state(hc)
    p = plan(before, wanted)
    names = tuple(name for name, _ in p.steps)
    if not act:
        return Installed(Result.WOULD if names else Result.OK, names, before, p.cannot_start)
    for _, cmd in p.steps:
        hc.run(cmd)
    after = read_state(hc) if names else before
    problems = []
    if after.text != wanted:
        problems.append(f"{UNIT_PATH} does not hold the unit after writing it")
    if after.enabled != "enabled":
        problems.append(f"systemctl is-enabled says {after.enabled or 'nothing'!r}")
    if not after.running:
        problems.append(p.cannot_start or f"systemctl is-active says {after.active or 'nothing'!r}")
    if problems:
        return Installed(Result.FAILED, names, after, "; ".join(problems))
    return Installed(Result.DONE if names else Result.OK, names, after)
