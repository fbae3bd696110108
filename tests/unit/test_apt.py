"""apt/dpkg/systemd facts, parsed from outputs recorded on Debian 12 and 13 (see tests/unit/data/apt_README.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aegir.errors import AegirError
from aegir.update.apt import (
    Origin,
    Upgrade,
    check_unit,
    dpkg_search_cmd,
    needrestart_cmd,
    owners,
    package_info_cmd,
    parse_dpkg_search,
    parse_needrestart,
    parse_package_info,
    parse_showhold,
    parse_simulation,
    parse_units,
    path_aliases,
    simulate_cmd,
    systemctl_show_cmd,
    units_in,
    update_cmd,
)

DATA = Path(__file__).parent / "data"


def recorded(name: str) -> tuple[str, str, int]:
    """stdout, stderr and exit code of a recording made by tests/lab/apt_recordings.py."""
    text = (DATA / name).read_text()
    stdout, _, rest = text.partition("--- stderr\n")
    stderr, _, code = rest.partition("--- exit ")
    return stdout, stderr, int(code)


def test_commands_are_unprompted_untranslated_and_exact():
    assert simulate_cmd().line == "env DEBIAN_FRONTEND=noninteractive LC_ALL=C timeout -k 5 300 apt-get -s upgrade"
    assert simulate_cmd(dist=True).line == \
        "env DEBIAN_FRONTEND=noninteractive LC_ALL=C timeout -k 5 300 apt-get -s dist-upgrade"
    assert simulate_cmd().timeout is None  # bounded on the host: batched with the other reads
    assert update_cmd().line == ("env DEBIAN_FRONTEND=noninteractive LC_ALL=C timeout -k 5 20 apt-get update -q "
                                 "--error-on=any -o Acquire::Retries=0 -o Acquire::http::Timeout=10 "
                                 "-o Acquire::https::Timeout=10 -o Acquire::ftp::Timeout=10")
    assert systemctl_show_cmd(["docker", "sshd.service"], ["Id", "Requires"]).line == \
        "env DEBIAN_FRONTEND=noninteractive LC_ALL=C systemctl show -p Id,Requires docker.service sshd.service"


def test_bookworm_upgrade_lists_security_updates_with_their_origin():
    sim = parse_simulation(recorded("apt_bookworm_upgrade.txt")[0])
    assert len(sim.upgrades) == 11
    assert sim.upgrades[0] == Upgrade("perl-base", "5.36.0-7+deb12u4", "5.36.0-7+deb12u3", "amd64",
                                      (Origin("Debian-Security", "12", "oldstable-security"),))
    assert sim.upgrades[0].security and sim.upgrades[0].origin == "Debian-Security:12/oldstable-security"
    security = {u.name for u in sim.upgrades if u.security}
    assert security == {"perl-base", "liblzma5", "libapt-pkg6.0", "apt", "libpcre2-8-0", "tzdata"}
    assert sim.versions["libaegirlab1"] == ("1.0-1", "1.0-2")
    assert not sim.upgrades[-1].security and sim.upgrades[-1].origin == "aegir-lab:1/lab"
    assert sim.summary == "11 upgraded, 0 newly installed, 0 to remove and 2 not upgraded."


def test_held_and_kept_back_packages_are_not_upgrades():
    for suite in ("bookworm", "trixie"):
        sim = parse_simulation(recorded(f"apt_{suite}_upgrade.txt")[0])
        assert sim.kept_back == ("aegir-lab-held", "aegir-lab-newdep")
        assert "aegir-lab-held" not in sim.versions
        assert parse_showhold(recorded(f"apt_{suite}_showhold.txt")[0]) == ("aegir-lab-held",)


def test_trixie_upgrade_reads_the_same_with_apt_3():
    sim = parse_simulation(recorded("apt_trixie_upgrade.txt")[0])
    assert [u.name for u in sim.upgrades] == ["aegir-lab-beacon", "aegir-lab-dockdep", "libaegirlab-sec1",
                                              "libaegirlab1", "libeot0", "linux-image-aegir-lab"]
    eot = next(u for u in sim.upgrades if u.name == "libeot0")
    assert (eot.old, eot.new, eot.arch) == ("0.01-5+b2", "0.01-5+deb13u1", "amd64")
    assert eot.origins == (Origin("Debian-Security", "13", "stable-security"),) and eot.security


def test_dist_upgrade_installs_the_new_dependency_and_keeps_only_the_held_back():
    for suite in ("bookworm", "trixie"):
        sim = parse_simulation(recorded(f"apt_{suite}_dist_upgrade.txt")[0])
        assert sim.kept_back == ("aegir-lab-held",)
        assert sim.versions["aegir-lab-extra"] == (None, "1.0-1")
        assert sim.versions["aegir-lab-newdep"] == ("1.0-1", "1.1-1")


def test_a_version_in_several_archives_keeps_every_origin_and_a_trailing_bracket_is_ignored():
    line = ("Inst libc6 [2.36-9+deb12u3] (2.36-9+deb12u4 Debian:12.5/stable, Debian-Security:12/stable-security"
            " [amd64]) []\nRemv oldpkg [1.0]\n")
    sim = parse_simulation(line)
    assert sim.upgrades[0].origins == (Origin("Debian", "12.5", "stable"),
                                       Origin("Debian-Security", "12", "stable-security"))
    assert sim.upgrades[0].security and sim.removals == ("oldpkg",)


def test_nothing_to_upgrade_is_an_empty_simulation():
    sim = parse_simulation("Reading package lists...\nBuilding dependency tree...\nCalculating upgrade...\n"
                           "0 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.\n")
    assert sim.upgrades == () and sim.kept_back == () and sim.versions == {}


def test_dpkg_search_asks_both_spellings_of_a_merged_usr_path():
    assert path_aliases("/lib/systemd/system/x.service") == ("/lib/systemd/system/x.service",
                                                             "/usr/lib/systemd/system/x.service")
    assert path_aliases("/usr/bin/sh") == ("/usr/bin/sh", "/bin/sh")
    assert path_aliases("/etc/x") == ("/etc/x",)
    assert dpkg_search_cmd(["/lib/a.service"]).line == \
        "env DEBIAN_FRONTEND=noninteractive LC_ALL=C dpkg -S -- /lib/a.service /usr/lib/a.service"


@pytest.mark.parametrize("suite, sh_path", [("bookworm", "/bin/sh"), ("trixie", "/usr/bin/sh")])
def test_dpkg_search_finds_the_owner_under_either_spelling(suite, sh_path):
    stdout, stderr, code = recorded(f"apt_{suite}_dpkg_S.txt")
    assert code == 1 and "no path found matching pattern /lib/systemd/system/no-such.service" in stderr
    found = parse_dpkg_search(stdout)
    assert found[sh_path] == ("dash",)  # diversion lines are skipped
    paths = ["/usr/lib/systemd/system/aegir-lab-beacon.service", "/bin/sh", "/lib/systemd/system/no-such.service"]
    assert owners(paths, found) == {paths[0]: ("aegir-lab-beacon",), "/bin/sh": ("dash",), paths[2]: ()}


def test_dpkg_search_drops_architecture_qualifiers_and_splits_shared_paths():
    found = parse_dpkg_search("libc6:amd64: /usr/lib/x86_64-linux-gnu/libc.so.6\nfoo, bar:amd64: /usr/share/x\n")
    assert found == {"/usr/lib/x86_64-linux-gnu/libc.so.6": ("libc6",), "/usr/share/x": ("foo", "bar")}


def test_systemctl_show_gives_each_unit_under_all_its_names():
    units = parse_units((DATA / "apt_lab_systemctl_show.txt").read_text())
    docker = units["docker.service"]
    assert docker.deps["Requires"] == ("docker.socket", "sysinit.target", "system.slice", "aegir-lab-dockdep.service")
    assert docker.dropin_paths == ("/etc/systemd/system/docker.service.d/aegir-lab.conf",)
    assert docker.active and docker.loaded
    assert units["sshd.service"] is units["ssh.service"] and units["ssh.service"].active
    assert not units["aegir-lab-dockdep.service"].active
    assert units["no-such.service"].load_state == "not-found"


def test_unit_names_are_completed_and_checked():
    assert check_unit("ssh") == "ssh.service" and check_unit("docker.socket") == "docker.socket"
    with pytest.raises(AegirError, match="invalid systemd unit name"):
        check_unit("ssh; reboot")


def test_package_info_reads_units_and_maintainer_scripts_of_old_and_new():
    info = parse_package_info((DATA / "apt_lab_package_info.txt").read_text())
    assert set(info) == {"containerd", "aegir-lab-beacon", "libaegirlab1", "aegir-lab-dockdep"}
    assert info["containerd"].units == ("containerd.service",)
    assert "_dh_action=restart" in info["containerd"].scripts["new-postinst"]
    assert "deb-systemd-invoke stop 'containerd.service'" in info["containerd"].scripts["old-prerm"]
    assert info["aegir-lab-beacon"].units == ("aegir-lab-beacon.service",)
    assert info["libaegirlab1"].units == () and info["libaegirlab1"].scripts == {}
    assert all(i.download_error is None for i in info.values())


def test_package_info_refuses_names_that_are_not_packages():
    assert "containerd=1.6.20~ds1-1" in package_info_cmd({"containerd": "1.6.20~ds1-1"}).line
    with pytest.raises(AegirError, match="invalid package name"):
        package_info_cmd({"x; rm -rf /": "1"})


def test_a_failed_download_is_reported_per_package():
    out = "@@aegir@@ package foo\n@@aegir@@ download-failed\nE: Can't find a source to download version '2' of 'foo:amd64'\n@@aegir@@ old-files\n/usr/bin/foo\n"
    info = parse_package_info(out)["foo"]
    assert info.download_error == "E: Can't find a source to download version '2' of 'foo:amd64'"


def test_units_in_a_file_list_include_init_scripts():
    assert units_in(["./lib/systemd/system/a.service", "/usr/lib/systemd/system/b.socket", "/etc/init.d/cron",
                     "/lib/systemd/system/c.timer", "/usr/share/doc/x"]) == ("a.service", "b.socket", "cron.service")


def test_needrestart_lists_the_processes_mapping_replaced_files():
    assert needrestart_cmd().argv[:2] == ("sh", "-c")
    procs = parse_needrestart((DATA / "apt_lab_needrestart.txt").read_text())
    assert len(procs) == 1
    assert (procs[0].command, procs[0].unit, procs[0].files) == ("containerd", None, ("/usr/bin/containerd",))
    row = parse_needrestart("812\tsshd\tssh.service\t/usr/lib/x86_64-linux-gnu/libssl.so.3 /usr/sbin/sshd\n")[0]
    assert row.unit == "ssh.service" and row.files == ("/usr/lib/x86_64-linux-gnu/libssl.so.3", "/usr/sbin/sshd")


def test_a_real_hypervisor_like_upgrade_of_117_packages_parses_line_by_line():
    """apt_bookworm_machine_upgrade.txt: `apt-get -s upgrade` of this Debian 12 machine (see apt_README.md)."""
    stdout = recorded("apt_bookworm_machine_upgrade.txt")[0]
    sim = parse_simulation(stdout)
    assert len(sim.upgrades) == stdout.count("\nInst ") + stdout.startswith("Inst ") == 117
    pam = sim.versions["libpam-modules-bin"]  # its line ends with "[libpam-modules:amd64 on ...] [...]"
    assert pam == ("1.5.2-6+deb12u1", "1.5.2-6+deb12u2")
    krb = next(u for u in sim.upgrades if u.name == "krb5-locales")
    assert [str(o) for o in krb.origins] == ["Debian:12.15/oldstable", "Debian-Security:12/oldstable-security"]


def test_an_inst_line_that_cannot_be_read_stops_the_review_instead_of_dropping_the_package():
    """A package left out here would be upgraded by update.apply without having been reviewed."""
    with pytest.raises(AegirError, match=r"cannot read this line of apt-get -s: 'Inst containerd \[1.6\] 1.7'"):
        parse_simulation("Inst libfoo1 [1.0-1] (1.0-2 Debian:12.5/stable [amd64])\nInst containerd [1.6] 1.7\n")


@pytest.mark.parametrize("line", [
    "Inst containerd [1.6] 1.7",  # no parenthesis
    "Remv",  # no package
    "Remv containerd something else",
    "Conf containerd",  # Conf always says (version ...)
    "Dele containerd [1.6]",  # an action verb this parser does not know
    "Kill libfoo1 (1.0 Debian:12/stable [amd64])",
    "Unpk libfoo1",
])
def test_any_action_line_the_parser_does_not_know_fails_instead_of_being_skipped(line):
    with pytest.raises(AegirError, match="cannot read this line of apt-get -s"):
        parse_simulation(f"Inst libfoo1 [1.0-1] (1.0-2 Debian:12.5/stable [amd64])\n{line}\n")


@pytest.mark.parametrize("line", ["Purg aegir-lab-dockdep [1.0-1]", "Purg aegir-lab-dockdep",
                                  "Purg libfoo1:i386 [1.0-1] [libbar:i386 ]"])
def test_a_purge_fails_the_review_and_names_the_setting_that_causes_it(line):
    """With APT::Get::Purge apt prints Purg instead of Remv: the review stops instead of ignoring it."""
    with pytest.raises(AegirError, match=r"apt would purge .* \(APT::Get::Purge\)"):
        parse_simulation(f"Remv other [1]\n{line}\n")


def test_the_lines_around_the_actions_are_not_taken_for_actions():
    """Every line of the recorded outputs (summaries, lists, notes) reads without an error."""
    for name in ("apt_bookworm_upgrade.txt", "apt_bookworm_dist_upgrade.txt", "apt_trixie_upgrade.txt",
                 "apt_trixie_dist_upgrade.txt", "apt_bookworm_machine_upgrade.txt"):
        parse_simulation(recorded(name)[0])
    parse_simulation((DATA / "apt_lab_upgrade.txt").read_text())
    sim = parse_simulation("NOTE: This is only a simulation!\nSome packages could not be installed.\n"
                           "Need to get 12 kB of archives.\nRemv aegir-lab-dockdep [1.0-1]\n")
    assert sim.removals == ("aegir-lab-dockdep",)
