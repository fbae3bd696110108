"""A host's ``fw:`` section, validated: who may SSH in, what may go out, IPsec peers.

Everything has a default, so a host without ``fw:`` gets a working firewall::

    fw:
      ssh_port: 22                      # default: the host's `port`
      admin_sources: [198.51.100.0/24]  # who may SSH to the admin addresses (default: anyone);
                                        # a family with no entry stays open to anyone
      input: ["tcp/9100 from 192.0.2.0/24"]   # more inbound services on the host itself
      output: [udp/53, tcp/53, udp/123, tcp/80, tcp/443, "tcp/25 to 192.0.2.25"]
      ipsec: true                       # ESP + IKE with the other hosts' admin addresses
      container_interfaces: [docker0]   # default: the bridges of Docker's own networks, asked
                                        # from Docker (a "br-*" pattern could match an uplink)
      state_dir: /srv/conf/aegir-fw     # where the last good ruleset is kept

A rule is ``PROTO/PORT[-PORT] [from|to ADDRESS[/LEN]]`` (``from`` in `input`,
``to`` in `output`). Mistakes are `InventoryError`s pointing at the line.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aegir import fields
from aegir.inventory import Host, Inventory

Net = ipaddress.IPv4Network | ipaddress.IPv6Network
Addr = ipaddress.IPv4Address | ipaddress.IPv6Address

PROTOCOLS = ("tcp", "udp", "sctp")
DEFAULT_OUTPUT = ("udp/53", "tcp/53", "udp/123", "tcp/80", "tcp/443")
DEFAULT_INTERFACES: tuple[str, ...] = ()  # derived from Docker's networks
KEYS = ("ssh_port", "admin_sources", "input", "output", "ipsec", "container_interfaces", "state_dir")
IFNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}\*?\Z")
RULE_RE = re.compile(
    r"^(?P<proto>[a-z]+)/(?P<lo>\d+)(?:-(?P<hi>\d+))?(?:\s+(?P<dir>from|to)\s+(?P<net>\S+))?$"
)
ANY4 = ipaddress.IPv4Network("0.0.0.0/0")
ANY6 = ipaddress.IPv6Network("::/0")


@dataclass(frozen=True)
class Rule:
    """One allowed flow: a protocol, a port range and the peer network (the whole Internet by default)."""

    proto: str
    first: int
    last: int
    net: Net

    @property
    def ports(self) -> str:
        """``443`` or ``8000-8010``, as nft writes an inet_service."""
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"

    @property
    def family(self) -> int:
        return self.net.version

    def overlaps(self, other: "Rule") -> bool:
        return (self.proto == other.proto and self.net.version == other.net.version
                and self.first <= other.last and other.first <= self.last
                and self.net.overlaps(other.net))  # type: ignore[arg-type]


@dataclass(frozen=True)
class FwSettings:
    """The validated firewall settings of one host (defaults filled in)."""

    ssh_port: int
    admin_sources: tuple[Net, ...]
    input: tuple[Rule, ...]
    output: tuple[Rule, ...]
    ipsec_peers: tuple[Addr, ...]
    container_interfaces: tuple[str, ...]  # empty: Docker's bridge networks' interfaces
    state_dir: str

    def sources(self, version: int) -> tuple[Net, ...]:
        """Who may SSH in over IPv`version`; empty means anyone."""
        return tuple(n for n in self.admin_sources if n.version == version)


def defaults(host: Host) -> FwSettings:
    """The settings of a host without a ``fw:`` section and without peers."""
    return FwSettings(
        ssh_port=host.port,
        admin_sources=(),
        input=(),
        output=tuple(r for spec in DEFAULT_OUTPUT for r in _rule(spec, "to")),
        ipsec_peers=(),
        container_interfaces=DEFAULT_INTERFACES,
        state_dir=host.srv_path("conf", "aegir-fw"),
    )


def for_host(inv: Inventory, host: Host) -> FwSettings:
    """Validate `host`'s ``fw:`` section against `inv` (for peers and line numbers).

    With ``ipsec`` (the default) the peers are every other host's admin
    addresses: refused while another host's entry is broken.
    """
    fw = inv.section(host, "fw", KEYS)
    base = defaults(host)
    ssh_port = fw.get("ssh_port", fields.port, base.ssh_port)
    sources = fw.get("admin_sources", fields.list_of(fields.network, "addresses or networks"), [])

    rules: dict[str, tuple[Rule, ...]] = {}
    for key, word in (("input", "from"), ("output", "to")):
        specs = fw.get(key, fields.list_of(functools.partial(_rule, word=word), "rules like 'tcp/443'"), None)
        if specs is None:
            specs = [_rule(spec, word) for spec in (DEFAULT_OUTPUT if key == "output" else ())]
        out: list[Rule] = []
        for i, new in enumerate(specs):
            for r in new:
                clash = next((o for o in out if o.overlaps(r)), None)
                if clash:
                    raise fw.fail((key, i), f"{fw.values[key][i]!r} overlaps an earlier rule "
                                            f"({clash.proto}/{clash.ports})")
                out.append(r)
        rules[key] = tuple(out)

    ipsec = fw.get("ipsec", fields.boolean, True)
    others = inv.every_host(f"{host.name}'s fw.ipsec needs every host's admin addresses") if ipsec else ()
    peers = tuple(a for h in others if h.name != host.name for a in (h.admin_ipv4, h.admin_ipv6) if a is not None)
    ifaces = tuple(fw.get("container_interfaces", fields.list_of(_interface, "interface names"),
                          list(DEFAULT_INTERFACES)))
    state_dir = fw.get("state_dir", _absolute, base.state_dir)

    # overlapping networks would be an interval conflict for nft: merge them
    merged = tuple(n for v in (4, 6)
                   for n in ipaddress.collapse_addresses(s for s in sources if s.version == v))  # type: ignore[type-var]
    return FwSettings(ssh_port, merged, rules["input"], rules["output"], peers, ifaces,
                      state_dir.rstrip("/") or "/")


def for_hosts(inv: Inventory, hosts: Iterable[Host]) -> dict[str, FwSettings]:
    """Every target's settings, by host name: read before any host is touched, so that a mistake in one
    host's ``fw:`` is a usage error (`InventoryError`, ``file:line: sentence``), not a failed host."""
    return {h.name: for_host(inv, h) for h in hosts}


def _interface(name: Any) -> str:
    if not isinstance(name, str) or not IFNAME_RE.match(name):
        raise fields.FieldError(f"{name!r} is not an interface name "
                                "(at most 15 of letters, digits, '_.-', optionally ending in '*')")
    return name


def _absolute(path: Any) -> str:
    if not isinstance(path, str) or not path.startswith("/") or "\n" in path:
        raise fields.FieldError(f"must be an absolute path, not {path!r}")
    return path


def _rule(spec: Any, word: str) -> Iterable[Rule]:
    """``"tcp/25 to 192.0.2.0/24"`` -> one `Rule`; without a network, one per family."""
    m = RULE_RE.match(str(spec).strip()) if isinstance(spec, str) else None
    if not m:
        raise ValueError(f"{spec!r} is not a rule like 'tcp/443', 'udp/60000-61000' or 'tcp/25 {word} 192.0.2.25'")
    if m["proto"] not in PROTOCOLS:
        raise ValueError(f"{spec!r}: protocol must be one of {', '.join(PROTOCOLS)}")
    if m["dir"] and m["dir"] != word:
        raise ValueError(f"{spec!r}: write '{word} ADDRESS' here, not '{m['dir']}'")
    try:
        lo = fields.port(m["lo"], text=True)
        hi = fields.port(m["hi"], text=True) if m["hi"] else lo
    except fields.FieldError as exc:
        raise ValueError(f"{spec!r}: {exc}") from None
    if lo > hi:
        raise ValueError(f"{spec!r}: a port range goes from low to high")
    if m["net"]:
        try:
            nets: tuple[Net, ...] = (ipaddress.ip_network(m["net"], strict=False),)
        except ValueError:
            raise ValueError(f"{spec!r}: {m['net']!r} is not an address or network") from None
    else:
        nets = (ANY4, ANY6)
    return [Rule(m["proto"], lo, hi, n) for n in nets]
