"""DNS: the zones the inventory and the projects imply, and a check of what a server serves.

Three domains, named in hosts.yml's ``dns:`` section: the service domain
(one A/AAAA record per host service address), the CNAME domain (one CNAME per
public service name, A/AAAA copied where a CNAME is not allowed) and the rest
domain (admin names, non-public names); plus the reverse zones of the admin
and service addresses. Service names come from each project's
``x-aegir: dns:``. A zone covers the whole inventory, whatever -H says.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invoke import Collection

from aegir.errors import AegirError
from aegir.report import FORMAT_HELP, check_format, emit
from aegir.tasks.base import exit_if_failed, inventory, task

if TYPE_CHECKING:  # pragma: no cover
    from aegir.dns.plan import Plan


def _plan(c: Any, serial: int, label: str) -> "Plan":
    from aegir.dns.facts import fleet_plan  # here, not at the top: inv --list stays quick
    from aegir.dns.settings import for_inventory

    inv = inventory(c)
    plan, outcomes = fleet_plan(c, inv, for_inventory(inv), serial, label=label)
    if plan is None:
        for o in outcomes:
            if not o.ok:
                print(f"{o.host.name}: {o.status}", file=sys.stderr)
        exit_if_failed(outcomes)
    assert plan is not None
    return plan


def _problems(problems: tuple[str, ...]) -> None:
    for p in problems:
        print(f"problem: {p}", file=sys.stderr)


@task(help={"domain": "Print only this zone (a domain or a reverse zone, as listed in the JSON).",
            "out": "Write one FILE per zone (<zone>.zone) in this local directory, and list them.",
            "serial": "The SOA serial (default: the current Unix time, which only grows).",
            "format": FORMAT_HELP})
def zone(c, domain=None, out=None, serial=None, format="table"):
    """Print the zones the plan implies, as RFC 1035 zone text (or JSON)."""
    from aegir.dns import report
    from aegir.dns.zonefile import file_name, render

    fmt = check_format(format)
    number = int(time.time()) if serial is None else int(serial)
    if not 0 < number < 2**32:
        raise AegirError(f"--serial {serial}: must be from 1 to {2**32 - 1}")
    plan = _plan(c, number, "dns.zone")
    zones = list(plan.zones)
    if domain:
        one = plan.zone(domain)
        if one is None:
            raise AegirError(f"no zone {domain!r} in the plan; zones: {', '.join(z.origin for z in plan.zones)}")
        zones = [one]
    if out:
        target = Path(out)
        target.mkdir(parents=True, exist_ok=True)
        written = []
        for z in zones:
            path = target / file_name(z.origin)
            path.write_text(render(z), encoding="utf-8")
            written.append((z, str(path)))
        emit(fmt, data=report.zones_data(plan, zones, number), text=report.written_table(written))
    else:
        emit(fmt, data=report.zones_data(plan, zones, number), text="\n".join(render(z) for z in zones).rstrip("\n"))
    _problems(plan.problems)
    exit_if_failed([], problems=bool(plan.problems))


@task(help={"server": "ADDR[:PORT] of the authoritative server or resolver to ask (default: this machine's resolver).",
            "timeout": "Seconds to wait for each answer (default 3).",
            "format": FORMAT_HELP})
def check(c, server=None, timeout=3.0, format="table"):
    """Ask a DNS server for every record the plan implies; report missing, wrong and unexpected ones."""
    from aegir.dns import check as dnscheck
    from aegir.dns import report

    fmt = check_format(format)
    srv = dnscheck.parse_server(server)
    plan = _plan(c, 1, "dns.check")
    result = dnscheck.check(srv, plan, timeout=float(timeout))
    emit(fmt, data=report.check_data(result, plan.problems), text=report.check_text(result))
    _problems(plan.problems)
    if result.differences or plan.problems:
        exit_if_failed([], problems=True)


ns = Collection("dns")
for _t in (zone, check):
    ns.add_task(_t)
