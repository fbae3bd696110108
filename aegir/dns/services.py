"""Which services a Compose project publishes, under which names: its ``x-aegir: dns:`` field.

The names are publishable (nothing site-specific): labels relative to the
fleet's domains, which hosts.yml holds. The service address is the one the
project's ``ports:`` publish on, unless ``address:`` names it (literally or
as ``${VAR}`` from the project's ``.env``)::

    x-aegir:
      dns:
        address: ${SERVICE_IPV4}     # optional: which of the host's service addresses
        names:
          - cloud                    # cloud.<cname_domain> CNAME <host's service record>
          - lists
          - name: mail
            cname: false             # A/AAAA copied instead of a CNAME
            mx: [lists]              # lists.<cname_domain> MX 10 mail.<cname_domain> (a name it owns)
          - name: matrix
            srv: ["_matrix._tcp:8448"]   # _matrix._tcp.<cname_domain> SRV 10 0 8448 matrix.<cname_domain>
          - {name: bnc, public: false}   # in the rest domain instead

A service may instead carry labels, for plain names on the address its own
``ports:`` publish on (MX and SRV need ``x-aegir``)::

    services:
      web:
        labels:
          aegir.dns.names: "cloud, files"
          aegir.dns.cname: "false"        # optional, for all of them
          aegir.dns.public: "false"       # optional: in the rest domain

The file is data from a host: a mistake is one problem naming the file and
line, and never stops the other projects' names (a bad name drops that name
alone). Which names a project may own is `aegir.dns.plan.build`'s rule.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from aegir import fields, yamldoc
from aegir.compose.discovery import Project
from aegir.dns import names
from aegir.fields import FieldError, Fields, FieldsError
from aegir.inventory import Host
from aegir.yamldoc import YamlError

NAME_KEYS = ("name", "cname", "public", "mx", "srv")
DNS_KEYS = ("address", "names")
SRV_RE = re.compile(r"^(?P<owner>[^:\s]+):(?P<port>\d+)(?:\s+(?P<prio>\d+)(?:\s+(?P<weight>\d+))?)?\Z")
MX_RE = re.compile(r"^(?P<owner>\S+)(?:\s+(?P<prio>\d+))?\Z")
VAR_RE = re.compile(r"^\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))$")
MAX_NAMES = 256
#: MX preferences, SRV priorities and weights are 16-bit numbers.
UINT16 = 65535
#: Service labels, the lighter form: names (comma or space separated), and flags for all of them.
LABEL_NAMES, LABEL_CNAME, LABEL_PUBLIC = "aegir.dns.names", "aegir.dns.cname", "aegir.dns.public"


@dataclass(frozen=True)
class Srv:
    """An SRV record at `owner` (relative, ``_matrix._tcp``) pointing at the name that declares it."""

    owner: str
    port: int
    priority: int = 10
    weight: int = 0


@dataclass(frozen=True)
class Name:
    """One public name of a project, relative to its domain (``@``: the domain itself)."""

    name: str
    public: bool = True  # cname domain; False: rest domain
    cname: bool = True  # may be a CNAME (False: its A/AAAA are copied)
    mx: tuple[tuple[str, int], ...] = ()  # (owner, preference) of MX records pointing here
    srv: tuple[Srv, ...] = ()
    origin: str = field(default="", compare=False)  # file:line of the name in its compose file


@dataclass(frozen=True)
class Publication:
    """The names one project publishes on one of its host's service address pairs (`address`: index)."""

    host: str
    project: str  # kind/folder
    address: int
    names: tuple[Name, ...]
    origin: str  # file:line of its x-aegir.dns


@dataclass(frozen=True)
class Read:
    publications: tuple[Publication, ...] = ()
    problems: tuple[str, ...] = ()


def read(host: Host, project: Project, env: str | None = None) -> Read:
    """The names `project` (on `host`) publishes, or the problems that stop it (file:line: sentence)."""
    path = project.compose_path
    if project.error or not project.compose_text:
        return Read()  # status and lint report unreadable files; DNS has nothing to read there
    try:
        doc = yamldoc.load(project.compose_text)
    except YamlError as exc:
        return Read(problems=(f"{path}:{exc}",))
    data = doc.data if isinstance(doc.data, dict) else {}
    pubs: list[Publication] = []
    problems: list[str] = []
    for got in (*_from_extension(host, project, doc, data, env), *_from_labels(host, project, doc, data, env)):
        if isinstance(got, Publication):
            pubs.append(got)
        else:
            problems.append(got)
    return Read(tuple(pubs), tuple(problems))


def _from_extension(host: Host, project: Project, doc: yamldoc.YamlDoc, data: Mapping[str, Any],
                    env: str | None) -> list[Publication | str]:
    """The file's ``x-aegir: dns:`` as a publication and the problems of its names (a bad name is
    dropped alone), or one problem when the field as a whole is wrong; nothing when there is none."""
    ext = data.get("x-aegir")
    if not isinstance(ext, dict) or "dns" not in ext:
        return []
    at = ("x-aegir", "dns")
    dns = Fields({}, project.compose_path, lambda keys: doc.line(*at, *keys), path=at)
    parsed: list[Name] = []
    out: list[Publication | str] = []
    try:
        if not isinstance(ext["dns"], dict):
            raise dns.fail((), "must be a mapping with 'names' (and optionally 'address')")
        dns = replace(dns, values=ext["dns"])
        dns.check(DNS_KEYS)
        raw = dns.get("names")
        items = [raw] if isinstance(raw, (str, dict)) else raw
        if not isinstance(items, list) or not items:
            raise dns.fail(("names",), "must list at least one name")
        if len(items) > MAX_NAMES:
            raise dns.fail(("names",), f"more than {MAX_NAMES} names")
        try:
            address = _address(host, data, dns.get("address"), env)
        except FieldError as exc:
            raise dns.fail(exc.at, exc.sentence) from None
        for i, item in enumerate(items):
            try:
                one = _name(dns.at(("names", i), item))
            except FieldsError as exc:
                out.append(str(exc))
                continue
            parsed.append(replace(one, origin=f"{project.compose_path}:{doc.line(*at, 'names', i) or '?'}"))
    except FieldsError as exc:
        return [str(exc)]
    if parsed:
        out.insert(0, Publication(host.name, project.path, address, tuple(parsed),
                                  f"{project.compose_path}:{doc.line(*at)}"))
    return out


def _from_labels(host: Host, project: Project, doc: yamldoc.YamlDoc, data: Mapping[str, Any],
                 env: str | None) -> list[Publication | str]:
    """One publication per service labelled ``aegir.dns.names`` (on the address its own ports publish on)."""
    out: list[Publication | str] = []
    services = data.get("services")
    for sname, svc in (services.items() if isinstance(services, dict) else ()):
        labels, paths = _labels(svc.get("labels") if isinstance(svc, dict) else None)
        if LABEL_NAMES not in labels:
            continue
        here = ("services", sname, "labels")

        def where(key: str, here: tuple[Any, ...] = here, paths: dict[str, tuple[Any, ...]] = paths) -> str:
            return f"{project.compose_path}:{doc.line(*here, *paths.get(key, ())) or '?'}: label {key}"

        try:
            flags = {}
            for key in (LABEL_CNAME, LABEL_PUBLIC):
                try:
                    flags[key] = fields.boolean(labels.get(key, True), text=True)
                except FieldError as exc:
                    raise FieldError(exc.sentence, (key,)) from None
            words = str(labels[LABEL_NAMES]).replace(",", " ").split()
            if not words:
                raise FieldError("names no name", (LABEL_NAMES,))
            if len(words) > MAX_NAMES:
                raise FieldError(f"names more than {MAX_NAMES} names", (LABEL_NAMES,))
            parsed = []
            for w in words:
                try:
                    parsed.append(Name(names.check_relative(w), flags[LABEL_PUBLIC], flags[LABEL_CNAME],
                                       origin=where(LABEL_NAMES).rsplit(": ", 1)[0]))
                except ValueError as exc:
                    raise FieldError(str(exc), (LABEL_NAMES,)) from None
            address = _address(host, {"services": {sname: svc}}, None, env)
        except FieldError as bad:
            out.append(f"{where(bad.at[0] if bad.at else LABEL_NAMES)}: {bad.sentence}")
            continue
        out.append(Publication(host.name, project.path, address, tuple(parsed),
                               where(LABEL_NAMES).rsplit(": ", 1)[0]))
    return out


def _labels(raw: Any) -> tuple[dict[str, Any], dict[str, tuple[Any, ...]]]:
    """A service's labels (mapping or ``KEY=VALUE`` list) and the path of each under ``labels``."""
    if isinstance(raw, dict):
        return {str(k): v for k, v in raw.items()}, {str(k): (k,) for k in raw}
    values: dict[str, Any] = {}
    paths: dict[str, tuple[Any, ...]] = {}
    for i, item in enumerate(raw if isinstance(raw, list) else ()):
        key, _, value = str(item).partition("=")
        values[key], paths[key] = value, (i,)
    return values, paths


def _name(item: Fields) -> Name:
    """One item of ``names``: a label, or a mapping with ``name`` and its records."""
    value = item.values
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict):
        raise item.fail((), f"a name is a label or a mapping with 'name', not {value!r}")
    item = replace(item, values=value)
    item.check(NAME_KEYS)
    try:
        label = names.check_relative(value.get("name"))
    except ValueError as exc:
        raise item.fail(("name",), str(exc)) from None
    return Name(label, item.get("public", fields.boolean, True), item.get("cname", fields.boolean, True),
                tuple(item.get("mx", fields.list_of(_mx, "MX owners"), ())),
                tuple(item.get("srv", fields.list_of(_srv, "SRV records"), ())))


def _mx(spec: Any) -> tuple[str, int]:
    """``OWNER [PREFERENCE]`` (like ``lists`` or ``lists 10``): the owner and the preference (default 10)."""
    return mx_spec(spec, names.check_relative, "OWNER", "lists")


def mx_spec(spec: Any, name: Callable[[str], str], what: str, example: str) -> tuple[str, int]:
    """``NAME [PREFERENCE]``: `name`'s reading of NAME, and the preference (default 10); ValueError."""
    m = MX_RE.match(spec) if isinstance(spec, str) else None
    if not m:
        raise ValueError(f"{spec!r} is not '{what}' or '{what} PREFERENCE' (like '{example}' or '{example} 10')")
    try:
        prio = fields.whole(m["prio"] or 10, most=UINT16, text=True)
    except FieldError as exc:
        raise ValueError(f"{spec!r}: the preference {exc}") from None
    return name(m["owner"]), prio


def _srv(spec: Any) -> Srv:
    """``OWNER:PORT [PRIORITY [WEIGHT]]`` (like ``_matrix._tcp:8448``), priority 10 and weight 0 by default."""
    s = SRV_RE.match(spec) if isinstance(spec, str) else None
    if not s:
        raise ValueError(f"{spec!r} is not 'OWNER:PORT [PRIORITY [WEIGHT]]' (like '_matrix._tcp:8448')")
    owner = names.check_relative(s["owner"], underscore=True)
    if not owner.startswith("_"):
        raise ValueError(f"{spec!r}: an SRV owner starts with _service._proto")
    try:
        port = fields.port(s["port"], text=True)
        prio, weight = (fields.whole(s[k] or default, most=UINT16, text=True)
                        for k, default in (("prio", 10), ("weight", 0)))
    except FieldError as exc:
        raise ValueError(f"{spec!r}: {exc}") from None
    return Srv(owner, port, prio, weight)


def _address(host: Host, data: Mapping[str, Any], given: Any, env: str | None) -> int:
    """The index of the service address pair the project publishes on (`FieldError` at the key to blame)."""
    pairs = max(len(host.service_ipv4), len(host.service_ipv6))
    if not pairs:
        raise FieldError(f"host {host.name} has no service address in hosts.yml to publish on")
    if given is not None:
        ip = _ip(given, env)
        if ip is None:
            raise FieldError(f"{given!r} is not an IP address (nor a ${{VAR}} of .env holding one)", ("address",))
        index = _index(host, ip)
        if index is None:
            raise FieldError(f"{ip} is not one of {host.name}'s service addresses", ("address",))
        return index
    found = sorted({i for ip in published_ips(data, env) if (i := _index(host, ip)) is not None})
    if len(found) > 1:
        raise FieldError("its ports publish on several service addresses; name one with x-aegir.dns.address")
    return found[0] if found else 0


def _index(host: Host, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> int | None:
    for family in (host.service_ipv4, host.service_ipv6):
        if ip in family:
            return family.index(ip)  # type: ignore[arg-type]
    return None


def _ip(value: Any, env: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not isinstance(value, str):
        return None
    m = VAR_RE.match(value.strip())
    if m:
        value = env_values(env).get(m["braced"] or m["bare"]) or ""
    try:
        return ipaddress.ip_address(value.strip().strip("[]"))
    except ValueError:
        return None


def env_values(env: str | None) -> dict[str, str]:
    """A ``.env`` text's values (python-dotenv's parser; no interpolation, nothing executed)."""
    if not env:
        return {}
    import io

    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(stream=io.StringIO(env), interpolate=False).items() if v is not None}


def published_ips(data: Mapping[str, Any], env: str | None) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The host addresses a compose file's ``ports:`` publish on (short and long syntax)."""
    out = []
    services = data.get("services")
    for svc in (services.values() if isinstance(services, dict) else ()):
        ports = svc.get("ports") if isinstance(svc, dict) else None
        for p in ports if isinstance(ports, list) else ():
            text = p.get("host_ip") if isinstance(p, dict) else _short_host_ip(p) if isinstance(p, str) else None
            ip = _ip(text, env) if text else None
            if ip is not None:
                out.append(ip)
    return out


def _short_host_ip(spec: str) -> str | None:
    """``"192.0.2.1:443:443"`` / ``"[2001:db8::1]:443:443"`` / ``"${IP}:443:443"`` -> the host IP part."""
    if spec.startswith("["):
        end = spec.find("]")
        return spec[1:end] if end > 0 else None
    parts = spec.split(":")
    return parts[0] if len(parts) == 3 else None

