"""DNS plan: settings at file:line, a project's x-aegir names, the zones, their text, the check's comparison."""

from __future__ import annotations

import ipaddress
import textwrap

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aegir import inventory
from aegir.compose.discovery import Discovery, Project
from aegir.compose.status import discovery_fact, srv_mounted_fact, srv_not_mounted
from aegir.dns import check, plan, services, steps, zonefile
from aegir.dns import facts as dnsfacts
from aegir.dns import settings as dnssettings
from aegir.dns.services import Name, Publication, Srv
from aegir.errors import InventoryError, UsageError
from aegir.sh import Reply

INV = """\
defaults:
  dns:
    service_domain: tedomum.in
    cname_domain: tedomum.net
    rest_domain: tedomum.org
    nameservers: [hyp1.tedomum.org]
hosts:
  hyp1:
    admin_ipv4: 192.0.2.11
    service_ipv4: [192.0.2.111, 192.0.2.112]
    ipv6_prefix: 2001:db8:0:100::/56
    admin_ipv6: 2001:db8:0:100::1
    service_ipv6: [2001:db8:0:100::11, 2001:db8:0:100::12]
  hyp2:
    admin_ipv4: 192.0.2.12
    service_ipv4: [192.0.2.121]
    ipv6_prefix: 2001:db8:0:200::/56
    admin_ipv6: 2001:db8:0:200::1
    service_ipv6: [2001:db8:0:200::11]
{extra}"""

COMPOSE = """\
services:
  web:
    image: busybox
    ports: ["192.0.2.112:443:443", "[2001:db8:0:100::12]:443:443"]
x-aegir:
  dns:
    names:
      - cloud
      - {name: mail, mx: [mail]}
      - {name: matrix, srv: ["_matrix._tcp:8448"]}
      - {name: bnc, public: false}
"""


PAIR3 = "    service_ipv4: [192.0.2.131]\n    ipv6_prefix: 2001:db8:0:300::/56\n    service_ipv6: ['2001:db8:0:300::11']\n"


def load(extra: str = "") -> tuple[inventory.Inventory, dnssettings.DnsSettings]:
    inv = inventory.parse(INV.format(extra=extra), "hosts.yml")
    return inv, dnssettings.for_inventory(inv)


def project(text: str, folder: str = "cloud") -> Project:
    return Project("apps", folder, f"/srv/apps/{folder}", "docker-compose.yml", compose_text=text)


def error(extra: str) -> str:
    with pytest.raises(InventoryError) as exc:
        load(extra)
    return str(exc.value)


# --------------------------------------------------------------------------- settings


def test_settings_are_absolute_names_with_defaults_filled_in():
    _, s = load()
    assert s.domains == dnssettings.Domains("tedomum.in.", "tedomum.net.", "tedomum.org.", ("hyp1.tedomum.org.",),
                                            "hostmaster.tedomum.org.", 3600)
    assert s.hosts["hyp1"].service_labels == ("hyp1", "hyp1-2")
    assert s.hosts["hyp2"].service_labels == ("hyp2",)


def test_a_host_names_itself_and_its_service_records():
    _, s = load("  hyp3:\n    dns: {name: three, service_names: [web3]}\n" + PAIR3)
    assert s.hosts["hyp3"] == dnssettings.HostNames("hyp3", "three", ("web3",))


@pytest.mark.parametrize("extra, message", [
    ("  hyp3:\n    dns: {cname_domain: other.net}\n",
     "hosts.yml:21: hyp3: dns.cname_domain: differs from hyp1's ('tedomum.net')"),
    ("  hyp3:\n    dns:\n      nmae: x\n", "hosts.yml:22: hyp3: dns: unknown key 'nmae' (did you mean 'name'?)"),
    ("  hyp3:\n" + PAIR3 + "    dns:\n      service_names: [a, b]\n",
     "hosts.yml:25: hyp3: dns.service_names: lists 2 label(s) for 1 service address(es)"),
    ("  hyp3:\n    dns: {name: hyp1}\n", "hosts.yml:21: hyp3: dns.name: 'hyp1' is already hyp1's name"),
    ("  hyp3:\n    dns: {name: 'bad_label'}\n", "hosts.yml:21: hyp3: dns.name: 'bad_label' is not a DNS label"),
])
def test_settings_mistakes_point_at_their_line(extra, message):
    assert error(extra).startswith(message)


def test_a_domain_inside_another_is_refused_at_its_line():
    text = INV.format(extra="").replace("rest_domain: tedomum.org", "rest_domain: x.tedomum.net")
    with pytest.raises(InventoryError, match=r"^hosts.yml:5: hyp1: dns.rest_domain: x.tedomum.net. and cname_domain"):
        dnssettings.for_inventory(inventory.parse(text, "hosts.yml"))


def test_a_missing_domain_is_named():
    text = INV.format(extra="").replace("    rest_domain: tedomum.org\n", "")
    with pytest.raises(InventoryError, match=r"^hosts.yml:2: hyp1: dns.rest_domain: is missing \(domains are"):
        dnssettings.for_inventory(inventory.parse(text, "hosts.yml"))


def test_no_dns_section_says_what_to_write():
    inv = inventory.parse("hosts:\n  hyp1: {admin_ipv4: 192.0.2.11}\n", "hosts.yml")
    with pytest.raises(InventoryError, match="hosts.yml:2: hyp1: no 'dns:' section; set service_domain"):
        dnssettings.for_inventory(inv)


def test_a_bad_ttl_and_hostmaster_are_refused():
    text = INV.format(extra="").replace("    nameservers:", "    ttl: 0\n    nameservers:")
    with pytest.raises(InventoryError, match="hosts.yml:6: hyp1: dns.ttl: must be a whole number of seconds from 1 to 2147483647"):
        dnssettings.for_inventory(inventory.parse(text, "hosts.yml"))
    text = INV.format(extra="").replace("    nameservers:", "    hostmaster: a.b@tedomum.org\n    nameservers:")
    with pytest.raises(InventoryError, match="hosts.yml:6: hyp1: dns.hostmaster: 'a.b@tedomum.org': the part before"):
        dnssettings.for_inventory(inventory.parse(text, "hosts.yml"))


# --------------------------------------------------------------------------- x-aegir


def test_names_and_the_address_their_ports_publish_on():
    inv, _ = load()
    got = services.read(inv.get("hyp1"), project(COMPOSE))
    assert got.problems == ()
    assert got.publications == (Publication("hyp1", "apps/cloud", 1, (
        Name("cloud"), Name("mail", mx=(("mail", 10),)), Name("matrix", srv=(Srv("_matrix._tcp", 8448),)),
        Name("bnc", public=False)), "/srv/apps/cloud/docker-compose.yml:6"),)


def test_the_address_may_come_from_env():
    inv, _ = load()
    text = "services: {web: {image: x}}\nx-aegir:\n  dns:\n    address: ${IP6}\n    names: cloud\n"
    got = services.read(inv.get("hyp1"), project(text), env="IP6=2001:db8:0:100::12\n")
    assert got.publications[0].address == 1


def test_no_ports_and_no_address_means_the_first_service_address():
    inv, _ = load()
    got = services.read(inv.get("hyp1"), project("services: {web: {image: x}}\nx-aegir: {dns: {names: [w]}}\n"))
    assert got.publications[0].address == 0


@pytest.mark.parametrize("body, message", [
    ("x-aegir:\n  dns:\n    names: [Bad_Name]\n",
     "/srv/apps/cloud/docker-compose.yml:3: x-aegir.dns.names[0].name: 'Bad_Name' is not a DNS label "
     "(letters, digits, '-' inside, at most 63)"),
    ("x-aegir:\n  dns:\n    address: 192.0.2.99\n    names: [a]\n",
     "/srv/apps/cloud/docker-compose.yml:3: x-aegir.dns.address: 192.0.2.99 is not one of hyp1's service addresses"),
    ("x-aegir:\n  dns:\n    names:\n      - {name: a, srv: ['matrix:8448']}\n",
     "/srv/apps/cloud/docker-compose.yml:4: x-aegir.dns.names[0].srv[0]: 'matrix:8448': an SRV owner starts with"),
    ("x-aegir:\n  dns:\n    names:\n      - {name: a, cname: 'no'}\n",
     "/srv/apps/cloud/docker-compose.yml:4: x-aegir.dns.names[0].cname: must be true or false, not 'no'"),
    ("x-aegir:\n  dns:\n    nmaes: [a]\n",
     "/srv/apps/cloud/docker-compose.yml:3: x-aegir.dns: unknown key 'nmaes' (did you mean 'names'?)"),
    ("services:\n  a: {ports: ['192.0.2.111:80:80']}\n  b: {ports: ['192.0.2.112:80:80']}\nx-aegir: {dns: {names: [a]}}\n",
     "/srv/apps/cloud/docker-compose.yml:4: x-aegir.dns: its ports publish on several service addresses"),
])
def test_x_aegir_mistakes_are_one_problem_at_their_line(body, message):
    inv, _ = load()
    got = services.read(inv.get("hyp1"), project(body))
    assert got.publications == ()
    assert len(got.problems) == 1 and got.problems[0].startswith(message), got.problems


LABELLED = """\
services:
  web:
    ports: ["[2001:db8:0:100::12]:443:443"]
    labels:
      aegir.dns.names: "cloud, files"
      aegir.dns.cname: "false"
  irc:
    labels: ["aegir.dns.names=bnc", "aegir.dns.public=false"]
  db:
    labels: {other: x}
"""


def test_service_labels_publish_plain_names_on_their_own_address():
    inv, _ = load()
    got = services.read(inv.get("hyp1"), project(LABELLED))
    assert got == services.Read((
        Publication("hyp1", "apps/cloud", 1, (Name("cloud", cname=False), Name("files", cname=False)),
                    "/srv/apps/cloud/docker-compose.yml:5"),
        Publication("hyp1", "apps/cloud", 0, (Name("bnc", public=False),), "/srv/apps/cloud/docker-compose.yml:8"),
    ))


def test_a_bad_label_is_one_problem_at_its_line():
    inv, _ = load()
    text = LABELLED.replace('aegir.dns.cname: "false"', 'aegir.dns.cname: "nope"')
    got = services.read(inv.get("hyp1"), project(text))
    assert got.problems == ("/srv/apps/cloud/docker-compose.yml:6: label aegir.dns.cname: must be true or false, "
                            "not 'nope'",)
    assert [p.names for p in got.publications] == [(Name("bnc", public=False),)]


def test_a_project_without_x_aegir_publishes_nothing():
    inv, _ = load()
    assert services.read(inv.get("hyp1"), project("services: {web: {image: x}}\n")) == services.Read()


# --------------------------------------------------------------------------- zones


def the_plan(*texts: str, host: str = "hyp1") -> plan.Plan:
    inv, s = load()
    pubs = [p for i, t in enumerate(texts) for p in services.read(inv.get(host), project(t, f"p{i}")).publications]
    return plan.build(inv.hosts, s, pubs, 2026120101)


def test_the_cname_zone_as_text():
    z = the_plan(COMPOSE).zone("tedomum.net")
    assert z is not None
    assert zonefile.render(z) == textwrap.dedent("""\
        ; tedomum.net. (cname zone): generated by aegir dns.zone from hosts.yml and the projects' x-aegir; do not edit
        $ORIGIN tedomum.net.
        $TTL 3600
        tedomum.net.              3600 IN SOA   hyp1.tedomum.org. hostmaster.tedomum.org. 2026120101 7200 3600 1209600 300
        tedomum.net.              3600 IN NS    hyp1.tedomum.org.
        _matrix._tcp.tedomum.net. 3600 IN SRV   10 0 8448 matrix.tedomum.net.
        cloud.tedomum.net.        3600 IN CNAME hyp1-2.tedomum.in.
        mail.tedomum.net.         3600 IN A     192.0.2.112
        mail.tedomum.net.         3600 IN AAAA  2001:db8:0:100::12
        mail.tedomum.net.         3600 IN MX    10 mail.tedomum.net.
        matrix.tedomum.net.       3600 IN A     192.0.2.112
        matrix.tedomum.net.       3600 IN AAAA  2001:db8:0:100::12
        """)


def test_service_rest_and_reverse_zones():
    p = the_plan(COMPOSE)
    assert [z.origin for z in p.zones] == [
        "tedomum.in.", "tedomum.net.", "tedomum.org.", "1.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.",
        "2.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.", "2.0.192.in-addr.arpa."]
    rest = p.zone("tedomum.org")
    assert rest is not None
    assert [(r.name, r.type, r.data) for r in rest.records[2:]] == [
        ("bnc.tedomum.org.", "CNAME", "hyp1-2.tedomum.in."),
        ("hyp1.tedomum.org.", "A", "192.0.2.11"), ("hyp1.tedomum.org.", "AAAA", "2001:db8:0:100::1"),
        ("hyp2.tedomum.org.", "A", "192.0.2.12"), ("hyp2.tedomum.org.", "AAAA", "2001:db8:0:200::1")]
    v4 = p.zone("2.0.192.in-addr.arpa")
    assert v4 is not None
    assert {(r.name, r.data) for r in v4.records if r.type == "PTR"} == {
        ("11.2.0.192.in-addr.arpa.", "hyp1.tedomum.org."), ("111.2.0.192.in-addr.arpa.", "hyp1.tedomum.in."),
        ("112.2.0.192.in-addr.arpa.", "hyp1-2.tedomum.in."), ("12.2.0.192.in-addr.arpa.", "hyp2.tedomum.org."),
        ("121.2.0.192.in-addr.arpa.", "hyp2.tedomum.in.")}
    assert p.problems == ()


def test_an_mx_owner_that_is_a_service_name_gets_addresses_not_a_cname():
    p = the_plan("x-aegir: {dns: {names: [lists, {name: mx1, mx: [lists]}]}}\n")
    z = p.zone("tedomum.net")
    assert z is not None
    assert {(r.type, r.data) for r in z.records if r.name == "lists.tedomum.net."} == {
        ("MX", "10 mx1.tedomum.net."), ("A", "192.0.2.111"), ("AAAA", "2001:db8:0:100::11")}


def test_a_name_claimed_by_two_projects_is_dropped_for_both_whatever_the_host_order():
    inv, s = load()
    a = services.read(inv.get("hyp1"), project("x-aegir: {dns: {names: [cloud, files]}}\n", "a")).publications
    b = services.read(inv.get("hyp2"), project("x-aegir: {dns: {names: [cloud]}}\n", "b")).publications
    for pubs in ([*a, *b], [*b, *a]):
        p = plan.build(inv.hosts, s, pubs, 1)
        assert sorted(p.problems) == [
            "hyp1: /srv/apps/a/docker-compose.yml:1: cloud.tedomum.net. is also claimed by hyp2: "
            "/srv/apps/b/docker-compose.yml:1: dropped for both (a name belongs to one project)",
            "hyp2: /srv/apps/b/docker-compose.yml:1: cloud.tedomum.net. is also claimed by hyp1: "
            "/srv/apps/a/docker-compose.yml:1: dropped for both (a name belongs to one project)"]
        z = p.zone("tedomum.net")
        assert z is not None and [(r.name, r.data) for r in z.records if r.type == "CNAME"] == [
            ("files.tedomum.net.", "hyp1.tedomum.in.")]


def test_a_name_that_is_a_host_record_is_a_problem():
    p = the_plan("x-aegir: {dns: {names: [{name: hyp2, public: false}]}}\n")
    assert p.problems == ("hyp1: /srv/apps/p0/docker-compose.yml:1: hyp2.tedomum.org. is hyp2's admin name",)


# --------------------------------------------------------------------------- properties

LABELS = st.sampled_from(["a", "b", "c", "mail", "www", "@"])
SRV_OWNERS = st.sampled_from(["_matrix._tcp", "_xmpp-client._tcp", "_xmpp-server._tcp.a", "_sip._udp.b"])
MOSTLY_NONE = st.sampled_from([0, 0, 0, 1, 2])  # most names carry no MX/SRV, so most may be CNAMEs
NAMES = st.builds(
    Name, name=LABELS, public=st.booleans(), cname=st.sampled_from([True, True, True, False]),
    mx=MOSTLY_NONE.flatmap(lambda k: st.lists(st.tuples(LABELS, st.integers(0, 100)), min_size=k, max_size=k)).map(tuple),
    srv=MOSTLY_NONE.flatmap(lambda k: st.lists(st.builds(Srv, SRV_OWNERS, st.integers(1, 65535)),
                                               min_size=k, max_size=k)).map(tuple))


@st.composite
def fleets(draw: st.DrawFn) -> tuple[inventory.Inventory, dnssettings.DnsSettings, list[Publication]]:
    n = draw(st.integers(1, 4))
    slots = draw(st.lists(st.integers(0, 0xFFFF), min_size=n, max_size=n, unique_by=lambda x: x >> 8))
    lines = ["defaults:", "  dns: {service_domain: s.example, cname_domain: c.example, rest_domain: r.example,",
             "        nameservers: [{name: a.c.example, ipv4: 198.51.99.53, ipv6: '2001:db8:ffff::53'}, h0.r.example]}", "hosts:"]
    pairs = []
    for i, slot in enumerate(slots):
        prefix = ipaddress.IPv6Network((ipaddress.IPv6Address("2001:db8::") + ((slot & 0xFF00) << 72), 56))
        k = draw(st.integers(1, 3))
        pairs.append(k)
        v4 = [f"198.51.{100 + i}.{10 + j}" for j in range(k)]
        v6 = [str(prefix[0x11 + j]) for j in range(k)]
        lines += [f"  h{i}:", f"    admin_ipv4: 198.51.{100 + i}.1", f"    service_ipv4: [{', '.join(v4)}]",
                  f"    ipv6_prefix: {prefix}", f"    admin_ipv6: {prefix[1]}", f"    service_ipv6: [{', '.join(v6)}]"]
    inv = inventory.parse("\n".join(lines) + "\n")
    s = dnssettings.for_inventory(inv)
    pubs = [Publication(f"h{h}", f"apps/p{j}", draw(st.integers(0, pairs[h] - 1)),
                        tuple(draw(st.lists(NAMES, min_size=1, max_size=3))), f"p{j}")
            for j, h in enumerate(draw(st.lists(st.integers(0, n - 1), max_size=5)))]
    return inv, s, pubs


def built(fleet: tuple[inventory.Inventory, dnssettings.DnsSettings, list[Publication]]) -> plan.Plan:
    inv, s, pubs = fleet
    return plan.build(inv.hosts, s, pubs, 7)


PROPS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(fleets())
def test_a_cname_never_sits_beside_other_data(fleet):
    by_name: dict[str, set[str]] = {}
    for r in plan.records(built(fleet)):
        by_name.setdefault(r.name, set()).add(r.type)
    for name, types in by_name.items():
        assert "CNAME" not in types or types == {"CNAME"}, (name, types)


@PROPS
@given(fleets())
def test_mx_and_srv_targets_never_point_at_a_cname_and_have_addresses(fleet):
    recs = plan.records(built(fleet))
    cnames = {r.name for r in recs if r.type == "CNAME"}
    addressed = {r.name for r in recs if r.type in ("A", "AAAA")}
    for r in recs:
        if r.type in ("MX", "SRV"):
            target = r.data.split()[-1]
            assert target not in cnames and target in addressed, r
        if r.type == "NS":
            assert r.data not in cnames, r


@PROPS
@given(fleets())
def test_every_aaaa_lies_in_its_hosts_prefix(fleet):
    inv, s, _ = fleet
    p = built(fleet)
    host_of = {f"{hn.label}.{s.domains.rest}": h for h, hn in s.hosts.items()}
    host_of |= {f"{lab}.{s.domains.service}": h for h, hn in s.hosts.items() for lab in hn.service_labels}
    host_of |= {name: h for name, (h, _) in p.owners.items()}
    aaaa = [r for r in plan.records(p) if r.type == "AAAA"]
    assert aaaa
    for r in (r for r in aaaa if r.name not in dict(s.domains.glue)):
        prefix = inv.get(host_of[r.name]).ipv6_prefix
        assert prefix is not None and ipaddress.IPv6Address(r.data) in prefix, r


@PROPS
@given(fleets())
def test_zone_text_round_trips_through_dnspython(fleet):
    for z in built(fleet).zones:
        assert zonefile.parse(zonefile.render(z), z.origin) == zonefile.canonical(z.records)


# --------------------------------------------------------------------------- the check's comparison


def test_compare_names_each_kind_of_difference_once():
    want = {("a.x.", "A"): frozenset({"192.0.2.1"}), ("b.x.", "A"): frozenset({"192.0.2.2"}),
            ("c.x.", "A"): frozenset({"192.0.2.3"}), ("d.x.", "CNAME"): frozenset({"a.x."}),
            ("e.x.", "A"): frozenset({"192.0.2.5"}), ("f.x.", "A"): frozenset({"192.0.2.6"})}
    answers = {("a.x.", "A"): check.Answer(frozenset({"192.0.2.1"})),
               ("b.x.", "A"): check.Answer(frozenset()),
               ("c.x.", "A"): check.Answer(frozenset({"192.0.2.3", "192.0.2.33"})),
               ("d.x.", "CNAME"): check.Answer(frozenset({"b.x."})),
               ("e.x.", "A"): check.Answer(error="the server answered REFUSED"),
               ("f.x.", "A"): check.Answer(frozenset({"192.0.2.6"}))}
    transfers = {"x.": {("a.x.", "A"): frozenset({"192.0.2.1"}), ("g.x.", "TXT"): frozenset({'"hi"'}),
                        ("x.", "SOA"): frozenset({"whatever"})}}
    assert check.compare(want, answers, transfers) == [
        check.Difference("b.x.", "A", "missing", ("192.0.2.2",), ()),
        check.Difference("c.x.", "A", "unexpected", ("192.0.2.3",), ("192.0.2.3", "192.0.2.33")),
        check.Difference("d.x.", "CNAME", "wrong", ("a.x.",), ("b.x.",)),
        check.Difference("e.x.", "A", "error", ("192.0.2.5",), (), "the server answered REFUSED"),
        check.Difference("g.x.", "TXT", "unexpected", (), ('"hi"',)),
    ]


@pytest.mark.parametrize("text, server", [
    ("127.0.0.1", check.Server("127.0.0.1", 53)), ("127.0.0.1:5353", check.Server("127.0.0.1", 5353)),
    ("::1", check.Server("::1", 53)), ("[::1]:5353", check.Server("::1", 5353)),
])
def test_server_addresses(text, server):
    assert check.parse_server(text) == server


@pytest.mark.parametrize("text", ["ns1.example", "127.0.0.1:0", "[::1]:99999", ""])
def test_bad_server_addresses_are_refused(text):
    with pytest.raises(check.AegirError, match="--server"):
        check.parse_server(text)


# --------------------------------------------------------------------------- what a host is asked


def test_a_hosts_names_are_one_discovery_parsed_project_by_project():
    inv, _ = load()
    bad = "x-aegir:\n  dns:\n    nmaes: [a]\n"
    disc = Discovery("/srv", (project(COMPOSE), project(bad, "wiki")), envs={"apps/cloud": "X=1\n"})
    got = dnsfacts.parse_names(inv.get("hyp1"), disc)
    assert [p.project for p in got.publications] == ["apps/cloud"]
    assert got.problems == ("/srv/apps/wiki/docker-compose.yml:3: x-aegir.dns: unknown key 'nmaes' "
                            "(did you mean 'names'?)",)
    fact = dnsfacts.names_fact(inv.get("hyp1"))
    assert fact.cmd == discovery_fact("/srv", with_env=True).cmd and fact.cache is False  # .env: never kept


def test_srv_is_read_only_when_it_is_a_mount_point():
    fact = srv_mounted_fact("/srv")
    assert fact.cmd.line == "findmnt --noheadings --output TARGET --mountpoint /srv"
    assert fact.read(Reply("/srv\n", "", 0), host="h") is True
    assert fact.read(Reply("", "", 1), host="h") is False
    assert str(srv_not_mounted("hyp1", "/srv")) == "hyp1: /srv is not mounted: run boot.mount"


def test_the_fleet_plan_names_each_hosts_problems_before_the_fleets():
    inv, s = load()
    one = services.read(inv.get("hyp1"), project("services: {web: {image: x}}\nx-aegir: {dns: {names: [a]}}\n"))
    two = services.Read(one.publications, ("/srv/apps/x/docker-compose.yml:3: oops",))
    got = plan.fleet(inv.hosts, s, [("hyp1", one), ("hyp2", two)], 5)
    assert got.problems == ("hyp2: /srv/apps/x/docker-compose.yml:3: oops",) + plan.build(
        inv.hosts, s, [*one.publications, *two.publications], 5).problems
    assert plan.origins(inv.hosts, s) == tuple(z.origin for z in got.zones)
    assert plan.as_origin("TeDomum.NET.") == plan.as_origin("tedomum.net") == "tedomum.net."


# --------------------------------------------------------------------------- zone files on the operator's machine


def test_zone_files_are_planned_without_writing_then_written_and_read_back(tmp_path):
    zones = the_plan(COMPOSE).zones[:2]
    out = tmp_path / "zones"
    planned = steps.plan_files(str(out), zones)
    assert [(f.path, f.result) for f in planned] == [
        (str(out / "tedomum.in.zone"), "would"), (str(out / "tedomum.net.zone"), "would")]
    assert not out.exists()
    written = steps.write_files(planned)
    assert [f.result for f in written] == ["done", "done"]
    assert (out / "tedomum.net.zone").read_text() == zonefile.render(zones[1])
    assert (out / "tedomum.net.zone").stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in out.iterdir()) == ["tedomum.in.zone", "tedomum.net.zone"]  # no temporary left
    assert [f.result for f in steps.plan_files(str(out), zones)] == ["ok", "ok"]


def test_a_changed_zone_replaces_its_file_keeping_its_mode(tmp_path):
    zone = the_plan(COMPOSE).zones[1]
    path = tmp_path / "tedomum.net.zone"
    path.write_text("old\n")
    path.chmod(0o640)
    [planned] = steps.plan_files(str(tmp_path), [zone])
    assert planned.result == "would"
    [done] = steps.write_files([planned])
    assert (done.result, path.read_text(), path.stat().st_mode & 0o777) == ("done", zonefile.render(zone), 0o640)


def test_out_must_be_a_directory(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match="--out .*/file: not a directory"):
        steps.plan_files(str(tmp_path / "file"), the_plan().zones)


def test_a_host_that_could_not_be_read_is_a_failed_row_and_no_zone():
    from aegir.dns import report
    from aegir.fleet import Outcome

    inv, _ = load()
    read = services.read(inv.get("hyp1"), project(COMPOSE))
    got = report.unread("dns.zone", [Outcome(inv.get("hyp1"), read),
                                     Outcome(inv.get("hyp2"), None, "/srv is not mounted: run boot.mount", "failed")],
                        dry=False, what="no zone made")
    assert got.problems and got.text.splitlines() == [
        "HOST  PROJECTS  NAMES  RESULT",
        "----  --------  -----  -------------------------------------------",
        "hyp1  1         4      ok",
        "hyp2  -         -      FAILED: /srv is not mounted: run boot.mount",
        "",
        "no zone made: 1 of 2 hosts could not be read, and the zones hold every host's names"]
    assert got.data["hosts"][0] == {"host": "hyp1", "status": "ok", "error": None,
                                    "names": {"apps/cloud": ["cloud", "mail", "matrix", "bnc"]}, "warnings": []}
    assert got.data["summary"] == {"hosts": 2, "unread": 1}
