"""DNS names a hostile project writes: checked as DNS names before any zone text, and the names only
hosts.yml may shape (apexes, name servers, host names, the ``_`` space) refused to projects, one problem
row (host, file:line) per record dropped, the project's other names kept."""

from __future__ import annotations

import pytest

from aegir import inventory
from aegir.compose.discovery import Project
from aegir.dns import names, plan, services
from aegir.dns import settings as dnssettings
from aegir.errors import InventoryError

INV = """\
defaults:
  dns:
    service_domain: tedomum.in
    cname_domain: tedomum.net
    rest_domain: tedomum.org
    nameservers: {nameservers}
hosts:
  hyp1:
    admin_ipv4: 192.0.2.11
    service_ipv4: [192.0.2.111]
    admin_ipv6: 2001:db8:0:100::1
    ipv6_prefix: 2001:db8:0:100::/56
    service_ipv6: ['2001:db8:0:100::11']
  hyp2:
    admin_ipv4: 192.0.2.12
    service_ipv4: [192.0.2.121]
    service_ipv6: ['2001:db8:0:200::11']
    ipv6_prefix: 2001:db8:0:200::/56
"""
GLUED = "[{name: ns1.tedomum.org, ipv4: 192.0.2.53, ipv6: '2001:db8::53'}, {name: ns2.tedomum.org, ipv4: 192.0.2.54}]"
LONG = ".".join(c * 63 for c in "abcd")  # 4 x 63: 257 octets in wire form, before any domain


def load(nameservers: str = GLUED) -> tuple[inventory.Inventory, dnssettings.DnsSettings]:
    inv = inventory.parse(INV.format(nameservers=nameservers), "hosts.yml")
    return inv, dnssettings.for_inventory(inv)


def build(host: str, text: str, folder: str = "evil") -> plan.Plan:
    inv, s = load()
    read = services.read(inv.get(host), Project("apps", folder, f"/srv/apps/{folder}", "docker-compose.yml",
                                                 compose_text=text))
    return plan.fleet(inv.hosts, s, [(host, read)], 2026120700)


def records(p: plan.Plan) -> set[tuple[str, str, str]]:
    return {(r.name, r.type, r.data) for r in plan.records(p)}


# --------------------------------------------------------------------------- DNS names


@pytest.mark.parametrize("text, name", [
    ("Cloud", "cloud"), ("Café", "xn--caf-dma"), ("ÉCOLE.Chat", "xn--cole-9oa.chat"), ("xn--caf-dma", "xn--caf-dma"),
    ("Straße", "strasse"), ("a" * 63, "a" * 63), ("@", "@")])
def test_names_are_a_labels_case_folded(text, name):
    assert names.check_relative(text) == name


@pytest.mark.parametrize("text, message", [
    ("a" * 64, f"{'a' * 64!r} is 64 octets long: a DNS label is at most 63"),
    (f"x.{'a' * 64}", f"'x.{'a' * 64}': {'a' * 64!r} is 64 octets long: a DNS label is at most 63"),
    (LONG, f"{LONG!r} is 257 octets in wire form: a DNS name is at most 255"),
    ("\u200b", "'\\u200b' cannot be written as an IDN A-label (label empty or too long)"),
    ("xn--zzzz", "'xn--zzzz' is not a valid IDN A-label (xn-- then punycode)"),
    ("bad_name", "'bad_name' is not a DNS label (letters, digits, '-' inside, at most 63)"),
    ("-a", "'-a' is not a DNS label (letters, digits, '-' inside, at most 63)"),
    ("a..b", "'a..b': '' is not a DNS label (letters, digits, '-' inside, at most 63)"),
])
def test_names_that_are_no_dns_names_are_refused_saying_why(text, message):
    with pytest.raises(ValueError) as exc:
        names.check_relative(text)
    assert str(exc.value) == message


def test_wire_length_counts_each_label_its_length_and_the_root():
    assert (names.wire_length("."), names.wire_length("a.b."), names.wire_length("a.b")) == (1, 5, 5)
    fits = "a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 61 + "."  # 64 * 3 + 62 + 1 = 255
    assert names.check_absolute(fits) == fits
    with pytest.raises(ValueError, match=r"^a{63}\.b{63}\.c{63}\.d{62}\. is 256 octets in wire form"):
        names.check_absolute(fits.replace("d" * 61, "d" * 62))


def test_a_name_too_long_under_its_domain_is_one_row_and_the_others_render():
    fits = ".".join(c * 63 for c in "abc") + "." + "d" * 50  # fits alone, not under tedomum.net.
    p = build("hyp1", f"x-aegir: {{dns: {{names: [ok, '{fits}', '{LONG}']}}}}\n")
    assert p.problems == (
        f"hyp1: /srv/apps/evil/docker-compose.yml:1: x-aegir.dns.names[2].name: {LONG!r} is 257 octets in wire "
        "form: a DNS name is at most 255",
        f"hyp1: /srv/apps/evil/docker-compose.yml:1: {fits}.tedomum.net. is 256 octets in wire form: a DNS name "
        "is at most 255")
    assert ("ok.tedomum.net.", "CNAME", "hyp1.tedomum.in.") in records(p)
    assert not any(r[0].startswith("aaa") for r in records(p))


# --------------------------------------------------------------------------- what hosts.yml alone shapes

TAKEOVER = """\
services:
  web: {image: x}
x-aegir:
  dns:
    names:
      - chat
      - {name: ns1, public: false, mx: [hyp1, "@"]}
      - {name: irc, public: false}
"""


def test_the_takeover_project_gets_no_record_three_rows_and_its_honest_names_render():
    p = build("hyp2", TAKEOVER)
    assert p.problems == (
        "hyp2: /srv/apps/evil/docker-compose.yml:7: ns1.tedomum.org. is a name server of the inventory",
        "hyp2: /srv/apps/evil/docker-compose.yml:7: MX at hyp1.tedomum.org. -> ns1.tedomum.org.: "
        "hyp1.tedomum.org. is hyp1's admin name",
        "hyp2: /srv/apps/evil/docker-compose.yml:7: MX at tedomum.org. -> ns1.tedomum.org.: tedomum.org. is the "
        "apex of the zone tedomum.org.")
    got = records(p)
    assert [r for r in got if r[1] == "MX"] == []
    assert {r for r in got if r[0] == "ns1.tedomum.org."} == {
        ("ns1.tedomum.org.", "A", "192.0.2.53"), ("ns1.tedomum.org.", "AAAA", "2001:db8::53")}  # hosts.yml's glue
    assert {("chat.tedomum.net.", "CNAME", "hyp2.tedomum.in."), ("irc.tedomum.org.", "CNAME", "hyp2.tedomum.in.")} <= got


@pytest.mark.parametrize("entry, row", [
    ("{name: '@'}", "tedomum.net. is the apex of the zone tedomum.net."),
    ("{name: hyp1, public: false}", "hyp1.tedomum.org. is hyp1's admin name"),
    ("{name: hyp1}", "hyp1.tedomum.net. is hyp1's admin label"),
    ("{name: hyp2}", "hyp2.tedomum.net. is hyp2's admin label"),
    ("{name: ok, mx: ['@']}", "MX at tedomum.net. -> ok.tedomum.net.: tedomum.net. is the apex of the zone "
                              "tedomum.net."),
    ("{name: ok, mx: [other]}", "MX at other.tedomum.net. -> ok.tedomum.net.: other.tedomum.net. is not a name "
                                "this project owns"),
    ("{name: ok, srv: ['_sip._tcp.other:5060']}", "SRV _sip._tcp.other.tedomum.net. -> ok.tedomum.net.: "
                                                  "other.tedomum.net. is not a name this project owns"),
])
def test_each_name_the_inventory_holds_is_one_row(entry, row):
    p = build("hyp1", f"x-aegir: {{dns: {{names: [keep, {entry}]}}}}\n")
    assert p.problems == (f"hyp1: /srv/apps/evil/docker-compose.yml:1: {row}",)
    assert ("keep.tedomum.net.", "CNAME", "hyp1.tedomum.in.") in records(p)


def test_srv_records_go_under_the_apex_or_the_projects_own_names_and_two_projects_may_not_share_one():
    inv, s = load()
    def read(host: str, folder: str, text: str) -> tuple[str, services.Read]:
        return host, services.read(inv.get(host), Project("apps", folder, f"/srv/apps/{folder}",
                                                          "docker-compose.yml", compose_text=text))
    mine = "x-aegir: {dns: {names: [{name: m, srv: ['_matrix._tcp:8448', '_x._tcp.m:1']}]}}\n"
    p = plan.fleet(inv.hosts, s, [read("hyp1", "a", mine)], 1)
    assert p.problems == ()
    assert {r for r in records(p) if r[1] == "SRV"} == {
        ("_matrix._tcp.tedomum.net.", "SRV", "10 0 8448 m.tedomum.net."), ("_x._tcp.m.tedomum.net.", "SRV", "10 0 1 m.tedomum.net.")}
    theirs = "x-aegir: {dns: {names: [{name: n, srv: ['_matrix._tcp:8448']}]}}\n"
    p = plan.fleet(inv.hosts, s, [read("hyp1", "a", mine), read("hyp2", "b", theirs)], 1)
    assert p.problems == (
        "hyp1: /srv/apps/a/docker-compose.yml:1: _matrix._tcp.tedomum.net. is also claimed by hyp2: "
        "/srv/apps/b/docker-compose.yml:1: dropped for both (a name belongs to one project)",
        "hyp2: /srv/apps/b/docker-compose.yml:1: _matrix._tcp.tedomum.net. is also claimed by hyp1: "
        "/srv/apps/a/docker-compose.yml:1: dropped for both (a name belongs to one project)")
    assert {r for r in records(p) if r[1] == "SRV"} == {("_x._tcp.m.tedomum.net.", "SRV", "10 0 1 m.tedomum.net.")}


# --------------------------------------------------------------------------- in-zone name servers


def test_an_in_zone_name_server_without_an_address_refuses_the_inventory_naming_it():
    with pytest.raises(InventoryError) as exc:
        load("[ns1.tedomum.org, ns2.tedomum.org]")
    assert str(exc.value) == (
        "hosts.yml:6: hyp1: dns.nameservers[0]: ns1.tedomum.org. is a name server inside the zone tedomum.org. with "
        "no address (A or AAAA) in hosts.yml: the zone tedomum.org. would not load; write "
        "{name: ns1.tedomum.org, ipv4: ADDR, ipv6: ADDR} or name a host's admin name")
    inv = inventory.parse(INV.format(nameservers="[x]").replace("    nameservers: [x]\n", ""), "hosts.yml")
    with pytest.raises(InventoryError, match=r"^hosts.yml:7: hyp1: dns.nameservers\[0\]: ns1.tedomum.org. is a "):
        dnssettings.for_inventory(inv)  # the default, ns1.<rest_domain>, too


@pytest.mark.parametrize("nameservers, message", [
    ("[{name: ns.example.com, ipv4: 192.0.2.1}]", "dns.nameservers[0]: ns.example.com. is outside the fleet's zones"),
    ("[{name: hyp1.tedomum.org, ipv4: 192.0.2.1}]", "dns.nameservers[0]: hyp1.tedomum.org. is a host's name"),
    ("[{name: ns1.tedomum.org, ipv4: 2001:db8::1}]", "dns.nameservers[0]: ipv4: '2001:db8::1' is not an IPv4"),
    ("[hyp1.tedomum.org, hyp1.tedomum.org]", "dns.nameservers[1]: lists hyp1.tedomum.org. twice"),
])
def test_name_server_entries_are_checked(nameservers, message):
    with pytest.raises(InventoryError, match="^hosts.yml:6: hyp1: " + message.replace("[", r"\[").replace("]", r"\]")):
        load(nameservers)


def test_name_servers_outside_the_zones_or_hosts_need_no_address():
    _, s = load("[hyp1.tedomum.org, hyp2.tedomum.in, ns.example.com]")
    assert (s.domains.nameservers, s.domains.glue) == (("hyp1.tedomum.org.", "hyp2.tedomum.in.", "ns.example.com."), ())


# --------------------------------------------------------------------------- the serial


@pytest.mark.parametrize("day, old, changed, serial", [
    ("20261207", None, True, 2026120700),  # no zone yet: the day's first
    ("20261207", 2026120700, False, 2026120700),  # unchanged: the same, whatever the day
    ("20261209", 2026120700, False, 2026120700),
    ("20261207", 2026120700, True, 2026120701),  # changed the same day: the next
    ("20261209", 2026120705, True, 2026120900),  # changed another day: that day's first
    ("20261207", 4000000000, True, 4000000001),  # set by hand ahead of the date: still grows
    ("20261207", 7, True, 2026120700),  # a Unix-time or small serial of an older aegir: the date's is above
])
def test_the_serial_is_the_date_and_a_count_moved_on_only_by_a_change(day, old, changed, serial):
    assert plan.next_serial(day, old, changed) == serial


def test_a_serial_past_32_bits_is_refused():
    with pytest.raises(ValueError) as exc:
        plan.next_serial("20261207", 4294967295, True)
    assert str(exc.value) == "the serial after 4294967295 is past 4294967295: set one with --serial"


def test_zone_files_keep_their_serial_until_their_text_changes(tmp_path):
    from aegir.dns import steps, zonefile

    def files(day: str, text: str = "x-aegir: {dns: {names: [cloud]}}\n") -> list[tuple[str, int, str]]:
        zones = build("hyp1", text).zones[:3]
        return [(f.path.rsplit("/", 1)[1], f.zone.serial, f.result) for f in steps.write_files(
            steps.plan_files(str(tmp_path), zones, day))]

    assert files("20261207") == [("tedomum.in.zone", 2026120700, "done"), ("tedomum.net.zone", 2026120700, "done"),
                                 ("tedomum.org.zone", 2026120700, "done")]
    assert plan.serial_of((tmp_path / "tedomum.net.zone").read_text()) == 2026120700
    assert files("20261207") == [("tedomum.in.zone", 2026120700, "ok"), ("tedomum.net.zone", 2026120700, "ok"),
                                 ("tedomum.org.zone", 2026120700, "ok")]
    assert files("20261208") == [("tedomum.in.zone", 2026120700, "ok"), ("tedomum.net.zone", 2026120700, "ok"),
                                 ("tedomum.org.zone", 2026120700, "ok")]
    changed = "x-aegir: {dns: {names: [cloud, files]}}\n"  # only the cname zone changes
    assert files("20261207", changed) == [("tedomum.in.zone", 2026120700, "ok"),
                                          ("tedomum.net.zone", 2026120701, "done"), ("tedomum.org.zone", 2026120700, "ok")]
    assert files("20261209") == [("tedomum.in.zone", 2026120700, "ok"), ("tedomum.net.zone", 2026120900, "done"),
                                 ("tedomum.org.zone", 2026120700, "ok")]
    zone = build("hyp1", changed).zones[1]
    assert [f.zone.serial for f in steps.plan_files(str(tmp_path), [zone])] == [2026120700]  # --serial: as given
    (tmp_path / "tedomum.net.zone").write_text(zonefile.render(plan.with_serial(zone, 55)).replace("cloud", "clod"))
    assert [(f.zone.serial, f.result) for f in steps.plan_files(str(tmp_path), [zone], "20261209")] == [
        (2026120900, "would")]  # edited by hand: changed


# --------------------------------------------------------------------------- the apex's MX: hosts.yml's

APEX_MX = "    mx: {tedomum.net: [mail.tedomum.net, 'mx2.example.org 20']}\n"


def with_mx(mx: str = APEX_MX) -> tuple[inventory.Inventory, dnssettings.DnsSettings]:
    text = INV.format(nameservers=GLUED).replace("hosts:\n", mx + "hosts:\n", 1)
    inv = inventory.parse(text, "hosts.yml")
    return inv, dnssettings.for_inventory(inv)


def test_the_apex_mx_is_the_inventorys_and_its_target_gets_addresses_not_a_cname():
    inv, s = with_mx()
    assert s.domains.mx == (("tedomum.net.", "mail.tedomum.net.", 10), ("tedomum.net.", "mx2.example.org.", 20))
    read = services.read(inv.get("hyp1"), Project("apps", "mail", "/srv/apps/mail", "docker-compose.yml",
                                                  compose_text="x-aegir: {dns: {names: [mail]}}\n"))
    p = plan.fleet(inv.hosts, s, [("hyp1", read)], 1)
    assert p.problems == ()
    assert {r for r in records(p) if r[0] in ("tedomum.net.", "mail.tedomum.net.") and r[1] != "SOA"} == {
        ("tedomum.net.", "NS", "ns1.tedomum.org."), ("tedomum.net.", "NS", "ns2.tedomum.org."),
        ("tedomum.net.", "MX", "10 mail.tedomum.net."), ("tedomum.net.", "MX", "20 mx2.example.org."),
        ("mail.tedomum.net.", "A", "192.0.2.111"), ("mail.tedomum.net.", "AAAA", "2001:db8:0:100::11")}
    alone = plan.fleet(inv.hosts, s, [], 1)
    assert alone.problems == ("hosts.yml: dns.mx: tedomum.net. MX mail.tedomum.net.: no address record for "
                              "mail.tedomum.net. in the zones (no project publishes it)",)


@pytest.mark.parametrize("mx, message", [
    ("    mx: {other.net: [mail.tedomum.net]}\n", "hosts.yml:7: hyp1: dns.mx.other.net: other.net. is not one of "
                                                  "the fleet's zones (tedomum.in., tedomum.net., tedomum.org.)"),
    ("    mx: {tedomum.net: ['mail.tedomum.net x']}\n", "hosts.yml:7: hyp1: dns.mx.tedomum.net[0]: 'mail.tedomum.net x' "
                                                     "is not 'NAME' or 'NAME PREFERENCE' (like 'mail.tedomum.net' or "
                                                     "'mail.tedomum.net 10')"),
    ("    mx: [mail.tedomum.net]\n", "hosts.yml:7: hyp1: dns.mx: must map a zone to its mail servers, like "
                                    "{tedomum.net: [mail.tedomum.net]}"),
])
def test_apex_mx_mistakes_point_at_their_line(mx, message):
    with pytest.raises(InventoryError) as exc:
        with_mx(mx)
    assert str(exc.value) == message
