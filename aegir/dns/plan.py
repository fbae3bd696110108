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

Only hosts.yml shapes the zones: the apexes, the name servers, the hosts'
names and the ``_`` space are the inventory's; projects fill them with the
names they own (see `build`). Conflicts and violations are problems, one per
record dropped, never silently resolved.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from aegir.dns import names
from aegir.dns.services import Name, Publication, Read
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

    @property
    def serial(self) -> int:
        return int(self.soa.data.split()[2])


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


Key = tuple[str, str]  # (host, project): who claims a name


def reserved_names(hosts: Sequence[Host], settings: DnsSettings) -> dict[str, str]:
    """The names only hosts.yml shapes -> what holds each: the zone apexes, the name servers,
    every host's admin and service labels in each domain (its admin name and service records first)."""
    d = settings.domains
    held = {z: f"the apex of the zone {z}" for z in d.all}
    held.update({n: "a name server of the inventory" for n in d.nameservers})
    for h in hosts:
        hn = settings.hosts[h.name]
        for label in hn.service_labels:  # a host's labels name it in every domain, whatever a project says
            held.update({names.absolute(label, z): f"{h.name}'s service label" for z in (d.cname, d.rest)})
            held[names.absolute(label, d.service)] = f"{h.name}'s service record"
        held.update({names.absolute(hn.label, z): f"{h.name}'s admin label" for z in (d.cname, d.service)})
        held[names.absolute(hn.label, d.rest)] = f"{h.name}'s admin name"
    return held


def build(hosts: Sequence[Host], settings: DnsSettings, publications: Iterable[Publication], serial: int) -> Plan:
    """The zones and the problems; `serial` is every zone's SOA serial.

    Only hosts.yml shapes the zones (`reserved_names`, and anything under ``_``
    but the SRV records a project declares for its own names); projects fill
    them: a project owns the names it publishes that no other project, on any
    host, publishes too. A name two projects claim is dropped for both (each a
    problem): which one is right is the operator's call, never the order of the
    hosts, so a host cannot take a name from another by coming first. An MX
    sits only on a name its project owns, an SRV only under one (or under the
    apex) and points at the name that declares it. Each violation drops that
    record alone and is a problem ``HOST: FILE:LINE: sentence``.
    """
    d = settings.domains
    ttl = d.ttl
    by_name = {h.name: h for h in hosts}
    problems: list[str] = []
    data: dict[str, list[Record]] = {z: [] for z in d.all}
    reserved = reserved_names(hosts, settings)

    for h in hosts:
        hn = settings.hosts[h.name]
        data[d.rest] += _addresses(names.absolute(hn.label, d.rest), [h.admin_ipv4, h.admin_ipv6], ttl)
        for i, label in enumerate(hn.service_labels):
            data[d.service] += _addresses(names.absolute(label, d.service), _pair(h, i), ttl)
    for ns, addrs in d.glue:
        data[_zone_of(ns, d.all)] += _addresses(ns, addrs, ttl)

    pubs = [p for p in publications if p.host in by_name]

    def refused(pub: Publication, n: Name, owner: str, what: str) -> str | None:
        """Why `owner` (of `what`, declared by `n`) is not `pub`'s to hold, as a problem; None when it may be."""
        try:
            names.check_absolute(owner)
        except ValueError as exc:
            return f"{pub.host}: {n.origin or pub.origin}: {what}{exc}"
        held = reserved.get(owner)
        if held is None and names.has_service_label(owner) and not what.startswith("SRV"):
            held = "under '_', where only SRV records go"
        return None if held is None else f"{pub.host}: {n.origin or pub.origin}: {what}{owner} is {held}"

    # 1. Who claims which name (names, and the owners of SRV records): the inventory's and too long ones refused.
    claimers: dict[str, dict[Key, str]] = {}  # owner -> {project: origin of its claim}
    for pub in pubs:
        for n in pub.names:
            zone = d.cname if n.public else d.rest
            for owner, what in ((names.absolute(n.name, zone), ""),
                                *((names.absolute(s.owner, zone), "SRV ") for s in n.srv)):
                why = refused(pub, n, owner, what)
                if why is not None:
                    problems.append(why)
                else:
                    claimers.setdefault(owner, {}).setdefault((pub.host, pub.project), n.origin or pub.origin)
    shared = {o: c for o, c in claimers.items() if len(c) > 1}
    for owner, who in shared.items():
        for (host, _), origin in who.items():
            others = "; ".join(f"{h}: {o}" for (h, _), o in who.items() if (h, o) != (host, origin))
            each = "both" if len(who) == 2 else f"all {len(who)}"
            problems.append(f"{host}: {origin}: {owner} is also claimed by {others}: dropped for {each} "
                            "(a name belongs to one project)")

    # 2. Each project's names; its MX and SRV records, at names it owns.
    claims: dict[str, _Claim] = {}
    extra: dict[str, list[Record]] = {}  # MX/SRV records, by owner
    targets: set[str] = set()
    for pub in pubs:
        key = (pub.host, pub.project)
        owned = {o for o, c in claimers.items() if key in c and o not in shared}
        for n in pub.names:
            zone = d.cname if n.public else d.rest
            owner = names.absolute(n.name, zone)
            here = n.origin or pub.origin
            mx = [(names.absolute(o, zone), pref) for o, pref in n.mx]
            for at, _ in mx:
                why = refused(pub, n, at, f"MX at {at} -> {owner}: ")
                if why is None and at not in owned:
                    why = f"{pub.host}: {here}: MX at {at} -> {owner}: {at} is not a name this project owns"
                if why is not None:
                    problems.append(why)
            if owner not in owned:
                continue
            claim = claims.get(owner)
            if claim is not None and claim.index != pub.address:
                problems.append(f"{pub.host}: {here}: {owner} is already published on another address by "
                                f"{claim.origin}")
                continue
            if claim is None:
                claims[owner] = _Claim(pub.host, pub.address, n.cname, here)
            else:
                claim.cname = claim.cname and n.cname
            for at, pref in mx:
                if at in owned:
                    extra.setdefault(at, []).append(Record(at, "MX", f"{pref} {owner}", ttl))
                    targets.add(owner)
            for srv in n.srv:
                at = names.absolute(srv.owner, zone)
                parent = ".".join(itertools.dropwhile(lambda lab: lab.startswith("_"), at.split(".")))
                if at not in owned:
                    continue
                if parent not in owned and parent != zone:
                    problems.append(f"{pub.host}: {here}: SRV {at} -> {owner}: {parent} is not a name this "
                                    "project owns")
                    continue
                extra.setdefault(at, []).append(
                    Record(at, "SRV", f"{srv.priority} {srv.weight} {srv.port} {owner}", ttl))
                targets.add(owner)

    for owner, recs in extra.items():
        data[_zone_of(owner, d.all)] += recs
    for apex, mail, pref in d.mx:
        data[apex].append(Record(apex, "MX", f"{pref} {mail}", ttl))
        targets.add(mail)

    # A CNAME never sits beside other data, and MX/SRV/NS targets never are CNAMEs.
    no_cname = set(extra) | targets | set(d.all) | set(d.nameservers)
    owners: dict[str, tuple[str, int]] = {}
    for owner, claim in claims.items():
        zone = _zone_of(owner, d.all)
        holder = by_name[claim.host]
        hn = settings.hosts[claim.host]
        owners[owner] = (claim.host, claim.index)
        if claim.index >= len(hn.service_labels):
            problems.append(f"{claim.host}: {claim.origin}: {claim.host} has no service address #{claim.index + 1}")
            continue
        if claim.cname and owner not in no_cname:
            data[zone].append(Record(owner, "CNAME", names.absolute(hn.service_labels[claim.index], d.service), ttl))
        else:
            data[zone] += _addresses(owner, _pair(holder, claim.index), ttl)

    have = {r.name for recs in data.values() for r in recs if r.type in ADDRESS_TYPES}
    for apex, mail, _ in d.mx:
        if any(names.is_under(mail, z) for z in d.all) and mail not in have:
            problems.append(f"hosts.yml: dns.mx: {apex} MX {mail}: no address record for {mail} in the "
                            "zones (no project publishes it)")

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


#: The SOA serial as `aegir.dns.zonefile.render` writes it: owner, TTL, IN SOA, mname, rname, then the serial.
SOA_SERIAL_RE = re.compile(r"^\S+\s+\d+\s+IN\s+SOA\s+\S+\s+\S+\s+(\d{1,10})\s", re.MULTILINE)
SERIALS = 2**32  # a SOA serial is a 32-bit number


def with_serial(zone: Zone, serial: int) -> Zone:
    """`zone` whose SOA holds `serial`."""
    mname, rname, _, *timers = zone.soa.data.split()
    soa = dataclasses.replace(zone.soa, data=" ".join([mname, rname, str(serial), *timers]))
    return dataclasses.replace(zone, records=(soa, *zone.records[1:]))


def serial_of(text: str | None) -> int | None:
    """The SOA serial of a zone file aegir wrote (None: no file, or no SOA line it can read)."""
    m = SOA_SERIAL_RE.search(text or "")
    return int(m[1]) if m and 0 < int(m[1]) < SERIALS else None


def next_serial(day: str, old: int | None, changed: bool) -> int:
    """The serial of a zone, ``YYYYMMDDnn``: `old` while the zone text (but its serial) is unchanged;
    else the first of `day` (``YYYYMMDD``), or `old` + 1 when that is not above `old` (a second change
    the same day, or a serial set by hand ahead of the date).

    >>> next_serial("20261207", None, True), next_serial("20261207", 2026120703, False)
    (2026120700, 2026120703)
    >>> next_serial("20261207", 2026120703, True), next_serial("20261207", 2026113005, True)
    (2026120704, 2026120700)
    """
    if old is not None and not changed:
        return old
    first = int(day) * 100
    serial = first if old is None or old < first else old + 1
    if serial >= SERIALS:
        raise ValueError(f"the serial after {old} is past {SERIALS - 1}: set one with --serial")
    return serial


def records(plan: Plan) -> list[Record]:
    """Every record of every zone, in zone order."""
    return [r for z in plan.zones for r in z.records]
