"""DNS: the zones the inventory and the projects imply, and a check of what a server serves.

Three domains, named in hosts.yml's ``dns:`` section: the service domain
(one A/AAAA record per host service address), the CNAME domain (one CNAME per
public service name, A/AAAA copied where a CNAME is not allowed) and the rest
domain (admin names, non-public names); plus the reverse zones of the admin
and service addresses. Service names come from each project's
``x-aegir: dns:``. A zone covers the whole inventory, whatever -H says: a host
that cannot be read (or whose /srv is not mounted) stops both tasks.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from invoke import Collection, Context

from aegir.errors import UsageError, did_you_mean
from aegir.report import FORMAT_HELP, check_format
from aegir.tasks.base import finish, fleet_read, inventory, is_dry, task
from aegir.tasks.flags import SECONDS, SERVER, SOA_SERIAL

if TYPE_CHECKING:  # pragma: no cover - the area's code is imported by the task that runs (inv --list stays quick)
    from aegir.dns.services import Read
    from aegir.dns.settings import DnsSettings
    from aegir.fleet import Outcome
    from aegir.inventory import Inventory


def _settings(c: Context) -> tuple[Inventory, DnsSettings]:
    """The inventory and its ``dns:`` settings (`InventoryError`, exit 2, before any host is read)."""
    from aegir.dns.settings import for_inventory

    inv = inventory(c)
    return inv, for_inventory(inv)


def _names(c: Context, fmt: str, label: str, inv: Inventory, *, dry: bool | None, stopped: str) -> list[Outcome[Read]]:
    """Every host's published names, read in parallel; a host that could not be read ends the task
    (its row says why, exit 1): the zones would lack its names."""
    from aegir.dns import facts, report

    outcomes = fleet_read(c, label, facts.read_host, hosts=inv.hosts)
    if not all(o.ok for o in outcomes):
        finish(c, fmt, report.unread(label, outcomes, dry=dry, what=stopped), outcomes)  # exits 1
    return outcomes


@task(help={"domain": "Print only this zone (a domain or a reverse zone, as listed in the JSON).",
            "out": "Write one FILE per zone (<zone>.zone) in this local directory, and list them.",
            "serial": "The SOA serial of every zone (default: YYYYMMDDnn, today's first, or with --out the "
                      "file's own while the zone is unchanged, else the next).",
            "format": FORMAT_HELP,
            "dry": "With --out: read the hosts, say which files would be written; write nothing."},
      kinds={"serial": SOA_SERIAL}, long_only=("serial",))
def zone(c: Context, domain: str | None = None, out: str | None = None, serial: str | None = None,
         format: str = "table", dry: bool = False) -> None:
    """Print the zones the plan implies, as RFC 1035 zone text (or JSON)."""
    from aegir.action import dry_stop
    from aegir.dns import plan, report, steps
    from aegir.report import Result

    fmt = check_format(format)
    dry = is_dry(c, dry)
    day = time.strftime("%Y%m%d", time.gmtime())
    number = int(day) * 100 if serial is None else int(serial)  # flags.SOA_SERIAL read it: 1 to 2**32 - 1
    if not 0 < number < plan.SERIALS:
        raise UsageError(f"dns.zone --serial {serial}: must be from 1 to {plan.SERIALS - 1}")
    inv, settings = _settings(c)
    origins = plan.origins(inv.hosts, settings)
    chosen = None if domain is None else plan.as_origin(domain)
    if chosen is not None and chosen not in origins:
        names = [o.rstrip(".") for o in origins]
        raise UsageError(f"dns.zone --domain: no zone {domain!r}{did_you_mean(str(domain), names)}; "
                         f"zones: {', '.join(names)}")
    outcomes = _names(c, fmt, "dns.zone", inv, dry=dry, stopped="no zone made")
    built = plan.fleet(inv.hosts, settings, [(o.host.name, o.value) for o in outcomes if o.value], number)
    zones = [z for z in built.zones if chosen in (None, z.origin)]
    files = steps.plan_files(out, zones, day if serial is None else None) if out else None
    zones = [f.zone for f in files] if files is not None else zones
    todo = files is not None and any(f.result == Result.WOULD for f in files)
    if not dry_stop(dry, todo=todo) and files is not None:
        files = steps.write_files(files)
    finish(c, fmt, report.zone_report(outcomes, built, zones, dry=dry, files=files), outcomes)


@task(help={"server": "ADDR[:PORT] of the authoritative server or resolver to ask (default: this machine's resolver).",
            "timeout": "Seconds to wait for each answer (default 3).",
            "format": FORMAT_HELP}, kinds={"server": SERVER, "timeout": SECONDS})
def check(c: Context, server: str | None = None, timeout: int = 3, format: str = "table") -> None:
    """Ask a DNS server for every record the plan implies; report what differs.

    Missing, wrong and unexpected records, one table.
    """
    from aegir.dns import check as dnscheck
    from aegir.dns import plan, report

    fmt = check_format(format)
    srv = dnscheck.parse_server(server)  # flags.SERVER refused a bad one when the command line was parsed
    inv, settings = _settings(c)
    outcomes = _names(c, fmt, "dns.check", inv, dry=None, stopped="nothing checked")
    built = plan.fleet(inv.hosts, settings, [(o.host.name, o.value) for o in outcomes if o.value], 1)
    result = dnscheck.check(srv, built, timeout=float(timeout))
    finish(c, fmt, report.check_report(outcomes, built, result), outcomes)


ns = Collection("dns")
for _t in (zone, check):
    ns.add_task(_t)
