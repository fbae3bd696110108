"""One host's firewall: read its facts, render its ruleset, apply it.

`build` is the "facts -> plan" half every fw task shares: the host's running
containers (Docker SDK), its state (template override, last good ruleset, live
hash: one command), the rendered ruleset. `apply` is the "act" half.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aegir.errors import RefusedError
from aegir.facts import Fact
from aegir.fw import nft, render, safety
from aegir.fw.model import Container, Exposures, admin_addresses, bridge_name, bridges_of, expose, parse_container
from aegir.fw.settings import FwSettings, for_host
from aegir.inventory import Host, Inventory

if TYPE_CHECKING:  # pragma: no cover
    import docker

    from aegir.host import HostContext


@dataclass(frozen=True)
class Firewall:
    """A host's rendered firewall: its settings, exposures, ruleset text and (live) state."""

    host: Host
    settings: FwSettings
    exposures: Exposures
    text: str
    template: str  # where the template came from
    state: nft.State | None = None  # None when rendered offline

    @property
    def changed(self) -> bool:
        """Would `apply` change the live ruleset?"""
        return self.state is None or self.text != self.state.last_good or self.state.drifted

    def diff(self) -> str:
        return nft.diff(self.state.last_good if self.state else None, self.text, name=self.host.name)


def docker_bridges(client: "docker.DockerClient") -> tuple[str, ...]:
    """The host interfaces of Docker's bridge networks (what containers send from)."""
    found = {bridge_name(str(n.get("Name") or ""), str(n.get("Id") or ""), n.get("Options"))
             for n in client.api.networks(filters={"driver": "bridge"}) if isinstance(n, dict)}
    return tuple(sorted(b for b in found if b))


def running_containers(client: "docker.DockerClient") -> list[Container]:
    """Inspect every running container (one that vanished meanwhile is skipped)."""
    from docker.errors import NotFound

    out = []
    for summary in client.api.containers(quiet=True):
        try:
            out.append(parse_container(client.api.inspect_container(summary["Id"])))
        except NotFound:
            continue
    return out


def state_fact(host: Host, settings: FwSettings) -> Fact[nft.State]:
    """The host's template override, last good ruleset and live hash, in one command (asked afresh each time)."""
    return Fact("fw.state", nft.probe_cmd(render.override_path(host), settings.state_dir),
                lambda r: nft.parse_probe(r.stdout), cache=False)


def read_state(hc: "HostContext", settings: FwSettings) -> nft.State:
    """`state_fact` of `hc`'s host."""
    return hc.fact(state_fact(hc.host, settings))


def template_of(host: Host, state: nft.State | None) -> render.Template:
    """The host's own template if it has one, else aegir's."""
    if state is not None and state.template is not None:
        return render.Template(state.template, f"{host.name}:{render.override_path(host)}")
    return render.packaged()


def plan(host: Host, settings: FwSettings, containers: Iterable[Container],
         state: nft.State | None = None, template: render.Template | None = None,
         bridges: Sequence[str] | None = None) -> Firewall:
    """Pure: the firewall of `host` given its containers, state and Docker's bridges (None: as far as
    the containers' networks tell)."""
    containers = list(containers)
    exposures = expose(containers, host, settings.ssh_port)
    tpl = template or template_of(host, state)
    found = bridges_of(containers) if bridges is None else bridges
    return Firewall(host, settings, exposures, render.render(host, settings, exposures, tpl, found),
                    tpl.origin, state)


def build(hc: "HostContext", inv: Inventory, template: render.Template | None = None) -> Firewall:
    """Facts and plan of one live host: settings, containers, state, ruleset (through `template`
    if given, else the host's or aegir's)."""
    settings = for_host(inv, hc.host)
    state = read_state(hc, settings)
    client = hc.docker()
    return plan(hc.host, settings, running_containers(client), state, template, docker_bridges(client))


def before_docker(hc: "HostContext", inv: Inventory) -> Firewall | None:
    """The firewall to load before Docker starts: aegir's ruleset with no container published.

    Only for a host whose firewall aegir manages (it has a last good ruleset
    under /srv); None otherwise. After a reboot the kernel has no aegir table,
    and with ``--ip6tables=false`` every container's global IPv6 would be open
    until fw.watch (or fw.apply) renders the real ruleset. The last good one is
    not reused: containers may come back with other addresses, and its DNAT
    would send a port to the wrong container.
    """
    settings = for_host(inv, hc.host)
    state = read_state(hc, settings)
    if state.last_good is None:
        return None
    return plan(hc.host, settings, (), state, bridges=())


def ssh_packets(host: Host, settings: FwSettings) -> list[safety.Packet]:
    """The SSH packets that must always get through to `host`."""
    return safety.ssh_packets(admin_addresses(host),
                              {v: settings.sources(v) for v in (4, 6)}, settings.ssh_port)


def verified(fw: Firewall) -> str:
    """The fingerprint of `fw`'s SSH settings (`nft.ssh_fingerprint`)."""
    return nft.ssh_fingerprint(fw.settings.ssh_port, admin_addresses(fw.host),
                               {v: fw.settings.sources(v) for v in (4, 6)})


def preflight(fw: Firewall) -> None:
    """Refuse what would lock admins out before anything is sent: no admin address, or an SSH port sshd
    does not listen on."""
    assert fw.state is not None, "apply needs the host's state (use build)"
    admin = admin_addresses(fw.host)
    if not (admin[4] or admin[6]):
        raise RefusedError("refused: a host whose firewall aegir manages needs admin_ipv4 or admin_ipv6 "
                           "in the inventory (where SSH always gets in); nothing changed", host=fw.host.name)
    listening = fw.state.listeners
    port = fw.settings.ssh_port
    if listening is not None:
        names = listening.get(port)
        if names is None:
            raise RefusedError(f"refused: fw.ssh_port is {port} but nothing listens on tcp/{port} on the host "
                               f"(listening: {', '.join(map(str, sorted(listening))) or 'nothing'}); nothing changed",
                               host=fw.host.name)
        if names and not names & {"sshd", "systemd"}:
            raise RefusedError(f"refused: fw.ssh_port is {port} but tcp/{port} is {', '.join(sorted(names))}'s, "
                               "not sshd's; nothing changed", host=fw.host.name)


def apply(hc: "HostContext", fw: Firewall, fresh_login: Callable[[], None] | None = None, *,
          unattended: bool = False) -> nft.Applied:
    """Apply `fw` on its host (no-op when nothing changed); raise and change nothing on error.

    Every ruleset, aegir's template's too, is proven first: SSH to the admin
    addresses must get through the whole ruleset that would be live (see
    `nft.apply`). `fresh_login` opens a new SSH connection after the load (None
    on the local host: the operator is there). `unattended` (fw.watch: nobody
    to check a login) applies only the SSH settings a fresh login verified.
    """
    assert fw.state is not None, "apply needs the host's state (use build)"
    mine = verified(fw)
    if unattended and fw.changed and fw.state.verified != mine:
        raise RefusedError("refused: the SSH settings (fw.ssh_port, admin addresses, admin_sources) are not the "
                           "ones a fresh login verified; run `inv -H " + fw.host.name + " fw.apply` first",
                           host=fw.host.name)
    preflight(fw)
    return nft.apply(hc, fw.text, fw.state, fw.settings.state_dir, ssh_packets(fw.host, fw.settings), mine,
                     fresh_login)


def fresh_login(c: Any, hc: "HostContext") -> Callable[[], None] | None:
    """A check that a *new* SSH connection still gets in (None for the local host).

    The running session survives any ruleset (connection tracking), so it is
    the way back: a wrong ``ssh_port`` or ``admin_sources`` that leaves out the
    operator's own address would pass every static check and lock out the next
    login.
    """
    if hc.host.is_local:
        return None
    from aegir.host import open_context

    def check() -> None:
        open_context(c, hc.host).close()

    return check


def summary(fw: Firewall) -> dict[str, Any]:
    """Counts for tables and logs."""
    return {
        "containers": len(fw.exposures.containers),
        "exposures": len(fw.exposures.items),
        "warnings": list(fw.exposures.warnings),
        "template": fw.template,
        "live": fw.state.status if fw.state else None,
    }
