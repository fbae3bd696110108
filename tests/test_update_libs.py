"""update.review foresees the daemons a library upgrade leaves on old code; update.apply checks the prediction.

Two Debian-root lab hosts (tests/lab/debian_root.py, nothing else to upgrade)
get three packages built here with gcc: ``libaegirmap1`` (a real shared
library, /usr/lib/aegir-lab/libaegirmap.so.1), ``aegir-lab-mapd`` (a daemon
linked against it, started in the host and put in a cgroup named
``aegir-lab-mapd.service``, as systemd would) and ``libaegirquiet1`` (a library
nothing maps). Their repositories then offer newer versions of both
libraries. hyp-a has needrestart in automatic mode (its files in hyp-a's own
root: the Debian-root hosts do not share /etc), hyp-b has none.

The tests run in file order: review both, apply on one (exactly the predicted
process stale), apply on the other after the processes changed under the
review (a miss and a false prediction, both reported and recorded), then the
figures: the maps scan on a host with 300 processes, and ``update.review``
on one host.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from aegir.update.mapped import maps_cmd
from tests.helpers import REPO, run_inv
from tests.lab import Lab, LabHost, debian_root
from tests.lab.aptrepo import FakePackage, build
from tests.lab.procs import cgroup_mounts

LIB = "/usr/lib/aegir-lab/libaegirmap.so.1"
QUIET = "/usr/lib/aegir-lab/libaegirquiet.so.1"
DAEMON = "/usr/sbin/aegir-lab-mapd"
UNIT = "aegir-lab-mapd.service"
PIDFILE = "/run/aegir-lab-mapd.pid"
#: update.review runs timed per version (the lab's machine is shared: its figures are noisy).
REVIEWS = int(os.environ.get("AEGIR_REVIEW_RUNS", "5"))

_LIB_C = "int aegirmap_version(void) { return %d; }\n"
_DAEMON_C = f"""\
#include <stdio.h>
#include <unistd.h>
int aegirmap_version(void);
int main(void) {{
    int v = aegirmap_version();
    FILE *f = fopen("{PIDFILE}", "w");
    if (f) {{ fprintf(f, "%d\\n", (int)getpid()); fclose(f); }}
    for (;;) pause();
    return v;
}}
"""
#: What Debian's needrestart package installs for apt (its DPkg::Post-Invoke line) and a conf in automatic mode.
NEEDRESTART_FILES = {
    "/etc/apt/apt.conf.d/99needrestart":
        'DPkg::Post-Invoke {"test -x /usr/lib/needrestart/apt-pinvoke && /usr/lib/needrestart/apt-pinvoke -m u '
        '|| true"; };\n',
    "/etc/needrestart/needrestart.conf": "# aegir lab\n#$nrconf{restart} = 'i';\n$nrconf{restart} = 'a';\n",
    "/usr/sbin/needrestart": "#!/bin/sh\n# aegir lab: stands for needrestart (its perl dependencies are not in the root)\n",
}


def _gcc(*args: str) -> None:
    subprocess.run(["gcc", *args], check=True, capture_output=True)


def _library(name: str, soname: str, version: int, work: Path) -> bytes:
    src, out = work / f"{soname}.{version}.c", work / f"{soname}.{version}"
    src.write_text(_LIB_C % version)
    _gcc("-shared", "-fPIC", f"-Wl,-soname,{soname}", "-o", str(out), str(src))
    return out.read_bytes()


def build_packages(work: Path) -> tuple[list[Path], list[Path]]:
    """(stage 1, stage 2) .debs: the libraries at 1.0-1 and the daemon; the libraries at 1.0-2."""
    work.mkdir(parents=True, exist_ok=True)
    v1 = _library("libaegirmap1", "libaegirmap.so.1", 1, work)
    (work / "libaegirmap.so.1").write_bytes(v1)
    (work / "mapd.c").write_text(_DAEMON_C)
    _gcc("-O1", "-o", str(work / "mapd"), str(work / "mapd.c"), f"-L{work}", "-Wl,--no-as-needed",
         "-l:libaegirmap.so.1", "-Wl,-rpath,/usr/lib/aegir-lab")
    debs = work / "debs"
    stage1 = [
        build(FakePackage("libaegirmap1", "1.0-1", "aegir lab: a library a daemon maps", files={LIB: v1}), debs),
        build(FakePackage("libaegirquiet1", "1.0-1", "aegir lab: a library nothing maps",
                          files={QUIET: _library("libaegirquiet1", "libaegirquiet.so.1", 1, work)}), debs),
        build(FakePackage("aegir-lab-mapd", "1.0-1", "aegir lab: a daemon linked against libaegirmap1",
                          depends=("libaegirmap1",), files={DAEMON: (work / "mapd").read_bytes()}), debs),
    ]
    stage2 = [
        build(FakePackage("libaegirmap1", "1.0-2", "aegir lab: a library a daemon maps",
                          files={LIB: _library("libaegirmap1", "libaegirmap.so.1", 2, work)}), debs),
        build(FakePackage("libaegirquiet1", "1.0-2", "aegir lab: a library nothing maps",
                          files={QUIET: _library("libaegirquiet1", "libaegirquiet.so.1", 2, work)}), debs),
    ]
    return stage1, stage2


def _service_cgroup(host: LabHost, unit: str) -> Path:
    """A cgroup named like systemd's for `unit`, under the host's own (the lab's teardown kills and removes it)."""
    mounts = cgroup_mounts()
    top = next((m for m in mounts if m.name == "systemd"), None) or next(m for m in mounts if m.name in ("cgroup", "unified"))
    path = top / host.addresses.cgroup / unit
    path.mkdir(parents=True, exist_ok=True)
    return path


def start_daemon(host: LabHost) -> int:
    """Start aegir-lab-mapd in `host`, in its service cgroup; its pid."""
    host.root(PIDFILE).unlink(missing_ok=True)
    host.run(["sh", "-c", 'setsid -f "$0" >/dev/null 2>&1 </dev/null', DAEMON])
    for _ in range(100):
        text = host.root(PIDFILE).read_text().strip() if host.root(PIDFILE).exists() else ""
        if text:
            pid = int(text)
            (_service_cgroup(host, UNIT) / "cgroup.procs").write_text(str(pid))
            return pid
        time.sleep(0.05)
    raise RuntimeError(f"{DAEMON} did not start on {host.name}")


def start_preloaded(host: LabHost, library: str) -> int:
    """A `sleep` in `host` with `library` preloaded (it maps it); its pid."""
    done = host.run(["sh", "-c", 'LD_PRELOAD="$0" setsid -f sleep 3600 >/dev/null 2>&1 </dev/null; sleep 0.3; '
                     'for p in /proc/[0-9]*; do grep -qs "$0" "$p/maps" && [ "$(cat "$p/comm")" = sleep ] '
                     '&& echo "${p#/proc/}"; done; true', library])
    [pid] = [int(p) for p in done.stdout.split()]
    return pid


def install(host: LabHost, debs: list[Path]) -> None:
    inbox = host.root("/tmp/aegir-libs")
    inbox.mkdir(parents=True, exist_ok=True)
    for deb in debs:
        shutil.copy2(deb, inbox / deb.name)
    host.run(["sh", "-c", "dpkg -i /tmp/aegir-libs/*.deb && rm -rf /tmp/aegir-libs"], timeout=120)


@pytest.fixture(scope="module")
def libs(lab: Lab, tmp_path_factory) -> dict:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to build the lab's library and daemon")
    work = tmp_path_factory.mktemp("libs")
    stage1, stage2 = build_packages(work)
    hosts = [debian_root.add_debian_host(lab, upgrades=False), debian_root.add_debian_host(lab, upgrades=False)]
    try:
        auto, absent = hosts
        for path, text in NEEDRESTART_FILES.items():
            target = auto.root(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            target.chmod(0o755 if "/sbin/" in path else 0o644)
        pids = {}
        for h in hosts:
            install(h, stage1)
            pids[h.name] = start_daemon(h)
            debian_root.publish(h, stage2, work / h.name)
        data = lab.inventory_data(hosts)
        data["defaults"]["update"] = {"extra_crucial_units": [UNIT]}
        path = work / "hosts.yml"
        path.write_text(yaml.safe_dump(data))
        yield {"auto": auto, "absent": absent, "inventory": path, "pids": pids}
    finally:
        for h in hosts:
            lab.remove_host(h)


def review(libs: dict, *hosts: LabHost) -> dict[str, dict]:
    res = run_inv("-H", ",".join(h.name for h in hosts), "update.review", "--format", "json",
                  inventory=libs["inventory"])
    assert res.returncode == 1, res.stdout + res.stderr  # risky: a crucial unit left on old code
    return {h["host"]: h for h in json.loads(res.stdout)["hosts"]}


def test_review_reports_the_daemon_its_unit_and_the_file_and_who_restarts_it(libs):
    auto, absent = libs["auto"], libs["absent"]
    found = review(libs, auto, absent)
    for h in (auto, absent):
        host = found[h.name]
        by_name = {p["name"]: p for p in host["packages"]}
        assert by_name["libaegirmap1"]["kind"] == "crucial"
        assert f"libaegirmap1: {UNIT} maps {LIB}" in by_name["libaegirmap1"]["reasons"]
        assert host["stale"] == [{"process": "aegir-lab-mapd", "pid": libs["pids"][h.name], "unit": UNIT,
                                  "file": LIB, "package": "libaegirmap1", "docker": False}]
        assert by_name["libaegirquiet1"]["kind"] == "other"  # nothing maps it: not flagged
        assert not any("maps" in r or "old code" in r for r in by_name["libaegirquiet1"]["reasons"])
        assert host["headline"].startswith(f"libaegirmap1: {UNIT} maps {LIB}")
        assert host["processes_scanned"] > 0
    assert found[auto.name]["needrestart"] == {"installed": True, "run_by_apt": True, "mode": "a",
                                               "mode_from": "/etc/needrestart/needrestart.conf",
                                               "restarts_by_itself": True}
    assert found[auto.name]["restart_outlook"].startswith(
        f"needrestart (automatic, /etc/needrestart/needrestart.conf) restarts {UNIT} right after a plain "
        "`apt upgrade`; update.apply runs it list-only")
    assert found[absent.name]["needrestart"]["installed"] is False
    assert found[absent.name]["restart_outlook"] == f"needrestart absent: {UNIT} keep the old code until restarted by hand"
    table = run_inv("-H", auto.name, "update.review", inventory=libs["inventory"])
    lines = table.stdout.splitlines()
    assert lines[0] == "Left on the old code by the upgrade (until restarted):", table.stdout
    assert any(ln.split()[:5] == [auto.name, "libaegirmap1", UNIT, "aegir-lab-mapd", LIB] for ln in lines), table.stdout


def test_the_same_upgrade_applied_leaves_exactly_the_predicted_process_stale(libs):
    auto = libs["auto"]
    review(libs, auto)
    res = run_inv("-H", auto.name, "update.apply", "--yes", "--force", "--format", "json", inventory=libs["inventory"])
    assert res.returncode == 0, res.stdout + res.stderr
    [host] = json.loads(res.stdout)["hosts"]
    assert set(host["upgraded"]) == {"libaegirmap1", "libaegirquiet1"}
    assert [(s["pid"], s["unit"], s["files"]) for s in host["needs_restart"]] == [(libs["pids"][auto.name], UNIT, [LIB])]
    assert host["prediction"] == {"predicted": 1, "found": 1, "exact": True, "missed": [], "wrong": []}
    record = json.loads(auto.root("/var/lib/aegir/update-apply.json").read_text())
    assert record["prediction"] == host["prediction"]


def test_a_miss_and_a_false_prediction_are_reported_and_recorded(libs):
    """After the review, the daemon stops (foreseen stale, not stale after) and a process starts mapping the
    quiet library (stale, not foreseen): the apply says both and keeps them in its record."""
    absent = libs["absent"]
    review(libs, absent)
    subprocess.run(["kill", str(libs["pids"][absent.name])], check=True)
    sleeper = start_preloaded(absent, QUIET)
    res = run_inv("-H", absent.name, "update.apply", "--yes", "--force", "--format", "json",
                  inventory=libs["inventory"])
    assert res.returncode == 0, res.stdout + res.stderr
    [host] = json.loads(res.stdout)["hosts"]
    missed = f"pid {sleeper} (sleep) maps {QUIET}"
    wrong = f"{UNIT} maps {LIB}"
    assert host["prediction"] == {"predicted": 1, "found": 1, "exact": False, "missed": [missed], "wrong": [wrong]}
    assert f"stale but not foreseen by the review: {missed}" in host["notes"]
    assert f"foreseen stale by the review, not stale after: {wrong}" in host["notes"]
    record = json.loads(absent.root("/var/lib/aegir/update-apply.json").read_text())
    assert record["prediction"]["missed"] == [missed] and record["prediction"]["wrong"] == [wrong]


def _timed(argv: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> float:
    return _timed_cpu(argv, cwd=cwd, env=env)[0]


def _timed_cpu(argv: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> tuple[float, float]:
    """Wall time, and CPU time (user + system) of `argv` and every process it waited for."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    took = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert done.returncode in (0, 1), done.stdout + done.stderr
    return took, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def test_the_maps_scan_costs_well_under_a_second_with_300_processes(libs, tmp_path):
    """Figures (printed; -s shows them): the scan alone on a host with at least 300 processes (its CPU time
    asserted: well under a second), and
    ``update.review`` of one host end to end. With $AEGIR_REVIEW_BEFORE=<git ref>, the same review by that
    ref's code too, alternated in this run (the "before" of issue 24)."""
    auto = libs["auto"]
    # the libraries upgraded again: the review has the same two packages to read as before the apply
    work = tmp_path / "again"
    work.mkdir()
    debs = [build(FakePackage(n, "1.0-3", files={f: _library(n, so, 3, work)}), work / "debs")
            for n, so, f in (("libaegirmap1", "libaegirmap.so.1", LIB), ("libaegirquiet1", "libaegirquiet.so.1", QUIET))]
    debian_root.publish(auto, debs, work)
    present = len([p for p in os.listdir("/proc") if p.isdigit()])
    extra = max(0, 310 - present)
    auto.run(["sh", "-c", 'i=0; while [ "$i" -lt "$0" ]; do setsid -f sleep 3600 >/dev/null 2>&1 </dev/null; '
              'i=$((i + 1)); done', str(extra)], timeout=120)
    processes = len([p for p in os.listdir("/proc") if p.isdigit()])
    assert processes >= 300
    scan = list(maps_cmd(["libaegirmap1", "libaegirquiet1"]).argv)
    scans, cpus = zip(*(_timed_cpu(auto.command(scan)) for _ in range(5)))
    env = {**os.environ, "AEGIR_INVENTORY": str(libs["inventory"]), "COLUMNS": "200"}
    after_argv = [sys.executable, "-m", "aegir", "-H", auto.name, "update.review"]
    before_ref = os.environ.get("AEGIR_REVIEW_BEFORE")
    figures = {"after": []}
    with tempfile.TemporaryDirectory(prefix="aegir-before-") as before_dir:
        if before_ref:
            archive = subprocess.run(["git", "-C", str(REPO), "archive", before_ref, "aegir", "tasks.py"],
                                     check=True, capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", before_dir], input=archive, check=True)
            figures["before"] = []
        for _ in range(REVIEWS):
            figures["after"].append(_timed(after_argv, cwd=REPO, env=env))
            if before_ref:
                figures["before"].append(_timed(after_argv, cwd=Path(before_dir), env=env))
    medians = {k: statistics.median(v) for k, v in figures.items()}
    print(f"\nmaps scan on {auto.name} ({processes} processes): CPU median {statistics.median(cpus) * 1000:.0f} ms "
          f"(runs: {', '.join(f'{s * 1000:.0f}' for s in cpus)}), wall median {statistics.median(scans) * 1000:.0f} ms "
          f"(runs: {', '.join(f'{s * 1000:.0f}' for s in scans)}), nsenter included; load average "
          f"{os.getloadavg()[0]:.1f}")
    for k, v in medians.items():
        print(f"update.review -H {auto.name} ({k}{': ' + before_ref if k == 'before' else ''}): median {v:.3f} s, "
              f"fastest {min(figures[k]):.3f} s (runs: {', '.join(f'{t:.3f}' for t in figures[k])})")
    # CPU time: the machine running the lab is shared, its wall times say how busy it is
    assert statistics.median(cpus) < 0.5
