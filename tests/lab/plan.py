"""The lab's names and addresses: one pure function of (prefix, IPv4 link, host index).

Documentation prefixes only (RFC 5737, RFC 3849). The root namespace plays
the admin workstation, the client namespace ``<prefix>-inet`` plays the
Internet, and host N (``hypN``) gets, on the lab's IPv4 link L (``192.0.2.0/24``
unless this machine already uses it, then ``198.51.100.0/24``, then
``203.0.113.0/24``: see `net.free_ipv4_link`)::

    admin_ipv4    L.(10+N)/24               service_ipv4  L.(100+N)/24
    ipv6_prefix   2001:db8:0:{N:x}00::/56   admin_ipv6    2001:db8:0:{N:x}00::1/64
    service_ipv6  2001:db8:0:{N:x}00::11/64 containers    2001:db8:0:{N:x}01::/64

The bridge (root namespace) is L.1 and 2001:db8:ff::1/64, the client L.200
and 2001:db8:ff::200/64.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

IPv4 = ipaddress.IPv4Address
IPv6 = ipaddress.IPv6Address

IPV4_LINKS = tuple(ipaddress.IPv4Network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"))
LAB_IPV6 = ipaddress.IPv6Network("2001:db8::/32")
BRIDGE_IPV6 = IPv6("2001:db8:ff::1")
CLIENT_IPV6 = IPv6("2001:db8:ff::200")
LINK_IPV6 = ipaddress.IPv6Network("2001:db8:ff::/64")
MAX_INDEX = 89  # 10+N and 100+N must stay below the client's .200

PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{0,9}$")  # "<prefix>-h89" fits IFNAMSIZ (15)
HOST_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")


@dataclass(frozen=True)
class HostPlan:
    """Names and addresses of lab host number `index`."""

    prefix: str
    name: str
    index: int
    link4: ipaddress.IPv4Network = IPV4_LINKS[0]

    @property
    def netns(self) -> str:
        return f"{self.prefix}-{self.name}"

    @property
    def veth(self) -> str:
        """The root-namespace end of the host's link (the host sees ``eth0``)."""
        return f"{self.prefix}-h{self.index}"

    @property
    def mac(self) -> str:
        """The host's eth0 MAC: fixed per index, so a re-created host does not meet stale ARP/ND caches."""
        return f"02:ae:00:00:00:{self.index:02x}"

    @property
    def cgroup(self) -> str:
        """Docker's ``cgroup-parent``: every container process of this host is under it."""
        return f"{self.prefix}-{self.name}"

    @property
    def admin_ipv4(self) -> IPv4:
        return self.link4[10 + self.index]

    @property
    def service_ipv4(self) -> IPv4:
        return self.link4[100 + self.index]

    @property
    def ipv6_prefix(self) -> ipaddress.IPv6Network:
        return ipaddress.IPv6Network(f"2001:db8:0:{self.index:x}00::/56")

    @property
    def first64(self) -> ipaddress.IPv6Network:
        """The /64 holding the admin and service IPv6s, on the lab link."""
        return ipaddress.IPv6Network(f"2001:db8:0:{self.index:x}00::/64")

    @property
    def admin_ipv6(self) -> IPv6:
        return self.first64[1]

    @property
    def service_ipv6(self) -> IPv6:
        return self.first64[0x11]

    @property
    def containers_ipv6(self) -> ipaddress.IPv6Network:
        """Docker's ``fixed-cidr-v6``: one global address per container."""
        return ipaddress.IPv6Network(f"2001:db8:0:{self.index:x}01::/64")

    @property
    def bip(self) -> str:
        """docker0's address: distinct per host, clear of the lab link."""
        return f"172.18.{self.index}.1/24"


@dataclass(frozen=True)
class LabNames:
    """Names and addresses of the lab-wide parts."""

    prefix: str
    link4: ipaddress.IPv4Network = IPV4_LINKS[0]

    @property
    def bridge_ipv4(self) -> IPv4:
        return self.link4[1]

    @property
    def client_ipv4(self) -> IPv4:
        return self.link4[200]

    @property
    def bridge(self) -> str:
        return f"{self.prefix}-br"

    @property
    def client_netns(self) -> str:
        return f"{self.prefix}-inet"

    @property
    def client_veth(self) -> str:
        return f"{self.prefix}-c"

    def host(self, name: str, index: int) -> HostPlan:
        return HostPlan(self.prefix, name, index, self.link4)


def check_prefix(prefix: str) -> str:
    """`prefix`, or ValueError: it names netns and links, so it must stay short."""
    if not PREFIX_RE.match(prefix):
        raise ValueError(f"lab prefix {prefix!r} must be a lowercase letter then up to 9 letters or digits")
    return prefix


def check_host_name(name: str) -> str:
    if not HOST_NAME_RE.match(name) or name == "inet":
        raise ValueError(f"lab host name {name!r} must be lowercase letters, digits, '-' (and not 'inet')")
    return name
