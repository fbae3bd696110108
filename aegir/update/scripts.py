"""Which units a package's maintainer scripts restart when it is upgraded (pure).

During ``apt-get upgrade`` of a package from OLD to NEW, dpkg runs OLD's
``prerm upgrade``, NEW's ``preinst upgrade``, OLD's ``postrm upgrade`` and
NEW's ``postinst configure OLD``. A unit is restarted when one of them:

- runs ``deb-systemd-invoke restart|try-restart|...`` on it, literally or
  through debhelper's ``_dh_action`` variable (``_dh_action=restart`` when
  ``$2`` is set, i.e. on upgrade: what ``dh_installsystemd`` writes by default);
- runs ``systemctl restart ...`` or ``invoke-rc.d NAME restart`` (without
  ``--skip-systemd-native``, which only acts on hosts without systemd);
- stops it in a script that runs on upgrade (not only on ``remove``) and the
  new postinst starts it again (debhelper before compat 10: stop in prerm,
  start in postinst).

The scripts are read as text, not run: the guard of each call is the
``if``/``case`` lines around it, and a guard that names ``remove`` or
``purge`` but not ``upgrade`` or ``configure`` does not run on upgrade.
Tests: tests/unit/test_update_scripts.py.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass

#: Actions that restart a running unit.
RESTART_ACTIONS = frozenset({"restart", "try-restart", "reload-or-restart", "try-reload-or-restart",
                             "condrestart", "force-restart"})
#: The scripts dpkg runs on an upgrade, in order, as `parse_package_info` names them.
UPGRADE_SCRIPTS = ("old-prerm", "new-preinst", "old-postrm", "new-postinst")
_STOPPING = ("old-prerm", "new-preinst", "old-postrm")

_TOOLS = ("deb-systemd-invoke", "systemctl", "invoke-rc.d")


@dataclass(frozen=True)
class Restart:
    """A unit a package upgrade restarts, and the script line that does it."""

    unit: str
    script: str  # "new-postinst", "old-prerm+new-postinst", ...
    how: str  # "deb-systemd-invoke restart", "stop, then start"

    def __str__(self) -> str:
        return f"{self.script.replace('new-', '').replace('old-', '')}: {self.how}"


@dataclass(frozen=True)
class _Call:
    tool: str
    actions: frozenset[str]
    units: tuple[str, ...]
    guard: str


def _unit(name: str) -> str:
    return name if "." in name and name.rpartition(".")[2] in ("service", "socket", "target", "timer",
                                                                 "path", "mount") else f"{name}.service"


def _words(line: str) -> list[str]:
    try:
        return shlex.split(line, comments=True)
    except ValueError:
        return line.split()


def _calls(text: str) -> list[_Call]:
    """The service-manager calls of one script, with the conditions they sit under."""
    assigned = set(re.findall(r"\b_dh_action=([A-Za-z-]+)", text))
    guards: list[str] = []
    case_label = ""
    calls: list[_Call] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if re.match(r"^(if|while)\b", line):
            guards.append(line)
        elif re.match(r"^(elif|else)\b", line) and guards:
            guards[-1] = guards[-1] + " / " + line
        elif re.match(r"^(fi|done)\b", line) and guards:
            guards.pop()
        elif re.match(r"^[\w|\"*$ -]+\)\s*$", line) and not line.startswith(("if", "[")):
            case_label = line
        elif line.startswith(";;") or line == "esac":
            case_label = ""
        for tool in _TOOLS:
            for segment in re.split(r"&&|\|\||;", line):
                words = _words(segment)
                if tool not in words:
                    continue
                args = [w for w in words[words.index(tool) + 1:] if not w.startswith(">")]
                if tool == "invoke-rc.d":
                    if "--skip-systemd-native" in args:
                        continue
                    rest = [w for w in args if not w.startswith("-")]
                    if len(rest) >= 2:
                        calls.append(_Call(tool, frozenset({rest[1]}), (_unit(rest[0]),),
                                           " ".join([*guards, case_label])))
                    continue
                rest = [w for w in args if not w.startswith("-")]
                if not rest:
                    continue
                action, units = rest[0], tuple(_unit(u) for u in rest[1:] if re.match(r"^[\w@.:-]+$", u))
                if action in ("$_dh_action", "${_dh_action}"):
                    actions = frozenset(assigned)
                else:
                    actions = frozenset({action})
                if units:
                    calls.append(_Call(tool, actions, units, " ".join([*guards, case_label])))
    return calls


def _runs_on_upgrade(guard: str) -> bool:
    """False for calls only made on remove/purge (``[ "$1" = remove ]``)."""
    g = guard.lower()
    only_removal = re.search(r"\b(remove|purge|disappear)\b", g) and not re.search(r"upgrade|configure", g)
    first_install_only = re.search(r'\[\s*-z\s+"?\$2"?\s*\]', g) is not None
    return not only_removal and not first_install_only


def restarts(scripts: Mapping[str, str]) -> tuple[Restart, ...]:
    """Units restarted when upgrading, from the package's maintainer scripts.

    `scripts` maps ``new-postinst``, ``old-prerm``, ... to their text
    (`aegir.update.apt.PackageInfo.scripts`).
    """
    found: dict[str, Restart] = {}
    stopped: dict[str, str] = {}
    started: set[str] = set()
    for name in UPGRADE_SCRIPTS:
        for call in _calls(scripts.get(name, "")):
            if not _runs_on_upgrade(call.guard):
                continue
            restart = sorted(call.actions & RESTART_ACTIONS)
            for unit in call.units:
                if restart:
                    label = f"{call.tool} {'/'.join(restart)}"
                    if call.actions != frozenset(restart):
                        label += " (debhelper's $_dh_action on upgrade)"
                    found.setdefault(unit, Restart(unit, name, label))
                elif "stop" in call.actions and name in _STOPPING:
                    stopped.setdefault(unit, name)
                elif "start" in call.actions and name == "new-postinst":
                    started.add(unit)
    for unit, where in stopped.items():
        if unit in started:
            found.setdefault(unit, Restart(unit, f"{where}+new-postinst", "stop, then start"))
    return tuple(found[u] for u in sorted(found))
