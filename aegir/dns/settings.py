"""The ``dns:`` section of hosts.yml, validated: the three domains and each host's names.

Domain names are configuration, never code. They are fleet-wide, so they
belong in ``defaults:``; a host may name itself and its service addresses::

    defaults:
      dns:
        service_domain: tedomum.in     # per-host service records: hyp1.tedomum.in A/AAAA
        cname_domain: tedomum.net      # one CNAME per service name -> its service record
        rest_domain: tedomum.org       # admin names, reverse names, non-public services
        nameservers:                   # NS of every zone (default: ns1.<rest_domain>)
          - hyp1.tedomum.org           # a host's admin name: its addresses are the zone's glue
          - {name: ns2.tedomum.org, ipv4: 192.0.2.53, ipv6: 2001:db8::53}   # in a zone: its addresses
          - ns.example.net             # outside the fleet's zones: no address needed
        hostmaster: hostmaster@tedomum.org               # SOA contact (default: hostmaster@<rest_domain>)
        ttl: 3600
        mx:                            # a zone apex's MX records: the inventory's, never a project's
          tedomum.net: [mail.tedomum.net, "mx2.example.org 20"]
    hosts:
      hyp1:
        dns:
          name: hyp1                   # its label in rest_domain and service_domain (default: host name)
          service_names: [hyp1, hyp1-2] # one label per service address (default: NAME, NAME-2, ...)

A name server inside one of the three zones needs its addresses in that zone
(servers refuse a zone whose in-zone NS has none): it is a host's admin or
service name, or its entry gives ``ipv4``/``ipv6``; else the inventory is
refused, naming the server and the zone.

Mistakes are `InventoryError`s pointing at the line (as for ``fw:``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aegir import fields
from aegir.dns import names
from aegir.dns.services import mx_spec
from aegir.fields import IP, FieldError, Fields
from aegir.inventory import Host, Inventory

FLEET_KEYS = ("service_domain", "cname_domain", "rest_domain", "nameservers", "hostmaster", "ttl", "mx")
HOST_KEYS = ("name", "service_names")
KEYS = FLEET_KEYS + HOST_KEYS
DOMAIN_KEYS = ("service_domain", "cname_domain", "rest_domain")
DEFAULT_TTL = 3600
NS_KEYS = ("name", "ipv4", "ipv6")
MAX_TTL = 2**31 - 1


@dataclass(frozen=True)
class Domains:
    """The fleet's DNS settings: the three domains (absolute names), the NS names, the SOA contact."""

    service: str
    cname: str
    rest: str
    nameservers: tuple[str, ...]
    hostmaster: str  # the SOA RNAME, as a DNS name: hostmaster.tedomum.org.
    ttl: int = DEFAULT_TTL
    #: (name server, its addresses) for the in-zone name servers hosts.yml gives addresses to
    glue: tuple[tuple[str, tuple[IP, ...]], ...] = ()
    #: (zone apex, target, preference) of the apexes' MX records
    mx: tuple[tuple[str, str, int], ...] = ()

    @property
    def all(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((self.service, self.cname, self.rest)))


@dataclass(frozen=True)
class HostNames:
    """One host's labels: `label` names its admin addresses in the rest domain; `service_labels`,
    one per service address pair, name its service records in the service domain."""

    host: str
    label: str
    service_labels: tuple[str, ...]


@dataclass(frozen=True)
class DnsSettings:
    """Every host's ``dns:`` section, validated: the fleet's domains and each host's names."""

    domains: Domains
    hosts: Mapping[str, HostNames]


def for_inventory(inv: Inventory) -> DnsSettings:
    """Validate every host's ``dns:`` section; the domains must be the same on every host.

    The zones cover every host: refused while a host's entry is broken.
    """
    fleet: dict[str, Any] | None = None
    first = ""
    per_host: dict[str, HostNames] = {}
    sections: list[tuple[Host, Fields]] = []
    for host in inv.every_host("the DNS zones cover every host"):
        sec = inv.section(host, "dns", KEYS)
        if not sec.values:
            raise inv.error(("hosts", host.name), f"{host.name}: no 'dns:' section; set service_domain, "
                            "cname_domain and rest_domain under defaults: dns:")
        sections.append((host, sec))
        got = {k: sec.get(k) for k in FLEET_KEYS}
        if fleet is None:
            fleet, first = got, host.name
        else:
            for k in FLEET_KEYS:
                if got[k] != fleet[k]:
                    raise sec.fail((k,), f"differs from {first}'s ({fleet[k]!r}): DNS settings other than "
                                   "'name' and 'service_names' are fleet-wide; set them once, under defaults: dns:")
        per_host[host.name] = _host_names(host, sec)
    assert fleet is not None  # an inventory has at least one host
    domains = _domains(inv, *sections[0])
    _distinct_labels(sections, per_host)
    _in_zone_servers_have_addresses(domains, per_host, sections[0][1])
    return DnsSettings(domains, per_host)


def _domains(inv: Inventory, host: Host, sec: Fields) -> Domains:
    got: dict[str, str] = {}
    for key in DOMAIN_KEYS:
        if sec.get(key) is None:
            raise inv.error(("defaults", "dns"), f"{host.name}: dns.{key}: is missing (domains are "
                            "configuration: set service_domain, cname_domain and rest_domain under "
                            "defaults: dns:)")
        got[key] = sec.get(key, names.domain)
    for a, b in ((x, y) for i, x in enumerate(DOMAIN_KEYS) for y in DOMAIN_KEYS[i + 1:]):
        if names.is_under(got[a], got[b]) or names.is_under(got[b], got[a]):
            raise sec.fail((b,), f"{got[b]} and {a} {got[a]} must be distinct, neither inside the other")
    servers = sec.get("nameservers", fields.list_of(_nameserver, "name servers"),
                      [(f"ns1.{got['rest_domain']}", ())])
    if not servers:
        raise sec.fail(("nameservers",), "must list at least one name server")
    nameservers = [n for n, _ in servers]
    for i, n in enumerate(nameservers):
        if n in nameservers[:i]:
            raise sec.fail(("nameservers", i), f"lists {n} twice")
    hostmaster = sec.get("hostmaster", _rname) or _rname(f"hostmaster@{got['rest_domain'].rstrip('.')}")
    ttl = sec.get("ttl", lambda v: int(fields.duration(v, most=MAX_TTL, whole_seconds=True)), DEFAULT_TTL)
    zones = (got["service_domain"], got["cname_domain"], got["rest_domain"])
    mx = sec.get("mx", lambda v: _apex_mx(v, zones), ())
    return Domains(got["service_domain"], got["cname_domain"], got["rest_domain"], tuple(nameservers),
                   hostmaster, ttl, tuple((n, a) for n, a in servers if a), mx)


def _apex_mx(value: object, zones: tuple[str, ...]) -> tuple[tuple[str, str, int], ...]:
    """``{ZONE: [TARGET [PREFERENCE], ...]}``: the MX records at the apex of one of the fleet's zones."""
    if not isinstance(value, dict):
        raise ValueError("must map a zone to its mail servers, like {tedomum.net: [mail.tedomum.net]}")
    out = []
    for key, targets in value.items():
        try:
            zone = names.domain(key)
        except ValueError as exc:
            raise FieldError(str(exc), (key,)) from None
        if zone not in zones:
            raise FieldError(f"{zone} is not one of the fleet's zones ({', '.join(zones)})", (key,))
        try:
            specs = fields.list_of(lambda s: mx_spec(s, names.domain, "NAME", "mail.tedomum.net"),
                                   "mail servers")(targets)
        except FieldError as exc:
            raise FieldError(exc.sentence, (key, *exc.at)) from None
        out += [(zone, target, pref) for target, pref in specs]
    return tuple(out)


def _nameserver(value: object) -> tuple[str, tuple[IP, ...]]:
    """A name server: its name, or ``{name, ipv4, ipv6}`` (its addresses, for the zone holding it)."""
    if not isinstance(value, dict):
        return names.domain(value), ()
    unknown = sorted(set(map(str, value)) - set(NS_KEYS))
    if unknown or "name" not in value:
        raise ValueError(f"a name server is a name or a mapping with name, ipv4, ipv6, not {value!r}")
    addrs: list[IP] = []
    for key, version in (("ipv4", 4), ("ipv6", 6)):
        if value.get(key) is not None:
            try:
                addrs.append(fields.ip(value[key], version))
            except FieldError as exc:
                raise ValueError(f"{key}: {exc.sentence}") from None
    return names.domain(value["name"]), tuple(addrs)


def _in_zone_servers_have_addresses(d: Domains, hosts: Mapping[str, HostNames], sec: Fields) -> None:
    """Every name server inside one of the zones has addresses there (hosts.yml's, or its entry's):
    a server refuses a zone whose in-zone NS has no address record."""
    known = {names.absolute(h.label, d.rest) for h in hosts.values()}
    known |= {names.absolute(lab, d.service) for h in hosts.values() for lab in h.service_labels}
    glue = dict(d.glue)
    for i, ns in enumerate(d.nameservers):
        zone = next((z for z in d.all if names.is_under(ns, z)), None)
        if zone is None:
            if ns in glue:
                raise sec.fail(("nameservers", i), f"{ns} is outside the fleet's zones: its addresses are "
                               "not the fleet's to publish (give its name only)")
            continue
        if ns in known and ns in glue:
            raise sec.fail(("nameservers", i), f"{ns} is a host's name: its addresses are hosts.yml's "
                           "(give its name only)")
        if ns == zone:
            raise sec.fail(("nameservers", i), f"{ns} is a zone apex, not a name server's name")
        if ns not in known and ns not in glue:
            raise sec.fail(("nameservers", i), f"{ns} is a name server inside the zone {zone} with no address "
                           f"(A or AAAA) in hosts.yml: the zone {zone} would not load; write "
                           f"{{name: {ns.rstrip('.')}, ipv4: ADDR, ipv6: ADDR}} or name a host's admin name")


def _rname(contact: object) -> str:
    """``hostmaster@tedomum.org`` -> ``hostmaster.tedomum.org.`` (an address whose local part has no dot)."""
    if not isinstance(contact, str) or contact.count("@") > 1:
        raise ValueError(f"{contact!r} is not a mail address like hostmaster@tedomum.org")
    local, at, dom = contact.partition("@")
    if not at:
        return names.domain(contact)
    if not names.LABEL_RE.match(local.lower()):
        raise ValueError(f"{contact!r}: the part before '@' must be one DNS label (no dot)")
    return f"{local.lower()}.{names.domain(dom)}"


def _label(value: object) -> str:
    """One DNS label, relative to a domain."""
    one = names.check_relative(value)
    if one == "@" or "." in one:
        raise ValueError(f"{one!r} must be one DNS label")
    return one


def _host_names(host: Host, sec: Fields) -> HostNames:
    try:
        label = _label(sec.get("name", default=host.name))
    except ValueError as exc:
        raise sec.fail(("name",), f"{exc} (the host name is the default: set dns.name)") from None
    count = len(host.service_ipv4) or len(host.service_ipv6)
    labels = sec.get("service_names", fields.list_of(_label, "labels, one per service address", single=False))
    if labels is None:
        labels = [label if i == 0 else f"{label}-{i + 1}" for i in range(count)]
    elif len(labels) != count:
        raise sec.fail(("service_names",), f"lists {len(labels)} label(s) for {count} service address(es)")
    for i, one in enumerate(labels):
        if one in labels[:i]:
            raise sec.fail(("service_names", i), f"lists {one!r} twice")
    return HostNames(host.name, label, tuple(labels))


def _distinct_labels(sections: list[tuple[Host, Fields]], per_host: Mapping[str, HostNames]) -> None:
    seen_admin: dict[str, str] = {}
    seen_service: dict[str, str] = {}
    for h, sec in sections:
        hn = per_host[h.name]
        if hn.label in seen_admin:
            raise sec.fail(("name",), f"{hn.label!r} is already {seen_admin[hn.label]}'s name")
        seen_admin[hn.label] = h.name
        for lab in hn.service_labels:
            if lab in seen_service:
                raise sec.fail(("service_names",), f"{lab!r} is already a service name of {seen_service[lab]}")
            seen_service[lab] = h.name
