"""update.apply installs exactly the reviewed versions: the script's arguments, its gate, and dpkg's state compared.

The gate is run here for real (``sh``), fed the action list apt 2.6 gave a
Pre-Install-Pkgs hook (protocol 3) on a Debian 12 lab root; the lab test
(tests/test_update.py) puts it in front of apt itself.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from aegir.errors import AegirError
from aegir.update.install import (
    _GATE_SCRIPT,
    InstallRun,
    differences,
    exact_simulate_cmd,
    expected_actions,
    install_cmd,
    install_specs,
    parse_install,
)
from aegir.update.plan import exact_changes

UPGRADING = {"libaegirlab1": ("1.0-1", "1.0-2"), "aegir-lab-newdep": ("1.0-1", "1.1-1")}
#: What apt 2.6 (bookworm) fed the hook for `apt-get install libaegirlab1=1.0-2 aegir-lab-newdep=1.1-1 aegir-lab-dockdep-`.
HOOK_INPUT = """\
VERSION 3
APT::Architecture=amd64
DPkg::Pre-Install-Pkgs::=/bin/sh /tmp/x/gate /tmp/x amd64

aegir-lab-dockdep 1.0-1 all none > - - none **REMOVE**
aegir-lab-extra - - none < 1.0-1 all none /var/local/aegir-lab/repo/./aegir-lab-extra_1.0-1_all.deb
aegir-lab-newdep 1.0-1 all none < 1.1-1 all none /var/local/aegir-lab/repo/./aegir-lab-newdep_1.1-1_all.deb
libaegirlab1 1.0-1 all none < 1.0-2 all none /var/local/aegir-lab/repo/./libaegirlab1_1.0-2_all.deb
libfoo1 1.0-1 i386 same < 1.0-2 i386 same /var/cache/apt/archives/libfoo1_1.0-2_i386.deb
aegir-lab-extra - - none < 1.0-1 all none **CONFIGURE**
aegir-lab-newdep 1.0-1 all none < 1.1-1 all none **CONFIGURE**
libaegirlab1 1.0-1 all none < 1.0-2 all none **CONFIGURE**
"""


def test_the_review_becomes_exact_versions_and_explicit_removals():
    assert install_specs(UPGRADING, ["aegir-lab-dockdep"]) == (
        "libaegirlab1=1.0-2", "aegir-lab-newdep=1.1-1", "aegir-lab-dockdep-")
    assert expected_actions({**UPGRADING, "aegir-lab-extra": (None, "1.0-1")}, ["aegir-lab-dockdep"]) == (
        "install aegir-lab-extra - 1.0-1", "install aegir-lab-newdep 1.0-1 1.1-1", "install libaegirlab1 1.0-1 1.0-2",
        "remove aegir-lab-dockdep")
    assert exact_simulate_cmd(UPGRADING, ["aegir-lab-dockdep"]).line == (
        "env DEBIAN_FRONTEND=noninteractive LC_ALL=C timeout -k 5 300 apt-get -s install --no-install-recommends "
        "-o APT::Get::Purge=false libaegirlab1=1.0-2 aegir-lab-newdep=1.1-1 aegir-lab-dockdep-")


@pytest.mark.parametrize(("upgrading", "removals"), [
    ({"libfoo1; id": ("1", "2")}, []), ({"libfoo1": ("1", "2 && id")}, []), ({"libfoo1": ("$(id)", "2")}, []),
    ({}, ["-o"]), ({}, ["docker.io -o Dpkg::Options::=x"]), ({"libfoo1": ("1", "")}, []),
])
def test_names_and_versions_that_are_not_debian_ones_never_reach_the_script(upgrading, removals):
    with pytest.raises(AegirError, match="invalid (package name|version)"):
        install_cmd("/var/log/aegir/u.log", upgrading, removals)


def test_the_install_runs_as_one_script_that_asks_nothing_and_waits_for_apts_lock():
    cmd = install_cmd("/var/log/aegir/u.log", {**UPGRADING, "aegir-lab-extra": (None, "1.0-1")}, ["aegir-lab-dockdep"],
                      wait=90)
    assert cmd.env["DEBIAN_FRONTEND"] == "noninteractive" and cmd.env["NEEDRESTART_MODE"] == "l"
    assert cmd.argv[:2] == ("sh", "-c") and cmd.argv[3] == "sh"
    script, args = cmd.argv[2], cmd.argv[4:]
    assert args[:5] == ("/var/log/aegir/u.log", "libaegirlab1=1.0-2 aegir-lab-newdep=1.1-1 aegir-lab-extra=1.0-1 "
                        "aegir-lab-dockdep-", "install aegir-lab-extra - 1.0-1\ninstall aegir-lab-newdep 1.0-1 1.1-1\n"
                        "install libaegirlab1 1.0-1 1.0-2\nremove aegir-lab-dockdep", "aegir-lab-extra", "90")
    assert args[6] == _GATE_SCRIPT
    for option in ('"DPkg::Lock::Timeout=$wait"', "APT::Get::Purge=false", "--no-install-recommends",
                   '"DPkg::Pre-Install-Pkgs::=/bin/sh $dir/gate $dir $native"', "DPkg::Tools::Options::/bin/sh::Version=3",
                   "Dpkg::Options::=--force-confold"):
        assert option in script
    assert "upgrade" not in script.split("apt-get install")[1].split("\n")[0]


def _gate(tmp_path: Path, expected: tuple[str, ...], hook_input: str = HOOK_INPUT) -> tuple[int, str, str]:
    (tmp_path / "expected").write_text("".join(f"{e}\n" for e in sorted(expected)))
    (tmp_path / "state").write_text("echo 'libfoo1\t1.0-1\tii '\n")
    gate = tmp_path / "gate"
    gate.write_text(_GATE_SCRIPT)
    done = subprocess.run(["sh", str(gate), str(tmp_path), "amd64"], input=hook_input, capture_output=True,
                          text=True, env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"})
    return done.returncode, (tmp_path / "actions").read_text(), done.stderr


def test_the_gate_reads_apts_actions_and_lets_exactly_the_review_through(tmp_path):
    review = expected_actions({**UPGRADING, "aegir-lab-extra": (None, "1.0-1"), "libfoo1:i386": ("1.0-1", "1.0-2")},
                              ["aegir-lab-dockdep"])
    code, actions, _ = _gate(tmp_path, review)
    assert code == 0 and tuple(actions.splitlines()) == review
    assert (tmp_path / "before").read_text() == "libfoo1\t1.0-1\tii \n"  # dpkg's state, taken under apt's lock


@pytest.mark.parametrize("missing", ["install aegir-lab-extra - 1.0-1", "remove aegir-lab-dockdep",
                                     "install libfoo1:i386 1.0-1 1.0-2"])
def test_the_gate_stops_apt_when_it_would_do_anything_unreviewed(tmp_path, missing):
    review = expected_actions({**UPGRADING, "aegir-lab-extra": (None, "1.0-1"), "libfoo1:i386": ("1.0-1", "1.0-2")},
                              ["aegir-lab-dockdep"])
    code, actions, stderr = _gate(tmp_path, tuple(r for r in review if r != missing))
    assert code == 1 and "stopping before dpkg runs" in stderr
    run = InstallRun(100, tuple(actions.splitlines()))
    [why] = run.refused(tuple(r for r in review if r != missing))
    assert why.startswith("apt would " + missing.split()[0]) and missing.split()[1] in why


@pytest.mark.parametrize("line", [
    "libaegirlab1 1.0-1 all none < 1.0-3 all none /x/libaegirlab1_1.0-3_all.deb",  # another version
    "libaegirlab1 1.0-0 all none < 1.0-2 all none /x/libaegirlab1_1.0-2_all.deb",  # from another version
    "something apt 4 may print",  # a line the gate does not know
])
def test_the_gate_refuses_another_version_or_a_line_it_cannot_read(tmp_path, line):
    review = ("install libaegirlab1 1.0-1 1.0-2",)
    code, actions, _ = _gate(tmp_path, review, f"VERSION 3\nA=b\n\n{line}\n")
    assert code == 1 and actions.strip() != review[0]


STDOUT = """\
@@aegir@@ exit 0
@@aegir@@ gate
install aegir-lab-newdep 1.0-1 1.1-1
install libaegirlab1 1.0-1 1.0-2
@@aegir@@ before
aegir-lab-newdep\t1.0-1\tii
libaegirlab1\t1.0-1\tii
man-db\t2.11.2-2\tit
@@aegir@@ after
aegir-lab-newdep\t1.1-1\tii
libaegirlab1\t1.0-2\tii
man-db\t2.11.2-2\tii
@@aegir@@ tail
Setting up libaegirlab1 (1.0-2) ...
# exit 0
"""


def test_dpkgs_state_matching_the_review_is_no_difference_even_after_triggers_ran():
    run = parse_install(STDOUT)
    assert run.exit == 0 and run.actions == ("install aegir-lab-newdep 1.0-1 1.1-1", "install libaegirlab1 1.0-1 1.0-2")
    assert run.after["libaegirlab1"] == ("1.0-2", "ii") and run.tail[-1] == "# exit 0"
    assert run.refused(expected_actions(UPGRADING, [])) == ()
    assert differences(run, UPGRADING, []) == ()


def test_every_difference_between_dpkg_and_the_review_is_reported():
    stdout = STDOUT.replace("libaegirlab1\t1.0-2\tii", "libaegirlab1\t1.0-2\tiF").replace(
        "aegir-lab-newdep\t1.1-1\tii", "aegir-lab-newdep\t1.0-1\tii") + "@@aegir@@ marks-failed\n"
    stdout = stdout.replace("@@aegir@@ tail", "docker.io\t20.10.24+dfsg1-1+b3\tii \n@@aegir@@ tail")
    run = parse_install(stdout.replace("man-db\t2.11.2-2\tii", "man-db\t2.11.2-3\tii"))
    assert differences(run, {**UPGRADING, "newpkg": (None, "1")}, ["oldtool", "gone"]) == (
        "aegir-lab-newdep is at 1.0-1 (reviewed: 1.0-1 -> 1.1-1)",
        "libaegirlab1 1.0-2 is not fully installed (dpkg status 'iF')",
        "newpkg is not installed (reviewed: new -> 1)",
        "docker.io changed without a review: not installed -> 20.10.24+dfsg1-1+b3",
        "man-db changed without a review: 2.11.2-2 -> 2.11.2-3",
        "apt-mark auto failed: the upgraded packages are marked as installed by hand (see the log)",
    )
    removed = parse_install(STDOUT.replace("@@aegir@@ after\n", "@@aegir@@ after\noldtool\t1\trc \nkept\t2\tii \n")
                            .replace("@@aegir@@ before\n", "@@aegir@@ before\noldtool\t1\tii \nkept\t2\tii \n"))
    assert differences(removed, UPGRADING, ["oldtool", "kept"]) == (
        "kept 2 is still installed (reviewed for removal)",)


def test_when_the_gate_did_not_run_there_is_nothing_it_refused():
    run = parse_install("@@aegir@@ exit 100\n@@aegir@@ before\n@@aegir@@ after\n@@aegir@@ tail\nE: Version '1.0-2' "
                        "for 'libaegirlab1' was not found\n")
    assert run.actions is None and run.refused(("install x - 1",)) == () and run.exit == 100


def test_the_plan_says_why_apt_cannot_install_the_reviewed_versions_alone():
    assert exact_changes(UPGRADING, ["oldtool"], {**UPGRADING, "aegir-lab-extra": (None, "1.0-1")}, ["oldtool"]) == [
        "it would also install aegir-lab-extra 1.0-1"]
    assert exact_changes({"libaegirlab1": ("1.0-1", "1.0-2")}, [], {"containerd": ("1", "2")}, ["runc"],
                         hold=["containerd"]) == [
        "it would also install containerd 2 (kept by --hold)",
        "it would not install libaegirlab1 1.0-2 (no longer available, or already installed)",
        "it would also remove runc"]
    assert exact_changes(UPGRADING, [], {**UPGRADING, "libaegirlab1": ("1.0-0", "1.0-2")}, []) == [
        "libaegirlab1: reviewed 1.0-1 -> 1.0-2, it would do 1.0-0 -> 1.0-2"]
