"""net.keys, net.mesh and net.check end to end: the session lab's three hosts, each running strongSwan's
charon in its own network namespace, with its own /etc/swanctl and vici socket (its own /run).

The lab's kernel has no ESP (CONFIG_INET_ESP is off: the kernel refuses `ip xfrm state add ... proto esp`),
so each charon keeps its SAs itself (the kernel-libipsec plugin: a TUN device, routes in table 220) and
sends ESP inside UDP/4500 (RFC 3948; the lab inventory says ``mesh: {encap: true}``). The capture on
the lab bridge therefore counts ESP-in-UDP packets (UDP/4500 whose first four bytes, the SPI, are not
zero); everything else aegir does (files, keys, swanctl, the SAs, the checks) is what a real host does.

The tests run in order and build on each other: no key -> keys -> --dry -> apply -> again -> capture ->
charon stopped on hyp2 -> nothing secret anywhere.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from aegir import inventory
from aegir.net import mesh as mesh_plan
from aegir.net import settings
from tests.helpers import run_inv
from tests.lab import Lab, LabHost

IMAGE = "aegir-lab/busybox:latest"
PROBE = "meshprobe"
KEY = "/etc/swanctl/private/aegir.key"
CONF = "/etc/swanctl/conf.d/aegir-mesh.conf"
ETH_P_ALL = 0x0003
SOL_PACKET, PACKET_ADD_MEMBERSHIP, PACKET_MR_PROMISC = 263, 1, 1

pytestmark = pytest.mark.skipif(not Path("/etc/swanctl").is_dir() or shutil.which("charon-systemd") is None,
                                reason="strongSwan (strongswan-swanctl, charon-systemd) is not installed")


class Sampler:
    """Every distinct /proc/*/cmdline of this machine (the lab's hosts share its pid namespace), read in a loop."""

    def __init__(self) -> None:
        self.seen: set[bytes] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.rounds = 0

    def _run(self) -> None:
        while not self._stop.is_set():
            for entry in os.scandir("/proc"):
                if entry.name.isdigit():
                    try:
                        with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                            self.seen.add(f.read())
                    except OSError:
                        continue
            self.rounds += 1
            time.sleep(0.003)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class Runs:
    """What the module's runs printed, and the command lines seen meanwhile (for the last test)."""

    outputs: list[str] = []
    cmdlines: set[bytes] = set()
    started = time.time()


def inv(lab: Lab, *args: str, timeout: float = 180) -> tuple[int, str, str]:
    with Sampler() as sampler:
        done = run_inv(*args, inventory=lab.inventory_path, timeout=timeout)
    Runs.outputs += [done.stdout, done.stderr]
    Runs.cmdlines |= sampler.seen
    return done.returncode, done.stdout, done.stderr


def check(lab: Lab) -> tuple[int, dict]:
    code, out, err = inv(lab, "net.check", "-f", "json", timeout=120)
    assert code in (0, 1), out + err
    return code, json.loads(out)


def wait_all_up(lab: Lab, seconds: float = 60) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        code, report = check(lab)
        if code == 0 and all(p["reach"] == "yes" for p in report["pairs"]):
            return report
        if time.monotonic() > deadline:
            raise AssertionError(f"pairs not up after {seconds:.0f} s: {json.dumps(report['pairs'], indent=1)}")
        time.sleep(1)


def swanctl_conns(host: LabHost) -> str:
    return host.run(["swanctl", "--list-conns"], check=False).stdout


def libipsec_sources(lab: Lab, host: LabHost) -> list[str]:
    """One address of `host` in each network its tunnels carry (`LabHost.start_charon` says why)."""
    inv = inventory.load(str(lab.inventory_path))
    carried = mesh_plan.carried(inv.get(host.name), settings.for_host(inv, inv.get(host.name)))
    return [str(n[-2]) for n in carried]


@pytest.fixture(scope="module")
def mesh(lab: Lab) -> Iterator[list[LabHost]]:
    """charon and a busybox container on each host; everything net.* left is removed afterwards."""
    hosts = [lab.host(n) for n in ("hyp1", "hyp2", "hyp3")]
    sources = {h.name: libipsec_sources(lab, h) for h in hosts}
    try:
        for h in hosts:
            h.run(["docker", "rm", "-f", PROBE], check=False)
            h.run(["docker", "run", "-d", "--name", PROBE, IMAGE, "sleep", "3600"])
            h.start_charon(sources[h.name])
        yield hosts
    finally:
        for h in hosts:
            h.stop_charon()
            for a in sources[h.name]:
                h.run(["ip", "-6", "addr", "del", f"{a}/128", "dev", "lo"], check=False)
            h.run(["docker", "rm", "-f", PROBE], check=False)
            for d in ("conf.d", "pubkey", "private"):
                for f in (h.paths.swanctl / d).glob("aegir*"):
                    f.unlink()


def probe_ipv6(host: LabHost) -> str:
    return host.run(["docker", "inspect", "-f", "{{.NetworkSettings.GlobalIPv6Address}}", PROBE]).stdout.strip()


def test_mesh_is_refused_while_a_host_has_no_key(lab, mesh):
    code, out, err = inv(lab, "net.mesh")
    assert code == 1, out + err
    assert "hyp1, hyp2, hyp3 has no IKE key pair yet: run `inv -H hyp1,hyp2,hyp3 net.keys` first" in err


def test_keys_are_made_on_each_host_once(lab, mesh):
    code, out, err = inv(lab, "net.keys", "-f", "json")
    assert code == 0, out + err
    report = json.loads(out)
    assert report["summary"]["made"] == 3
    assert all(h["fingerprint"].startswith("SHA256:") for h in report["hosts"])
    for h in mesh:
        key = h.root(KEY)
        assert key.stat().st_mode & 0o777 == 0o600
        assert "PRIVATE KEY-----" in key.read_text()
    again, out2, err2 = inv(lab, "net.keys", "-f", "json")
    assert again == 0, out2 + err2
    assert [h["result"] for h in json.loads(out2)["hosts"]] == ["ok", "ok", "ok"]
    assert [h["fingerprint"] for h in json.loads(out2)["hosts"]] == [h["fingerprint"] for h in report["hosts"]]


def test_a_tunnel_that_would_carry_an_admin_address_is_refused_on_every_host(lab, mesh, tmp_path):
    data = lab.inventory_data(lab.hosts)
    admin = lab.host("hyp3").addresses.admin_ipv4
    data["hosts"]["hyp1"]["mesh"] = {"carry": [f"{admin}/32"]}
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(data))
    done = run_inv("net.mesh", inventory=path, timeout=120)
    Runs.outputs += [done.stdout, done.stderr]
    assert done.returncode == 1, done.stdout + done.stderr
    assert (f"net.mesh: refused, a tunnel would carry an SSH path: hyp1: traffic selector {admin}/32 (hyp1's) "
            f"holds hyp3's admin address {admin}") in done.stderr
    for h in mesh:
        assert not h.root(CONF).exists()


def test_dry_shows_the_diff_and_changes_nothing(lab, mesh):
    code, out, err = inv(lab, "--dry", "net.mesh")
    assert code == 0, out + err
    assert "+connections {" in out and "+  aegir-hyp3 {" in out and "+-----BEGIN PUBLIC KEY-----" in out
    assert "stopped before acting; nothing was changed" in err
    for h in mesh:
        assert not h.root(CONF).exists()
        assert not list((h.paths.swanctl / "pubkey").glob("aegir-*"))
        assert "aegir-" not in swanctl_conns(h)


def test_apply_brings_every_pair_up(lab, mesh):
    code, out, err = inv(lab, "net.mesh", "-f", "json")
    assert code == 0, out + err
    report = json.loads(out)
    assert [h["result"] for h in report["hosts"]] == ["done", "done", "done"]
    assert sorted(report["hosts"][0]["loaded"]) == ["aegir-hyp2", "aegir-hyp3"]
    up = wait_all_up(lab)
    assert [tuple(p["pair"]) for p in up["pairs"]] == [("hyp1", "hyp2"), ("hyp1", "hyp3"), ("hyp2", "hyp3")]
    assert all(p["sa"] == "up" and p["esp_packets"] >= 1 for p in up["pairs"])
    table = inv(lab, "net.check")[1]
    assert "hyp1 <-> hyp3" in table and "3 pair(s) up" in table


def test_applying_again_changes_nothing(lab, mesh):
    before = {h.name: {p: h.root(p).stat().st_mtime_ns for p in (CONF, "/etc/swanctl/pubkey/aegir-hyp2.pub")}
              for h in mesh}
    code, out, err = inv(lab, "net.mesh", "-f", "json")
    assert code == 0, out + err
    assert [h["result"] for h in json.loads(out)["hosts"]] == ["ok", "ok", "ok"]
    assert {h.name: {p: h.root(p).stat().st_mtime_ns for p in before[h.name]} for h in mesh} == before
    code, out, err = inv(lab, "net.mesh")
    assert code == 0 and out.count("nothing to do") == 3, out + err


def capture(bridge: str, seconds: float, frames: list[bytes], ready: threading.Event) -> None:
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)) as s:
        s.bind((bridge, 0))
        # promiscuous: the bridge then hands up a copy of the frames it forwards between the hosts' ports too
        mreq = struct.pack("iHH8s", socket.if_nametoindex(bridge), PACKET_MR_PROMISC, 0, b"")
        s.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
        s.settimeout(0.2)
        ready.set()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                frames.append(s.recv(65535))
            except TimeoutError:
                continue


def ip_packet(frame: bytes) -> tuple[str, str, int, bytes] | None:
    """(source, destination, protocol, payload) of an Ethernet frame's IPv4/IPv6 packet (no extension headers)."""
    kind = struct.unpack("!H", frame[12:14])[0]
    if kind == 0x86DD:
        return (socket.inet_ntop(socket.AF_INET6, frame[22:38]), socket.inet_ntop(socket.AF_INET6, frame[38:54]),
                frame[20], frame[54:])
    if kind == 0x0800:
        ihl = (frame[14] & 0x0F) * 4
        return (socket.inet_ntop(socket.AF_INET, frame[26:30]), socket.inet_ntop(socket.AF_INET, frame[30:34]),
                frame[23], frame[14 + ihl:])
    return None


def test_a_container_reaches_a_container_of_another_host_only_inside_esp(lab, mesh):
    hyp1, _, hyp3 = mesh
    six1, six3 = probe_ipv6(hyp1), probe_ipv6(hyp3)
    assert six3.startswith(str(hyp3.addresses.containers_ipv6.network_address)[:-1])
    frames: list[bytes] = []
    ready = threading.Event()
    t = threading.Thread(target=capture, args=(lab.names.bridge, 6.0, frames, ready))
    t.start()
    ready.wait(5)
    try:
        pinged = hyp1.run(["docker", "exec", PROBE, "ping", "-6", "-c", "3", "-W", "2", six3], check=False)
    finally:
        t.join()
    assert pinged.returncode == 0, pinged.stdout + pinged.stderr
    admins = {str(a) for h in (hyp1, hyp3) for a in (h.addresses.admin_ipv4, h.addresses.admin_ipv6)}
    clear, esp = [], 0
    for frame in frames:
        packet = ip_packet(frame)
        if packet is None:
            continue
        src, dst, proto, payload = packet
        if {src, dst} & {six1, six3}:
            clear.append(f"{src} -> {dst} proto {proto}")
        elif {src, dst} <= admins and src != dst:
            if proto == 50 or (proto == 17 and 4500 in struct.unpack("!HH", payload[:4])
                               and payload[8:12] != b"\0\0\0\0"):
                esp += 1
    assert clear == [], "the containers' packets crossed the bridge in clear"
    assert esp >= 6, f"{esp} ESP packets between hyp1 and hyp3 for 3 echo requests and their replies"


def test_charon_stopped_on_hyp2_downs_its_two_pairs(lab, mesh):
    hyp2 = mesh[1]
    hyp2.stop_charon()
    try:
        code, report = check(lab)
        assert code == 1
        down = {tuple(p["pair"]): p["reason"] for p in report["pairs"] if p["down"]}
        assert set(down) == {("hyp1", "hyp2"), ("hyp2", "hyp3")}
        assert all(re.match(r"hyp2: charon does not answer: ", why) for why in down.values()), down
        assert [p["reach"] for p in report["pairs"] if tuple(p["pair"]) == ("hyp1", "hyp3")] == ["yes"]
        assert report["summary"]["down"] == 2
        code, out, err = inv(lab, "net.check")
        assert code == 1 and "2 of 3 pair(s) down" in out, out + err
    finally:
        hyp2.start_charon()  # its addresses on lo are still there
    wait_all_up(lab, 90)


def test_no_private_key_in_any_output_argv_or_operator_file(lab, mesh):
    bodies = []
    for h in mesh:
        text = h.root(KEY).read_text()
        body = "".join(ln for ln in text.splitlines() if ln and not ln.startswith("-----"))
        bodies += [body[i:i + 48] for i in range(0, len(body) - 48, 480)]
    assert len(bodies) >= 3 * 4
    printed = "\n".join(Runs.outputs)
    assert "PRIVATE KEY" not in printed and not [b for b in bodies if b in printed]
    assert Runs.cmdlines, "the sampler saw no command line"
    argv = b"\n".join(Runs.cmdlines)
    assert b"PRIVATE KEY" not in argv and not [b for b in bodies if b.encode() in argv]
    # the operator's side: every file written since the module started, outside the hosts' own /etc/swanctl
    hosts_dirs = [str(h.paths.swanctl) for h in mesh]
    found = []
    for top in ("/tmp", os.path.expanduser("~"), str(Path(__file__).parents[1])):
        for root, dirs, files in os.walk(top):
            if any(root.startswith(d) for d in hosts_dirs):
                dirs[:] = []
                continue
            for name in files:
                path = os.path.join(root, name)
                try:
                    st = os.lstat(path)
                    if not os.path.isfile(path) or st.st_mtime < Runs.started or st.st_size > 4 << 20:
                        continue
                    data = Path(path).read_bytes()
                except OSError:
                    continue
                if b"PRIVATE KEY-----" in data and any(b.encode() in data for b in bodies):
                    found.append(path)
    assert found == []
