"""Which running processes an upgrade leaves on old code, foreseen before ``apt upgrade``, and who restarts them.

A library upgrade restarts nothing: dpkg replaces ``libssl.so.3`` and every
daemon that maps it (sshd, containerd, ...) keeps running the old copy until
it is restarted, by hand or by Debian's ``needrestart`` right after apt.

- `maps_cmd`: one script per host, run with the review's second round trip:
  the dpkg file lists of the upgraded packages (regular files only, under
  both spellings of a merged-/usr path) matched against every process's
  ``/proc/PID/maps`` on the host side (``grep -F``), so only matches come
  back; for the matching processes, their root, ``comm`` and ``cgroup`` (their
  unit). It also sends the files processes map that are already deleted
  (stale before the upgrade), so that the apply's comparison does not count
  them as misses. `parse_maps` keeps the processes whose root is the host's:
  a container's processes have their own root. (Mount namespaces would not
  tell them apart: systemd's sandboxed services have their own too.) The
  scan's own shell and the ancestors in its cgroup (its SSH session) are left
  out: they map the shell and sshd, and are gone by the time the upgrade runs.
- `needrestart_conf_cmd` / `parse_needrestart_conf`: whether needrestart is
  installed, whether apt runs it (a ``DPkg::Post-Invoke`` line in
  ``/etc/apt/apt.conf.d``) and its mode (``$nrconf{restart}`` in
  ``/etc/needrestart/needrestart.conf``, then ``conf.d/*.conf`` in order: the
  last one wins; ``i`` when none).
- `restart_outlook`: what that means for the stale units, and for Docker's
  containers (``live-restore``).
- `compare`: the prediction against the stale processes ``update.apply`` finds.

Tests: tests/unit/test_mapped.py (exact commands, recorded answers).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from aegir.sh import Cmd, shell
from aegir.update.apt import ALIASES, IGNORED_MAPS, SELF_SCRIPT, check_package

#: Where dpkg keeps each package's file list.
DPKG_INFO = "/var/lib/dpkg/info"
#: Commands that are Docker's engine: leaving one stale leaves Docker on old code.
DOCKER_COMMANDS = ("dockerd", "containerd", "docker-proxy", "runc")
DOCKER_COMMAND_PREFIXES = ("containerd-shim",)  # runc's users: the shims of running containers
DOCKER_ENGINE_UNITS = ("docker.service", "docker.socket", "containerd.service")
NEEDRESTART_CONF = "/etc/needrestart/needrestart.conf"
NEEDRESTART_CONF_D = "/etc/needrestart/conf.d"
APT_CONF_D = "/etc/apt/apt.conf.d"
NEEDRESTART_BIN = "/usr/sbin/needrestart"
#: needrestart's modes (``$nrconf{restart}``): list only, interactive, automatic.
MODES = {"l": "list only", "i": "interactive", "a": "automatic"}
DEFAULT_MODE = "i"

_SHORT = "|".join(s.strip("/") for s, _ in ALIASES)
_LONG = "|".join(ln.strip("/")[len("usr/"):] for _, ln in ALIASES)

_MAPS_SCRIPT = SELF_SCRIPT + r"""for p in $self; do printf 'S\t%s\n' "$p"; done
me=$(stat -Lc %d:%i /)
n=$#
for p in "$@"; do
  set -- "$@" "p=$p"
  for f in __INFO__/"$p".list __INFO__/"$p":*.list; do [ -f "$f" ] && set -- "$@" "$f"; done
done
shift "$n"
files=$(awk '
  { path[NR] = $0; pkg[NR] = p; d = $0; sub(/\/[^\/]*$/, "", d); dir[d] = 1 }
  END { for (i = 1; i <= NR; i++) { f = path[i]; if (f in dir || f == "/." || f == "") continue
          print f "\t" pkg[i]
          if (f ~ /^\/(__SHORT__)\//) print "/usr" f "\t" pkg[i]
          else if (f ~ /^\/usr\/(__LONG__)\//) print substr(f, 5) "\t" pkg[i] } }' "$@" </dev/null)
set -- /proc/[0-9]*/maps
printf 'N\t%s\n' "$#"
rows=$({ printf '%s\n' "$files" | awk -F '\t' 'NF { print "F\t" $0 }'
         { printf '%s\n' "$files" | awk -F '\t' 'NF { print $1 }'; echo ' (deleted)'; } | grep -sHF -f - "$@"
       } | awk -F '\t' '
  $1 == "F" { pk[$2] = ($2 in pk) ? pk[$2] "," $3 : $3; next }
  /^\/proc\/[0-9]+\/maps:/ {
    i = index($0, ":"); pid = substr($0, 7, i - 12); rest = substr($0, i + 1)
    if (!sub(/^[^ ]+ +[^ ]+ +[^ ]+ +[^ ]+ +[^ ]+ +/, "", rest)) next
    kind = "M"; if (rest ~ / \(deleted\)$/) { kind = "D"; rest = substr(rest, 1, length(rest) - 10) }
    key = kind SUBSEP pid SUBSEP rest; if (key in seen) next; seen[key] = 1
    if (kind == "M" && rest in pk) print "M\t" pid "\t" rest "\t" pk[rest]
    else if (kind == "D" && rest ~ /^\// && rest !~ /__IGNORED__/) print "D\t" pid "\t" rest }')
[ -n "$rows" ] && printf '%s\n' "$rows"
pids=$(printf '%s\n' "$rows" | awk -F '\t' '$1 == "M" && !s[$2]++ { print $2 }')
[ -n "$pids" ] || exit 0
printf 'ME\t%s\n' "$me"
set --; for p in $pids; do set -- "$@" "/proc/$p/root/"; done
stat -L --printf 'R\t%n\t%d:%i\n' "$@" 2>/dev/null
set --; for p in $pids; do set -- "$@" "/proc/$p/comm" "/proc/$p/cgroup"; done
grep -sH '' "$@"
exit 0
"""
MAPS_SCRIPT = (_MAPS_SCRIPT.replace("__INFO__", DPKG_INFO).replace("__SHORT__", _SHORT)
               .replace("__LONG__", _LONG).replace("__IGNORED__", IGNORED_MAPS))


def maps_cmd(packages: Iterable[str]) -> Cmd:
    """The processes of this host mapping files that upgrading `packages` replaces (one script, matches only)."""
    return shell(MAPS_SCRIPT, *(check_package(p) for p in packages))


@dataclass(frozen=True)
class Mapped:
    """A process of the host mapping a file an upgraded package replaces: the upgrade leaves it stale."""

    pid: int
    command: str
    unit: str | None
    file: str
    package: str

    @property
    def who(self) -> str:
        """``containerd.service``, or ``pid 42 (sleep)`` for a process outside any service."""
        return self.unit or f"pid {self.pid} ({self.command})"

    @property
    def docker(self) -> bool:
        """It is Docker's engine (dockerd, containerd, a shim running containers, or their units)."""
        return (self.unit in DOCKER_ENGINE_UNITS or self.command in DOCKER_COMMANDS
                or self.command.startswith(DOCKER_COMMAND_PREFIXES))


@dataclass(frozen=True)
class MapsScan:
    """What `maps_cmd` found: the mappings, the files already deleted under a process, how many were scanned."""

    mapped: tuple[Mapped, ...] = ()
    stale_before: tuple[tuple[int, str], ...] = ()  # (pid, file): stale already, whatever the upgrade
    scanned: int = 0


_UNIT_RE = re.compile(r"^[0-9]+:[^:]*:.*/([^/]+\.service)$")


def unit_of(cgroup_lines: Iterable[str]) -> str | None:
    """The service a process runs in, from its ``/proc/PID/cgroup`` (None: a session, a scope, a container)."""
    for line in cgroup_lines:
        if m := _UNIT_RE.match(line.strip()):
            return m.group(1)
    return None


def parse_maps(stdout: str) -> MapsScan:
    """`maps_cmd`'s answer: the mappings of processes whose root is the host's, less the scan's own session."""
    own: set[int] = set()
    rows: list[tuple[int, str, str]] = []
    before: list[tuple[int, str]] = []
    roots: dict[int, str] = {}
    comm: dict[int, str] = {}
    cgroups: dict[int, list[str]] = {}
    me, scanned = None, 0
    for line in stdout.splitlines():
        kind, _, rest = line.partition("\t")
        parts = rest.split("\t")
        if kind == "S" and rest.isdigit():
            own.add(int(rest))
        elif kind == "N" and rest.isdigit():
            scanned = int(rest)
        elif kind == "M" and len(parts) == 3 and parts[0].isdigit():
            rows += [(int(parts[0]), parts[1], pkg) for pkg in parts[2].split(",") if pkg]
        elif kind == "D" and len(parts) == 2 and parts[0].isdigit():
            before.append((int(parts[0]), parts[1]))
        elif kind == "ME":
            me = rest
        elif kind == "R" and len(parts) == 2:
            number = parts[0].removeprefix("/proc/").removesuffix("/root/")
            if number.isdigit():
                roots[int(number)] = parts[1]
        elif line.startswith("/proc/"):
            path, _, value = line.partition(":")
            bits = path.split("/")
            if len(bits) == 4 and bits[2].isdigit():
                pid = int(bits[2])
                if bits[3] == "comm":
                    comm[pid] = value
                elif bits[3] == "cgroup":
                    cgroups.setdefault(pid, []).append(value)
    mapped = tuple(Mapped(pid, comm.get(pid, "?"), unit_of(cgroups.get(pid, ())), f, pkg)
                   for pid, f, pkg in sorted(set(rows)) if me is not None and roots.get(pid) == me and pid not in own)
    return MapsScan(mapped, tuple(sorted(set(before))), scanned)


# --------------------------------------------------------------------------- needrestart


@dataclass(frozen=True)
class Needrestart:
    """needrestart on one host: installed, run by apt after each dpkg run, its mode and where that was set."""

    installed: bool = False
    run_by_apt: bool = False
    mode: str = DEFAULT_MODE
    source: str = "default"
    skipped: tuple[str, ...] = ()  # its ``override_rc`` patterns set to 0: services it never restarts by itself

    def skips(self, unit: str) -> bool:
        """Whether one of the `skipped` patterns (Perl regexes, read as Python's) matches `unit`."""
        for pattern in self.skipped:
            try:
                if re.search(pattern, unit):
                    return True
            except re.error:
                continue
        return False

    @property
    def restarts(self) -> bool:
        """It restarts stale services on its own after ``apt upgrade``."""
        return self.installed and self.run_by_apt and self.mode == "a"


NEEDRESTART_SCRIPT = f"""\
[ -x {NEEDRESTART_BIN} ] && echo installed
grep -sH -e needrestart {APT_CONF_D}/*
grep -sH -e 'nrconf{{restart}}' -e '=> *0' {NEEDRESTART_CONF} {NEEDRESTART_CONF_D}/*.conf
exit 0
"""


def needrestart_conf_cmd() -> Cmd:
    """Whether needrestart is installed, the apt lines that run it, the lines that set its mode and the
    services it leaves alone (``qr(...) => 0``)."""
    return shell(NEEDRESTART_SCRIPT)


_MODE_RE = re.compile(r"""^\s*\$nrconf\{restart\}\s*=\s*(['"])([ail])\1\s*;""")
_SKIP_RE = re.compile(r"^\s*qr\((.+)\)\s*=>\s*0\s*,?\s*$")


def parse_needrestart_conf(stdout: str) -> Needrestart:
    """`needrestart_conf_cmd`'s answer: the last ``$nrconf{restart}`` set wins (needrestart.conf, then conf.d)."""
    installed = run_by_apt = False
    mode, source = DEFAULT_MODE, "default"
    skipped: list[str] = []
    for line in stdout.splitlines():
        if line == "installed":
            installed = True
            continue
        path, _, text = line.partition(":")
        if path.startswith(APT_CONF_D + "/"):
            code = text.strip()
            if not code.startswith(("//", "#")) and "Post-Invoke" in code:
                run_by_apt = True
        elif m := _MODE_RE.match(text):
            mode, source = m.group(2), path
        elif m := _SKIP_RE.match(text):
            skipped.append(m.group(1))
    return Needrestart(installed, run_by_apt, mode, source, tuple(skipped))


def restart_outlook(nr: Needrestart, units: Sequence[str], live_restore: bool | None) -> str:
    """Who restarts the `units` an upgrade leaves stale, and what that does to Docker's containers.

    ``update.apply`` runs apt with ``NEEDRESTART_MODE=l`` (needrestart lists,
    restarts nothing), so the mode matters for a plain ``apt upgrade`` and for
    unattended-upgrades.
    """
    what = ", ".join(units)
    mode = f"needrestart ({MODES[nr.mode]}, {nr.source})"
    if not nr.installed:
        out = f"needrestart absent: {what} keep the old code until restarted by hand"
    elif not nr.run_by_apt:
        out = f"needrestart installed but apt does not run it: {what} keep the old code until restarted by hand"
    elif nr.mode == "l":
        out = f"{mode} restarts nothing: {what} keep the old code until restarted by hand"
    else:
        takes = [u for u in units if not nr.skips(u)]
        left = [u for u in units if nr.skips(u)]
        does = "restarts" if nr.mode == "a" else "asks whether to restart"
        out = (f"{mode} {does} {', '.join(takes)} right after a plain `apt upgrade`" if takes
               else f"{mode} restarts none of them")
        if left:
            out += f", not {', '.join(left)} (its override_rc)"
        out += "; update.apply runs it list-only: restart them by hand"
    docker = [u for u in units if u in ("docker.service", "docker.socket")]
    if docker:
        if live_restore:
            out += f"; restarting {', '.join(docker)}: containers keep running (live-restore is on)"
        elif live_restore is False:
            out += f"; restarting {', '.join(docker)} stops and restarts every container (live-restore is off)"
        else:
            out += f"; restarting {', '.join(docker)}: live-restore unknown, containers may stop"
    if "containerd.service" in units:
        out += "; restarting containerd.service: containers keep running (their shims outlive it)"
    return out


# --------------------------------------------------------------------------- after the apply


@dataclass(frozen=True)
class Comparison:
    """The review's prediction against the stale processes found after the apply."""

    predicted: int = 0
    found: int = 0
    missed: tuple[str, ...] = ()  # stale, not predicted, not stale before
    wrong: tuple[str, ...] = ()  # predicted, not stale after

    @property
    def exact(self) -> bool:
        return not self.missed and not self.wrong

    def as_dict(self) -> dict[str, object]:
        """The comparison as the apply's JSON and record carry it."""
        return {"predicted": self.predicted, "found": self.found, "exact": self.exact,
                "missed": list(self.missed), "wrong": list(self.wrong)}

    def notes(self) -> tuple[str, ...]:
        """One line per difference, for the apply's report and record."""
        return (*(f"stale but not foreseen by the review: {m}" for m in self.missed),
                *(f"foreseen stale by the review, not stale after: {w}" for w in self.wrong))


def compare(predicted: Iterable[tuple[int, str, str]], before: Iterable[tuple[int, str]],
            after: Mapping[int, tuple[str, Iterable[str]]]) -> Comparison:
    """`predicted` (pid, file, who) against `after` (pid -> (who, deleted files)), by process and file.

    A file already stale at the review (`before`) is neither a miss nor a hit.
    """
    pred = {(pid, f): who for pid, f, who in predicted}
    old = set(before)
    found = {(pid, f): who for pid, (who, files) in after.items() for f in files if (pid, f) not in old}
    missed = tuple(f"{who} maps {f}" for (pid, f), who in sorted(found.items()) if (pid, f) not in pred)
    wrong = tuple(f"{who} maps {f}" for (pid, f), who in sorted(pred.items()) if (pid, f) not in found)
    return Comparison(len(pred), len(found), missed, wrong)
