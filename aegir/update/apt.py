"""apt, dpkg and systemd facts for `update`: command builders and pure parsers.

* ``apt-get -s upgrade`` (or ``dist-upgrade``): what an upgrade would do,
  package by package (`parse_simulation`): old and new version, the origins
  apt would take it from (``Debian-Security:12/oldstable-security``), what is
  kept back; ``apt-mark showhold`` says which of those are held.
* ``dpkg -S``: which package ships a file (`parse_dpkg_search`), asked for
  both spellings of a path on a merged-/usr system (`path_aliases`).
* ``systemctl show``: a unit's files, dependencies and state (`parse_units`).
* the maintainer scripts and unit files of the new packages, after
  ``apt-get download``, and of the installed ones (`package_info_cmd`,
  `parse_package_info`).
* processes still mapping deleted files, as needrestart finds them
  (`needrestart_cmd`, `parse_needrestart`).

Every command runs with ``LC_ALL=C``: the parsers read apt's English.
Tests: tests/unit/test_apt.py on outputs recorded on Debian 12 and 13.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from aegir.errors import AegirError
from aegir.sh import Cmd, shell

#: apt/dpkg must neither prompt nor translate.
APT_ENV = {"LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive"}

#: Properties `systemctl show` is asked for (`parse_units` reads these).
UNIT_PROPS = ("Id", "Names", "LoadState", "ActiveState", "SubState", "FragmentPath", "DropInPaths",
              "Requires", "Requisite", "BindsTo", "PartOf", "After")

UNIT_TYPES = ("service", "socket", "target", "mount", "timer", "path", "slice", "scope", "device", "swap")
_UNIT_RE = re.compile(r"^[A-Za-z0-9:_.@\\-]{1,250}\.(" + "|".join(UNIT_TYPES) + r")\Z")
_PKG_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]{0,127}(:[a-z0-9-]+)?\Z")
_VERSION_RE = re.compile(r"^[A-Za-z0-9.+~:-]{1,128}\Z")


def check_package(name: str) -> str:
    """`name` if it is a Debian package name (optionally ``:arch``), else `AegirError`."""
    if not isinstance(name, str) or not _PKG_RE.match(name):
        raise AegirError(f"invalid package name {name!r}: lowercase letters, digits, '+', '-', '.'")
    return name


def check_version(version: object, package: str = "") -> str:
    """`version` if it reads as a Debian version (letters, digits, ``.+~:-``), else `AegirError`."""
    if not isinstance(version, str) or not _VERSION_RE.match(version):
        raise AegirError(f"invalid version {version!r}" + (f" for {package}" if package else ""))
    return version


def check_unit(name: str) -> str:
    """`name` as a full unit name (``ssh`` -> ``ssh.service``), or `AegirError`."""
    full = name if isinstance(name, str) and name.rpartition(".")[2] in UNIT_TYPES else f"{name}.service"
    if not _UNIT_RE.match(full):
        raise AegirError(f"invalid systemd unit name {name!r}")
    return full


# --------------------------------------------------------------------------- apt-get -s


@dataclass(frozen=True)
class Origin:
    """Where apt takes a version from: ``Label:Version/Suite`` as apt prints it."""

    label: str
    version: str
    suite: str

    @classmethod
    def parse(cls, text: str) -> "Origin":
        label, _, rest = text.strip().partition(":")
        version, _, suite = rest.partition("/")
        return cls(label, version, suite)

    @property
    def security(self) -> bool:
        """A security archive (``Debian-Security`` label, ``*-security`` suite)."""
        return "security" in self.label.lower() or self.suite.endswith("-security")

    def __str__(self) -> str:
        return f"{self.label}:{self.version}/{self.suite}"


@dataclass(frozen=True)
class Upgrade:
    """One ``Inst`` line: a package apt would install or upgrade."""

    name: str
    new: str
    old: str | None = None  # None: newly installed
    arch: str = ""
    origins: tuple[Origin, ...] = ()

    @property
    def security(self) -> bool:
        return any(o.security for o in self.origins)

    @property
    def origin(self) -> str:
        return ", ".join(str(o) for o in self.origins)


@dataclass(frozen=True)
class Simulation:
    """What ``apt-get -s upgrade|dist-upgrade`` says it would do."""

    upgrades: tuple[Upgrade, ...] = ()
    removals: tuple[str, ...] = ()
    kept_back: tuple[str, ...] = ()
    summary: str = ""

    @property
    def versions(self) -> dict[str, tuple[str | None, str]]:
        """package -> (old, new): the package set a review is about."""
        return {u.name: (u.old, u.new) for u in self.upgrades}


#: Seconds one fetch (``apt-get update``, the review's downloads) may take on the host, in all.
FETCH_LIMIT = 20
#: apt's own bounds: no retry, an answer within 10 s per connection (a host that cannot reach its
#: mirror fails in seconds instead of retrying for minutes).
FETCH_OPTIONS = ("-o", "Acquire::Retries=0", "-o", "Acquire::http::Timeout=10", "-o", "Acquire::https::Timeout=10",
                 "-o", "Acquire::ftp::Timeout=10")


def bounded(argv: Sequence[str], limit: int = FETCH_LIMIT) -> tuple[str, ...]:
    """`argv` stopped after `limit` seconds (coreutils ``timeout``: exit 124), killed 5 s later."""
    return ("timeout", "-k", "5", str(limit), *argv)


def update_cmd() -> Cmd:
    """``apt-get update`` (the review's ``--refresh``), bounded in time; any failed fetch is an error."""
    return Cmd(bounded(("apt-get", "update", "-q", "--error-on=any", *FETCH_OPTIONS)), env=APT_ENV,
               timeout=FETCH_LIMIT + 30)


def fetch_failure(what: str, exited: int, stderr: str) -> str:
    """One line saying why a fetch failed: apt's first error (``E:``/``W:``/``Err:``), or the time limit."""
    if exited in (124, 137):
        return f"{what}: no answer within {FETCH_LIMIT} s (is the mirror reachable from the host?)"
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    why = next((ln for ln in lines if ln.startswith(("E: Failed to fetch", "Err:", "W: Failed to fetch"))),
               next((ln for ln in lines if ln.startswith(("E:", "W:"))), lines[-1] if lines else "no message"))
    return f"{what} failed (exit {exited}): {why[:300]}"


#: Seconds a simulation (``apt-get -s``) may take on the host: bounded there, so that it can be batched.
SIMULATE_LIMIT = 300


def simulate_cmd(dist: bool = False) -> Cmd:
    """A simulated ``upgrade`` (or ``dist-upgrade``): nothing is changed."""
    return Cmd(bounded(("apt-get", "-s", "dist-upgrade" if dist else "upgrade"), SIMULATE_LIMIT), env=APT_ENV)


def showhold_cmd() -> Cmd:
    return Cmd(("apt-mark", "showhold"), env=APT_ENV)


_INST_RE = re.compile(
    r"^Inst (?P<name>\S+)(?: \[(?P<old>[^\]]*)\])? \((?P<new>\S+)(?: (?P<origins>.*?))? \[(?P<arch>[^\]]+)\]\)"
    r"(?: \[.*\])?\s*$")
_REMV_RE = re.compile(r"^Remv (?P<name>\S+)(?: \[[^\]]*\])*\s*$")
_CONF_RE = re.compile(r"^Conf \S+ \(")
_SECTION_RE = re.compile(r"^The following packages have been kept back:\s*$")
#: The shape of an action line of ``apt-get -s`` (``Verb package [..]`` / ``(..)``): what apt's
#: simulator prints for every change it would make. `parse_simulation` knows Inst, Conf and Remv;
#: any other line of this shape is an action it does not understand.
_ACTION_RE = re.compile(r"^[A-Z][a-z]{3} [a-z0-9][a-z0-9+.:-]*(?: [\[(]|\s*$)")


def parse_simulation(stdout: str) -> Simulation:
    """Read ``apt-get -s`` output (apt 2.6 in Debian 12, apt 3.0 in Debian 13).

    ``Inst name [old] (new Origin:Ver/Suite[, ...] [arch])`` -> `Upgrade`;
    ``Remv name [old]`` -> removal; the "kept back" list (held packages and
    upgrades needing new packages) -> `kept_back`.

    An action line it cannot read is an `AegirError`, never skipped: a
    package missing here would be missing from the review, and from the
    check `update.apply` makes before apt changes it anyway. That includes
    ``Purg`` (a host whose apt is set to purge, ``APT::Get::Purge``, would
    delete the configuration of packages nobody reviewed for removal) and any
    other ``Verb package ...`` line an apt version may print.
    """
    upgrades: list[Upgrade] = []
    removals: list[str] = []
    kept: list[str] = []
    summary = ""
    in_kept = False
    for line in stdout.splitlines():
        if in_kept:
            if line.startswith("  "):
                kept.extend(line.split())
                continue
            in_kept = False
        if _SECTION_RE.match(line):
            in_kept = True
        elif m := _INST_RE.match(line):
            origins = tuple(Origin.parse(o) for o in (m["origins"] or "").split(", ") if o.strip())
            upgrades.append(Upgrade(m["name"], m["new"], m["old"], m["arch"], origins))
        elif m := _REMV_RE.match(line):
            removals.append(m["name"])
        elif _CONF_RE.match(line):
            continue  # configures a package an Inst line above names
        elif line.startswith("Purg "):
            raise AegirError("apt would purge (remove with its configuration) "
                             f"{line.split()[1]}: this host's apt is set to purge (APT::Get::Purge); "
                             "unset it, then review again")
        elif re.match(r"^(Inst|Remv|Conf)\b", line) or _ACTION_RE.match(line):
            raise AegirError(f"cannot read this line of apt-get -s: {line.strip()[:200]!r}")
        elif re.match(r"^\d+ upgraded, ", line):
            summary = line.strip()
    return Simulation(tuple(upgrades), tuple(removals), tuple(kept), summary)


def parse_showhold(stdout: str) -> tuple[str, ...]:
    """``apt-mark showhold``: one held package per line."""
    return tuple(line.strip() for line in stdout.splitlines() if line.strip())


# --------------------------------------------------------------------------- dpkg -S

ALIASES = (("/lib/", "/usr/lib/"), ("/bin/", "/usr/bin/"), ("/sbin/", "/usr/sbin/"), ("/lib64/", "/usr/lib64/"))


def path_aliases(path: str) -> tuple[str, ...]:
    """`path` and its other spelling on a merged-/usr system (``/lib/x`` <-> ``/usr/lib/x``).

    dpkg knows a file by the path its package ships: Debian 12 packages ship
    units in /lib/systemd/system, Debian 13 ones in /usr/lib/systemd/system,
    and systemd may report either.
    """
    for short, long in ALIASES:
        if path.startswith(short):
            return (path, long + path[len(short):])
        if path.startswith(long):
            return (path, short + path[len(long):])
    return (path,)


def dpkg_search_cmd(paths: Iterable[str]) -> Cmd:
    """``dpkg -S`` of `paths` and their aliases (exit 1 when one is unknown: run unchecked)."""
    wanted: list[str] = []
    for p in paths:
        for a in path_aliases(p):
            if a not in wanted:
                wanted.append(a)
    return Cmd(("dpkg", "-S", "--", *wanted), env=APT_ENV)


def parse_dpkg_search(stdout: str) -> dict[str, tuple[str, ...]]:
    """``pkg[, pkg]: /path`` lines -> path -> packages (``:arch`` dropped; diversions skipped)."""
    out: dict[str, tuple[str, ...]] = {}
    for line in stdout.splitlines():
        if line.startswith("diversion by ") or ": " not in line:
            continue
        pkgs, _, path = line.partition(": ")
        names = tuple(p.strip().split(":")[0] for p in pkgs.split(",") if p.strip())
        out[path.strip()] = tuple(dict.fromkeys(out.get(path.strip(), ()) + names))
    return out


def owners(paths: Iterable[str], found: Mapping[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """path -> packages shipping it under any of its spellings (`path_aliases`)."""
    return {p: tuple(dict.fromkeys(pkg for a in path_aliases(p) for pkg in found.get(a, ()))) for p in paths}


# --------------------------------------------------------------------------- systemctl show


@dataclass(frozen=True)
class Unit:
    """What ``systemctl show`` says about one unit."""

    id: str
    names: tuple[str, ...] = ()
    load_state: str = ""
    active_state: str = ""
    sub_state: str = ""
    fragment_path: str = ""
    dropin_paths: tuple[str, ...] = ()
    deps: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def loaded(self) -> bool:
        return self.load_state == "loaded"

    @property
    def active(self) -> bool:
        return self.active_state in ("active", "reloading", "activating")


def systemctl_show_cmd(units: Sequence[str], props: Sequence[str] = UNIT_PROPS) -> Cmd:
    """``systemctl show -p ... UNIT...`` (units validated, ``ssh`` -> ``ssh.service``)."""
    return Cmd(("systemctl", "show", "-p", ",".join(props), *(check_unit(u) for u in units)), env=APT_ENV)


_DEP_PROPS = ("Requires", "Requisite", "BindsTo", "PartOf", "After", "Wants", "Before")


def parse_units(stdout: str) -> dict[str, Unit]:
    """``systemctl show`` output (``Key=value`` blocks, blank line between units) -> name -> `Unit`.

    Every name of a unit (its Id and aliases) maps to it.
    """
    out: dict[str, Unit] = {}
    for block in re.split(r"\n\s*\n", stdout.strip()):
        props: dict[str, str] = {}
        for line in block.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                props[key.strip()] = value.strip()
        if not props.get("Id"):
            continue
        unit = Unit(
            id=props["Id"],
            names=tuple(props.get("Names", props["Id"]).split()) or (props["Id"],),
            load_state=props.get("LoadState", ""),
            active_state=props.get("ActiveState", ""),
            sub_state=props.get("SubState", ""),
            fragment_path=props.get("FragmentPath", ""),
            dropin_paths=tuple(props.get("DropInPaths", "").split()),
            deps={k: tuple(props[k].split()) for k in _DEP_PROPS if k in props},
        )
        for name in {unit.id, *unit.names}:
            out[name] = unit
    return out


# --------------------------------------------------------------------------- the packages themselves

#: Where a package's units live (``/etc/init.d/x`` becomes ``x.service`` under systemd).
_UNIT_PATH_RE = re.compile(r"^\.?(?:/usr)?/lib/systemd/system/([^/]+\.(?:service|socket))\Z")
_INITD_RE = re.compile(r"^\.?/etc/init\.d/([A-Za-z0-9_.@-]+)\Z")
MARK = "@@aegir@@"

_INFO_SCRIPT = """\
dir=$(mktemp -d) || exit 1
trap 'rm -rf "$dir"' EXIT
cd "$dir" || exit 1
limit=$1; shift
arch=$(dpkg --print-architecture)
# Only packages that may touch a service are downloaded: those not installed
# yet, and those whose installed version ships a unit or an init script, or
# whose scripts call a service manager. All of them in one bounded apt run.
wanted=
for spec in "$@"; do
  name=${spec%%=*}
  if dpkg-query -W "$name" >/dev/null 2>&1 \\
     && ! dpkg-query -L "$name" 2>/dev/null | grep -qE '/systemd/system/[^/]+[.](service|socket)$|^/etc/init[.]d/' \\
     && ! cat "/var/lib/dpkg/info/$name".* "/var/lib/dpkg/info/$name:$arch".* 2>/dev/null \\
          | grep -qE 'deb-systemd-invoke|invoke-rc[.]d|systemctl'; then
    continue
  fi
  wanted="$wanted $spec"
done
rc=0
if [ -n "$wanted" ]; then
  mkdir "$dir/debs" && cd "$dir/debs" || exit 1
  # shellcheck disable=SC2086  # names and versions were checked: no spaces, no glob characters
  timeout -k 5 "$limit" apt-get download -q -o Acquire::Retries=0 -o Acquire::http::Timeout=10 \\
    -o Acquire::https::Timeout=10 -o Acquire::ftp::Timeout=10 $wanted >/dev/null 2>"$dir/err" || rc=$?
  cd "$dir" || exit 1
fi
for spec in "$@"; do
  name=${spec%%=*}
  echo "@@aegir@@ package $name"
  case " $wanted " in
    *" $spec "*)
      got=
      for deb in "$dir/debs/${name%%:*}"_*.deb; do  # libfoo:i386 downloads as libfoo_<version>_i386.deb
        [ -f "$deb" ] || continue
        got=1
        echo "@@aegir@@ new-files"
        dpkg-deb -c "$deb" | awk '{print $6}'
        mkdir "$dir/ctl" && dpkg-deb -e "$deb" "$dir/ctl"
        for s in preinst postinst prerm postrm; do
          [ -f "$dir/ctl/$s" ] && { echo "@@aegir@@ new-$s"; cat "$dir/ctl/$s"; }
        done
        rm -rf "$dir/ctl" "$deb"
      done
      if [ -z "$got" ]; then
        echo "@@aegir@@ download-failed"
        if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then echo "no answer within $limit s"; else tail -n 2 "$dir/err"; fi
      fi;;
    *) echo "@@aegir@@ skipped";;
  esac
  echo "@@aegir@@ old-files"
  dpkg-query -L "$name" 2>/dev/null
  for s in preinst postinst prerm postrm; do
    for f in "/var/lib/dpkg/info/$name.$s" "/var/lib/dpkg/info/$name:$arch.$s"; do
      [ -f "$f" ] && { echo "@@aegir@@ old-$s"; cat "$f"; }
    done
  done
done
exit 0
"""


def package_info_cmd(versions: Mapping[str, str]) -> Cmd:
    """Download the new packages (one ``apt-get download name=version ...`` for all of them,
    bounded by `FETCH_LIMIT`, in a temporary folder removed afterwards) and print their file lists and maintainer scripts,
    and those of the installed versions, between ``@@aegir@@`` marks.

    A package whose installed version ships no unit or init script and whose
    scripts call no service manager (a plain library, say) is not downloaded:
    its section says ``skipped``. The upgrade's own download is what apt
    does later; the review reads only what can restart something. The whole
    script is bounded on the host (no timeout of its own: it is batched).
    """
    specs = []
    for name, version in versions.items():
        check_package(name)
        check_version(version, name)
        specs.append(f"{name}={version}")
    return Cmd(bounded(shell(_INFO_SCRIPT, str(FETCH_LIMIT), *specs).argv, FETCH_LIMIT + 120), env=APT_ENV)


@dataclass(frozen=True)
class PackageInfo:
    """A package's units (new and installed versions) and maintainer scripts."""

    name: str
    units: tuple[str, ...] = ()
    scripts: Mapping[str, str] = field(default_factory=dict)  # "new-postinst", "old-prerm", ...
    download_error: str | None = None


def units_in(files: Iterable[str]) -> tuple[str, ...]:
    """The systemd units among a package's files (init scripts count as ``name.service``)."""
    found: list[str] = []
    for f in files:
        if m := _UNIT_PATH_RE.match(f.strip()):
            if "@." not in m[1]:  # a template (foo@.service) is never active itself
                found.append(m[1])
        elif m := _INITD_RE.match(f.strip()):
            found.append(f"{m[1]}.service")
    return tuple(dict.fromkeys(found))


def parse_package_info(stdout: str) -> dict[str, PackageInfo]:
    """Read `package_info_cmd` output: package -> `PackageInfo`."""
    out: dict[str, PackageInfo] = {}
    name: str | None = None
    section = ""
    parts: dict[str, list[str]] = {}

    def flush() -> None:
        if name is None:
            return
        files = parts.get("new-files", []) + parts.get("old-files", [])
        scripts = {k: "\n".join(v) + "\n" for k, v in parts.items() if k.startswith(("new-", "old-"))
                   and not k.endswith("-files")}
        error = "\n".join(parts["download-failed"]).strip() or "download failed" if "download-failed" in parts else None
        out[name] = PackageInfo(name, units_in(files), scripts, error)

    for line in stdout.splitlines():
        if line.startswith(MARK + " "):
            word = line[len(MARK) + 1:]
            if word.startswith("package "):
                flush()
                name, section, parts = word.split(" ", 1)[1], "", {}
            else:
                section = word
                parts.setdefault(section, [])
            continue
        if name is not None and section:
            parts[section].append(line)
    flush()
    return out


# --------------------------------------------------------------------------- needrestart

#: Mapped files that are not code an upgrade replaces (an awk regex, as needrestart skips them).
IGNORED_MAPS = r"^\/(memfd:|dev\/|SYSV|run\/|tmp\/|var\/tmp\/)"

#: Sets ``$self`` to `` PID PID `` : the running shell and its ancestors in its cgroup (its SSH session),
#: which map the shell and sshd and are gone once the session ends: not daemons to restart.
SELF_SCRIPT = """\
p=$$ own=$(cat /proc/$$/cgroup 2>/dev/null) self=' '
while [ "${p:-0}" -gt 1 ] && [ "$(cat /proc/$p/cgroup 2>/dev/null)" = "$own" ]; do
  self="$self$p "
  q=
  while read -r k v; do [ "$k" = PPid: ] && q=$v && break; done < /proc/$p/status
  p=$q
done
"""

_NEEDRESTART_SCRIPT = SELF_SCRIPT + r"""me=$(stat -Lc %d:%i /)
grep -l ' (deleted)$' /proc/[0-9]*/maps 2>/dev/null | while read -r maps; do
  d=${maps%/maps}
  case $self in *" ${d#/proc/} "*) continue;; esac
  [ "$(stat -Lc %d:%i "$d/root/" 2>/dev/null)" = "$me" ] || continue
  files=$(awk '$6 ~ /^\// && $NF == "(deleted)" && $6 !~ /__IGNORED__/ {print $6}' "$d/maps" 2>/dev/null | sort -u | tr '\n' ' ')
  [ -n "$files" ] || continue
  unit=$(sed -n 's#^[0-9]*:[^:]*:.*/\([^/]*\.service\)$#\1#p' "$d/cgroup" 2>/dev/null | head -n 1)
  printf '%s\t%s\t%s\t%s\n' "${d#/proc/}" "$(cat "$d/comm" 2>/dev/null)" "${unit:--}" "$files"
done
exit 0
""".replace("__IGNORED__", IGNORED_MAPS)


@dataclass(frozen=True)
class StaleProcess:
    """A process still running code or libraries an upgrade replaced (it needs a restart)."""

    pid: int
    command: str
    unit: str | None
    files: tuple[str, ...]


def needrestart_cmd() -> Cmd:
    """Processes of this host (same root: not containers) mapping deleted files, like needrestart."""
    return shell(_NEEDRESTART_SCRIPT)


def parse_needrestart(stdout: str) -> tuple[StaleProcess, ...]:
    rows = []
    for line in stdout.splitlines():
        parts = line.split("\t")
        if len(parts) != 4 or not parts[0].isdigit():
            continue
        unit = parts[2] if parts[2] not in ("", "-") else None
        rows.append(StaleProcess(int(parts[0]), parts[1], unit, tuple(parts[3].split())))
    return tuple(sorted(rows, key=lambda p: p.pid))
