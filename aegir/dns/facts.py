"""What DNS reads from each host: its Compose projects' ``x-aegir: dns:`` (one round trip)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from aegir.compose.status import discover
from aegir.dns import plan, services
from aegir.dns.services import Read
from aegir.dns.settings import DnsSettings
from aegir.fleet import Outcome, each
from aegir.inventory import Inventory

if TYPE_CHECKING:  # pragma: no cover
    from aegir.host import HostContext


def read_host(hc: "HostContext") -> Read:
    """The names `hc`'s projects publish (their .env only for ``${VAR}`` addresses), and the problems."""
    disc = discover(hc, with_env=True)
    pubs: list[services.Publication] = []
    problems: list[str] = []
    for p in disc.projects:
        got = services.read(hc.host, p, disc.envs.get(p.path))
        pubs += got.publications
        problems += [f"{hc.name}: {m}" for m in got.problems]
    return Read(tuple(pubs), tuple(problems))


def fleet_plan(c: Any, inv: Inventory, settings: DnsSettings, serial: int,
               label: str = "dns") -> tuple[plan.Plan | None, Sequence[Outcome[Read]]]:
    """The plan of the whole inventory (a zone covers every host), or None when a host could not be read."""
    outcomes = each(c, inv.hosts, read_host, label=label)
    if any(not o.ok for o in outcomes):
        return None, outcomes
    reads = [o.value for o in outcomes if o.value is not None]
    built = plan.build(inv.hosts, settings, [p for r in reads for p in r.publications], serial)
    problems = tuple(m for r in reads for m in r.problems) + built.problems
    return plan.Plan(built.zones, problems, built.owners), outcomes
