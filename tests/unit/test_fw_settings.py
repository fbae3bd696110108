"""A host's `fw:` section: defaults when absent, every mistake reported at its file:line."""

from __future__ import annotations

import ipaddress

import pytest

from aegir import inventory
from aegir.errors import InventoryError
from aegir.fw.settings import DEFAULT_INTERFACES, for_host

BASE = """\
defaults:
  fw:
    output: [udp/53, tcp/443]
hosts:
  hyp1:
    admin_ipv4: 192.0.2.11
    ipv6_prefix: 2001:db8:0:100::/56
    admin_ipv6: 2001:db8:0:100::1
    port: 2222
  hyp2:
    admin_ipv4: 192.0.2.12
    fw:
{fw}
"""


def settings(fw: str = "      ipsec: true", host: str = "hyp2"):
    inv = inventory.parse(BASE.format(fw=fw), "hosts.yml")
    return for_host(inv, inv.get(host))


def error(fw: str) -> str:
    with pytest.raises(InventoryError) as exc:
        settings(fw)
    return str(exc.value)


def test_a_host_without_fw_gets_safe_defaults():
    inv = inventory.parse("hosts:\n  solo:\n    admin_ipv4: 192.0.2.1\n")
    s = for_host(inv, inv.get("solo"))
    assert s.ssh_port == 22 and s.admin_sources == () and s.input == () and s.ipsec_peers == ()
    assert [f"{r.proto}/{r.ports} {r.net}" for r in s.output] == [
        "udp/53 0.0.0.0/0", "udp/53 ::/0", "tcp/53 0.0.0.0/0", "tcp/53 ::/0", "udp/123 0.0.0.0/0",
        "udp/123 ::/0", "tcp/80 0.0.0.0/0", "tcp/80 ::/0", "tcp/443 0.0.0.0/0", "tcp/443 ::/0"]
    assert s.container_interfaces == DEFAULT_INTERFACES
    assert s.state_dir == "/srv/conf/aegir-fw"


def test_the_ssh_port_defaults_to_the_port_aegir_connects_to():
    assert settings(host="hyp1").ssh_port == 2222
    assert settings("      ssh_port: 2200").ssh_port == 2200


def test_ipsec_peers_are_the_other_hosts_admin_addresses():
    assert [str(a) for a in settings().ipsec_peers] == ["192.0.2.11", "2001:db8:0:100::1"]
    assert settings("      ipsec: false").ipsec_peers == ()


def test_ipsec_peers_are_refused_while_another_hosts_entry_is_broken():
    """Without hyp1's admin addresses, hyp2's ruleset would drop its IPsec: refused, naming hyp1's mistake."""
    inv = inventory.parse(BASE.format(fw="      ipsec: true").replace("port: 2222", "port: 0"), "hosts.yml")
    with pytest.raises(InventoryError) as exc:
        for_host(inv, inv.get("hyp2"))
    assert str(exc.value) == ("hosts.yml:9: hyp1: port: 0 is not a port number from 1 to 65535 "
                              "(hyp2's fw.ipsec needs every host's admin addresses)")
    inv = inventory.parse(BASE.format(fw="      ipsec: false").replace("port: 2222", "port: 0"), "hosts.yml")
    assert for_host(inv, inv.get("hyp2")).ipsec_peers == ()


def test_defaults_fw_is_merged_under_the_hosts_own():
    s = settings("      input: ['tcp/9100 from 192.0.2.0/24']")
    assert [f"{r.proto}/{r.ports}" for r in s.output] == ["udp/53", "udp/53", "tcp/443", "tcp/443"]
    assert [(r.proto, r.first, str(r.net)) for r in s.input] == [("tcp", 9100, "192.0.2.0/24")]


def test_rules_take_ranges_and_a_destination():
    s = settings("      output: ['udp/60000-61000', 'tcp/25 to 2001:db8::25']")
    assert [(r.proto, r.ports, str(r.net)) for r in s.output] == [
        ("udp", "60000-61000", "0.0.0.0/0"), ("udp", "60000-61000", "::/0"), ("tcp", "25", "2001:db8::25/128")]


def test_admin_sources_are_merged_per_family():
    s = settings("      admin_sources: [10.0.0.0/8, 10.1.0.0/16, '2001:db8:ff::/48', 192.0.2.7]")
    assert [str(n) for n in s.admin_sources] == ["10.0.0.0/8", "192.0.2.7/32", "2001:db8:ff::/48"]
    assert s.sources(6) == (ipaddress.ip_network("2001:db8:ff::/48"),)


@pytest.mark.parametrize("fw, message", [
    ("      sshport: 22", "hosts.yml:13: hyp2: fw: unknown key 'sshport' (did you mean 'ssh_port'?)"),
    ("      ssh_port: 0", "hosts.yml:13: hyp2: fw.ssh_port: 0 is not a port number from 1 to 65535"),
    ("      admin_sources: [nowhere]", "hosts.yml:13: hyp2: fw.admin_sources[0]: 'nowhere' is not an address or network"),
    ("      output:\n        - tcp/443\n        - tcp/http",
     "hosts.yml:15: hyp2: fw.output[1]: 'tcp/http' is not a rule like 'tcp/443'"),
    ("      output: [icmp/8]", "hosts.yml:13: hyp2: fw.output[0]: 'icmp/8': protocol must be one of tcp, udp, sctp"),
    ("      output: [tcp/0]", "hosts.yml:13: hyp2: fw.output[0]: 'tcp/0': '0' is not a port number from 1 to 65535"),
    ("      output: [tcp/90-80]", "hosts.yml:13: hyp2: fw.output[0]: 'tcp/90-80': a port range goes from low to high"),
    ("      output: ['tcp/25 from 192.0.2.1']", "'tcp/25 from 192.0.2.1': write 'to ADDRESS' here, not 'from'"),
    ("      input: ['tcp/25 to 192.0.2.1']", "'tcp/25 to 192.0.2.1': write 'from ADDRESS' here, not 'to'"),
    ("      output: ['tcp/25 to mail']", "'tcp/25 to mail': 'mail' is not an address or network"),
    ("      output: [tcp/80-90, tcp/85]", "hosts.yml:13: hyp2: fw.output[1]: 'tcp/85' overlaps an earlier rule (tcp/80-90)"),
    ("      output: {tcp: 80}", "hosts.yml:13: hyp2: fw.output: must be a list of rules like 'tcp/443'"),
    ("      ipsec: yes please", "hosts.yml:13: hyp2: fw.ipsec: must be true or false, not 'yes please'"),
    ("      container_interfaces: ['br-*', 'way-too-long-interface']",
     "fw.container_interfaces[1]: 'way-too-long-interface' is not an interface name"),
    ("      state_dir: conf/fw", "hosts.yml:13: hyp2: fw.state_dir: must be an absolute path, not 'conf/fw'"),
])
def test_mistakes_are_reported_at_their_line(fw, message):
    assert message in error(fw)


def test_a_mistake_in_defaults_points_at_the_defaults_section():
    inv = inventory.parse(BASE.format(fw="      ipsec: true").replace("udp/53, tcp/443", "udp/53, tcp/x"), "hosts.yml")
    with pytest.raises(InventoryError, match=r"^hosts.yml:3: hyp1: fw.output\[1\]: 'tcp/x' is not a rule"):
        for_host(inv, inv.get("hyp1"))
