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
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import REPO, ProcScan, run_inv, write_inventory
from tests.lab import Lab, LabHost
from tests.lab import mysql_app as app
from tests.lab.mariadb_image import MYSQL_TAG

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


def one(done: subprocess.CompletedProcess[str], task: str) -> dict:
    """The one host of a mysql task's JSON: the envelope of every task (aegir/report.schema.json)."""
    doc = json.loads(done.stdout)
    assert doc["task"] == task and isinstance(doc["summary"], dict), doc
    [host] = doc["hosts"]
    assert {"host", "status", "error"} <= set(host), host
    return host


#: What changes under a lab host's /srv by itself while apps/shop runs: Docker's data-root, the live
#: database's datadir and binary logs.
LIVE = ("srv/docker", "srv/apps/shop/db", "srv/apps/shop/wal")


def files(host: LabHost, live: tuple[str, ...] = LIVE) -> dict[str, tuple[str, int, int]]:
    """Every file and folder under the host's /srv and /var/lib/aegir but `live`: kind, size, mtime (ns)."""
    top = host.root("/")
    out: dict[str, tuple[str, int, int]] = {}
    for root in ("srv", "var/lib/aegir"):
        for folder, dirs, names in os.walk(top / root):
            rel = os.path.relpath(folder, top)
            dirs[:] = [d for d in dirs if f"{rel}/{d}" not in live]
            for name in [*dirs, *names]:
                st = os.lstat(os.path.join(folder, name))
                out[f"{rel}/{name}"] = ("dir" if name in dirs else "file", st.st_size, st.st_mtime_ns)
    return out


def binlogs(host: LabHost) -> dict[str, int]:
    wal = host.root("/srv/apps/shop/wal")
    return {p.name: p.stat().st_size for p in wal.iterdir() if p.name.startswith("mysql-bin.0")}


def entries(host: LabHost) -> list[Path]:
    root = host.root(ARCHIVE)
    return sorted(p for p in root.iterdir() if (p / "MANIFEST.json").is_file()) if root.is_dir() else []


def test_wal_reports_the_app_with_its_binary_logs_and_flags_it_over_a_threshold(lab: Lab, shop: LabHost):
    done = inv(lab, shop, "mysql.wal", "-f", "json")
    assert done.returncode == 0, done.stderr
    [row] = [r for r in one(done, "mysql.wal")["apps"] if r["app"] == "apps/shop"]
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
    written = files(shop)
    done = inv(lab, shop, "mysql.checkpoint", "apps/shop", "--dry")
    assert done.returncode == 0, done.stderr
    assert "cold checkpoint of /srv/apps/shop" in done.stdout
    assert "dependents: web, worker" in done.stdout
    assert "stop db" in done.stdout and "PURGE BINARY LOGS TO" in done.stdout
    assert set(binlogs(shop)) == set(before) and entries(shop) == []  # (the current log may grow a checkpoint event)
    assert files(shop) == written  # nothing installed, no state folder, no log line, no lock
    planned = one(inv(lab, shop, "mysql.checkpoint", "apps/shop", "--dry", "-f", "json"), "mysql.checkpoint")
    assert planned["status"] == "ok" and planned["result"] is None
    entry = f"{planned['plan']['target']['archive']}/{planned['run']}"  # the run's entry, named by the plan
    assert f"{entry}/base" in json.dumps(planned["plan"]["steps"]) and not shop.root(entry).exists()
    refused = inv(lab, shop, "mysql.checkpoint", "apps/shop")  # no --yes, stdin is no terminal
    assert refused.returncode == 1 and "pass --yes" in refused.stderr
    assert "cold checkpoint of /srv/apps/shop" in refused.stdout  # the plan it would have asked about
    assert set(binlogs(shop)) == set(before) and entries(shop) == []
    assert files(shop) == written


def test_status_of_an_app_with_no_run_says_so_and_writes_nothing(lab: Lab, shop: LabHost):
    state = shop.root(STATE)
    state.mkdir(parents=True, exist_ok=True)  # as a restore leaves it: a log at most, no run, no lock
    written = files(shop)
    done = inv(lab, shop, "mysql.status", "apps/shop")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == f"{shop.name}: no checkpoint ran for /srv/apps/shop"
    data = one(inv(lab, shop, "mysql.status", "apps/shop", "-f", "json"), "mysql.status")
    assert (data["status"], data["run"], data["result"], data["running"]) == ("ok", None, None, False)
    assert files(shop) == written and not (state / "lock").exists()


def test_cold_checkpoint_archives_base_and_logs_then_purges_and_restarts_the_dependents(lab: Lab, shop: LabHost):
    before = binlogs(shop)
    started = {s: app.started_at(shop, "shop", s) for s in ("db", "web", "worker")}
    done = inv(lab, shop, "mysql.checkpoint", "apps/shop", "--mode", "cold", "--yes", "-f", "json")
    assert done.returncode == 0, done.stdout + done.stderr
    result = one(done, "mysql.checkpoint")["result"]
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
    result = one(done, "mysql.checkpoint")["result"]
    assert result["ok"] and result["mode"] == "hot" and result["downtime"] == 0
    assert {s: app.started_at(shop, "shop", s) for s in started} == started
    entry = entries(shop)[-1]
    manifest = json.loads((entry / "MANIFEST.json").read_text())
    assert set(manifest["binlogs"]) == set(before)
    assert not set(manifest["binlogs"]) & set(binlogs(shop))
    assert manifest["start"]["file"] in manifest["binlogs"]  # the hot base starts inside an archived log
    app.insert(shop, 201, 300)


def test_restore_dry_checks_the_checkpoint_the_chain_and_the_scratch_folder_and_writes_nothing(lab: Lab,
                                                                                             shop: LabHost):
    into = "/srv/scratch/restore-dry"
    written = files(shop)
    done = inv(lab, shop, "--dry", "mysql.restore", "apps/shop", "--at", "latest", "--into", into, "-f", "json")
    assert done.returncode == 0, done.stdout + done.stderr
    host = one(done, "mysql.restore")
    plan = host["plan"]
    assert (host["status"], host["restore"], plan["at"]) == ("ok", None, entries(shop)[-1].name)
    first = json.loads((entries(shop)[-1] / "MANIFEST.json").read_text())["start"]["file"]
    assert plan["chain"][0] == first and plan["chain"] == sorted(plan["chain"])
    assert max(binlogs(shop)) in plan["chain"]  # the logs still on the server are replayed too
    table = inv(lab, shop, "mysql.restore", "apps/shop", "--at", "latest", "--into", into, "--dry")
    assert table.returncode == 0 and f"replay {len(plan['chain'])} binary logs from {first}:" in table.stdout
    assert files(shop) == written and not shop.root(into).exists()
    shop.write("scratch/restore-dry/left-over", "x")
    busy = inv(lab, shop, "mysql.restore", "apps/shop", "--at", "latest", "--into", into, "-d")
    assert busy.returncode == 1 and f"{into} is not empty" in busy.stdout, busy.stdout + busy.stderr
    unknown = inv(lab, shop, "mysql.restore", "apps/shop", "--at", "20000101T000000Z", "--into", into, "-d")
    assert unknown.returncode == 1 and "no complete checkpoint '20000101T000000Z'" in unknown.stdout
    shop.run(["rm", "-r", "/srv/scratch/restore-dry"])


@pytest.mark.parametrize("which", [0, -1], ids=["cold-base", "hot-base"])
def test_restore_rebuilds_every_row_from_a_base_and_the_logs_since(lab: Lab, shop: LabHost, which: int):
    expected = app.ids(shop)
    assert expected == list(range(1, 301))
    at = entries(shop)[which].name
    into = f"/srv/scratch/restore-{at}"
    done = inv(lab, shop, "mysql.restore", "apps/shop", "--at", at, "--into", into, "-f", "json")
    assert done.returncode == 0, done.stdout + done.stderr
    restored = one(done, "mysql.restore")["restore"]
    assert restored["replayed"]
    assert restored_ids(shop, into) == expected


def restored_ids(host: LabHost, into: str) -> list[int]:
    """Start a throw-away server on `into`/db (the lab's image; no grant tables: root's password, if any, does
    not matter) and list its rows."""
    name = "verify-" + into.rsplit("/", 1)[-1].lower()
    host.run(["docker", "run", "-d", "--name", name, "--network", "none", "-v", f"{into}/db:/var/lib/mysql",
              "--entrypoint", "mariadbd", app.TAG, "--user=root", "--datadir=/var/lib/mysql", "--skip-log-bin",
              "--skip-grant-tables"])
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


# --------------------------------------------------------------------------- a host whose /srv is not mounted

LOCAL = """\
hosts:
  local:
    connection: local
    srv: {srv}
"""


@pytest.mark.parametrize("task", [
    ["mysql.wal"], ["--dry", "mysql.checkpoint", "cloud"], ["mysql.checkpoint", "cloud", "--yes"],
    ["mysql.status", "cloud"], ["--dry", "mysql.restore", "cloud", "--at", "latest", "--into", "INTO"],
], ids=["wal", "checkpoint-dry", "checkpoint", "status", "restore-dry"])
def test_a_host_whose_srv_is_not_mounted_fails_and_nothing_is_written_there(tmp_path: Path, task: list[str]):
    """/srv is a plain folder of the root disk here (no mount point), holding an app folder: every mysql task
    fails the host with the reason, exit 1, and leaves the folder as it was (nothing installed or created)."""
    srv = tmp_path / "srv"
    (srv / "apps" / "cloud" / "db").mkdir(parents=True)
    inventory = write_inventory(tmp_path, LOCAL.format(srv=srv))
    args = [str(tmp_path / "into") if a == "INTO" else a for a in task]
    before = sorted(p.relative_to(srv) for p in srv.rglob("*"))
    done = run_inv(*args, "-f", "json", inventory=inventory)
    assert done.returncode == 1, done.stdout + done.stderr
    host = one(done, task[1] if task[0] == "--dry" else task[0])
    assert (host["host"], host["status"], host["error"]) == ("local", "failed",
                                                             f"{srv} is not mounted: run boot.mount")
    table = run_inv(*args, inventory=inventory)
    assert table.returncode == 1 and f"FAILED: {srv} is not mounted: run boot.mount" in table.stdout
    assert sorted(p.relative_to(srv) for p in srv.rglob("*")) == before and not (tmp_path / "into").exists()


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
    result = one(done, "mysql.checkpoint")["result"]
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
    result = one(status, "mysql.status")["result"]
    assert result["ok"] and result["mode"] == "cold"
    assert app.ids(shop) == rows
    assert_no_log_lost(shop, before)
    assert not set(before) & set(binlogs(shop))  # archived and purged by the run nobody watched


# --------------------------------------------------------------------------- regressions (each failed on main)


def test_a_rotation_during_verify_loses_no_write_on_restore(lab: Lab, shop: LabHost):
    """The cold restore position is the first log the restarted server wrote, not the one current after the
    slow verify: rows written after the restart, in a log rotated away during verify, are replayed."""
    log = shop.root(f"{STATE}/log")
    offset = log.stat().st_size if log.exists() else 0
    env = {**os.environ, "AEGIR_INVENTORY": str(lab.inventory_path), "AEGIR_MYSQL_FAULT": "verify:sleep=6"}
    operator = subprocess.Popen([sys.executable, "-m", "aegir", "-H", shop.name, "mysql.checkpoint", "apps/shop",
                                 "--mode", "cold", "--yes", "-f", "json"], cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while "says pause" not in (log.read_text()[offset:] if log.exists() else ""):
            assert time.monotonic() < deadline and operator.poll() is None
            time.sleep(0.1)
        first = app.ids(shop)[-1] + 1
        app.insert(shop, first, first + 9)  # after the restart: in the log the restarted server started
        app.sql(shop, "FLUSH BINARY LOGS")  # an app's FLUSH LOGS (or the size limit) during verify
        app.insert(shop, first + 10, first + 19)
        out, err = operator.communicate(timeout=300)
    finally:
        operator.kill()
        operator.wait()
    assert operator.returncode == 0, out + err
    result = json.loads(out)["hosts"][0]["result"]
    into = "/srv/scratch/restore-rotated"
    done = inv(lab, shop, "mysql.restore", "apps/shop", "--at", "latest", "--into", into, "-f", "json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert restored_ids(shop, into) == app.ids(shop)  # rows first..first+19 included
    assert result["ok"] and result["start"][0] in result["archived"]  # it starts in the log rotated away


BOOKS = app.COMPOSE.replace("--log-bin=/wal/mysql-bin", "--log-bin=/wal/mysql-bin\", \"--log-bin-index=/wal/binlog.index")


def test_a_basename_change_never_purges_logs_that_are_not_archived(lab: Lab, shop: LabHost):
    """`log-bin` renamed mysql-bin -> db1-bin, one index: every log before the current one is archived by name
    before PURGE, whatever its number, and a restore follows the index's order across the rename."""
    app.deploy(shop, "books", BOOKS)
    for first in (1, 11, 21):
        app.insert(shop, first, first + 9, "books")
        app.sql(shop, "FLUSH BINARY LOGS", "books")
    shop.write("apps/books/docker-compose.yml", BOOKS.replace("/wal/mysql-bin\"", "/wal/db1-bin\""))
    shop.run(["docker", "compose", "--project-directory", "/srv/apps/books", "-p", "books", "up", "-d"], timeout=120)
    app.wait_db(shop, "books")
    app.insert(shop, 31, 40, "books")
    wal = shop.root("/srv/apps/books/wal")
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in wal.iterdir() if p.name.startswith("mysql-bin.0")}
    assert len(before) >= 4 and any(p.name.startswith("db1-bin.0") for p in wal.iterdir())
    done = inv(lab, shop, "mysql.checkpoint", "apps/books", "--mode", "cold", "--yes", "-f", "json")
    assert done.returncode == 0, done.stdout + done.stderr
    archive = shop.root("/srv/archive/mysql/apps/books")
    copies = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for e in archive.iterdir() for f in
              (e / "binlogs").glob("*")}
    for name, digest in before.items():
        kept = (wal / name).is_file() and hashlib.sha256((wal / name).read_bytes()).hexdigest() == digest
        assert kept or copies.get(name) == digest, f"{name} was purged and is not in the archive"
    into = "/srv/scratch/restore-books"
    again = inv(lab, shop, "mysql.restore", "apps/books", "--at", "latest", "--into", into, "-f", "json")
    assert again.returncode == 0, again.stdout + again.stderr
    assert restored_ids(shop, into) == app.ids(shop, "books") == list(range(1, 41))
    shop.run(["docker", "compose", "--project-directory", "/srv/apps/books", "-p", "books", "down"], timeout=120)


def test_a_symlink_in_db_stops_the_checkpoint_before_the_database_is_stopped(lab: Lab, shop: LabHost):
    link = shop.root("/srv/apps/shop/db/shop/outside.ibd")
    link.symlink_to("/etc/hostname")
    started = app.started_at(shop, "shop", "db")
    complete = entries(shop)
    try:
        done = inv(lab, shop, "mysql.checkpoint", "apps/shop", "--mode", "cold", "--yes", "-f", "json")
    finally:
        link.unlink()
    assert done.returncode == 1, done.stdout + done.stderr
    result = one(done, "mysql.checkpoint")["result"]
    assert result["failed_step"] == "precopy" and "is a symbolic link" in result["error"]
    assert [s["step"] for s in result["steps"]] == ["lock", "inspect", "position"]  # it never reached the stop
    assert app.started_at(shop, "shop", "db") == started  # never stopped
    assert entries(shop) == complete


# --------------------------------------------------------------------------- apps set up like the official images

#: root's password, in each app's .env only; shell-hostile on purpose.
SECRET = 'aegir-S3cr#t "pw" $HOME&;|x'
ENV = f"ROOT_PASSWORD='{SECRET}'\n"

#: name -> (compose file, .env, database service, client, folder of its binary logs)
OFFICIAL = {
    # binary logs in the datadir (a relative --log-bin), root's password from .env
    "ledger": (app.official_compose(log_bin="mysql-bin"), ENV, "mariadb", "mariadb", "db"),
    # binary logs in wal/, root's password from a Docker secret (MARIADB_ROOT_PASSWORD_FILE)
    "notes": (app.official_compose(env="MARIADB_ROOT_PASSWORD_FILE: /run/secrets/root", service_extra="    secrets: [root]\n",
                                   top_extra="secrets:\n  root:\n    file: ./secrets/root\n"), "", "mariadb", "mariadb",
              "wal"),
    # MySQL's program names only (mysql, mysqlbinlog, mysqld; no mariadb-backup), MYSQL_ROOT_PASSWORD
    "crm": (app.official_compose(service="mysql", image=MYSQL_TAG,
                                 env="MYSQL_ROOT_PASSWORD: ${ROOT_PASSWORD}"), ENV, "mysql", "mysql", "wal"),
}


def how(name: str) -> dict[str, object]:
    _, _, service, client, _ = OFFICIAL[name]
    return {"service": service, "client": client, "login": app.APP_USER}


@pytest.fixture(scope="module")
def official(lab: Lab):
    """A lab host with the three apps of `OFFICIAL`, rows 1-50 in each over two binary logs."""
    with lab.extra_host("mysqlpw") as host:
        for name, (compose, env, *_) in OFFICIAL.items():
            if name == "notes":
                host.write("apps/notes/secrets/root", SECRET + "\n")
            app.deploy(host, name, compose, env=env, **how(name))  # type: ignore[arg-type]
            app.insert(host, 1, 50, name, **how(name))
            app.sql(host, "FLUSH BINARY LOGS", name, **how(name))  # type: ignore[arg-type]
        yield host


def logs_of(host: LabHost, name: str) -> dict[str, str]:
    """Checksums of the binary logs of `name` on the host (its index and the files it names)."""
    folder = host.root(f"/srv/apps/{name}/{OFFICIAL[name][4]}")
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()
            if re.fullmatch(r"mysql-bin\.\d{6}", p.name)}


def archived(host: LabHost, name: str) -> dict[str, str]:
    root = host.root(f"/srv/archive/mysql/apps/{name}")
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for e in sorted(root.iterdir())
            if (e / "MANIFEST.json").is_file() for f in (e / "binlogs").glob("*")} if root.is_dir() else {}


def no_secret_on_disk(host: LabHost, name: str) -> None:
    """The password is in no file aegir wrote: the state folder (log, result) and the archive's manifests."""
    state = host.root(f"/srv/conf/aegir/mysql/apps-{name}")
    files = [*state.glob("*"), *host.root(f"/srv/archive/mysql/apps/{name}").glob("*/MANIFEST.json")]
    assert files and not [f for f in files if f.is_file() and SECRET.encode() in f.read_bytes()]


@pytest.mark.parametrize("name", ["ledger", "notes"])
def test_cold_and_hot_checkpoints_log_in_as_the_app_does_and_lose_no_row_while_it_writes(lab: Lab,
                                                                                        official: LabHost, name: str):
    host = official
    stop = f"/tmp/aegir-mysql-writer-{name}"
    host.run(["rm", "-f", stop])
    before = logs_of(host, name)
    writer = subprocess.Popen(host.command(app.writer_argv(app.ip(host, name, "mariadb"), stop, 100_000)),
                              stdout=subprocess.PIPE, text=True)
    outputs = []
    try:
        with ProcScan(SECRET, watch="mysql-checkpoint", where=("cmdline",)) as scan:
            time.sleep(1)
            for mode in ("cold", "hot"):
                done = inv(lab, host, "mysql.checkpoint", f"apps/{name}", "--mode", mode, "--yes", "-f", "json")
                outputs.append(done.stdout + done.stderr)
                assert done.returncode == 0, done.stdout + done.stderr
                result = one(done, "mysql.checkpoint")["result"]
                assert result["ok"] and result["login"] == "the password from MARIADB_ROOT_PASSWORD" + (
                    "_FILE" if name == "notes" else "")
                time.sleep(1)
    finally:
        host.run(["touch", stop])
        out, _ = writer.communicate(timeout=60)
    first, last, _ = map(int, out.split())
    assert last - first > 40, out  # it wrote all along
    rows = app.ids(host, name, **how(name))
    assert rows == [*range(1, 51), *range(first, last + 1)]  # no row lost, none invented
    assert scan.watched and scan.hits == []  # it looked while the checkpoints ran; no argv held the password
    assert not [o for o in outputs if SECRET in o]
    no_secret_on_disk(host, name)
    copies = archived(host, name)
    now = logs_of(host, name)
    for log_name, digest in before.items():  # every log there was: kept, or archived (as it was, if it was closed)
        assert log_name in copies or log_name in now, f"{log_name} was purged, not archived"
        if log_name != max(before):
            assert digest in (copies.get(log_name), now.get(log_name)), f"{log_name} changed"
    gone = set(before) - set(now)
    assert gone and gone <= set(copies)
    if name == "ledger":  # logs in the datadir: archived, never copied into the base as well
        base = sorted(host.root("/srv/archive/mysql/apps/ledger").glob("*/base"))
        assert base and not [p for b in base for p in b.iterdir() if re.fullmatch(r"mysql-bin\.(\d{6}|index)", p.name)]
    into = f"/srv/scratch/restore-{name}"
    done = inv(lab, host, "mysql.restore", f"apps/{name}", "--at", "latest", "--into", into, "-f", "json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert restored_ids(host, into) == rows


def test_an_image_with_mysql_only_checkpoints_cold_and_refuses_hot_before_anything_starts(lab: Lab,
                                                                                         official: LabHost):
    host = official
    started = app.started_at(host, "crm", "mysql")
    hot = inv(lab, host, "mysql.checkpoint", "apps/crm", "--mode", "hot", "--yes")
    assert hot.returncode == 1
    assert "mariadb-backup is MariaDB's" in hot.stdout + hot.stderr and "use --mode cold" in hot.stdout + hot.stderr
    assert app.started_at(host, "crm", "mysql") == started and archived(host, "crm") == {}
    assert not host.root("/srv/archive/mysql/apps/crm").is_dir() or not list(
        host.root("/srv/archive/mysql/apps/crm").iterdir())
    with ProcScan(SECRET, watch="mysql-checkpoint", where=("cmdline",)) as scan:
        cold = inv(lab, host, "mysql.checkpoint", "apps/crm", "--mode", "cold", "--yes", "-f", "json")
    assert cold.returncode == 0, cold.stdout + cold.stderr
    result = one(cold, "mysql.checkpoint")["result"]
    assert result["ok"] and result["login"] == "the password from MYSQL_ROOT_PASSWORD" and scan.hits == []
    assert "client mysql" in host.root("/srv/conf/aegir/mysql/apps-crm/log").read_text()
    app.insert(host, 51, 60, "crm", **how("crm"))
    into = "/srv/scratch/restore-crm"
    done = inv(lab, host, "mysql.restore", "apps/crm", "--at", "latest", "--into", into, "-f", "json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert restored_ids(host, into) == app.ids(host, "crm", **how("crm")) == list(range(1, 61))
    assert SECRET not in cold.stdout + cold.stderr + done.stdout + done.stderr


def test_a_wrong_or_missing_password_is_one_line_naming_the_variable(lab: Lab, official: LabHost):
    host = official
    env = host.root("/srv/apps/ledger/.env")
    try:
        env.write_text("ROOT_PASSWORD='not-the-password'\n")
        wrong = inv(lab, host, "mysql.checkpoint", "apps/ledger", "--dry")
        env.write_text("OTHER=1\n")
        missing = inv(lab, host, "mysql.checkpoint", "apps/ledger", "--dry")
    finally:
        env.write_text(ENV)
    assert wrong.returncode == 1 and "Traceback" not in wrong.stdout + wrong.stderr
    assert ("root cannot log in to service 'mariadb': the password from MARIADB_ROOT_PASSWORD of service 'mariadb' "
            "is refused (ERROR 1045") in wrong.stdout
    assert "not-the-password" not in wrong.stdout + wrong.stderr
    assert missing.returncode == 1
    assert ("root cannot log in to service 'mariadb' through its socket and no password was found: looked for "
            "MARIADB_ROOT_PASSWORD, MARIADB_ROOT_PASSWORD_FILE, MYSQL_ROOT_PASSWORD, MYSQL_ROOT_PASSWORD_FILE") \
        in missing.stdout


def test_mysql_wal_and_disk_report_show_each_apps_archive(lab: Lab, official: LabHost):
    host = official
    done = inv(lab, host, "mysql.wal", "-f", "json")
    assert done.returncode == 0, done.stderr
    [row] = [r for r in one(done, "mysql.wal")["apps"] if r["app"] == "apps/ledger"]
    root = host.root("/srv/archive/mysql/apps/ledger")
    ids = sorted(p.name for p in root.iterdir() if (p / "MANIFEST.json").is_file())
    size = int(host.run(["du", "-sb", "/srv/archive/mysql/apps/ledger"]).stdout.split()[0])
    assert (row["checkpoints"], row["archive_bytes"], row["keep"]) == (len(ids), size, None)
    assert row["oldest_checkpoint"] == ids[0] and row["newest_checkpoint"] == ids[-1]
    assert row["wal_bytes"] == sum(p.stat().st_size for p in host.root("/srv/apps/ledger/db").glob("mysql-bin.0*"))
    flagged = inv(lab, host, "mysql.wal", "--archive-over", "1K")
    assert flagged.returncode == 1 and "ARCHIVE OVER 1.0K" in flagged.stdout
    prom = inv(lab, host, "mysql.wal", "-f", "prometheus")
    assert prom.returncode == 0, prom.stderr
    assert f'aegir_mysql_archive_bytes{{host="{host.name}",app="apps/ledger"}} {size}' in prom.stdout
    assert f'aegir_mysql_archive_checkpoints{{host="{host.name}",app="apps/ledger"}} {len(ids)}' in prom.stdout
    report = inv(lab, host, "disk.report", "-f", "prometheus")
    assert report.returncode == 0, report.stderr
    assert f'aegir_mysql_archive_bytes{{host="{host.name}",app="apps/ledger"}} {size}' in report.stdout
    table = inv(lab, host, "disk.report")
    assert "apps/ledger" in table.stdout and "ARCHIVE" in table.stdout
