"""The records the plan implies: pure, from the inventory, the ``dns:`` settings and the projects' names.

Zones (every name absolute, lower case):

* the **service domain** (tedomum.in): per host, one A/AAAA record per service
  address pair, named by `HostNames.service_labels` (``hyp1``, ``hyp1-2``);
* the **CNAME domain** (tedomum.net): one CNAME per public service name to the
  service record of the address its project publishes on. Where a CNAME is
  not allowed the A/AAAA are copied instead: the apex, a name flagged
  ``cname: false``, the target of an MX, SRV or NS record (RFC 2181 10.3,
  RFC 2782), and a name that holds other data (an MX or SRV owner; RFC 1034 3.6.2);
* the **rest domain** (tedomum.org): each host's admin addresses under its
  label, and the non-public names (same CNAME rules);
* **reverse zones**: one ``in-addr.arpa`` zone per /24 and one ``ip6.arpa``
  zone per host prefix (rounded to a nibble) with a PTR for every admin
  address (-> its rest-domain name) and service address (-> its service record).

Conflicts (a name claimed twice) are problems, never silently resolved.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from aegir.dns import names
from aegir.dns.services import Publication, Read
from aegir.dns.settings import DnsSettings
from aegir.inventory import Host

ADDRESS_TYPES = ("A", "AAAA")
#: SOA timers: refresh, retry, expire, minimum (negative-caching TTL).
SOA_TIMERS = (7200, 3600, 1209600, 300)


@dataclass(frozen=True, order=True)
class Record:
    """One resource record: absolute owner, type, TTL and rdata as zone text writes it."""

    name: str
    type: str
    data: str
    ttl: int = 3600


@dataclass(frozen=True)
class Zone:
    origin: str  # absolute: tedomum.net.
    role: str  # service | cname | rest | reverse
    records: tuple[Record, ...]  # SOA first, then NS, then the rest sorted

    @property
    def soa(self) -> Record:
        return self.records[0]


@dataclass(frozen=True)
class Plan:
    zones: tuple[Zone, ...]
    problems: tuple[str, ...] = ()
    #: absolute name -> (host, address index) of each name pointing at a host's service address pair
    owners: Mapping[str, tuple[str, int]] = field(default_factory=dict, compare=False)

    def zone(self, origin: str) -> Zone | None:
        origin = as_origin(origin)
        return next((z for z in self.zones if z.origin == origin), None)


def as_origin(text: str) -> str:
    """A zone as typed (``tedomum.net``, ``Tedomum.NET.``) -> its origin as the plan names it (``tedomum.net.``)."""
    return text.lower().rstrip(".") + "."


@dataclass
class _Claim:
    host: str
    index: int
    cname: bool
    origin: str


def build(hosts: Sequence[Host], settings: DnsSettings, publications: Iterable[Publication], serial: int) -> Plan:
    """The zones and the problems; `serial` is every zone's SOA serial."""
    d = settings.domains
    ttl = d.ttl
    by_name = {h.name: h for h in hosts}
    problems: list[str] = []
    data: dict[str, list[Record]] = {z: [] for z in d.all}
    claims: dict[str, _Claim] = {}
    reserved: dict[str, str] = {}  # owner -> what holds it (host records)

    for h in hosts:
        hn = settings.hosts[h.name]
        admin = names.absolute(hn.label, d.rest)
        reserved[admin] = f"{h.name}'s admin name"
        data[d.rest] += _addresses(admin, [h.admin_ipv4, h.admin_ipv6], ttl)
        for i, label in enumerate(hn.service_labels):
            owner = names.absolute(label, d.service)
            reserved[owner] = f"{h.name}'s service record"
            data[d.service] += _addresses(owner, _pair(h, i), ttl)

    extra: dict[str, list[Record]] = {}  # MX/SRV records, by owner
    targets: set[str] = set()
    for pub in publications:
        host = by_name.get(pub.host)
        if host is None:
            continue
        for n in pub.names:
            zone = d.cname if n.public else d.rest
            owner = names.absolute(n.name, zone)
            held = reserved.get(owner)
            if held is not None:
                problems.append(f"{pub.origin}: {owner} is already {held}")
                continue
            claim = claims.get(owner)
            if claim is not None and (claim.host, claim.index) != (pub.host, pub.address):
                problems.append(f"{pub.origin}: {owner} is already claimed by {claim.origin}")
                continue
            if claim is None:
                claims[owner] = _Claim(pub.host, pub.address, n.cname, pub.origin)
            else:
                claim.cname = claim.cname and n.cname
            for mx_owner, pref in n.mx:
                rec = Record(names.absolute(mx_owner, zone), "MX", f"{pref} {owner}", ttl)
                extra.setdefault(rec.name, []).append(rec)
                targets.add(owner)
            for s in n.srv:
                rec = Record(names.absolute(s.owner, zone), "SRV", f"{s.priority} {s.weight} {s.port} {owner}", ttl)
                extra.setdefault(rec.name, []).append(rec)
                targets.add(owner)

    for owner, recs in extra.items():
        held = reserved.get(owner)
        if held is not None and not names.is_under(owner, d.rest):
            problems.append(f"{owner}: MX/SRV records cannot sit on {held}")
            continue
        zone = _zone_of(owner, d.all)
        data[zone] += recs

    # A CNAME never sits beside other data, and MX/SRV/NS targets never are CNAMEs.
    no_cname = set(extra) | targets | set(d.all) | set(d.nameservers)
    owners: dict[str, tuple[str, int]] = {}
    for owner, claim in claims.items():
        zone = _zone_of(owner, d.all)
        host = by_name[claim.host]
        hn = settings.hosts[claim.host]
        owners[owner] = (claim.host, claim.index)
        if claim.index >= len(hn.service_labels):
            problems.append(f"{claim.origin}: {claim.host} has no service address #{claim.index + 1}")
            continue
        if claim.cname and owner not in no_cname:
            data[zone].append(Record(owner, "CNAME", names.absolute(hn.service_labels[claim.index], d.service), ttl))
        else:
            data[zone] += _addresses(owner, _pair(host, claim.index), ttl)

    zones = [_zone(origin, role, data[origin], settings, serial)
             for origin, role in ((d.service, "service"), (d.cname, "cname"), (d.rest, "rest"))]
    zones += _reverse(hosts, settings, serial)
    return Plan(tuple(zones), tuple(problems), owners)


def fleet(hosts: Sequence[Host], settings: DnsSettings, reads: Iterable[tuple[str, Read]], serial: int) -> Plan:
    """The plan of the whole inventory from each host's read (host name, `Read`): the zones, and the
    problems, each host's own first (``HOST: file:line: sentence``), then those of the fleet."""
    reads = list(reads)
    built = build(hosts, settings, [p for _, r in reads for p in r.publications], serial)
    return Plan(built.zones, tuple(f"{h}: {m}" for h, r in reads for m in r.problems) + built.problems, built.owners)


def origins(hosts: Sequence[Host], settings: DnsSettings) -> tuple[str, ...]:
    """The zones the plan has, whatever the projects publish: the three domains, then the reverse zones
    of the inventory's addresses (known before any host is read)."""
    return tuple(z.origin for z in build(hosts, settings, (), 1).zones)


def _pair(h: Host, i: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address | None]:
    return [h.service_ipv4[i] if i < len(h.service_ipv4) else None,
            h.service_ipv6[i] if i < len(h.service_ipv6) else None]


def _addresses(owner: str, addrs: Iterable[ipaddress.IPv4Address | ipaddress.IPv6Address | None],
               ttl: int) -> list[Record]:
    return [Record(owner, "A" if a.version == 4 else "AAAA", str(a), ttl) for a in addrs if a is not None]


def _zone_of(owner: str, zones: Iterable[str]) -> str:
    return max((z for z in zones if names.is_under(owner, z)), key=len)


def _zone(origin: str, role: str, records: Iterable[Record], settings: DnsSettings, serial: int) -> Zone:
    d = settings.domains
    soa = Record(origin, "SOA", f"{d.nameservers[0]} {d.hostmaster} {serial} " + " ".join(map(str, SOA_TIMERS)),
                 d.ttl)
    ns = [Record(origin, "NS", n, d.ttl) for n in d.nameservers]
    return Zone(origin, role, (soa, *ns, *sorted(set(records), key=_order)))


def _order(r: Record) -> tuple[tuple[str, ...], str, str]:
    return tuple(reversed(r.name.split("."))), r.type, r.data


def reverse_zone_of(addr: ipaddress.IPv4Address | ipaddress.IPv6Address, prefix: ipaddress.IPv6Network | None) -> str:
    """The reverse zone holding `addr`'s PTR: its /24 for IPv4, its host prefix (to a nibble) for IPv6."""
    if addr.version == 4:
        return ".".join(reversed(str(addr).split(".")[:3])) + ".in-addr.arpa."
    net = prefix if prefix is not None and addr in prefix else ipaddress.IPv6Network((addr, 64), strict=False)
    nibbles = net.prefixlen // 4
    return ".".join(reversed(net.network_address.exploded.replace(":", "")[:nibbles])) + ".ip6.arpa."


def _reverse(hosts: Sequence[Host], settings: DnsSettings, serial: int) -> list[Zone]:
    d = settings.domains
    by_zone: dict[str, list[Record]] = {}
    for h in hosts:
        hn = settings.hosts[h.name]
        admin = names.absolute(hn.label, d.rest)
        pointers = [(a, admin) for a in (h.admin_ipv4, h.admin_ipv6) if a is not None]
        for i, label in enumerate(hn.service_labels):
            pointers += [(a, names.absolute(label, d.service)) for a in _pair(h, i) if a is not None]
        for addr, target in pointers:
            zone = reverse_zone_of(addr, h.ipv6_prefix)
            by_zone.setdefault(zone, []).append(Record(addr.reverse_pointer + ".", "PTR", target, d.ttl))
    return [_zone(z, "reverse", recs, settings, serial) for z, recs in sorted(by_zone.items())]


def records(plan: Plan) -> list[Record]:
    """Every record of every zone, in zone order."""
    return [r for z in plan.zones for r in z.records]
