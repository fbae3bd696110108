"""`mysql` end to end: a real MariaDB (Debian's packages) in a real Compose project on a lab host, over SSH.

The app ``apps/shop`` (tests/lab/mysql_app.py) keeps its datadir in ``./db``
and its binary logs in ``./wal``; ``web`` depends on the database and
``worker`` is named in ``x-aegir.mysql.dependents``. Rows are written between
checkpoints and every claim is checked against the server, the files on the
host and the Docker API, never against aegir's own report.

The order matters (one module-scoped app): rows, ``mysql.wal``, a cold
checkpoint, rows, a hot checkpoint under a client connecting every 50 ms,
rows, then ``mysql.restore`` from each checkpoint finds every row; the fault
tests then kill the checkpoint at each step and drop SSH mid-run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import REPO, run_inv
from tests.lab import Lab, LabHost
from tests.lab import mysql_app as app

ARCHIVE = "/srv/archive/mysql/apps/shop"
STATE = "/srv/conf/aegir/mysql/apps-shop"


@pytest.fixture(scope="module")
def shop(lab: Lab):
    """A lab host of its own running apps/shop, with rows 1-100 written over three binary logs."""
    with lab.extra_host("mysqlh") as host:
        app.deploy(host)
        app.insert(host, 1, 50)
        app.sql(host, "FLUSH BINARY LOGS")
        app.insert(host, 51, 100)
        app.sql(host, "FLUSH BINARY LOGS")
        yield host


def inv(lab: Lab, host: LabHost, *args: str, env: dict[str, str] | None = None, timeout: float = 300):
    return run_inv("-H", host.name, *args, inventory=lab.inventory_path, env=env, timeout=timeout)


def binlogs(host: LabHost) -> dict[str, int]:
    wal = host.root("/srv/apps/shop/wal")
    return {p.name: p.stat().st_size for p in wal.iterdir() if p.name.startswith("mysql-bin.0")}


def entries(host: LabHost) -> list[Path]:
    root = host.root(ARCHIVE)
    return sorted(p for p in root.iterdir() if (p / "MANIFEST.json").is_file()) if root.is_dir() else []


def test_wal_reports_the_app_with_its_binary_logs_and_flags_it_over_a_threshold(lab: Lab, shop: LabHost):
    done = inv(lab, shop, "mysql.wal", "-f", "json")
    assert done.returncode == 0, done.stderr
    rows = [r for r in json.loads(done.stdout)["apps"] if r["host"] == shop.name]
    [row] = [r for r in rows if r["app"] == "apps/shop"]
    on_disk = binlogs(shop)
    assert row["files"] == len(on_disk) >= 3
    assert row["oldest"] == min(on_disk) and row["newest"] == max(on_disk)
    assert row["db_bytes"] > 1_000_000 and row["wal_bytes"] >= sum(on_disk.values())
    assert row["last_checkpoint_age"] is None
    flagged = inv(lab, shop, "mysql.wal", "--over", "1K")
    assert flagged.returncode == 1 and "OVER 1.0K" in flagged.stdout and "apps/shop" in flagged.stdout
    assert inv(lab, shop, "mysql.wal", "--over", "10G").returncode == 0


def test_dry_prints_the_plan_with_its_commands_and_changes_nothing(lab: Lab, shop: LabHost):
    before = binlogs(shop)
    done = inv(lab, shop, "mysql.checkpoint", "apps/shop", "--dry")
    assert done.returncode == 0, done.stderr
    assert "cold checkpoint of /srv/apps/shop" in done.stdout
    assert "dependents: web, worker" in done.stdout
    assert "stop db" in done.stdout and "PURGE BINARY LOGS TO" in done.stdout
    assert set(binlogs(shop)) == set(before) and entries(shop) == []  # (the current log may grow a checkpoint event)
    refused = inv(lab, shop, "mysql.checkpoint", "apps/shop")  # no --yes, stdin is no terminal
    assert refused.returncode == 1 and "pass --yes" in refused.stdout
    assert set(binlogs(shop)) == set(before) and entries(shop) == []


def test_cold_checkpoint_archives_base_and_logs_then_purges_and_restarts_the_dependents(lab: Lab, shop: LabHost):
    before = binlogs(shop)
    started = {s: app.started_at(shop, "shop", s) for s in ("db", "web", "worker")}
    done = inv(lab, shop, "mysql.checkpoint", "apps/shop", "--mode", "cold", "--yes", "-f", "json")
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)["result"]
    assert result["ok"] and result["mode"] == "cold"
    assert "step snapshot done" in done.stderr  # the log streamed while it ran
    [entry] = entries(shop)
    manifest = json.loads((entry / "MANIFEST.json").read_text())
    archived = set(manifest["binlogs"])
    assert archived == set(before)  # every log there was before; the server started a new one
    for name in archived - {max(before)}:  # the last one grew with the server's stop event
        assert (entry / "binlogs" / name).stat().st_size == before[name]
    assert (entry / "base" / "shop").is_dir() and (entry / "base" / "ibdata1").is_file()
    after = binlogs(shop)
    assert not archived & set(after) and len(after) == 1  # purged; only the current file is left
    assert sum(after.values()) < sum(before.values())
    assert app.ids(shop) == list(range(1, 101))
    now = {s: app.started_at(shop, "shop", s) for s in ("db", "web", "worker")}
    assert all(now[s] != started[s] for s in now), (started, now)  # db restarted, dependents too
    assert result["downtime"] > 0


def test_hot_checkpoint_refuses_no_connection_and_restarts_nothing(lab: Lab, shop: LabHost):
    app.insert(shop, 101, 150)
    app.sql(shop, "FLUSH BINARY LOGS")
    app.insert(shop, 151, 200)
    before = binlogs(shop)
    started = {s: app.started_at(shop, "shop", s) for s in ("db", "web", "worker")}
    stop = "/tmp/aegir-mysql-probe-stop"
    shop.run(["rm", "-f", stop])
    probe = subprocess.Popen(shop.command(app.probe_argv(app.ip(shop), stop)), stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        done = inv(lab, shop, "mysql.checkpoint", "apps/shop", "--mode", "hot", "--yes", "-f", "json")
        time.sleep(0.5)
    finally:
        shop.run(["touch", stop])
        out, _ = probe.communicate(timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    tries, refused = map(int, out.split())
    assert tries >= 20 and refused == 0, (tries, refused)
    result = json.loads(done.stdout)["result"]
    assert result["ok"] and result["mode"] == "hot" and result["downtime"] == 0
    assert {s: app.started_at(shop, "shop", s) for s in started} == started
    entry = entries(shop)[-1]
    manifest = json.loads((entry / "MANIFEST.json").read_text())
    assert set(manifest["binlogs"]) == set(before)
    assert not set(manifest["binlogs"]) & set(binlogs(shop))
    assert manifest["start"]["file"] in manifest["binlogs"]  # the hot base starts inside an archived log
    app.insert(shop, 201, 300)


@pytest.mark.parametrize("which", [0, -1], ids=["cold-base", "hot-base"])
def test_restore_rebuilds_every_row_from_a_base_and_the_logs_since(lab: Lab, shop: LabHost, which: int):
    expected = app.ids(shop)
    assert expected == list(range(1, 301))
    at = entries(shop)[which].name
    into = f"/srv/scratch/restore-{at}"
    done = inv(lab, shop, "mysql.restore", "apps/shop", "--at", at, "--into", into, "-f", "json")
    assert done.returncode == 0, done.stdout + done.stderr
    restored = json.loads(done.stdout)["restore"]
    assert restored["replayed"]
    name = f"verify-{at.lower()}"
    shop.run(["docker", "run", "-d", "--name", name, "--network", "none", "-v", f"{into}/db:/var/lib/mysql",
              "--entrypoint", "mariadbd", app.TAG, "--user=root", "--datadir=/var/lib/mysql", "--skip-log-bin"])
    try:
        deadline = time.monotonic() + 60
        while shop.run(["docker", "exec", name, "mariadb", "-uroot", "-e", "SELECT 1"], check=False).returncode:
            assert time.monotonic() < deadline, shop.run(["docker", "logs", name], check=False).stderr[-500:]
            time.sleep(0.3)
        got = shop.run(["docker", "exec", name, "mariadb", "-uroot", "-N", "-B", "-e",
                        "SELECT id FROM shop.rows ORDER BY id"]).stdout.split()
        assert [int(x) for x in got] == expected
    finally:
        shop.run(["docker", "rm", "-f", name], check=False)
