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

import hashlib
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
    tries, refused = map(int, out.split()[:2])
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
    assert restored_ids(shop, into) == expected


def restored_ids(host: LabHost, into: str) -> list[int]:
    """Start a throw-away server on `into`/db and list its rows."""
    name = "verify-" + into.rsplit("/", 1)[-1].lower()
    host.run(["docker", "run", "-d", "--name", name, "--network", "none", "-v", f"{into}/db:/var/lib/mysql",
              "--entrypoint", "mariadbd", app.TAG, "--user=root", "--datadir=/var/lib/mysql", "--skip-log-bin"])
    try:
        deadline = time.monotonic() + 60
        while host.run(["docker", "exec", name, "mariadb", "-uroot", "-e", "SELECT 1"], check=False).returncode:
            assert time.monotonic() < deadline, host.run(["docker", "logs", name], check=False).stderr[-500:]
            time.sleep(0.3)
        got = host.run(["docker", "exec", name, "mariadb", "-uroot", "-N", "-B", "-e",
                        "SELECT id FROM shop.rows ORDER BY id"]).stdout.split()
        return [int(x) for x in got]
    finally:
        host.run(["docker", "rm", "-f", name], check=False)


def test_restore_until_a_time_stops_replaying_there_and_never_touches_the_live_database(lab: Lab, shop: LabHost):
    app.insert(shop, 301, 310)
    time.sleep(1.1)
    until = app.sql(shop, "SELECT NOW()").strip()
    time.sleep(1.1)
    app.insert(shop, 311, 320)
    into = "/srv/scratch/restore-until"
    done = inv(lab, shop, "mysql.restore", "apps/shop", "--at", "latest", "--into", into, "--until", until)
    assert done.returncode == 0, done.stdout + done.stderr
    assert restored_ids(shop, into) == list(range(1, 311))
    assert app.ids(shop) == list(range(1, 321))
    again = inv(lab, shop, "mysql.restore", "apps/shop", "--at", "latest", "--into", into)
    assert again.returncode == 1 and "is not empty" in again.stdout


# --------------------------------------------------------------------------- faults


def closed_logs(host: LabHost) -> dict[str, str]:
    """Checksums of the binary logs the server has closed (every one but the newest)."""
    names = sorted(binlogs(host))[:-1]
    return {n: hashlib.sha256(host.root(f"/srv/apps/shop/wal/{n}").read_bytes()).hexdigest() for n in names}


def assert_no_log_lost(host: LabHost, before: dict[str, str]) -> None:
    """Every log closed before the run is in wal/ or in a complete archive entry, byte for byte."""
    copies: dict[str, set[str]] = {}
    for entry in entries(host):
        for f in (entry / "binlogs").glob("*"):
            copies.setdefault(f.name, set()).add(hashlib.sha256(f.read_bytes()).hexdigest())
    for name, digest in before.items():
        wal = host.root(f"/srv/apps/shop/wal/{name}")
        kept = wal.is_file() and hashlib.sha256(wal.read_bytes()).hexdigest() == digest
        assert kept or digest in copies.get(name, set()), f"{name} is lost"
    archive = host.root(ARCHIVE)
    unfinished = [p.name for p in archive.iterdir() if not (p / "MANIFEST.json").is_file()] if archive.is_dir() else []
    assert unfinished == [], "an unfinished archive entry was left behind"


def write_more(host: LabHost) -> list[int]:
    first = (app.ids(host) or [0])[-1] + 1
    app.insert(host, first, first + 9)
    app.sql(host, "FLUSH BINARY LOGS")
    return app.ids(host)


COLD = ("lock", "inspect", "position", "precopy", "stop", "snapshot", "start", "wait", "dependents", "verify", "archive-logs",
        "purge", "retention")
HOT = ("backup", "prepare", "verify", "flush", "archive-logs", "purge")


@pytest.mark.parametrize(("mode", "step"), [("cold", s) for s in COLD] + [("hot", s) for s in HOT])
def test_killing_the_checkpoint_at_any_step_leaves_every_row_and_every_log(lab: Lab, shop: LabHost, mode: str,
                                                                          step: str):
    rows = write_more(shop)
    before = closed_logs(shop)
    done = inv(lab, shop, "mysql.checkpoint", "apps/shop", "--mode", mode, "--yes", "-f", "json",
               env={"AEGIR_MYSQL_FAULT": step})
    assert done.returncode == 1, done.stdout + done.stderr
    result = json.loads(done.stdout)["result"]
    assert not result["ok"] and result["failed_step"] == step and "signal 9" in result["error"]
    assert app.wait_db(shop, timeout=5) < 5  # the guardian started it again (if it was stopped at all)
    assert app.ids(shop) == rows
    assert_no_log_lost(shop, before)
    assert shop.run(["docker", "inspect", "-f", "{{.State.Running}}", app.container("shop", "web")]).stdout.strip() \
        == "true"


def test_a_run_killed_with_its_guardian_is_recovered_by_the_next_run(lab: Lab, shop: LabHost):
    rows = write_more(shop)
    before = closed_logs(shop)
    done = inv(lab, shop, "mysql.checkpoint", "apps/shop", "--mode", "cold", "--yes",
               env={"AEGIR_MYSQL_FAULT": "snapshot:all"})
    assert done.returncode == 1 and "not running and left no result" in done.stdout, done.stdout + done.stderr
    stopped = shop.run(["docker", "inspect", "-f", "{{.State.Running}}", app.container("shop")]).stdout.strip()
    assert stopped == "false"  # nobody was left to start it: the next run must
    again = inv(lab, shop, "mysql.checkpoint", "apps/shop", "--mode", "cold", "--yes", "-f", "json")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "recover: run" in again.stderr and "died at step 'snapshot'" in again.stderr
    assert app.ids(shop) == rows
    assert_no_log_lost(shop, before)


def test_dropping_ssh_mid_run_does_not_stop_the_checkpoint_and_status_reattaches(lab: Lab, shop: LabHost):
    rows = write_more(shop)
    before = closed_logs(shop)
    log = shop.root(f"{STATE}/log")
    offset = log.stat().st_size
    env = {**os.environ, "AEGIR_INVENTORY": str(lab.inventory_path), "AEGIR_MYSQL_FAULT": "snapshot:sleep=4"}
    operator = subprocess.Popen([sys.executable, "-m", "aegir", "-H", shop.name, "mysql.checkpoint", "apps/shop",
                                 "--mode", "cold", "--yes"], cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while "says pause" not in log.read_text()[offset:]:
            assert time.monotonic() < deadline and operator.poll() is None
            time.sleep(0.1)
    finally:
        operator.kill()  # the laptop closes: its SSH connection drops mid-run
        operator.wait()
    status = inv(lab, shop, "mysql.status", "apps/shop", "-f", "json")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "step snapshot done" in status.stderr  # it followed the run to its end
    result = json.loads(status.stdout)["result"]
    assert result["ok"] and result["mode"] == "cold"
    assert app.ids(shop) == rows
    assert_no_log_lost(shop, before)
    assert not set(before) & set(binlogs(shop))  # archived and purged by the run nobody watched
