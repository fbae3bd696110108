"""Docker's network posture on one host, against what aegir's firewall and addressing plan assume (pure checks).

The runbook: no userland proxy (containers must see the client's address),
no Docker iptables/ip6tables rules (aegir's nftables owns the firewall and
covers IPv6, which Docker's rules miss), ``ipv6: true`` with
``fixed-cidr-v6`` inside the host's prefix (every container a global IPv6
from it), Docker's data on /srv.

`config_cmd` reads, in one command, what the running ``dockerd`` of this
host's network namespace was started with (its command line: flags override
nothing silently, Docker refuses a key set twice) and the configuration file
it reads (``--config-file``, else /etc/docker/daemon.json); with no dockerd
running, the file alone. `problems` gives one line per deviation, naming the
daemon.json key to change (or the flag, when the command line sets it).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aegir.facts import Fact
from aegir.sh import Cmd, shell

DAEMON_JSON = "/etc/docker/daemon.json"
#: What aegir needs, and Docker's default when nothing sets the key (None: it depends on the version).
WANTED: Mapping[str, bool] = {"userland-proxy": False, "iptables": False, "ip6tables": False, "ipv6": True}
DEFAULTS: Mapping[str, bool | None] = {"userland-proxy": True, "iptables": True, "ip6tables": None, "ipv6": False}
WHY = {
    "userland-proxy": "the proxy hides the client's address from containers",
    "iptables": "aegir's nftables owns the firewall",
    "ip6tables": "aegir's nftables owns the firewall",
    "ipv6": "containers get a global IPv6 from the host's prefix",
}
_BOOL_FLAGS = tuple(WANTED)
_VALUE_FLAGS = ("fixed-cidr-v6", "data-root", "config-file")

_CONFIG_SCRIPT = """\
me=$(readlink /proc/self/ns/net) || exit 0
cfg=__DAEMON_JSON__
for comm in $(grep -lx dockerd /proc/[0-9]*/comm 2>/dev/null); do
  d=${comm%/comm}
  [ "$(readlink "$d/ns/net" 2>/dev/null)" = "$me" ] || continue
  printf 'PID\\t%s\\n' "${d#/proc/}"
  prev=
  for a in $(tr '\\0' ' ' < "$d/cmdline"); do
    printf 'ARG\\t%s\\n' "$a"
    case $prev in --config-file) cfg=$a;; esac
    case $a in --config-file=*) cfg=${a#*=};; esac
    prev=$a
  done
  break
done
printf 'FILE\\t%s\\n' "$cfg"
cat -- "$cfg" 2>/dev/null
exit 0
""".replace("__DAEMON_JSON__", DAEMON_JSON)


def config_cmd() -> Cmd:
    """The running dockerd's command line (``ARG`` lines) and its configuration file (after ``FILE``)."""
    return shell(_CONFIG_SCRIPT)


@dataclass(frozen=True)
class DockerConfig:
    """What sets Docker's network keys on one host: the file's keys, dockerd's flags, where each came from."""

    file: str = DAEMON_JSON
    settings: Mapping[str, Any] = field(default_factory=dict)  # daemon.json
    flags: Mapping[str, Any] = field(default_factory=dict)  # dockerd's command line
    running: bool = False
    error: str | None = None  # the file could not be read as JSON

    def value(self, key: str) -> tuple[Any, str]:
        """The key's value and where it comes from: ``flag``, ``file`` or ``default``."""
        if key in self.flags:
            return self.flags[key], "flag"
        if key in self.settings:
            return self.settings[key], "file"
        return DEFAULTS.get(key), "default"


def _flags(args: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        a = args[i]
        i += 1
        if not a.startswith("--"):
            continue
        name, eq, value = a[2:].partition("=")
        if name in _BOOL_FLAGS:
            out[name] = value.lower() not in ("false", "0") if eq else True
        elif name in _VALUE_FLAGS:
            if not eq and i < len(args):
                value, i = args[i], i + 1
            out[name] = value
    return out


def parse_config(stdout: str) -> DockerConfig:
    """`config_cmd`'s answer."""
    args: list[str] = []
    running, file, text = False, DAEMON_JSON, []
    lines = stdout.splitlines()
    for n, line in enumerate(lines):
        kind, _, rest = line.partition("\t")
        if kind == "PID":
            running = True
        elif kind == "ARG":
            args.append(rest)
        elif kind == "FILE":
            file, text = rest, lines[n + 1:]
            break
    flags = _flags(args[1:])
    flags.pop("config-file", None)
    body = "\n".join(text).strip()
    if not body:
        return DockerConfig(file, {}, flags, running)
    try:
        settings = json.loads(body)
    except ValueError as exc:
        return DockerConfig(file, {}, flags, running, f"{file} is not valid JSON: {exc}")
    if not isinstance(settings, dict):
        return DockerConfig(file, {}, flags, running, f"{file} is not a JSON object")
    return DockerConfig(file, settings, flags, running)


def config_fact() -> Fact[DockerConfig]:
    """`config_cmd` as a fact (Docker's settings change under boot.docker and net.docker)."""
    return Fact("net.docker-config", config_cmd(), lambda r: parse_config(r.stdout), cache=False)


def _word(value: Any) -> str:
    return json.dumps(value) if isinstance(value, bool) or value is None else str(value)


def _set(key: str, value: Any, cfg: DockerConfig, source: str) -> str:
    if source == "flag":
        return f"dockerd's command line sets it (--{key}): change the flag where dockerd is started"
    return f"set \"{key}\": {json.dumps(value)} in {cfg.file}"


def problems(cfg: DockerConfig, *, prefix: ipaddress.IPv6Network | None, srv: str,
             version: str | None = None, data_root: str | None = None) -> list[tuple[str, str]]:
    """(key, problem) for each setting that differs from what aegir needs; `version`: Docker's, when known
    (ip6tables' default is on from 27.0); `data_root`: what the running daemon reports."""
    if cfg.error:
        return [("daemon.json", cfg.error)]
    out: list[tuple[str, str]] = []
    for key, wanted in WANTED.items():
        value, source = cfg.value(key)
        if value is None and key == "ip6tables":
            major = int(version.split(".")[0]) if version and version.split(".")[0].isdigit() else None
            if major is not None and major < 27:
                continue  # off by default before Docker 27
            value, source = True, "default"
        if not isinstance(value, bool):
            out.append((key, f"{key} is {_word(value)}, not a boolean: {_set(key, wanted, cfg, source)}"))
        elif value != wanted:
            how = " (Docker's default)" if source == "default" else ""
            out.append((key, f"{key} is {_word(value)}{how}: {_set(key, wanted, cfg, source)} ({WHY[key]})"))
    fixed, source = cfg.value("fixed-cidr-v6")
    where = f"a /64 of the host's prefix {prefix}" if prefix else "a /64 of the host's prefix (hosts.yml has none)"
    if fixed is None:
        out.append(("fixed-cidr-v6", f"fixed-cidr-v6 is unset: set \"fixed-cidr-v6\" to {where} in {cfg.file}"))
    else:
        try:
            net = ipaddress.IPv6Network(str(fixed), strict=False)
        except ValueError:
            net = None
        if net is None or prefix is None or not net.subnet_of(prefix):
            change = (f"dockerd's command line sets it (--fixed-cidr-v6): change the flag to {where}"
                      if source == "flag" else f"set \"fixed-cidr-v6\" to {where} in {cfg.file}")
            out.append(("fixed-cidr-v6", f"fixed-cidr-v6 {fixed} is outside the host's prefix: {change}"))
    root, source = (data_root, "running") if data_root else cfg.value("data-root")
    root = root or "/var/lib/docker"
    if not (root == srv or root.startswith(srv.rstrip("/") + "/")):
        want = srv.rstrip("/") + "/docker"
        how = "Docker's default" if source == "default" else "the running daemon's" if source == "running" else source
        change = ("dockerd's command line sets it (--data-root): change the flag" if source == "flag"
                  else f"set \"data-root\": \"{want}\" in {cfg.file}")
        out.append(("data-root", f"data-root {root} ({how}) is not on {srv}: {change}"))
    return out

