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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from aegir.errors import AegirError
from aegir.inventory import Host

Addr = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Network:
    """A container's addresses on one Docker network."""

    name: str
    ipv4: ipaddress.IPv4Address | None
    ipv6: ipaddress.IPv6Address | None  # GlobalIPv6Address


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


def _ip(value: Any, kind: type) -> Any:
    if not value:
        return None
    try:
        return kind(str(value))
    except ValueError:
        return None


def _port_key(key: str) -> tuple[int, str] | None:
    port, _, proto = str(key).partition("/")
    proto = proto or "tcp"
    if not port.isdigit() or proto not in ("tcp", "udp", "sctp"):
        return None
    return int(port), proto


def _unspecified(asked: Sequence[Any], host_port: int) -> bool:
    """Was `host_port` requested without a host address (``"8080:80"``, ``"8000-8010:80"``, ``"80"``)?"""
    for r in asked:
        r = r or {}
        if r.get("HostIp"):
            continue
        wanted = str(r.get("HostPort") or "")
        lo, _, hi = wanted.partition("-")
        if not wanted:  # a port Docker picks: it cannot be told apart, count it as asked
            return True
        if lo.isdigit() and int(lo) <= host_port <= int(hi if hi.isdigit() else lo):
            return True
    return False


def parse_container(data: Mapping[str, Any]) -> Container:
    """One ``docker inspect`` object -> `Container` (missing fields read as empty)."""
    settings = data.get("NetworkSettings") or {}
    host_config = data.get("HostConfig") or {}
    networks = tuple(sorted(
        (Network(name, _ip(n.get("IPAddress"), ipaddress.IPv4Address),
                 _ip(n.get("GlobalIPv6Address"), ipaddress.IPv6Address))
         for name, n in (settings.get("Networks") or {}).items() if isinstance(n, Mapping)),
        key=lambda n: n.name,
    ))
    requested = host_config.get("PortBindings") or {}
    actual = settings.get("Ports")
    if actual is None:  # never started: what was asked for
        actual = requested
    bindings: list[Binding] = []
    for key, entries in (actual or {}).items():
        parsed = _port_key(key)
        if parsed is None or not entries:
            continue
        port, proto = parsed
        asked = requested.get(key) or []
        for b in entries:
            host_port = str((b or {}).get("HostPort") or "")
            if not host_port.isdigit():
                continue
            host_ip = str((b or {}).get("HostIp") or "")
            # "80:80" is recorded as HostIp "" but reported as 0.0.0.0 and :: once running; an explicit
            # "0.0.0.0:81:80" next to it stays IPv4 only: match the request by its host port
            if host_ip in ("0.0.0.0", "::") and _unspecified(asked, int(host_port)):
                host_ip = ""
            new = Binding(proto, port, host_ip, int(host_port))
            if new not in bindings:
                bindings.append(new)
    state = data.get("State") or {}
    return Container(
        id=str(data.get("Id") or ""),
        name=str(data.get("Name") or data.get("Id") or "?").lstrip("/"),
        running=bool(state.get("Running")),
        networks=networks,
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



def expose(containers: Iterable[Container], host: Host) -> Exposures:
    """The exposures of `host` given its containers (running ones only)."""
    admin = {a for v in (4, 6) for a in admin_addresses(host)[v]}
    service: dict[int, tuple[Addr, ...]] = {4: tuple(a for a in host.service_ipv4 if a not in admin),
                                            6: tuple(a for a in host.service_ipv6 if a not in admin)}
    running = sorted((c for c in containers if c.running), key=lambda c: (c.name, c.id))
    items: dict[tuple[int, int, str, int], Exposure] = {}
    warnings: list[str] = [f"{a} is a service address but also where SSH reaches the host: nothing is published on it"
                           for a in (*host.service_ipv4, *host.service_ipv6) if a in admin]

    def warn(msg: str) -> None:
        if msg not in warnings:
            warnings.append(msg)

    for c in running:
        if not c.bindings:
            continue
        if not c.networks or all(n.ipv4 is None and n.ipv6 is None for n in c.networks):
            warn(f"{c.name}: no container address (host or none network): its ports are not published")
            continue
        for b in c.bindings:
            for addr in _host_addresses(b, service, admin, c.name, warn):
                target = c.address(addr.version)
                if target is None:
                    warn(f"{c.name}: no IPv{addr.version} address: "
                         f"{b.proto}/{hostport(addr, b.host_port)} is not published")
                    continue
                e = Exposure(addr, b.proto, b.host_port, c.name, target, b.container_port)
                other = items.get(e.key)
                if other is not None:
                    if other != e:
                        warn(f"{c.name}: {b.proto}/{hostport(addr, b.host_port)} is already "
                             f"published by {other.container}: kept {other.container}'s")
                    continue
                items[e.key] = e
    ordered = [items[k] for k in sorted(items)]
    return Exposures(tuple(ordered), tuple(running), tuple(warnings))


def _host_addresses(b: Binding, service: Mapping[int, Sequence[Addr]], admin: set[Addr], name: str,
                    warn: Any) -> tuple[Addr, ...]:
    shown = f"[{b.host_ip}]" if ":" in b.host_ip else b.host_ip or "*"
    where = f"{name}: {b.proto}/{shown}:{b.host_port}"
    if b.host_ip in ("", "0.0.0.0", "::"):
        versions = (4, 6) if b.host_ip == "" else (4,) if b.host_ip == "0.0.0.0" else (6,)
        found = tuple(a for v in versions for a in service[v])
        if not found:
            warn(f"{where}: the host has no service address to publish it on")
        return found
    try:
        addr = ipaddress.ip_address(b.host_ip)
    except ValueError:
        warn(f"{where}: {b.host_ip!r} is not an address")
        return ()
    if addr in service[addr.version]:
        return (addr,)
    if addr.is_loopback:
        return ()  # bound to the host itself on purpose: nothing to publish
    if addr in admin:
        warn(f"{where}: {addr} is the admin address; containers are published on service addresses only")
    else:
        warn(f"{where}: {addr} is not a service address of this host")
    return ()
