"""Benchmark: the firewall, event-driven vs polling, and at scale.

Run as root, under the lab lock: ``flock /tmp/aegir-lab.lock .venv/bin/python bench/fw.py``
(starts its own lab, prefix ``aegirfwb``).

(a) Container start -> rule live: a container publishing a port is started on a
    lab host; the time until the port answers from the client namespace is
    measured, `SAMPLES` times, with ``fw.watch`` running on the host, then with
    the old way (a loop running ``fw.apply`` every 10 s, as the docker-jinja
    cron did). Prints median and p95 of each and the ratio polling/event.
(b) render + ``nft -c`` + apply for 10, 100, 1000 and 5000 containers x 3 ports
    (synthetic ``docker inspect`` data) on a lab host, through the same code as
    ``fw.apply``; prints seconds and the ruleset's rule count (target: 5000
    containers under 1 s, the rule count constant).
"""

from __future__ import annotations

import ipaddress
from typing import Any

#: The lab's docker0 subnet is 172.18.N.0/24; synthetic containers live elsewhere.
SYNTH_V4 = ipaddress.IPv4Network("10.128.0.0/12")
SYNTH_V6 = ipaddress.IPv6Network("2001:db8:0:1ff::/64")


def synthetic_inspect(n: int, ports: int = 3, *, first_port: int = 10000) -> list[dict[str, Any]]:
    """`n` running containers as ``docker inspect`` prints them, each publishing `ports` tcp ports.

    Container i gets 10.128.x.y and a global IPv6, and publishes host ports
    ``first_port + i*ports + k`` (no address: every service address) -> 80+k.
    """
    out = []
    for i in range(n):
        bindings = {f"{80 + k}/tcp": [{"HostIp": "", "HostPort": str(first_port + i * ports + k)}]
                    for k in range(ports)}
        out.append({
            "Id": f"{i:064x}", "Name": f"/app{i}", "State": {"Running": True},
            "HostConfig": {"PortBindings": bindings},
            "NetworkSettings": {"Ports": bindings, "Networks": {"bridge": {
                "IPAddress": str(SYNTH_V4[i + 2]), "GlobalIPv6Address": str(SYNTH_V6[i + 2])}}},
        })
    return out
