"""One host's firewall: read its facts, render its ruleset, apply it.

`build` is the "facts -> plan" half every fw task shares: the host's running
containers (Docker SDK), its state (template override, last good ruleset, live
hash: one command), the rendered ruleset. `apply` is the "act" half.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aegir.errors import RefusedError, UnreachableError
from aegir.fw import nft, render, safety
from aegir.fw.model import Container, Exposures, admin_addresses, expose, parse_container
from aegir.fw.settings import Settings, for_host
from aegir.inventory import Host, Inventory

if TYPE_CHECKING:  # pragma: no cover
    import docker

    from aegir.host import HostContext


@dataclass(frozen=True)
class Firewall:
    """A host's rendered firewall: its settings, exposures, ruleset text and (live) state."""

    host: Host
    settings: Settings
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


def read_state(hc: "HostContext", settings: Settings) -> nft.State:
    """The host's template override, last good ruleset and live hash, in one command."""
    return nft.parse_probe(hc.run(nft.probe_cmd(render.override_path(hc.host), settings.state_dir)).stdout)


def template_of(host: Host, state: nft.State | None) -> render.Template:
    """The host's own template if it has one, else aegir's."""
    if state is not None and state.template is not None:
        return render.Template(state.template, f"{host.name}:{render.override_path(host)}")
    return render.packaged()


def plan(host: Host, settings: Settings, containers: Iterable[Container],
         state: nft.State | None = None, template: render.Template | None = None) -> Firewall:
    """Pure: the firewall of `host` given its containers and state."""
    exposures = expose(containers, host)
    tpl = template or template_of(host, state)
    return Firewall(host, settings, exposures, render.render(host, settings, exposures, tpl), tpl.origin, state)


def build(hc: "HostContext", inv: Inventory, template: render.Template | None = None) -> Firewall:
    """Facts and plan of one live host: settings, containers, state, ruleset (through `template`
    if given, else the host's or aegir's)."""
    settings = for_host(inv, hc.host)
    state = read_state(hc, settings)
    return plan(hc.host, settings, running_containers(hc.docker()), state, template)


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
    return plan(hc.host, settings, (), state)


def ssh_packets(host: Host, settings: Settings) -> list[safety.Packet]:
    """The SSH packets that must always get through to `host`."""
    return safety.ssh_packets(admin_addresses(host),
                              {v: settings.sources(v) for v in (4, 6)}, settings.ssh_port)


def apply(hc: "HostContext", fw: Firewall) -> nft.Applied:
    """Apply `fw` on its host (no-op when nothing changed); raise and change nothing on error.

    A ruleset from another template than aegir's is proven first: SSH to the
    admin addresses must get through it (see `nft.apply`).
    """
    assert fw.state is not None, "apply needs the host's state (use build)"
    prove = None if fw.template == render.PACKAGED else ssh_packets(fw.host, fw.settings)
    return nft.apply(hc, fw.text, fw.state, fw.settings.state_dir, prove)


def verify_ssh(c: Any, hc: "HostContext", fw: Firewall) -> None:
    """After an apply, a *new* SSH connection must still get in, or the apply is undone.

    The running session survives any ruleset (connection tracking), so it is
    the way back: a wrong ``ssh_port`` or ``admin_sources`` that leaves out the
    operator's own address would pass every static check and lock out the next
    login. No-op for the local host.
    """
    if hc.host.is_local:
        return
    from aegir.host import open_context

    try:
        open_context(c, hc.host).close()
    except UnreachableError as exc:
        assert fw.state is not None
        undone = nft.rollback(hc, fw.state, fw.settings.state_dir)
        raise RefusedError(f"rolled back: after the apply a new SSH connection failed ({exc.message}); {undone}",
                           host=hc.name) from None


def summary(fw: Firewall) -> dict[str, Any]:
    """Counts for tables and logs."""
    return {
        "containers": len(fw.exposures.containers),
        "exposures": len(fw.exposures.items),
        "warnings": list(fw.exposures.warnings),
        "template": fw.template,
        "live": fw.state.status if fw.state else None,
    }
