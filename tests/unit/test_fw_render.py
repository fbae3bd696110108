"""Rendering: the exposures and settings through the shipped (or the host's) Jinja2 template."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from aegir import inventory
from aegir.fw import nft, render
from aegir.fw import plan as fwplan
from aegir.fw.model import load_inspect, parse_container
from aegir.fw.settings import for_host
from bench.fw import synthetic_inspect

DATA = Path(__file__).parent / "data"
INV = inventory.load(str(DATA / "fw_hosts.yml"))
HOST = INV.get("hyp1")
SETTINGS = for_host(INV, HOST)


def containers():
    return load_inspect((DATA / "fw_inspect_lab.json").read_text())


def rules(text: str) -> list[str]:
    """The rule lines of the ruleset's chains (not set elements, not chain headers)."""
    body = text.split("\tchain input {", 1)[1]
    return [ln.strip() for ln in body.splitlines()
            if ln.startswith("\t\t") and not ln.strip().startswith(("type ", "#", "}"))]


def test_the_recorded_containers_render_to_the_reviewed_ruleset():
    text = fwplan.firewall(HOST, SETTINGS, containers()).text
    assert text == (DATA / "fw_hyp1.nft").read_text()


def test_the_table_is_replaced_in_one_transaction():
    text = fwplan.firewall(HOST, SETTINGS, containers()).text
    body = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert body[:3] == ["table inet aegir {}", "delete table inet aegir", "table inet aegir {"]
    assert text.count("table ") == 3


def test_the_rendering_does_not_depend_on_the_order_docker_lists_containers():
    assert fwplan.firewall(HOST, SETTINGS, containers()).text == fwplan.firewall(HOST, SETTINGS, containers()[::-1]).text


def test_the_rule_count_does_not_grow_with_containers():
    small = fwplan.firewall(HOST, SETTINGS, [parse_container(d) for d in synthetic_inspect(1)]).text
    big = fwplan.firewall(HOST, SETTINGS, [parse_container(d) for d in synthetic_inspect(1000)]).text
    assert rules(small) == rules(big)
    assert len(rules(big)) == 35  # input 14, forward 5, output 12, nat 4
    assert big.count(" : 10.128.") == 3000  # DNAT map elements instead


def test_ssh_to_the_admin_addresses_is_the_first_input_rule():
    assert rules(fwplan.firewall(HOST, SETTINGS, containers()).text)[:2] == [
        "ip daddr @admin4 tcp dport 22 ip saddr @ssh_from4 accept",
        "ip6 daddr @admin6 tcp dport 22 accept",  # no IPv6 admin source given: open to all
    ]


def test_a_host_without_admin_addresses_accepts_ssh_on_any_address():
    local = inventory.parse("hosts:\n  here:\n    connection: local\n    port: 2222\n")
    text = fwplan.firewall(local.get("here"), for_host(local, local.get("here")), []).text
    assert rules(text)[:2] == ["meta nfproto ipv4 tcp dport 2222 accept", "meta nfproto ipv6 tcp dport 2222 accept"]


def test_the_host_template_wins_over_the_shipped_one():
    state = nft.State("table inet aegir { }  # {{ host }} {{ dnat[4] | length }}\n", None, None, nft.ABSENT)
    fw = fwplan.firewall(HOST, SETTINGS, containers(), state)
    assert fw.text == "table inet aegir { }  # hyp1 8\n"
    assert fw.template == "hyp1:/srv/templates/nftables.nft.j2"


def test_a_template_that_does_not_parse_is_reported_at_its_line():
    tpl = render.Template("table inet aegir {\n{% for x in dnat[4] %}\n", "hyp1:/srv/templates/nftables.nft.j2")
    with pytest.raises(render.TemplateError,
                       match=r"^hyp1:/srv/templates/nftables.nft.j2:2: template error: Unexpected end of template"):
        fwplan.firewall(HOST, SETTINGS, containers(), template=tpl)


def test_a_template_using_an_unknown_name_is_reported_at_its_line():
    tpl = render.Template("# ok\n# ok\n{{ exposures_v4 }}\n", "custom.j2")
    with pytest.raises(render.TemplateError, match=r"^custom.j2:3: template error: 'exposures_v4' is undefined"):
        fwplan.firewall(HOST, SETTINGS, containers(), template=tpl)


def test_a_template_that_fails_while_rendering_is_a_template_error_at_its_line():
    # not a jinja2 error: without this, fw.watch died on it and fw.apply called it a bug
    tpl = render.Template("# ok\n{{ dnat[4] + 1 }}\n", "custom.j2")
    with pytest.raises(render.TemplateError, match=r"^custom.j2:2: template error: TypeError: can only concatenate"):
        fwplan.firewall(HOST, SETTINGS, containers(), template=tpl)


def test_warnings_are_comments_at_the_top():
    text = fwplan.firewall(HOST, SETTINGS, containers()).text
    assert re.findall(r"^# warning: .*$", text, re.M) == [
        "# warning: v4app: no IPv6 address: tcp/[2001:db8:0:100::11]:8181 is not published"]


@pytest.mark.parametrize("escape", [
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ lipsum.__globals__['os'].system('id') }}",
    "{% set x = admin[4].append('1.2.3.4') %}",  # immutable: the values handed in cannot be changed either
    "{{ self.__init__.__globals__ }}",
])
def test_a_host_template_that_reaches_outside_its_values_is_refused_and_runs_nothing(escape, tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    monkeypatch.setenv("AEGIR_TEST_MARK", str(marker))
    tpl = render.Template(f"# ok\n{escape.replace('id', 'touch $AEGIR_TEST_MARK')}\n",
                          "hyp1:/srv/templates/nftables.nft.j2")
    with pytest.raises(render.TemplateError, match=r"^hyp1:/srv/templates/nftables.nft.j2:2: template "):
        fwplan.firewall(HOST, SETTINGS, containers(), template=tpl)
    assert not marker.exists()


def test_a_container_name_reaching_a_comment_stays_on_its_line():
    data = json.loads((DATA / "fw_inspect_lab.json").read_text())
    for d in data:
        d["Name"] = "/web\n}\nflush ruleset\ntable ip evil {\r\x0b\u2028é"
    text = fwplan.firewall(HOST, SETTINGS, [parse_container(d) for d in data]).text
    assert "flush ruleset" not in "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith(("#", "1", "2")))
    assert nft.foreign_statements(text) == []
    notes = re.findall(r"#\s*(web.*)$", text, re.M)
    assert notes and all(n.startswith("web?}?flush ruleset?table ip evil {????") for n in notes)


def mixed_inspect(n: int, seed: int) -> list[dict]:
    """`n` containers as ``docker inspect`` prints them, of every kind `expose` tells apart: bindings on no
    address, 0.0.0.0, ::, a service, admin, foreign or loopback address, or not an address; tcp, udp and
    sctp; host ports two containers ask for, the SSH port; no IPv6, no network, stopped; odd names."""
    import random

    rng = random.Random(seed)
    hosts = ["", "", "", "0.0.0.0", "::", "198.51.100.101", "198.51.100.102", "2001:db8:0:100::11",
             "198.51.100.11", "2001:db8:0:100::1", "192.0.2.9", "127.0.0.1", "::1", "[::1]"]
    out = synthetic_inspect(n)
    for i, d in enumerate(out):
        bindings: dict[str, list[dict[str, str]]] = {}
        for k in range(rng.choice([0, 1, 2, 3, 3])):
            host_port = str(rng.choice([22, rng.randint(10000, 10000 + n)] + [rng.randint(20000, 60000)] * 4))
            key = f"{80 + k}/{rng.choice(['tcp', 'tcp', 'udp', 'sctp'])}"
            bindings.setdefault(key, []).append({"HostIp": rng.choice(hosts), "HostPort": host_port})
        d["HostConfig"]["PortBindings"] = bindings
        d["NetworkSettings"]["Ports"] = bindings
        net = d["NetworkSettings"]["Networks"]["bridge"]
        kind = rng.randrange(12)
        if kind == 0:
            net["GlobalIPv6Address"] = ""
        elif kind == 1:
            d["NetworkSettings"]["Networks"] = {}
        elif kind == 2:
            d["State"]["Running"] = False
        elif kind == 3:
            d["Name"] = f"/app{i}\x1b[31m#é\n{{}}"
        elif kind == 4:
            net["IPAddress"] = ""
    return out


@pytest.mark.parametrize(("changes", "digest"), [
    ({}, "2a97b4e94524087e359c69d3cfbd05d5ffdbd2894f086bd6613a36ef0db3cf9d"),
    ({"service_ipv4": ("198.51.100.101", "198.51.100.102")},
     "fb7dce0bfb7a0b0c550b1dfe1648c0ae1110d81d16950e380f071a05917e1ee1"),
    ({"address": "hyp1.example", "admin_ipv4": None, "admin_ipv6": None},
     "f956d6b8cb7bcd91f6ab3001fc87486937cd055e4cc4f1f3e347257b517486a0"),
])
def test_hundreds_of_mixed_containers_render_to_the_reviewed_ruleset(changes: dict, digest: str):
    """The ruleset and the exposures of 400 containers of every kind, byte for byte as reviewed (a sha256:
    rendering is made faster without changing one byte)."""
    import dataclasses
    import hashlib
    import ipaddress

    host = dataclasses.replace(HOST, **{k: tuple(map(ipaddress.ip_address, v)) if isinstance(v, tuple) else v
                                        for k, v in changes.items()})
    fw = fwplan.firewall(host, SETTINGS, [parse_container(d) for d in mixed_inspect(400, seed=23)])
    assert len(fw.exposures.items) > 250 and len(fw.exposures.warnings) > 300
    seen = "\n".join([fw.text, *map(str, fw.exposures.items), *fw.exposures.warnings])
    assert hashlib.sha256(seen.encode("utf-8", "surrogatepass")).hexdigest() == digest


def test_an_address_is_written_as_ipaddress_writes_it():
    """`render.address_text` is ``str()`` of the address, for any address of either family (IPv4 tails,
    zero runs, scope ids included)."""
    import ipaddress

    from hypothesis import given, settings
    from hypothesis import strategies as st

    v6 = st.one_of(st.integers(0, 2**128 - 1), st.integers(0, 2**48 - 1), st.integers(0, 2**32 - 1).map(lambda i: i | (0xffff << 32)),
                   st.lists(st.sampled_from([0, 0, 0, 1, 0xffff]), min_size=8, max_size=8)
                   .map(lambda g: int("".join(f"{x:04x}" for x in g), 16))).map(ipaddress.IPv6Address)
    scoped = st.sampled_from(["fe80::1%eth0", "::ffff:1.2.3.4%1", "2001:db8::1%x"]).map(ipaddress.IPv6Address)

    @settings(max_examples=500, deadline=None)
    @given(st.one_of(st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address), v6, scoped))
    def same(a) -> None:
        assert render.address_text(a) == str(a)

    same()
