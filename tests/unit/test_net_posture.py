"""Docker's network posture (`aegir.net.posture`): dockerd's command line and daemon.json read, each
deviation from what aegir's firewall and addressing need a problem naming the key to change."""

from __future__ import annotations

import ipaddress
import json

from aegir.inventory import Host
from aegir.net import facts, plan
from aegir.net.posture import DockerConfig, config_cmd, parse_config, problems

PREFIX = ipaddress.IPv6Network("2001:db8:0:100::/56")
LAB_JSON = {"data-root": "/srv/docker", "iptables": False, "ip6tables": False, "userland-proxy": False,
            "ipv6": True, "fixed-cidr-v6": "2001:db8:0:1ff::/64", "bip": "172.30.1.1/24"}


def answer(conf: dict | str | None, *args: str, file: str = "/var/lib/aegir-lab/hyp1/daemon.json") -> str:
    """`config_cmd`'s answer with a dockerd started as ``dockerd ARGS`` (no ARGS: none running)."""
    head = ("PID\t4242\nARG\tdockerd\n" + "".join(f"ARG\t{a}\n" for a in args)) if args else ""
    body = "" if conf is None else conf if isinstance(conf, str) else json.dumps(conf, indent=2) + "\n"
    return head + f"FILE\t{file}\n" + body


def test_the_command_reads_the_running_dockerds_flags_and_its_config_file():
    script = config_cmd().argv[2]
    assert "grep -lx dockerd /proc/[0-9]*/comm" in script and "--config-file=*) cfg=${a#*=}" in script
    assert script.startswith("me=$(readlink /proc/self/ns/net) || exit 0\ncfg=/etc/docker/daemon.json\n")
    cfg = parse_config(answer(LAB_JSON, "--config-file", "/var/lib/aegir-lab/hyp1/daemon.json"))
    assert cfg == DockerConfig("/var/lib/aegir-lab/hyp1/daemon.json", LAB_JSON, {}, running=True)
    flagged = parse_config(answer({}, "--userland-proxy=false", "--ipv6", "--fixed-cidr-v6", "2001:db8::/64",
                                  "--iptables=true", "-H", "fd://"))
    assert flagged.flags == {"userland-proxy": False, "ipv6": True, "fixed-cidr-v6": "2001:db8::/64", "iptables": True}
    stopped = parse_config(answer(None, file="/etc/docker/daemon.json"))
    assert stopped == DockerConfig("/etc/docker/daemon.json", {}, {}, running=False)
    assert parse_config(answer("{ not json")).error.startswith("/var/lib/aegir-lab/hyp1/daemon.json is not valid JSON")


def test_the_labs_settings_are_what_aegir_needs():
    assert problems(parse_config(answer(LAB_JSON, "--config-file", "x")), prefix=PREFIX, srv="/srv",
                    version="26.1.5", data_root="/srv/docker") == []


def test_each_deviation_names_the_key_to_change():
    conf = {**LAB_JSON, "userland-proxy": True}
    del conf["iptables"], conf["ip6tables"]
    conf["fixed-cidr-v6"] = "2001:db8:0:f000::/64"
    conf["data-root"] = "/var/lib/docker"
    cfg = DockerConfig("/etc/docker/daemon.json", conf)
    assert problems(cfg, prefix=PREFIX, srv="/srv", version="27.3.1") == [
        ("userland-proxy", 'userland-proxy is true: set "userland-proxy": false in /etc/docker/daemon.json '
                           "(the proxy hides the client's address from containers)"),
        ("iptables", "iptables is true (Docker's default): set \"iptables\": false in /etc/docker/daemon.json "
                     "(aegir's nftables owns the firewall)"),
        ("ip6tables", "ip6tables is true (Docker's default): set \"ip6tables\": false in /etc/docker/daemon.json "
                      "(aegir's nftables owns the firewall)"),
        ("fixed-cidr-v6", "fixed-cidr-v6 2001:db8:0:f000::/64 is outside the host's prefix: set \"fixed-cidr-v6\" "
                          "to a /64 of the host's prefix 2001:db8:0:100::/56 in /etc/docker/daemon.json"),
        ("data-root", 'data-root /var/lib/docker (file) is not on /srv: set "data-root": "/srv/docker" in '
                      "/etc/docker/daemon.json"),
    ]
    # before Docker 27, ip6tables is off unless set
    assert "ip6tables" not in dict(problems(cfg, prefix=PREFIX, srv="/srv", version="26.1.5"))


def test_a_flag_on_dockerds_command_line_is_changed_there_and_an_empty_config_says_every_key():
    flagged = DockerConfig("/etc/docker/daemon.json", LAB_JSON, {"userland-proxy": True})
    assert problems(flagged, prefix=PREFIX, srv="/srv", data_root="/srv/docker") == [
        ("userland-proxy", "userland-proxy is true: dockerd's command line sets it (--userland-proxy): change the "
                           "flag where dockerd is started (the proxy hides the client's address from containers)")]
    empty = problems(DockerConfig(), prefix=PREFIX, srv="/srv")
    assert [k for k, _ in empty] == ["userland-proxy", "iptables", "ip6tables", "ipv6", "fixed-cidr-v6", "data-root"]
    assert dict(empty)["ipv6"] == ('ipv6 is false (Docker\'s default): set "ipv6": true in /etc/docker/daemon.json '
                                   "(containers get a global IPv6 from the host's prefix)")
    assert dict(empty)["data-root"] == ("data-root /var/lib/docker (Docker's default) is not on /srv: set "
                                        '"data-root": "/srv/docker" in /etc/docker/daemon.json')


def test_net_plan_shows_one_problem_row_per_setting_with_the_file():
    host = Host("hyp1", address="192.0.2.11", ipv6_prefix=PREFIX)
    cfg = DockerConfig("/etc/docker/daemon.json", {**LAB_JSON, "userland-proxy": True})
    rows = plan.rows(host, facts.NetFacts(frozenset(), False, config=cfg))
    [row] = [r for r in rows if r.problem]
    assert (row.role, row.where) == ("docker userland-proxy", "/etc/docker/daemon.json")
    assert row.problem.startswith('userland-proxy is true: set "userland-proxy": false in /etc/docker/daemon.json')
