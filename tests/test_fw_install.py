"""fw.install end to end, on a lab host whose / is a Debian 12 root of its own with systemd installed.

What is real: the unit file written over SSH, ``systemctl enable`` and
``systemctl is-enabled`` by Debian's own systemctl (they work on the unit files
without a running systemd), ``systemctl is-active`` answered by the lab's shim
(tests/lab/systemctl-lab.pl: active when a process of the host runs the unit's
ExecStart program).

What the lab cannot prove: a start. systemd is not PID 1 in a lab host (no
``/run/systemd/system``), so fw.install must not claim the watcher runs: it
writes and enables the unit, says it cannot start it, and exits 1. Starting
under a booted systemd is covered by the plan's unit tests only
(tests/unit/test_fw_install.py). fw.status's WATCHER column reads the same probe;
it is checked on a plain lab host (nothing installed there).
"""

from __future__ import annotations

import json
import os

import pytest
import yaml

from aegir.fw.facts import UNIT_PATH
from aegir.fw.plan import unit_text
from tests.helpers import run_inv
from tests.lab import Lab, debian_root

WANTS = "/etc/systemd/system/multi-user.target.wants/aegir-fw-watch.service"


@pytest.fixture(scope="module")
def deb(lab: Lab, tmp_path_factory):
    host = debian_root.add_debian_host(lab, upgrades=False)
    try:
        path = tmp_path_factory.mktemp("fwinstall") / "hosts.yml"
        path.write_text(yaml.safe_dump(lab.inventory_data([host])))
        yield host, path
    finally:
        lab.remove_host(host)


def install(path, *args: str):
    res = run_inv("fw.install", *args, "--format", "json", inventory=path)
    return res, json.loads(res.stdout)["hosts"][0]


def test_install_writes_and_enables_the_unit_once_and_says_it_cannot_start_without_systemd(deb):
    host, path = deb
    unit = host.root(UNIT_PATH)

    res, row = install(path, "--dry")
    assert res.returncode == 0, res.stdout + res.stderr
    assert (row["result"], row["steps"]) == ("would", [f"write {UNIT_PATH}", "enable"])
    assert not unit.exists()

    res, row = install(path)
    assert res.returncode == 1, res.stdout + res.stderr  # the watcher does not run: not ok
    assert (row["result"], row["steps"], row["booted"]) == ("failed", [f"write {UNIT_PATH}", "enable"], False)
    assert unit.read_text() == unit_text()
    assert os.readlink(host.root(WANTS)) == UNIT_PATH  # Debian's systemctl enable made the link
    assert (row["enabled"], row["active"]) == ("enabled", "inactive")
    assert row["problem"].startswith("systemd is not running this host (no /run/systemd/system)")
    assert (row["status"], row["error"]) == ("failed", row["problem"])  # a failed host: it stops a roll

    written = unit.stat().st_mtime_ns
    res, row = install(path)
    assert res.returncode == 1 and row["steps"] == []  # idempotent: nothing written or enabled again
    assert unit.stat().st_mtime_ns == written

    table = run_inv("fw.install", inventory=path)
    assert "nothing to do" in table.stdout and "systemd is not running this host" in table.stdout


def test_status_says_the_watcher_is_not_installed_on_a_plain_host(lab):
    res = run_inv("-H", "hyp1", "fw.status", "--format", "json", inventory=lab.inventory_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert json.loads(res.stdout)["hosts"][0]["watcher"] == "not installed"
