"""The inventory: hosts.yml -> validated Host objects, every mistake a one-line file:line error."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from aegir.errors import InventoryError, TargetError
from aegir.inventory import Host, load, parse, parse_raw_target, parse_serial

REPO = Path(__file__).resolve().parents[2]

GOOD = """\
defaults:
  user: root
  known_hosts: /etc/aegir/known_hosts
hosts:
  local:
    connection: local
  hyp1:
    groups: [prod, eu]
    luks: {device: /dev/md2}
    admin_ipv4: 192.0.2.11
    service_ipv4: [192.0.2.111, 192.0.2.112]
    ipv6_prefix: 2001:db8:0:100::/56
    admin_ipv6: 2001:db8:0:100::1
    service_ipv6: [2001:db8:0:100::11, 2001:db8:0:100::12]
    fw: {ssh_sources: [198.51.100.0/24]}
  hyp2:
    address: hyp2.example.org
    port: 2222
    groups: [prod]
    docker_start: /usr/local/bin/start-docker --fast
    admin_ipv4: 192.0.2.12
"""


def test_a_good_inventory_gives_typed_hosts_with_defaults_applied():
    inv = parse(GOOD, "hosts.yml")
    assert inv.names == ("local", "hyp1", "hyp2")
    local, hyp1, hyp2 = inv.hosts
    assert local.is_local and local.user == "root"
    assert hyp1.address == "192.0.2.11"  # SSH goes to the admin IPv4 by default
    assert hyp1.known_hosts == "/etc/aegir/known_hosts"
    assert hyp1.luks_device == "/dev/md2" and hyp1.luks_name == "data"
    assert hyp1.service_ipv6 == (ipaddress.IPv6Address("2001:db8:0:100::11"), ipaddress.IPv6Address("2001:db8:0:100::12"))
    assert hyp1.ipv6_prefix == ipaddress.IPv6Network("2001:db8:0:100::/56")
    assert dict(hyp1.section("fw")) == {"ssh_sources": ["198.51.100.0/24"]}
    assert hyp2.ssh_target == "root@hyp2.example.org:2222"
    assert hyp2.docker_start == ("/usr/local/bin/start-docker", "--fast")
    assert hyp1.docker_start == ("systemctl", "start", "docker")
    assert hyp1.origin == "hosts.yml:7"
    assert inv.line_of("hosts", "hyp1", "admin_ipv6") == 13


def test_the_shipped_example_inventory_has_exactly_one_live_host_local():
    inv = load(str(REPO / "hosts.yml"))
    assert [(h.name, h.connection) for h in inv] == [("local", "local")]


def test_targets_resolve_names_groups_and_raw_addresses_in_order_without_duplicates():
    inv = parse(GOOD)
    assert [h.name for h in inv.resolve(None)] == ["local", "hyp1", "hyp2"]
    assert [h.name for h in inv.resolve("hyp2,prod")] == ["hyp2", "hyp1"]
    assert [h.name for h in inv.resolve("all")] == ["local", "hyp1", "hyp2"]
    raw = inv.resolve("admin@203.0.113.9:2200")[0]
    assert (raw.name, raw.user, raw.address, raw.port) == ("admin@203.0.113.9:2200", "admin", "203.0.113.9", 2200)
    # a raw address that belongs to an inventory host keeps that host's plan
    known = inv.resolve("ops@192.0.2.11")[0]
    assert (known.name, known.user, known.service_ipv4[0]) == ("hyp1", "ops", ipaddress.IPv4Address("192.0.2.111"))


def test_a_bang_or_exclude_leaves_hosts_and_groups_out():
    inv = parse(GOOD, "hosts.yml")
    assert [h.name for h in inv.resolve("prod,!hyp2")] == ["hyp1"]
    assert [h.name for h in inv.resolve("!prod")] == ["local"]  # exclusions only: from every host
    assert [h.name for h in inv.resolve(None, "local")] == ["hyp1", "hyp2"]
    assert [h.name for h in inv.resolve("all", ["hyp1", "hyp2"])] == ["local"]
    assert [h.name for h in inv.resolve("prod,!192.0.2.11")] == ["hyp2"]  # an address names its host
    with pytest.raises(TargetError, match="unknown host or group 'hyp3'"):
        inv.resolve("prod,!hyp3")
    with pytest.raises(TargetError, match=r"no host left: prod excludes every target \(hyp1, hyp2\)"):
        inv.resolve("prod", "prod")


def test_completion_offers_hosts_groups_and_keeps_what_was_typed_before_the_last_comma():
    inv = parse(GOOD, "hosts.yml")
    assert inv.completions("") == ["local", "hyp1", "hyp2", "eu", "prod", "all"]
    assert inv.completions("prod,!h")[:3] == ["prod,!local", "prod,!hyp1", "prod,!hyp2"]


def test_an_unknown_target_is_refused_with_the_known_names_and_a_suggestion():
    with pytest.raises(TargetError) as err:
        parse(GOOD, "hosts.yml").resolve("hyp3")
    msg = str(err.value)
    assert "unknown host or group 'hyp3'" in msg
    assert "did you mean 'hyp2'?" in msg
    assert "hosts: local, hyp1, hyp2; groups: eu, prod" in msg


@pytest.mark.parametrize("word, expected", [
    ("hyp.example.org", (None, "hyp.example.org", None)),
    ("root@hyp:22", ("root", "hyp", 22)),
    ("[2001:db8::1]:2222", (None, "2001:db8::1", 2222)),
    ("ops@[2001:db8::1]", ("ops", "2001:db8::1", None)),
    ("2001:db8::1", (None, "2001:db8::1", None)),
])
def test_raw_targets_are_read_like_ssh_reads_them(word, expected):
    assert parse_raw_target(word) == expected


def test_a_raw_target_with_a_bad_port_is_refused():
    with pytest.raises(TargetError, match="^target 'root@hyp:70000': '70000' is not a port number from 1 to 65535$"):
        parse_raw_target("root@hyp:70000")


HOST = "hosts:\n  hyp1:\n"
GROUPED = "hosts:\n  hyp1: {groups: [prod]}\n  hyp2: {groups: [prod, canary]}\n"

# (yaml text, expected message: "file:line: sentence")
BAD = [
    ("", "hosts.yml:1: the inventory is empty: it needs a 'hosts:' mapping"),
    ("- hyp1\n", "hosts.yml:1: the top level must be a mapping with 'hosts:', not a list"),
    ("hosts: [a, b]\n", "hosts.yml:1: 'hosts' must be a non-empty mapping of host name -> settings"),
    ("hostz: {}\n", "hosts.yml:1: unknown top-level key 'hostz' (did you mean 'hosts'?)"),
    ("hosts:\n  hyp1: {}\n  hyp1: {}\n", "hosts.yml:3: duplicate key 'hyp1' (first written at line 2)"),
    (HOST + "    adress: 192.0.2.1\n", "hosts.yml:3: hyp1: unknown key 'adress' (did you mean 'address'?)"),
    (HOST + "    admin_ipv4: 192.0.2.300\n", "hosts.yml:3: hyp1: admin_ipv4: '192.0.2.300' is not an IPv4 address"),
    (HOST + "    admin_ipv4: 2001:db8::1\n", "hosts.yml:3: hyp1: admin_ipv4: '2001:db8::1' is not an IPv4 address"),
    (HOST + "    service_ipv4: [192.0.2.5, nope]\n", "hosts.yml:3: hyp1: service_ipv4[1]: 'nope' is not an IPv4 address"),
    (HOST + "    ipv6_prefix: 2001:db8::1/56\n",
     "hosts.yml:3: hyp1: ipv6_prefix: '2001:db8::1/56' is not an IPv6 network (2001:db8::1/56 has host bits set)"),
    (HOST + "    ipv6_prefix: 2001:db8::/120\n",
     "hosts.yml:3: hyp1: ipv6_prefix: 2001:db8::/120 is longer than /64 (the runbook gives each host a /56)"),
    (HOST + "    ipv6_prefix: 2001:db8:0:100::/56\n    admin_ipv6: 2001:db8:1::1\n",
     "hosts.yml:4: hyp1: admin_ipv6: 2001:db8:1::1 is outside the host's prefix 2001:db8:0:100::/56"),
    (HOST + "    admin_ipv6: 2001:db8::1\n", "hosts.yml:3: hyp1: admin_ipv6: 2001:db8::1 given without an ipv6_prefix to hold it"),
    (HOST + "    service_ipv4: [192.0.2.5, 192.0.2.6]\n    ipv6_prefix: 2001:db8::/56\n    service_ipv6: [2001:db8::5]\n",
     "hosts.yml:5: hyp1: service_ipv6: 2 service IPv4(s) but 1 service IPv6(s); they must pair one to one"),
    (HOST + "    admin_ipv4: 192.0.2.5\n  hyp2:\n    service_ipv4: [192.0.2.5]\n    ipv6_prefix: 2001:db8:1::/56\n    service_ipv6: [2001:db8:1::5]\n",
     "hosts.yml:5: hyp2: service_ipv4: 192.0.2.5 is already hyp1's admin_ipv4"),
    (HOST + "    ipv6_prefix: 2001:db8::/56\n  hyp2:\n    ipv6_prefix: 2001:db8::/48\n",
     "hosts.yml:5: hyp2: ipv6_prefix: 2001:db8::/48 overlaps hyp1's 2001:db8::/56"),
    (HOST + "    port: 70000\n", "hosts.yml:3: hyp1: port: 70000 is not a port number from 1 to 65535"),
    (HOST + "    port: '22'\n", "hosts.yml:3: hyp1: port: '22' is not a port number from 1 to 65535"),
    (HOST + "    connection: telnet\n", "hosts.yml:3: hyp1: connection: must be 'ssh' or 'local', not 'telnet'"),
    (HOST + "    srv: srv\n", "hosts.yml:3: hyp1: srv: must be an absolute path, not 'srv'"),
    (HOST + "    luks: {device: md2}\n", "hosts.yml:3: hyp1: luks.device: must be an absolute path like /dev/md2, not 'md2'"),
    (HOST + "    luks: {dev: /dev/md2}\n", "hosts.yml:3: hyp1: luks: unknown key 'dev' (did you mean 'device'?)"),
    (HOST + "    groups: [hyp1]\n", "hosts.yml:3: hyp1: groups: 'hyp1' is the name of a host"),
    ("defaults:\n  admin_ipv4: 192.0.2.1\nhosts:\n  hyp1: {}\n",
     "hosts.yml:2: 'admin_ipv4' is per host and cannot be in 'defaults'"),
    ("hosts:\n  'bad name': {}\n", "hosts.yml:2: host name 'bad name' must be letters, digits, '_', '.', '-'"),
    ("hosts:\n  hyp1: [a]\n", "hosts.yml:2: host 'hyp1' must be a mapping of settings, not a list"),
    ("hosts:\n  hyp1:\n    user: [root]\n", "hosts.yml:3: hyp1: user: must be a string, not a list"),
    ("hosts:\n  a: {connection: local}\n  b: {connection: local}\n",
     "hosts.yml:3: b: only one host can be 'connection: local' (also a)"),
    ("hosts:\n  hyp1: {fw: [ssh]}\n", "hosts.yml:2: hyp1: fw: must be a mapping"),
    ("hosts:\n  hyp1: {\n", "hosts.yml:3: invalid YAML: expected the node content, but found '<stream end>'"),
    ("hosts:\n\tbad: tab\n", "hosts.yml:2: invalid YAML: found character '\\t' that cannot start any token"),
    (GROUPED + "groups:\n  prdo: {rolling: {serial: 1}}\n", "hosts.yml:5: group 'prdo' has no host in it (did you mean 'prod'?)"),
    (GROUPED + "groups:\n  prod: {roling: {serial: 1}}\n",
     "hosts.yml:5: group prod: unknown key 'roling' (did you mean 'rolling'?)"),
    (GROUPED + "groups:\n  prod:\n    rolling:\n      serial: 0\n",
     "hosts.yml:7: group prod: rolling.serial: must be a number of hosts (1 or more) or a percentage (1% to 100%), not 0"),
    (GROUPED + "groups:\n  prod:\n    rolling: {serial: 150%}\n",
     "hosts.yml:6: group prod: rolling.serial: must be a number of hosts (1 or more) or a percentage (1% to 100%), "
     "not '150%'"),
    (GROUPED + "groups:\n  prod:\n    rolling: {keep_going: true}\n",
     "hosts.yml:6: group prod: rolling: must be a mapping with 'serial' (and optionally 'keep_going')"),
    (GROUPED + "groups:\n  prod:\n    rolling:\n      serial: 1\n      keep_going: 'yes'\n",
     "hosts.yml:8: group prod: rolling.keep_going: must be true or false, not 'yes'"),
]


@pytest.mark.parametrize("text, message", BAD, ids=[m.split(": ", 1)[1][:50] for _, m in BAD])
def test_a_bad_inventory_gives_one_line_with_file_and_line(text, message):
    """What a command that targets every host is refused with (at parse time, or when it resolves its targets)."""
    with pytest.raises(InventoryError) as err:
        parse(text, "hosts.yml").resolve(None)
    assert str(err.value) == message
    assert "\n" not in str(err.value)


FLEET = """\
hosts:
  local:
    connection: local
  hyp1:
    groups: [prod]
    admin_ipv4: 192.0.2.11
    port: 70000
  hyp2:
    groups: [prod]
    admin_ipv4: 192.0.2.12
  hyp3:
    admin_ipv4: 192.0.2.13
"""
PORT = "hosts.yml:7: hyp1: port: 70000 is not a port number from 1 to 65535"


def test_a_mistake_in_one_host_entry_blocks_only_the_targets_that_include_that_host():
    inv = parse(FLEET, "hosts.yml")
    assert inv.names == ("local", "hyp2", "hyp3") and [b.name for b in inv.broken] == ["hyp1"]
    assert [h.name for h in inv.resolve("local")] == ["local"]
    assert [h.name for h in inv.resolve("hyp2,hyp3")] == ["hyp2", "hyp3"]
    assert [h.name for h in inv.resolve("!hyp1")] == ["local", "hyp2", "hyp3"]  # left out: the others run
    assert [h.name for h in inv.resolve("prod", "hyp1")] == ["hyp2"]
    for spec in (None, "all", "hyp1", "prod", "local,hyp1", "root@192.0.2.11:22"):
        with pytest.raises(InventoryError) as err:
            inv.resolve(spec)
        assert str(err.value) == PORT, spec
    with pytest.raises(InventoryError, match=f"^{re.escape(PORT)}$"):
        inv.get("hyp1")
    assert inv.get("hyp2").name == "hyp2"


def test_what_needs_every_host_is_refused_while_one_entry_is_broken():
    inv = parse(FLEET.replace("hyp3:\n", "hyp3:\n    user: [x]\n"), "hosts.yml")
    with pytest.raises(InventoryError) as err:
        inv.every_host("the zones cover every host")
    assert str(err.value) == f"{PORT} (the zones cover every host); also broken: hyp3"
    assert parse(FLEET.replace("    port: 70000\n", ""), "hosts.yml").every_host() == \
        parse(FLEET.replace("    port: 70000\n", ""), "hosts.yml").hosts


@pytest.mark.parametrize("extra, line, message, broken", [
    ("  hyp4:\n    address: 192.0.2.12\n", 13,
     "hyp4: address 192.0.2.12 (port 22) is already hyp2's: two inventory hosts cannot be one machine",
     ["hyp2", "hyp4"]),
    ("  hyp4:\n    address: hyp4.example.org\n    admin_ipv4: 192.0.2.13\n", 14, "hyp4: admin_ipv4: 192.0.2.13 is already hyp3's admin_ipv4",
     ["hyp3", "hyp4"]),
    ("  hyp4:\n    groups: [hyp2]\n", 13, "hyp4: groups: 'hyp2' is the name of a host", ["hyp4"]),
    ("  hyp4:\n    connection: local\n", 13, "hyp4: only one host can be 'connection: local' (also local)",
     ["local", "hyp4"]),
])
def test_a_clash_between_entries_blocks_the_hosts_involved_and_no_other(extra, line, message, broken):
    inv = parse(FLEET.replace("    port: 70000\n", "") + extra, "hosts.yml")
    assert [b.name for b in inv.broken] == broken
    for name in broken:
        with pytest.raises(InventoryError) as err:
            inv.resolve(name)
        assert str(err.value) == f"hosts.yml:{line}: {message}"
    assert [h.name for h in inv.resolve(None, ",".join(broken))] == [
        n for n in ("local", "hyp1", "hyp2", "hyp3") if n not in broken]


def test_overlapping_prefixes_block_both_hosts():
    inv = parse("hosts:\n  a: {ipv6_prefix: '2001:db8::/56'}\n  b: {ipv6_prefix: '2001:db8::/48'}\n"
                "  c: {ipv6_prefix: '2001:db8:1::/56'}\n", "hosts.yml")
    assert [b.name for b in inv.broken] == ["a", "b"] and inv.names == ("c",)
    with pytest.raises(InventoryError, match=r"^hosts.yml:3: b: ipv6_prefix: 2001:db8::/48 overlaps a's 2001:db8::/56$"):
        inv.resolve("a")


def test_a_broken_entry_still_belongs_to_the_groups_it_names():
    inv = parse(FLEET.replace("    port: 70000\n", "    groups: [prod, 'bad group']\n").replace(
        "    groups: [prod]\n    admin_ipv4: 192.0.2.11\n", "    admin_ipv4: 192.0.2.11\n", 1), "hosts.yml")
    assert inv.broken[0].groups == ("prod",)
    with pytest.raises(InventoryError, match=r"hyp1: groups\[1\]: invalid group name 'bad group'"):
        inv.resolve("prod")


@pytest.mark.parametrize("text, message", [
    ("defaults:\n  port: 70000\nhosts:\n  a: {}\n  b: {port: 22}\n",
     "hosts.yml:2: defaults: port: 70000 is not a port number from 1 to 65535"),
    ("defaults:\n  sudo: 'yes'\nhosts:\n  a: {}\n", "hosts.yml:2: defaults: sudo: must be true or false, not 'yes'"),
    ("defaults:\n  prot: 22\nhosts:\n  a: {}\n", "hosts.yml:2: defaults: unknown key 'prot' (did you mean 'port'?)"),
    ("hosts:\n  a: {groups: [prod]}\n  b: {port: 0}\ngroups:\n  prod: {rolling: {serial: x}}\n",
     "hosts.yml:5: group prod: rolling.serial: must be a number of hosts (1 or more) or a percentage (1% to 100%), "
     "not 'x'"),
    ("hosts:\n  a: {}\n  b: [\n", "hosts.yml:4: invalid YAML: expected the node content, but found '<stream end>'"),
])
def test_a_mistake_outside_the_host_entries_blocks_every_command(text, message):
    with pytest.raises(InventoryError) as err:
        parse(text, "hosts.yml")
    assert str(err.value) == message


def test_a_group_whose_only_host_is_broken_is_still_a_group():
    inv = parse("hosts:\n  a: {}\n  b: {groups: [canary], port: 0}\ngroups:\n  canary: {rolling: {serial: 1}}\n",
                "hosts.yml")
    assert inv.rolling["canary"].size == 1
    with pytest.raises(InventoryError, match="b: port: 0 is not a port number"):
        inv.resolve("canary")


def test_there_are_at_least_fifteen_distinct_bad_inventories():
    assert len({m for _, m in BAD}) >= 15


def test_load_follows_the_search_order(tmp_path, monkeypatch):
    (tmp_path / "hosts.yml").write_text("hosts:\n  cwd: {connection: local}\n")
    other = tmp_path / "other.yml"
    other.write_text("hosts:\n  env: {connection: local}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AEGIR_INVENTORY", raising=False)
    assert load().names == ("cwd",)
    monkeypatch.setenv("AEGIR_INVENTORY", str(other))
    assert load().names == ("env",)
    explicit = tmp_path / "explicit.yml"
    explicit.write_text("hosts:\n  flag: {connection: local}\n")
    assert load(str(explicit)).names == ("flag",)
    with pytest.raises(InventoryError, match="missing.yml: no such inventory file"):
        load(str(tmp_path / "missing.yml"))


def test_a_missing_inventory_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AEGIR_INVENTORY", raising=False)
    if Path("/etc/aegir/hosts.yml").exists():
        pytest.skip("this machine has /etc/aegir/hosts.yml")
    with pytest.raises(InventoryError, match=r"no inventory found \(looked for --inventory, \$AEGIR_INVENTORY, ./hosts.yml, /etc/aegir/hosts.yml\)"):
        load()


def test_sections_merge_defaults_one_level_deep():
    inv = parse("defaults:\n  fw: {a: 1, b: 2}\nhosts:\n  h: {fw: {b: 3}}\n")
    assert dict(inv.hosts[0].section("fw")) == {"a": 1, "b": 3}
    assert dict(inv.hosts[0].section("update")) == {}


def test_srv_paths_are_built_under_the_hosts_srv():
    assert Host("h", srv="/data").srv_path("apps", "x") == "/data/apps/x"
    assert Host("h").srv_path() == "/srv"


#: Values chosen to hurt: control characters, special and zone-id addresses, paths out of /srv, reserved names.
hostile_strings = st.sampled_from([
    "/srv\nExecStartPre=/bin/sh -c id", "/", "", "..", "/srv/../etc", "/srv x", "hyp1\n", "all", "root\n",
    "127.0.0.1", "0.0.0.0", "255.255.255.255", "224.0.0.1", "::1", "::", "ff02::1", "fe80::1%eth0", "::/0",
    "-oProxyCommand=id", "a;b", "a b", "fe80::/64", "\x1b[31m", "\u2028", "2001:db8::/56", "2001:db8::1",
    "192.0.2.1", "/dev/md2", "data", "hyp1.example.org",
])
yaml_scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 70000), st.text(max_size=12), hostile_strings,
                         st.sampled_from(["192.0.2.1", "2001:db8::/56", "2001:db8::1", "local", "/srv", "ssh"]))
yaml_keys = st.one_of(st.sampled_from(["hosts", "defaults", "hyp1", "hyp2", "admin_ipv4", "service_ipv4",
                                       "ipv6_prefix", "admin_ipv6", "service_ipv6", "connection", "port",
                                       "groups", "luks", "device", "name", "fw", "srv", "address", "user",
                                       "docker_start", "all"]), st.text(max_size=6))
yaml_values = st.recursive(yaml_scalars, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                                st.dictionaries(yaml_keys, kids, max_size=5)),
                           max_leaves=25)
host_keys = st.sampled_from(["address", "user", "srv", "groups", "luks", "admin_ipv4", "service_ipv4",
                             "ipv6_prefix", "admin_ipv6", "service_ipv6", "docker_start", "known_hosts", "port"])
host_specs = st.dictionaries(host_keys, st.one_of(hostile_strings, st.lists(hostile_strings, max_size=2),
                                                  st.fixed_dictionaries({}, optional={"device": hostile_strings,
                                                                                      "name": hostile_strings})),
                             max_size=5)
inventories = st.fixed_dictionaries({"hosts": st.dictionaries(st.one_of(hostile_strings, st.sampled_from(["hyp1", "hyp2"])),
                                                              host_specs, min_size=1, max_size=3)})

_WHERE = re.compile(r"fuzz\.yml:[1-9][0-9]*: \S")


def _refused_with_a_line(exc: InventoryError) -> None:
    assert _WHERE.match(str(exc)), str(exc)
    assert "\n" not in str(exc)


def _sound(host: Host) -> None:
    """What a validated host may hold, whatever the text said."""
    for text in (host.name, host.srv, host.address or "x", host.user or "x", host.luks_name, *host.groups,
                 *host.docker_start, host.known_hosts):
        assert text and not re.search(r"[\x00-\x1f\x7f]", text), text
    assert host.srv.startswith("/") and host.srv != "/" and ".." not in host.srv.split("/") and " " not in host.srv
    assert host.name != "all" and "all" not in host.groups
    for a in (host.admin_ipv4, host.admin_ipv6, *host.service_ipv4, *host.service_ipv6):
        if a is not None:
            assert not (a.is_loopback or a.is_unspecified or a.is_multicast or str(a) == "255.255.255.255")
    if host.ipv6_prefix is not None:
        assert host.ipv6_prefix.prefixlen >= 32
    if host.address:
        assert not host.address.startswith("-") and not re.search(r"[\s;%]", host.address)


def _parsed_or_refused(value: object) -> None:
    """The YAML dump of `value` is refused with ``fuzz.yml:LINE: sentence`` or gives sound, distinct hosts."""
    import yaml

    try:
        inv = parse(yaml.safe_dump(value, allow_unicode=True), "fuzz.yml")
    except InventoryError as exc:
        _refused_with_a_line(exc)
        return
    for host in inv:
        _sound(host)
    for broken in inv.broken:
        _refused_with_a_line(broken.error)
    addresses = [(h.address, h.port) for h in inv if h.address]
    assert len(addresses) == len(set(addresses))


@settings(max_examples=300, deadline=None)
@given(yaml_values)
def test_random_structures_never_raise_anything_but_an_inventory_error(value):
    _parsed_or_refused(value)


@settings(max_examples=400, deadline=None)
@given(inventories)
def test_hostile_values_are_refused_with_a_line_or_validated_into_sound_hosts(value):
    _parsed_or_refused(value)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("hosts:{}[]-, \n\t'\"&*!|>%@`#?0123456789abcdefgh.:/\x00\x1b\x85")),
               max_size=80))
def test_random_text_never_raises_anything_but_an_inventory_error(text):
    try:
        parse(text, "fuzz.yml")
    except InventoryError as exc:
        _refused_with_a_line(exc)


@settings(max_examples=12, deadline=None)
@given(inventories)
def test_the_program_refuses_what_the_parser_refuses_with_file_and_line_never_a_traceback(value):
    """``-H zz-none``: an accepted inventory ends in "unknown host", so no host is ever contacted."""
    import tempfile

    import yaml

    from tests.helpers import run_inv

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.yml"
        path.write_text(yaml.safe_dump(value, allow_unicode=True), encoding="utf-8")
        res = run_inv("-H", "zz-none", "disk.report", inventory=path, timeout=20)
        try:
            parse(path.read_text(encoding="utf-8"), str(path))
            expected = "aegir: unknown host or group 'zz-none'"
        except InventoryError as exc:
            expected = f"aegir: {exc}\n"
            assert re.fullmatch(rf"{re.escape(str(path))}:[1-9][0-9]*: [^\n]+", str(exc))
    assert "Traceback" not in res.stderr
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.startswith(expected), (res.stderr, expected)


def test_a_section_names_its_unknown_key_on_its_line_with_a_suggestion():
    from aegir.inventory import parse

    inv = parse("defaults:\n  fw:\n    ssh_port: 22\nhosts:\n  hyp1:\n    address: 192.0.2.10\n"
                "    fw:\n      ssh_prot: 2222\n", "hosts.yml")
    with pytest.raises(InventoryError, match=r"^hosts.yml:8: hyp1: fw: unknown key 'ssh_prot' \(did you mean 'ssh_port'\?\)$"):
        inv.section(inv.get("hyp1"), "fw", ("ssh_port", "admin_sources"))


def test_a_section_error_points_at_the_defaults_line_when_the_host_inherits_the_key():
    from aegir.inventory import parse

    inv = parse("defaults:\n  update:\n    crucial_units: nope\nhosts:\n  hyp1:\n    address: 192.0.2.10\n",
                "hosts.yml")
    sec = inv.section(inv.get("hyp1"), "update", ("crucial_units",))
    assert sec.get("crucial_units") == "nope"
    assert str(sec.fail(("crucial_units",), "must be a list")) == \
        "hosts.yml:3: hyp1: update.crucial_units: must be a list"


def test_a_group_can_roll_its_actions_and_the_most_cautious_group_wins():
    inv = parse(GROUPED + "groups:\n  prod:\n    rolling: {serial: 100%, keep_going: true}\n"
                "  canary:\n    rolling: {serial: 1}\n", "hosts.yml")
    prod = inv.rolling["prod"]
    assert (prod.percent, prod.keep_going, prod.origin) == (100, True, "hosts.yml:6 (group prod)")
    assert inv.rolling_for([inv.get("hyp1")]) == prod
    both = inv.rolling_for(inv.hosts)  # hyp2 is also in canary: one at a time, and it does not keep going
    assert (both.size, both.keep_going, both.origin) == (1, False, "hosts.yml:8 (group canary)")
    assert parse(GROUPED, "hosts.yml").rolling_for(inv.hosts) is None


@pytest.mark.parametrize("serial, total, batches", [("1", 3, [1, 1, 1]), ("2", 3, [2, 1]), ("25%", 5, [2, 2, 1]),
                                                    ("100%", 3, [3]), ("10", 3, [3]), ("1%", 3, [1, 1, 1])])
def test_serial_cuts_the_targets_into_batches(serial, total, batches):
    assert [len(b) for b in parse_serial(serial).batches(list(range(total)))] == batches


@pytest.mark.parametrize("word", ["root@hyp1\n", "hyp1.example.org\n", "root@[2001:db8::1]:22\n"])
def test_a_raw_target_ending_in_a_newline_is_refused(word):
    with pytest.raises(TargetError, match="cannot read target"):
        parse_raw_target(word)


@pytest.mark.parametrize("value", [["/usr/bin/start", ""], ["", "x"], "start ''"])
def test_a_docker_start_with_an_empty_word_is_refused(value):
    """An empty argv word is a mistake in a command line (found by hypothesis: ['/', ''] was accepted)."""
    text = yaml.safe_dump({"hosts": {"h": {"connection": "local", "docker_start": value}}})
    with pytest.raises(InventoryError, match="must name a program first and hold no empty word"):
        parse(text, "hosts.yml").get("h")
