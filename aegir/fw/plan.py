"""Pure: a host's firewall from its facts, and what fw.apply and fw.install have to do there.

- `firewall`: the containers, state and bridges of a host (`aegir.fw.facts`)
  -> its `Firewall`: the exposures (`aegir.fw.model`), the ruleset text
  (`aegir.fw.render`), whether applying would change anything (`Firewall.todo`);
- `before_docker`: the ruleset with no container published that boot.docker
  loads first;
- `preflight`, `unattended_refusal`: what fw.apply refuses before anything is sent;
- `elements_only`, `elements_refusal`: whether a change is container-set elements
  only (`aegir.fw.delta`), and the keys it may not add;
- `proof_text`: what the full proof loads in its scratch namespace;
- `plan_install`: the commands that bring the watcher's unit to "written,
  enabled, running" (`InstallPlan`).

Nothing here reads a host or runs a command.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from aegir.errors import RefusedError
from aegir.fw import delta, knock, nft, render, safety
from aegir.fw.facts import UNIT, UNIT_PATH, UnitState
from aegir.fw.model import Container, Exposure, Exposures, admin_addresses, bridges_of, expose, guard
from aegir.fw.settings import FwSettings
from aegir.inventory import Host
from aegir.report import Result
from aegir.sh import Cmd, write_file_cmd

# --------------------------------------------------------------------------- the ruleset


@dataclass(frozen=True)
class Firewall:
    """A host's rendered firewall: its settings, exposures, ruleset text and (live) state."""

    host: Host
    settings: FwSettings
    exposures: Exposures
    text: str
    template: str  # where the template came from
    state: nft.State | None = None  # None when rendered offline
    tpl: render.Template | None = None  # the template itself, and the bridges it was rendered with
    bridges: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        """Would applying change the live ruleset (another text, or the live table drifted)?"""
        return self.state is None or self.text != self.state.last_good or self.state.drifted

    @property
    def fingerprint(self) -> str:
        """The SSH settings a fresh login verifies after this ruleset (`nft.ssh_fingerprint`)."""
        return nft.ssh_fingerprint(self.settings.ssh_port, admin_addresses(self.host),
                                   {v: self.settings.sources(v) for v in (4, 6)})

    @property
    def load(self) -> bool:
        """Does fw.apply load it: it changes the live ruleset, or its SSH settings were never verified?"""
        return self.changed or self.state is None or self.state.verified != self.fingerprint

    @property
    def todo(self) -> bool:
        """Does fw.apply act on the host: load it, or delete the files interrupted runs left?"""
        return self.load or bool(self.state and self.state.leftovers)

    def diff(self) -> str:
        return nft.diff(self.state.last_good if self.state else None, self.text, name=self.host.name)


def template_of(host: Host, state: nft.State | None) -> render.Template:
    """The host's own template if it has one, else aegir's."""
    if state is not None and state.template is not None:
        return render.Template(state.template, f"{host.name}:{render.override_path(host)}")
    return render.packaged()


def firewall(host: Host, settings: FwSettings, containers: Iterable[Container], state: nft.State | None = None,
             template: render.Template | None = None, bridges: Sequence[str] | None = None) -> Firewall:
    """The firewall of `host` given its containers, state and Docker's bridges (None: as far as the
    containers' networks tell); through `template` if given, else the host's or aegir's."""
    containers = list(containers)
    exposures = expose(containers, host, settings.ssh_port)
    tpl = template or template_of(host, state)
    found = bridges_of(containers) if bridges is None else bridges
    return Firewall(host, settings, exposures, render.render(host, settings, exposures, tpl, found),
                    tpl.origin, state, tpl, tuple(found))


#: One exposure per family on addresses no host has: which sets the containers fill (`delta.container_sets`).
_SENTINEL = Exposures(tuple(Exposure(ipaddress.ip_address(a), "tcp", 1, "aegir-sentinel", ipaddress.ip_address(t), 1)
                            for a, t in (("0.0.0.1", "0.0.0.2"), ("::1:1", "::1:2"))), ())


def elements_only(fw: Firewall) -> delta.Delta | str:
    """The change from the live, proved ruleset to `fw` as elements of its container sets only (a
    `delta.Delta`, whose adds `elements_refusal` checks), or why the full path runs (a sentence).

    Element-only needs: the live table is the last good one (not drifted, not unverified), its SSH
    settings the ones a fresh login verified, and the same structure line for line (`delta.diff`)."""
    state = fw.state
    if state is None or state.last_good is None:
        return "no last good ruleset"
    if not state.live or state.drifted or state.unverified:
        return f"the live table is {state.status}"
    if state.verified != fw.fingerprint:
        return "SSH settings a fresh login did not verify"
    if not fw.text.endswith("\n"):
        return "the ruleset does not end with a newline"  # nft.elements_cmd sends it as lines
    ours = _container_sets(fw.host, fw.settings, fw.tpl or render.packaged(), fw.bridges)
    found = delta.diff(delta.shape(state.last_good), delta.shape(fw.text), ours)
    if isinstance(found, delta.Delta):
        unknown = delta.problems(found, guard(fw.host, fw.settings.ssh_port))[1]
        if unknown:
            return f"an element of a shape the incremental path does not check ({unknown[0]})"
    return found


@lru_cache(maxsize=8)  # fw.watch asks at every event: the same host, settings, template and bridges
def _container_sets(host: Host, settings: FwSettings, tpl: render.Template, bridges: tuple[str, ...]) -> frozenset[str]:
    """The sets the template fills from the containers (`delta.container_sets`)."""
    bare = render.render(host, settings, Exposures((), ()), tpl, bridges)
    sentinel = render.render(host, settings, _SENTINEL, tpl, bridges)
    return delta.container_sets(delta.shape(bare), delta.shape(sentinel))


def proof_text(fw: Firewall) -> str:
    """What the full proof loads in its scratch namespace (`nft.prove_cmd`): `fw`'s ruleset without the
    container-set elements the model's own check accepts (`delta.accepted`: what the element-only path checks
    of every element it adds; their lines blanked, `delta.blanked`, so nft's ``file:line`` stays the
    candidate's). The knock and the evaluator then see everything that can bear on SSH to an admin address
    (the chains, every other set, the elements the check does not accept), and nft does not load, list and
    read 45,000 elements that cannot; those are loaded live with the rest, in the same one-transaction
    ``nft -f``, as the element-only path loads the ones it adds."""
    ours = _container_sets(fw.host, fw.settings, fw.tpl or render.packaged(), fw.bridges)
    sets = delta.shape(fw.text).sets
    checked = delta.accepted({n: sets[n] for n in sorted(ours) if n in sets}, guard(fw.host, fw.settings.ssh_port))
    return delta.blanked(fw.text, checked) if any(checked.values()) else fw.text


def elements_refusal(fw: Firewall, change: delta.Delta) -> None:
    """Refuse an element-only change that adds a key the model never publishes (a DNAT of the SSH port on
    an admin address...): `RefusedError` naming the elements; nothing is sent."""
    refused = delta.problems(change, guard(fw.host, fw.settings.ssh_port))[0]
    if refused:
        more = f" (and {len(refused) - 3} more)" if len(refused) > 3 else ""
        raise RefusedError("refused: " + "; ".join(refused[:3]) + more + "; nothing changed", host=fw.host.name)


def before_docker(host: Host, settings: FwSettings, state: nft.State) -> Firewall | None:
    """The firewall to load before Docker starts: aegir's ruleset with no container published.

    Only for a host whose firewall aegir manages (it has a last good ruleset
    under /srv); None otherwise. After a reboot the kernel has no aegir table,
    and with ``--ip6tables=false`` every container's global IPv6 would be open
    until fw.watch (or fw.apply) renders the real ruleset. The last good one is
    not reused: containers may come back with other addresses, and its DNAT
    would send a port to the wrong container.
    """
    if state.last_good is None:
        return None
    return firewall(host, settings, (), state, bridges=())


def ssh_packets(host: Host, settings: FwSettings) -> list[safety.Packet]:
    """The SSH packets that must always get through to `host`."""
    return safety.ssh_packets(admin_addresses(host), {v: settings.sources(v) for v in (4, 6)}, settings.ssh_port)


def preflight(fw: Firewall) -> None:
    """Refuse what would lock admins out before anything is sent: no admin address, or an SSH port sshd
    does not listen on."""
    assert fw.state is not None, "applying needs the host's state"
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


def unattended_refusal(fw: Firewall) -> None:
    """fw.watch (nobody to check a login) applies only the SSH settings a fresh login verified."""
    assert fw.state is not None, "applying needs the host's state"
    if fw.changed and fw.state.verified != fw.fingerprint:
        raise RefusedError("refused: the SSH settings (fw.ssh_port, admin addresses, admin_sources) are not the "
                           "ones a fresh login verified; run `inv -H " + fw.host.name + " fw.apply` first",
                           host=fw.host.name)


def reason(fw: Firewall) -> str:
    """Why fw.apply loads `fw` (the row's words): found unverified, drifted, changed, SSH settings verified."""
    assert fw.state is not None
    if fw.state.unverified:
        return f"found the {nft.UNVERIFIED_LIVE}"
    if fw.text == fw.state.last_good and fw.state.drifted:
        return "drifted"
    return "changed" if fw.text != fw.state.last_good else "SSH settings verified"


# --------------------------------------------------------------------------- the watcher's unit


def unit_text() -> str:
    """The shipped unit file (``aegir/fw/examples/aegir-fw-watch.service``)."""
    return resources.files("aegir.fw").joinpath("examples", UNIT).read_text(encoding="utf-8")


@dataclass(frozen=True)
class InstallPlan:
    """The commands that bring a host to "unit written, enabled, running", each with what it does; the
    unit's state they start from, the text wanted, and why the watcher cannot start here, if it cannot."""

    before: UnitState
    wanted: str
    steps: tuple[tuple[str, Cmd], ...]
    cannot_start: str | None = None

    @property
    def empty(self) -> bool:
        return not self.steps

    @property
    def todo(self) -> bool:
        """Something to run, or a watcher that does not run: the act says so (a failed host)."""
        return bool(self.steps) or not self.before.running


def plan_install(state: UnitState, wanted: str) -> InstallPlan:
    """What to do from `state` so that the unit is `wanted`, enabled and (where systemd runs) running.

    Where systemd is not running (a container, a chroot, the lab's hosts), the
    unit can still be written and enabled (``systemctl enable`` works offline)
    but not started: `InstallPlan.cannot_start` says so.
    """
    steps: list[tuple[str, Cmd]] = []
    changed = state.text != wanted
    if changed:
        steps.append((f"write {UNIT_PATH}", write_file_cmd(UNIT_PATH, wanted)))
        if state.booted:
            steps.append(("daemon-reload", Cmd.of("systemctl", "daemon-reload")))
    if state.enabled != "enabled":
        steps.append(("enable", Cmd.of("systemctl", "enable", UNIT)))
    if not state.booted:
        return InstallPlan(state, wanted, tuple(steps), "systemd is not running this host (no /run/systemd/system): "
                                                        "enabled, the watcher starts at the next boot, not now")
    if not state.running:
        steps.append(("start", Cmd.of("systemctl", "start", UNIT)))
    elif changed:
        steps.append(("restart", Cmd.of("systemctl", "restart", UNIT)))
    return InstallPlan(state, wanted, tuple(steps))


def install_row(plan: InstallPlan) -> Installed:
    """A host's row before acting (``--dry``, or nothing to do): would, or ok; why it cannot start."""
    names = tuple(name for name, _ in plan.steps)
    return Installed(Result.WOULD if names else Result.OK, names, plan.before, plan.cannot_start)


def install_problems(plan: InstallPlan, after: UnitState) -> list[str]:
    """What is wrong with the unit after installing it (nothing: the watcher is written, enabled, running)."""
    problems = []
    if after.text != plan.wanted:
        problems.append(f"{UNIT_PATH} does not hold the unit after writing it")
    if after.enabled != "enabled":
        problems.append(f"systemctl is-enabled says {after.enabled or 'nothing'!r}")
    if not after.running:
        problems.append(plan.cannot_start or f"systemctl is-active says {after.active or 'nothing'!r}")
    return problems


# --------------------------------------------------------------------------- the proof of a candidate


def proof_args(ssh: Sequence[safety.Packet]) -> tuple[int, list[str], list[str]]:
    """What `nft.prove_cmd` knocks with: the SSH port, the admin addresses, the sources tried."""
    port = ssh[0].dport if ssh and ssh[0].dport else 22
    admins = sorted({str(p.daddr) for p in ssh if not p.outbound and not isinstance(p.daddr, safety.Peer)})
    peers = {p.saddr.version: p.saddr.nets for p in ssh if isinstance(p.saddr, safety.Peer)}
    return port, admins, knock.sources(peers, {})


def lockout_problems(listing: dict, answer: str, port: int, ssh: Sequence[safety.Packet]) -> list[str]:
    """How the whole ruleset, as the proof loaded it, could lock SSH out: the kernel's answer first (real
    packets), then the evaluator's, which also sees runtime sets and sessions older than the ruleset."""
    problems = [] if answer.strip() == "no python3" else knock.problems(answer, port)
    return problems + safety.ssh_problems(safety.Ruleset.from_json(listing), ssh)


# --------------------------------------------------------------------------- what acting did


@dataclass(frozen=True)
class Applied:
    """What fw.apply did on a host: changed or not, the ruleset's line changes, how long it took, why it
    loaded (`reason`), the live table's hash when it changed, how many files of interrupted runs it deleted,
    which path it took (element changes only, or the full proof and why)."""

    changed: bool
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    seconds: float = 0.0
    reason: str = ""
    live_hash: str | None = None
    swept: int = 0
    elements: bool = False  # applied as element changes only (no proof, no fresh login: `elements_only`)
    full_because: str = ""  # why the full proof ran, when it did


@dataclass(frozen=True)
class Installed:
    """What fw.install did (or would do) on one host, and the unit's state after it."""

    result: Result  # ok (nothing to do), done, would, failed (not running afterwards)
    did: tuple[str, ...]
    state: UnitState
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.result != Result.FAILED
