"""What the firewall reads of a host: its state (one command), its containers (the Docker SDK), its watcher.

Facts (`aegir.facts.Fact`: a read-only command, the exit codes that answer, a
pure parser), asked through the host context, which batches them:

- `state_fact`: the template override, the last good ruleset, the hashes, the
  SSH settings last verified, the ``unverified`` marker, the listening ports
  and the files interrupted runs left (`aegir.fw.nft.probe_cmd`, parsed by
  `aegir.fw.nft.parse_probe`); `settled_fact` the same once no load is under way;
- `unit_fact`: the watcher's systemd unit (`unit_probe_cmd`, `parse_unit`);
  `watcher_fact` the one cell fw.status shows of it, never an error.

`read` asks what a firewall is planned from in one round trip, then Docker
(reads only: `running_containers`, `docker_bridges`). Nothing here runs the fleet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aegir.errors import AegirError
from aegir.facts import Fact
from aegir.fields import Answer
from aegir.fw import nft, render
from aegir.fw.model import Container, bridge_name, parse_container
from aegir.fw.settings import FwSettings
from aegir.inventory import Host
from aegir.sh import Boundary, Cmd, Reply, shell

if TYPE_CHECKING:  # pragma: no cover
    import docker

    from aegir.host import HostContext

# --------------------------------------------------------------------------- the ruleset's state


def state_fact(host: Host, settings: FwSettings) -> Fact[nft.State]:
    """The host's firewall state (`nft.State`), in one command, asked afresh each time (it changes under us)."""
    b = Boundary()
    return Fact("fw.state", nft.probe_cmd(render.override_path(host), settings.state_dir, b),
                lambda r: nft.parse_probe(r.stdout, b), cache=False)


def settled_fact(state_dir: str) -> Fact[nft.State]:
    """The state once no load or record is under way (waits for the lock, `nft.SETTLED_TIMEOUT` at most):
    what a failed apply left, asked again."""
    b = Boundary()
    return Fact("fw.state.settled", nft.probe_cmd("", state_dir, b, settled=True),
                lambda r: nft.parse_probe(r.stdout, b), cache=False)


# --------------------------------------------------------------------------- the watcher's unit

UNIT = "aegir-fw-watch.service"
UNIT_PATH = f"/etc/systemd/system/{UNIT}"

_UNIT_PROBE = """\
if [ -d /run/systemd/system ]; then echo booted=yes; else echo booted=no; fi
echo "enabled=$(systemctl is-enabled "$1" 2>/dev/null)"
echo "active=$(systemctl is-active "$1" 2>/dev/null)"
if [ -f "$2" ]; then echo file=yes; cat -- "$2"; else echo file=no; fi
"""


def unit_probe_cmd(unit: str = UNIT, path: str = UNIT_PATH) -> Cmd:
    """One read-only command: systemd running (``/run/systemd/system``, as ``sd_booted(3)`` decides)?,
    is-enabled, is-active, the unit file's text."""
    return shell(_UNIT_PROBE, unit, path)


@dataclass(frozen=True)
class UnitState:
    """What a host says of the watcher's unit."""

    booted: bool  # systemd runs this host (PID 1)
    enabled: str  # systemctl is-enabled: enabled, disabled, ... ("" when systemctl knows no such unit)
    active: str  # systemctl is-active: active, inactive, failed, ...
    text: str | None  # the unit file (None: absent)

    @property
    def running(self) -> bool:
        return self.active == "active"

    @property
    def summary(self) -> str:
        """``active (enabled)``, ``inactive (enabled)``, ``not installed``."""
        if self.text is None and not self.enabled:
            return "not installed"
        return f"{self.active or 'unknown'} ({self.enabled or 'unknown'})"


def parse_unit(stdout: str) -> UnitState:
    """`unit_probe_cmd`'s output -> `UnitState` (`AegirError` when it is not that output)."""
    head = stdout.split("\n", 4)
    if len(head) < 4 or [h.split("=", 1)[0] for h in head[:4]] != ["booted", "enabled", "active", "file"]:
        raise AegirError(f"unexpected probe output: {stdout[:200]!r}")
    values = [h.split("=", 1)[1] for h in head[:4]]
    text = (head[4] if len(head) > 4 else "") if values[3] == "yes" else None
    return UnitState(values[0] == "yes", values[1].strip(), values[2].strip(), text)


def unit_fact() -> Fact[UnitState]:
    """The watcher's unit on the host (asked afresh: fw.install reads it again after acting)."""
    return Fact("fw.unit", unit_probe_cmd(), lambda r: parse_unit(r.stdout), cache=False)


def _watcher(reply: Reply) -> str:
    if reply.exited != 0:
        return f"unknown: the probe exited {reply.exited}"
    try:
        return parse_unit(reply.stdout).summary
    except AegirError as exc:
        return f"unknown: {exc.message}"


def watcher_fact() -> Fact[str]:
    """The WATCHER cell of fw.status: ``active (enabled)``, ``not installed``, or ``unknown: why`` (never
    an error: the host's firewall is still reported)."""
    return Fact("fw.watcher", unit_probe_cmd(), _watcher, answers=None, cache=False)


# --------------------------------------------------------------------------- Docker (SDK reads)


def docker_bridges(client: docker.DockerClient) -> tuple[str, ...]:
    """The host interfaces of Docker's bridge networks (what containers send from)."""
    found = {bridge_name(str(n.get("Name") or ""), str(n.get("Id") or ""), n.get("Options"))
             for n in client.api.networks(filters={"driver": "bridge"}) if isinstance(n, dict)}
    return tuple(sorted(b for b in found if b))


def running_containers(client: docker.DockerClient) -> list[Container]:
    """Inspect every running container (one that vanished meanwhile is skipped)."""
    from docker.errors import NotFound

    out = []
    for summary in Answer(client.api.containers(quiet=True), "docker /containers/json").items():
        try:
            out.append(parse_container(client.api.inspect_container(summary["Id"].present().text())))
        except NotFound:
            continue
    return out


# --------------------------------------------------------------------------- one host


@dataclass(frozen=True)
class HostFacts:
    """What a host's firewall is planned from; `watcher`: the WATCHER cell, when asked."""

    state: nft.State
    containers: tuple[Container, ...]
    bridges: tuple[str, ...]
    watcher: str | None = None


def read(hc: HostContext, settings: FwSettings, *, watcher: bool = False) -> HostFacts:
    """The state (and the watcher's unit: `watcher`) in one round trip, then the running containers and
    Docker's bridges. Reads only: a plan may call it."""
    facts: list[Fact[Any]] = [state_fact(hc.host, settings)]
    if watcher:
        facts.append(watcher_fact())
    state, *rest = hc.facts(*facts)
    client = hc.docker()
    return HostFacts(state, tuple(running_containers(client)), docker_bridges(client), rest[0] if rest else None)
