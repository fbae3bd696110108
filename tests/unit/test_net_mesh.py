"""The IPsec mesh's pure parts: the swanctl configuration from hosts.yml (exact text), the traffic selectors
that keep the admin /64 out, the refusal of an SSH path in a tunnel, swanctl's --raw output read, the
commands as exact strings, and net.check's verdict per pair."""

from __future__ import annotations

import ipaddress

import pytest

from aegir import inventory
from aegir.fleet import Outcome
from aegir.net import check, facts, mesh, settings, swanctl
from aegir.net.facts import CheckFacts, Pinged, Probe
from aegir.net.steps import keygen_cmd

INV = inventory.parse("""\
hosts:
  local: {connection: local}
  hyp1:
    admin_ipv4: 192.0.2.11
    ipv6_prefix: 2001:db8:0:100::/56
    admin_ipv6: 2001:db8:0:100::1
  hyp2:
    admin_ipv4: 192.0.2.12
    ipv6_prefix: 2001:db8:0:200::/56
    admin_ipv6: 2001:db8:0:200::1
    mesh: {encap: true, carry: [198.51.100.0/28]}
  hyp3:
    admin_ipv4: 192.0.2.13
    ipv6_prefix: 2001:db8:0:300::/56
    admin_ipv6: 2001:db8:0:300::1
    mesh: {member: false}
""")
MEMBERS = settings.members(INV)
PEM = "-----BEGIN PUBLIC KEY-----\n" + "A" * 64 + "\n" + "B" * 20 + "==\n-----END PUBLIC KEY-----\n"

HYP2_CONF = """\
# aegir net.mesh: the IPsec mesh of hyp2, from hosts.yml; every apply rewrites it
connections {
  aegir-hyp1 {
    version = 2
    local_addrs = 2001:db8:0:200::1, 192.0.2.12
    remote_addrs = 2001:db8:0:100::1, 192.0.2.11
    proposals = aes256-sha256-modp3072
    encap = yes
    dpd_delay = 10s
    keyingtries = 0
    local {
      auth = pubkey
      id = hyp2
      pubkeys = aegir-hyp2.pub
    }
    remote {
      auth = pubkey
      id = hyp1
      pubkeys = aegir-hyp1.pub
    }
    children {
      aegir-hyp1 {
        local_ts = 2001:db8:0:201::/64, 2001:db8:0:202::/63, 2001:db8:0:204::/62, 2001:db8:0:208::/61, \
2001:db8:0:210::/60, 2001:db8:0:220::/59, 2001:db8:0:240::/58, 2001:db8:0:280::/57, 198.51.100.0/28
        remote_ts = 2001:db8:0:101::/64, 2001:db8:0:102::/63, 2001:db8:0:104::/62, 2001:db8:0:108::/61, \
2001:db8:0:110::/60, 2001:db8:0:120::/59, 2001:db8:0:140::/58, 2001:db8:0:180::/57
        esp_proposals = aes256-sha256-modp3072
        start_action = none
        dpd_action = clear
        close_action = none
      }
    }
  }
}
"""


def test_members_are_the_hosts_with_a_prefix_and_an_admin_address_over_ssh():
    assert [h.name for h, _ in MEMBERS] == ["hyp1", "hyp2"]  # local: no SSH; hyp3: member: false


def test_the_second_host_of_a_pair_answers_and_the_first_starts():
    assert mesh.render(MEMBERS[1], MEMBERS) == HYP2_CONF
    first = mesh.render(MEMBERS[0], MEMBERS)
    assert "start_action = start" in first and "dpd_action = restart" in first and "close_action = start" in first
    assert "encap = yes" in first  # either end asking for UDP encapsulation sets it on both


def test_the_tunnels_carry_the_prefix_less_the_admin_64():
    nets = mesh.carried(*MEMBERS[0])
    assert ipaddress.ip_address("2001:db8:0:100::1") not in ipaddress.ip_network("2001:db8:0:100::/64")  \
        or all(ipaddress.ip_address("2001:db8:0:100::1") not in n for n in nets)
    assert sum(n.num_addresses for n in nets) == 2 ** 72 - 2 ** 64  # the whole /56 but one /64
    assert mesh.unsafe(MEMBERS[0], MEMBERS) == ()


def test_a_tunnel_holding_an_admin_address_or_the_operators_session_is_unsafe():
    bad = inventory.parse("""\
hosts:
  hyp1: {admin_ipv4: 192.0.2.11, ipv6_prefix: '2001:db8:0:100::/56', admin_ipv6: '2001:db8:0:100::1',
         mesh: {carry: [192.0.2.0/24]}}
  hyp2: {admin_ipv4: 192.0.2.12, ipv6_prefix: '2001:db8:0:200::/56', admin_ipv6: '2001:db8:0:200::1'}
""")
    members = settings.members(bad)
    operator = (ipaddress.ip_address("2001:db8:0:2aa::7"), ipaddress.ip_address("2001:db8:0:200::1"))
    assert mesh.unsafe(members[1], members, operator) == (
        "traffic selector 192.0.2.0/24 (hyp1's) holds hyp1's admin address 192.0.2.11",
        "traffic selector 192.0.2.0/24 (hyp1's) holds hyp2's admin address 192.0.2.12",
        "traffic selector 2001:db8:0:280::/57 (hyp2's) holds the operator's SSH session (2001:db8:0:2aa::7)",
    )


def test_the_plan_is_empty_when_files_and_loaded_connections_match():
    pubkeys = {"hyp1": PEM, "hyp2": PEM}
    files = {mesh.CONF: HYP2_CONF, mesh.pubkey_path("hyp1"): PEM, mesh.pubkey_path("hyp2"): PEM}
    same = mesh.plan(MEMBERS[1], MEMBERS, pubkeys, files, ["aegir-hyp1"])
    assert not same.todo
    assert mesh.plan(MEMBERS[1], MEMBERS, pubkeys, files, []).todo  # charon restarted without loading
    fresh = mesh.plan(MEMBERS[1], MEMBERS, pubkeys, {}, [])
    assert fresh.answers == ("aegir-hyp1",)  # hyp1 keeps the pair's SA: hyp2 starts it once after its load
    assert mesh.plan(MEMBERS[0], MEMBERS, pubkeys, {}, []).answers == ()
    assert [f.path for f in fresh.changed] == ["/etc/swanctl/conf.d/aegir-mesh.conf",
                                               "/etc/swanctl/pubkey/aegir-hyp1.pub",
                                               "/etc/swanctl/pubkey/aegir-hyp2.pub"]
    assert fresh.changed[1].diff()[:3] == ["--- /dev/null", "+++ /etc/swanctl/pubkey/aegir-hyp1.pub",
                                           "@@ -0,0 +1,4 @@"]


def test_only_a_pem_public_key_is_taken_from_a_host():
    assert mesh.check_pubkey(PEM) == PEM
    assert mesh.check_pubkey(PEM.replace("PUBLIC", "PRIVATE")) is None
    assert mesh.check_pubkey(PEM + "connections { evil {} }\n") is None
    assert mesh.fingerprint(PEM).startswith("SHA256:")


def test_commands_as_exact_strings():
    assert keygen_cmd().line == (
        "sh -c 'set -e\numask 077\nmkdir -p -- \"$(dirname -- \"$1\")\"\n"
        "pki --gen --type rsa --size \"$2\" --outform pem > \"$1.aegir-new\"\nmv -f -- \"$1.aegir-new\" \"$1\"\n'"
        " sh /etc/swanctl/private/aegir.key 3072")
    assert facts.swanctl_cmd("--list-sas", "--raw").line == "swanctl --list-sas --raw"
    assert facts.ping_cmd(7, "2001:db8::1").line == "nsenter --target 7 --net -- ping -6 -n -c 1 -W 2 2001:db8::1"


def test_parse_pubkey():
    assert facts.parse_pubkey("", 3) is None
    assert facts.parse_pubkey(PEM, 0) == PEM
    with pytest.raises(Exception, match="printed no PEM public key"):
        facts.parse_pubkey("garbage", 0)


RAW_SAS = (
    "list-sa event {aegir-hyp2 {uniqueid=1 version=2 state=ESTABLISHED local-host=2001:db8:0:100::1 "
    "remote-host=2001:db8:0:200::1 remote-id=hyp2 initiator=yes established=12 rekey-time=14177 child-sas "
    "{aegir-hyp2-4 {name=aegir-hyp2 uniqueid=4 reqid=1 state=INSTALLED mode=TUNNEL protocol=ESP encap=yes "
    "bytes-in=208 packets-in=2 bytes-out=312 packets-out=3 install-time=1 local-ts=[2001:db8:0:101::/64 "
    "2001:db8:0:102::/63] remote-ts=[2001:db8:0:201::/64]}}}}\n"
    "list-sa event {aegir-hyp3 {uniqueid=2 version=2 state=CONNECTING remote-host=2001:db8:0:300::1 "
    "child-sas {}}}\n"
    "list-sas reply {}\n"
)


def test_list_sas_raw_is_read():
    sas = swanctl.parse_sas(RAW_SAS)
    assert sas == (
        swanctl.IkeSa("aegir-hyp2", "ESTABLISHED", 12, "2001:db8:0:200::1", (
            swanctl.Child("aegir-hyp2", "INSTALLED", 208, 312, 2, 3, 1),)),
        swanctl.IkeSa("aegir-hyp3", "CONNECTING", None, "2001:db8:0:300::1", ()),
    )
    assert swanctl.parse_conns("list-conn event {aegir-hyp2 {local_addrs=[a b] local-1 {class=public key "
                               "groups=[] certs=[hyp1]} children {}}}\nlist-conns reply {}\n") == ("aegir-hyp2",)
    with pytest.raises(Exception, match="cannot read swanctl"):
        swanctl.parse_raw("list-sa event {x {a=b")


def test_charon_down_is_an_answer():
    down = facts._sas("", "plugin 'x': failed\nconnecting to 'unix:///var/run/charon.vici' failed: "
                          "Connection refused\nError: connecting to 'default' URI failed: Connection refused\n", 1)
    assert down == swanctl.Sas(down="charon does not answer: Error: connecting to 'default' URI failed: "
                                    "Connection refused")


def _sas(conn: str, packets_out: int) -> swanctl.Sas:
    return swanctl.Sas((swanctl.IkeSa(conn, "ESTABLISHED", 30, "", (
        swanctl.Child(conn, "INSTALLED", 100, 200, 1, packets_out),)),))


def test_a_pair_is_up_when_both_ends_hold_the_sa_and_the_ping_went_through_it():
    h1, h2 = INV.get("hyp1"), INV.get("hyp2")
    p1 = Probe("a", ipaddress.IPv6Address("2001:db8:0:101::2"), 11)
    p2 = Probe("b", ipaddress.IPv6Address("2001:db8:0:201::2"), 22)
    read = [Outcome(h1, CheckFacts(_sas("aegir-hyp2", 5), p1)), Outcome(h2, CheckFacts(_sas("aegir-hyp1", 0), p2))]
    assert check.to_ping(read) == {"hyp1": [("hyp2", "2001:db8:0:201::2")]}
    through = {"hyp1": Outcome(h1, Pinged((("hyp2", True),), _sas("aegir-hyp2", 6)))}
    assert check.pairs(read, through) == [check.Pair("hyp1", "hyp2", "up", 30, 100, 200, "yes", 1)]
    around = {"hyp1": Outcome(h1, Pinged((("hyp2", True),), _sas("aegir-hyp2", 5)))}
    [pair] = check.pairs(read, around)
    assert pair.down and pair.reason == ("hyp2's container b (2001:db8:0:201::2) answered, but not through the SA "
                                         "(its counters did not move): in clear")
    retrying = CheckFacts(swanctl.Sas((swanctl.IkeSa("aegir-hyp2", "CONNECTING"),)), p1)
    stopped = [Outcome(h1, retrying), Outcome(h2, CheckFacts(swanctl.Sas(down="charon does not answer: refused"), p2))]
    assert check.to_ping(stopped) == {}
    assert check.pairs(stopped, {}) == [check.Pair("hyp1", "hyp2", "down",
                                                   reason="hyp2: charon does not answer: refused")]


def test_net_check_report_is_one_row_per_pair_and_follows_the_schema():
    import importlib.resources
    import json

    import jsonschema

    from aegir.net import report

    h1, h2 = INV.get("hyp1"), INV.get("hyp2")
    read = [Outcome(h1, CheckFacts(_sas("aegir-hyp2", 5), None, "Docker is not running")),
            Outcome(h2, error="no answer", kind="unreachable")]
    pairs = check.pairs(read, {})
    out = report.check_report(read, pairs)
    assert out.problems
    assert "hyp1 <-> hyp2" in out.text and "1 of 1 pair(s) down" in out.text
    assert out.data["pairs"][0]["reason"] == "hyp2 could not be read (unreachable: no answer)"
    schema = json.loads(importlib.resources.files("aegir").joinpath("report.schema.json").read_text())
    jsonschema.validate(json.loads(json.dumps(out.data, default=str)), schema)
