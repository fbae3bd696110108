"""The addressing table of the fleet and what is wrong with it (pure).

One row per address or subnet: each host's admin pair and prefix, each service
pair, each Docker network, each running container. A row's `problem` says
what the inventory alone cannot see: a Docker network's IPv6 subnet or a
container's global IPv6 outside the host's prefix, a service IPv4 whose IPv6
twin is not configured on the host, prefixes of two hosts that overlap, and
each of Docker's settings that differs from what aegir's firewall and
addressing need (`aegir.net.posture`: a ``docker KEY`` row naming the
daemon.json key to change).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from aegir.inventory import Host
from aegir.net import posture
from aegir.net.facts import NetFacts


@dataclass(frozen=True)
class Row:
    host: str
    role: str  # admin | service N | network NAME | container NAME
    ipv4: str | None
    ipv6: str | None
    where: str | None  # the prefix, network or subnet the row lives in
    problem: str | None = None
    note: str | None = None


def rows(host: Host, facts: NetFacts | None) -> list[Row]:
    """`host`'s rows; `facts` None: the inventory's view only."""
    prefix = host.ipv6_prefix
    out = [Row(host.name, "admin", _s(host.admin_ipv4), _s(host.admin_ipv6), _s(prefix), None,
               None if prefix else "no ipv6_prefix in hosts.yml")]
    have = facts.addresses if facts else None
    for i in range(max(len(host.service_ipv4), len(host.service_ipv6))):
        v4 = host.service_ipv4[i] if i < len(host.service_ipv4) else None
        v6 = host.service_ipv6[i] if i < len(host.service_ipv6) else None
        problem = None
        if have is not None:
            lacking = [str(a) for a in (v4, v6) if a is not None and a not in have]
            if v4 is not None and v4 in have and v6 is not None and v6 not in have:
                problem = f"service IPv6 {v6} (twin of {v4}) is not configured on the host"
            elif lacking:
                problem = f"not configured on the host: {', '.join(lacking)}"
        out.append(Row(host.name, f"service {i + 1}", _s(v4), _s(v6), None, problem))
    if facts is None:
        return out
    if facts.config is not None:
        found = posture.problems(facts.config, prefix=prefix, srv=host.srv, version=facts.version,
                                 data_root=facts.data_root)
        out += [Row(host.name, f"docker {key}", None, None, facts.config.file, problem) for key, problem in found]
    if not facts.docker:
        out.append(Row(host.name, "docker", None, None, None, None,
                       "Docker is not running: its networks and containers were not checked"))
        return out
    for net in facts.networks:
        subnets4 = ", ".join(str(s) for s in net.subnets if s.version == 4) or None
        subnets6 = ", ".join(str(s) for s in net.ipv6) or None
        outside = _outside([s for s in net.ipv6], prefix, f"Docker network {net.name!r}: IPv6 subnet")
        out.append(Row(host.name, f"network {net.name}", subnets4, subnets6, None,
                       outside and prefix and f"{outside}: {_fix(net.name)}" or outside))
    for c in facts.containers:
        if c.ipv4 is None and c.ipv6 is None:
            continue
        out.append(Row(host.name, f"container {c.container}", _s(c.ipv4), _s(c.ipv6), c.network,
                       _outside([c.ipv6] if c.ipv6 else [], prefix, f"container {c.container!r}: global IPv6")))
    return out


def _fix(network: str) -> str:
    """How to bring a network's IPv6 subnet into the host's prefix."""
    if network == "bridge":  # Docker's default network takes its IPv6 subnet from the daemon's setting
        return "set daemon.json's \"fixed-cidr-v6\" to a /64 of the prefix"
    return ("recreate it with a subnet of the prefix (for the networks Docker creates: daemon.json's "
            "\"default-address-pools\")")


def _outside(items: Sequence[ipaddress.IPv6Network | ipaddress.IPv6Address], prefix: ipaddress.IPv6Network | None,
             what: str) -> str | None:
    bad = [x for x in items if prefix is None or not _inside(x, prefix)]
    if not bad:
        return None
    where = f"outside the host's prefix {prefix}" if prefix else "on a host without ipv6_prefix in hosts.yml"
    return f"{what} {', '.join(map(str, bad))} is {where}"


def _inside(x: ipaddress.IPv6Network | ipaddress.IPv6Address, prefix: ipaddress.IPv6Network) -> bool:
    return x.subnet_of(prefix) if isinstance(x, ipaddress.IPv6Network) else x in prefix


def overlaps(hosts: Sequence[Host]) -> list[Row]:
    """A problem row for each pair of hosts whose prefixes overlap."""
    out = []
    for i, a in enumerate(hosts):
        for b in hosts[i + 1:]:
            if a.ipv6_prefix and b.ipv6_prefix and a.ipv6_prefix.overlaps(b.ipv6_prefix):
                out.append(Row(b.name, "prefix", None, None, str(b.ipv6_prefix),
                               f"ipv6_prefix {b.ipv6_prefix} overlaps {a.name}'s {a.ipv6_prefix}"))
    return out


def _s(x: object) -> str | None:
    return None if x is None else str(x)
