"""The processes an upgrade leaves on old code (`aegir.update.mapped`): the scan's answer, the review's reasons,
needrestart's setup, and the apply's comparison. One test runs the scan for real on this machine's processes."""

from __future__ import annotations

import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest

from aegir.update.apt import StaleProcess
from aegir.update.classify import classify
from aegir.update.mapped import (
    Comparison,
    Mapped,
    MapsScan,
    Needrestart,
    compare,
    maps_cmd,
    needrestart_conf_cmd,
    parse_maps,
    parse_needrestart_conf,
    restart_outlook,
    unit_of,
)
from aegir.update.plan import record_of
from aegir.update.records import ReviewRecord
from tests.unit.test_update_classify import LAB, lab_facts

#: A scan's answer as `maps_cmd` prints it (the shape of one taken on the lab's Debian 12 host): its own
#: session (S), how many processes, matches (M), already deleted files (D), roots (ME, R), comm and cgroup.
SCAN = """\
S\t900
S\t899
N\t312
M\t101\t/usr/lib/x86_64-linux-gnu/libaegirlab.so.1\tlibaegirlab1
M\t202\t/usr/lib/x86_64-linux-gnu/libaegirlab.so.1\tlibaegirlab1
M\t202\t/usr/bin/containerd\tcontainerd
M\t303\t/usr/lib/x86_64-linux-gnu/libaegirlab.so.1\tlibaegirlab1
M\t404\t/usr/lib/x86_64-linux-gnu/libaegirlab.so.1\tlibaegirlab1
M\t900\t/usr/lib/x86_64-linux-gnu/libaegirlab.so.1\tlibaegirlab1
D\t101\t/usr/lib/x86_64-linux-gnu/libold.so.2
ME\t2049:2
R\t/proc/101/root/\t2049:2
R\t/proc/202/root/\t2049:2
R\t/proc/303/root/\t71:1877
R\t/proc/404/root/\t2049:2
R\t/proc/900/root/\t2049:2
/proc/101/comm:sshd
/proc/101/cgroup:0::/system.slice/ssh.service
/proc/202/comm:containerd
/proc/202/cgroup:12:pids:/system.slice/containerd.service
/proc/202/cgroup:1:name=systemd:/system.slice/containerd.service
/proc/303/comm:nginx
/proc/303/cgroup:0::/system.slice/docker-4f1e.scope
/proc/404/comm:cron
/proc/404/cgroup:0::/system.slice/cron.service
/proc/900/comm:sh
/proc/900/cgroup:0::/user.slice/user-0.slice/session-7.scope
"""
LIB = "/usr/lib/x86_64-linux-gnu/libaegirlab.so.1"


def test_the_scan_is_one_script_with_the_package_names_as_arguments():
    cmd = maps_cmd(["libssl3", "libc6:amd64"])
    assert cmd.argv[:2] == ("sh", "-c") and cmd.argv[3:] == ("sh", "libssl3", "libc6:amd64")
    script = cmd.argv[2]
    assert '/var/lib/dpkg/info/"$p".list /var/lib/dpkg/info/"$p":*.list' in script
    assert "grep -sHF -f - \"$@\"" in script  # the match is made on the host: only matches come back
    assert "(lib|bin|sbin|lib64)" in script  # both spellings of a merged-/usr path
    with pytest.raises(Exception, match="invalid package name"):
        maps_cmd(["libssl3; reboot"])


def test_the_scan_keeps_the_hosts_processes_and_leaves_out_containers_and_its_own_session():
    scan = parse_maps(SCAN)
    assert scan.scanned == 312 and scan.stale_before == ((101, "/usr/lib/x86_64-linux-gnu/libold.so.2"),)
    assert scan.mapped == (
        Mapped(101, "sshd", "ssh.service", LIB, "libaegirlab1"),
        Mapped(202, "containerd", "containerd.service", "/usr/bin/containerd", "containerd"),
        Mapped(202, "containerd", "containerd.service", LIB, "libaegirlab1"),
        Mapped(404, "cron", "cron.service", LIB, "libaegirlab1"),
    )  # 303: a container's nginx (another root); 900: the scan's own shell
    assert parse_maps("N\t3\n") == MapsScan(scanned=3)


def test_a_process_unit_comes_from_its_cgroup_in_v1_and_v2():
    assert unit_of(["0::/system.slice/containerd.service"]) == "containerd.service"
    assert unit_of(["4:memory:/", "1:name=systemd:/system.slice/ssh.service"]) == "ssh.service"
    assert unit_of(["0::/system.slice/docker-4f1e.scope"]) is None
    assert unit_of(["0::/user.slice/user-0.slice/session-7.scope"]) is None


def test_the_scan_runs_here_and_finds_a_process_mapping_libc_but_not_its_own_shell():
    """The script for real, on this machine (Debian): a sleep maps libc6's libc.so.6."""
    lists = [p for p in Path("/var/lib/dpkg/info").glob("libc6*.list") if p.name in ("libc6.list", "libc6:amd64.list")]
    if not lists:
        pytest.skip("no libc6 in this machine's dpkg database")
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        time.sleep(0.2)
        cmd = maps_cmd(["libc6", "aegir-no-such-package"])
        done = subprocess.run(list(cmd.argv), capture_output=True, text=True, timeout=30)
    finally:
        sleeper.kill()
        sleeper.wait()
    scan = parse_maps(done.stdout)
    mine = [m for m in scan.mapped if m.pid == sleeper.pid]
    assert {m.package for m in mine} == {"libc6"} and any(m.file.endswith("/libc.so.6") for m in mine), done.stdout
    own = {int(ln.split("\t")[1]) for ln in done.stdout.splitlines() if ln.startswith("S\t")}
    assert own and not own & {m.pid for m in scan.mapped}
    assert scan.scanned > 1


def lab_with(mapped: tuple[Mapped, ...], *, systemd: bool = True, nr: Needrestart | None = None,
             live_restore: bool | None = False):
    facts = replace(lab_facts(live_restore), maps=MapsScan(mapped, ((7, "/usr/lib/old.so"),), 300),
                    needrestart=nr, systemd=systemd)
    return classify(facts, LAB)


def test_a_library_mapped_by_containerd_or_a_crucial_unit_is_risky_with_the_process_unit_and_file():
    review = lab_with((Mapped(202, "containerd", "containerd.service", LIB, "libaegirlab1"),
                       Mapped(101, "sshd", "ssh.service", LIB, "libaegirlab1"),
                       Mapped(102, "sshd", "ssh.service", LIB, "libaegirlab1"),
                       Mapped(404, "cron", "cron.service", LIB, "libaegirlab1")), systemd=False)
    lib = next(p for p in review.packages if p.name == "libaegirlab1")
    assert lib.kinds == ("docker", "crucial") and lib.risky
    assert lib.reasons == (
        f"libaegirlab1: containerd.service maps {LIB}",
        f"libaegirlab1: ssh.service maps {LIB}",
        "leaves 1 other process on the old code until restarted: cron.service",
    )
    assert review.stale_risky == (f"libaegirlab1: containerd.service maps {LIB}",
                                  f"libaegirlab1: ssh.service maps {LIB}")
    assert review.headline().startswith(f"libaegirlab1: containerd.service maps {LIB}; libaegirlab1: ssh.service")
    # it leaves Docker on old code, it does not restart it: neither the effects nor the announcement say so
    assert lib.stale_docker_only and not lib.restarts_docker
    assert "would restart docker via aegir-lab-dockdep, containerd" in review.effects()
    from aegir.update.plan import interruptions
    cuts = interruptions(record_of(review, now=1.0, by="t"), ["apps/web"], False)
    assert cuts[0].expected == "stops and restarts with Docker (aegir-lab-dockdep, containerd): about a minute"
    assert record_of(review, now=1.0, by="t").stale == (
        (101, LIB, "ssh.service", "libaegirlab1"), (102, LIB, "ssh.service", "libaegirlab1"),
        (202, LIB, "containerd.service", "libaegirlab1"), (404, LIB, "cron.service", "libaegirlab1"))


def test_a_library_only_a_non_crucial_process_maps_is_mentioned_not_risky_and_one_nobody_maps_is_plain():
    review = lab_with((Mapped(404, "cron", "cron.service", LIB, "libaegirlab1"),))
    lib = next(p for p in review.packages if p.name == "libaegirlab1")
    assert lib.kinds == ("other",) and not lib.risky
    assert lib.reasons == ("leaves 1 other process on the old code until restarted: cron.service",
                           "restarts nothing crucial")
    sec = next(p for p in review.packages if p.name == "libaegirlab-sec1")
    assert sec.stale == () and not any("maps" in r or "old code" in r for r in sec.reasons)


def test_a_process_without_a_service_is_named_by_pid_and_a_shim_is_dockers():
    review = lab_with((Mapped(55, "containerd-shim", None, LIB, "libaegirlab1"),))
    lib = next(p for p in review.packages if p.name == "libaegirlab1")
    assert lib.kinds == ("docker",) and lib.reasons == (f"libaegirlab1: pid 55 (containerd-shim) maps {LIB}",)


def test_a_unit_the_upgrades_scripts_restart_is_not_left_stale_when_systemd_runs():
    beacon = Mapped(77, "aegir-lab-beacon", "aegir-lab-beacon.service", LIB, "libaegirlab1")
    assert lab_with((beacon,)).stale == ()  # aegir-lab-beacon's postinst restarts its unit
    assert lab_with((beacon,), systemd=False).stale == (beacon,)  # no systemd: deb-systemd-invoke does nothing


NR_CONF = """\
installed
/etc/apt/apt.conf.d/99needrestart:DPkg::Post-Invoke {"test -x /usr/lib/needrestart/apt-pinvoke && \
/usr/lib/needrestart/apt-pinvoke -m u || true"; };
/etc/needrestart/needrestart.conf:#$nrconf{restart} = 'i';
/etc/needrestart/conf.d/50-auto.conf:$nrconf{restart} = 'a';
/etc/needrestart/needrestart.conf:    qr(^dbus) => 0,
/etc/needrestart/needrestart.conf:    qr(^getty@.+\\.service) => 0,
/etc/needrestart/needrestart.conf:    qr(^systemd-logind) => 0,
"""
SKIPPED = ("^dbus", "^getty@.+\\.service", "^systemd-logind")


def test_needrestarts_mode_the_last_setting_wins_and_apt_runs_it():
    assert parse_needrestart_conf(NR_CONF) == Needrestart(True, True, "a", "/etc/needrestart/conf.d/50-auto.conf",
                                                          SKIPPED)
    assert parse_needrestart_conf(NR_CONF).restarts
    assert parse_needrestart_conf("") == Needrestart(False, False, "i", "default")
    commented = "installed\n/etc/apt/apt.conf.d/99needrestart:// DPkg::Post-Invoke {\"needrestart\"; };\n"
    assert not parse_needrestart_conf(commented).run_by_apt
    assert needrestart_conf_cmd().argv[2] == (
        "[ -x /usr/sbin/needrestart ] && echo installed\n"
        "grep -sH -e needrestart /etc/apt/apt.conf.d/*\n"
        "grep -sH -e 'nrconf{restart}' -e '=> *0' /etc/needrestart/needrestart.conf /etc/needrestart/conf.d/*.conf\n"
        "exit 0\n")


def test_the_outlook_says_who_restarts_what_and_what_it_means_for_containers():
    auto = parse_needrestart_conf(NR_CONF)
    assert restart_outlook(auto, ["docker.service", "ssh.service"], False) == (
        "needrestart (automatic, /etc/needrestart/conf.d/50-auto.conf) restarts docker.service, ssh.service "
        "right after a plain `apt upgrade`; update.apply runs it list-only: restart them by hand; restarting "
        "docker.service stops and restarts every container (live-restore is off)")
    assert restart_outlook(auto, ["ssh.service", "dbus.service", "systemd-logind.service"], None) == (
        "needrestart (automatic, /etc/needrestart/conf.d/50-auto.conf) restarts ssh.service right after a plain "
        "`apt upgrade`, not dbus.service, systemd-logind.service (its override_rc); update.apply runs it "
        "list-only: restart them by hand")
    assert restart_outlook(auto, ["docker.service"], True).endswith(
        "restarting docker.service: containers keep running (live-restore is on)")
    assert restart_outlook(auto, ["containerd.service"], False).endswith(
        "restarting containerd.service: containers keep running (their shims outlive it)")
    assert restart_outlook(Needrestart(), ["ssh.service"], None) == (
        "needrestart absent: ssh.service keep the old code until restarted by hand")
    assert restart_outlook(Needrestart(), ["docker.service"], True) == (
        "needrestart absent: docker.service keep the old code until restarted by hand; restarting docker.service: "
        "containers keep running (live-restore is on)")
    assert restart_outlook(Needrestart(True, False), ["ssh.service"], None).startswith(
        "needrestart installed but apt does not run it")
    review = lab_with((Mapped(202, "dockerd", "docker.service", LIB, "libaegirlab1"),), systemd=False, nr=auto)
    assert review.outlook is not None and review.outlook.startswith("needrestart (automatic")
    assert review.headline().endswith("(live-restore is off)")


def test_the_apply_compares_the_prediction_with_what_it_found():
    predicted = [(202, LIB, "containerd.service"), (101, LIB, "ssh.service")]
    before = [(7, "/usr/lib/old.so")]
    exact = compare(predicted, before, {202: ("containerd.service", [LIB]), 101: ("ssh.service", [LIB]),
                                        7: ("cron.service", ["/usr/lib/old.so"])})
    assert exact == Comparison(2, 2) and exact.exact and exact.notes() == ()
    off = compare(predicted, before, {202: ("containerd.service", [LIB, "/usr/lib/libz.so.1"])})
    assert (off.missed, off.wrong) == (("containerd.service maps /usr/lib/libz.so.1",), (f"ssh.service maps {LIB}",))
    assert off.notes() == ("stale but not foreseen by the review: containerd.service maps /usr/lib/libz.so.1",
                           f"foreseen stale by the review, not stale after: ssh.service maps {LIB}")
    assert off.as_dict()["exact"] is False


def test_the_review_record_keeps_the_prediction_and_a_record_without_it_still_checks():
    review = lab_with((Mapped(202, "containerd", "containerd.service", LIB, "libaegirlab1"),), systemd=False)
    record = record_of(review, now=1.0, by="t")
    back = ReviewRecord.from_json(record.to_json())
    assert back == record and back.stale == ((202, LIB, "containerd.service", "libaegirlab1"),)
    assert back.stale_before == ((7, "/usr/lib/old.so"),)
    plain = replace(record, stale=(), stale_before=())
    assert "stale" not in plain.to_json() and ReviewRecord.from_json(plain.to_json()) == plain
    bad = plain.to_json().replace('"by"', '"stale": [[1, 2]], "by"')
    with pytest.raises(Exception, match="'stale' must hold \\[int, str, str, str\\] rows"):
        ReviewRecord.from_json(bad)


def test_the_apply_compares_only_what_it_upgraded_a_held_package_predicts_nothing():
    from aegir.update.install import InstallRun
    from aegir.update.plan import ApplyPlan, Checked, apply_result

    record = ReviewRecord(time=1.0, dist=False, versions={"libaegirlab1": ("1.0-1", "1.0-2"), "libz1": ("1", "2")},
                          stale=((202, LIB, "containerd.service", "libaegirlab1"),
                                 (303, "/usr/lib/libz.so.1", "cron.service", "libz1")))
    plan = ApplyPlan(record, {"libz1": ("1", "2")}, hold=("libaegirlab1",))
    run = InstallRun(0, after={"libz1": ("2", "ii"), "libaegirlab1": ("1.0-1", "ii")})
    after = Checked((), None, stale=(StaleProcess(303, "cron", "cron.service", ("/usr/lib/libz.so.1",)),))
    result = apply_result(plan, run, "/var/log/aegir/x.log", ((), None), after)
    assert result.prediction == Comparison(1, 1)  # containerd's library was held: not a false prediction
