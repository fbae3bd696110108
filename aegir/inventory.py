"""hosts.yml -> typed, validated `Host` objects.

The inventory names every hypervisor, how to reach it (SSH address, user,
port, or ``connection: local`` for this machine), its groups, its ``/srv``, its
LUKS device, how Docker is started, and its addressing plan: an admin IPv4,
service IPv4s, an IPv6 prefix (a ``/56`` in the runbook) holding the admin IPv6
and one service IPv6 per service IPv4.

Every mistake is reported as ``file:line: sentence`` (an `InventoryError`),
never as a traceback; fields are read by `aegir.fields` (one reader, one
sentence per kind of mistake). A mistake in one host's entry breaks that
host only (`Broken`): a command that targets it is refused, the others run;
a YAML syntax error or a mistake in ``defaults:`` or ``groups:`` is raised
at once. Sections owned by one namespace (``fw:``, ``update:``, ``dns:``)
are kept as plain mappings on the host and read by their owner through
`Inventory.section`, which points at the right line.

Search order: ``--inventory`` flag, ``$AEGIR_INVENTORY``, ``./hosts.yml``,
``/etc/aegir/hosts.yml``.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import shlex
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from aegir import fields, yamldoc
from aegir.errors import InventoryError, TargetError, did_you_mean
from aegir.fields import Fields, kind_of
from aegir.sh import NAME_RE
from aegir.yamldoc import YamlError

IPv4 = ipaddress.IPv4Address
IPv6 = ipaddress.IPv6Address
IPv6Net = ipaddress.IPv6Network

T = TypeVar("T")

SEARCH_PATHS = ("./hosts.yml", "/etc/aegir/hosts.yml")
DEFAULT_DOCKER_START = ("systemctl", "start", "docker")
#: Sections validated by the namespace that owns them.
SECTIONS = ("fw", "update", "dns", "mesh")

#: Keys a host may set, and whether `defaults:` may set them too.
HOST_KEYS: dict[str, bool] = {
    "connection": True,
    "address": False,
    "user": True,
    "port": True,
    "groups": True,
    "srv": True,
    "srv_mount": True,
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
    #: False: this /srv is a plain folder on purpose (a test bed, a laptop), not the encrypted volume's mount
    #: point; the tasks that read projects then read it unmounted (`aegir.compose.status.srv_checked`).
    srv_mount: bool = True
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
class Broken:
    """A host whose entry in hosts.yml is wrong: no command may target it until it is fixed.

    The other hosts stay usable. `error` says what is wrong, where; `groups`
    and `addresses` are what could still be read of the entry, so that ``-H``
    with one of its groups or addresses is refused too rather than silently
    leaving it out.
    """

    name: str
    error: InventoryError
    groups: tuple[str, ...] = ()
    addresses: tuple[str, ...] = ()

    def refusal(self, others: Sequence["Broken"] = (), why: str = "") -> InventoryError:
        """The error a command targeting this host (and broken `others`) gets, one line: this host's,
        `why` it was needed, and which other targets are broken."""
        also = [b.name for b in others if b.error is not self.error]  # a clash names both hosts already
        more = f"; also broken: {', '.join(also)}" if also else ""
        return InventoryError(self.error.path, self.error.line,
                              f"{self.error.problem}{f' ({why})' if why else ''}{more}")


@dataclass(frozen=True)
class Inventory:
    """The validated hosts of one hosts.yml, plus where each key was written."""

    path: str
    hosts: tuple[Host, ...]
    lines: Mapping[tuple[Any, ...], int] = field(default_factory=dict, compare=False)
    rolling: Mapping[str, Rolling] = field(default_factory=dict)  # group -> its ``rolling:`` setting
    broken: tuple[Broken, ...] = ()  # entries a command may not target until fixed, in file order

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
        """Group name -> member host names (broken entries last), in inventory order."""
        out: dict[str, list[str]] = {}
        for h in self._entries:
            for g in h.groups:
                out.setdefault(g, []).append(h.name)
        return {g: tuple(m) for g, m in out.items()}

    @property
    def _entries(self) -> tuple[Host | Broken, ...]:
        return (*self.hosts, *self.broken)

    def get(self, name: str) -> Host:
        """The host named `name`; its entry's error when it is broken, `TargetError` when there is none."""
        for h in self._entries:
            if h.name == name:
                if isinstance(h, Broken):
                    raise h.refusal()
                return h
        raise TargetError(self._unknown(name))

    def every_host(self, why: str = "") -> tuple[Host, ...]:
        """Every host, for what needs all of them (`why` says what: "the DNS zones cover every host").

        Refused, with the first broken entry's error, while any entry is broken.
        """
        if self.broken:
            raise self.broken[0].refusal(self.broken, why)
        return self.hosts

    def line_of(self, *path: Any) -> int | None:
        """The line of the deepest written key along `path` (1-based), if any."""
        return yamldoc.line_in(self.lines, path)

    def error(self, path: tuple[Any, ...], message: str) -> InventoryError:
        """An `InventoryError` pointing at the key at `path`."""
        return InventoryError(self.path, self.line_of(*path), message)

    def section(self, host: Host, name: str, keys: Sequence[str]) -> Fields:
        """`host`'s ``name:`` section (its own over ``defaults:``), refused if it has a key not in `keys`.

        Every area's settings (``fw:``, ``update:``...) are read through this
        (`aegir.fields.Fields`): a mistake is ``file:line: HOST: SECTION.KEY: sentence``,
        at the host's own key or else at the ``defaults:`` one it inherits.
        """
        def line(keys: tuple[Any, ...]) -> int | None:
            base: tuple[Any, ...] = ("hosts", host.name, name)
            if keys and (*base, keys[0]) not in self.lines and ("defaults", name, keys[0]) in self.lines:
                base = ("defaults", name)
            return self.line_of(*base, *keys)

        sec = Fields(host.section(name), self.path, line, host.name, (name,), InventoryError)
        sec.check(keys)
        return sec

    def resolve(self, spec: str | Iterable[str] | None, exclude: str | Iterable[str] | None = None) -> tuple[Host, ...]:
        """Targets for ``-H``: host names, group names, raw ``user@host:port``; ``!word`` leaves one out.

        ``None`` or empty means every host, and so does a spec of exclusions
        only (``-H '!hyp3'``). `exclude` (``--exclude``) takes the same words,
        without ``!``. Order is kept, duplicates dropped. An exclusion that names
        nothing known is refused like an unknown target: a typo must not keep
        a host in; leaving no host at all is refused too. A target whose entry
        is broken (`Broken`) is refused with its error; leaving it out works.
        """
        words = _words(spec)
        dropped = [w[1:].strip() for w in words if w.startswith("!")] + _words(exclude)
        words = [w for w in words if not w.startswith("!")]
        hosts = [h for w in words for h in self._match(w)] if words else list(self._entries)
        out: list[Host | Broken] = []
        for h in hosts:
            if h not in out:
                out.append(h)
        if dropped:
            gone = {h.name for w in dropped for h in self._match(w, among=out)}
            left = [h for h in out if h.name not in gone]
            if not left:
                raise TargetError(f"no host left: {', '.join(dropped)} excludes every target "
                                  f"({', '.join(h.name for h in out)})")
            out = left
        broken = [h for h in out if isinstance(h, Broken)]
        if broken:
            raise broken[0].refusal(broken)
        return tuple(h for h in out if isinstance(h, Host))

    def _match(self, word: str, among: Sequence[Host | Broken] | None = None) -> list[Host | Broken]:
        """The hosts `word` names; `among` (the targets) makes it an exclusion: a raw address must then be an
        inventory host's or a target's, else it is refused like an unknown name (it would leave nothing out)."""
        if word == "all":
            return list(self._entries)
        found = [h for h in self._entries if h.name == word] or [h for h in self._entries if word in h.groups]
        if found:
            return found
        if _looks_raw(word):
            if among is None:
                return [self._raw(word)]
            _, addr, _ = parse_raw_target(word)
            found = [h for h in (*self.hosts, *among) if isinstance(h, Host) and (h.name == word or addr in {
                h.name, h.address, str(h.admin_ipv4), str(h.admin_ipv6)})]
            found += [b for b in self.broken if addr in {*b.addresses, b.name}]
            if found:
                return found
        raise TargetError(self._unknown(word, excluding=among is not None))

    def completions(self, word: str) -> list[str]:
        """What ``-H``/``--exclude`` may complete `word` with: ``prod,!hy`` -> ``prod,!hyp1``, ``prod,!hyp2``..."""
        head, _, last = word.rpartition(",")
        prefix = (head + "," if head else "") + ("!" if last.startswith("!") else "")
        return [prefix + n for n in [*self.names, *sorted(self.groups), "all"]]

    def _unknown(self, word: str, excluding: bool = False) -> str:
        groups = sorted(self.groups)
        names = [h.name for h in self._entries]
        _, addr, _ = parse_raw_target(word) if excluding and _looks_raw(word) else (None, word, None)
        addresses = [h.address for h in self.hosts if h.address and not _is_ip(h.address)]
        hint = "" if _is_ip(addr) else did_you_mean(addr, [*names, *groups, *addresses])  # no near-miss of an IP
        return (  # an exclusion ('!word', --exclude) that names nothing is refused: a typo must not keep a host in
            f"unknown host or group {word!r}{' to leave out' if excluding else ''}{hint} in {self.path}; "
            f"hosts: {', '.join(names) or '-'}; groups: {', '.join(groups) or '-'}"
            + ("" if excluding else "; or give user@host:port")
        )

    def _raw(self, word: str) -> Host | Broken:
        user, addr, port = parse_raw_target(word)
        for h in self.hosts:  # a raw address that is an inventory host keeps its plan
            if addr in {h.address, str(h.admin_ipv4), str(h.admin_ipv6), h.name}:
                return replace(h, user=user or h.user, port=port or h.port)
        for b in self.broken:  # ...and one of a broken entry is refused with it
            if addr in {*b.addresses, b.name}:
                return b
        return Host(name=word, address=addr, user=user, port=port or 22, origin="-H")


def _words(spec: str | Iterable[str] | None) -> list[str]:
    if spec is None:
        return []
    words = [w.strip() for w in (spec.split(",") if isinstance(spec, str) else spec)]
    return [w for w in words if w and w != "!"]


_RAW_RE = re.compile(r"^(?:(?P<user>[^@\s]+)@)?(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:@\s\[\]]+))(?::(?P<port>\d+))?\Z")


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


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
    try:
        port = fields.port(m["port"], text=True) if m["port"] else None
    except fields.FieldError as exc:
        raise TargetError(f"target {word!r}: {exc}") from None
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
    """Validate inventory `text` (as read from `path`) into an `Inventory`.

    A YAML syntax error, or a mistake outside the host entries (the top level,
    ``defaults:``, ``groups:``), raises `InventoryError`: nothing can be
    trusted. A mistake in one host's entry, or a clash between entries (two
    hosts at one address, overlapping prefixes), makes those hosts `Broken`:
    a command that targets one of them is refused with the error, the others
    work (`Inventory.resolve`).
    """
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

    def line(self, where: tuple[Any, ...]) -> int:
        """The line of `where` (the document itself, empty or not a mapping, is at its first line)."""
        return yamldoc.line_in(self.lines, where) or 1

    def fail(self, where: tuple[Any, ...], message: str) -> InventoryError:
        return InventoryError(self.path, self.line(where), message)

    def fields(self, values: Mapping[Any, Any], at: tuple[Any, ...], head: str = "") -> Fields:
        """The mapping at `at`, read by the field reader: mistakes as `InventoryError` at their line."""
        return Fields(values, self.path, lambda keys: self.line((*at, *keys)), head, (), InventoryError)

    # -- structure ----------------------------------------------------------

    def inventory(self, data: Any) -> Inventory:
        if data is None:
            raise self.fail((), "the inventory is empty: it needs a 'hosts:' mapping")
        if not isinstance(data, dict):
            raise self.fail((), f"the top level must be a mapping with 'hosts:', not {kind_of(data)}")
        self.fields(data, ()).check(TOP_KEYS, "top-level key")
        defaults = {} if data.get("defaults") is None else data["defaults"]
        if not isinstance(defaults, dict):
            raise self.fail(("defaults",), f"'defaults' must be a mapping, not {kind_of(defaults)}")
        for key in defaults:
            if key in HOST_KEYS and not HOST_KEYS[key]:
                raise self.fail(("defaults", key), f"'{key}' is per host and cannot be in 'defaults'")
        self.host("defaults", {}, defaults, at=("defaults",))  # a mistake there is every host's: refused here
        hosts = data.get("hosts")
        if not isinstance(hosts, dict) or not hosts:
            raise self.fail(("hosts",) if "hosts" in data else (), "'hosts' must be a non-empty mapping of host name -> settings")
        parsed: list[Host] = []
        broken: dict[str, Broken] = {}
        for name, spec in hosts.items():
            try:
                parsed.append(self.host(name, spec, defaults))
            except InventoryError as exc:
                broken[str(name)] = _broken(str(name), exc, spec, defaults)
        clashes = self.fleet(parsed, [*broken])
        for h in parsed:  # a clash between entries makes each host involved broken
            clash = clashes.get(h.name)
            if clash is not None:
                broken[h.name] = Broken(h.name, clash, h.groups, tuple(str(a) for a in (h.address, h.admin_ipv4,
                                                                                      h.admin_ipv6) if a))
        order = [str(n) for n in hosts]
        good = tuple(h for h in parsed if h.name not in broken)
        known = {g for h in good for g in h.groups} | {g for b in broken.values() for g in b.groups}
        rolling = self.groups(data.get("groups"), known)
        return Inventory(self.path, good, MappingProxyType(dict(self.lines)), MappingProxyType(rolling),
                         tuple(sorted(broken.values(), key=lambda b: order.index(b.name))))

    def groups(self, groups: Any, known: set[str]) -> dict[str, Rolling]:
        """The top-level ``groups:`` mapping: group name -> ``{rolling: {serial, keep_going}}``."""
        if groups is None:
            return {}
        if not isinstance(groups, dict):
            raise self.fail(("groups",), f"'groups' must be a mapping of group name -> settings, not {kind_of(groups)}")
        out = {}
        for name, spec in groups.items():
            at = ("groups", name)
            if name not in known:
                close = difflib.get_close_matches(str(name), sorted(known), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise self.fail(at, f"group {name!r} has no host in it{hint}")
            if not isinstance(spec, dict):
                raise self.fail(at, f"group {name!r} must be a mapping of settings, not {kind_of(spec)}")
            group = self.fields(spec, at, f"group {name}")
            group.check(GROUP_KEYS)
            if spec.get("rolling") is None:
                continue
            if not isinstance(spec["rolling"], dict) or "serial" not in spec["rolling"]:
                raise group.fail(("rolling",), "must be a mapping with 'serial' (and optionally 'keep_going')")
            rolling = group.below("rolling", ROLLING_KEYS)
            keep_going = rolling.get("keep_going", fields.boolean, False)
            origin = f"{self.path}:{self.line((*at, 'rolling'))} (group {name})"

            def serial(value: Any, origin: str = origin, keep_going: bool = keep_going) -> Rolling:
                try:
                    return parse_serial(value, origin, keep_going)
                except ValueError as exc:
                    raise fields.FieldError(str(exc).removeprefix("serial ")) from None

            out[name] = rolling.get("serial", serial)
        return out

    # -- one host -------------------------------------------------------------

    def host(self, name: Any, spec: Any, defaults: dict, at: tuple[Any, ...] | None = None) -> Host:
        """One host's entry over `defaults` (`at`: where it is written, ``hosts.NAME`` by default)."""
        at = at or ("hosts", name)
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise self.fail(at, f"host name {name!r} must be letters, digits, '_', '.', '-'")
        if name in RESERVED_NAMES:
            raise self.fail(at, f"{name!r} cannot be a host name: -H {name} already means every host")
        if spec is None:
            spec = {}
        if not isinstance(spec, dict):
            raise self.fail(at, f"host {name!r} must be a mapping of settings, not {kind_of(spec)}")
        merged: dict[str, Any] = {**defaults, **spec}
        for s in SECTIONS:  # sections merge one level deep
            if isinstance(defaults.get(s), dict) and isinstance(spec.get(s), dict):
                merged[s] = {**defaults[s], **spec[s]}

        def line(keys: tuple[Any, ...]) -> int:  # the host's own key, else the defaults' one
            key = keys[0] if keys else None
            where = (*at, key) if key in spec else ("defaults", key) if key in defaults else at
            return self.line((*where, *keys[1:]))

        f = Fields(merged, self.path, line, name, (), InventoryError)
        f.check(HOST_KEYS)
        connection = f.get("connection", fields.choice("ssh", "local"), "ssh")
        port = f.get("port", fields.port, 22)
        groups = f.get("groups", fields.list_of(_group, "group names"), [])
        srv = f.get("srv", _srv, "/srv")
        user = f.get("user", _user)
        luks = f.below("luks", LUKS_KEYS)
        luks_device = luks.get("device", _device)
        luks_name = luks.get("name", fields.name("luks mapping"), "data")
        start = f.get("docker_start", _command, list(DEFAULT_DOCKER_START))
        sudo = f.get("sudo", fields.boolean, False)
        sections = {s: MappingProxyType(dict(f.below(s).values)) for s in SECTIONS if merged.get(s) is not None}

        admin4 = f.get("admin_ipv4", _host_ip(4, "admin"))
        service4 = f.get("service_ipv4", fields.list_of(_host_ip(4, "service"), "IPv4 addresses"), [])
        prefix = f.get("ipv6_prefix", _prefix)
        admin6 = f.get("admin_ipv6", _host_ip(6, "admin"))
        service6 = f.get("service_ipv6", fields.list_of(_host_ip(6, "service"), "IPv6 addresses"), [])
        for key, addrs in (("service_ipv4", service4), ("service_ipv6", service6)):
            twice = next((a for i, a in enumerate(addrs) if a in addrs[:i]), None)
            if twice is not None:
                raise f.fail((key,), f"lists {twice} twice")
        for key, addrs in (("admin_ipv6", [admin6] if admin6 else []), ("service_ipv6", service6)):
            for a in addrs:
                if prefix is None:
                    raise f.fail((key,), f"{a} given without an ipv6_prefix to hold it")
                if a not in prefix:
                    raise f.fail((key,), f"{a} is outside the host's prefix {prefix}")
        if (service4 or service6) and len(service4) != len(service6):
            raise f.fail(("service_ipv6",) if "service_ipv6" in spec else ("service_ipv4",),
                         f"{len(service4)} service IPv4(s) but {len(service6)} service IPv6(s); "
                         "they must pair one to one")
        address = f.get("address", fields.address)
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
            srv_mount=f.get("srv_mount", fields.boolean, True),
            luks_device=luks_device,
            luks_name=luks_name,
            docker_start=tuple(start),
            docker_host=f.get("docker_host", fields.text),
            known_hosts=f.get("known_hosts", fields.text, "~/.ssh/known_hosts"),
            identity=f.get("identity", fields.text),
            sudo=sudo,
            admin_ipv4=admin4,
            service_ipv4=tuple(service4),
            ipv6_prefix=prefix,
            admin_ipv6=admin6,
            service_ipv6=tuple(service6),
            sections=MappingProxyType(sections),
            origin=f"{self.path}:{self.lines.get(at, '?')}",
        )

    # -- the fleet ------------------------------------------------------------

    def fleet(self, hosts: list[Host], broken: Sequence[str] = ()) -> dict[str, InventoryError]:
        """Clashes between entries: host name -> the first error it is involved in.

        Each clash breaks every host involved (which of two entries holds the
        typo, aegir cannot tell), not the others: a group that has the name of
        a host (`-H NAME` would mean two things), one address for two hosts
        (one machine under two entries), one admin or service address twice,
        overlapping IPv6 prefixes, two ``connection: local`` hosts.
        """
        bad: dict[str, InventoryError] = {}

        def clash(where: tuple[Any, ...], message: str, *names: str) -> None:
            exc = self.fail(where, message)
            for n in names:
                bad.setdefault(n, exc)

        names = {h.name for h in hosts} | set(broken)
        for h in hosts:
            for g in h.groups:
                if g in names:
                    clash(("hosts", h.name, "groups"), f"{h.name}: groups: {g!r} is the name of a host", h.name)
        reached: dict[tuple[str, int], str] = {}
        for h in hosts:
            if h.is_local or h.address is None:
                continue
            spot = (_normal_address(h.address), h.port)
            if spot in reached:
                clash(("hosts", h.name, "address") if ("hosts", h.name, "address") in self.lines else ("hosts", h.name),
                      f"{h.name}: address {h.address} (port {h.port}) is already {reached[spot]}'s: "
                      "two inventory hosts cannot be one machine", h.name, reached[spot])
            else:
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
                        clash(("hosts", h.name, key), f"{h.name}: {key}: {a} is already {other}'s {okey}", h.name, other)
                    else:
                        owner[a] = (h.name, key)
        with_prefix = [h for h in hosts if h.ipv6_prefix is not None]
        for i, first in enumerate(with_prefix):
            for second in with_prefix[i + 1:]:
                if first.ipv6_prefix.overlaps(second.ipv6_prefix):  # type: ignore[union-attr,arg-type]
                    clash(("hosts", second.name, "ipv6_prefix"), f"{second.name}: ipv6_prefix: {second.ipv6_prefix} "
                          f"overlaps {first.name}'s {first.ipv6_prefix}", first.name, second.name)
        locals_ = [h.name for h in hosts if h.is_local]
        for extra in locals_[1:]:
            clash(("hosts", extra, "connection"), f"{extra}: only one host can be 'connection: local' "
                  f"(also {locals_[0]})", locals_[0], extra)
        return bad


def _broken(name: str, exc: InventoryError, spec: Any, defaults: Mapping[str, Any]) -> Broken:
    """A broken entry, with the groups and addresses that can still be read from it (leniently)."""
    merged = {**defaults, **spec} if isinstance(spec, dict) else dict(defaults)
    groups = merged.get("groups")
    groups = [groups] if isinstance(groups, str) else groups if isinstance(groups, list) else []
    return Broken(name, exc, tuple(g for g in groups if isinstance(g, str) and NAME_RE.fullmatch(g)),
                  tuple(v for k in ("address", "admin_ipv4", "admin_ipv6") if isinstance(v := merged.get(k), str)))


def _group(value: Any) -> str:
    group = fields.name("group")(value)
    if group in RESERVED_NAMES:
        raise fields.FieldError(f"{group!r} cannot be a group name: -H {group} already means every host")
    return group


def _srv(value: Any) -> str:
    srv = fields.text(value)
    if not srv.startswith("/"):
        raise fields.FieldError(f"must be an absolute path, not {srv!r}")
    parts = srv.rstrip("/").split("/")[1:]
    if not _SRV_RE.fullmatch(srv) or not parts or any(part in ("", ".", "..") for part in parts):
        raise fields.FieldError(f"must be a folder below / without '.', '..' or '//', made of letters, digits "
                                f"and '_ . + @ : = , -' (like /srv), not {srv!r}")
    return srv


def _user(value: Any) -> str:
    user = fields.text(value)
    if not _USER_RE.fullmatch(user):
        raise fields.FieldError(f"{user!r} is not a login name")
    return user


def _device(value: Any) -> str:
    if not isinstance(value, str) or not _SRV_RE.fullmatch(value) or ".." in value.split("/"):
        raise fields.FieldError(f"must be an absolute path like /dev/md2, not {value!r}")
    return value


def _command(value: Any) -> list[str]:
    """A command line (split like a shell would, nothing run) or an argv list, naming a program first."""
    if isinstance(value, str):
        try:
            value = shlex.split(value)
        except ValueError as exc:
            raise fields.FieldError(str(exc)) from None
    if not isinstance(value, list) or not value or not all(isinstance(a, str) for a in value):
        raise fields.FieldError("must be a command line or an argv list")
    if any(fields.CONTROL.search(a) for a in value) or not all(value) or value[0].startswith("-"):
        raise fields.FieldError("must name a program first and hold no empty word and no control characters "
                                "(newlines, tabs)")
    return value


def _host_ip(version: int, role: str) -> Callable[[Any], Any]:
    """A parser of a host's `role` (admin, service) IPv`version` address: no special address."""
    def parse(value: Any) -> Any:
        a = fields.ip(value, version)
        bad = _special(a)
        if bad:
            raise fields.FieldError(f"{a} is {bad}: it cannot be a host's {role} address")
        return a
    return parse


def _prefix(value: Any) -> IPv6Net:
    try:
        net = IPv6Net(str(value), strict=True) if isinstance(value, str) and "%" not in value \
            and value == value.strip() else _bad()
    except ValueError as exc:
        raise fields.FieldError(f"{value!r} is not an IPv6 network ({exc})") from None
    if net.prefixlen < MIN_PREFIXLEN:
        raise fields.FieldError(f"{net} is shorter than /{MIN_PREFIXLEN}: not one host's prefix "
                                "(the runbook gives each host a /56)")
    bad = _special(net.network_address) or ("link-local" if net.is_link_local else "")
    if bad:
        raise fields.FieldError(f"{net} is {bad}, not a routable prefix")
    if net.prefixlen > 64:
        raise fields.FieldError(f"{net} is longer than /64 (the runbook gives each host a /56)")
    return net


#: Names -H gives a meaning of its own.
RESERVED_NAMES = ("all",)
#: The shortest IPv6 prefix one host may hold.
MIN_PREFIXLEN = 32
_SRV_RE = re.compile(r"/[A-Za-z0-9_.+@:=,/-]*")
_USER_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}")


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
