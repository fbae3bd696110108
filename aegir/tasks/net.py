"""Addressing: the fleet's plan from hosts.yml, checked against each host's addresses and Docker.

Every host is dual stack: an admin IPv4, service IPv4s, an IPv6 prefix (a
/56) holding the admin IPv6 and one service IPv6 per service IPv4, and a
global IPv6 inside that prefix for every container. Docker's own settings are
checked against what aegir's firewall and this plan assume (no userland
proxy, no iptables/ip6tables, ipv6 with fixed-cidr-v6 in the prefix, data on
/srv): a deviation is a problem row naming the daemon.json key to change.
"""

from __future__ import annotations

from invoke import Collection, Context

from aegir.report import FORMAT_HELP
from aegir.tasks.base import fleet_report, task


@task(help={"format": FORMAT_HELP})
def plan(c: Context, format: str = "table") -> None:
    """Show each host's addresses, networks and containers; flag what is off-plan."""
    from aegir.net import facts, report  # here, not at the top: inv --list stays quick

    fleet_report(c, format, "net.plan", facts.gather, data=report.data, text=report.text,
                 problems=lambda outcomes: bool(report.problems(outcomes)))


ns = Collection("net")
ns.add_task(plan)
