"""SSH to the admin addresses is never dropped: the evaluator, and a proof on many generated inputs.

The generated rulesets are loaded by the real nft into a scratch network
namespace (``unshare -n``) and read back as nft's JSON, so what is checked is
what the kernel accepted, not the template's text.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aegir import inventory
from aegir.fw import plan as fwplan
from aegir.fw import render
from aegir.fw.model import parse_container
from aegir.fw.safety import ACCEPT, DNAT, DROP, Packet, Ruleset, evaluate, ssh_problems
from aegir.fw.settings import for_host

ip = ipaddress.ip_address
needs_nft = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("unshare"),
                               reason="loading a ruleset needs root, nft and unshare (a scratch netns)")


def loaded(text: str) -> Ruleset:
    """`text` applied by nft in a throwaway network namespace, read back as JSON."""
    done = subprocess.run(["unshare", "-n", "sh", "-c", "nft -f - && nft -s -j list table inet aegir"],
                          input=text, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, f"nft rejected the ruleset:\n{done.stderr}"
    return Ruleset.from_json(json.loads(done.stdout))


def kinds(outcomes) -> set[str]:
    return {o.kind for o in outcomes}


def rs_of(*rules: list, policy: str = "drop", hook: str = "input", sets: tuple = ()) -> Ruleset:
    """A hand-written one-chain ruleset in nft's JSON shape."""
    items: list = [{"chain": {"family": "inet", "table": "t", "name": "c", "type": "filter", "hook": hook,
                              "prio": 0, "policy": policy}}]
    items += [{"chain": {"family": "inet", "table": "t", "name": "sub"}}]
    items += [{"set": {"family": "inet", "table": "t", **s}} for s in sets]
    items += [{"rule": {"family": "inet", "table": "t", "chain": chain, "expr": expr}} for chain, expr in rules]
    return Ruleset.from_json({"nftables": items})


def match(left: dict, right, op: str = "==") -> dict:
    return {"match": {"op": op, "left": left, "right": right}}


DPORT = {"payload": {"protocol": "tcp", "field": "dport"}}
DADDR = {"payload": {"protocol": "ip", "field": "daddr"}}
SADDR6 = {"payload": {"protocol": "ip6", "field": "saddr"}}
IIF = {"meta": {"key": "iifname"}}
SSH = Packet(ip("203.0.113.5"), ip("192.0.2.11"), 22)


# --------------------------------------------------------------------------- the evaluator


def test_a_matching_accept_accepts_and_the_policy_catches_the_rest():
    rs = rs_of(("c", [match(DPORT, 22), {"accept": None}]))
    assert kinds(evaluate(rs, SSH, "input")) == {ACCEPT}
    assert kinds(evaluate(rs, Packet(SSH.saddr, SSH.daddr, 80), "input")) == {DROP}


def test_a_drop_that_may_match_is_a_problem_even_if_an_accept_follows():
    rs = rs_of(("c", [match(IIF, "eth9"), {"drop": None}]), ("c", [match(DPORT, 22), {"accept": None}]))
    assert kinds(evaluate(rs, SSH, "input")) == {DROP}


def test_an_accept_that_may_match_does_not_prove_anything():
    rs = rs_of(("c", [match(IIF, "eth0"), {"accept": None}]))
    assert kinds(evaluate(rs, SSH, "input")) == {DROP}


def test_a_rule_for_another_family_or_protocol_cannot_match():
    rs = rs_of(("c", [match(SADDR6, "::/0"), {"drop": None}]),
               ("c", [match({"payload": {"protocol": "udp", "field": "dport"}}, 22), {"drop": None}]),
               ("c", [{"accept": None}]))
    assert kinds(evaluate(rs, SSH, "input")) == {ACCEPT}


def test_named_sets_prefixes_ranges_and_concatenations_are_looked_up():
    sets = ({"name": "nets", "type": "ipv4_addr", "elem": [{"prefix": {"addr": "192.0.2.0", "len": 24}}]},
            {"name": "svc", "type": ["ipv4_addr", "inet_proto", "inet_service"],
             "elem": [{"concat": ["192.0.2.11", "tcp", {"range": [20, 25]}]}]})
    concat = {"concat": [DADDR, {"meta": {"key": "l4proto"}}, {"payload": {"protocol": "th", "field": "dport"}}]}
    rs = rs_of(("c", [match(DADDR, "@nets"), match(concat, "@svc"), {"accept": None}]), sets=sets)
    assert kinds(evaluate(rs, SSH, "input")) == {ACCEPT}
    assert kinds(evaluate(rs, Packet(SSH.saddr, SSH.daddr, 26), "input")) == {DROP}


def test_jumps_return_and_goto_follow_nft():
    back = rs_of(("c", [{"jump": {"target": "sub"}}]), ("sub", [{"return": None}]), ("c", [{"accept": None}]))
    assert kinds(evaluate(back, SSH, "input")) == {ACCEPT}
    gone = rs_of(("c", [{"goto": {"target": "sub"}}]), ("c", [{"accept": None}]))  # sub falls off: chain ends
    assert kinds(evaluate(gone, SSH, "input")) == {DROP}
    dropped = rs_of(("c", [{"jump": {"target": "sub"}}]), ("sub", [match(DPORT, 22), {"drop": None}]),
                    ("c", [{"accept": None}]))
    assert kinds(evaluate(dropped, SSH, "input")) == {DROP}


def test_an_unknown_statement_may_do_anything():
    rs = rs_of(("c", [{"queue": {"num": 1}}]), ("c", [{"accept": None}]))
    assert kinds(evaluate(rs, SSH, "input")) == {"unknown"}


def test_ct_state_flags_are_matched_as_nft_does():
    state = {"ct": {"key": "state"}}
    rs = rs_of(("c", [match(state, ["established", "related"], "in"), {"accept": None}]))
    assert kinds(evaluate(rs, Packet(SSH.saddr, SSH.daddr, 22, ct_state="established"), "input")) == {ACCEPT}
    assert kinds(evaluate(rs, SSH, "input")) == {DROP}


# --------------------------------------------------------------------------- real rulesets

DATA = Path(__file__).parent / "data"


def ruleset_for(containers: list[dict], fw: str = "{}", template: render.Template | None = None):
    data = yaml.safe_load((DATA / "fw_hosts.yml").read_text())
    data["hosts"]["hyp1"]["fw"] = yaml.safe_load(fw)
    inv = inventory.parse(yaml.safe_dump(data))
    host = inv.get("hyp1")
    fw_ = fwplan.firewall(host, for_host(inv, host), [parse_container(c) for c in containers], template=template)
    return fw_, loaded(fw_.text)


def web(host_ip: str, host_port: int, port: int = 80) -> dict:
    b = {f"{port}/tcp": [{"HostIp": host_ip, "HostPort": str(host_port)}]}
    return {"Id": "w", "Name": "/web", "State": {"Running": True}, "HostConfig": {"PortBindings": b},
            "NetworkSettings": {"Ports": b, "Networks": {"bridge": {
                "IPAddress": "172.18.1.2", "GlobalIPv6Address": "2001:db8:0:101::2"}}}}


@needs_nft
def test_the_shipped_ruleset_accepts_ssh_publishes_ports_and_guards_the_rest():
    fw, rs = ruleset_for([web("", 8080), web("198.51.100.101", 22, 2222)])
    assert ssh_problems(rs, fwplan.ssh_packets(fw.host, fw.settings)) == []
    internet = ip("203.0.113.5")
    assert kinds(evaluate(rs, Packet(internet, ip("198.51.100.101"), 8080), "prerouting")) == {DNAT}
    assert kinds(evaluate(rs, Packet(internet, ip("198.51.100.101"), 22), "prerouting")) == {DNAT}
    assert kinds(evaluate(rs, Packet(internet, ip("198.51.100.11"), 22), "prerouting")) == {ACCEPT}
    # IPv4 reaches a container only through the dnat maps: DNATed, forwarded; straight to it, dropped
    assert kinds(evaluate(rs, Packet(internet, ip("172.18.1.2"), 80, dnat=True), "forward")) == {ACCEPT}
    assert kinds(evaluate(rs, Packet(internet, ip("172.18.1.2"), 80), "forward")) == {DROP}
    assert DROP in kinds(evaluate(rs, Packet(internet, ip("2001:db8:0:101::2"), 81), "forward"))
    assert kinds(evaluate(rs, Packet(internet, ip("198.51.100.11"), 80), "input")) == {DROP}


@needs_nft
def test_a_template_that_drops_ssh_is_caught():
    text = render.packaged().source.replace("# SSH to the admin addresses comes first",
                                            "tcp dport 22 drop\n\t\t#")
    fw, rs = ruleset_for([], template=render.Template(text, "bad.j2"))
    problems = ssh_problems(rs, fwplan.ssh_packets(fw.host, fw.settings))
    assert problems and all("could be dropped by chain input, rule 1" in p for p in problems if "reply" not in p)


@needs_nft
def test_a_template_that_redirects_ssh_is_caught():
    text = render.packaged().source.replace("dnat ip to ip daddr", "tcp dport 22 dnat ip to 172.18.1.2\n\t\tdnat ip to ip daddr")
    fw, rs = ruleset_for([], template=render.Template(text, "bad.j2"))
    assert any("redirected (DNAT) by chain prerouting, rule 1" in p
               for p in ssh_problems(rs, fwplan.ssh_packets(fw.host, fw.settings)))


# --------------------------------------------------------------------------- generated inputs

v4 = st.integers(1, 250).map(lambda i: f"198.51.100.{i}")
v6 = st.integers(1, 0xFFFF).map(lambda i: f"2001:db8:0:100::{i:x}")
ports = st.sampled_from([22, 2222, 80, 443, 8080, 53]) | st.integers(1, 65535)
host_ports = st.sampled_from([22, 2222, 80, 443]) | ports  # often the SSH port
often = st.sampled_from([True, True, True, False])


@st.composite
def hosts(draw):
    """An inventory host (admin and service addresses, some absent) and its fw: section."""
    admin4, *service4 = draw(st.lists(v4, min_size=2, max_size=3, unique=True))
    admin6, *service6 = draw(st.lists(v6, min_size=1 + len(service4), max_size=1 + len(service4), unique=True))
    lines = ["hosts:", "  hyp1:", "    ipv6_prefix: 2001:db8:0:100::/56"]
    if draw(often):
        lines.append(f"    admin_ipv4: {admin4}")
    if draw(often):
        lines.append(f"    admin_ipv6: '{admin6}'")
    lines += [f"    service_ipv4: {service4}", f"    service_ipv6: {service6}"]
    if draw(st.sampled_from([False, False, True])):  # aegir may reach the host on a service address
        lines.append(f"    address: {draw(st.sampled_from(service4))}")
    fw = {"ssh_port": draw(st.sampled_from([22, 2222]))}
    sources = draw(st.lists(st.sampled_from(["203.0.113.0/24", "192.0.2.7", "2001:db8:ff::/48", "10.0.0.0/8"]),
                            max_size=3))
    if sources:
        fw["admin_sources"] = sources
    fw["input"] = draw(st.lists(st.sampled_from(["tcp/9100 from 192.0.2.0/24", "udp/51820", "tcp/22"]),
                                max_size=3, unique=True))
    fw["output"] = draw(st.lists(st.sampled_from(["udp/53", "tcp/443", "tcp/22", "tcp/25 to 192.0.2.25"]),
                                 max_size=4, unique=True))
    lines.append(f"    fw: {json.dumps(fw)}")
    lines += ["  hyp2:", "    admin_ipv4: 192.0.2.99"]
    inv = inventory.parse("\n".join(lines) + "\n")
    return inv, inv.get("hyp1"), admin4, admin6, service4, service6


@st.composite
def containers(draw, addresses: list[str]):
    """Running and stopped containers publishing anywhere: service, admin, foreign, loopback, every address."""
    out = []
    for i in range(draw(st.integers(0, 6))):
        bindings: dict = {}
        for _ in range(draw(st.integers(0, 4))):
            key = f"{draw(ports)}/{draw(st.sampled_from(['tcp', 'tcp', 'udp']))}"
            host_ip = draw(st.sampled_from(["", "0.0.0.0", "::", "127.0.0.1", *addresses]))
            bindings.setdefault(key, []).append({"HostIp": host_ip, "HostPort": str(draw(host_ports))})
        out.append({"Id": f"c{i}", "Name": f"/c{i}", "State": {"Running": draw(often)},
                    "HostConfig": {"PortBindings": bindings},
                    "NetworkSettings": {"Ports": bindings, "Networks": {"bridge": {
                        "IPAddress": f"172.18.1.{i + 2}",
                        "GlobalIPv6Address": draw(st.sampled_from(["", *[f"2001:db8:0:101::{i + 2}"] * 3]))}}}})
    return out


@needs_nft
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_no_generated_input_renders_a_ruleset_that_drops_ssh(data):
    inv, host, admin4, admin6, service4, service6 = data.draw(hosts())
    addresses = [admin4, admin6, *service4, *service6, "203.0.113.9"]
    cs = [parse_container(c) for c in data.draw(containers(addresses))]
    settings_ = for_host(inv, host)
    fw = fwplan.firewall(host, settings_, cs)
    rs = loaded(fw.text)  # nft accepts every generated ruleset
    assert ssh_problems(rs, fwplan.ssh_packets(host, settings_)) == []
    for e in fw.exposures.items:  # and the check is not vacuous: published ports are DNATed
        assert kinds(evaluate(rs, Packet(ip("203.0.113.5"), e.host_addr, e.host_port, proto=e.proto),
                              "prerouting")) == {DNAT}


# --------------------------------------------------------------------------- hostile templates, whole ruleset


def loaded_all(text: str) -> Ruleset:
    """`text` applied by nft in a throwaway network namespace, the WHOLE ruleset read back as JSON."""
    done = subprocess.run(["unshare", "-n", "sh", "-c", "nft -f - && nft -s -j list ruleset"],
                          input=text, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, f"nft rejected the ruleset:\n{done.stderr}"
    return Ruleset.from_json(json.loads(done.stdout))


def hostile(first_rule: str = "", extra: str = "", inv_text: str | None = None) -> tuple[str, list]:
    inv = inventory.parse(inv_text or (Path(__file__).parent / "data" / "fw_hosts.yml").read_text())
    host = inv.get("hyp1")
    s = for_host(inv, host)
    text = fwplan.firewall(host, s, []).text
    marker = "# SSH to the admin addresses comes first: no later rule can drop it"
    assert marker in text
    return text.replace(marker, first_rule) + extra, fwplan.ssh_packets(host, s)


NO_SOURCES = "hosts:\n  hyp1:\n    admin_ipv4: 198.51.100.11\n    admin_ipv6: 2001:db8:0:100::1\n" \
             "    ipv6_prefix: 2001:db8:0:100::/56\n"


@needs_nft
@pytest.mark.parametrize("rule,extra,inv_text", [
    ("", "table ip other {\n\tchain input {\n\t\ttype filter hook input priority -500; policy drop;\n\t}\n}\n",
     None),
    ("", "table ip6 other {\n\tchain out {\n\t\ttype filter hook output priority 0; policy drop;\n\t}\n}\n", None),
    ("tcp dport 22 ip saddr != 203.0.113.77 drop", "", NO_SOURCES),  # "drop SSH unless from 203.0.113.77"
    ("tcp dport 22 ip saddr != 203.0.113.77 drop", "", None),  # ... with admin_sources 203.0.113.0/24
    ("tcp dport 22 tcp sport != 50022 drop", "", None),  # "unless source port 50022"
    ("tcp dport 22 ip saddr @ban drop", "", None),  # a ban set, empty now, filled at runtime
    ("tcp dport 22 ip saddr @ban drop", "", NO_SOURCES),
    ("tcp dport 22 ct state new update @ban { ip saddr limit rate over 3/minute } ip saddr @ban drop", "", None),
])
def test_a_template_that_may_drop_ssh_in_any_table_or_from_some_source_is_found(rule, extra, inv_text):
    text, packets = hostile(rule, extra, inv_text)
    if "@ban" in rule:  # the set the template declares, empty now and filled later
        text = text.replace("\tchain input {", "\tset ban {\n\t\ttype ipv4_addr\n\t\tflags dynamic\n\t\tsize 1024\n\t}\n\n"
                                               "\tchain input {", 1)
    problems = ssh_problems(loaded_all(text), packets)
    assert problems, "this ruleset can drop SSH"


@needs_nft
def test_the_packaged_ruleset_passes_the_whole_ruleset_proof():
    text, packets = hostile("")
    assert ssh_problems(loaded_all(text), packets) == []
    text, packets = hostile("", inv_text=NO_SOURCES)
    assert ssh_problems(loaded_all(text), packets) == []


def kernel_answer(text: str, packets: list, tmp_path: Path) -> list[str]:
    """`nft.prove_cmd` run here as on a host: real SSH connections through `text` in a scratch netns."""
    from aegir.fw import knock, nft
    from aegir.fw.safety import Peer

    path = tmp_path / "candidate.nft"
    path.write_text(text)
    admins = sorted({str(p.daddr) for p in packets if not p.outbound})
    peers = {p.saddr.version: p.saddr.nets for p in packets if isinstance(p.saddr, Peer)}
    cmd = nft.prove_cmd(str(path), text, 22, admins, knock.sources(peers, {}))
    done = subprocess.run(cmd.argv, input=cmd.stdin, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    listing, answer = nft.parse_proof(done.stdout)
    assert listing["nftables"]
    return knock.problems(answer, 22)


def proof_of(fw, tmp_path: Path, text: str) -> tuple[Ruleset, list[str]]:
    """`nft.prove_cmd` of `fw`'s candidate, loading `text`, run here as on a host: what the evaluator reads,
    and the knock's problems."""
    from aegir.fw import knock, nft

    path = tmp_path / "candidate.nft"
    path.write_text(fw.text)
    port, admins, tried = fwplan.proof_args(fwplan.ssh_packets(fw.host, fw.settings))
    cmd = nft.prove_cmd(str(path), text, port, admins, tried)
    done = subprocess.run(cmd.argv, input=cmd.stdin, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    listing, answer = nft.parse_proof(done.stdout)
    return Ruleset.from_json(listing), knock.problems(answer, port)


@needs_nft
@pytest.mark.skipif(not shutil.which("python3") or not shutil.which("nsenter"), reason="needs python3 and nsenter")
def test_the_proof_leaves_out_the_container_elements_the_model_checked_and_nothing_else(tmp_path):
    from tests.unit.test_fw_render import HOST, SETTINGS, containers

    fw = fwplan.firewall(HOST, SETTINGS, containers())
    text = fwplan.proof_text(fw)
    # every line where it was (nft's file:line in an error is the candidate's), the checked elements blank
    assert len(text.split("\n")) == len(fw.text.split("\n"))
    assert " . tcp . 8080 : 172.30.0.2 . 80" in fw.text and " . tcp . 8080 : " not in text
    assert [a for a, b in zip(fw.text.split("\n"), text.split("\n")) if a != b and b]  == []
    rs, knocked = proof_of(fw, tmp_path, text)
    assert knocked == [] and ssh_problems(rs, fwplan.ssh_packets(fw.host, fw.settings)) == []
    for name in ("dnat4", "dnat6", "exposed6"):  # the container sets: their checked elements left out
        assert not rs.sets[f"inet aegir {name}"].get("elem"), name
    whole, _ = proof_of(fw, tmp_path, fw.text)
    assert len(whole.sets["inet aegir dnat4"]["elem"]) > 5
    for name in ("admin4", "admin6", "in4", "out4"):  # the other sets: all there
        assert rs.sets[f"inet aegir {name}"].get("elem") == whole.sets[f"inet aegir {name}"].get("elem"), name
    assert rs.sets["inet aegir admin4"]["elem"]


def test_blanking_elements_keeps_every_line_where_it_was_and_no_empty_block():
    from aegir.fw import delta

    text = ("table inet aegir {\n\tset a {\n\t\ttype ipv4_addr\n\t\telements = {\n\t\t\t10.0.0.1,  # web\n"
            "\n\t\t\t10.0.0.2\n\t\t}\n\t}\n\tset b {\n\t\telements = {\n\t\t\t10.0.0.1,\n\t\t\t10.0.0.3, 10.0.0.4,\n"
            "\t\t}\n\t}\n\tchain c {\n\t\tip saddr 10.0.0.1 accept\n\t}\n}\n")
    # a's block loses both elements: the block goes (nft refuses `elements = { }`); b keeps the line
    # `shape` reads as structure (two elements on one line); the rule naming the address is no element
    assert delta.blanked(text, {"a": ["10.0.0.1", "10.0.0.2"], "b": ["10.0.0.1", "10.0.0.3"]}) == (
        "table inet aegir {\n\tset a {\n\t\ttype ipv4_addr\n\n\n\n\n\n\t}\n\tset b {\n\t\telements = {\n\n"
        "\t\t\t10.0.0.3, 10.0.0.4,\n\t\t}\n\t}\n\tchain c {\n\t\tip saddr 10.0.0.1 accept\n\t}\n}\n")
    assert delta.blanked(text, {"a": ["10.0.0.2"]}).split("\n")[4:8] == ["\t\t\t10.0.0.1,  # web", "", "", "\t\t}"]
    assert delta.blanked(text, {}) == text == delta.blanked(text, {"c": ["10.0.0.1"]})


@needs_nft
def test_nfts_words_about_the_proofs_text_name_the_candidate_and_its_line(tmp_path):
    from aegir.fw import nft
    from tests.unit.test_fw_render import HOST, SETTINGS, containers

    fw = fwplan.firewall(HOST, SETTINGS, containers())
    broken = fw.text.replace("\tchain forward {", "\tchain forward {\n\t\tip saddr 1.2.3 accept", 1)
    line = broken.split("\n").index("\t\tip saddr 1.2.3 accept") + 1
    path = tmp_path / "a|b&c\\d" / "candidate-1.nft"  # what sed's s||| would read as its own
    cmd = nft.prove_cmd(str(path), fwplan.proof_text(dataclasses.replace(fw, text=broken)), 22, ["198.51.100.11"])
    done = subprocess.run(cmd.argv, input=cmd.stdin, capture_output=True, text=True, timeout=60)
    assert done.returncode == nft.NOT_LOADED, done.stderr
    assert done.stderr.startswith(f"{path}:{line}:"), done.stderr
    assert done.stderr.rstrip().endswith("aegir: the ruleset does not load next to the host's other tables")


def test_an_element_the_model_refuses_stays_in_the_proof():
    from tests.unit.test_fw_render import HOST, SETTINGS, containers

    fw = fwplan.firewall(HOST, SETTINGS, containers())
    admin = "198.51.100.11"  # hyp1's admin_ipv4
    evil = f"{admin} . tcp . 22 : 10.9.9.9 . 22"
    text = fw.text.replace(" . tcp . 8080 : 172.30.0.2 . 80", f" . tcp . 8080 : 172.30.0.2 . 80,\n\t\t\t{evil}", 1)
    assert evil in text
    proved = fwplan.proof_text(dataclasses.replace(fw, text=text))
    assert " . tcp . 8080 : 172.30.0.2 . 80" not in proved and f"\t\t\t{evil},  # " in proved

    def checked(element: str) -> bool:
        return element not in fwplan.proof_text(dataclasses.replace(fw, text=text.replace(evil, element)))

    assert checked("198.51.100.101 . tcp . 4444 : 10.9.9.9 . 22")
    for odd in ("198.51.100.010 . tcp . 4444 : 10.9.9.9 . 22", "198.51.100.101 . tcp . 04444 : 10.9.9.9 . 22",
                "198.51.100.101 . tcp . 4444 : 10.9.9.9 . 022"):  # not written as nft writes it back: not checked
        assert not checked(odd), odd


@needs_nft
@pytest.mark.skipif(not shutil.which("python3") or not shutil.which("nsenter"), reason="needs python3 and nsenter")
def test_the_kernel_answers_with_real_packets_from_varied_sources_and_ports(tmp_path):
    text, packets = hostile("")
    assert kernel_answer(text, packets, tmp_path) == []  # the packaged ruleset lets every try in
    text, packets = hostile("tcp dport 22 ip saddr != 203.0.113.1 drop")  # in admin_sources: the last is not
    found = kernel_answer(text, packets, tmp_path)
    assert found and all(p.startswith("SSH from 203.0.113.254 ") and ": dropped (real packets" in p for p in found)
    text, packets = hostile("tcp dport 22 tcp sport != 1022 drop")
    found = kernel_answer(text, packets, tmp_path)
    assert found and not any("(source port 1022)" in p for p in found)


@needs_nft
@pytest.mark.skipif(not os.path.exists("/usr/bin/python3"), reason="needs the host's python3")
def test_the_element_hash_is_the_one_of_every_elements_attributes_written_again(tmp_path):
    """`nft.ELEMENTS_HASH` hashes an element of no left-out attribute as the kernel sent it: the same hash as
    writing every attribute again (what it did before), with elements that carry timeouts and counters too."""
    from aegir.fw import nft
    from tests.unit.test_fw_render import HOST, SETTINGS, containers

    again = nft.ELEMENTS_HASH.replace(
        "for e in elements(v))", "for e in (b\"\".join(attr(t, w) for t, w in attrs(x) if t not in (5, 7, 11))"
                                 " for _, x in attrs(v)))", 1)
    assert again != nft.ELEMENTS_HASH
    (tmp_path / "r.nft").write_text(fwplan.firewall(HOST, SETTINGS, containers()).text)
    (tmp_path / "a.py").write_text(nft.ELEMENTS_HASH)
    (tmp_path / "b.py").write_text(again)
    script = ('nft -f "$1/r.nft" && nft add set inet aegir t "{ type ipv4_addr; flags timeout; counter; }" '
              '&& nft add element inet aegir t "{ 192.0.2.1 timeout 1h, 192.0.2.2 }" '
              '&& for f in a b; do /usr/bin/python3 -I -S "$1/$f.py"; done')
    done = subprocess.run(["unshare", "-n", "sh", "-c", script, "sh", str(tmp_path)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()
    assert first == second and first.startswith("elements ")
