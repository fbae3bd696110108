"""The IPsec mesh from hosts.yml alone (pure): each host's swanctl configuration, its plan, its safety.

One IKEv2 connection per peer over the admin addresses (IPv6 first, then
IPv4), one child SA carrying what the two hosts route: each host's ``/56``
less the ``/64`` of its admin IPv6 (the operator's SSH path never enters a
tunnel), plus its ``mesh: carry:`` networks. Authentication is by raw public
keys: each host made its key pair itself (`aegir.net.steps.Keys`: the private
key never leaves the host), aegir copies only the public keys, one file per
host under ``pubkey/``, and each connection names the key its peer must prove.

Of each pair the host first in the inventory starts the SA (and restarts it
while the peer is away: ``keyingtries = 0``); the other answers.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

from aegir.inventory import Host
from aegir.net.settings import MeshSettings

Net = ipaddress.IPv4Network | ipaddress.IPv6Network
Addr = ipaddress.IPv4Address | ipaddress.IPv6Address
Member = tuple[Host, MeshSettings]

SWANCTL = "/etc/swanctl"
CONF = f"{SWANCTL}/conf.d/aegir-mesh.conf"
PRIVATE_KEY = f"{SWANCTL}/private/aegir.key"
#: What the stock Debian plugins (gmp, aes, sha2) all speak; the kernel's ESP does it too.
PROPOSALS = "aes256-sha256-modp3072"
KEY_BITS = 3072
#: What --dry shows for the public key of a host that has no key pair yet.
KEY_PLACEHOLDER = "# the public key `inv net.keys` will make on this host\n"
PEM_RE = re.compile(r"-----BEGIN PUBLIC KEY-----\n[A-Za-z0-9+/=\n]{40,2000}-----END PUBLIC KEY-----\n?")


def pubkey_path(name: str) -> str:
    """Where every host keeps `name`'s public key."""
    return f"{SWANCTL}/pubkey/{pubkey_file(name)}"


def pubkey_file(name: str) -> str:
    return f"aegir-{name}.pub"


def conn_name(peer: str) -> str:
    """The connection (and child SA) to `peer`: ``aegir-hyp2`` (a dot would be a key path in swanctl.conf).

    >>> conn_name("hyp2.example.org")
    'aegir-hyp2_example_org'
    """
    return "aegir-" + peer.replace(".", "_")


def check_pubkey(text: str | None) -> str | None:
    """`text` if it is one PEM public key (what ``pki --pub`` prints), else None."""
    if text is None:
        return None
    text = text.strip() + "\n"
    return text if PEM_RE.fullmatch(text) else None


def fingerprint(pem: str | None) -> str | None:
    """``SHA256:…`` of a PEM public key's DER (what the report shows instead of the key)."""
    if pem is None:
        return None
    body = "".join(ln for ln in pem.splitlines() if ln and not ln.startswith("-----"))
    digest = hashlib.sha256(base64.b64decode(body)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def carried(host: Host, settings: MeshSettings) -> tuple[Net, ...]:
    """The networks `host`'s tunnels carry: its prefix less its admin /64, then its ``carry:`` networks.

    >>> from aegir.inventory import parse
    >>> h = parse("hosts: {a: {admin_ipv6: '2001:db8:0:100::1', ipv6_prefix: '2001:db8:0:100::/56'}}").get("a")
    >>> [str(n) for n in carried(h, MeshSettings())][:2]
    ['2001:db8:0:101::/64', '2001:db8:0:102::/63']
    """
    out: list[Net] = []
    if host.ipv6_prefix is not None:
        kept: list[Net] = [host.ipv6_prefix]
        for a in _admin_addresses(host):
            if a.version != 6:
                continue
            cut = ipaddress.IPv6Network(f"{a}/64", strict=False)
            kept = [piece for n in kept for piece in _without(n, cut)]
        out += sorted(kept, key=lambda n: (n.version, n.network_address, n.prefixlen))
    return tuple(out) + tuple(n for n in settings.carry if n not in out)


def _without(net: Net, cut: ipaddress.IPv6Network) -> list[Net]:
    if net.version != 6 or not net.overlaps(cut):
        return [net]
    if net.subnet_of(cut):  # type: ignore[arg-type]
        return []
    return list(net.address_exclude(cut))  # type: ignore[arg-type]


def _admin_addresses(host: Host) -> list[Addr]:
    out: list[Addr] = [a for a in (host.admin_ipv6, host.admin_ipv4) if a is not None]
    try:
        out.append(ipaddress.ip_address(host.address or ""))
    except ValueError:
        pass
    return out


def ike_addresses(host: Host) -> tuple[Addr, ...]:
    """The admin addresses IKE and ESP run over, IPv6 first."""
    return tuple(a for a in (host.admin_ipv6, host.admin_ipv4) if a is not None)


def keeps(me: str, peer: str, members: Sequence[Member]) -> bool:
    """Whether `me` keeps the SA with `peer` up (starts it on load, restarts it when it dies): the host first in
    the inventory of the two."""
    order = [h.name for h, _ in members]
    return order.index(me) < order.index(peer)


def render(me: Member, members: Sequence[Member]) -> str:
    """`me`'s ``conf.d/aegir-mesh.conf``: one connection per other member."""
    host, settings = me
    lines = [f"# aegir net.mesh: the IPsec mesh of {host.name}, from hosts.yml; every apply rewrites it",
             "connections {"]
    for peer, peer_settings in members:
        if peer.name == host.name:
            continue
        starts = keeps(host.name, peer.name, members)
        conn = conn_name(peer.name)
        lines += [
            f"  {conn} {{",
            "    version = 2",
            f"    local_addrs = {', '.join(map(str, ike_addresses(host)))}",
            f"    remote_addrs = {', '.join(map(str, ike_addresses(peer)))}",
            f"    proposals = {PROPOSALS}",
            f"    encap = {'yes' if settings.encap or peer_settings.encap else 'no'}",
            "    dpd_delay = 10s",
            "    keyingtries = 0",
            "    local {",
            "      auth = pubkey",
            f"      id = {host.name}",
            f"      pubkeys = {pubkey_file(host.name)}",
            "    }",
            "    remote {",
            "      auth = pubkey",
            f"      id = {peer.name}",
            f"      pubkeys = {pubkey_file(peer.name)}",
            "    }",
            "    children {",
            f"      {conn} {{",
            f"        local_ts = {', '.join(map(str, carried(host, settings)))}",
            f"        remote_ts = {', '.join(map(str, carried(peer, peer_settings)))}",
            f"        esp_proposals = {PROPOSALS}",
            f"        start_action = {'start' if starts else 'none'}",
            f"        dpd_action = {'restart' if starts else 'clear'}",
            f"        close_action = {'start' if starts else 'none'}",
            "      }",
            "    }",
            "  }",
        ]
    return "\n".join([*lines, "}", ""])


def unsafe(me: Member, members: Sequence[Member], operator: Sequence[Addr] = ()) -> tuple[str, ...]:
    """Why `me`'s tunnels could carry an SSH path (a sentence per traffic selector and address), or ().

    Guarded: every member's admin IPv4 and IPv6 and SSH address, and both ends of
    the operator's own session (`operator`, from ``$SSH_CONNECTION``).
    """
    guarded: list[tuple[Addr, str]] = [(a, f"{h.name}'s admin address {a}") for h, _ in members
                                       for a in _admin_addresses(h)]
    guarded += [(a, f"the operator's SSH session ({a})") for a in operator]
    out = []
    for h, s in members:  # me's own networks are its local selectors, every peer's its remote ones
        for net in carried(h, s):
            for a, what in guarded:
                if a.version == net.version and a in net:
                    out.append(f"traffic selector {net} ({h.name}'s) holds {what}")
    return tuple(dict.fromkeys(out))


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class FileChange:
    """One file aegir owns on the host: its text now (None: absent) and the text it should have."""

    path: str
    before: str | None
    after: str

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def diff(self) -> list[str]:
        """The unified diff (no trailing newlines) from `before` to `after`."""
        return [ln.rstrip("\n") for ln in difflib.unified_diff(
            (self.before or "").splitlines(True), self.after.splitlines(True),
            fromfile=self.path if self.before is not None else "/dev/null", tofile=self.path)]


@dataclass(frozen=True)
class MeshPlan:
    """One host's mesh: its files, the connections charon has loaded and those it should, what is unsafe."""

    host: str
    files: tuple[FileChange, ...]
    loaded: tuple[str, ...]
    wanted: tuple[str, ...]
    unsafe: tuple[str, ...] = ()
    answers: tuple[str, ...] = ()  # the connections the peer keeps: started from here once after a load

    @property
    def changed(self) -> tuple[FileChange, ...]:
        return tuple(f for f in self.files if f.changed)

    @property
    def reload(self) -> bool:
        """charon's loaded connections are not the ones the files say."""
        return set(self.loaded) != set(self.wanted)

    @property
    def todo(self) -> bool:
        return bool(self.changed) or self.reload


def plan(me: Member, members: Sequence[Member], pubkeys: dict[str, str], files: dict[str, str | None],
         loaded: Sequence[str], operator: Sequence[Addr] = ()) -> MeshPlan:
    """`me`'s plan from the fleet's public keys (by host name) and what the host holds now (`files`: path ->
    text; `loaded`: the ``aegir-`` connections charon has)."""
    host = me[0]
    wanted = {CONF: render(me, members)}
    for h, _ in members:
        wanted[pubkey_path(h.name)] = pubkeys[h.name]
    changes = tuple(FileChange(p, files.get(p), text) for p, text in wanted.items())
    conns = tuple(conn_name(h.name) for h, _ in members if h.name != host.name)
    answers = tuple(conn_name(h.name) for h, _ in members if h.name != host.name and keeps(h.name, host.name, members))
    return MeshPlan(host.name, changes, tuple(c for c in loaded if c.startswith("aegir-")), conns,
                    unsafe(me, members, operator), answers)


def wanted_paths(members: Sequence[Member]) -> list[str]:
    """The files net.mesh owns on every member."""
    return [CONF, *(pubkey_path(h.name) for h, _ in members)]
