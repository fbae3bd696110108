"""What net.plan reads from a host: its configured addresses (``ip -j addr``), Docker's network settings
(`aegir.net.posture`), and through the Docker SDK its networks' subnets, its running containers' addresses,
its version and data-root. Parsers are pure."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aegir.docker import DockerNetwork, dockerd_fact, parse_networks
from aegir.errors import AegirError
from aegir.facts import Fact
from aegir.net.posture import DockerConfig, config_fact
from aegir.sh import Cmd

if TYPE_CHECKING:  # pragma: no cover
    from aegir.host import HostContext

Addr = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class ContainerAddress:
    """One running container's addresses on one network."""

    container: str
    network: str
    ipv4: ipaddress.IPv4Address | None
    ipv6: ipaddress.IPv6Address | None  # its global IPv6 (Docker's GlobalIPv6Address)


@dataclass(frozen=True)
class NetFacts:
    addresses: frozenset[Addr]  # configured on the host's interfaces
    docker: bool  # dockerd runs (else networks and containers are unknown)
    networks: tuple[DockerNetwork, ...] = ()
    containers: tuple[ContainerAddress, ...] = ()
    config: DockerConfig | None = None  # dockerd's flags and daemon.json
    version: str | None = None  # Docker's, when it runs
    data_root: str | None = None  # the running daemon's


def addresses_cmd() -> Cmd:
    """The host's addresses as JSON.

    >>> addresses_cmd().line
    'ip -j addr show'
    """
    return Cmd(("ip", "-j", "addr", "show"))


def parse_addresses(stdout: str) -> frozenset[Addr]:
    """``ip -j addr show`` -> every address configured on an interface."""
    try:
        links = json.loads(stdout or "[]")
    except ValueError as exc:
        raise AegirError(f"cannot read `ip -j addr show`: {exc}") from None
    out: set[Addr] = set()
    for link in links if isinstance(links, list) else ():
        for info in (link.get("addr_info") or []) if isinstance(link, dict) else ():
            try:
                out.add(ipaddress.ip_address(str(info.get("local"))))
            except ValueError:
                continue
    return frozenset(out)


def addresses_fact() -> Fact[frozenset[Addr]]:
    return Fact("net.addresses", addresses_cmd(), lambda r: parse_addresses(r.stdout))


def parse_containers(rows: Iterable[Mapping[str, Any]]) -> tuple[ContainerAddress, ...]:
    """The Docker API's (running) container list -> their addresses per network."""
    out = []
    for row in rows:
        name = ((row.get("Names") or ["?"])[0] or "?").lstrip("/")
        nets = ((row.get("NetworkSettings") or {}).get("Networks") or {})
        for net, ep in sorted(nets.items()):
            ep = ep or {}
            out.append(ContainerAddress(name, net, _addr(ep.get("IPAddress"), 4), _addr(ep.get("GlobalIPv6Address"), 6)))  # type: ignore[arg-type]
    return tuple(sorted(out, key=lambda c: (c.container, c.network)))


def _addr(text: Any, version: int) -> Addr | None:
    try:
        a = ipaddress.ip_address(str(text)) if text else None
    except ValueError:
        return None
    return a if a is not None and a.version == version else None


def gather(hc: "HostContext") -> NetFacts:
    """The host's addresses and Docker's settings; its Docker networks, running containers, version and
    data-root when dockerd runs."""
    # One round trip; dockerd is asked of /proc: a socket-activated Docker is not started by a report.
    addresses, running, config = hc.facts(addresses_fact(), dockerd_fact(), config_fact())
    if not running:
        return NetFacts(addresses, False, config=config)
    api = hc.docker(running=True).api
    info = api.info()
    return NetFacts(addresses, True, parse_networks(api.networks()), parse_containers(api.containers()), config,
                    str(info.get("ServerVersion") or "") or None, str(info.get("DockerRootDir") or "") or None)
