"""The exposures model: `docker inspect` (recorded in the lab, dockerd 20.10) + the host -> what is published."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aegir import inventory
from aegir.errors import AegirError
from aegir.fw.model import Binding, InspectError, bridge_name, bridges_of, expose, load_inspect, parse_container

DATA = Path(__file__).parent / "data"
INVENTORY = (DATA / "fw_hosts.yml").read_text()
HOST = inventory.parse(INVENTORY).get("hyp1")


def recorded() -> list:
    """web (every kind of -p, on appnet + bridge), v4app (IPv4-only network), multi, plain (host net), stopped."""
    return load_inspect((DATA / "fw_inspect_lab.json").read_text(), "fw_inspect_lab.json")


def container(name: str, ports: dict, *, running: bool = True, requested: dict | None = None,
              networks: dict | None = None) -> dict:
    """A `docker inspect` object with just what the model reads."""
    return {
        "Id": f"id-{name}", "Name": f"/{name}", "State": {"Running": running},
        "HostConfig": {"PortBindings": requested if requested is not None else ports},
        "NetworkSettings": {"Ports": ports, "Networks": networks if networks is not None else {
            "bridge": {"IPAddress": "172.18.1.9", "GlobalIPv6Address": "2001:db8:0:101::9"}}},
    }


def lines(exposures) -> list[str]:
    return [str(e) for e in exposures.items]


def test_every_published_binding_of_the_recorded_containers_is_exposed():
    assert lines(expose(recorded(), HOST)) == [
        "web tcp/198.51.100.101:7070->172.30.0.2:70",
        "web tcp/198.51.100.101:8080->172.30.0.2:80",
        "v4app tcp/198.51.100.101:8181->172.17.0.2:81",
        "multi tcp/198.51.100.101:8282->172.30.0.3:82",
        "web tcp/198.51.100.101:9000->172.30.0.2:9000",
        "web tcp/198.51.100.101:9001->172.30.0.2:9001",
        "web tcp/198.51.100.101:9002->172.30.0.2:9002",
        "web udp/198.51.100.101:5353->172.30.0.2:53",
        "web tcp/[2001:db8:0:100::11]:8080->[2001:db8:0:102::2]:80",
        "multi tcp/[2001:db8:0:100::11]:8282->[2001:db8:0:102::3]:82",
        "web tcp/[2001:db8:0:100::11]:8443->[2001:db8:0:102::2]:443",
        "web tcp/[2001:db8:0:100::11]:9000->[2001:db8:0:102::2]:9000",
        "web tcp/[2001:db8:0:100::11]:9001->[2001:db8:0:102::2]:9001",
        "web tcp/[2001:db8:0:100::11]:9002->[2001:db8:0:102::2]:9002",
    ]


def test_a_container_without_ipv6_is_published_on_ipv4_only_and_said_so():
    assert expose(recorded(), HOST).warnings == (
        "v4app: no IPv6 address: tcp/[2001:db8:0:100::11]:8181 is not published",)


def test_recorded_bindings_keep_the_address_intent_of_the_compose_file():
    web = next(c for c in recorded() if c.name == "web")
    assert web.bindings == (
        Binding("tcp", 443, "2001:db8:0:100::11", 8443),  # "[v6]:8443:443"
        Binding("udp", 53, "198.51.100.101", 5353),       # "addr:5353:53/udp"
        Binding("tcp", 60, "127.0.0.1", 6060),            # local only
        Binding("tcp", 70, "0.0.0.0", 7070),              # IPv4 only
        Binding("tcp", 80, "", 8080),                     # "8080:80": every address (0.0.0.0 + :: once running)
        Binding("tcp", 9000, "", 9000), Binding("tcp", 9001, "", 9001), Binding("tcp", 9002, "", 9002),  # a range
    )


def test_stopped_and_host_network_containers_expose_nothing():
    by_name = {c.name: c for c in recorded()}
    assert not by_name["stopped"].running
    assert by_name["plain"].networks[0].name == "host"
    names = {e.container for e in expose(recorded(), HOST).items}
    assert names == {"web", "v4app", "multi"}


def test_a_stopped_container_with_bindings_is_not_published():
    c = parse_container(container("old", {"80/tcp": [{"HostIp": "", "HostPort": "80"}]}, running=False))
    assert c.bindings and expose([c], HOST).items == ()


def test_unspecified_zero_and_double_colon_addresses_pick_the_service_families():
    cs = [parse_container(container(n, {f"{p}/tcp": [{"HostIp": ip, "HostPort": str(p)}]}, requested={}))
          for n, p, ip in (("all", 80, ""), ("v4", 81, "0.0.0.0"), ("v6", 82, "::"))]
    assert lines(expose(cs, HOST)) == [
        "all tcp/198.51.100.101:80->172.18.1.9:80",
        "v4 tcp/198.51.100.101:81->172.18.1.9:81",
        "all tcp/[2001:db8:0:100::11]:80->[2001:db8:0:101::9]:80",
        "v6 tcp/[2001:db8:0:100::11]:82->[2001:db8:0:101::9]:82",
    ]


def test_every_service_address_carries_an_unaddressed_binding():
    two = inventory.parse(INVENTORY.replace("[198.51.100.101]", "[198.51.100.101, 198.51.100.102]")
                          .replace("['2001:db8:0:100::11']", "['2001:db8:0:100::11', '2001:db8:0:100::12']"))
    c = parse_container(container("web", {"443/tcp": [{"HostIp": "", "HostPort": "443"}]}))
    assert [str(e.host_addr) for e in expose([c], two.get("hyp1")).items] == [
        "198.51.100.101", "198.51.100.102", "2001:db8:0:100::11", "2001:db8:0:100::12"]


def test_admin_and_foreign_addresses_are_never_published_and_loopback_silently_skipped():
    c = parse_container(container("sneaky", {
        "22/tcp": [{"HostIp": "198.51.100.11", "HostPort": "22"}],
        "23/tcp": [{"HostIp": "2001:db8:0:100::1", "HostPort": "23"}],
        "24/tcp": [{"HostIp": "203.0.113.9", "HostPort": "24"}],
        "25/tcp": [{"HostIp": "127.0.0.1", "HostPort": "25"}],
    }))
    ex = expose([c], HOST)
    assert ex.items == ()
    assert ex.warnings == (
        "sneaky: tcp/198.51.100.11:22: 198.51.100.11 is the admin address; containers are published on service addresses only",
        "sneaky: tcp/[2001:db8:0:100::1]:23: 2001:db8:0:100::1 is the admin address; containers are published on service addresses only",
        "sneaky: tcp/203.0.113.9:24: 203.0.113.9 is not a service address of this host",
    )


def test_udp_and_sctp_bindings_keep_their_protocol():
    c = parse_container(container("voip", {"3478/udp": [{"HostIp": "", "HostPort": "3478"}],
                                           "5060/sctp": [{"HostIp": "198.51.100.101", "HostPort": "5060"}]}))
    assert [(e.proto, e.host_port) for e in expose([c], HOST).of(4)] == [("sctp", 5060), ("udp", 3478)]


def test_the_same_host_port_twice_keeps_the_first_container_by_name():
    a = parse_container(container("a", {"80/tcp": [{"HostIp": "", "HostPort": "80"}]}))
    b = parse_container(container("b", {"8080/tcp": [{"HostIp": "198.51.100.101", "HostPort": "80"}]}))
    ex = expose([b, a], HOST)
    assert {e.container for e in ex.of(4)} == {"a"}
    assert ex.warnings == ("b: tcp/198.51.100.101:80 is already published by a: kept a's",)


def test_forwarded_targets_are_distinct_container_address_proto_port():
    ex = expose(recorded(), HOST)
    assert (ipaddress.ip_address("172.30.0.2"), "tcp", 80) in ex.targets(4)
    assert len(ex.targets(4)) == len(set(ex.targets(4))) == 8


def test_a_host_without_service_addresses_publishes_nothing_and_says_why():
    bare = inventory.parse("hosts:\n  local:\n    connection: local\n").get("local")
    ex = expose(recorded(), bare)
    assert ex.items == ()
    assert "web: tcp/*:8080: the host has no service address to publish it on" in ex.warnings


def test_an_ipv4_only_binding_stays_ipv4_only_next_to_an_unaddressed_one_of_the_same_port():
    # -p 0.0.0.0:80:80 -p 8080:80: Docker reports 0.0.0.0:80, 0.0.0.0:8080 and :::8080
    c = parse_container(container("v4web", {"80/tcp": [
        {"HostIp": "0.0.0.0", "HostPort": "80"}, {"HostIp": "0.0.0.0", "HostPort": "8080"},
        {"HostIp": "::", "HostPort": "8080"}]}, requested={"80/tcp": [
            {"HostIp": "0.0.0.0", "HostPort": "80"}, {"HostIp": "", "HostPort": "8080"}]}))
    assert lines(expose([c], HOST)) == ["v4web tcp/198.51.100.101:80->172.18.1.9:80",
                                        "v4web tcp/198.51.100.101:8080->172.18.1.9:80",
                                        "v4web tcp/[2001:db8:0:100::11]:8080->[2001:db8:0:101::9]:80"]


def test_ephemeral_host_ports_take_the_port_docker_chose():
    c = parse_container(container("eph", {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "49153"}]},
                                  requested={"80/tcp": [{"HostIp": "", "HostPort": ""}]}))
    assert lines(expose([c], HOST)) == ["eph tcp/198.51.100.101:49153->172.18.1.9:80",
                                        "eph tcp/[2001:db8:0:100::11]:49153->[2001:db8:0:101::9]:80"]


def test_a_saved_inspect_must_be_a_json_array_of_objects():
    with pytest.raises(AegirError, match=r"^x.json:1: not JSON"):
        load_inspect("[{", "x.json")
    with pytest.raises(AegirError, match="expected the array"):
        load_inspect("[1, 2]", "x.json")
    assert [c.name for c in load_inspect(json.dumps(container("one", {})))] == ["one"]


def test_the_address_aegir_connects_to_is_never_published_even_if_it_is_a_service_address():
    via = inventory.parse(INVENTORY.replace("    admin_ipv4: 198.51.100.11", "    address: 198.51.100.101")).get("hyp1")
    c = parse_container(container("sshd2", {"22/tcp": [{"HostIp": "", "HostPort": "22"}]}))
    assert lines(expose([c], via)) == ["sshd2 tcp/[2001:db8:0:100::11]:22->[2001:db8:0:101::9]:22"]
    assert expose([c], via).warnings == (
        "198.51.100.101 is a service address but also where SSH reaches the host: nothing is published on it",)


# --------------------------------------------------------------------------- odd `docker inspect` shapes


ODD = {
    "non-ASCII digits in HostPort": ({"80/tcp": [{"HostIp": "", "HostPort": "٨٠"}]}, "HostPort: '٨٠'"),
    "superscript digits in HostPort": ({"80/tcp": [{"HostIp": "", "HostPort": "8²"}]}, "HostPort: '8²'"),
    "HostPort 0": ({"80/tcp": [{"HostIp": "", "HostPort": "0"}]}, "HostPort: '0' is not a port number"),
    "HostPort above 65535": ({"80/tcp": [{"HostIp": "", "HostPort": "65536"}]}, "HostPort: '65536'"),
    "container port 0": ({"0/tcp": [{"HostIp": "", "HostPort": "80"}]}, "'0' is not a port number"),
    "container port above 65535": ({"99999/tcp": [{"HostIp": "", "HostPort": "80"}]}, "'99999'"),
    "Ports as a list": ([{"80/tcp": [{"HostPort": "80"}]}], "NetworkSettings.Ports: expected an object"),
    "bindings as an object": ({"80/tcp": {"HostPort": "80"}}, "expected a list of bindings"),
    "a binding as a string": ({"80/tcp": ["80"]}, r"\[0\]: expected an object"),
    "HostIp as a number": ({"80/tcp": [{"HostIp": 7, "HostPort": "80"}]}, "HostIp: 7 is not an address"),
    "an unknown protocol": ({"80/icmp": [{"HostPort": "80"}]}, "'80/icmp' is not PORT/tcp"),
    "HostPort as a float": ({"80/tcp": [{"HostPort": 80.0}]}, "HostPort: 80.0"),
}


@pytest.mark.parametrize("ports,message", ODD.values(), ids=ODD.keys())
def test_odd_port_shapes_are_refused_naming_the_container_and_field(ports, message):
    with pytest.raises(InspectError, match=r"^container 'odd': .*" + message):
        parse_container(container("odd", ports, requested={}))


@pytest.mark.parametrize("field,value,message", [
    ("NetworkSettings", [], "NetworkSettings: expected an object, got list"),
    ("State", "running", "State: expected an object"),
    ("HostConfig", 3, "HostConfig: expected an object"),
])
def test_odd_sections_are_refused(field, value, message):
    data = container("odd", {})
    data[field] = value
    with pytest.raises(InspectError, match=message):
        parse_container(data)


def test_an_address_that_is_not_one_is_refused():
    with pytest.raises(InspectError, match=r"Networks\['bridge'\].IPAddress: '300.1.1.1' is not an address"):
        parse_container(container("odd", {}, networks={"bridge": {"IPAddress": "300.1.1.1"}}))


def test_a_running_flag_that_is_not_true_is_not_running():
    data = container("odd", {"80/tcp": [{"HostPort": "80"}]})
    data["State"] = {"Running": "false"}
    assert parse_container(data).running is False


def test_the_ssh_port_is_never_published_where_ssh_may_arrive():
    c = parse_container(container("sshy", {"22/tcp": [{"HostIp": "", "HostPort": "22"}],
                                           "2222/tcp": [{"HostIp": "", "HostPort": "2222"}]}))
    named = inventory.parse("hosts:\n  h:\n    address: hyp.example.net\n    service_ipv4: [192.0.2.10]\n"
                            "    ipv6_prefix: 2001:db8:0:100::/56\n    service_ipv6: ['2001:db8:0:100::11']\n").get("h")
    ex = expose([c], named, ssh_port=22)
    assert {e.host_port for e in ex.items} == {2222}
    assert any("tcp/22 is the SSH port" in w for w in ex.warnings)
    # with admin addresses and an address that is one, SSH arrives there only: a service address may publish 22
    assert 22 in [e.host_port for e in expose([c], HOST, ssh_port=22).items]


def test_bridges_come_from_dockers_networks_not_a_name_pattern():
    assert bridge_name("bridge", "abc") == "docker0"
    assert bridge_name("appnet", "8056d806428f727fdd47") == "br-8056d806428f"
    assert bridge_name("appnet", "8056d806428f", {"com.docker.network.bridge.name": "apps0"}) == "apps0"
    assert bridge_name("x", "1", {"com.docker.network.bridge.name": 'a" } accept'}) is None
    assert bridge_name("host", "1234") is None and bridge_name("y", "") is None
    # web and multi on appnet, v4app on v4only, web on the default bridge; plain's host network is no bridge
    assert bridges_of(recorded()) == ("br-13192109379a", "br-b7bcd27c74fb", "docker0")


# a property test: whatever JSON docker inspect could hold, parsing and rendering raise nothing but AegirError

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-5, 70000), st.floats(allow_nan=True),
                      st.text(max_size=8), st.sampled_from(["80", "0", "65536", "٨٠", "::", "0.0.0.0", "",
                                                            "198.51.100.101", "2001:db8:0:100::11", "80/tcp",
                                                            "x\ny", "172.18.0.2"]))
json_any = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.text(max_size=6), inner, max_size=3), max_leaves=12)
binding = st.fixed_dictionaries({}, optional={"HostIp": json_any, "HostPort": json_any})
port_key = st.one_of(st.sampled_from(["80/tcp", "53/udp", "22/tcp", "0/tcp", "70000/tcp", "٨/tcp", "80"]),
                     st.text(max_size=8))
ports_value = st.one_of(json_any, st.dictionaries(port_key, st.one_of(st.lists(st.one_of(binding, json_any),
                                                                                 max_size=3), json_any), max_size=3))
network = st.one_of(json_any, st.fixed_dictionaries({}, optional={
    "IPAddress": st.one_of(json_any, st.sampled_from(["172.18.0.2", "10.0.0.1"])),
    "GlobalIPv6Address": st.one_of(json_any, st.just("2001:db8:0:101::2")), "NetworkID": json_any}))
inspect_object = st.fixed_dictionaries({}, optional={
    "Id": json_any, "Name": st.one_of(json_any, st.text(max_size=20)),
    "State": st.one_of(json_any, st.fixed_dictionaries({"Running": st.one_of(st.just(True), json_any)})),
    "HostConfig": st.one_of(json_any, st.fixed_dictionaries({"PortBindings": ports_value})),
    "NetworkSettings": st.one_of(json_any, st.fixed_dictionaries({}, optional={
        "Ports": ports_value, "Networks": st.one_of(json_any, st.dictionaries(st.text(max_size=6), network,
                                                                              max_size=2))})),
})


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.lists(inspect_object, max_size=4), json_any))
def test_any_docker_inspect_data_renders_or_is_refused_cleanly(data):
    from aegir.fw import nft
    from aegir.fw import plan as fwplan
    from aegir.fw.settings import for_host

    inv = inventory.parse(INVENTORY)
    try:
        cs = load_inspect(json.dumps(data), "inspect.json")
        text = fwplan.firewall(HOST, for_host(inv, HOST), cs).text
    except AegirError:
        return
    assert nft.foreign_statements(text) == []
    for line in text.splitlines():  # a comment never spills: every line is aegir's, an element or a comment
        assert line.isascii() and "\r" not in line
