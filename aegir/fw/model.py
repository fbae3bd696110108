"""The exposures: which host address and port reach which container, from ``docker inspect``.

Pure: `parse_container` reads one ``docker inspect`` object (the Docker SDK's
``inspect_container`` answer is the same JSON), `expose` turns the running
containers and the inventory host into `Exposures`:

- every published binding counts (all of them, tcp, udp and sctp; a published
  range is one binding per port, as Docker records it);
- a binding's host address is the one it names if that is one of the host's
  service addresses; no address (``"80:80"``) means every service address,
  ``0.0.0.0`` every service IPv4, ``::`` every service IPv6;
- the target is the container's address of the same family (its IPv4 or its
  ``GlobalIPv6Address``, on its first network by name that has one);
- stopped containers and host-network containers expose nothing; admin
  addresses (and the address aegir connects to) are never published: SSH
  lives there; whatever is skipped is said in `Exposures.warnings`.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from aegir import fields
from aegir.errors import AegirError
from aegir.inventory import Host

Addr = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Network:
    """A container's addresses on one Docker network."""

    name: str
    ipv4: ipaddress.IPv4Address | None
    ipv6: ipaddress.IPv6Address | None  # GlobalIPv6Address
    id: str = ""  # Docker's NetworkID: names its bridge (br-<first 12>) unless the network names one


@dataclass(frozen=True)
class Binding:
    """One published port as Docker records it; ``host_ip == ""`` means "no address given"."""

    proto: str
    container_port: int
    host_ip: str
    host_port: int


@dataclass(frozen=True)
class Container:
    """What the firewall needs of one ``docker inspect`` object."""

    id: str
    name: str
    running: bool
    networks: tuple[Network, ...]
    bindings: tuple[Binding, ...]

    def address(self, version: int) -> Addr | None:
        """The container's IPv4 or global IPv6 on its first network (by name) that has one."""
        for n in self.networks:
            a = n.ipv4 if version == 4 else n.ipv6
            if a is not None:
                return a
        return None


@dataclass(frozen=True)
class Exposure:
    """``host_addr:host_port/proto`` is DNATed to ``target_addr:target_port`` of `container`."""

    host_addr: Addr
    proto: str
    host_port: int
    container: str
    target_addr: Addr
    target_port: int

    @property
    def version(self) -> int:
        return self.host_addr.version

    @property
    def key(self) -> tuple[int, int, str, int]:
        """What two exposures may not share (the host's address, proto, port), as a fast sort key."""
        return (*_rank(self.host_addr), self.proto, self.host_port)

    def __str__(self) -> str:
        return f"{self.container} {self.proto}/{hostport(self.host_addr, self.host_port)}" \
               f"->{hostport(self.target_addr, self.target_port)}"


@dataclass(frozen=True)
class Exposures:
    """Every exposure of a host, sorted, plus the running containers and what was skipped."""

    items: tuple[Exposure, ...]
    containers: tuple[Container, ...]
    warnings: tuple[str, ...] = ()

    def of(self, version: int) -> tuple[Exposure, ...]:
        """The exposures on the host's IPv4 (4) or IPv6 (6) addresses, in order."""
        return self._by_version[version]

    def targets(self, version: int) -> tuple[tuple[Addr, str, int], ...]:
        """The distinct ``container address . proto . port`` the forward chain lets through."""
        seen = {(int(e.target_addr), e.proto, e.target_port): (e.target_addr, e.proto, e.target_port)
                for e in self.of(version)}
        return tuple(seen[k] for k in sorted(seen))

    @cached_property
    def _by_version(self) -> dict[int, tuple[Exposure, ...]]:
        split: dict[int, list[Exposure]] = {4: [], 6: []}
        for e in self.items:
            split[6 if isinstance(e.host_addr, ipaddress.IPv6Address) else 4].append(e)
        return {v: tuple(es) for v, es in split.items()}


def _rank(addr: Addr) -> tuple[int, int]:
    """(4 or 6, the address as an integer): orders and compares addresses without hashing them (slow)."""
    return (6 if isinstance(addr, ipaddress.IPv6Address) else 4, int(addr))


def hostport(addr: Addr, port: int) -> str:
    """``192.0.2.1:80`` or ``[2001:db8::1]:80``."""
    return f"[{addr}]:{port}" if addr.version == 6 else f"{addr}:{port}"


# --------------------------------------------------------------------------- parsing


class InspectError(AegirError):
    """A ``docker inspect`` object of a shape Docker does not write: refused, named, never half-read."""


_IFNAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,15}")
_PORT_RE = re.compile(r"[0-9]{1,5}")  # ASCII digits only: str.isdigit() takes '²' and '٨'


def _port(value: Any, where: str) -> int:
    """A port number 1-65535 (an int, or ASCII digits: `aegir.fields.port`), or `InspectError`."""
    try:
        return fields.port(value, text=True)
    except fields.FieldError as exc:
        raise InspectError(f"{where}: {exc}") from None


def _ip(value: Any, kind: type, where: str) -> Any:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise InspectError(f"{where}: {value!r} is not an address")
    try:
        return kind(value)
    except ValueError:
        raise InspectError(f"{where}: {value!r} is not an address") from None


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    """`value` if it is a JSON object (None reads as empty), else `InspectError`."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InspectError(f"{where}: expected an object, got {type(value).__name__}")
    return value


def _entries(value: Any, where: str) -> list[Mapping[str, Any]]:
    """A port's list of bindings (None reads as none), each an object."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise InspectError(f"{where}: expected a list of bindings, got {type(value).__name__}")
    return [_mapping(b, f"{where}[{i}]") for i, b in enumerate(value)]


def _port_key(key: str, where: str) -> tuple[int, str]:
    port, _, proto = str(key).partition("/")
    proto = proto or "tcp"
    if proto not in ("tcp", "udp", "sctp"):
        raise InspectError(f"{where}: {key!r} is not PORT/tcp, PORT/udp or PORT/sctp")
    return _port(port, where), proto


def _unspecified(asked: Sequence[Mapping[str, Any]], host_port: int) -> bool:
    """Was `host_port` requested without a host address (``"8080:80"``, ``"8000-8010:80"``, ``"80"``)?"""
    for r in asked:
        if r.get("HostIp"):
            continue
        wanted = str(r.get("HostPort") or "")
        lo, _, hi = wanted.partition("-")
        if not wanted:  # a port Docker picks: it cannot be told apart, count it as asked
            return True
        if _PORT_RE.fullmatch(lo) and int(lo) <= host_port <= int(hi if _PORT_RE.fullmatch(hi) else lo):
            return True
    return False


def _name(data: Mapping[str, Any]) -> str:
    raw = data.get("Name") or data.get("Id") or "?"
    return str(raw).lstrip("/") if isinstance(raw, str) else "?"


def parse_container(data: Mapping[str, Any]) -> Container:
    """One ``docker inspect`` object -> `Container` (missing fields read as empty).

    A field of a shape Docker does not write (``Ports`` as a list, a port 0 or
    above 65535, non-ASCII digits, an address that is not one) is refused with
    `InspectError` naming the container and the field.
    """
    if not isinstance(data, Mapping):
        raise InspectError(f"docker inspect: expected an object, got {type(data).__name__}")
    name = _name(data)
    where = f"container {name!r}"
    settings = _mapping(data.get("NetworkSettings"), f"{where}: NetworkSettings")
    host_config = _mapping(data.get("HostConfig"), f"{where}: HostConfig")
    nets = _mapping(settings.get("Networks"), f"{where}: NetworkSettings.Networks")
    networks = []
    for net_name, n in nets.items():
        at = f"{where}: NetworkSettings.Networks[{net_name!r}]"
        n = _mapping(n, at)
        networks.append(Network(str(net_name), _ip(n.get("IPAddress"), ipaddress.IPv4Address, f"{at}.IPAddress"),
                                _ip(n.get("GlobalIPv6Address"), ipaddress.IPv6Address,
                                    f"{at}.GlobalIPv6Address"),
                                str(n.get("NetworkID") or "")))
    networks.sort(key=lambda n: n.name)
    requested = _mapping(host_config.get("PortBindings"), f"{where}: HostConfig.PortBindings")
    actual = settings.get("Ports")
    if actual is None:  # never started: what was asked for
        actual = requested
    actual = _mapping(actual, f"{where}: NetworkSettings.Ports")
    bindings: list[Binding] = []
    for key, raw in actual.items():
        at = f"{where}: NetworkSettings.Ports[{key!r}]"
        entries = _entries(raw, at)
        if not entries:
            continue
        port, proto = _port_key(key, at)
        asked = _entries(requested.get(key), f"{where}: HostConfig.PortBindings[{key!r}]")
        for i, b in enumerate(entries):
            if b.get("HostPort") in (None, ""):
                continue  # exposed, not published
            host_port = _port(b.get("HostPort"), f"{at}[{i}].HostPort")
            host_ip = b.get("HostIp") or ""
            if not isinstance(host_ip, str):
                raise InspectError(f"{at}[{i}].HostIp: {host_ip!r} is not an address")
            # "80:80" is recorded as HostIp "" but reported as 0.0.0.0 and :: once running; an explicit
            # "0.0.0.0:81:80" next to it stays IPv4 only: match the request by its host port
            if host_ip in ("0.0.0.0", "::") and _unspecified(asked, host_port):
                host_ip = ""
            new = Binding(proto, port, host_ip, host_port)
            if new not in bindings:
                bindings.append(new)
    state = _mapping(data.get("State"), f"{where}: State")
    return Container(
        id=str(data.get("Id") or ""),
        name=name,
        running=state.get("Running") is True,
        networks=tuple(networks),
        bindings=tuple(bindings),
    )


def load_inspect(text: str, source: str = "-") -> list[Container]:
    """A saved ``docker inspect`` array (or one object) -> containers; `AegirError` if not."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AegirError(f"{source}:{exc.lineno}: not JSON: {exc.msg}") from None
    if isinstance(data, Mapping):
        data = [data]
    if not isinstance(data, list) or not all(isinstance(d, Mapping) for d in data):
        raise AegirError(f"{source}: expected the array `docker inspect` prints")
    return [parse_container(d) for d in data]


def bridge_name(network: str, network_id: str, options: Mapping[str, Any] | None = None) -> str | None:
    """The host interface of a Docker bridge network: the one its options name, ``docker0`` for the
    default ``bridge`` network, else ``br-`` and the first 12 characters of its id (as Docker does)."""
    named = (options or {}).get("com.docker.network.bridge.name")
    if isinstance(named, str) and named:
        found = named
    elif network == "bridge":
        found = "docker0"
    elif network in ("host", "none") or not network_id:
        return None
    else:
        found = f"br-{network_id[:12]}"
    return found if _IFNAME_RE.fullmatch(found) else None  # from the host: only what nft reads as a name


def bridges_of(containers: Iterable[Container]) -> tuple[str, ...]:
    """The bridges the containers' networks use, as far as ``docker inspect`` tells (offline rendering)."""
    found = {bridge_name(n.name, n.id) for c in containers for n in c.networks}
    return tuple(sorted(b for b in found if b))


# --------------------------------------------------------------------------- exposures


def admin_addresses(host: Host) -> dict[int, list[Addr]]:
    """Where SSH must always reach: the admin addresses, plus the address aegir connects to."""
    admin: dict[int, list[Addr]] = {4: [], 6: []}
    candidates: list[Any] = [host.admin_ipv4, host.admin_ipv6]
    try:
        candidates.append(ipaddress.ip_address(host.address or ""))
    except ValueError:
        pass  # a host name: its addresses are the admin ones, or unknown
    for a in candidates:
        if a is not None and a not in admin[a.version]:
            admin[a.version].append(a)
    return admin



def ssh_anywhere(host: Host) -> bool:
    """May SSH arrive on any of the host's addresses? Yes when no admin address is known, or when
    aegir connects to a name (it may resolve to a service address)."""
    named = admin_addresses(host)
    try:
        ipaddress.ip_address(host.address or "")
    except ValueError:
        return True
    return not (named[4] or named[6])


@dataclass(frozen=True)
class Guard:
    """What `expose` never publishes, as a check of one published key (host address, proto, port): the
    incremental path (`aegir.fw.delta`) runs it on every element it adds to a DNAT map."""

    service: frozenset[Addr]  # the service addresses that are not admin ones
    admin: frozenset[Addr]  # `admin_addresses`: where SSH always reaches the host
    ssh_port: int | None
    ssh_anywhere: bool  # `ssh_anywhere`: SSH may arrive on any address of the host

    def dnat_problem(self, addr: Addr, proto: str, port: int) -> str | None:
        """Why `addr`:`port`/`proto` may not be DNATed to a container (None: `expose` could publish it)."""
        ssh = proto == "tcp" and port == self.ssh_port
        if addr in self.admin:
            if ssh:
                return f"{proto}/{hostport(addr, port)} would DNAT the SSH port of the admin address {addr}"
            return (f"{proto}/{hostport(addr, port)}: {addr} is an admin address; containers are published on "
                    "service addresses only")
        if ssh and self.ssh_anywhere:
            return f"{proto}/{hostport(addr, port)} is the SSH port and SSH may arrive on any address of this host"
        if addr not in self.service:
            return f"{proto}/{hostport(addr, port)}: {addr} is not a service address of this host"
        if proto not in ("tcp", "udp", "sctp"):
            return f"{proto}/{hostport(addr, port)}: {proto} is not tcp, udp or sctp"
        return None


def guard(host: Host, ssh_port: int | None) -> Guard:
    """The host's `Guard` for `ssh_port`."""
    admin = frozenset(a for v in (4, 6) for a in admin_addresses(host)[v])
    service: tuple[Addr, ...] = (*host.service_ipv4, *host.service_ipv6)
    return Guard(frozenset(a for a in service if a not in admin), admin, ssh_port, ssh_anywhere(host))


def expose(containers: Iterable[Container], host: Host, ssh_port: int | None = None) -> Exposures:
    """The exposures of `host` given its containers (running ones only).

    With `ssh_port`, a tcp binding on that port is never published on an
    address SSH may arrive on (`ssh_anywhere`: then on no address at all).
    """
    g = guard(host, ssh_port)
    admin, guard_ssh = g.admin, g.ssh_anywhere and ssh_port is not None
    service: dict[int, tuple[Addr, ...]] = {4: tuple(a for a in host.service_ipv4 if a not in admin),
                                            6: tuple(a for a in host.service_ipv6 if a not in admin)}
    running = sorted((c for c in containers if c.running), key=lambda c: (c.name, c.id))
    items: dict[tuple[int, int, str, int], Exposure] = {}
    ranks: dict[int, tuple[int, int]] = {}
    warnings: list[str] = [f"{a} is a service address but also where SSH reaches the host: nothing is published on it"
                           for a in (*host.service_ipv4, *host.service_ipv6) if a in admin]

    def warn(msg: str) -> None:
        if msg not in warnings:
            warnings.append(msg)

    # A binding's host addresses depend on its host address text only (a warning names the binding too):
    # those of a text that warns of nothing ("", 0.0.0.0, ::, a service address...) are found once
    published: dict[str, tuple[Addr, ...]] = {}

    for c in running:
        if not c.bindings:
            continue
        if not c.networks or all(n.ipv4 is None and n.ipv6 is None for n in c.networks):
            warn(f"{c.name}: no container address (host or none network): its ports are not published")
            continue
        for b in c.bindings:
            if guard_ssh and b.proto == "tcp" and b.host_port == ssh_port:
                warn(f"{c.name}: tcp/{b.host_port} is the SSH port and SSH may arrive on any address of this "
                     "host (its address is a name, or it has no admin address): not published")
                continue
            addresses = published.get(b.host_ip)
            if addresses is None:
                said: list[str] = []
                addresses = _host_addresses(b, service, admin, c.name, said.append)
                for msg in said:
                    warn(msg)
                if not said:
                    published[b.host_ip] = addresses
            for addr in addresses:
                r = ranks.get(id(addr))  # the host's few addresses, the same objects: ranked once
                if r is None:
                    r = ranks[id(addr)] = _rank(addr)
                version = r[0]
                target = c.address(version)
                if target is None:
                    warn(f"{c.name}: no IPv{version} address: "
                         f"{b.proto}/{hostport(addr, b.host_port)} is not published")
                    continue
                e = Exposure(addr, b.proto, b.host_port, c.name, target, b.container_port)
                k = (*r, b.proto, b.host_port)  # e.key
                other = items.get(k)
                if other is not None:
                    if other != e:
                        warn(f"{c.name}: {b.proto}/{hostport(addr, b.host_port)} is already "
                             f"published by {other.container}: kept {other.container}'s")
                    continue
                items[k] = e
    ordered = [items[k] for k in sorted(items)]
    return Exposures(tuple(ordered), tuple(running), tuple(warnings))


def _host_addresses(b: Binding, service: Mapping[int, Sequence[Addr]], admin: AbstractSet[Addr], name: str,
                    warn: Any) -> tuple[Addr, ...]:
    """The host addresses `b` is published on: of the host's service addresses (these objects: `expose`
    ranks them by identity), the ones it names; `warn` says why none."""

    def where() -> str:
        shown = f"[{b.host_ip}]" if ":" in b.host_ip else b.host_ip or "*"
        return f"{name}: {b.proto}/{shown}:{b.host_port}"

    if b.host_ip in ("", "0.0.0.0", "::"):
        versions = (4, 6) if b.host_ip == "" else (4,) if b.host_ip == "0.0.0.0" else (6,)
        found = tuple(a for v in versions for a in service[v])
        if not found:
            warn(f"{where()}: the host has no service address to publish it on")
        return found
    try:
        addr = ipaddress.ip_address(b.host_ip)
    except ValueError:
        warn(f"{where()}: {b.host_ip!r} is not an address")
        return ()
    for a in service[addr.version]:
        if a == addr:
            return (a,)
    if addr.is_loopback:
        return ()  # bound to the host itself on purpose: nothing to publish
    if addr in admin:
        warn(f"{where()}: {addr} is the admin address; containers are published on service addresses only")
    else:
        warn(f"{where()}: {addr} is not a service address of this host")
    return ()
