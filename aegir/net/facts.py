"""What net.plan reads from a host: its configured addresses (``ip -j addr``), Docker's network settings
(`aegir.net.posture`), and through the Docker SDK its networks' subnets, its running containers' addresses,
its version and data-root. Parsers are pure."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aegir.docker import DockerNetwork, dockerd_fact, parse_networks
from aegir.errors import AegirError
from aegir.facts import Fact
from aegir.fields import Answer, read_json
from aegir.net import mesh, swanctl
from aegir.net.posture import DockerConfig, config_fact
from aegir.sh import Cmd, shell

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
    links = read_json(stdout or "[]", "`ip -j addr show`")
    out: set[Addr] = set()
    for link in Answer(links, "`ip -j addr show`").items():
        for info in link["addr_info"].items():
            try:
                out.add(ipaddress.ip_address(info["local"].text()))
            except ValueError:
                continue
    return frozenset(out)


def addresses_fact() -> Fact[frozenset[Addr]]:
    return Fact("net.addresses", addresses_cmd(), lambda r: parse_addresses(r.stdout))


def parse_containers(rows: Any) -> tuple[ContainerAddress, ...]:
    """The Docker API's (running) container list -> their addresses per network (`aegir.fields.ShapeError`
    for a list of another shape)."""
    out = []
    for row in Answer(rows, "docker /containers/json").items():
        names = row["Names"].texts()
        name = (names[0] if names else "").lstrip("/") or "?"
        for net, ep in row["NetworkSettings"]["Networks"].pairs():
            out.append(ContainerAddress(name, net, _addr(ep["IPAddress"].text(), 4),  # type: ignore[arg-type]
                                        _addr(ep["GlobalIPv6Address"].text(), 6)))  # type: ignore[arg-type]
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
    info = Answer(api.info(), "docker info")
    return NetFacts(addresses, True, parse_networks(api.networks()), parse_containers(api.containers()), config,
                    info["ServerVersion"].text() or None, info["DockerRootDir"].text() or None)


# --------------------------------------------------------------------------- the IPsec mesh (net.keys, net.mesh, net.check)

_PUBKEY_SCRIPT = 'test -e "$1" || exit 3; exec pki --pub --in "$1" --outform pem'


def pubkey_cmd(private_key: str) -> Cmd:
    """The host's public key, derived on the host from its private key (which never leaves it); exit 3: no key.

    >>> pubkey_cmd("/etc/swanctl/private/aegir.key").line
    'sh -c \\'test -e "$1" || exit 3; exec pki --pub --in "$1" --outform pem\\' sh /etc/swanctl/private/aegir.key'
    """
    return shell(_PUBKEY_SCRIPT, private_key)


def parse_pubkey(stdout: str, exited: int) -> str | None:
    """``pki --pub``'s PEM (None: the host has no key yet); anything else is refused."""
    if exited == 3:
        return None
    key = mesh.check_pubkey(stdout)
    if key is None:
        raise AegirError(f"`pki --pub` printed no PEM public key for {mesh.PRIVATE_KEY}")
    return key


def pubkey_fact() -> Fact[str | None]:
    return Fact("net.pubkey", pubkey_cmd(mesh.PRIVATE_KEY), lambda r: parse_pubkey(r.stdout, r.exited), (0, 3),
                cache=False)


def parse_ssh_connection(stdout: str) -> tuple[Addr, ...]:
    """``$SSH_CONNECTION`` (client address, port, server address, port) -> both addresses.

    >>> parse_ssh_connection("192.0.2.1 50022 192.0.2.11 22\\n")
    (IPv4Address('192.0.2.1'), IPv4Address('192.0.2.11'))
    """
    parts = stdout.split()
    out = []
    for text in parts[0:1] + parts[2:3]:
        try:
            out.append(ipaddress.ip_address(text.split("%")[0]))
        except ValueError:
            continue
    return tuple(out)


def ssh_connection_fact() -> Fact[tuple[Addr, ...]]:
    """The operator's session as the host sees it (empty on the local host)."""
    return Fact("net.ssh_connection", Cmd.of("printenv", "SSH_CONNECTION"), lambda r: parse_ssh_connection(r.stdout),
                (0, 1))


def swanctl_cmd(*args: str) -> Cmd:
    """``swanctl ARGS`` (its plugin warnings go to stderr)."""
    return Cmd.of("swanctl", *args)


def _conns(stdout: str, stderr: str, exited: int) -> tuple[str, ...]:
    if exited != 0:
        raise AegirError(f"swanctl cannot ask charon ({swanctl.unreachable(stderr, exited)}): is strongSwan "
                         "running? (systemctl start strongswan)")
    return swanctl.parse_conns(stdout)


def conns_fact() -> Fact[tuple[str, ...]]:
    """The connections charon has loaded; a charon that does not answer fails the host."""
    return Fact("net.conns", swanctl_cmd("--list-conns", "--raw"), lambda r: _conns(r.stdout, r.stderr, r.exited),
                None, cache=False)


def _sas(stdout: str, stderr: str, exited: int) -> swanctl.Sas:
    if exited != 0:
        return swanctl.Sas(down=f"charon does not answer: {swanctl.unreachable(stderr, exited)}")
    return swanctl.Sas(swanctl.parse_sas(stdout))


def sas_fact() -> Fact[swanctl.Sas]:
    """The host's IKE and child SAs, asked afresh (their counters move); charon down is an answer."""
    return Fact("net.sas", swanctl_cmd("--list-sas", "--raw"), lambda r: _sas(r.stdout, r.stderr, r.exited), None,
                cache=False)


def ping_cmd(pid: int, address: str) -> Cmd:
    """One echo request from inside the network namespace of process `pid` (a container) to `address`
    (``-W 2`` bounds it: a batched fact carries no deadline of its own).

    >>> ping_cmd(4242, "2001:db8:0:301::2").line
    'nsenter --target 4242 --net -- ping -6 -n -c 1 -W 2 2001:db8:0:301::2'
    """
    return Cmd.of("nsenter", "--target", str(pid), "--net", "--", "ping", "-6", "-n", "-c", "1", "-W", "2", address)


def ping_fact(pid: int, address: str) -> Fact[bool]:
    """Did `address` answer a ping from the container whose process is `pid`? (exit 0: yes; else no)."""
    return Fact("net.ping", ping_cmd(pid, address), lambda r: r.exited == 0, None, cache=False)


@dataclass(frozen=True)
class Probe:
    """The container a host's reachability is tested from and to: its global IPv6 and its process."""

    container: str
    ipv6: ipaddress.IPv6Address
    pid: int


@dataclass(frozen=True)
class CheckFacts:
    """What net.check reads of a host first: its SAs, and a container to ping from and to (None: none)."""

    sas: swanctl.Sas
    probe: Probe | None
    note: str | None = None  # why there is no probe


@dataclass(frozen=True)
class Pinged:
    """What net.check's second read of a host found: each peer's answer (by name), then the SAs again."""

    answered: tuple[tuple[str, bool], ...]
    sas: swanctl.Sas


def check_read(hc: "HostContext") -> CheckFacts:
    """The host's SAs and its first running container with a global IPv6 inside its prefix (Docker SDK)."""
    sas, running = hc.facts(sas_fact(), dockerd_fact())
    prefix = hc.host.ipv6_prefix
    if not running:
        return CheckFacts(sas, None, "Docker is not running")
    api = hc.docker(running=True).api
    for c in parse_containers(api.containers()):
        if c.ipv6 is not None and prefix is not None and c.ipv6 in prefix:
            pid = Answer(api.inspect_container(c.container), "docker inspect")["State"]["Pid"].number()
            if pid > 0:
                return CheckFacts(sas, Probe(c.container, c.ipv6, pid))
    return CheckFacts(sas, None, f"no running container with a global IPv6 in {prefix}")


def ping_read(hc: "HostContext", probe: Probe, peers: Sequence[tuple[str, str]]) -> Pinged:
    """From `probe`'s container, one ping to each (peer, address); then the SAs again (their counters), in
    one round trip."""
    *answers, sas = hc.facts(*(ping_fact(probe.pid, addr) for _, addr in peers), sas_fact())
    return Pinged(tuple((name, bool(ok)) for (name, _), ok in zip(peers, answers)), sas)
