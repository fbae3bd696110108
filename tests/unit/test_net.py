"""net.plan's facts parsers (recorded Docker API and `ip -j addr` output) and its pure checks."""

from __future__ import annotations

import ipaddress
import json

from aegir import inventory
from aegir.docker import DockerNetwork
from aegir.net import facts, plan
from aegir.net.facts import ContainerAddress, NetFacts

INV = inventory.parse("""\
hosts:
  hyp1:
    admin_ipv4: 192.0.2.11
    service_ipv4: [192.0.2.111]
    ipv6_prefix: 2001:db8:0:100::/56
    admin_ipv6: 2001:db8:0:100::1
    service_ipv6: [2001:db8:0:100::11]
""")
HYP1 = INV.get("hyp1")
IP_ADDR = json.dumps([
    {"ifname": "lo", "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8}]},
    {"ifname": "eth0", "addr_info": [
        {"family": "inet", "local": "192.0.2.11", "prefixlen": 24},
        {"family": "inet", "local": "192.0.2.111", "prefixlen": 24},
        {"family": "inet6", "local": "2001:db8:0:100::1", "prefixlen": 64},
        {"family": "inet6", "local": "fe80::ae:ff:fe00:1", "prefixlen": 64}]},
])
NETWORKS = [  # GET /networks, trimmed
    {"Name": "bridge", "IPAM": {"Config": [{"Subnet": "172.18.1.0/24", "Gateway": "172.18.1.1"},
                                           {"Subnet": "2001:db8:0:101::/64"}]}},
    {"Name": "host", "IPAM": {"Config": []}},
    {"Name": "stray", "IPAM": {"Config": [{"Subnet": "172.30.1.0/24"}, {"Subnet": "2001:db8:0:f000::/64"}]}},
]
CONTAINERS = [  # GET /containers/json, trimmed
    {"Names": ["/web"], "NetworkSettings": {"Networks": {"bridge": {
        "IPAddress": "172.18.1.2", "GlobalIPv6Address": "2001:db8:0:101::2"}}}},
    {"Names": ["/odd"], "NetworkSettings": {"Networks": {"stray": {
        "IPAddress": "172.30.1.2", "GlobalIPv6Address": "2001:db8:0:f000::2"}}}},
    {"Names": ["/hostnet"], "NetworkSettings": {"Networks": {"host": {"IPAddress": "", "GlobalIPv6Address": ""}}}},
]


def test_parsers_read_recorded_output():
    assert facts.parse_addresses(IP_ADDR) == frozenset(ipaddress.ip_address(a) for a in (
        "127.0.0.1", "192.0.2.11", "192.0.2.111", "2001:db8:0:100::1", "fe80::ae:ff:fe00:1"))
    assert facts.parse_networks(NETWORKS)[2] == DockerNetwork("stray", subnets=(
        ipaddress.ip_network("172.30.1.0/24"), ipaddress.ip_network("2001:db8:0:f000::/64")))
    assert facts.parse_containers(CONTAINERS)[2] == ContainerAddress(
        "web", "bridge", ipaddress.IPv4Address("172.18.1.2"), ipaddress.IPv6Address("2001:db8:0:101::2"))


def problems(rows: list[plan.Row]) -> list[tuple[str, str | None]]:
    return [(r.role, r.problem) for r in rows if r.problem]


def test_what_lies_outside_the_prefix_and_a_missing_twin_are_problems():
    got = plan.rows(HYP1, NetFacts(facts.parse_addresses(IP_ADDR), True, facts.parse_networks(NETWORKS),
                                   facts.parse_containers(CONTAINERS)))
    assert problems(got) == [
        ("service 1", "service IPv6 2001:db8:0:100::11 (twin of 192.0.2.111) is not configured on the host"),
        ("network stray", "Docker network 'stray': IPv6 subnet 2001:db8:0:f000::/64 is outside the host's prefix "
                          "2001:db8:0:100::/56: recreate it with a subnet of the prefix (for the networks Docker "
                          "creates: daemon.json's \"default-address-pools\")"),
        ("container odd", "container 'odd': global IPv6 2001:db8:0:f000::2 is outside the host's prefix "
                          "2001:db8:0:100::/56"),
    ]
    assert [r.role for r in got] == ["admin", "service 1", "network bridge", "network host", "network stray",
                                     "container odd", "container web"]


def test_a_host_as_planned_has_no_problem():
    have = frozenset({*facts.parse_addresses(IP_ADDR), ipaddress.ip_address("2001:db8:0:100::11")})
    got = plan.rows(HYP1, NetFacts(have, True, facts.parse_networks(NETWORKS[:2]),
                                   facts.parse_containers(CONTAINERS[:1])))
    assert problems(got) == []


def test_without_docker_the_rows_say_it_was_not_checked():
    got = plan.rows(HYP1, NetFacts(frozenset(), False))
    assert got[-1].note == "Docker is not running: its networks and containers were not checked"
    assert problems(got) == [("service 1", "not configured on the host: 192.0.2.111, 2001:db8:0:100::11")]


def test_overlapping_prefixes_are_a_problem():
    a = HYP1
    b = inventory.Host("hyp2", ipv6_prefix=ipaddress.IPv6Network("2001:db8:0:180::/57"))
    assert [r.problem for r in plan.overlaps([a, b])] == [
        "ipv6_prefix 2001:db8:0:180::/57 overlaps hyp1's 2001:db8:0:100::/56"]


def test_a_host_without_a_prefix_is_noted_and_its_ipv6_subnets_are_problems():
    bare = inventory.Host("local", connection="local")
    got = plan.rows(bare, NetFacts(frozenset(), True, facts.parse_networks(NETWORKS[:1]), ()))
    assert got[0].note == "no ipv6_prefix in hosts.yml"
    assert problems(got) == [("network bridge", "Docker network 'bridge': IPv6 subnet 2001:db8:0:101::/64 is on a "
                                                "host without ipv6_prefix in hosts.yml")]


def test_the_json_is_the_envelope_with_the_fleets_table_and_problems():
    from aegir.fleet import Outcome
    from aegir.net import report

    b = inventory.Host("hyp2")
    got = report.data([Outcome(HYP1, NetFacts(frozenset(), False)), Outcome(b, None, "cannot connect", "unreachable")])
    assert (got["task"], got["dry"]) == ("net.plan", None)
    assert got["hosts"] == [{"host": "hyp1", "status": "ok", "error": None, "docker": False, "problems": 1},
                            {"host": "hyp2", "status": "unreachable", "error": "cannot connect", "docker": None,
                             "problems": 0}]
    assert got["summary"] == {"hosts": 2, "rows": 4, "problems": 1}
    assert got["problems"] == [{"host": "hyp1", "role": "service 1",
                                "problem": "not configured on the host: 192.0.2.111, 2001:db8:0:100::11"}]
    assert [r.role for r in got["rows"]] == ["admin", "service 1", "docker", "admin"]
