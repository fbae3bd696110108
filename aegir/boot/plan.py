"""The boot runbook as pure plans: what each start-up step would do, from facts.

After a reboot an operator unlocks the LUKS volume, mounts /srv, checks it,
starts Docker, then looks at the Compose projects (core first). Each step here
is a pure function of the facts read from the host (`aegir.boot.facts`) and
of the inventory entry: it says "already so" (nothing to do), names the one
command that would do it, or refuses with the reason and the way forward.
The tasks (`aegir.tasks.boot`) read the facts, show the plan, stop under
``--dry``, act, and check again.

Also here: the systemd drop-in `boot.guard` installs so that Docker cannot
start before /srv is mounted, and its checks.
"""

from __future__ import annotations

import configparser
import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aegir.boot import MIN_FREE_PERCENT
from aegir.boot.facts import DAEMON_JSON, DataRoot, Listing, LuksMapping, Mount, luks_open_cmd, luks_test_cmd
from aegir.errors import AegirError, RefusedError
from aegir.inventory import Host
from aegir.layout import SRV_FOLDERS
from aegir.report import Result, human
from aegir.sh import Cmd, shell

#: The runbook's order.
STEPS = ("unlock", "mount", "check", "docker", "status")
#: Step states. ``ok``: already so, nothing done; ``done``: changed now;
#: ``skipped``: does not apply to this host; ``would``: --dry; ``failed``: stop here.
DONE, OK, SKIPPED, WOULD, FAILED = Result.DONE, Result.OK, Result.SKIPPED, Result.WOULD, Result.FAILED
#: Below `MIN_FREE_PERCENT` of free space on /srv, `boot.check` reports a problem.


@dataclass(frozen=True)
class StepResult:
    """What one boot step did (or would do) on one host."""

    step: str
    state: str
    detail: str
    commands: tuple[str, ...] = ()  # command lines run or planned; never a secret
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True unless the step failed: the next step may run."""
        return self.state != FAILED


@dataclass(frozen=True)
class StepPlan:
    """What one step (unlock, mount, docker) will do, decided from facts alone.

    `action` is ``already`` (nothing to do), ``skip`` (unlock without LUKS in the
    inventory), or what the step runs: ``open`` or ``test`` (--test-passphrase)
    for unlock, ``mount``, ``start`` for docker; `command` is the one it runs
    (unlock's passphrase is not in it: it is typed at the terminal and sent on stdin).
    """

    action: str
    detail: str
    command: Cmd | None = None
    warnings: tuple[str, ...] = ()


# --------------------------------------------------------------------------- unlock


def mapper_path(host: Host) -> str:
    """``/dev/mapper/<name>``: where the opened volume appears."""
    return f"/dev/mapper/{host.luks_name}"


def plan_unlock(host: Host, is_luks: bool | None, mapping: LuksMapping | None, *, test: bool = False) -> StepPlan:
    """Decide the unlock step from ``cryptsetup isLuks`` and ``cryptsetup status``.

    `mapping` may be None under `test` (checking a passphrase does not depend
    on the mapping, and needs no device-mapper).
    """
    device = host.luks_device
    if device is None:
        return StepPlan("skip", "no LUKS device in the inventory (luks.device): nothing to unlock")
    if not is_luks:
        raise RefusedError(f"{device} is not a LUKS device (cryptsetup isLuks says no): "
                           "check luks.device in the inventory", host=host.name)
    if test:
        return StepPlan("test", f"check the passphrase of {device}; activate nothing", luks_test_cmd(device))
    if mapping is not None and mapping.active:
        warnings: tuple[str, ...] = ()
        if mapping.device and mapping.device != device:
            warnings = (f"mapping {host.luks_name} is open on {mapping.device}, "
                        f"the inventory says {device}",)
        return StepPlan("already", f"{mapper_path(host)} is already open ({mapping.device or device})",
                        warnings=warnings)
    return StepPlan("open", f"open {device} as {mapper_path(host)}", luks_open_cmd(device, host.luks_name))


# --------------------------------------------------------------------------- mount


@dataclass(frozen=True)
class SrvFacts:
    """Everything the mount, check and docker steps read about /srv."""

    mounted: Mount | None  # what is mounted on /srv now
    fstab: Mount | None  # what `mount /srv` would mount
    listing: Listing  # `ls /srv`
    data_root: DataRoot  # Docker's data-root (running daemon, or daemon.json)
    loops: Mapping[str, str] = field(default_factory=dict)  # loop device -> backing file
    mapping: LuksMapping | None = None  # cryptsetup status, when the inventory has luks


def plan_mount(host: Host, facts: SrvFacts) -> StepPlan:
    """`mount /srv` through fstab, or the opened LUKS mapping; refuse when it cannot work."""
    srv = host.srv
    if facts.mounted is not None:
        return StepPlan("already", f"{srv} is already mounted ({describe_mount(facts.mounted)})")
    if host.luks_device and not (facts.mapping and facts.mapping.active):
        raise RefusedError(f"{mapper_path(host)} is not open, so {srv} cannot be mounted: "
                           "run boot.unlock first", host=host.name)
    if not facts.listing.exists:
        raise RefusedError(f"the mount point {srv} does not exist", host=host.name)
    warnings: tuple[str, ...] = ()
    if facts.listing.entries:
        warnings = (f"{srv} already holds {facts.listing.entries} entries on the root disk "
                    "(written while it was not mounted?); the mount will hide them",)
    if facts.fstab is not None:
        return StepPlan("mount", f"mount {srv} from /etc/fstab ({facts.fstab.source})",
                        Cmd(("mount", srv)), warnings)
    if host.luks_device:
        return StepPlan("mount", f"mount {mapper_path(host)} on {srv}",
                        Cmd(("mount", mapper_path(host), srv)), warnings)
    raise RefusedError(f"nothing says what to mount on {srv}: no {srv} line in /etc/fstab "
                       "and no luks device in the inventory", host=host.name)


def describe_mount(m: Mount) -> str:
    return f"{m.source}, {m.fstype}" if m.fstype else m.source


# --------------------------------------------------------------------------- check


@dataclass(frozen=True)
class CheckItem:
    """One line of `boot.check`: ``ok``, ``warning``, ``problem`` or ``skipped`` (not checkable)."""

    name: str
    status: str
    detail: str


def expected_source(host: Host, fstab: Mount | None) -> str | None:
    """The device /srv must be mounted from: the LUKS mapping, else the fstab source."""
    if host.luks_device:
        return mapper_path(host)
    return fstab.source if fstab else None


def is_expected_source(mounted: Mount, expected: str | None, fstab: Mount | None,
                       loops: Mapping[str, str]) -> bool:
    """Does the mounted source match? Handles ``UUID=``/``LABEL=`` and loop-mounted images."""
    if expected is None or mounted.source == expected:
        return True
    tag, _, value = expected.partition("=")
    if tag == "UUID" and value:
        return mounted.uuid == value
    if tag == "LABEL" and value:
        return mounted.label == value
    if fstab is not None and fstab.is_loop and mounted.source in loops:
        return loops[mounted.source] == expected
    if fstab is not None and "bind" in fstab.options and mounted.source.endswith("]"):
        # findmnt shows a bind mount as DEVICE[PATH], PATH being within that device's filesystem
        inner = mounted.source[mounted.source.rfind("[") + 1:-1]
        return bool(inner) and (expected == inner or expected.endswith(inner if inner.startswith("/") else "/" + inner))
    return False


def is_under(path: str, root: str) -> bool:
    """``is_under("/srv/docker", "/srv")``; path arithmetic only, no symlinks."""
    path, root = posixpath.normpath(path), posixpath.normpath(root)
    return path == root or path.startswith(root.rstrip("/") + "/")


def check_items(host: Host, facts: SrvFacts, min_free: float = MIN_FREE_PERCENT) -> tuple[CheckItem, ...]:
    """The check table: mount point and device, the six folders, Docker's data-root, free space."""
    srv = host.srv
    m = facts.mounted
    expected = expected_source(host, facts.fstab)
    if m is None:
        mount = CheckItem("mount", "problem", f"{srv} is not a mount point (run boot.mount)")
    elif not is_expected_source(m, expected, facts.fstab, facts.loops):
        shown = f"{m.source} ({facts.loops[m.source]})" if m.source in facts.loops else m.source
        mount = CheckItem("mount", "problem", f"{srv} is mounted from {shown}, expected {expected}")
    else:
        where = f" = {facts.loops[m.source]}" if m.source in facts.loops else ""
        mount = CheckItem("mount", "ok", f"{srv} is mounted from {m.source}{where} ({m.fstype})")

    if m is None:
        folders = CheckItem("folders", "skipped", f"{srv} is not mounted")
    elif missing := facts.listing.missing(SRV_FOLDERS):
        folders = CheckItem("folders", "problem", f"missing in {srv}: {' '.join(missing)}")
    else:
        folders = CheckItem("folders", "ok", " ".join(SRV_FOLDERS))

    root = facts.data_root
    docker_dir = host.srv_path("docker")
    if root.path is None:
        data_root = CheckItem("data-root", "warning", f"not known until Docker runs (no data-root in "
                              f"{root.source if root.source != 'unknown' else '/etc/docker/daemon.json'}); "
                              "boot.docker refuses to start it unless --unknown-data-root")
    elif not is_under(root.path, srv):
        data_root = CheckItem("data-root", "problem", f"{root.path} ({root.source}) is not on {srv}: "
                              "Docker would write application data to the root disk")
    elif root.running and m is None:
        data_root = CheckItem("data-root", "problem", f"Docker is running on {root.path} while {srv} is "
                              "NOT mounted: it is writing to the root disk; stop Docker, then boot.mount")
    else:
        note = "" if posixpath.normpath(root.path) == docker_dir else f" (the runbook says {docker_dir})"
        data_root = CheckItem("data-root", "ok", f"{root.path} ({root.source}){note}")

    if m is None or m.size is None or m.avail is None:
        free = CheckItem("free", "skipped", f"{srv} is not mounted" if m is None else "size unknown")
    else:
        pct = 100.0 * m.avail / m.size if m.size else 0.0
        status = "ok" if pct >= min_free else "problem"
        free = CheckItem("free", status, f"{human(m.avail)} free of {human(m.size)} ({pct:.0f}%"
                         + (f", below {min_free:g}%)" if status == "problem" else ")"))
    return (mount, folders, data_root, free)


def blocking(items: Iterable[CheckItem]) -> list[CheckItem]:
    """The items that stop the boot: problems, and what could not be checked."""
    return [i for i in items if i.status in ("problem", "skipped")]


# --------------------------------------------------------------------------- docker


#: How ``boot.docker`` and ``boot.all`` spell the override of an unknown data-root.
UNKNOWN_DATA_ROOT_FLAG = "--unknown-data-root"


def plan_docker(host: Host, items: Sequence[CheckItem], data_root: DataRoot, *, timeout: float = 120,
                unknown_data_root: bool = False) -> StepPlan:
    """Start Docker only when /srv is mounted and checked and its data-root is known to be on /srv;
    refuse otherwise, saying why.

    A stopped Docker whose data-root cannot be read (no ``data-root`` in
    daemon.json: Docker's default is /var/lib/docker, on the root disk) is
    refused unless `unknown_data_root` (``--unknown-data-root``): then it is
    started and its data-root checked once it answers (`check_started`).
    """
    if data_root.running:
        bad = [i for i in items if i.name == "data-root" and i.status == "problem"]
        if bad:
            raise RefusedError(f"Docker is already running, but: {bad[0].detail}", host=host.name)
        return StepPlan("already", f"Docker is already running (data-root {data_root.path})")
    stop = blocking(items)
    if stop:
        reasons = "; ".join(f"{i.name}: {i.detail}" for i in stop)
        raise RefusedError(
            f"not starting Docker: {reasons}. Starting it now would write application data "
            f"to the unencrypted root disk; run boot.mount and boot.check first", host=host.name)
    if data_root.path is None and not unknown_data_root:
        raise RefusedError(
            f"not starting Docker: its data-root cannot be shown to be on {host.srv} before it runs (no "
            f"data-root in {DAEMON_JSON}, and Docker's default /var/lib/docker is on the root disk); set "
            f"\"data-root\": \"{host.srv_path('docker')}\" there, or pass {UNKNOWN_DATA_ROOT_FLAG} to start it "
            "and check its data-root once it answers", host=host.name)
    return StepPlan("start", f"start Docker ({' '.join(host.docker_start)})",
                    Cmd(tuple(host.docker_start), timeout=timeout))


def check_started(host: Host, data_root: DataRoot) -> None:
    """After a start: the daemon's own data-root must be on /srv, else say so loudly."""
    if data_root.path is None or not is_under(data_root.path, host.srv):
        raise AegirError(f"Docker started with data-root {data_root.path or '?'}, NOT on {host.srv}: "
                         "it is writing application data to the root disk; stop it now and fix "
                         "its data-root (/etc/docker/daemon.json)", host=host.name)


# --------------------------------------------------------------------------- guard

GUARD_FILE = "aegir-srv.conf"
GUARD_UNITS = ("docker.service", "docker.socket")
_VERIFY_LINE = re.compile(r"([\w.@-]+\.d/" + re.escape(GUARD_FILE) + r":\d+:.*)$")
UNIT_DIR = "etc/systemd/system"


def guard_dropin(srv: str) -> str:
    """The drop-in that makes systemd refuse to start Docker before `srv` is mounted."""
    return (
        "# Installed by aegir (boot.guard): Docker must not start before the encrypted\n"
        f"# data volume is mounted on {srv}, or it would write application data to the\n"
        "# unencrypted root disk. Start it with `inv boot.docker` once /srv is checked.\n"
        "[Unit]\n"
        f"AssertPathIsMountPoint={srv}\n"
    )


def guard_paths(root: str = "/") -> tuple[tuple[str, str], ...]:
    """(unit, drop-in path) for docker.service and docker.socket under `root`."""
    base = posixpath.join(root, UNIT_DIR)
    return tuple((u, posixpath.join(base, f"{u}.d", GUARD_FILE)) for u in GUARD_UNITS)


@dataclass(frozen=True)
class GuardFile:
    """One drop-in to write: ``install`` (absent), ``replace`` (differs) or ``already`` (identical)."""

    unit: str
    path: str
    action: str


def plan_guard(paths: Sequence[tuple[str, str]], current: Mapping[str, str | None], wanted: str) -> tuple[GuardFile, ...]:
    """Compare each drop-in on the host (None: absent) with `wanted`."""
    out = []
    for unit, path in paths:
        have = current.get(path)
        action = "install" if have is None else "already" if have == wanted else "replace"
        out.append(GuardFile(unit, path, action))
    return tuple(out)


_VERIFY_SCRIPT = """\
command -v systemd-analyze >/dev/null 2>&1 || { echo "systemd-analyze: not installed" >&2; exit 127; }
d=$(mktemp -d) || exit 1
trap 'rm -rf "$d"' EXIT
printf '[Unit]\\nDescription=aegir guard check\\n[Service]\\nExecStart=/bin/true\\n' > "$d/docker.service"
printf '[Unit]\\nDescription=aegir guard check\\n[Socket]\\nListenStream=%s\\n' "$d/docker.sock" > "$d/docker.socket"
mkdir "$d/docker.service.d" "$d/docker.socket.d"
cp -- "$1" "$d/docker.service.d/aegir-srv.conf"
cp -- "$2" "$d/docker.socket.d/aegir-srv.conf"
systemd-analyze verify --man=no "$d/docker.service" "$d/docker.socket"
"""


def verify_cmd(service_dropin: str, socket_dropin: str) -> Cmd:
    """``systemd-analyze verify`` of the two drop-ins, on stand-in units in a scratch folder.

    Stand-ins keep the verdict about the drop-ins alone (the host's own
    docker.service may have unrelated warnings) and work for any ``--root``.
    Exit 127: systemd-analyze is not installed.
    """
    return shell(_VERIFY_SCRIPT, service_dropin, socket_dropin)


def parse_unit(text: str) -> configparser.RawConfigParser:
    """Read a systemd unit file (sections, ``Key=value``, ``#``/``;`` comments); raise on bad syntax."""
    parser = configparser.RawConfigParser(strict=False, delimiters=("=",), comment_prefixes=("#", ";"),
                                          empty_lines_in_values=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    try:
        parser.read_string(text)
    except configparser.Error as exc:
        raise AegirError(f"not a unit file: {str(exc).splitlines()[0]}") from None
    return parser


def guard_problems(text: str, srv: str) -> tuple[str, ...]:
    """What is wrong with a drop-in's text, parsed as a unit file (empty: it guards `srv`)."""
    try:
        unit = parse_unit(text)
    except AegirError as exc:
        return (str(exc),)
    if not unit.has_section("Unit"):
        return ("no [Unit] section",)
    value = unit.get("Unit", "AssertPathIsMountPoint", fallback=None)
    if value is None:
        return ("[Unit] has no AssertPathIsMountPoint=",)
    if value.strip() != srv:
        return (f"AssertPathIsMountPoint={value.strip()}, expected {srv}",)
    return ()


def verify_problems(stderr: str) -> tuple[str, ...]:
    """The lines of ``systemd-analyze verify`` about a guard drop-in, as ``unit.d/file:line: message``.

    systemd-analyze exits 0 on an unknown key or a relative path (it ignores
    the setting), so the lines are the verdict, not the exit code.
    """
    found = (_VERIFY_LINE.search(line) for line in stderr.splitlines())
    return tuple(dict.fromkeys(m[1] for m in found if m))


# --------------------------------------------------------------------------- verdict


def verdict(host: str, results: Sequence[StepResult], error: tuple[str, str] | None = None) -> str:
    """One line per host for `boot.all`: up (and what changed), would, or where it stopped.

    `error` is (step, message) when a step raised instead of returning.
    """
    failed = next((r for r in results if r.state == FAILED), None)
    if error is not None:
        return f"{host}: STOPPED at {error[0]}: {error[1]}"
    if failed is not None:
        return f"{host}: STOPPED at {failed.step}: {failed.detail}"
    done = [r.detail for r in results if r.state == DONE]
    would = [r.step for r in results if r.state == WOULD]
    if would:
        return f"{host}: would run {', '.join(would)} (dry run: nothing changed)"
    if not done:
        return f"{host}: up, nothing to do (everything was already up)"
    return f"{host}: up; " + "; ".join(done)


# --------------------------------------------------------------------------- what the steps return


@dataclass(frozen=True)
class Planned:
    """One step's plan on one host: `row`, what its table row says now (``would`` with the commands when
    `todo`; else ok, skipped, or failed for a check that found a problem), and what `act` needs."""

    row: StepResult
    todo: bool = False
    work: Any = None

    @property
    def step(self) -> str:
        return self.row.step


@dataclass(frozen=True)
class HostBoot:
    """What a walk did on one host: its steps' rows, the step that raised (if one did), each step's plan work."""

    host: Host
    steps: tuple[StepResult, ...]
    failed_at: tuple[str, str] | None = None  # (step, message) when a step raised instead of returning
    raised: str = "failed"  # that step's outcome kind (failed, unreachable, bug...)
    works: tuple[Any, ...] = ()  # each step's plan work, in order (check items, Compose status...)

    @property
    def up(self) -> bool:
        return self.failed_at is None and all(r.ok for r in self.steps)

    @property
    def kind(self) -> str:
        """ok, or how the host failed (a step's row FAILED: ``failed``)."""
        return self.raised if self.failed_at else "ok" if self.up else "failed"

    @property
    def error(self) -> str | None:
        """Why the host stopped, or None."""
        if self.failed_at:
            return self.failed_at[1]
        bad = next((r for r in self.steps if not r.ok), None)
        return f"{bad.step}: {bad.detail}" if bad else None

    @property
    def verdict(self) -> str:
        return verdict(self.host.name, self.steps, self.failed_at)
