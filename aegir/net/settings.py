"""A host's ``mesh:`` section, validated: what its IPsec tunnels carry besides its prefix, and how.

Everything has a default::

    mesh:
      carry: [2001:db8:0:1ff::/64]   # more networks of this host the tunnels carry (default: none)
      encap: false                   # ESP inside UDP/4500 (needed by strongSwan's kernel-libipsec
                                     # or a NAT between hosts; default: raw ESP)
      member: true                   # false: this host has no part in the mesh

A host is in the mesh when it has an ``ipv6_prefix`` and an admin address
(``member: false`` leaves it out). Mistakes are `InventoryError`s pointing at
the line.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from aegir import fields
from aegir.inventory import Host, Inventory

Net = ipaddress.IPv4Network | ipaddress.IPv6Network

KEYS = ("carry", "encap", "member")


@dataclass(frozen=True)
class MeshSettings:
    """The validated ``mesh:`` settings of one host."""

    carry: tuple[Net, ...] = ()
    encap: bool = False
    member: bool = True


def for_host(inv: Inventory, host: Host) -> MeshSettings:
    """Validate `host`'s ``mesh:`` section (`InventoryError` at the line of a mistake)."""
    f = inv.section(host, "mesh", KEYS)
    carry = f.get("carry", fields.list_of(fields.network, "networks"), [])
    return MeshSettings(tuple(carry), f.get("encap", fields.boolean, False), f.get("member", fields.boolean, True))


def members(inv: Inventory) -> tuple[tuple[Host, MeshSettings], ...]:
    """Every host of the mesh, in inventory order, with its settings (every host's section read first)."""
    hosts: Sequence[Host] = inv.every_host("the IPsec mesh joins every host of the inventory")
    out = []
    for h in hosts:
        s = for_host(inv, h)
        if s.member and not h.is_local and h.ipv6_prefix is not None and (h.admin_ipv4 or h.admin_ipv6):
            out.append((h, s))
    return tuple(out)
