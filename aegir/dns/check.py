"""dns.check: ask a server for every expected record, in parallel, and compare.

Each expected (name, type) is one query (UDP, TCP when truncated). A
difference is one row per (name, type): **missing** (nothing served, or only
part of the set), **unexpected** (more than expected), **wrong** (both), or
**error** (the server did not answer, refused...). When the server allows a
zone transfer (AXFR) of a zone, names and types it serves that the plan does
not hold are **unexpected** rows too; a resolver refuses transfers, and the
report says that extra names were not looked for. SOA is not compared (its
serial moves with every change), nor are TTLs or DNSSEC records.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from aegir import fields
from aegir.dns.plan import Plan, Record
from aegir.dns.zonefile import canonical_data
from aegir.errors import AegirError

Key = tuple[str, str]  # (absolute name, type)
IGNORED = frozenset({"SOA", "RRSIG", "NSEC", "NSEC3", "NSEC3PARAM", "DNSKEY", "CDS", "CDNSKEY", "ZONEMD", "TYPE65534"})
SERVER_RE = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:\[\]]+))(?::(?P<port>\d+))?\Z")
DEFAULT_TIMEOUT = 3.0
WORKERS = 16


@dataclass(frozen=True)
class Server:
    address: str
    port: int = 53

    def __str__(self) -> str:
        addr = f"[{self.address}]" if ":" in self.address else self.address
        return f"{addr}:{self.port}"


def parse_server(text: str | None) -> Server:
    """``127.0.0.1``, ``127.0.0.1:5353``, ``::1``, ``[::1]:5353``; None: this machine's first resolver."""
    if text is None:
        import dns.resolver

        try:
            first = dns.resolver.Resolver().nameservers[0]
        except (dns.resolver.NoResolverConfiguration, IndexError):
            raise AegirError("no resolver configured here (/etc/resolv.conf): give --server ADDR[:PORT]") from None
        return Server(str(first))
    text = text.strip()
    try:
        return Server(str(ipaddress.IPv6Address(text)))
    except ValueError:
        pass
    m = SERVER_RE.match(text)
    try:
        if not m:
            raise ValueError(text)
        port = fields.port(m["port"], text=True) if m["port"] else 53  # a FieldError is a ValueError
        return Server(str(ipaddress.ip_address(m["v6"] or m["host"])), port)
    except ValueError:
        raise AegirError(f"--server {text!r}: expected an IP address, ADDR:PORT or [IPV6]:PORT") from None


@dataclass(frozen=True)
class Answer:
    """What the server served for one (name, type): `data` (None: nothing) or an `error`."""

    data: frozenset[str] | None = None
    error: str | None = None


@dataclass(frozen=True)
class Difference:
    name: str
    type: str
    status: str  # missing | unexpected | wrong | error
    expected: tuple[str, ...]
    served: tuple[str, ...]
    detail: str = ""


@dataclass(frozen=True)
class CheckResult:
    server: str
    checked: int
    differences: tuple[Difference, ...]
    notes: tuple[str, ...] = ()


def expected(plan: Plan) -> dict[Key, frozenset[str]]:
    """(name, type) -> the rdata set the plan implies, canonical; SOA left out."""
    return records_of(r for zone in plan.zones for r in zone.records if r.type not in IGNORED)


def compare(wanted: Mapping[Key, frozenset[str]], answers: Mapping[Key, Answer],
            transfers: Mapping[str, Mapping[Key, frozenset[str]]] | None = None) -> list[Difference]:
    """The differences between what is wanted and what was served (pure)."""
    out: list[Difference] = []
    for key in sorted(wanted, key=_order):
        want = wanted[key]
        got = answers.get(key, Answer(error="not asked"))
        if got.error is not None:
            out.append(Difference(*key, "error", tuple(sorted(want)), (), got.error))
            continue
        served = got.data or frozenset()
        lacking, extra = want - served, served - want
        if lacking or extra:
            status = "wrong" if lacking and extra else "missing" if lacking else "unexpected"
            out.append(Difference(*key, status, tuple(sorted(want)), tuple(sorted(served))))
    for zone in sorted(transfers or {}):
        for key, served in sorted((transfers or {})[zone].items(), key=lambda kv: _order(kv[0])):
            if key not in wanted and key[1] not in IGNORED:
                out.append(Difference(*key, "unexpected", (), tuple(sorted(served))))
    return out


def _order(key: Key) -> tuple[tuple[str, ...], str]:
    return tuple(reversed(key[0].split("."))), key[1]


def query(server: Server, name: str, rdtype: str, timeout: float = DEFAULT_TIMEOUT) -> Answer:
    """Ask `server` for (name, type): the rdata set of exactly that owner and type."""
    import dns.exception
    import dns.message
    import dns.name
    import dns.query
    import dns.rcode
    import dns.rdatatype

    qname = dns.name.from_text(name)
    qtype = dns.rdatatype.from_text(rdtype)
    try:
        response, _ = dns.query.udp_with_fallback(dns.message.make_query(qname, qtype), server.address,
                                                  timeout=timeout, port=server.port)
    except (dns.exception.DNSException, OSError) as exc:
        return Answer(error=f"no answer: {type(exc).__name__}: {exc}"[:200])
    rcode = response.rcode()
    if rcode == dns.rcode.NXDOMAIN:
        return Answer(frozenset())
    if rcode != dns.rcode.NOERROR:
        return Answer(error=f"the server answered {dns.rcode.to_text(rcode)}")
    for rrset in response.answer:
        if rrset.name == qname and rrset.rdtype == qtype:
            return Answer(frozenset(rd.to_text().lower() for rd in rrset))
    cname = next((rrset for rrset in response.answer
                  if rrset.name == qname and rrset.rdtype == dns.rdatatype.CNAME), None)
    if cname is not None:  # asked for A, the name is an alias: served data of another type
        return Answer(frozenset(f"cname {rd.to_text().lower()}" for rd in cname))
    return Answer(frozenset())


def transfer(server: Server, origin: str, timeout: float = DEFAULT_TIMEOUT) -> dict[Key, frozenset[str]] | None:
    """The whole zone by AXFR, or None when the server refuses (a resolver does)."""
    import dns.exception
    import dns.query
    import dns.zone

    try:
        zone = dns.zone.from_xfr(dns.query.xfr(server.address, origin, port=server.port, timeout=timeout,
                                               lifetime=timeout * 3, relativize=False), relativize=False)
    except (dns.exception.DNSException, OSError, EOFError, ValueError):
        return None
    out: dict[Key, frozenset[str]] = {}
    for name, rds in zone.iterate_rdatasets():
        out[(name.to_text().lower(), rds.rdtype.name)] = frozenset(rd.to_text().lower() for rd in rds)
    return out


def check(server: Server, plan: Plan, *, timeout: float = DEFAULT_TIMEOUT, workers: int = WORKERS) -> CheckResult:
    """Query `server` for every record `plan` expects (and transfer its zones), in parallel; compare."""
    wanted = expected(plan)
    origins = [z.origin for z in plan.zones]
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(wanted) + len(origins)))) as pool:
        xfrs = {o: pool.submit(transfer, server, o, timeout) for o in origins}
        asked = {k: pool.submit(query, server, k[0], k[1], timeout) for k in wanted}
        answers = {k: f.result() for k, f in asked.items()}
        transfers = {o: t for o, f in xfrs.items() if (t := f.result()) is not None}
    refused = [o for o in origins if o not in transfers]
    notes = (f"zone transfer refused for {', '.join(refused)}: names the plan does not hold were not looked for",) \
        if refused else ()
    return CheckResult(str(server), len(wanted), tuple(compare(wanted, answers, transfers)), notes)


def records_of(rows: Iterable[Record]) -> dict[Key, frozenset[str]]:
    """(name, type) -> the canonical, lower-case rdata set of `rows`."""
    out: dict[Key, set[str]] = {}
    for r in rows:
        out.setdefault((r.name, r.type), set()).add(canonical_data(r.type, r.data).lower())
    return {k: frozenset(v) for k, v in out.items()}
