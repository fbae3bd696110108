"""Addressing: the fleet's plan from hosts.yml, checked against each host's addresses and Docker.

Every host is dual stack: an admin IPv4, service IPv4s, an IPv6 prefix (a
/56) holding the admin IPv6 and one service IPv6 per service IPv4, and a
global IPv6 inside that prefix for every container.
"""

from __future__ import annotations

from invoke import Collection

from aegir import fleet
from aegir.net import facts
from aegir.net import plan as netplan
from aegir.report import FORMAT_HELP, check_format, emit, table
from aegir.tasks.base import exit_if_failed, targets, task


@task(help={"format": FORMAT_HELP})
def plan(c, format="table"):
    """Show each host's addresses, prefix, Docker networks and containers; flag what lies outside the plan."""
    fmt = check_format(format)
    hosts = targets(c)
    outcomes = fleet.each(c, hosts, facts.gather, label="net.plan")
    rows: list[netplan.Row] = []
    failures = []
    for o in outcomes:
        rows += netplan.rows(o.host, o.value)
        if not o.ok:
            failures.append(netplan.Row(o.host.name, "host", None, None, None, o.status))
    rows += netplan.overlaps(hosts) + failures
    problems = [r for r in rows if r.problem]
    text = table(["HOST", "ROLE", "IPV4", "IPV6", "PREFIX/NETWORK", "CHECK"],
                 [[r.host, r.role, r.ipv4, r.ipv6, r.where, r.problem or r.note or "ok"] for r in rows])
    text += (f"\n\n{len(problems)} problem(s)" if problems else "\n\nno problem")
    emit(fmt, data={"rows": rows, "problems": [{"host": r.host, "role": r.role, "problem": r.problem}
                                              for r in problems]}, text=text)
    exit_if_failed(outcomes, problems=bool(problems))


ns = Collection("net")
ns.add_task(plan)
