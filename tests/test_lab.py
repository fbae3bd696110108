"""The lab itself is real: separate hosts, real SSH, real Docker, real routes,
and nothing left behind when it stops."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import paramiko
import pytest

from aegir import inventory
from tests.helpers import lab_ssh, ssh_run
from tests.lab import CommandFailed, Lab, LabError, eventually
from tests.lab.keys import known_host_name
from tests.lab.plan import LabNames
from tests.lab.procs import ProcId, netns_inode
from tests.lab.state import LabState, MachineLock
from tests.lab.teardown import leftovers, loop_devices

ROOT = Path(__file__).resolve().parent.parent


def test_the_addressing_plan_follows_the_runbook_on_documentation_prefixes() -> None:
    hyp10 = LabNames("aegirlab").host("hyp10", 10)
    assert (str(hyp10.admin_ipv4), str(hyp10.service_ipv4)) == ("192.0.2.20", "192.0.2.110")
    assert str(hyp10.ipv6_prefix) == "2001:db8:0:a00::/56"
    assert (str(hyp10.admin_ipv6), str(hyp10.service_ipv6)) == ("2001:db8:0:a00::1", "2001:db8:0:a00::11")
    assert str(hyp10.containers_ipv6) == "2001:db8:0:a01::/64"
    assert hyp10.containers_ipv6.subnet_of(hyp10.ipv6_prefix)
    assert (hyp10.netns, hyp10.veth) == ("aegirlab-hyp10", "aegirlab-h10")


def test_the_lab_link_is_not_a_subnet_this_machine_already_uses(lab: Lab) -> None:
    links = json.loads(subprocess.run(["ip", "-j", "-4", "addr", "show"], capture_output=True, text=True,
                                      check=True).stdout)
    others = [ipaddress.ip_interface(f"{a['local']}/{a['prefixlen']}").network
              for link in links if link["ifname"] != lab.names.bridge for a in link.get("addr_info", [])]
    assert others and not [n for n in others if n.overlaps(lab.names.link4)]
    assert lab.hosts[0].addresses.admin_ipv4 in lab.names.link4


def test_each_host_has_its_own_hostname_and_srv(lab: Lab) -> None:
    for host in lab.hosts:
        host.write("whoami.txt", host.name)
    for host in lab.hosts:
        assert host.run(["hostname"]).stdout.strip() == host.name
        assert host.run(["cat", "/etc/hostname"]).stdout.strip() == host.name
        assert host.run(["cat", "/srv/whoami.txt"]).stdout == host.name
        assert (host.srv_dir / "whoami.txt").read_text() == host.name
    assert os.uname().nodename not in {h.name for h in lab.hosts}


def test_each_host_sits_in_its_own_network_namespace(lab: Lab) -> None:
    inodes = {h.name: netns_inode(f"/run/netns/{h.addresses.netns}") for h in lab.hosts}
    for host in lab.hosts:
        assert host.run(["readlink", "/proc/self/ns/net"]).stdout.strip() == f"net:[{inodes[host.name]}]"
    assert len(set(inodes.values())) == len(lab.hosts)


def test_each_host_has_its_own_nftables_ruleset(lab: Lab) -> None:
    hyp1, hyp2 = lab.hosts[:2]
    hyp1.run(["nft", "add", "table", "inet", "aegir_lab_probe"])
    try:
        assert "aegir_lab_probe" in hyp1.run(["nft", "list", "tables"]).stdout
        assert "aegir_lab_probe" not in hyp2.run(["nft", "list", "tables"]).stdout
        here = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True).stdout
        assert "aegir_lab_probe" not in here
    finally:
        hyp1.run(["nft", "delete", "table", "inet", "aegir_lab_probe"])


def test_ssh_logs_in_with_the_lab_key_on_both_admin_addresses(lab: Lab) -> None:
    for host in lab.hosts:
        for address in (host.addresses.admin_ipv4, host.addresses.admin_ipv6):
            with lab_ssh(lab, host, address) as client:
                assert ssh_run(client, "hostname") == host.name
                assert ssh_run(client, "id -u") == "0"
                netns = ssh_run(client, "readlink /proc/self/ns/net")
            assert netns == f"net:[{netns_inode(f'/run/netns/{host.addresses.netns}')}]"


def test_a_host_key_that_does_not_match_known_hosts_is_refused(lab: Lab, tmp_path: Path) -> None:
    hyp1, hyp2 = lab.hosts[:2]
    hyp2_key = [line.split(" ", 1)[1] for line in lab.known_hosts.read_text().splitlines()
                if line.startswith(f"{hyp2.addresses.admin_ipv4} ")][0]
    forged = tmp_path / "known_hosts"
    forged.write_text(f"{hyp1.addresses.admin_ipv4} {hyp2_key}\n")
    with pytest.raises(paramiko.BadHostKeyException):
        lab_ssh(lab, hyp1, known_hosts=forged)
    forged.write_text("")
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        lab_ssh(lab, hyp1, known_hosts=forged)


def test_known_hosts_names_an_address_bare_on_port_22_and_bracketed_elsewhere() -> None:
    assert known_host_name("192.0.2.11") == "192.0.2.11"
    assert known_host_name("2001:db8:0:100::1") == "2001:db8:0:100::1"
    assert known_host_name("2001:db8:0:100::1", 2222) == "[2001:db8:0:100::1]:2222"


def test_a_host_on_another_ssh_port_is_known_by_address_and_port(lab: Lab) -> None:
    with lab.extra_host(ssh_port=2222) as host:
        assert f"[{host.addresses.admin_ipv6}]:2222 ssh-ed25519 " in lab.known_hosts.read_text()
        for address in (host.addresses.admin_ipv4, host.addresses.admin_ipv6):
            with lab_ssh(lab, host, address) as client:
                assert ssh_run(client, "hostname") == host.name
        assert inventory.load(str(lab.inventory_path)).get(host.name).port == 2222


def test_sshd_accepts_keys_only(lab: Lab) -> None:
    host = lab.hosts[0]
    client = paramiko.SSHClient()
    client.load_host_keys(str(lab.known_hosts))
    with pytest.raises(paramiko.AuthenticationException):
        client.connect(str(host.addresses.admin_ipv4), username="root", password="root",
                       look_for_keys=False, allow_agent=False, timeout=10)


def test_docker_answers_in_each_host_with_its_own_data_root(lab: Lab) -> None:
    ids = set()
    for host in lab.hosts:
        with closing(host.docker_client()) as client:
            info = client.info()
            tags = {t for image in client.images.list() for t in image.tags}
        assert (info["Name"], info["DockerRootDir"]) == (host.name, "/srv/docker")
        assert (host.srv_dir / "docker" / "overlay2").is_dir()
        assert "aegir-lab/busybox:latest" in tags
        ids.add(info["ID"])
    assert len(ids) == len(lab.hosts)


def test_docker_and_compose_answer_over_ssh_at_the_stock_socket(lab: Lab) -> None:
    host = lab.hosts[1]
    with lab_ssh(lab, host) as client:
        assert ssh_run(client, "docker info --format '{{.Name}} {{.DockerRootDir}}'") == f"{host.name} /srv/docker"
        assert ssh_run(client, "docker compose version --short").startswith("2.")


def test_a_busybox_container_answers_http_on_its_bridge_and_on_its_global_ipv6(lab: Lab) -> None:
    host = lab.hosts[0]
    with closing(host.docker_client()) as client:
        container = client.containers.run(
            "aegir-lab/busybox:latest", ["sh", "-c", "echo hello from $(hostname) > /var/www/index.html; "
                                         "exec httpd -f -p 80 -h /var/www"],
            hostname="web", detach=True, remove=True)
        try:
            container.reload()
            net = container.attrs["NetworkSettings"]
            url = f"http://{net['IPAddress']}/"
            page = eventually(lambda: host.run(["busybox", "wget", "-q", "-O", "-", url]).stdout)
            assert page == "hello from web\n"
            assert ipaddress.IPv6Address(net["GlobalIPv6Address"]) in host.addresses.containers_ipv6
            from_internet = lab.client.run(["busybox", "wget", "-q", "-O", "-",
                                            f"http://[{net['GlobalIPv6Address']}]/"]).stdout
            assert from_internet == "hello from web\n"
        finally:
            container.stop(timeout=5)


def test_the_client_reaches_every_service_address(lab: Lab) -> None:
    for host in lab.hosts:
        for address in (host.addresses.service_ipv4, host.addresses.service_ipv6):
            lab.client.run(["ping", "-c", "1", "-W", "2", str(address)])


def test_hosts_reach_the_internet_through_the_client(lab: Lab) -> None:
    host = lab.hosts[2]
    host.run(["ping", "-c", "1", "-W", "2", str(lab.names.client_ipv4)])
    host.run(["ping", "-c", "1", "-W", "2", "2001:db8:ff::200"])


def test_the_generated_inventory_is_accepted_by_aegir(lab: Lab) -> None:
    inv = inventory.load(str(lab.inventory_path))
    assert inv.names == tuple(h.name for h in lab.hosts)
    for host, entry in zip(lab.hosts, inv, strict=True):
        assert (entry.address, entry.user, entry.port) == (str(host.addresses.admin_ipv4), "root", 22)
        assert entry.docker_start == host.docker_start
        assert (entry.identity, entry.known_hosts) == (str(lab.identity), str(lab.known_hosts))
        assert entry.service_ipv6 == (host.addresses.service_ipv6,)
        assert entry.admin_ipv6 in entry.ipv6_prefix
    assert inv.groups == {"lab": inv.names}


def test_docker_started_over_ssh_survives_the_session_and_restarts(lab: Lab) -> None:
    host = lab.hosts[2]
    with closing(host.docker_client()) as client:
        client.containers.run("aegir-lab/busybox:latest", ["sleep", "600"], name="survivor", detach=True,
                              restart_policy={"Name": "always"})
    host.stop_docker()
    assert not host.docker_running()
    with lab_ssh(lab, host) as client:
        ssh_run(client, " ".join(host.docker_start))
    assert host.docker_running()
    with closing(host.docker_client()) as client:
        survivor = client.containers.get("survivor")
        assert survivor.status == "running"
        survivor.remove(force=True)


def test_sshd_can_be_stopped_and_started(lab: Lab) -> None:
    host = lab.hosts[1]
    host.stop_sshd()
    try:
        with pytest.raises(paramiko.ssh_exception.NoValidConnectionsError):
            lab_ssh(lab, host)
    finally:
        host.start_sshd()
    with lab_ssh(lab, host) as client:
        assert ssh_run(client, "hostname") == host.name


def test_the_loop_variant_starts_unmounted_and_mounts_srv_from_fstab(lab: Lab) -> None:
    with lab.extra_host(srv="loop") as host:
        assert host.run(["mountpoint", "-q", "/srv"], check=False).returncode != 0
        assert not host.docker_running()
        with pytest.raises(CommandFailed, match="/srv is not mounted"):
            host.start_docker()
        with pytest.raises(LabError, match="/srv is not mounted"):
            host.write("stray.txt", "would land in this machine's /srv")
        host.run(["mount", "/srv"])
        assert host.srv_mounted()
        host.write("kept.txt", "on the image")
        assert not Path("/srv/kept.txt").exists() and not Path("/srv/stray.txt").exists()
        source, fstype = host.run(["findmnt", "-n", "-o", "SOURCE,FSTYPE", "/srv"]).stdout.split()
        assert (source, fstype) == (host.loop_device, "ext4")
        assert loop_devices()[source] == str(host.srv_dir)
        host.start_docker()
        with closing(host.docker_client()) as client:
            assert client.info()["DockerRootDir"] == "/srv/docker"
        with lab_ssh(lab, host) as session:
            assert ssh_run(session, "hostname") == host.name
        assert host.name in inventory.load(str(lab.inventory_path)).names
        record = (host.init, host.loop_device, host.addresses)
    init, loop, addresses = record
    assert not init.alive()
    assert loop not in loop_devices()
    assert addresses.netns not in subprocess.run(["ip", "netns"], capture_output=True, text=True).stdout
    assert not Path(f"/sys/class/net/{addresses.veth}").exists()
    assert str(addresses.first64) not in subprocess.run(["ip", "-6", "route"], capture_output=True, text=True).stdout
    assert str(addresses.first64) not in lab.client.run(["ip", "-6", "route"]).stdout
    assert addresses.name not in inventory.load(str(lab.inventory_path)).names


def test_state_json_records_what_teardown_needs(lab: Lab) -> None:
    state = json.loads((lab.workdir / "state.json").read_text())
    assert state["prefix"] == lab.prefix and state["owner"] == os.getpid()
    assert [h["init"]["pid"] for h in state["hosts"]] == [h.pid for h in lab.hosts]
    assert {h["netns"] for h in state["hosts"]} == {h.addresses.netns for h in lab.hosts}


# -- runs last: the session lab is stopped first, these start labs of their own --------------


@pytest.fixture
def lab_lock(no_lab: None) -> Iterator[MachineLock]:
    """The machine's lab lock, held by this test, so no other session ends its labs under it."""
    lock = MachineLock()
    lock.acquire(wait=900)
    yield lock
    lock.release()


def _lab_cli(lock: MachineLock, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m tests.lab ARGS``, sharing this test's lab lock."""
    env, fds = lock.lend()
    return subprocess.run([sys.executable, "-m", "tests.lab", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=True, env={**os.environ, **env}, pass_fds=fds)


def _pids_of(state: LabState) -> list[ProcId]:
    """The inits and every daemon they started, as recorded."""
    found = [h.init for h in state.hosts if h.init]
    for h in state.hosts:
        for pidfile in ("docker.pid", "sshd.pid"):
            path = Path(h.dir) / pidfile
            if path.exists() and (proc := ProcId.of(int(path.read_text()))):
                found.append(proc)
    return found


@pytest.mark.lab_exclusive
def test_up_then_down_by_hand_leaves_nothing_behind(lab_lock: MachineLock, tmp_path: Path) -> None:
    workdir = tmp_path / "lab"
    up = _lab_cli(lab_lock, "up", "-n", "2", "--prefix", "aegirhand", "--workdir", str(workdir))
    assert "AEGIR_INVENTORY=" in up.stdout and "inv disk.report" in up.stdout
    state = LabState.load(workdir)
    assert state is not None and [h.name for h in state.hosts] == ["hyp1", "hyp2"]
    pids = _pids_of(state)
    assert len(pids) == 6 and all(p.alive() for p in pids)
    assert "hyp2" in _lab_cli(lab_lock, "status", "--prefix", "aegirhand", "--workdir", str(workdir)).stdout
    _lab_cli(lab_lock, "down", "--prefix", "aegirhand", "--workdir", str(workdir))
    assert [p for p in pids if p.alive()] == []
    assert leftovers("aegirhand", workdir) == []


@pytest.mark.lab_exclusive
def test_a_crashed_lab_is_ended_by_the_next_start_even_without_its_state(lab_lock: MachineLock,
                                                                         tmp_path: Path) -> None:
    workdir = tmp_path / "lab"
    _lab_cli(lab_lock, "up", "-n", "2", "--prefix", "aegircrash", "--workdir", str(workdir), "--loop", "hyp2")
    state = LabState.load(workdir)
    assert state is not None
    busy = state.hosts[1]  # loop variant: mount it, start Docker and a container, as a test would
    enter = ["nsenter", "-t", str(busy.init.pid), "-n", "-m", "-u", "--"]
    subprocess.run([*enter, "mount", "/srv"], check=True)
    subprocess.run([*enter, f"{busy.dir}/bin/start-docker"], check=True)
    subprocess.run([*enter, "docker", "load", "-i", str(next(Path("/var/cache/aegir-lab").glob("*busybox*.tar")))],
                   check=True, capture_output=True)
    subprocess.run([*enter, "docker", "run", "-d", "aegir-lab/busybox", "sleep", "600"], check=True,
                   capture_output=True)
    pids = _pids_of(state)
    (workdir / "state.json").unlink()  # the crash also lost the state: only names are left to go by

    with Lab.start(1, prefix="aegircrash", workdir=workdir) as fresh:
        assert [p for p in pids if p.alive()] == []
        assert busy.loop_device not in loop_devices()
        assert [h.name for h in fresh.hosts] == ["hyp1"]
        assert fresh.hosts[0].run(["hostname"]).stdout.strip() == "hyp1"
        new_pids = _pids_of(LabState.load(workdir))
    assert [p for p in new_pids if p.alive()] == []
    assert leftovers("aegircrash", workdir) == []
    assert not workdir.exists()

