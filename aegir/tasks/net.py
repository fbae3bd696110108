"""Addressing and the IPsec mesh: the fleet's plan from hosts.yml, checked against each host, and the tunnels.

Every host is dual stack: an admin IPv4, service IPv4s, an IPv6 prefix (a
/56) holding the admin IPv6 and one service IPv6 per service IPv4, and a
global IPv6 inside that prefix for every container. Docker's own settings are
checked against what aegir's firewall and this plan assume (no userland
proxy, no iptables/ip6tables, ipv6 with fixed-cidr-v6 in the prefix, data on
/srv): a deviation is a problem row naming the daemon.json key to change.
IPsec tunnels between the hosts (strongSwan, IKEv2, swanctl) carry each host's
prefix to the others: `net.keys` makes each host's key pair on the host,
`net.mesh` writes and loads every host's connections, `net.check` says per
pair whether the SA is up and a container reaches a container of the other
host through it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from invoke import Collection, Context

from aegir.errors import RefusedError
from aegir.report import FORMAT_HELP, check_format, warn, warning
from aegir.tasks.base import ROLLING_HELP, act, finish, fleet_read, fleet_report, inventory, is_dry, targets, task

if TYPE_CHECKING:  # pragma: no cover
    from aegir.inventory import Host
    from aegir.net.mesh import Member


@task(help={"format": FORMAT_HELP})
def plan(c: Context, format: str = "table") -> None:
    """Show each host's addresses, networks and containers; flag what is off-plan."""
    from aegir.net import facts, report  # here, not at the top: inv --list stays quick

    fleet_report(c, format, "net.plan", facts.gather, data=report.data, text=report.text,
                 problems=lambda outcomes: bool(report.problems(outcomes)))


def _members(c: Context, label: str) -> tuple[list[Host], tuple[Member, ...]]:
    """The targets that are in the mesh (a warning for each one left out) and every member of the mesh."""
    from aegir.net.settings import members as mesh_members

    members = mesh_members(inventory(c))
    names = {h.name for h, _ in members}
    chosen = []
    for h in targets(c):
        if h.name in names:
            chosen.append(h)
        else:
            warn(warning(h.name, f"{label}: not in the IPsec mesh (it needs an ipv6_prefix and an admin address, "
                                 "over SSH, and mesh.member not false)"))
    return chosen, members


@task(help={"dry": "Show which hosts would get a key pair; make none.", "format": FORMAT_HELP, **ROLLING_HELP})
def keys(c: Context, dry: bool = False, format: str = "table", serial: str | None = None,
         keep_going: bool = False) -> None:
    """Make each host's IKE key pair on the host itself, where it has none.

    The private key is written by `pki --gen` into a 0600 file on the host and
    never leaves it; net.mesh reads only the public keys (`pki --pub`).
    """
    from aegir.net.steps import Keys

    hosts, _ = _members(c, "net.keys")
    act(c, Keys(), fmt=format, dry=dry, serial=serial, keep_going=keep_going, hosts=hosts)


@task(help={"dry": "Show the diff of each host's swanctl files; write and load nothing.", "format": FORMAT_HELP,
            **ROLLING_HELP})
def mesh(c: Context, dry: bool = False, format: str = "table", serial: str | None = None,
         keep_going: bool = False) -> None:
    """Write and load each host's IPsec connections to the others, from hosts.yml.

    One IKEv2 connection per peer over the admin addresses, its child SA
    carrying both hosts' /56 less their admin /64 (and `mesh: carry:`);
    authenticated by the public keys net.keys made. Refused, on every host,
    when a tunnel would carry an admin address or this SSH session. After
    each host's load a new SSH login must get in, else its previous files
    are put back.
    """
    from aegir.net import facts
    from aegir.net import mesh as mesh_plan
    from aegir.net.steps import Mesh

    hosts, members = _members(c, "net.mesh")
    read = fleet_read(c, "net.mesh", lambda hc: hc.fact(facts.pubkey_fact()), hosts=[h for h, _ in members])
    failed = [f"{o.host.name} ({o.kind}: {o.error})" for o in read if not o.ok]
    if failed:
        raise RefusedError(f"net.mesh: cannot read the public key of {', '.join(failed)}: every member's key goes "
                           "into every host's configuration; nothing changed")
    keyless = [o.host.name for o in read if o.value is None]
    if keyless and not is_dry(c, dry):
        raise RefusedError(f"net.mesh: {', '.join(keyless)} has no IKE key pair yet: run `inv -H "
                           f"{','.join(keyless)} net.keys` first; nothing changed")
    for name in keyless:  # --dry shows the rest of the plan
        warn(warning(name, "no IKE key pair yet (`inv net.keys` makes it): its public key is a placeholder"))
    pubkeys = {o.host.name: o.value or mesh_plan.KEY_PLACEHOLDER for o in read}
    act(c, Mesh(c, members, pubkeys), fmt=format, dry=dry, serial=serial, keep_going=keep_going, hosts=hosts)


@task(help={"format": FORMAT_HELP})
def check(c: Context, format: str = "table") -> None:
    """Check each pair of hosts: SA up, a container reaching the other host's in it.

    Per pair: the SA's state, age and bytes (swanctl --list-sas), and whether a
    ping from a container of the first host to the global IPv6 of a container
    of the second is answered and counted by the SA. Exit 1 when a pair is down.
    """
    from aegir.net import check as netcheck
    from aegir.net import facts, report

    fmt = check_format(format)
    hosts, _ = _members(c, "net.check")
    read = fleet_read(c, "net.check", facts.check_read, hosts=hosts)
    probes = {o.host.name: o.value.probe for o in read if o.value is not None and o.value.probe is not None}
    asks = netcheck.to_ping(read)
    pinged = fleet_read(c, "net.check", lambda hc: facts.ping_read(hc, probes[hc.name], asks[hc.name]),
                        hosts=[h for h in hosts if h.name in asks]) if asks else []
    pairs = netcheck.pairs(read, {o.host.name: o for o in pinged})
    finish(c, fmt, report.check_report(read, pairs), read)


ns = Collection("net")
for _t in (plan, keys, mesh, check):
    ns.add_task(_t)
