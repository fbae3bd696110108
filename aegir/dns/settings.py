"""The ``dns:`` section of hosts.yml, validated: the three domains and each host's names.

Domain names are configuration, never code. They are fleet-wide, so they
belong in ``defaults:``; a host may name itself and its service addresses::

    defaults:
      dns:
        service_domain: tedomum.in     # per-host service records: hyp1.tedomum.in A/AAAA
        cname_domain: tedomum.net      # one CNAME per service name -> its service record
        rest_domain: tedomum.org       # admin names, reverse names, non-public services
        nameservers: [ns1.tedomum.org, ns2.tedomum.org]   # NS of every zone (default: ns1.<rest_domain>)
        hostmaster: hostmaster@tedomum.org               # SOA contact (default: hostmaster@<rest_domain>)
        ttl: 3600
    hosts:
      hyp1:
        dns:
          name: hyp1                   # its label in rest_domain and service_domain (default: host name)
          service_names: [hyp1, hyp1-2] # one label per service address (default: NAME, NAME-2, ...)

Mistakes are `InventoryError`s pointing at the line (as for ``fw:``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aegir.dns import names
from aegir.inventory import Inventory, Section

FLEET_KEYS = ("service_domain", "cname_domain", "rest_domain", "nameservers", "hostmaster", "ttl")
HOST_KEYS = ("name", "service_names")
KEYS = FLEET_KEYS + HOST_KEYS
DOMAIN_KEYS = ("service_domain", "cname_domain", "rest_domain")
DEFAULT_TTL = 3600
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
    """Validate every host's ``dns:`` section; the domains must be the same on every host."""
    fleet: dict[str, Any] | None = None
    first = ""
    per_host: dict[str, HostNames] = {}
    sections = []
    for host in inv.hosts:
        sec = inv.section(host, "dns", KEYS)
        if not sec.values:
            raise inv.error(("hosts", host.name), f"{host.name}: no 'dns:' section; set service_domain, "
                            "cname_domain and rest_domain under defaults: dns:")
        sections.append(sec)
        got = {k: sec.get(k) for k in FLEET_KEYS}
        if fleet is None:
            fleet, first = got, host.name
        else:
            for k in FLEET_KEYS:
                if got[k] != fleet[k]:
                    raise sec.error((k,), f"differs from {first}'s ({fleet[k]!r}): DNS settings other than "
                                    "'name' and 'service_names' are fleet-wide; set them once, under defaults: dns:")
        per_host[host.name] = _host_names(sec)
    assert fleet is not None  # an inventory has at least one host
    domains = _domains(sections[0], fleet)
    _distinct_labels(sections, per_host)
    return DnsSettings(domains, per_host)


def _domains(sec: Section, fleet: Mapping[str, Any]) -> Domains:
    got: dict[str, str] = {}
    for key in DOMAIN_KEYS:
        if fleet.get(key) is None:
            raise sec.inventory.error(("defaults", "dns"), f"{sec.host.name}: dns.{key}: is missing (domains are "
                                      "configuration: set service_domain, cname_domain and rest_domain under "
                                      "defaults: dns:)")
        try:
            got[key] = names.domain(fleet[key])
        except ValueError as exc:
            raise sec.error((key,), str(exc)) from None
    for a, b in ((x, y) for i, x in enumerate(DOMAIN_KEYS) for y in DOMAIN_KEYS[i + 1:]):
        if names.is_under(got[a], got[b]) or names.is_under(got[b], got[a]):
            raise sec.error((b,), f"{got[b]} and {a} {got[a]} must be distinct, neither inside the other")
    ns_raw = fleet.get("nameservers")
    ns_list = [f"ns1.{got['rest_domain']}"] if ns_raw is None else ns_raw if isinstance(ns_raw, list) else [ns_raw]
    nameservers = []
    for i, ns in enumerate(ns_list):
        try:
            nameservers.append(names.domain(ns))
        except ValueError as exc:
            raise sec.error(("nameservers", i), str(exc)) from None
    if not nameservers:
        raise sec.error(("nameservers",), "must list at least one name server")
    contact = fleet.get("hostmaster") or f"hostmaster@{got['rest_domain'].rstrip('.')}"
    try:
        hostmaster = _rname(contact)
    except ValueError as exc:
        raise sec.error(("hostmaster",), str(exc)) from None
    ttl = fleet.get("ttl")
    ttl = DEFAULT_TTL if ttl is None else ttl
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 < ttl <= MAX_TTL:
        raise sec.error(("ttl",), f"must be a number of seconds from 1 to {MAX_TTL}, not {ttl!r}")
    return Domains(got["service_domain"], got["cname_domain"], got["rest_domain"], tuple(nameservers),
                   hostmaster, ttl)


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


def _host_names(sec: Section) -> HostNames:
    host = sec.host
    label = sec.get("name", host.name)
    try:
        label = names.check_relative(label)
        if label == "@" or "." in label:
            raise ValueError(f"{label!r} must be one DNS label")
    except ValueError as exc:
        raise sec.error(("name",), f"{exc} (the host name is the default: set dns.name)") from None
    count = len(host.service_ipv4) or len(host.service_ipv6)
    raw = sec.get("service_names")
    if raw is None:
        labels = [label if i == 0 else f"{label}-{i + 1}" for i in range(count)]
    else:
        if not isinstance(raw, list):
            raise sec.error(("service_names",), "must be a list of labels, one per service address")
        if len(raw) != count:
            raise sec.error(("service_names",), f"lists {len(raw)} label(s) for {count} service address(es)")
        labels = []
        for i, item in enumerate(raw):
            try:
                one = names.check_relative(item)
                if one == "@" or "." in one:
                    raise ValueError(f"{one!r} must be one DNS label")
            except ValueError as exc:
                raise sec.error(("service_names", i), str(exc)) from None
            if one in labels:
                raise sec.error(("service_names", i), f"lists {one!r} twice")
            labels.append(one)
    return HostNames(host.name, label, tuple(labels))


def _distinct_labels(sections: list[Section], per_host: Mapping[str, HostNames]) -> None:
    seen_admin: dict[str, str] = {}
    seen_service: dict[str, str] = {}
    for sec in sections:
        h = sec.host
        hn = per_host[h.name]
        if hn.label in seen_admin:
            raise sec.error(("name",), f"{hn.label!r} is already {seen_admin[hn.label]}'s name")
        seen_admin[hn.label] = h.name
        for lab in hn.service_labels:
            if lab in seen_service:
                raise sec.error(("service_names",), f"{lab!r} is already a service name of {seen_service[lab]}")
            seen_service[lab] = h.name
