"""update.review / announce / apply end to end, on lab hosts whose / is a Debian 12 root of their own.

Real apt, real dpkg: each host (tests/lab/debian_root.py) is an overlay of a
cached ``debootstrap`` root with docker.io, openssh-server and systemd, and
fake stage-1 packages installed; hyp4's local repositories hold their
stage-2 versions and a repacked real containerd (tests/lab/lab_packages.py);
hyp5's hold nothing newer. The fake packages never reach this machine's dpkg
database (checked at the end). systemd is not running in the hosts: their
``systemctl show`` comes from systemd's offline loader and the hosts'
processes (tests/lab/systemctl-lab.pl).

The tests run in file order on the same two hosts: review, refusals,
announcement, apply, checks.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import yaml

from aegir.action import DRY_LINE
from aegir.update.install import differences, expected_actions, install_cmd, parse_install
from tests.helpers import run_inv
from tests.lab import Lab, LabHost, debian_root, lab_packages
from tests.lab.aptrepo import FakePackage, build, write_repo

IMAGE = "aegir-lab/busybox:latest"
WEB = f"services:\n  web:\n    image: {IMAGE}\n    command: [\"httpd\", \"-f\", \"-p\", \"80\"]\n"
NOTIFY = ["sh", "-c", "cat > /var/tmp/aegir-announcement; echo delivered"]
LAB_KINDS = {
    "aegir-lab-dockdep": "docker", "containerd": "docker", "aegir-lab-beacon": "crucial",
    "linux-image-aegir-lab": "reboot", "libaegirlab-sec1": "security", "libaegirlab1": "other",
}


@pytest.fixture(scope="module")
def deb(lab: Lab, tmp_path_factory) -> dict:
    """hyp4 (upgrades waiting, a Compose app running) and hyp5 (up to date), and an inventory of both."""
    busy = debian_root.add_debian_host(lab)
    quiet = debian_root.add_debian_host(lab, upgrades=False)
    try:
        busy.write("apps/web/docker-compose.yml", WEB)
        busy.run(["sh", "-c", "cd /srv/apps/web && docker compose up -d"], timeout=60)
        data = lab.inventory_data([busy, quiet])
        data["defaults"]["update"] = {"extra_crucial_units": ["aegir-lab-beacon.service"], "notify": {"command": NOTIFY}}
        path = tmp_path_factory.mktemp("update") / "hosts.yml"
        path.write_text(yaml.safe_dump(data))
        yield {"busy": busy, "quiet": quiet, "inventory": path}
    finally:
        lab.remove_host(busy)
        lab.remove_host(quiet)


def inv(deb: dict, *args: str, inventory: Path | None = None):
    """Run the task; its JSON (with ``--format json``), checked to be the one envelope every task prints."""
    res = run_inv(*args, inventory=inventory or deb["inventory"])
    data = json.loads(res.stdout) if "--format" in args and res.stdout.strip().startswith("{") else None
    if data is not None:
        task = next(a for a in args if a.startswith("update."))
        assert (data["task"], data["dry"] is None or isinstance(data["dry"], bool)) == (task, True), data
        assert isinstance(data["summary"], dict) and all({"host", "status", "error"} <= set(h) for h in data["hosts"])
    return res, data


def dpkg_version(host: LabHost, package: str) -> str:
    return host.run(["dpkg-query", "-W", "-f", "${Version}", package]).stdout


def test_review_classifies_each_upgrade_from_real_apt_and_dpkg(deb):
    res, data = inv(deb, "-H", "hyp4", "update.review", "--refresh", "--format", "json")
    assert res.returncode == 1, res.stderr  # risky
    [host] = data["hosts"]
    assert {p["name"]: p["kind"] for p in host["packages"]} == LAB_KINDS
    by_name = {p["name"]: p for p in host["packages"]}
    assert by_name["containerd"]["old"] == dpkg_version(deb["busy"], "containerd")
    assert by_name["containerd"]["new"].endswith("+aegirlab1")
    assert by_name["aegir-lab-dockdep"]["reasons"][0].startswith(
        "ships aegir-lab-dockdep.service, which docker.service Requires=, and restarts it")
    assert "running containers stop and restart with it (live-restore is off)" in by_name["containerd"]["reasons"][0]
    assert by_name["libaegirlab-sec1"]["origin"] == "Debian-Security:12/lab-security"
    assert host["docker_dependencies"] == {"aegir-lab-dockdep.service": ["docker.service Requires="]}
    assert (host["held"], host["kept_back"], host["live_restore"]) == (["aegir-lab-held"], ["aegir-lab-newdep"], False)
    recorded = json.loads(deb["busy"].root("/var/lib/aegir/update-review.json").read_text())
    assert recorded["digest"] == host["digest"] and set(recorded["versions"]) == set(LAB_KINDS)


def test_review_prints_a_table_and_one_fleet_line_and_exits_by_risk(deb):
    res, _ = inv(deb, "update.review")
    assert res.returncode == 1, res.stderr
    # the running containerd and the app's shim map files containerd's upgrade replaces: said first
    assert re.fullmatch(
        r"2 hosts: hyp4 containerd: pid \d+ \(containerd\) maps /usr/bin/containerd; containerd: pid \d+ "
        r"\(containerd-shim\) maps /usr/bin/containerd-shim-runc-v2; would restart docker via aegir-lab-dockdep, "
        r"containerd; would restart aegir-lab-beacon.service via aegir-lab-beacon; hyp5 nothing to upgrade",
        res.stdout.strip().splitlines()[-1]), res.stdout
    assert "aegir-lab-held" in res.stdout and "held (apt-mark hold): not upgraded" in res.stdout
    assert run_inv("-H", "hyp5", "update.review", inventory=deb["inventory"]).returncode == 0
    closed = "root@127.0.0.1:1"  # nothing listens there: refused at once
    broken = run_inv("-H", f"hyp5,{closed}", "update.review", inventory=deb["inventory"])
    assert broken.returncode == 2 and f"{closed} failed (cannot connect to" in broken.stdout


def test_review_dist_upgrade_takes_the_kept_back_package_and_its_new_dependency(deb):
    res, data = inv(deb, "-H", "hyp4", "update.review", "--dist", "--format", "json")
    assert res.returncode == 1, res.stderr
    [host] = data["hosts"]
    by_name = {p["name"]: p for p in host["packages"]}
    assert by_name["aegir-lab-newdep"]["new"] == "1.1-1" and by_name["aegir-lab-extra"]["old"] is None
    assert host["kept_back"] == [] and host["held"] == ["aegir-lab-held"] and host["dist"] is True


def test_apply_refuses_when_apt_cannot_install_the_reviewed_versions_alone(deb):
    """The plan simulates the exact install: holding the new dependency of a reviewed upgrade cannot work."""
    assert inv(deb, "-H", "hyp4", "update.review", "--dist")[0].returncode == 1
    res, data = inv(deb, "-H", "hyp4", "update.apply", "--dry", "--force", "--hold", "aegir-lab-extra", "--format", "json")
    assert res.returncode == 1, res.stdout + res.stderr
    assert ("apt cannot install the reviewed versions alone: it would also install aegir-lab-extra 1.0-1 "
            "(kept by --hold); run `inv update.review` again") in data["hosts"][0]["error"]
    assert dpkg_version(deb["busy"], "aegir-lab-newdep") == "1.0-1"


def _hold_dpkg_lock(host: LabHost, seconds: float, *, like_flock: bool = False) -> threading.Thread:
    """Take dpkg's frontend lock as apt does (an fcntl lock), or as flock(1) would, for `seconds`, in a thread."""
    locked = threading.Event()

    def hold() -> None:
        with open(host.root("/var/lib/dpkg/lock-frontend"), "w") as f:
            (fcntl.flock if like_flock else fcntl.lockf)(f, fcntl.LOCK_EX)
            locked.set()
            time.sleep(seconds)

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert locked.wait(10)
    return thread


def test_apt_waits_for_a_lock_taken_like_its_own_and_ignores_one_taken_by_flock(deb):
    """Why update.apply lets apt take its lock (DPkg::Lock::Timeout) instead of wrapping it in flock(1)."""
    busy = deb["busy"]
    nothing = ["apt-get", "install", "-y", "-q", "-o", "DPkg::Lock::Timeout=30"]  # locks dpkg, installs nothing
    for like_flock, waits in ((True, False), (False, True)):
        holder = _hold_dpkg_lock(busy, 3, like_flock=like_flock)
        started = time.monotonic()
        busy.run(nothing, timeout=60)
        took = time.monotonic() - started
        holder.join()
        assert (took >= 2.5) is waits, (like_flock, took)


def test_the_gate_stops_real_apt_before_dpkg_when_it_would_do_more_than_was_reviewed(deb):
    """The install script on the host, run by hand with a review that lacks the new dependency apt needs.

    apt waits for dpkg's lock (held here by another process for 3 s) instead of
    failing; then resolves, downloads, and calls the gate, which stops it: nothing is unpacked.
    """
    busy = deb["busy"]
    busy.run(["apt-get", "update", "-q"], timeout=120)  # the lists offer the stage-2 versions
    reviewed = {"aegir-lab-newdep": ("1.0-1", "1.1-1")}
    cmd = install_cmd("/var/log/aegir/gate-test.log", reviewed, [])
    holder = _hold_dpkg_lock(busy, 3)
    started = time.monotonic()
    done = busy.run(list(cmd.full_argv), timeout=180)
    waited = time.monotonic() - started
    holder.join()
    run = parse_install(done.stdout)
    assert run.exit == 100 and waited >= 2.5, (run, waited)
    assert run.refused(expected_actions(reviewed, [])) == ("apt would install aegir-lab-extra 1.0-1 (new)",)
    assert differences(run, {}, []) == ()  # dpkg's state: unchanged
    assert dpkg_version(busy, "aegir-lab-newdep") == "1.0-1"
    assert "aegir-lab-extra" not in busy.run(["dpkg-query", "-W"], check=False).stdout
    log = busy.root("/var/log/aegir/gate-test.log").read_text()
    assert "stopping before dpkg runs" in log and "Unpacking" not in log


def test_apply_refuses_a_risky_upgrade_nobody_announced(deb):
    assert inv(deb, "-H", "hyp4", "update.review")[0].returncode == 1
    res, data = inv(deb, "-H", "hyp4", "update.apply", "--yes", "--format", "json")
    assert res.returncode == 1
    assert "was not announced: run `inv update.announce --message ...` first" in data["hosts"][0]["error"]
    assert not data["summary"]["applied"] and dpkg_version(deb["busy"], "aegir-lab-beacon") == "1.0-1"


def test_announce_tells_users_per_service_through_the_host_command(deb):
    told, recorded = deb["busy"].root("/var/tmp/aegir-announcement"), deb["busy"].root("/var/lib/aegir/update-announce.json")
    dry, data = inv(deb, "--dry", "-H", "hyp4", "update.announce", "--message", "Upgrades tonight.", "--format", "json")
    assert dry.returncode == 0 and dry.stderr.rstrip().endswith(DRY_LINE), dry.stderr
    assert data["dry"] and data["hosts"][0]["response"] == "not sent (--dry)" and not data["hosts"][0]["sent"]
    assert not told.exists() and not recorded.exists()  # the dry run neither sent nor recorded
    res, data = inv(deb, "-H", "hyp4", "update.announce", "--message", "Upgrades tonight.", "--when", "22:00 UTC",
                    "--format", "json")
    assert res.returncode == 0, res.stderr
    [host] = data["hosts"]
    assert host["notifier"] == "command" and host["response"] == "exit 0: delivered"
    told = deb["busy"].root("/var/tmp/aegir-announcement").read_text()
    assert told.startswith("Upgrades tonight.\nWhen: 22:00 UTC\nhyp4: 6 packages upgraded; containerd: pid ")
    assert "; would restart docker via aegir-lab-dockdep, containerd; " in told
    assert "  - apps/web: stops and restarts with Docker (aegir-lab-dockdep, containerd): about a minute" in told
    assert "  - aegir-lab-beacon.service: restarts (aegir-lab-beacon): a few seconds" in told
    recorded = json.loads(deb["busy"].root("/var/lib/aegir/update-announce.json").read_text())
    assert recorded["message"] == "Upgrades tonight." and recorded["when"] == "22:00 UTC"


def test_announce_can_post_json_to_an_http_notifier(deb, tmp_path):
    received: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        data = yaml.safe_load(deb["inventory"].read_text())
        data["defaults"]["update"]["notify"] = {"url": f"http://127.0.0.1:{server.server_port}/hook"}
        path = tmp_path / "hosts.yml"
        path.write_text(yaml.safe_dump(data))
        assert run_inv("-H", "hyp5", "update.review", inventory=path).returncode == 0
        res = run_inv("-H", "hyp5", "update.announce", "--message", "Routine upgrade.", inventory=path)
    finally:
        server.shutdown()
    assert res.returncode == 0, res.stdout + res.stderr
    [doc] = received
    assert (doc["host"], doc["message"], doc["interruptions"]) == ("hyp5", "Routine upgrade.", [])
    assert "hyp5: 0 packages upgraded; no service interruption expected" in doc["text"]


def _publish_newer_libaegirlab1(host: LabHost, scratch: Path) -> None:
    debian_root.publish(host, [build(FakePackage("libaegirlab1", "1.0-3", files={"/usr/lib/aegir-lab/libaegirlab.so.1": "1.0-3\n"}),
                          scratch)], scratch)


def test_apply_upgrades_for_real_then_checks_docker_the_apps_and_stale_processes(deb, tmp_path):
    """Between the review and the apply, a newer libaegirlab1 reached the package lists: apply installs the
    reviewed 1.0-2, says what changed since the review, and leaves 1.0-3 for the next review."""
    busy = deb["busy"]
    unasked = run_inv("-H", "hyp4", "update.apply", inventory=deb["inventory"])  # stdin is not a terminal
    assert unasked.returncode == 1 and "pass --yes to upgrade without a prompt" in unasked.stderr
    assert dpkg_version(busy, "libaegirlab1") == "1.0-1"
    _publish_newer_libaegirlab1(busy, tmp_path)
    res, data = inv(deb, "-H", "hyp4", "update.apply", "--yes", "--format", "json")
    assert res.returncode == 0, res.stdout + res.stderr
    [host] = data["hosts"]
    assert set(host["upgraded"]) == set(LAB_KINDS) and host["differences"] == []
    for name, (_, new) in host["upgraded"].items():
        assert dpkg_version(busy, name) == new  # real dpkg, in the host's own database
    assert dpkg_version(busy, "libaegirlab1") == "1.0-2"  # the reviewed version, not the newest
    assert host["changed_since_review"] == ["libaegirlab1: reviewed 1.0-1 -> 1.0-2, now 1.0-1 -> 1.0-3"]
    assert ("changed since the review, left for the next one: libaegirlab1: reviewed 1.0-1 -> 1.0-2, "
            "now 1.0-1 -> 1.0-3") in host["notes"]
    assert dpkg_version(busy, "aegir-lab-held") == "1.0-1"
    assert host["docker_ok"] and host["projects"] == ["apps/web up"]
    assert host["containers_before"] == host["containers_after"] != []
    # the running containerd and the app's shim still map the binaries the upgrade replaced
    assert sorted((p["command"], p["files"]) for p in host["needs_restart"]) == [
        ("containerd", ["/usr/bin/containerd"]), ("containerd-shim", ["/usr/bin/containerd-shim-runc-v2"])]
    # ... as the review foresaw (issue 24), and the apply's record keeps the comparison
    assert host["prediction"] == {"predicted": 2, "found": 2, "exact": True, "missed": [], "wrong": []}
    assert json.loads(busy.root("/var/lib/aegir/update-apply.json").read_text())["prediction"] == host["prediction"]
    log = busy.root(host["log"]).read_text()
    assert "apt-get install " in log.splitlines()[0] and "libaegirlab1=1.0-2" in log.splitlines()[0]
    assert "Setting up containerd (" in log and "# exit 0" in log
    assert host["left"] == ["libaegirlab1"] and host["problems"] == []
    again = run_inv("-H", "hyp4", "update.apply", "--yes", inventory=deb["inventory"])
    assert again.returncode == 1 and "no review of this upgrade on the host" in again.stdout


def test_holding_the_risky_packages_needs_no_announcement(deb):
    quiet = deb["quiet"]
    debian_root.publish_upgrades(quiet.root(), debian_root.cached_root() / debian_root.CONTAINERD_DEB,
                                 quiet.paths.dir / "debs")
    assert run_inv("-H", "hyp5", "update.review", "--refresh", inventory=deb["inventory"]).returncode == 1
    res, data = inv(deb, "-H", "hyp5", "update.apply", "--yes", "--hold", "containerd", "--hold",
                    "aegir-lab-dockdep,aegir-lab-beacon", "--format", "json")
    assert res.returncode == 0, res.stdout + res.stderr
    assert set(data["hosts"][0]["upgraded"]) == {"linux-image-aegir-lab", "libaegirlab-sec1", "libaegirlab1"}
    assert "+aegirlab1" not in dpkg_version(quiet, "containerd")
    assert quiet.run(["apt-mark", "showhold"]).stdout.split() == ["aegir-lab-held"]  # holds were for this run


def test_this_machines_dpkg_database_never_saw_the_lab_packages(deb):
    own = subprocess.run(["dpkg-query", "-W", "-f", "${Package}\n"], capture_output=True, text=True).stdout.split()
    assert not [p for p in own if p.startswith(("aegir-lab", "libaegirlab", "linux-image-aegir-lab"))]
    containerd = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "containerd"], capture_output=True, text=True)
    assert "aegirlab" not in containerd.stdout


def test_a_dry_review_does_not_refresh_the_package_lists(deb):
    """The program's --dry changes nothing, not even apt's lists: --refresh is skipped, and said so.
    A real --refresh afterwards does touch the lists, so the first check could have failed."""
    quiet = deb["quiet"]
    lists = [p for p in quiet.root("/var/lib/apt/lists").iterdir() if p.is_file() and p.name != "lock"]
    for p in lists:
        os.utime(p, ns=(0, 0))
    record = quiet.root("/var/lib/aegir/update-review.json")
    assert not record.exists()  # update.apply retired hyp5's last review
    res = run_inv("--dry", "-H", "hyp5", "update.review", "--refresh", inventory=deb["inventory"])
    assert res.returncode in (0, 1), res.stdout + res.stderr
    assert "--dry: not running `apt-get update`" in res.stderr and res.stderr.rstrip().endswith(DRY_LINE)
    assert [p.stat().st_mtime_ns for p in lists] == [0] * len(lists)
    assert not record.exists()  # nor recording the review
    run_inv("-H", "hyp5", "update.review", "--refresh", inventory=deb["inventory"])
    assert any(p.stat().st_mtime_ns != 0 for p in quiet.root("/var/lib/apt/lists").iterdir() if p.is_file())
    assert record.exists()


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d.update(risky="containerd"), "'risky' must be list, not str 'containerd'"),
    (lambda d: d.update(risky=[]), "checksum"),  # edited: the announcement requirement would be off
    (lambda d: d.update(time="now"), "'time' must be int or float, not str 'now'"),
    (lambda d: d["versions"].update(containerd=["1", "2; reboot"]), "invalid version '2; reboot' for containerd"),
    (lambda d: d.update(kinds={"containerd": "other"}), "checksum"),
])
def test_a_review_record_damaged_on_the_host_is_refused_naming_the_field(deb, edit, message):
    quiet = deb["quiet"]
    assert run_inv("-H", "hyp5", "update.review", inventory=deb["inventory"]).returncode == 1
    path = quiet.root("/var/lib/aegir/update-review.json")
    data = json.loads(path.read_text())
    assert "containerd" in data["risky"]
    edit(data)
    path.write_text(json.dumps(data))
    for task in (["update.apply", "--dry", "--force"], ["update.announce", "--message", "x", "--dry"]):
        res = run_inv("-H", "hyp5", *task, inventory=deb["inventory"])
        assert res.returncode == 1 and "Traceback" not in res.stderr, res.stdout + res.stderr
        assert "/var/lib/aegir/update-review.json: " in res.stdout and message in res.stdout, res.stdout


_HANG = """\
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(64)
held = []
while True:  # accept every connection, answer none: a mirror behind a broken route or proxy
    held.append(s.accept()[0])
"""
PORT = 8931


def _serve_in(host: LabHost, *argv: str) -> subprocess.Popen:
    """A server in the host's network namespace (its 127.0.0.1), run from this machine's files."""
    proc = subprocess.Popen(["nsenter", "-t", str(host.pid), "-n", "--", *argv],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    probe = f"import socket; socket.create_connection(('127.0.0.1', {PORT}), 1)"
    for _ in range(50):
        if subprocess.run(["nsenter", "-t", str(host.pid), "-n", "--", sys.executable, "-c", probe],
                          capture_output=True).returncode == 0:
            return proc
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{argv} did not listen on {PORT}")


def _stop(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait(10)


def _timed_review(deb: dict, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    res = run_inv("-H", "hyp5", "update.review", *args, inventory=deb["inventory"], timeout=120)
    return res, time.monotonic() - started


def test_a_host_that_cannot_fetch_fails_the_review_in_one_line_within_30_s(deb, tmp_path):
    """Three ways a fetch never ends, each a review that fails (exit 2) in one line, in less than 30 s:
    a mirror that accepts and never answers, for apt-get update (--refresh) and for the downloads of the
    new packages, and a mirror whose name cannot be resolved. Progress to a pipe: one line, not one per 5 s."""
    quiet = deb["quiet"]
    newer = build(FakePackage("aegir-lab-beacon", "1.9-1", files={debian_root.BEACON: "#!/bin/sh\n"},
                              units={"aegir-lab-beacon.service": lab_packages.BEACON_UNIT}), tmp_path / "debs")
    repo = write_repo(tmp_path / "http-repo", [newer])
    sources = quiet.root("/etc/apt/sources.list.d/aegir-lab-http.list")
    server = None
    try:
        sources.write_text(f"deb [trusted=yes] http://127.0.0.1:{PORT}/ ./\n")
        server = _serve_in(quiet, sys.executable, "-m", "http.server", str(PORT), "--bind", "127.0.0.1",
                           "--directory", str(repo))
        quiet.run(["apt-get", "update", "-q"], timeout=120)  # the lists now offer beacon 1.9-1 from there
        _stop(server)
        server = _serve_in(quiet, sys.executable, "-c", _HANG, str(PORT))
        for args, expected in (((), "could not read the maintainer scripts of "),
                               (("--refresh",), "cannot fetch packages: apt-get update")):
            res, took = _timed_review(deb, *args)
            assert res.returncode == 2 and took < 30, (took, res.stdout, res.stderr)
            [row] = [ln for ln in res.stdout.splitlines() if ln.startswith("hyp5 ")]
            assert expected in row, res.stdout
            assert "aegir-lab-beacon 1.9-1 (" in row or "apt-get update" in row, row
            assert len([ln for ln in res.stderr.splitlines() if ln.startswith("update.review:")]) <= 1, res.stderr
        sources.write_text("deb [trusted=yes] http://mirror.aegir-lab.invalid/debian ./\n")
        res, took = _timed_review(deb, "--refresh")
        assert res.returncode == 2 and took < 30, (took, res.stdout, res.stderr)
        [row] = [ln for ln in res.stdout.splitlines() if ln.startswith("hyp5 ")]
        assert "cannot fetch packages: apt-get update" in row, res.stdout
        assert "mirror.aegir-lab.invalid" in row or "no answer within 20 s" in row, row
    finally:
        _stop(server)
        sources.unlink(missing_ok=True)
        quiet.run(["apt-get", "update", "-q"], timeout=120, check=False)


def test_a_difference_between_dpkg_and_the_review_after_the_install_is_a_failure(deb, tmp_path):
    """A reviewed version whose postinst fails: apt stops, dpkg has it half-configured; apply says so
    and exits 1, after its checks. (Last in the file: it leaves hyp5's dpkg with a broken package.)"""
    quiet = deb["quiet"]
    broken = build(FakePackage("libaegirlab1", "1.0-9", postinst="#!/bin/sh\necho 'aegir lab: failing on purpose' >&2\nexit 1\n",
                               files={"/usr/lib/aegir-lab/libaegirlab.so.1": "1.0-9\n"}), tmp_path)
    debian_root.publish(quiet, [broken], tmp_path)
    assert run_inv("-H", "hyp5", "update.review", inventory=deb["inventory"]).returncode == 1
    res, data = inv(deb, "-H", "hyp5", "update.apply", "--yes", "--hold", "containerd,aegir-lab-dockdep,aegir-lab-beacon",
                    "--format", "json")
    assert res.returncode == 1, res.stdout + res.stderr
    [host] = data["hosts"]
    assert host["differences"][0].startswith("apt-get install failed (exit 100): E: ")
    assert "libaegirlab1 1.0-9 is not fully installed (dpkg status 'iF')" in host["differences"]
    assert host["differences"] == host["problems"][:len(host["differences"])]
    assert "aegir lab: failing on purpose" in quiet.root(host["log"]).read_text()
