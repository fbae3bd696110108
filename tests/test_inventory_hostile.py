"""Hostile inventories through the real program: each one is an exit-2 ``file:line: sentence``, never a traceback.

No lab needed: the inventory is refused before any host is contacted. The
timeout of each run is a hang guard, not a speed target (see bench/hostile_yaml.py).
"""

from __future__ import annotations

import re

import pytest

from tests.helpers import run_inv, usage_error, write_inventory

H = "hosts:\n  hyp1:\n"
TWO = "hosts:\n  hyp1:\n    {a}\n  hyp2:\n    {b}\n"


def one(cls: str, line: str, phrase: str) -> tuple[str, str, int, str]:
    """A case whose inventory is host hyp1 with one hostile `line` (line 3 of the file)."""
    return cls, f"{H}    {line}\n", 3, phrase


# (class, inventory text, the line the error must point at, a phrase of the sentence)
HOSTILE = [
    # srv: what boot.guard writes into a systemd drop-in
    one("srv", 'srv: "/srv\\nExecStartPre=/bin/sh -c id"', "control characters"),
    one("srv", "srv: /", "srv: must be a folder below /"),
    one("srv", "srv: ''", "non-empty string"),
    one("srv", "srv: ..", "srv: must be an absolute path"),
    one("srv", "srv: /srv/../etc", "without '.', '..'"),
    one("srv", "srv: /srv data", "srv: must be a folder below /"),
    one("srv", "srv: /srv/%h", "srv: must be a folder below /"),
    ("srv", "defaults:\n  srv: //\nhosts:\n  hyp1: {}\n", 2, "srv: must be a folder below /"),
    # names and values that end in a newline
    ("newline", 'hosts:\n  "hyp1\\n": {}\n', 2, "host name 'hyp1\\n' must be"),
    one("newline", 'groups: ["prod\\n"]', "groups[0]: invalid group name"),
    one("newline", 'luks: {name: "data\\n"}', "luks.name: invalid luks mapping name"),
    one("newline", 'user: "root\\n"', "control characters"),
    one("newline", 'known_hosts: "/etc/kh\\nx"', "control characters"),
    one("newline", 'docker_start: ["dockerd", "--x\\n"]', "control characters"),
    # admin and service addresses no host can have
    one("special address", "admin_ipv4: 127.0.0.1", "admin_ipv4: 127.0.0.1 is a loopback address"),
    one("special address", "admin_ipv4: 0.0.0.0", "is the unspecified address"),
    one("special address", "service_ipv4: [192.0.2.5, 224.0.0.1]", "224.0.0.1 is a multicast address"),
    one("special address", "admin_ipv4: 255.255.255.255", "is the broadcast address"),
    ("special address", H + "    ipv6_prefix: 2001:db8::/56\n    admin_ipv6: '::1'\n", 4, "is a loopback address"),
    ("special address", H + "    ipv6_prefix: 2001:db8::/56\n    admin_ipv6: '::'\n", 4, "is the unspecified address"),
    ("special address", H + "    ipv6_prefix: 2001:db8::/56\n    service_ipv4: [192.0.2.5]\n"
                            "    service_ipv6: [ff02::1]\n", 5, "is a multicast address"),
    ("special address", H + "    ipv6_prefix: 2001:db8::/56\n    admin_ipv6: '::ffff:192.0.2.1'\n", 4, "IPv4-mapped"),
    # one machine twice
    ("same address", TWO.format(a="address: hyp.example.org", b="address: HYP.example.org."), 5, "already hyp1's"),
    ("same address", TWO.format(a="admin_ipv4: 192.0.2.1", b="address: 192.0.2.1"), 5, "already hyp1's"),
    ("same address", TWO.format(a="address: 2001:db8::1", b="address: '2001:db8:0::1'"), 5, "already hyp1's"),
    # addresses that are not one: spaces, shell words, options, zone ids
    one("address", "address: hyp1 -oProxyCommand=id", "address: 'hyp1 -oProxyCommand=id' must be"),
    one("address", "address: hyp1;id", "must be a host name or an IP address"),
    one("address", "address: -oProxyCommand=id", "no leading '-'"),
    one("address", "address: fe80::1%eth0", "no zone id"),
    one("address", "admin_ipv4: 192.0.2.1%eth0", "has a zone id"),
    ("address", H + "    ipv6_prefix: 2001:db8::/56\n    admin_ipv6: fe80::1%eth0\n", 4, "has a zone id"),
    one("address", "admin_ipv4: ' 192.0.2.1'", "is not an IPv4 address"),
    # prefixes that are not one host's
    one("prefix", "ipv6_prefix: ::/0", "ipv6_prefix: ::/0 is shorter than /32"),
    one("prefix", "ipv6_prefix: 2000::/3", "is shorter than /32"),
    one("prefix", "ipv6_prefix: fe80::/64", "is link-local"),
    one("prefix", "ipv6_prefix: ff02::/64", "is a multicast address"),
    one("prefix", "ipv6_prefix: 2001:db8::%eth0/56", "is not an IPv6 network"),
    # names -H already gives a meaning
    ("all", "hosts:\n  all: {}\n", 2, "'all' cannot be a host name"),
    one("all", "groups: [prod, all]", "'all' cannot be a group name"),
    # empty values of the wrong type
    one("wrong type", "luks: ''", "luks: must be a mapping"),
    one("wrong type", "luks: []", "luks: must be a mapping"),
    ("wrong type", "defaults: ''\nhosts:\n  hyp1: {}\n", 1, "'defaults' must be a mapping"),
    ("wrong type", "defaults: []\nhosts:\n  hyp1: {}\n", 1, "'defaults' must be a mapping"),
    one("wrong type", "luks: {device: ''}", "luks.device: must be an absolute path"),
    # YAML built to hurt: an alias bomb, deep nesting, control characters
    ("yaml", "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(7))
        + "hosts: {x: {}}\n", 6, "expands to more than"),
    ("yaml", "hosts:\n  hyp1: " + "[" * 5000 + "]" * 5000 + "\n", 2, "nested deeper than 64 levels"),
    ("yaml", "hosts:\n  hyp1:\n" + "".join("  " * (i + 2) + "- \n" for i in range(200)), 65, "nested deeper"),
    one("yaml", "user: ro\x01ot", "the character U+0001 is not allowed"),
    one("yaml", "user: \x1b[31mroot", "the character U+001B is not allowed"),
    ("yaml", "hosts:\n  hyp1: !!python/object/apply:os.system [id]\n", 2, "could not determine a constructor"),
    one("yaml", "port: !!int 0xZZ", "invalid YAML"),
]


def test_the_alias_bomb_is_the_small_file_of_the_report():
    bomb = next(text for cls, text, _, phrase in HOSTILE if "expands" in phrase)
    assert len(bomb.encode()) < 400


@pytest.mark.parametrize("cls, text, line, phrase", HOSTILE,
                         ids=[f"{c}:{p[:40]}" for c, _, _, p in HOSTILE])
def test_a_hostile_inventory_is_refused_by_the_program_with_file_and_line(tmp_path, cls, text, line, phrase):
    inventory = write_inventory(tmp_path, text)
    message = usage_error("disk.report", inventory=inventory, timeout=20)
    assert "\n" not in message, message
    assert message.startswith(f"aegir: {inventory}:{line}: "), message
    assert phrase in message, message


def test_every_class_of_the_report_is_fed_several_inputs():
    per_class: dict[str, int] = {}
    for cls, *_ in HOSTILE:
        per_class[cls] = per_class.get(cls, 0) + 1
    assert min(per_class.values()) >= 2, per_class
    assert len(HOSTILE) == len({t for _, t, _, _ in HOSTILE})


def test_a_good_inventory_still_passes_the_same_program(tmp_path):
    inventory = write_inventory(tmp_path, "hosts:\n  local:\n    connection: local\n    srv: /srv/data.1\n  hyp1:\n"
                                "    address: hyp1.example.org\n    user: deploy\n    admin_ipv4: 192.0.2.10\n"
                                "    ipv6_prefix: 2001:db8:0:100::/56\n    admin_ipv6: 2001:db8:0:100::1\n"
                                "    groups: [prod]\n")
    res = run_inv("-H", "prod", "--list", inventory=inventory, timeout=20)
    assert res.returncode == 0, res.stderr
    from aegir.inventory import load

    hyp1 = load(str(inventory)).get("hyp1")
    assert (hyp1.address, hyp1.user, str(hyp1.admin_ipv6)) == ("hyp1.example.org", "deploy", "2001:db8:0:100::1")
    assert re.fullmatch(r"/srv/data\.1", load(str(inventory)).get("local").srv)
