"""Disk facts: df, du and Docker's accounting, parsed from recorded output."""

from __future__ import annotations

import json
from pathlib import Path

from aegir.disk.facts import (
    Filesystem,
    ProjectSize,
    Usage,
    du_cmd,
    parse_df,
    parse_docker_df,
    parse_du,
    split_usage,
    usage_cmd,
)

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


def test_one_probe_asks_df_for_bytes_in_a_fixed_layout_then_lists_the_project_folders():
    cmd = usage_cmd("/srv")
    assert cmd.argv[:2] == ("sh", "-c") and cmd.argv[3:] == ("sh", "/srv")
    script = cmd.argv[2].splitlines()
    assert script[0] == 'LC_ALL=C df -B1 --output=source,size,used,avail,target / "$1"'
    assert script[-2] == 'for d in core/*/ apps/*/ users/*/; do [ -d "$d" ] && printf \'%s\\n\' "${d%/}"; done'


def test_each_project_folder_is_measured_by_its_own_du_from_srv():
    assert du_cmd("/srv", "apps/cloud").line == "sh -c 'cd \"$1\" && exec du -B1 -x -d1 -- \"$2\"' sh /srv apps/cloud"


def test_the_probe_output_splits_into_df_the_cpu_count_and_the_project_folders():
    assert split_usage(DF_MOUNTED + "@@projects\n2\ncore/front\napps/cloud\n") == (DF_MOUNTED, 2, ("core/front", "apps/cloud"))
    assert split_usage(DF_MOUNTED) == (DF_MOUNTED, 1, ())


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


def test_too_full_says_which_filesystem_of_which_host_is_over_the_threshold():
    from aegir.disk.facts import HostDisk
    from aegir.disk.report import prometheus, too_full, used_percent
    from aegir.fleet import Outcome
    from aegir.inventory import Host

    fs = parse_df(DF_MOUNTED, "", "/srv")
    assert (used_percent(fs.root), used_percent(fs.srv)) == (23, 6)
    disk = HostDisk(fs, (ProjectSize("apps", "cloud", 20000, data=1000),), None, "no docker")
    outcomes = [Outcome(Host("hyp1", connection="local"), disk),
                Outcome(Host("hyp2", connection="local"), error="down", kind="unreachable")]
    assert too_full(outcomes, 25) == []
    assert too_full(outcomes, 22) == [("hyp1", "/ is 23% used (79G free; warn above 22%)")]
    text = prometheus(outcomes).splitlines()
    assert text[:4] == ["# HELP aegir_disk_report_up 1 when the host answered the disk report, else 0.",
                        "# TYPE aegir_disk_report_up gauge",
                        'aegir_disk_report_up{host="hyp1"} 1', 'aegir_disk_report_up{host="hyp2"} 0']
    assert 'aegir_filesystem_used_bytes{host="hyp1",mountpoint="/srv",device="/dev/mapper/data"} 5368709120' in text
    assert text[-2:] == ['aegir_project_bytes{host="hyp1",project="apps/cloud",part="total"} 20000',
                         'aegir_project_bytes{host="hyp1",project="apps/cloud",part="data"} 1000']
    assert not any(line.startswith("aegir_docker") for line in text)
