"""Boot facts: exact command lines, and parsers fed with recorded output.

Recorded here (tests/unit/data/boot_*): findmnt and losetup on a loop-mounted
ext4 image, findmnt --fstab, ``ls -A1p /srv``, systemd-analyze verify. An
*active* ``cryptsetup status`` cannot be recorded on this kernel (no
device-mapper): its sample is cryptsetup 2.6's documented format.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from aegir.boot.facts import (
    DataRoot,
    Listing,
    LuksMapping,
    Mount,
    cat_cmd,
    daemon_json_cmd,
    findmnt_cmd,
    fstab_cmd,
    is_luks_cmd,
    listing_cmd,
    losetup_cmd,
    luks_open_cmd,
    luks_status_cmd,
    luks_test_cmd,
    parse_cat,
    parse_daemon_json,
    parse_docker_info,
    parse_findmnt,
    parse_is_luks,
    parse_listing,
    parse_losetup,
    parse_luks_status,
)
from aegir.docker import dockerd_cmd, parse_dockerd
from aegir.errors import AegirError

DATA = Path(__file__).parent / "data"

STATUS_ACTIVE = """\
/dev/mapper/data is active and is in use.
  type:    LUKS2
  cipher:  aes-xts-plain64
  keysize: 512 bits
  key location: keyring
  device:  /dev/md2
  sector size:  512
  offset:  32768 sectors
  size:    3904897024 sectors
  mode:    read/write
"""


# --------------------------------------------------------------------------- LUKS


def test_the_unlock_command_is_exactly_the_runbooks_luksopen_reading_the_key_from_stdin():
    cmd = luks_open_cmd("/dev/md2", "data", "correct horse")
    assert cmd.line == "cryptsetup luksOpen --key-file=- /dev/md2 data"
    assert cmd.stdin == "correct horse"
    assert "correct horse" not in repr(cmd) and "correct horse" not in str(cmd)


def test_checking_a_passphrase_activates_nothing_and_needs_no_mapping_name():
    cmd = luks_test_cmd("/dev/md2", "pw")
    assert cmd.line == "cryptsetup open --test-passphrase --key-file=- /dev/md2"
    assert cmd.stdin == "pw"


def test_a_mapping_name_that_would_reach_a_shell_is_refused():
    with pytest.raises(AegirError, match="invalid mapping name"):
        luks_open_cmd("/dev/md2", "data; reboot")


def test_probes_run_in_the_c_locale_so_their_messages_can_be_read():
    assert is_luks_cmd("/dev/md2").line == "env LC_ALL=C cryptsetup isLuks /dev/md2"
    assert luks_status_cmd("data").line == "env LC_ALL=C cryptsetup status data"


@pytest.mark.parametrize("exited, stderr, expected", [(0, "", True), (1, "", False)])
def test_isluks_answers_yes_or_no_by_exit_code(exited, stderr, expected):
    assert parse_is_luks("/dev/md2", exited, stderr) is expected


def test_isluks_on_a_missing_device_is_an_error_naming_it():
    with pytest.raises(AegirError, match="cannot read LUKS device /dev/md9: Device /dev/md9 does not exist"):
        parse_is_luks("/dev/md9", 4, "Device /dev/md9 does not exist or access denied.\n")


def test_an_active_mapping_names_its_device_and_type():
    assert parse_luks_status("data", STATUS_ACTIVE, "", 0) == LuksMapping("data", True, "/dev/md2", "LUKS2", True)


def test_an_inactive_mapping_is_exit_code_4():
    assert parse_luks_status("data", "/dev/mapper/data is inactive.\n", "", 4) == LuksMapping("data", False)


def test_a_kernel_without_device_mapper_is_said_plainly():
    stderr = "Cannot initialize device-mapper. Is dm_mod kernel module loaded?\n"
    with pytest.raises(AegirError, match="device-mapper is not available on this host"):
        parse_luks_status("data", "", stderr, 1)


# --------------------------------------------------------------------------- mounts


def test_findmnt_asks_for_json_and_bytes_on_the_mount_point():
    assert findmnt_cmd("/srv").line == ("findmnt --json --bytes --output TARGET,SOURCE,FSTYPE,OPTIONS,SIZE,AVAIL,"
                                        "UUID,LABEL --mountpoint /srv")
    assert fstab_cmd("/srv").line == "findmnt --fstab --json --output TARGET,SOURCE,FSTYPE,OPTIONS --mountpoint /srv"


def test_a_loop_mounted_image_is_read_with_its_sizes_and_uuid():
    m = parse_findmnt((DATA / "boot_findmnt_srv_loop.json").read_text(), 0)
    assert m == Mount("/srv", "/dev/loop0", "ext4", ("rw", "relatime"), 57381888, 52668416,
                      "5961a4a4-6150-414c-b6da-e6e9a0e2cedd", None)


def test_nothing_mounted_is_findmnt_exit_1_without_output():
    assert parse_findmnt("", 1) is None


def test_the_fstab_entry_of_an_image_is_a_loop_mount():
    m = parse_findmnt((DATA / "boot_fstab_srv_loop.json").read_text(), 0)
    assert (m.source, m.fstype, m.options, m.is_loop) == ("/tmp/b4x/srv.img", "ext4", ("loop", "noauto"), True)


def test_stacked_mounts_report_the_one_on_top():
    text = ('{"filesystems": [{"target": "/srv", "source": "/dev/sda1", "fstype": "ext4"},'
            ' {"target": "/srv", "source": "/dev/mapper/data", "fstype": "ext4"}]}')
    assert parse_findmnt(text, 0).source == "/dev/mapper/data"


def test_garbage_from_findmnt_is_an_error_not_a_traceback():
    with pytest.raises(AegirError, match="cannot read findmnt output"):
        parse_findmnt("findmnt: unknown column", 0)


def test_losetup_maps_loop_devices_to_their_images():
    assert losetup_cmd().line == "losetup --list --json --output NAME,BACK-FILE"
    assert parse_losetup((DATA / "boot_losetup.json").read_text()) == {"/dev/loop0": "/tmp/b4x/srv.img"}
    assert parse_losetup("") == {}


# --------------------------------------------------------------------------- /srv, daemon.json, docker info


def test_ls_srv_tells_folders_from_files():
    assert listing_cmd("/srv").line == "env LC_ALL=C ls -A1p -- /srv"
    ls = parse_listing((DATA / "boot_ls_srv.txt").read_text(), 0)
    assert ls == Listing(True, frozenset({"apps", "conf", "docker", "lost+found"}), frozenset({"notes.txt"}))
    assert ls.entries == 5
    assert ls.missing() == ("templates", "core", "users")


def test_a_missing_srv_is_ls_exit_2():
    assert parse_listing("", 2) == Listing(exists=False)
    assert parse_listing("", 0) == Listing(exists=True)


def test_files_are_read_with_cat_and_a_missing_one_is_none():
    assert cat_cmd("/etc/docker/daemon.json").line == "env LC_ALL=C cat -- /etc/docker/daemon.json"
    assert daemon_json_cmd() == cat_cmd("/etc/docker/daemon.json")
    assert parse_cat("{}", "", 0) == "{}"
    assert parse_cat("", "cat: /x: No such file or directory\n", 1) is None
    with pytest.raises(AegirError, match="Permission denied"):
        parse_cat("", "cat: /x: Permission denied\n", 1)


@pytest.mark.parametrize("text, expected", [
    ('{"data-root": "/srv/docker", "iptables": false}', DataRoot("/srv/docker", "/etc/docker/daemon.json")),
    ('{"graph": "/srv/docker"}', DataRoot("/srv/docker", "/etc/docker/daemon.json")),
    ('{"iptables": false}', DataRoot(None, "unknown")),
    (None, DataRoot(None, "unknown")),
    ("", DataRoot(None, "unknown")),
])
def test_daemon_json_gives_the_configured_data_root(text, expected):
    assert parse_daemon_json(text) == expected


def test_a_broken_daemon_json_is_reported():
    with pytest.raises(AegirError, match="daemon.json is not valid JSON"):
        parse_daemon_json('{"data-root": ')


def test_a_running_daemon_says_its_own_data_root():
    assert parse_docker_info({"DockerRootDir": "/srv/docker"}) == DataRoot("/srv/docker", "docker info", True)


def test_whether_dockerd_runs_is_read_from_proc_never_from_dockers_socket():
    """tests/test_boot.py proves it end to end: a listener on the socket hears nothing."""
    cmd = dockerd_cmd()
    assert cmd.argv[:2] == ("sh", "-c") and "docker.sock" not in cmd.line and "grep -lx dockerd" in cmd.line
    assert parse_dockerd(0, "") is True and parse_dockerd(1, "") is False
    with pytest.raises(AegirError, match="cannot tell whether dockerd runs: sh: 1: grep: not found"):
        parse_dockerd(127, "sh: 1: grep: not found\n")
