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

# (class, inventory text, the line the error must point at, a phrase of the sentence)
HOSTILE = [
    # srv: what boot.guard writes into a systemd drop-in
    ("srv", H + '    srv: "/srv\\nExecStartPre=/bin/sh -c id"\n', 3, "control characters"),
    ("srv", H + "    srv: /\n", 3, "srv must be a folder below /"),
    ("srv", H + "    srv: ''\n", 3, "non-empty string"),
    ("srv", H + "    srv: ..\n", 3, "srv must be an absolute path"),
    ("srv", H + "    srv: /srv/../etc\n", 3, "without '.', '..'"),
    ("srv", H + "    srv: /srv data\n", 3, "srv must be a folder below /"),
    ("srv", H + "    srv: /srv/%h\n", 3, "srv must be a folder below /"),
    ("srv", "defaults:\n  srv: //\nhosts:\n  hyp1: {}\n", 2, "srv must be a folder below /"),
    # names and values that end in a newline
    ("newline", 'hosts:\n  "hyp1\\n": {}\n', 2, "host name 'hyp1\\n' must be"),
    ("newline", H + '    groups: ["prod\\n"]\n', 3, "groups must be a list of names"),
    ("newline", H + '    luks: {name: "data\\n"}\n', 3, "luks.name must be"),
    ("newline", H + '    user: "root\\n"\n', 3, "control characters"),
    ("newline", H + '    known_hosts: "/etc/kh\\nx"\n', 3, "control characters"),
    ("newline", H + '    docker_start: ["dockerd", "--x\\n"]\n', 3, "control characters"),
    # admin and service addresses no host can have
    ("special address", H + "    admin_ipv4: 127.0.0.1\n", 3, "admin_ipv4 127.0.0.1 is a loopback address"),
    ("special address", H + "    admin_ipv4: 0.0.0.0\n", 3, "is the unspecified address"),
    ("special address", H + "    service_ipv4: [192.0.2.5, 224.0.0.1]\n", 3, "224.0.0.1 is a multicast address"),
    ("special address", H + "    admin_ipv4: 255.255.255.255\n", 3, "is the broadcast address"),
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
    ("address", H + "    address: hyp1 -oProxyCommand=id\n", 3, "address 'hyp1 -oProxyCommand=id' must be"),
    ("address", H + "    address: hyp1;id\n", 3, "must be a host name or an IP address"),
    ("address", H + "    address: -oProxyCommand=id\n", 3, "no leading '-'"),
    ("address", H + "    address: fe80::1%eth0\n", 3, "no zone id"),
    ("address", H + "    admin_ipv4: 192.0.2.1%eth0\n", 3, "has a zone id"),
    ("address", H + "    ipv6_prefix: 2001:db8::/56\n    admin_ipv6: fe80::1%eth0\n", 4, "has a zone id"),
    ("address", H + "    admin_ipv4: ' 192.0.2.1'\n", 3, "is not an IPv4 address"),
    # prefixes that are not one host's
    ("prefix", H + "    ipv6_prefix: ::/0\n", 3, "ipv6_prefix ::/0 is shorter than /32"),
    ("prefix", H + "    ipv6_prefix: 2000::/3\n", 3, "is shorter than /32"),
    ("prefix", H + "    ipv6_prefix: fe80::/64\n", 3, "is link-local"),
    ("prefix", H + "    ipv6_prefix: ff02::/64\n", 3, "is a multicast address"),
    ("prefix", H + "    ipv6_prefix: 2001:db8::%eth0/56\n", 3, "is not an IPv6 network"),
    # names -H already gives a meaning
    ("all", "hosts:\n  all: {}\n", 2, "'all' cannot be a host name"),
    ("all", H + "    groups: [prod, all]\n", 3, "'all' cannot be a group name"),
    # empty values of the wrong type
    ("wrong type", H + "    luks: ''\n", 3, "luks must be a mapping"),
    ("wrong type", H + "    luks: []\n", 3, "luks must be a mapping"),
    ("wrong type", "defaults: ''\nhosts:\n  hyp1: {}\n", 1, "'defaults' must be a mapping"),
    ("wrong type", "defaults: []\nhosts:\n  hyp1: {}\n", 1, "'defaults' must be a mapping"),
    ("wrong type", H + "    luks: {device: ''}\n", 3, "luks.device must be an absolute path"),
    # YAML built to hurt: an alias bomb, deep nesting, control characters
    ("yaml", "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(7))
        + "hosts: {x: {}}\n", 6, "expands to more than"),
    ("yaml", "hosts:\n  hyp1: " + "[" * 5000 + "]" * 5000 + "\n", 2, "nested deeper than 64 levels"),
    ("yaml", "hosts:\n  hyp1:\n" + "".join("  " * (i + 2) + "- \n" for i in range(200)), 65, "nested deeper"),
    ("yaml", H + "    user: ro\x01ot\n", 3, "the character U+0001 is not allowed"),
    ("yaml", H + "    user: \x1b[31mroot\n", 3, "the character U+001B is not allowed"),
    ("yaml", "hosts:\n  hyp1: !!python/object/apply:os.system [id]\n", 2, "could not determine a constructor"),
    ("yaml", H + "    port: !!int 0xZZ\n", 3, "invalid YAML"),
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
