"""hosts.yml -> typed, validated `Host` objects.

The inventory names every hypervisor, how to reach it (SSH address, user,
port, or ``connection: local`` for this machine), its groups, its ``/srv``, its
LUKS device, how Docker is started, and its addressing plan: an admin IPv4,
service IPv4s, an IPv6 prefix (a ``/56`` in the runbook) holding the admin IPv6
and one service IPv6 per service IPv4.

Every mistake is reported as ``file:line: sentence`` (an `InventoryError`),
never as a traceback. Sections owned by one namespace (``fw:``, ``update:``)
are kept as plain mappings on the host and validated by their owner, which
can still point at the right line through `Inventory.line_of`.

Search order: ``--inventory`` flag, ``$AEGIR_INVENTORY``, ``./hosts.yml``,
``/etc/aegir/hosts.yml``.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import shlex
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from aegir import yamldoc
from aegir.errors import InventoryError, TargetError
from aegir.sh import NAME_RE
from aegir.yamldoc import YamlError

IPv4 = ipaddress.IPv4Address
IPv6 = ipaddress.IPv6Address
IPv6Net = ipaddress.IPv6Network

T = TypeVar("T")

SEARCH_PATHS = ("./hosts.yml", "/etc/aegir/hosts.yml")
DEFAULT_DOCKER_START = ("systemctl", "start", "docker")
#: Sections validated by the namespace that owns them.
SECTIONS = ("fw", "update", "dns")

#: Keys a host may set, and whether `defaults:` may set them too.
HOST_KEYS: dict[str, bool] = {
    "connection": True,
    "address": False,
    "user": True,
    "port": True,
    "groups": True,
    "srv": True,
    "luks": True,
    "docker_start": True,
    "docker_host": True,
    "known_hosts": True,
    "identity": True,
    "sudo": True,
    "admin_ipv4": False,
    "service_ipv4": False,
    "ipv6_prefix": False,
    "admin_ipv6": False,
    "service_ipv6": False,
    **{s: True for s in SECTIONS},
}
TOP_KEYS = ("defaults", "groups", "hosts")
LUKS_KEYS = ("device", "name")
#: Keys of one group under the top-level ``groups:`` mapping, and of its ``rolling:``.
GROUP_KEYS = ("rolling",)
ROLLING_KEYS = ("serial", "keep_going")


@dataclass(frozen=True)
class Rolling:
    """How an action that changes hosts rolls over them: `size` hosts (or `percent` of them) at a time.

    The first batch is the canary: a failure there stops the roll even with
    `keep_going`; after it, a failed host stops the roll unless `keep_going`.
    `origin` says where the setting came from (``--serial``, ``hosts.yml:4 (group prod)``).
    """

    size: int = 0  # hosts per batch; 0: use `percent`
    percent: int = 0
    keep_going: bool = False
    origin: str = "--serial"

    def batch_size(self, total: int) -> int:
        """Hosts per batch for `total` targets (a percentage rounds up, at least one host)."""
        if self.size:
            return max(1, min(self.size, total or 1))
        return max(1, -(-total * self.percent // 100))

    def batches(self, hosts: Sequence[T]) -> list[list[T]]:
        n = self.batch_size(len(hosts))
        return [list(hosts[i:i + n]) for i in range(0, len(hosts), n)]

    @property
    def spelled(self) -> str:
        """``--serial 1`` / ``--serial 25%`` as the operator would write it."""
        return f"--serial {self.size}" if self.size else f"--serial {self.percent}%"


def parse_serial(value: Any, origin: str = "--serial", keep_going: bool = False) -> Rolling:
    """``1``, ``"2"``, ``"25%"`` -> `Rolling` (`ValueError` with a sentence for anything else)."""
    text = str(value).strip() if isinstance(value, (int, str)) and not isinstance(value, bool) else None
    m = re.fullmatch(r"(\d+)(%?)", text or "")
    if not m or int(m[1]) < 1 or (m[2] and int(m[1]) > 100):
        raise ValueError(f"serial must be a number of hosts (1 or more) or a percentage (1% to 100%), not {value!r}")
    n = int(m[1])
    return Rolling(percent=n, keep_going=keep_going, origin=origin) if m[2] else \
        Rolling(size=n, keep_going=keep_going, origin=origin)


@dataclass(frozen=True)
class Host:
    """One hypervisor as the inventory describes it."""

    name: str
    connection: str = "ssh"  # "ssh" or "local"
    address: str | None = None  # what SSH connects to
    user: str | None = None
    port: int = 22
    groups: tuple[str, ...] = ()
    srv: str = "/srv"
    luks_device: str | None = None
    luks_name: str = "data"
    docker_start: tuple[str, ...] = DEFAULT_DOCKER_START
    docker_host: str | None = None  # DOCKER_HOST on that host; None = its default socket
    known_hosts: str = "~/.ssh/known_hosts"
    identity: str | None = None
    sudo: bool = False  # prefix privileged commands with `sudo -n`
    admin_ipv4: IPv4 | None = None
    service_ipv4: tuple[IPv4, ...] = ()
    ipv6_prefix: IPv6Net | None = None
    admin_ipv6: IPv6 | None = None
    service_ipv6: tuple[IPv6, ...] = ()
    sections: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, compare=False)
    origin: str = ""  # "hosts.yml:12", for messages

    @property
    def is_local(self) -> bool:
        return self.connection == "local"

    @property
    def ssh_target(self) -> str:
        """``user@address:port`` as an operator would type it."""
        user = f"{self.user}@" if self.user else ""
        addr = self.address or self.name
        if ":" in addr:
            addr = f"[{addr}]"
        return f"{user}{addr}:{self.port}"

    def section(self, name: str) -> Mapping[str, Any]:
        """The host's ``fw:``/``update:`` mapping (empty when absent)."""
        return self.sections.get(name, MappingProxyType({}))

    def srv_path(self, *parts: str) -> str:
        """A path under this host's /srv: ``host.srv_path("apps", "x")``."""
        return "/".join([self.srv.rstrip("/") or "", *parts]) if parts else self.srv


@dataclass(frozen=True)
class Section:
    """One host's section of hosts.yml (``fw:``, ``update:``...), and where each of its keys was written."""

    inventory: "Inventory"
    host: Host
    name: str
    values: Mapping[str, Any]

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def error(self, key: tuple[Any, ...], message: str, *, at: tuple[Any, ...] = ()) -> InventoryError:
        """``file:line: HOST: SECTION.KEY: message``, at the host's own key or else the ``defaults:`` one.

        `at` goes on below `key` for the line only (the item of a list that is wrong).
        """
        base: tuple[Any, ...] = ("hosts", self.host.name, self.name)
        if (*base, key[0]) not in self.inventory.lines and ("defaults", self.name, key[0]) in self.inventory.lines:
            base = ("defaults", self.name)
        where = ".".join(map(str, (self.name, *key)))
        return self.inventory.error((*base, *key, *at), f"{self.host.name}: {where}: {message}")


@dataclass(frozen=True)
class Inventory:
    """The validated hosts of one hosts.yml, plus where each key was written."""

    path: str
    hosts: tuple[Host, ...]
    lines: Mapping[tuple[Any, ...], int] = field(default_factory=dict, compare=False)
    rolling: Mapping[str, Rolling] = field(default_factory=dict)  # group -> its ``rolling:`` setting

    def rolling_for(self, hosts: Sequence[Host]) -> Rolling | None:
        """The most cautious ``rolling:`` of the groups `hosts` belong to (smallest batch), or None.

        It rolls over all of `hosts`, members of that group or not; ``keep_going``
        only when every group that sets it agrees.
        """
        found = [self.rolling[g] for g in dict.fromkeys(g for h in hosts for g in h.groups) if g in self.rolling]
        if not found:
            return None
        first = min(found, key=lambda r: r.batch_size(len(hosts)))
        return replace(first, keep_going=all(r.keep_going for r in found))

    def __iter__(self) -> Iterator[Host]:
        return iter(self.hosts)

    def __len__(self) -> int:
        return len(self.hosts)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(h.name for h in self.hosts)

    @property
    def groups(self) -> dict[str, tuple[str, ...]]:
        """Group name -> member host names, in inventory order."""
        out: dict[str, list[str]] = {}
        for h in self.hosts:
            for g in h.groups:
                out.setdefault(g, []).append(h.name)
        return {g: tuple(m) for g, m in out.items()}

    def get(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        raise TargetError(self._unknown(name))

    def line_of(self, *path: Any) -> int | None:
        """The line of the deepest written key along `path` (1-based), if any."""
        for n in range(len(path), 0, -1):
            if path[:n] in self.lines:
                return self.lines[path[:n]]
        return None

    def error(self, path: tuple[Any, ...], message: str) -> InventoryError:
        """An `InventoryError` pointing at the key at `path`."""
        return InventoryError(self.path, self.line_of(*path), message)

    def section(self, host: Host, name: str, keys: Sequence[str]) -> "Section":
        """`host`'s ``name:`` section (its own over ``defaults:``), refused if it has a key not in `keys`.

        Every area's settings (``fw:``, ``update:``...) are read through this:
        one way to say which key is wrong, on which line, with "did you mean".
        """
        sec = Section(self, host, name, host.section(name))
        for key in sec.values:
            if key not in keys:
                close = difflib.get_close_matches(str(key), keys, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(keys)}"
                raise sec.error((key,), f"unknown key ({hint})")
        return sec

    def resolve(self, spec: str | Iterable[str] | None, exclude: str | Iterable[str] | None = None) -> tuple[Host, ...]:
        """Targets for ``-H``: host names, group names, raw ``user@host:port``; ``!word`` leaves one out.

        ``None`` or empty means every host, and so does a spec of exclusions
        only (``-H '!hyp3'``). `exclude` (``--exclude``) takes the same words,
        without ``!``. Order is kept, duplicates dropped. An exclusion that names
        nothing known is refused like an unknown target: a typo must not keep
        a host in; leaving no host at all is refused too.
        """
        words = _words(spec)
        dropped = [w[1:].strip() for w in words if w.startswith("!")] + _words(exclude)
        words = [w for w in words if not w.startswith("!")]
        hosts = [h for w in words for h in self._match(w)] if words else list(self.hosts)
        out: list[Host] = []
        for h in hosts:
            if h not in out:
                out.append(h)
        if not dropped:
            return tuple(out)
        gone = {h.name for w in dropped for h in self._match(w)}
        left = tuple(h for h in out if h.name not in gone)
        if not left:
            raise TargetError(f"no host left: {', '.join(dropped)} excludes every target "
                              f"({', '.join(h.name for h in out)})")
        return left

    def _match(self, word: str) -> list[Host]:
        if word == "all":
            return list(self.hosts)
        if word in self.names:
            return [self.get(word)]
        groups = self.groups
        if word in groups:
            return [self.get(n) for n in groups[word]]
        if _looks_raw(word):
            return [self._raw(word)]
        raise TargetError(self._unknown(word))

    def completions(self, word: str) -> list[str]:
        """What ``-H``/``--exclude`` may complete `word` with: ``prod,!hy`` -> ``prod,!hyp1``, ``prod,!hyp2``..."""
        head, _, last = word.rpartition(",")
        prefix = (head + "," if head else "") + ("!" if last.startswith("!") else "")
        return [prefix + n for n in [*self.names, *sorted(self.groups), "all"]]

    def _unknown(self, word: str) -> str:
        groups = sorted(self.groups)
        close = difflib.get_close_matches(word, [*self.names, *groups], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return (
            f"unknown host or group {word!r}{hint} in {self.path}; "
            f"hosts: {', '.join(self.names) or '-'}; groups: {', '.join(groups) or '-'}; "
            "or give user@host:port"
        )

    def _raw(self, word: str) -> Host:
        user, addr, port = parse_raw_target(word)
        for h in self.hosts:  # a raw address that is an inventory host keeps its plan
            if addr in {h.address, str(h.admin_ipv4), str(h.admin_ipv6), h.name}:
                return replace(h, user=user or h.user, port=port or h.port)
        return Host(name=word, address=addr, user=user, port=port or 22, origin="-H")


def _words(spec: str | Iterable[str] | None) -> list[str]:
    if spec is None:
        return []
    words = [w.strip() for w in (spec.split(",") if isinstance(spec, str) else spec)]
    return [w for w in words if w and w != "!"]


_RAW_RE = re.compile(r"^(?:(?P<user>[^@\s]+)@)?(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:@\s\[\]]+))(?::(?P<port>\d+))?\Z")


def _looks_raw(word: str) -> bool:
    return any(ch in word for ch in "@:.[")


def parse_raw_target(word: str) -> tuple[str | None, str, int | None]:
    """``user@host:port`` / ``[v6]:port`` -> (user, address, port)."""
    if word.count(":") > 1 and not word.startswith("[") and "[" not in word:
        try:  # a bare IPv6 address
            return None, str(IPv6(word.split("@")[-1])), None
        except ValueError:
            pass
    m = _RAW_RE.match(word)
    if not m:
        raise TargetError(f"cannot read target {word!r}: expected user@host:port or user@[v6]:port")
    port = int(m["port"]) if m["port"] else None
    if port is not None and not 0 < port < 65536:
        raise TargetError(f"target {word!r}: port {port} is out of range")
    return m["user"], m["v6"] or m["host"], port


# --------------------------------------------------------------------------- loading


def find(explicit: str | None = None) -> str:
    """The inventory path to use, by the search order; raise if none exists."""
    candidates = [explicit] if explicit else []
    env = os.environ.get("AEGIR_INVENTORY")
    if env and not explicit:
        candidates.append(env)
    if candidates:
        path = candidates[0]
        if not Path(path).is_file():
            raise InventoryError(path, None, "no such inventory file")
        return path
    for p in SEARCH_PATHS:
        if Path(p).is_file():
            return p
    raise InventoryError(
        "hosts.yml", None,
        "no inventory found (looked for --inventory, $AEGIR_INVENTORY, "
        + ", ".join(SEARCH_PATHS) + ")",
    )


def load(path: str | None = None) -> Inventory:
    """Find, read and validate the inventory."""
    real = find(path)
    try:
        text = Path(real).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InventoryError(real, None, f"cannot read: {exc}") from None
    return parse(text, real)


def for_context(c: Any) -> "Inventory":
    """The inventory an Invoke context was given (--inventory, $AEGIR_INVENTORY, the search path)."""
    return load((c.config.get("aegir") or {}).get("inventory"))


def parse(text: str, path: str = "hosts.yml") -> Inventory:
    """Validate inventory `text` (as read from `path`) into an `Inventory`."""
    data, lines = _read_yaml(text, path)
    return _Validator(path, lines).inventory(data)


def _read_yaml(text: str, path: str) -> tuple[Any, dict[tuple[Any, ...], int]]:
    try:
        doc = yamldoc.load(text)
    except YamlError as exc:
        raise InventoryError(path, exc.line or 1, exc.problem) from None
    return doc.data, doc.lines


@dataclass
class _Validator:
    path: str
    lines: dict[tuple[Any, ...], int]

    def fail(self, where: tuple[Any, ...], message: str) -> InventoryError:
        line = 1  # the document itself (empty, not a mapping) is at its first line
        for n in range(len(where), 0, -1):
            if where[:n] in self.lines:
                line = self.lines[where[:n]]
                break
        return InventoryError(self.path, line, message)

    # -- structure ----------------------------------------------------------

    def inventory(self, data: Any) -> Inventory:
        if data is None:
            raise self.fail((), "the inventory is empty: it needs a 'hosts:' mapping")
        if not isinstance(data, dict):
            raise self.fail((), f"the top level must be a mapping with 'hosts:', not a {_kind(data)}")
        self.unknown_keys(data, TOP_KEYS, (), "top-level key")
        defaults = {} if data.get("defaults") is None else data["defaults"]
        if not isinstance(defaults, dict):
            raise self.fail(("defaults",), f"'defaults' must be a mapping, not a {_kind(defaults)}")
        for key in defaults:
            if key in HOST_KEYS and not HOST_KEYS[key]:
                raise self.fail(("defaults", key), f"'{key}' is per host and cannot be in 'defaults'")
        self.unknown_keys(defaults, HOST_KEYS, ("defaults",), "key in defaults")
        hosts = data.get("hosts")
        if not isinstance(hosts, dict) or not hosts:
            raise self.fail(("hosts",) if "hosts" in data else (), "'hosts' must be a non-empty mapping of host name -> settings")
        parsed = [self.host(name, spec, defaults) for name, spec in hosts.items()]
        self.fleet(parsed)
        rolling = self.groups(data.get("groups"), {g for h in parsed for g in h.groups})
        return Inventory(self.path, tuple(parsed), MappingProxyType(dict(self.lines)), MappingProxyType(rolling))

    def groups(self, groups: Any, known: set[str]) -> dict[str, Rolling]:
        """The top-level ``groups:`` mapping: group name -> ``{rolling: {serial, keep_going}}``."""
        if groups is None:
            return {}
        if not isinstance(groups, dict):
            raise self.fail(("groups",), f"'groups' must be a mapping of group name -> settings, not a {_kind(groups)}")
        out = {}
        for name, spec in groups.items():
            at = ("groups", name)
            if name not in known:
                close = difflib.get_close_matches(str(name), sorted(known), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise self.fail(at, f"group {name!r} has no host in it{hint}")
            if not isinstance(spec, dict):
                raise self.fail(at, f"group {name!r} must be a mapping of settings, not a {_kind(spec)}")
            self.unknown_keys(spec, GROUP_KEYS, at, f"key for group {name!r}:")
            rolling = spec.get("rolling")
            if rolling is None:
                continue
            if not isinstance(rolling, dict) or "serial" not in rolling:
                raise self.fail((*at, "rolling"), f"group {name}: rolling must be a mapping with 'serial' "
                                                  "(and optionally 'keep_going')")
            self.unknown_keys(rolling, ROLLING_KEYS, (*at, "rolling"), f"key in group {name}'s rolling:")
            keep_going = rolling.get("keep_going", False)
            if not isinstance(keep_going, bool):
                raise self.fail((*at, "rolling", "keep_going"), f"group {name}: rolling.keep_going must be true or false")
            line = self.lines.get((*at, "rolling"), "?")
            try:
                out[name] = parse_serial(rolling["serial"], f"{self.path}:{line} (group {name})", keep_going)
            except ValueError as exc:
                raise self.fail((*at, "rolling", "serial"), f"group {name}: rolling.{exc}") from None
        return out

    def unknown_keys(self, mapping: dict, allowed: Iterable[str], where: tuple[Any, ...], what: str) -> None:
        allowed = list(allowed)
        for key in mapping:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(allowed)})"
                raise self.fail((*where, key), f"unknown {what} {key!r}{hint}")

    # -- one host -------------------------------------------------------------

    def host(self, name: Any, spec: Any, defaults: dict) -> Host:
        at = ("hosts", name)
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise self.fail(at, f"host name {name!r} must be letters, digits, '_', '.', '-'")
        if name in RESERVED_NAMES:
            raise self.fail(at, f"{name!r} cannot be a host name: -H {name} already means every host")
        if spec is None:
            spec = {}
        if not isinstance(spec, dict):
            raise self.fail(at, f"host {name!r} must be a mapping of settings, not a {_kind(spec)}")
        self.unknown_keys(spec, HOST_KEYS, at, f"key for host {name!r}:")
        merged: dict[str, Any] = {**defaults, **spec}
        for s in SECTIONS:  # sections merge one level deep
            if isinstance(defaults.get(s), dict) and isinstance(spec.get(s), dict):
                merged[s] = {**defaults[s], **spec[s]}

        def where(key: str) -> tuple[Any, ...]:
            return (*at, key) if key in spec else ("defaults", key) if key in defaults else at

        def get_str(key: str, default: str | None = None) -> str | None:
            v = merged.get(key, default)
            if v is not None and not isinstance(v, str):
                raise self.fail(where(key), f"{name}: '{key}' must be a string, not a {_kind(v)}")
            if v is not None and (v == "" or _CONTROL.search(v)):
                raise self.fail(where(key), f"{name}: '{key}' must be a non-empty string without "
                                            f"control characters (newlines, tabs), not {v!r}")
            return v

        connection = get_str("connection", "ssh")
        if connection not in ("ssh", "local"):
            raise self.fail(where("connection"), f"{name}: connection must be 'ssh' or 'local', not {connection!r}")
        port = merged.get("port", 22)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise self.fail(where("port"), f"{name}: port must be an integer from 1 to 65535, not {port!r}")
        groups = merged.get("groups", [])
        if isinstance(groups, str):
            groups = [groups]
        if not isinstance(groups, list) or not all(isinstance(g, str) and NAME_RE.fullmatch(g) for g in groups):
            raise self.fail(where("groups"), f"{name}: groups must be a list of names "
                                             "(letters, digits, '_', '.', '-')")
        for g in groups:
            if g in RESERVED_NAMES:
                raise self.fail(where("groups"), f"{name}: {g!r} cannot be a group name: -H {g} already means every host")
        srv = get_str("srv", "/srv") or "/srv"
        if not srv.startswith("/"):
            raise self.fail(where("srv"), f"{name}: srv must be an absolute path, not {srv!r}")
        srv_parts = srv.rstrip("/").split("/")[1:]
        if not _SRV_RE.fullmatch(srv) or not srv_parts or any(part in ("", ".", "..") for part in srv_parts):
            raise self.fail(where("srv"), f"{name}: srv must be a folder below / without '.', '..' or '//', made of "
                                          f"letters, digits and '_ . + @ : = , -' (like /srv), not {srv!r}")
        user = get_str("user")
        if user is not None and not _USER_RE.fullmatch(user):
            raise self.fail(where("user"), f"{name}: user {user!r} is not a login name")
        luks = {} if merged.get("luks") is None else merged["luks"]
        if not isinstance(luks, dict):
            raise self.fail(where("luks"), f"{name}: luks must be a mapping with 'device' and 'name'")
        self.unknown_keys(luks, LUKS_KEYS, where("luks"), f"key in {name}'s luks:")
        luks_device = luks.get("device")
        luks_name = luks.get("name", "data")
        if luks_device is not None and (not isinstance(luks_device, str) or not _SRV_RE.fullmatch(luks_device)
                                        or ".." in luks_device.split("/")):
            raise self.fail(where("luks"), f"{name}: luks.device must be an absolute path like /dev/md2")
        if not isinstance(luks_name, str) or not NAME_RE.fullmatch(luks_name):
            raise self.fail(where("luks"), f"{name}: luks.name must be a simple mapping name like 'data'")
        start = merged.get("docker_start", list(DEFAULT_DOCKER_START))
        if isinstance(start, str):
            try:
                start = shlex.split(start)
            except ValueError as exc:
                raise self.fail(where("docker_start"), f"{name}: docker_start: {exc}") from None
        if not isinstance(start, list) or not start or not all(isinstance(a, str) for a in start):
            raise self.fail(where("docker_start"), f"{name}: docker_start must be a command line or an argv list")
        if any(_CONTROL.search(a) for a in start) or not start[0] or start[0].startswith("-"):
            raise self.fail(where("docker_start"), f"{name}: docker_start must name a program first and hold "
                                                   "no control characters (newlines, tabs)")
        sudo = merged.get("sudo", False)
        if not isinstance(sudo, bool):
            raise self.fail(where("sudo"), f"{name}: sudo must be true or false")
        sections: dict[str, Mapping[str, Any]] = {}
        for s in SECTIONS:
            if s in merged and merged[s] is not None:
                if not isinstance(merged[s], dict):
                    raise self.fail(where(s), f"{name}: '{s}' must be a mapping")
                sections[s] = MappingProxyType(dict(merged[s]))

        admin4 = self.addr(merged, "admin_ipv4", IPv4, name, where)
        service4 = self.addrs(merged, "service_ipv4", IPv4, name, where)
        prefix = self.prefix(merged, name, where)
        admin6 = self.addr(merged, "admin_ipv6", IPv6, name, where)
        service6 = self.addrs(merged, "service_ipv6", IPv6, name, where)
        for key, addrs in (("admin_ipv6", [admin6] if admin6 else []), ("service_ipv6", service6)):
            for a in addrs:
                if prefix is None:
                    raise self.fail(where(key), f"{name}: {key} {a} given without an ipv6_prefix to hold it")
                if a not in prefix:
                    raise self.fail(where(key), f"{name}: {key} {a} is outside the host's prefix {prefix}")
        if (service4 or service6) and len(service4) != len(service6):
            raise self.fail(
                where("service_ipv6") if "service_ipv6" in spec else where("service_ipv4"),
                f"{name}: {len(service4)} service IPv4(s) but {len(service6)} service IPv6(s); "
                "they must pair one to one",
            )
        address = get_str("address")
        if address is not None and not _is_address(address):
            raise self.fail(where("address"), f"{name}: address {address!r} must be a host name or an IP address "
                                              "(letters, digits, '.', '-', ':'; no spaces, no leading '-', no zone id)")
        if address is None and connection == "ssh":
            address = str(admin4) if admin4 else str(admin6) if admin6 else name
        return Host(
            name=name,
            connection=connection,
            address=address,
            user=user,
            port=port,
            groups=tuple(groups),
            srv=srv.rstrip("/") or "/",
            luks_device=luks_device,
            luks_name=luks_name,
            docker_start=tuple(start),
            docker_host=get_str("docker_host"),
            known_hosts=get_str("known_hosts", "~/.ssh/known_hosts") or "~/.ssh/known_hosts",
            identity=get_str("identity"),
            sudo=sudo,
            admin_ipv4=admin4,
            service_ipv4=tuple(service4),
            ipv6_prefix=prefix,
            admin_ipv6=admin6,
            service_ipv6=tuple(service6),
            sections=MappingProxyType(sections),
            origin=f"{self.path}:{self.lines.get(at, '?')}",
        )

    def addr(self, merged: dict, key: str, kind: type, name: str, where: Any) -> Any:
        v = merged.get(key)
        if v is None:
            return None
        family = "IPv4" if kind is IPv4 else "IPv6"
        if isinstance(v, str) and "%" in v:
            raise self.fail(where(key), f"{name}: {key} {v!r} has a zone id: give the address alone")
        try:
            a = kind(str(v)) if isinstance(v, str) and v == v.strip() else _bad()
        except ValueError:
            raise self.fail(where(key), f"{name}: {key} {v!r} is not an {family} address") from None
        bad = _special(a)
        if bad:
            raise self.fail(where(key), f"{name}: {key} {a} is {bad}: it cannot be a host's {key.split('_')[0]} address")
        return a

    def addrs(self, merged: dict, key: str, kind: type, name: str, where: Any) -> list[Any]:
        v = merged.get(key)
        if v is None:
            return []
        items = v if isinstance(v, list) else [v]
        out = []
        for i, item in enumerate(items):
            a = self.addr({key: item}, key, kind, name,
                          lambda k: (*where(k), i) if isinstance(v, list) else where(k))  # noqa: B023 - called at once
            if a in out:
                raise self.fail(where(key), f"{name}: {key} lists {a} twice")
            out.append(a)
        return out

    def prefix(self, merged: dict, name: str, where: Any) -> IPv6Net | None:
        v = merged.get("ipv6_prefix")
        if v is None:
            return None
        try:
            net = IPv6Net(str(v), strict=True) if isinstance(v, str) and "%" not in v and v == v.strip() else _bad()
        except ValueError as exc:
            raise self.fail(where("ipv6_prefix"), f"{name}: ipv6_prefix {v!r} is not an IPv6 network ({exc})") from None
        if net.prefixlen < MIN_PREFIXLEN:
            raise self.fail(where("ipv6_prefix"), f"{name}: ipv6_prefix {net} is shorter than /{MIN_PREFIXLEN}: "
                                                  "not one host's prefix (the runbook gives each host a /56)")
        bad = _special(net.network_address) or ("link-local" if net.is_link_local else "")
        if bad:
            raise self.fail(where("ipv6_prefix"), f"{name}: ipv6_prefix {net} is {bad}, not a routable prefix")
        if net.prefixlen > 64:
            raise self.fail(where("ipv6_prefix"), f"{name}: ipv6_prefix {net} is longer than /64 (the runbook gives each host a /56)")
        return net

    # -- the fleet ------------------------------------------------------------

    def fleet(self, hosts: list[Host]) -> None:
        names = {h.name for h in hosts}
        for h in hosts:
            for g in h.groups:
                if g in names:
                    raise self.fail(("hosts", h.name, "groups"), f"{h.name}: group {g!r} has the name of a host")
        reached: dict[tuple[str, int], str] = {}
        for h in hosts:
            if h.is_local or h.address is None:
                continue
            spot = (_normal_address(h.address), h.port)
            if spot in reached:
                raise self.fail(("hosts", h.name, "address") if ("hosts", h.name, "address") in self.lines
                                else ("hosts", h.name),
                                f"{h.name}: address {h.address} (port {h.port}) is already {reached[spot]}'s: "
                                "two inventory hosts cannot be one machine")
            reached[spot] = h.name
        owner: dict[Any, tuple[str, str]] = {}
        for h in hosts:
            for key, addrs in (
                ("admin_ipv4", [h.admin_ipv4]), ("service_ipv4", h.service_ipv4),
                ("admin_ipv6", [h.admin_ipv6]), ("service_ipv6", h.service_ipv6),
            ):
                for a in addrs:
                    if a is None:
                        continue
                    if a in owner:
                        other, okey = owner[a]
                        raise self.fail(("hosts", h.name, key), f"{h.name}: {key} {a} is already {other}'s {okey}")
                    owner[a] = (h.name, key)
        with_prefix = [h for h in hosts if h.ipv6_prefix is not None]
        for i, first in enumerate(with_prefix):
            for second in with_prefix[i + 1:]:
                if first.ipv6_prefix.overlaps(second.ipv6_prefix):  # type: ignore[union-attr,arg-type]
                    raise self.fail(
                        ("hosts", second.name, "ipv6_prefix"),
                        f"{second.name}: ipv6_prefix {second.ipv6_prefix} overlaps {first.name}'s {first.ipv6_prefix}",
                    )
        locals_ = [h.name for h in hosts if h.is_local]
        if len(locals_) > 1:
            raise self.fail(("hosts", locals_[1], "connection"), f"{locals_[1]}: only one host can be 'connection: local' (also {locals_[0]})")


#: Names -H gives a meaning of its own.
RESERVED_NAMES = ("all",)
#: The shortest IPv6 prefix one host may hold.
MIN_PREFIXLEN = 32
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SRV_RE = re.compile(r"/[A-Za-z0-9_.+@:=,/-]*")
_USER_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}")
_HOSTNAME_RE = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62}))*\.?")


def _is_address(text: str) -> bool:
    """A DNS name or an IP literal SSH can be pointed at: no spaces, options, zone ids or shell words."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return len(text) <= 253 and bool(_HOSTNAME_RE.fullmatch(text)) and not text.startswith("-")
    return "%" not in text


def _normal_address(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return text.lower().rstrip(".")


def _special(a: IPv4 | IPv6) -> str:
    """Why `a` cannot be a host's admin or service address ("" when it can)."""
    if a.is_unspecified:
        return "the unspecified address"
    if a.is_loopback:
        return "a loopback address"
    if a.is_multicast:
        return "a multicast address"
    if a == IPv4("255.255.255.255"):
        return "the broadcast address"
    if isinstance(a, IPv6) and a.ipv4_mapped is not None:
        return "an IPv4-mapped address"
    return ""


def _bad() -> Any:
    raise ValueError("not a string")


def _kind(v: Any) -> str:
    return {dict: "mapping", list: "list", str: "string", int: "number", float: "number",
            bool: "boolean", type(None): "null"}.get(type(v), type(v).__name__)
