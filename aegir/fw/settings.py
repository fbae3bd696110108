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

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

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
    """Validate `host`'s ``fw:`` section against `inv` (for peers and line numbers)."""
    fw = inv.section(host, "fw", KEYS)
    base = defaults(host)

    def fail(key: str, message: str, *rest: Any) -> Exception:
        return fw.error((key,), message, at=rest)

    ssh_port = fw.get("ssh_port", base.ssh_port)
    if isinstance(ssh_port, bool) or not isinstance(ssh_port, int) or not 0 < ssh_port < 65536:
        raise fail("ssh_port", f"must be a port number from 1 to 65535, not {ssh_port!r}")

    sources = []
    for i, item in enumerate(_as_list(fw.get("admin_sources"), lambda: fail("admin_sources", "must be a list"))):
        try:
            sources.append(ipaddress.ip_network(str(item), strict=False))
        except ValueError:
            raise fail("admin_sources", f"{item!r} is not an address or network", i) from None

    rules: dict[str, tuple[Rule, ...]] = {}
    for key, word in (("input", "from"), ("output", "to")):
        raw = fw.get(key)
        specs = DEFAULT_OUTPUT if raw is None and key == "output" else \
            _as_list(raw, lambda: fail(key, "must be a list of rules like 'tcp/443'"))  # noqa: B023 - called at once
        out: list[Rule] = []
        for i, spec in enumerate(specs):
            try:
                new = _rule(spec, word)
            except ValueError as exc:
                raise fail(key, str(exc), i) from None
            for r in new:
                clash = next((o for o in out if o.overlaps(r)), None)
                if clash:
                    raise fail(key, f"{spec!r} overlaps an earlier rule ({clash.proto}/{clash.ports})", i)
                out.append(r)
        rules[key] = tuple(out)

    ipsec = fw.get("ipsec", True)
    if not isinstance(ipsec, bool):
        raise fail("ipsec", f"must be true or false, not {ipsec!r}")
    peers = tuple(a for h in inv.hosts if h.name != host.name for a in (h.admin_ipv4, h.admin_ipv6)
                  if a is not None) if ipsec else ()

    ifaces = tuple(_as_list(fw.get("container_interfaces", list(DEFAULT_INTERFACES)),
                            lambda: fail("container_interfaces", "must be a list of interface names")))
    for i, name in enumerate(ifaces):
        if not isinstance(name, str) or not IFNAME_RE.match(name):
            raise fail("container_interfaces", f"{name!r} is not an interface name "
                       "(at most 15 of letters, digits, '_.-', optionally ending in '*')", i)

    state_dir = fw.get("state_dir", base.state_dir)
    if not isinstance(state_dir, str) or not state_dir.startswith("/") or "\n" in state_dir:
        raise fail("state_dir", f"must be an absolute path, not {state_dir!r}")

    # overlapping networks would be an interval conflict for nft: merge them
    merged = tuple(n for v in (4, 6)
                   for n in ipaddress.collapse_addresses(s for s in sources if s.version == v))  # type: ignore[type-var]
    return FwSettings(ssh_port, merged, rules["input"], rules["output"], peers, ifaces,
                      state_dir.rstrip("/") or "/")


def _as_list(value: Any, bad: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str, int)):
        return [value]
    if not isinstance(value, list):
        raise bad()
    return value


def _rule(spec: Any, word: str) -> Iterable[Rule]:
    """``"tcp/25 to 192.0.2.0/24"`` -> one `Rule`; without a network, one per family."""
    m = RULE_RE.match(str(spec).strip()) if isinstance(spec, str) else None
    if not m:
        raise ValueError(f"{spec!r} is not a rule like 'tcp/443', 'udp/60000-61000' or 'tcp/25 {word} 192.0.2.25'")
    if m["proto"] not in PROTOCOLS:
        raise ValueError(f"{spec!r}: protocol must be one of {', '.join(PROTOCOLS)}")
    if m["dir"] and m["dir"] != word:
        raise ValueError(f"{spec!r}: write '{word} ADDRESS' here, not '{m['dir']}'")
    lo = int(m["lo"])
    hi = int(m["hi"]) if m["hi"] else lo
    if not (0 < lo <= hi < 65536):
        raise ValueError(f"{spec!r}: ports must be from 1 to 65535, low to high")
    if m["net"]:
        try:
            nets: tuple[Net, ...] = (ipaddress.ip_network(m["net"], strict=False),)
        except ValueError:
            raise ValueError(f"{spec!r}: {m['net']!r} is not an address or network") from None
    else:
        nets = (ANY4, ANY6)
    return [Rule(m["proto"], lo, hi, n) for n in nets]
