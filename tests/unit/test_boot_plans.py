"""Boot plans: each step decided from facts alone (already so, the one command, or a refusal)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aegir.boot import plan as boot
from aegir.boot.facts import DataRoot, Listing, LuksMapping, Mount
from aegir.errors import AegirError, RefusedError
from aegir.inventory import Host
from aegir.sh import write_file_cmd

DATA = Path(__file__).parent / "data"
PLAIN = Host("hyp1", srv="/srv", docker_start=("/lab/bin/start-docker",))
LUKS = Host("hyp2", srv="/srv", luks_device="/dev/md2", luks_name="data")
SIX = frozenset({"conf", "docker", "templates", "core", "apps", "users"})
GiB = 1 << 30

FSTAB_LOOP_DEV = Mount("/srv", "/dev/loop3", "ext4", ("defaults",))  # the lab's fstab
FSTAB_IMAGE = Mount("/srv", "/var/lib/srv.img", "ext4", ("loop", "noauto"))
FSTAB_LUKS = Mount("/srv", "/dev/mapper/data", "ext4", ("noauto",))


def mounted(source: str = "/dev/loop3", avail: int = 80 * GiB, size: int = 100 * GiB, **kw) -> Mount:
    return Mount("/srv", source, "ext4", ("rw", "relatime"), size, avail, **kw)


def facts(*, m: Mount | None = None, fstab: Mount | None = FSTAB_LOOP_DEV, folders=SIX, files=frozenset(),
          root: DataRoot = DataRoot(None, "unknown"), loops=None, mapping=None, exists=True) -> boot.SrvFacts:
    return boot.SrvFacts(m, fstab, Listing(exists, frozenset(folders), frozenset(files)), root, loops or {}, mapping)


def items(host: Host, f: boot.SrvFacts, **kw) -> dict[str, tuple[str, str]]:
    return {i.name: (i.status, i.detail) for i in boot.check_items(host, f, **kw)}


# --------------------------------------------------------------------------- unlock


def test_a_host_without_luks_in_the_inventory_has_nothing_to_unlock():
    assert boot.plan_unlock(PLAIN, None, None).action == "skip"


def test_a_device_that_is_not_luks_is_refused_before_any_passphrase():
    with pytest.raises(RefusedError, match="/dev/md2 is not a LUKS device"):
        boot.plan_unlock(LUKS, False, LuksMapping("data", False))


def test_an_open_mapping_is_already_done():
    plan = boot.plan_unlock(LUKS, True, LuksMapping("data", True, "/dev/md2"))
    assert (plan.action, plan.detail, plan.warnings) == ("already", "/dev/mapper/data is already open (/dev/md2)", ())


def test_a_mapping_open_on_another_device_is_said():
    plan = boot.plan_unlock(LUKS, True, LuksMapping("data", True, "/dev/md3"))
    assert plan.warnings == ("mapping data is open on /dev/md3, the inventory says /dev/md2",)


def test_a_closed_mapping_plans_the_runbooks_luksopen():
    plan = boot.plan_unlock(LUKS, True, LuksMapping("data", False))
    assert (plan.action, plan.command.line) == ("open", "cryptsetup luksOpen --key-file=- /dev/md2 data")


def test_testing_a_passphrase_does_not_look_at_the_mapping():
    plan = boot.plan_unlock(LUKS, True, None, test=True)
    assert (plan.action, plan.command.line) == ("test", "cryptsetup open --test-passphrase --key-file=- /dev/md2")


# --------------------------------------------------------------------------- mount


def test_a_mounted_srv_is_left_alone():
    plan = boot.plan_mount(PLAIN, facts(m=mounted()))
    assert (plan.action, plan.detail, plan.command) == ("already", "/srv is already mounted (/dev/loop3, ext4)", None)


def test_an_fstab_entry_means_mount_srv():
    plan = boot.plan_mount(PLAIN, facts(folders=()))
    assert (plan.action, plan.command.line, plan.warnings) == ("mount", "mount /srv", ())


def test_without_fstab_the_opened_mapping_is_mounted():
    plan = boot.plan_mount(LUKS, facts(fstab=None, folders=(), mapping=LuksMapping("data", True, "/dev/md2")))
    assert plan.command.line == "mount /dev/mapper/data /srv"


def test_mounting_is_refused_while_the_mapping_is_closed():
    with pytest.raises(RefusedError, match=r"/dev/mapper/data is not open, so /srv cannot be mounted: run boot.unlock"):
        boot.plan_mount(LUKS, facts(fstab=FSTAB_LUKS, folders=(), mapping=LuksMapping("data", False)))


def test_with_neither_fstab_nor_luks_nothing_says_what_to_mount():
    with pytest.raises(RefusedError, match="no /srv line in /etc/fstab and no luks device"):
        boot.plan_mount(PLAIN, facts(fstab=None, folders=()))


def test_a_missing_mount_point_is_refused():
    with pytest.raises(RefusedError, match="the mount point /srv does not exist"):
        boot.plan_mount(PLAIN, facts(folders=(), exists=False))


def test_data_written_on_the_root_disk_under_srv_is_warned_about():
    plan = boot.plan_mount(PLAIN, facts(folders={"docker"}, files={"x"}))
    assert plan.warnings == ("/srv already holds 2 entries on the root disk (written while it was not mounted?); "
                             "the mount will hide them",)


# --------------------------------------------------------------------------- check


def test_a_mounted_and_complete_srv_passes_with_the_data_root_left_to_the_running_daemon():
    got = items(PLAIN, facts(m=mounted()))
    assert got == {
        "mount": ("ok", "/srv is mounted from /dev/loop3 (ext4)"),
        "folders": ("ok", "conf docker templates core apps users"),
        "data-root": ("warning", "not known until Docker runs (no data-root in /etc/docker/daemon.json); "
                                 "boot.docker refuses to start it unless --unknown-data-root"),
        "free": ("ok", "80G free of 100G (80%)"),
    }
    assert boot.blocking(boot.check_items(PLAIN, facts(m=mounted()))) == []


def test_an_image_in_fstab_matches_the_loop_device_that_backs_it():
    f = facts(m=mounted("/dev/loop0"), fstab=FSTAB_IMAGE, loops={"/dev/loop0": "/var/lib/srv.img"},
              root=DataRoot("/srv/docker", "docker info", True))
    assert items(PLAIN, f)["mount"] == ("ok", "/srv is mounted from /dev/loop0 = /var/lib/srv.img (ext4)")
    assert items(PLAIN, f)["data-root"] == ("ok", "/srv/docker (docker info)")


def test_another_image_on_the_mount_point_is_a_problem():
    f = facts(m=mounted("/dev/loop1"), fstab=FSTAB_IMAGE, loops={"/dev/loop1": "/tmp/other.img"})
    assert items(PLAIN, f)["mount"] == ("problem", "/srv is mounted from /dev/loop1 (/tmp/other.img), "
                                                   "expected /var/lib/srv.img")


def test_with_luks_the_expected_device_is_the_mapping():
    f = facts(m=mounted("/dev/md2"), fstab=FSTAB_LUKS)
    assert items(LUKS, f)["mount"] == ("problem", "/srv is mounted from /dev/md2, expected /dev/mapper/data")
    assert items(LUKS, facts(m=mounted("/dev/mapper/data")))["mount"][0] == "ok"


def test_uuid_and_label_fstab_sources_match_the_mounted_filesystem():
    by_uuid = Mount("/srv", "UUID=5961a4a4", "ext4")
    assert items(PLAIN, facts(m=mounted("/dev/sdb1", uuid="5961a4a4"), fstab=by_uuid))["mount"][0] == "ok"
    assert items(PLAIN, facts(m=mounted("/dev/sdb1", uuid="other"), fstab=by_uuid))["mount"][0] == "problem"
    by_label = Mount("/srv", "LABEL=srv", "ext4")
    assert items(PLAIN, facts(m=mounted("/dev/sdb1", label="srv"), fstab=by_label))["mount"][0] == "ok"


def test_a_bind_mount_matches_the_folder_fstab_names_as_findmnt_shows_it():
    bind = Mount("/srv", "/var/lab/hyp1/srv", "none", ("bind",))
    assert items(PLAIN, facts(m=mounted("/dev/vda1[/var/lab/hyp1/srv]"), fstab=bind))["mount"][0] == "ok"
    assert items(PLAIN, facts(m=mounted("/dev/vdb1[/lab/hyp1/srv]"), fstab=bind))["mount"][0] == "ok"  # /var is vdb1
    assert items(PLAIN, facts(m=mounted("/dev/vda1[/var/lab/hyp2/srv]"), fstab=bind))["mount"] == (
        "problem", "/srv is mounted from /dev/vda1[/var/lab/hyp2/srv], expected /var/lab/hyp1/srv")


def test_an_unmounted_srv_fails_and_its_content_is_not_checked():
    got = items(PLAIN, facts())
    assert got["mount"] == ("problem", "/srv is not a mount point (run boot.mount)")
    assert got["folders"] == ("skipped", "/srv is not mounted")
    assert got["free"] == ("skipped", "/srv is not mounted")
    assert [i.name for i in boot.blocking(boot.check_items(PLAIN, facts()))] == ["mount", "folders", "free"]


def test_missing_folders_are_named_in_runbook_order():
    assert items(PLAIN, facts(m=mounted(), folders={"conf", "docker", "apps"}))["folders"] == (
        "problem", "missing in /srv: templates core users")


def test_a_data_root_off_srv_is_a_problem_wherever_it_comes_from():
    for root in (DataRoot("/var/lib/docker", "/etc/docker/daemon.json"), DataRoot("/var/lib/docker", "docker info", True)):
        status, detail = items(PLAIN, facts(m=mounted(), root=root))["data-root"]
        assert (status, detail) == ("problem", f"/var/lib/docker ({root.source}) is not on /srv: Docker would write "
                                               "application data to the root disk")


def test_docker_running_on_an_unmounted_srv_is_the_worst_problem():
    got = items(PLAIN, facts(root=DataRoot("/srv/docker", "docker info", True)))
    assert got["data-root"] == ("problem", "Docker is running on /srv/docker while /srv is NOT mounted: it is "
                                           "writing to the root disk; stop Docker, then boot.mount")


def test_a_data_root_elsewhere_on_srv_is_fine_but_named():
    got = items(PLAIN, facts(m=mounted(), root=DataRoot("/srv/var/docker", "/etc/docker/daemon.json")))
    assert got["data-root"] == ("ok", "/srv/var/docker (/etc/docker/daemon.json) (the runbook says /srv/docker)")


def test_low_free_space_is_a_problem_below_the_threshold():
    assert items(PLAIN, facts(m=mounted(avail=3 * GiB)))["free"] == ("problem", "3.0G free of 100G (3%, below 5%)")
    assert items(PLAIN, facts(m=mounted(avail=3 * GiB)), min_free=2)["free"][0] == "ok"


@pytest.mark.parametrize("path, root, expected", [
    ("/srv/docker", "/srv", True), ("/srv", "/srv", True), ("/srv2/docker", "/srv", False),
    ("/srv/../var/lib/docker", "/srv", False), ("/var/lib/docker", "/", True),
])
def test_is_under_is_path_arithmetic(path, root, expected):
    assert boot.is_under(path, root) is expected


# --------------------------------------------------------------------------- docker


def test_docker_starts_with_the_inventory_command_only_on_a_checked_srv():
    f = facts(m=mounted(), root=DataRoot("/srv/docker", "/etc/docker/daemon.json"))
    plan = boot.plan_docker(PLAIN, boot.check_items(PLAIN, f), f.data_root)
    assert (plan.action, plan.command.line, plan.command.timeout) == ("start", "/lab/bin/start-docker", 120)
    assert boot.plan_docker(Host("x"), boot.check_items(Host("x"), f), f.data_root).command.line == \
        "systemctl start docker"


def test_docker_with_a_data_root_it_cannot_read_is_refused_unless_the_operator_says_so():
    f = facts(m=mounted())
    with pytest.raises(RefusedError) as err:
        boot.plan_docker(PLAIN, boot.check_items(PLAIN, f), f.data_root)
    assert err.value.message == (
        "not starting Docker: its data-root cannot be shown to be on /srv before it runs (no data-root in "
        "/etc/docker/daemon.json, and Docker's default /var/lib/docker is on the root disk); set "
        "\"data-root\": \"/srv/docker\" there, or pass --unknown-data-root to start it and check its data-root "
        "once it answers")
    plan = boot.plan_docker(PLAIN, boot.check_items(PLAIN, f), f.data_root, unknown_data_root=True)
    assert (plan.action, plan.command.line) == ("start", "/lab/bin/start-docker")
    elsewhere = facts(m=mounted(), root=DataRoot("/var/lib/docker", "/etc/docker/daemon.json"))
    with pytest.raises(RefusedError, match="data-root: /var/lib/docker .* is not on /srv"):
        boot.plan_docker(PLAIN, boot.check_items(PLAIN, elsewhere), elsewhere.data_root, unknown_data_root=True)


def test_docker_is_not_started_on_an_unmounted_srv():
    f = facts()
    with pytest.raises(RefusedError) as err:
        boot.plan_docker(PLAIN, boot.check_items(PLAIN, f), f.data_root)
    assert err.value.message == (
        "not starting Docker: mount: /srv is not a mount point (run boot.mount); folders: /srv is not mounted; "
        "free: /srv is not mounted. Starting it now would write application data to the unencrypted root disk; "
        "run boot.mount and boot.check first")


def test_a_running_docker_on_srv_is_already_done():
    f = facts(m=mounted(), root=DataRoot("/srv/docker", "docker info", True))
    plan = boot.plan_docker(PLAIN, boot.check_items(PLAIN, f), f.data_root)
    assert (plan.action, plan.detail) == ("already", "Docker is already running (data-root /srv/docker)")


def test_a_running_docker_on_an_unmounted_srv_fails_loudly():
    f = facts(root=DataRoot("/srv/docker", "docker info", True))
    with pytest.raises(RefusedError, match="Docker is already running, but: Docker is running on /srv/docker while"):
        boot.plan_docker(PLAIN, boot.check_items(PLAIN, f), f.data_root)


def test_after_starting_the_daemons_data_root_must_be_on_srv():
    boot.check_started(PLAIN, DataRoot("/srv/docker", "docker info", True))
    with pytest.raises(AegirError, match="Docker started with data-root /var/lib/docker, NOT on /srv"):
        boot.check_started(PLAIN, DataRoot("/var/lib/docker", "docker info", True))


# --------------------------------------------------------------------------- guard


def test_the_drop_in_asserts_that_srv_is_a_mount_point():
    text = boot.guard_dropin("/srv")
    assert text.endswith("\n[Unit]\nAssertPathIsMountPoint=/srv\n")
    assert boot.guard_problems(text, "/srv") == ()


def test_drop_ins_go_beside_docker_service_and_docker_socket_under_the_root():
    assert boot.guard_paths("/") == (
        ("docker.service", "/etc/systemd/system/docker.service.d/aegir-srv.conf"),
        ("docker.socket", "/etc/systemd/system/docker.socket.d/aegir-srv.conf"))
    assert boot.guard_paths("/mnt/img")[1][1] == "/mnt/img/etc/systemd/system/docker.socket.d/aegir-srv.conf"


def test_installing_twice_plans_nothing_the_second_time():
    paths = boot.guard_paths("/")
    wanted = boot.guard_dropin("/srv")
    first = boot.plan_guard(paths, {}, wanted)
    assert [f.action for f in first] == ["install", "install"]
    second = boot.plan_guard(paths, {p: wanted for _, p in paths}, wanted)
    assert [f.action for f in second] == ["already", "already"]
    edited = boot.plan_guard(paths, {paths[0][1]: wanted + "# local edit\n", paths[1][1]: wanted}, wanted)
    assert [f.action for f in edited] == ["replace", "already"]


def test_files_are_written_atomically_from_stdin():
    cmd = write_file_cmd("/etc/x.d/a.conf", "[Unit]\n")
    assert cmd.stdin == "[Unit]\n"
    assert cmd.argv[-2:] == ("sh", "/etc/x.d/a.conf")
    assert 'mv -f -- "$1.aegir-new" "$1"' in cmd.argv[2]


@pytest.mark.parametrize("text, problem", [
    ("[Unit]\nAssertPathIsMountPoint=/data\n", "AssertPathIsMountPoint=/data, expected /srv"),
    ("[Unit]\nDescription=x\n", "[Unit] has no AssertPathIsMountPoint="),
    ("[Service]\nAssertPathIsMountPoint=/srv\n", "no [Unit] section"),
    ("AssertPathIsMountPoint=/srv\n", "not a unit file: File contains no section headers."),
    ("[Unit]\nassertpathismountpoint=/srv\n", "[Unit] has no AssertPathIsMountPoint="),  # keys are case-sensitive
])
def test_a_drop_in_that_does_not_guard_srv_is_caught_by_parsing(text, problem):
    assert boot.guard_problems(text, "/srv") == (problem,)


def test_systemd_analyze_lines_about_the_drop_ins_are_the_verdict():
    stderr = (DATA / "boot_systemd_analyze_verify_bad.txt").read_text()
    assert boot.verify_problems(stderr + stderr) == (
        "docker.service.d/aegir-srv.conf:2: AssertPathIsMountPoint= path is not absolute, ignoring: srv",
        "docker.socket.d/aegir-srv.conf:2: Unknown key 'AssertPathIsMountPointt' in section [Unit], ignoring.")
    assert boot.verify_problems("docker.service: Command /usr/bin/dockerd is not executable\n") == ()


def test_verification_runs_on_stand_in_units_with_the_installed_drop_ins():
    cmd = boot.verify_cmd("/r/etc/systemd/system/docker.service.d/aegir-srv.conf",
                     "/r/etc/systemd/system/docker.socket.d/aegir-srv.conf")
    assert cmd.argv[:2] == ("sh", "-c")
    assert cmd.argv[3:] == ("sh", "/r/etc/systemd/system/docker.service.d/aegir-srv.conf",
                            "/r/etc/systemd/system/docker.socket.d/aegir-srv.conf")
    assert 'systemd-analyze verify --man=no "$d/docker.service" "$d/docker.socket"' in cmd.argv[2]


# --------------------------------------------------------------------------- verdict


def test_the_verdict_says_nothing_was_done_when_everything_was_up():
    steps = [boot.StepResult("unlock", boot.SKIPPED, "no LUKS"), boot.StepResult("mount", boot.OK, "already"),
             boot.StepResult("check", boot.OK, "fine"), boot.StepResult("docker", boot.OK, "running"),
             boot.StepResult("status", boot.OK, "3 up")]
    assert boot.verdict("hyp4", steps) == "hyp4: up, nothing to do (everything was already up)"


def test_the_verdict_lists_what_was_done():
    steps = [boot.StepResult("mount", boot.DONE, "mounted /srv (/dev/loop3, ext4)"),
             boot.StepResult("check", boot.OK, "fine"), boot.StepResult("docker", boot.DONE, "started Docker")]
    assert boot.verdict("hyp4", steps) == "hyp4: up; mounted /srv (/dev/loop3, ext4); started Docker"


def test_the_verdict_names_the_step_that_stopped_the_host():
    assert boot.verdict("hyp4", [boot.StepResult("check", boot.FAILED, "mount: /srv is not a mount point")]) == \
        "hyp4: STOPPED at check: mount: /srv is not a mount point"
    assert boot.verdict("hyp4", [boot.StepResult("mount", boot.OK, "x")], ("docker", "not starting Docker: …")) == \
        "hyp4: STOPPED at docker: not starting Docker: …"


def test_a_dry_verdict_says_which_steps_would_act():
    steps = [boot.StepResult("unlock", boot.SKIPPED, "-"), boot.StepResult("mount", boot.WOULD, "mount /srv"),
             boot.StepResult("check", boot.WOULD, "check /srv, after the steps above")]
    assert boot.verdict("hyp4", steps) == "hyp4: would run mount, check (dry run: nothing changed)"

