"""net.plan end to end on the session lab's real dockerd: a Docker network whose IPv6 subnet was placed
outside the host's prefix (and a container on it) are found, so is a service IPv6 missing from the host."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator

import pytest

from tests.helpers import run_inv
from tests.lab import Lab, LabHost

IMAGE = "aegir-lab/busybox:latest"


def net_plan(lab: Lab, host: LabHost) -> tuple[int, dict]:
    done = run_inv("-H", host.name, "net.plan", "-f", "json", inventory=lab.inventory_path, timeout=60)
    assert done.returncode in (0, 1), done.stdout + done.stderr
    return done.returncode, json.loads(done.stdout)


@pytest.fixture
def hyp1(lab: Lab) -> LabHost:
    host = lab.host("hyp1")
    code, report = net_plan(lab, host)
    assert (code, report["problems"]) == (0, []), "hyp1 should start as planned"
    roles = {r["role"] for r in report["rows"]}
    assert {"admin", "service 1", "network bridge"} <= roles
    return host


@pytest.fixture
def stray(hyp1: LabHost) -> Iterator[str]:
    """A network on a /64 outside hyp1's /56, with one running container on it."""
    prefix = hyp1.addresses.ipv6_prefix
    outside = f"2001:db8:0:{(hyp1.addresses.index + 0x80):x}00::/64"
    assert not ipaddress.IPv6Network(outside).subnet_of(prefix)
    hyp1.run(["docker", "network", "create", "--ipv6", "--subnet", "172.31.250.0/24", "--subnet", outside, "stray"])
    try:
        hyp1.run(["docker", "run", "-d", "--name", "strayer", "--network", "stray", IMAGE, "sleep", "3600"])
        yield outside
    finally:
        hyp1.run(["docker", "rm", "-f", "strayer"], check=False)
        hyp1.run(["docker", "network", "rm", "stray"], check=False)


def test_a_network_placed_outside_the_prefix_is_found(lab, hyp1, stray):
    code, report = net_plan(lab, hyp1)
    six = hyp1.run(["docker", "inspect", "-f", "{{.NetworkSettings.Networks.stray.GlobalIPv6Address}}",
                    "strayer"]).stdout.strip()
    prefix = hyp1.addresses.ipv6_prefix
    assert code == 1
    assert report["problems"] == [
        {"host": "hyp1", "role": "network stray",
         "problem": f"Docker network 'stray': IPv6 subnet {stray} is outside the host's prefix {prefix}: recreate it "
                    "with a subnet of the prefix (for the networks Docker creates: daemon.json's "
                    "\"default-address-pools\")"},
        {"host": "hyp1", "role": "container strayer",
         "problem": f"container 'strayer': global IPv6 {six} is outside the host's prefix {prefix}"},
    ]
    table = run_inv("-H", "hyp1", "net.plan", inventory=lab.inventory_path, timeout=60)
    assert table.returncode == 1 and "2 problem(s)" in table.stdout, table.stdout + table.stderr


def test_a_service_ipv6_missing_on_the_host_is_found(lab, hyp1):
    six = hyp1.addresses.service_ipv6
    hyp1.run(["ip", "addr", "del", f"{six}/64", "dev", "eth0"])
    try:
        code, report = net_plan(lab, hyp1)
    finally:
        hyp1.run(["ip", "addr", "add", f"{six}/64", "dev", "eth0", "nodad"])
    assert code == 1
    assert report["problems"] == [{"host": "hyp1", "role": "service 1", "problem":
                                   f"service IPv6 {six} (twin of {hyp1.addresses.service_ipv4}) is not configured "
                                   "on the host"}]


def test_docker_left_with_its_userland_proxy_and_a_network_outside_the_prefix_get_one_row_each(lab):
    """Docker's posture (issue 25): a host whose daemon.json turns the userland proxy on, with a network whose
    IPv6 subnet lies outside the host's /56: one problem row each, naming the key to change."""
    with lab.extra_host() as host:
        conf = json.loads(host.paths.docker_config.read_text())
        assert net_plan(lab, host)[1]["problems"] == []  # the lab's settings are aegir's: no row
        host.paths.docker_config.write_text(json.dumps({**conf, "userland-proxy": True}))
        host.stop_docker()
        host.start_docker()
        outside = f"2001:db8:0:{(host.addresses.index + 0x80):x}00::/64"
        host.run(["docker", "network", "create", "--ipv6", "--subnet", "172.31.251.0/24", "--subnet", outside, "far"])
        code, report = net_plan(lab, host)
    prefix = host.addresses.ipv6_prefix
    assert code == 1
    assert report["problems"] == [
        {"host": host.name, "role": "docker userland-proxy",
         "problem": f'userland-proxy is true: set "userland-proxy": false in {host.paths.docker_config} '
                    "(the proxy hides the client's address from containers)"},
        {"host": host.name, "role": "network far",
         "problem": f"Docker network 'far': IPv6 subnet {outside} is outside the host's prefix {prefix}: recreate it "
                    "with a subnet of the prefix (for the networks Docker creates: daemon.json's "
                    "\"default-address-pools\")"},
    ]
