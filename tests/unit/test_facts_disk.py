"""Disk facts: df, du and Docker's accounting, parsed from recorded output."""

from __future__ import annotations

import json
from pathlib import Path

from aegir.disk.facts import Filesystem, ProjectSize, Usage, parse_df, parse_docker_df, parse_du, split_usage, usage_cmd

DATA = Path(__file__).parent / "data"

DF_MOUNTED = """\
Filesystem         1B-blocks        Used      Avail Mounted on
/dev/vda        270553174016 24121876480 84822417408 /
/dev/mapper/data 105088212992 5368709120 94317580288 /srv
"""
DF_NOT_MOUNTED = """\
Filesystem         1B-blocks        Used      Avail Mounted on
/dev/vda        270553174016 24121876480 84822417408 /
/dev/vda        270553174016 24121876480 84822417408 /
"""


def test_one_probe_asks_df_for_bytes_in_a_fixed_layout_then_du_with_srv_as_an_argument():
    cmd = usage_cmd("/srv")
    assert cmd.argv[:2] == ("sh", "-c") and cmd.argv[3:] == ("sh", "/srv")
    script = cmd.argv[2].splitlines()
    assert script[0] == 'LC_ALL=C df -B1 --output=source,size,used,avail,target / "$1"'
    assert script[-1] == '[ "$#" -eq 0 ] || exec du -B1 -x -d1 -- "$@"'


def test_the_probe_output_splits_into_its_df_and_du_parts():
    assert split_usage(DF_MOUNTED + "@@du\n8192\tcore/front\n") == (DF_MOUNTED, "8192\tcore/front\n")
    assert split_usage(DF_MOUNTED) == (DF_MOUNTED, "")


def test_a_mounted_srv_is_its_own_filesystem():
    fs = parse_df(DF_MOUNTED, "", "/srv")
    assert fs.srv_state == "mounted"
    assert fs.root == Filesystem("/dev/vda", "/", 270553174016, 24121876480, 84822417408)
    assert fs.srv == Filesystem("/dev/mapper/data", "/srv", 105088212992, 5368709120, 94317580288)


def test_srv_on_the_root_filesystem_is_not_mounted():
    fs = parse_df(DF_NOT_MOUNTED, "", "/srv")
    assert (fs.srv_state, fs.srv) == ("not mounted", None)


def test_a_missing_srv_is_said_so():
    head = DF_NOT_MOUNTED.splitlines()
    fs = parse_df("\n".join(head[:2]) + "\n", "df: /srv: No such file or directory\n", "/srv")
    assert (fs.srv_state, fs.root.target) == ("missing", "/")


def test_du_output_becomes_projects_largest_first_with_their_parts():
    out = "\n".join([
        "4096\tcore/front/conf", "8192\tcore/front",
        "1000\tapps/cloud/data", "5000\tapps/cloud/db", "300\tapps/cloud/wal", "7000\tapps/cloud/conf", "20000\tapps/cloud",
        "12000\tusers/bob/data", "16000\tusers/bob",
        "99\tdocker/overlay2",  # not a project kind: ignored
    ])
    assert parse_du(out) == (
        ProjectSize("apps", "cloud", 20000, data=1000, db=5000, wal=300),
        ProjectSize("users", "bob", 16000, data=12000),
        ProjectSize("core", "front", 8192),
    )


def test_docker_df_is_summed_like_docker_system_df():
    # Recorded from Docker 20.10 with one image, a running and an exited container,
    # a used and an orphan volume; `docker system df` printed at the same time:
    #   Images 1 1 1.985MB 0B | Containers 2 1 307.2kB 102.4kB | Local Volumes 2 1 358.4kB 51.2kB
    usage = parse_docker_df(json.loads((DATA / "docker_df_20.10.json").read_text()))
    assert usage.images == Usage(count=1, active=1, size=1985472, reclaimable=0)
    assert usage.containers == Usage(count=2, active=1, size=307200, reclaimable=102400)
    assert usage.volumes == Usage(count=2, active=1, size=358400, reclaimable=51200)
    assert usage.build_cache == Usage(0, 0, 0, 0)
    assert usage.reclaimable == 153600


def test_unused_images_and_build_cache_are_reclaimable():
    usage = parse_docker_df({
        "LayersSize": 1000,
        "Images": [{"Containers": 0, "Size": 600, "SharedSize": 0}, {"Containers": 1, "Size": 400, "SharedSize": 100}],
        "BuildCache": [{"Size": 50, "InUse": False, "Shared": False}, {"Size": 70, "InUse": True, "Shared": False},
                       {"Size": 9, "InUse": False, "Shared": True}],
    })
    assert usage.images == Usage(2, 1, 1000, 700)
    assert usage.build_cache == Usage(3, 1, 120, 50)
