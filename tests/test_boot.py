"""boot.* end to end in the lab, over real SSH, on a host whose /srv is a loop-mounted ext4 image.

The host `vault` is added with ``srv="loop"``: its /srv is an ext4 image on a
loop device, listed in its private /etc/fstab, and it starts unmounted with
Docker stopped, like a hypervisor after a reboot. Before the tests, its /srv
is given the runbook's six folders and three Compose projects (core/front,
apps/blog, apps/wiki) that run with ``restart: always``, so they come back
when Docker starts; then Docker is stopped and /srv unmounted again.

The inventory's ``docker_start`` for `vault` wraps the lab's start script so
that every call is recorded in a file: a refusal is proved by that file
staying empty, not only by the message.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from aegir.boot.plan import guard_dropin
from tests.helpers import REPO, ProcScan, read_table, run_inv, run_inv_on_tty
from tests.test_luks import ITERATIONS

COMPOSE = """\
services:
  web:
    image: aegir-lab/busybox:latest
    command: ["httpd", "-f", "-p", "8080"]
    restart: always
"""
PROJECTS = ("core/front", "apps/blog", "apps/wiki")


def srv_mounted(host) -> bool:
    return host.run(["mountpoint", "-q", "/srv"], check=False).returncode == 0


def make_down(host) -> None:
    """The state after a reboot: Docker stopped, /srv unmounted."""
    if host.docker_running():
        host.stop_docker()
    if srv_mounted(host):
        host.run(["umount", "/srv"])
    assert not srv_mounted(host) and not host.docker_running()


@pytest.fixture(scope="module")
def vault(lab):
    host = lab.add_host("vault", srv="loop")
    try:
        host.run(["mount", "/srv"])
        host.run(["mkdir", "-p", *(f"/srv/{d}" for d in ("conf", "docker", "templates", "users", *PROJECTS))])
        for project in PROJECTS:
            host.write(f"{project}/docker-compose.yml", COMPOSE)
        host.start_docker()
        for project in PROJECTS:
            host.run(["sh", "-c", 'cd "$1" && docker compose up -d --quiet-pull', "sh", f"/srv/{project}"], timeout=120)
        make_down(host)
        yield host
    finally:
        lab.remove_host(host)


@pytest.fixture(scope="module")
def inventory(lab, vault, tmp_path_factory) -> tuple[Path, Path]:
    """(hosts.yml with `vault` only, the file recording each docker_start call)."""
    here = tmp_path_factory.mktemp("boot")
    starts = here / "docker-starts"
    starts.write_text("")
    data = lab.inventory_data([vault])
    data["hosts"]["vault"]["docker_start"] = ["sh", "-c", 'echo start >> "$1" && exec "$2"', "sh", str(starts),
                                              *vault.docker_start]
    path = here / "hosts.yml"
    path.write_text(yaml.safe_dump(data))
    return path, starts


def inv(inventory, *args: str):
    res = run_inv("-H", "vault", *args, "--format", "json", inventory=inventory[0])
    return res, (json.loads(res.stdout) if res.stdout.strip() else None)


def one(data) -> dict:
    [host] = data["hosts"]
    return host


def test_boot_docker_refuses_while_srv_is_not_mounted_and_docker_stays_stopped(vault, inventory):
    make_down(vault)
    res, data = inv(inventory, "boot.docker")
    assert res.returncode == 1
    assert one(data)["error"] == (
        "not starting Docker: mount: /srv is not a mount point (run boot.mount); folders: /srv is not mounted; "
        "free: /srv is not mounted. Starting it now would write application data to the unencrypted root disk; "
        "run boot.mount and boot.check first")
    assert inventory[1].read_text() == ""  # docker_start was never called
    assert not vault.docker_running() and not srv_mounted(vault)


def test_no_probe_connects_to_dockers_socket_while_no_dockerd_runs(vault, inventory):
    """On Debian, docker.socket stays enabled after `systemctl disable docker`: the first connection to
    /run/docker.sock starts Docker, on an unmounted /srv too. systemd does not run in the lab, so a
    listener on vault's /run/docker.sock stands for that socket and records every connection."""
    make_down(vault)
    pid = vault.run(["sh", "-c", 'socat UNIX-LISTEN:/run/docker.sock,fork SYSTEM:"echo hit >> /run/docker-sock-hits" '
                     '</dev/null >/dev/null 2>&1 & echo $!; i=0; while [ ! -S /run/docker.sock ] && [ $i -lt 50 ]; '
                     'do i=$((i + 1)); sleep 0.1; done']).stdout.strip()
    try:
        check, data = inv(inventory, "boot.check")
        docker, _ = inv(inventory, "boot.docker", "--dry")
        status, status_data = inv(inventory, "boot.status")
        hits = vault.run(["sh", "-c", "cat /run/docker-sock-hits 2>/dev/null; :"]).stdout
        vault.run(["sh", "-c", "echo | socat - UNIX-CONNECT:/run/docker.sock; sleep 0.2"])
        heard = vault.run(["cat", "/run/docker-sock-hits"]).stdout
    finally:
        vault.run(["kill", pid], check=False)
        vault.run(["rm", "-f", "/run/docker.sock", "/run/docker-sock-hits"])
    assert hits == "" and heard == "hit\n"  # nothing connected, and the listener did hear a connection
    assert check.returncode == docker.returncode == status.returncode == 1
    assert "data-root" in {i["name"] for i in one(data)["items"]}
    assert status_data["hosts"][0]["error"] == "/srv is not mounted: run boot.mount"  # the first thing to do
    assert inventory[1].read_text() == ""


def test_mount_check_docker_status_bring_a_stopped_host_up_and_a_second_boot_all_does_nothing(vault, inventory):
    make_down(vault)

    res, data = inv(inventory, "boot.mount")
    assert res.returncode == 0, res.stdout + res.stderr
    mount = one(data)["result"]
    assert (mount["state"], mount["detail"]) == ("done", f"mounted /srv ({vault.loop_device}, ext4)")
    assert mount["commands"] == ["mount /srv"]
    assert srv_mounted(vault)
    plan = res.stderr.split("Plan:\n", 1)[1]  # shown before acting (on stderr: stdout is the JSON)
    assert "vault  mount  would" in plan and "would run: mount /srv" in plan
    again = run_inv("-H", "vault", "boot.mount", inventory=inventory[0])
    assert again.returncode == 0 and "Plan:" not in again.stdout + again.stderr  # nothing to do: no plan
    assert "/srv is already mounted" in again.stdout

    res, data = inv(inventory, "boot.check")
    assert res.returncode == 0, res.stdout + res.stderr
    assert {i["name"]: i["status"] for i in one(data)["items"]} == {
        "mount": "ok", "folders": "ok", "data-root": "warning", "free": "ok"}  # Docker stopped: data-root unknown
    assert one(data)["items"][0]["detail"] == f"/srv is mounted from {vault.loop_device} = {vault.paths.srv_image} (ext4)"

    res, data = inv(inventory, "boot.docker")  # the lab's daemon.json is not /etc/docker/daemon.json
    assert res.returncode == 1 and one(data)["error"].startswith(
        "not starting Docker: its data-root cannot be shown to be on /srv before it runs"), res.stdout + res.stderr
    assert inventory[1].read_text() == "" and not vault.docker_running()
    res, data = inv(inventory, "boot.docker", "--unknown-data-root")
    assert res.returncode == 0, res.stdout + res.stderr
    docker = one(data)["result"]
    assert docker["state"] == "done" and docker["detail"].endswith("data-root /srv/docker)")
    assert inventory[1].read_text() == "start\n"
    assert f"would run: {docker['commands'][0]}" in res.stderr.split("Plan:\n", 1)[1]
    assert vault.docker_running()

    res, data = inv(inventory, "boot.status")
    assert res.returncode == 0, res.stdout + res.stderr
    [host] = data["hosts"]
    assert host["ok"] is True
    assert [(p["kind"], p["name"], p["state"]) for p in host["projects"]] == [
        ("core", "front", "up"), ("apps", "blog", "up"), ("apps", "wiki", "up")]

    res, data = inv(inventory, "boot.all")
    assert res.returncode == 0, res.stdout + res.stderr
    host = one(data)
    assert host["verdict"] == "vault: up, nothing to do (everything was already up)"
    assert [(s["step"], s["state"]) for s in host["steps"]] == [
        ("unlock", "skipped"), ("mount", "ok"), ("check", "ok"), ("docker", "ok"), ("status", "ok")]
    assert inventory[1].read_text() == "start\n"  # Docker was not started again


def test_boot_all_from_a_reboot_dry_changes_nothing_then_brings_everything_up(vault, inventory):
    make_down(vault)

    res = run_inv("-H", "vault", "boot.all", "--dry", "--unknown-data-root", inventory=inventory[0])
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.splitlines()[-1] == "vault: would run mount, check, docker, status (dry run: nothing changed)"
    assert "would run: mount /srv" in res.stdout
    assert not srv_mounted(vault) and not vault.docker_running()

    starts = inventory[1].read_text().count("start")
    res = run_inv("-H", "vault", "boot.all", "--unknown-data-root", inventory=inventory[0])
    assert res.returncode == 0, res.stdout + res.stderr
    verdict = res.stdout.splitlines()[-1]
    assert verdict.startswith(f"vault: up; mounted /srv ({vault.loop_device}, ext4); started Docker (answered after ")
    assert "3/3 projects up on 1/1 hosts" in res.stdout
    lines = res.stdout.splitlines()
    front, blog = (next(i for i, ln in enumerate(lines) if name in ln and "up" in ln) for name in ("front", "blog"))
    assert front < blog  # core first
    assert inventory[1].read_text().count("start") == starts + 1


def test_boot_all_stops_a_host_at_its_first_failure(vault, inventory, tmp_path):
    make_down(vault)
    vault.run(["mount", "/srv"])
    vault.run(["mv", "/srv/templates", "/srv/templates.away"])
    vault.run(["umount", "/srv"])
    try:
        res, data = inv(inventory, "boot.all")
    finally:
        vault.run(["mv", "/srv/templates.away", "/srv/templates"])
    assert res.returncode == 1
    host = one(data)
    assert host["verdict"] == "vault: STOPPED at check: folders: missing in /srv: templates"
    assert [(s["step"], s["state"]) for s in host["steps"]] == [
        ("unlock", "skipped"), ("mount", "done"), ("check", "failed")]
    assert not vault.docker_running()


def test_after_a_reboot_docker_starts_behind_a_firewall_that_publishes_nothing(vault, inventory):
    """The kernel forgets the ruleset at a reboot; containers with `restart: always` come back with
    Docker, and with --ip6tables=false their global IPv6 would be open until fw.watch applies. On a
    host whose firewall aegir manages, boot.docker loads aegir's ruleset with no container published
    first; fw.apply then publishes what runs."""
    make_down(vault)
    assert inv(inventory, "boot.mount")[0].returncode == 0
    res, data = inv(inventory, "boot.docker", "--unknown-data-root")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "firewall" not in one(data)["result"]["detail"]  # aegir does not manage its firewall yet
    vault.run(["docker", "run", "-d", "--name", "pub", "--restart", "always", "-p", "8081:80",
               "aegir-lab/busybox:latest", "httpd", "-f", "-p", "80"])
    dnat4 = ["nft", "list", "map", "inet", "aegir", "dnat4"]
    try:
        assert run_inv("-H", "vault", "fw.apply", inventory=inventory[0]).returncode == 0
        assert ". tcp . 8081 :" in vault.run(dnat4).stdout

        make_down(vault)  # a reboot: Docker stopped, /srv unmounted, and no ruleset in the kernel
        vault.run(["nft", "delete", "table", "inet", "aegir"])
        assert inv(inventory, "boot.mount")[0].returncode == 0
        res, data = inv(inventory, "boot.docker", "--dry", "--unknown-data-root")
        planned = one(data)["result"]
        assert planned["detail"].endswith("; first aegir's firewall with no container published")
        assert planned["commands"][0] == "nft -f /srv/conf/aegir-fw/candidate.nft"
        assert vault.run(dnat4, check=False).returncode != 0  # --dry loaded nothing

        res, data = inv(inventory, "boot.docker", "--unknown-data-root")
        assert res.returncode == 0, res.stdout + res.stderr
        assert one(data)["result"]["detail"].endswith("; firewall loaded with no container published")
        assert vault.run(["docker", "inspect", "-f", "{{.State.Running}}", "pub"]).stdout.strip() == "true"
        assert ". tcp . 8081 :" not in vault.run(dnat4).stdout  # running, but not published yet
        assert run_inv("-H", "vault", "fw.apply", inventory=inventory[0]).returncode == 0
        assert ". tcp . 8081 :" in vault.run(dnat4).stdout
    finally:
        vault.run(["docker", "rm", "-f", "pub"], check=False)
        vault.run(["nft", "delete", "table", "inet", "aegir"], check=False)
        vault.run(["rm", "-rf", "/srv/conf/aegir-fw"], check=False)


def test_boot_all_start_brings_core_then_apps_up_and_says_what_did_not(vault, inventory):
    """Projects taken down by hand before the reboot (``restart: always`` cannot bring them back) are
    started by ``--start``, core/front first; one that cannot start (its image is not there and
    ``pull_policy: never``) is named in the step's detail and the host is not up."""
    make_down(vault)
    vault.run(["mount", "/srv"])
    vault.write("apps/broken/docker-compose.yml",
                "services:\n  x:\n    image: aegir-lab/nosuch:1\n    pull_policy: never\n")
    vault.start_docker()
    for project in ("core/front", "apps/wiki"):
        vault.run(["sh", "-c", 'cd "$1" && docker compose down', "sh", f"/srv/{project}"], timeout=60)
    make_down(vault)
    try:
        dry = run_inv("-H", "vault", "boot.all", "--start", "--dry", "--unknown-data-root", inventory=inventory[0])
        assert dry.returncode == 0 and "start core, then apps, after the steps above" in dry.stdout
        res, data = inv(inventory, "boot.all", "--start", "--unknown-data-root")
        assert res.returncode == 1
        host = one(data)
        assert [(s["step"], s["state"]) for s in host["steps"]] == [
            ("unlock", "skipped"), ("mount", "done"), ("check", "ok"), ("docker", "done"), ("start", "failed")]
        start = host["steps"][-1]
        assert start["detail"].startswith("1 of 3 projects did not come up: apps/broken failed: exited 1: ")
        assert [c.split(" -p ")[1] for c in start["commands"]] == ["front up -d", "broken up -d", "wiki up -d"]
        started = {p: vault.run(["sh", "-c", f"docker inspect -f '{{{{.State.StartedAt}}}}' $(docker ps -q "
                                f"--filter label=com.docker.compose.project={p})"]).stdout.strip()
                   for p in ("front", "wiki")}
        assert started["front"] < started["wiki"]  # core first
    finally:
        vault.run(["rm", "-rf", "/srv/apps/broken"])
        again, data = inv(inventory, "boot.all", "--start", "--unknown-data-root")
    assert again.returncode == 0, again.stdout + again.stderr
    assert one(data)["steps"][-2] == {"step": "start", "state": "ok", "detail": "all 3 projects already up",
                                      "commands": [], "warnings": []}


def test_the_operators_command_line_works_exactly_as_written(lab):
    """``inv -H hyp1 boot.mount``, the installed `inv` script itself, run from the repository."""
    inv_script = Path(sys.executable).with_name("inv")
    res = subprocess.run([str(inv_script), "-H", "hyp1", "boot.mount"], cwd=REPO, capture_output=True, text=True,
                         env={**os.environ, "AEGIR_INVENTORY": str(lab.inventory_path)}, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    [row] = read_table(res.stdout)  # a pipe: the table wraps at 80 columns
    host, step, state, detail = row["HOST"], row["STEP"], row["RESULT"], row["DETAIL"]
    assert (host, step, state) == ("hyp1", "mount", "ok")
    srv_dir = lab.host("hyp1").paths.srv_dir  # hyp1's /srv is a bind mount of it: DEVICE[PATH] for findmnt
    assert detail.startswith("/srv is already mounted (/dev/") and f"[{srv_dir}], " in detail

    res = run_inv("-H", "hyp1", "boot.check", "--format", "json", inventory=lab.inventory_path)
    [mount] = [i for i in json.loads(res.stdout)["hosts"][0]["items"] if i["name"] == "mount"]
    assert mount["status"] == "ok" and mount["detail"].startswith("/srv is mounted from /dev/")


def test_guard_dry_shows_the_file_then_installs_it_verified_and_twice_changes_nothing(lab, tmp_path):
    root = tmp_path / "image"
    service = root / "etc/systemd/system/docker.service.d/aegir-srv.conf"
    socket = root / "etc/systemd/system/docker.socket.d/aegir-srv.conf"

    res = run_inv("-H", "hyp1", "boot.guard", "--dry", "--root", str(root), inventory=lab.inventory_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.rstrip("\n").endswith("[Unit]\nAssertPathIsMountPoint=/srv")
    assert not root.exists()

    res = run_inv("-H", "hyp1", "boot.guard", "--root", str(root), "--format", "json", inventory=lab.inventory_path)
    assert res.returncode == 0, res.stdout + res.stderr
    [host] = json.loads(res.stdout)["hosts"]
    assert host["result"]["state"] == "done"
    assert host["result"]["detail"] == f"installed {service}, {socket}; verified by systemd-analyze"
    assert service.read_text() == socket.read_text() == guard_dropin("/srv")
    before = [(p.stat().st_ino, p.stat().st_mtime_ns) for p in (service, socket)]

    res = run_inv("-H", "hyp1", "boot.guard", "--root", str(root), "--format", "json", inventory=lab.inventory_path)
    assert res.returncode == 0, res.stdout + res.stderr
    [host] = json.loads(res.stdout)["hosts"]
    assert (host["result"]["state"], host["result"]["detail"]) == ("ok", "already installed; verified by systemd-analyze")
    assert [(p.stat().st_ino, p.stat().st_mtime_ns) for p in (service, socket)] == before


def test_the_installed_drop_in_applies_to_the_real_docker_units(lab, tmp_path):
    """systemd-analyze verify on this machine's own docker.service/.socket with the guard beside them."""
    res = run_inv("-H", "hyp1", "boot.guard", "--root", str(tmp_path / "r"), inventory=lab.inventory_path)
    assert res.returncode == 0, res.stdout + res.stderr
    units = tmp_path / "units"
    for unit in ("docker.service", "docker.socket"):
        (units / f"{unit}.d").mkdir(parents=True)
        (units / unit).write_text(Path(f"/lib/systemd/system/{unit}").read_text())
        (units / f"{unit}.d/aegir-srv.conf").write_text(
            (tmp_path / f"r/etc/systemd/system/{unit}.d/aegir-srv.conf").read_text())
    (units / "docker.socket.d/aegir-srv.conf").write_text(
        (units / "docker.socket.d/aegir-srv.conf").read_text() + "AssertPathIsMountPointt=/srv\n")  # a typo, to be seen
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", str(units / "docker.service"),
                           str(units / "docker.socket")], capture_output=True, text=True)
    lines = [ln for ln in done.stderr.splitlines() if "aegir-srv.conf" in ln]
    assert lines and all("AssertPathIsMountPointt" in ln and "docker.socket.d" in ln for ln in lines)


def test_unlock_over_ssh_asks_once_per_host_or_once_with_same_passphrase(lab, tmp_path):
    """Two hosts, each with a LUKS file as luks.device, checked with --test-passphrase over SSH.

    The remote cryptsetup runs on this machine (the lab hosts are namespaces),
    so the /proc scan covers both ends: the passphrase is in no command line
    and no environment, here or on the hosts. (No device-mapper here: see
    tests/test_luks.py for what cannot be tested and why.)
    """
    passphrase = "aegir-" + secrets.token_hex(12)
    data = lab.inventory_data([lab.host("hyp1"), lab.host("hyp2")])
    for name in ("hyp1", "hyp2"):
        image = tmp_path / f"{name}-md2.img"
        with image.open("wb") as f:
            f.truncate(16 << 20)
        subprocess.run(["cryptsetup", "luksFormat", "--batch-mode", "--type", "luks2", "--pbkdf", "pbkdf2",
                        "--pbkdf-force-iterations", ITERATIONS, "--key-file=-", str(image)],
                       input=passphrase.encode(), check=True, capture_output=True)
        data["hosts"][name]["luks"] = {"device": str(image), "name": "data"}
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(data))

    with ProcScan(passphrase, watch="cryptsetup open") as scan:
        each = run_inv_on_tty("-H", "hyp1,hyp2", "boot.unlock", "--test-passphrase", inventory=path,
                              typed=[passphrase, passphrase, passphrase])
        same = run_inv_on_tty("-H", "hyp1,hyp2", "boot.unlock", "--test-passphrase", "--same-passphrase",
                              inventory=path, typed=[passphrase, passphrase])
    assert each.returncode == 0, each.stdout + each.stderr
    assert each.screen.splitlines() == [f"hyp1: LUKS passphrase for {tmp_path}/hyp1-md2.img: ",
                                        f"hyp2: LUKS passphrase for {tmp_path}/hyp2-md2.img: "]
    assert same.returncode == 0, same.stdout + same.stderr
    assert same.screen.splitlines() == [
        f"hyp1: LUKS passphrase for {tmp_path}/hyp1-md2.img (and the next hosts: --same-passphrase): "]
    assert same.stdout.count("the passphrase opens") == 2
    for run in (each, same):
        assert passphrase not in run.stdout + run.stderr + run.screen
    assert scan.hits == []
    assert len(scan.watched) >= 4, (scan.passes, scan.watched)  # the scan caught the remote cryptsetup runs it vouches for


def test_guard_without_systemd_analyze_falls_back_to_parsing(tmp_path):
    """A host without systemd-analyze (PATH without it): the drop-ins are read back and parsed instead."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "bash", "env", "cat", "mkdir", "mv", "chmod", "dirname", "mktemp", "rm", "cp"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"hosts": {"here": {"connection": "local"}}}))
    root = tmp_path / "image"
    res = run_inv("boot.guard", "--root", str(root), "--format", "json", inventory=inventory,
                  env={"PATH": str(bin_dir)})
    assert res.returncode == 0, res.stdout + res.stderr
    [host] = json.loads(res.stdout)["hosts"]
    assert host["result"]["detail"].endswith("; parsed (systemd-analyze is not installed)")
    assert (root / "etc/systemd/system/docker.socket.d/aegir-srv.conf").read_text() == guard_dropin("/srv")
