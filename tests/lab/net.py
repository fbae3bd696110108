"""The lab's wiring: a bridge in the root namespace, the client namespace, one
veth per host. Built as ``ip -batch`` scripts (one ``ip`` run per namespace).

Every IPv6 address is ``nodad`` (usable at once) and hosts forward, so they
ignore router advertisements. The client and the root namespace route each
host's /56 via the host's admin IPv6, with an on-link route for its first /64.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Sequence

from tests.lab.plan import BRIDGE_IPV6, CLIENT_IPV6, IPV4_LINKS, LAB_IPV6, LINK_IPV6, HostPlan, LabNames


def ip_batch(lines: Sequence[str], netns: str | None = None) -> None:
    """Run `lines` as one ``ip -batch`` (in `netns` if given); raise with ip's message."""
    if not lines:
        return
    argv = ["ip", *(["-n", netns] if netns else []), "-batch", "-"]
    done = subprocess.run(argv, input="\n".join(lines) + "\n", capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.strip()}\nbatch:\n" + "\n".join(lines))


def sysctl(netns: str, settings: dict[str, str]) -> None:
    """Set net sysctls inside `netns` (``/proc/sys/net`` follows the caller's netns)."""
    args = [f"{k}={v}" for k, v in settings.items()]
    subprocess.run(["nsenter", f"--net=/run/netns/{netns}", "sysctl", "-q", "-w", *args], check=True)


def lab_link(names: LabNames) -> None:
    """The bridge (root ns: the admin workstation) and the client namespace (the Internet)."""
    subprocess.run(["ip", "netns", "add", names.client_netns], check=True)
    sysctl(names.client_netns, {"net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1",
                                "net.ipv6.conf.default.accept_dad": "0"})
    ip_batch([
        f"link add {names.bridge} type bridge stp_state 0 forward_delay 0 mcast_snooping 0",
        f"addr add {names.bridge_ipv4}/24 dev {names.bridge}",
        f"addr add {BRIDGE_IPV6}/64 dev {names.bridge} nodad",
        f"link add {names.client_veth} type veth peer name eth0 netns {names.client_netns}",
        f"link set {names.client_veth} master {names.bridge} up",
        f"link set {names.bridge} up",
    ])
    ip_batch([
        "link set lo up",
        f"addr add {names.client_ipv4}/24 dev eth0",
        f"addr add {CLIENT_IPV6}/64 dev eth0 nodad",
        "link set eth0 up",
    ], names.client_netns)


def add_host_link(names: LabNames, host: HostPlan) -> None:
    """Create `host`'s netns, its veth on the bridge, its addresses and routes."""
    subprocess.run(["ip", "netns", "add", host.netns], check=True)
    sysctl(host.netns, {
        "net.ipv4.ip_forward": "1",
        "net.ipv6.conf.all.forwarding": "1",
        "net.ipv6.conf.default.accept_ra": "0",
        "net.ipv6.conf.default.accept_dad": "0",
    })
    ip_batch([
        f"link add {host.veth} type veth peer name eth0 address {host.mac} netns {host.netns}",
        f"link set {host.veth} master {names.bridge} up",
        *_routes_to(host, names.bridge),
    ])
    ip_batch([
        "link set lo up",
        f"addr add {host.admin_ipv4}/24 dev eth0",
        f"addr add {host.service_ipv4}/24 dev eth0",
        f"addr add {host.admin_ipv6}/64 dev eth0 nodad",
        f"addr add {host.service_ipv6}/64 dev eth0 nodad",
        "link set eth0 up",
        f"route add {LINK_IPV6} dev eth0",
        f"route add default via {names.client_ipv4}",
        f"route add default via {CLIENT_IPV6}",
    ], host.netns)
    ip_batch(_routes_to(host, "eth0"), names.client_netns)


def remove_host_routes(names: LabNames, host: HostPlan) -> None:
    """Drop the root's and the client's routes to a removed host (they sit on the bridge, not its veth)."""
    for netns, dev in ((None, names.bridge), (names.client_netns, "eth0")):
        for route in _routes_to(host, dev):
            argv = ["ip", *(["-n", netns] if netns else []), *route.replace("route replace", "route del").split()]
            subprocess.run(argv, capture_output=True)


def _routes_to(host: HostPlan, dev: str) -> list[str]:
    return [
        f"route replace {host.first64} dev {dev}",
        f"route replace {host.ipv6_prefix} via {host.admin_ipv6} dev {dev}",
    ]


def free_ipv4_link() -> ipaddress.IPv4Network:
    """The first documentation /24 this machine does not already use (its uplink may be one).

    The lab must never share a subnet with a real interface: its traffic would
    leave the machine. The IPv6 plan (2001:db8::/32) is checked the same way.
    """
    used4 = _routes("-4")
    for candidate in IPV4_LINKS:
        if not any(candidate.overlaps(n) for n in used4):
            break
    else:
        raise RuntimeError(f"every lab IPv4 link ({', '.join(map(str, IPV4_LINKS))}) is in use on this machine")
    if clash := [n for n in _routes("-6") if n.overlaps(LAB_IPV6)]:
        raise RuntimeError(f"this machine routes {clash[0]}, inside the lab's IPv6 plan {LAB_IPV6}")
    return candidate


def _routes(family: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    out = subprocess.run(["ip", "-j", family, "route", "show", "table", "all"], capture_output=True, text=True,
                         check=True).stdout
    nets = []
    for route in json.loads(out or "[]"):
        dst = route.get("dst", "default")
        if dst != "default" and route.get("type") != "multicast":
            nets.append(ipaddress.ip_network(dst, strict=False))
    return nets


def links_named(prefix: str) -> list[str]:
    """Root-namespace links whose name starts with ``<prefix>-``."""
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    names = [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]
    return [n for n in names if n.startswith(f"{prefix}-")]


def netns_named(prefix: str) -> list[str]:
    """Named network namespaces starting with ``<prefix>-``."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(f"{prefix}-")]
