"""Benchmark: the downtime of `mysql.checkpoint`, cold and hot, against a plain Compose stop + start.

Run as root: ``.venv/bin/python bench/checkpoint.py [--mb 200]`` (starts its own
one-host lab, prefix ``aegirmyb``, under the machine's lab lock).

On the lab host, ``apps/shop`` is set up like the official images set up a
database (tests/lab/mysql_app.py ``official_compose``: the lab's MariaDB built
from Debian's packages, a service called ``mariadb``, root's password from
``.env`` and no socket login for root, so aegir logs in with the password;
datadir ``./db``, binary logs ``./wal``) and is filled with about `--mb` MB of rows. A client in the host's network connects to the
database every 50 ms through every run and reports the longest outage (first
failed connection to the next served one) and the number of failed tries:

(a) baseline: ``docker compose stop mariadb`` then ``docker compose start mariadb``;
(b) ``inv mysql.checkpoint apps/shop --mode cold --yes``: stop, copy the
    datadir, start, restart the dependents (target: outage <= 1.5x the baseline);
(c) ``inv mysql.checkpoint apps/shop --mode hot --yes``: mariadb-backup while
    the server runs (target: 0 failed connections).

Prints each run's figures and the ratio cold/baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.helpers import run_inv  # noqa: E402
from tests.lab import Lab, LabHost  # noqa: E402
from tests.lab import mysql_app as app  # noqa: E402

STOP = "/tmp/aegir-bench-probe-stop"
CHUNK = 20_000  # rows of ~1 KB per INSERT
#: The database as the app sees it: service `mariadb`, root's password only in .env.
HOW = {"service": "mariadb", "client": "mariadb", "login": app.APP_USER}
ENV = "ROOT_PASSWORD='bench-S3cr#t \"pw\"'\n"


def fill(host: LabHost, mb: int) -> int:
    """About `mb` MB of rows in shop.big (one ~1 KB row per id); returns the datadir size."""
    app.sql(host, "CREATE TABLE IF NOT EXISTS shop.big (id INT PRIMARY KEY, pad VARCHAR(1024))", **HOW)  # type: ignore[arg-type]
    rows = mb * 1000
    for first in range(1, rows + 1, CHUNK):
        last = min(rows, first + CHUNK - 1)
        app.sql(host, "SET SESSION max_recursive_iterations = 1000000; "
                      f"INSERT INTO shop.big WITH RECURSIVE s(n) AS (SELECT {first} UNION ALL SELECT n + 1 FROM s "
                      f"WHERE n < {last}) SELECT n, REPEAT('x', 1000) FROM s", **HOW)  # type: ignore[arg-type]
    app.sql(host, "FLUSH BINARY LOGS", **HOW)  # type: ignore[arg-type]
    return int(host.run(["du", "-sb", "/srv/apps/shop/db"]).stdout.split()[0])


def measured(host: LabHost, action) -> tuple[int, int, float, object]:
    """Run `action()` while the probe connects every 50 ms: (tries, failed, longest outage s, action's value)."""
    host.run(["rm", "-f", STOP])
    probe = subprocess.Popen(host.command(app.probe_argv(app.ip(host, service="mariadb"), STOP)),
                             stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        value = action()
        app.wait_db(host, **HOW)  # type: ignore[arg-type]
        time.sleep(0.5)
    finally:
        host.run(["touch", STOP])
        out, _ = probe.communicate(timeout=30)
    tries, failed, longest = out.split()
    return int(tries), int(failed), float(longest), value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=200, help="size of the database to fill, in MB")
    args = parser.parse_args()
    with Lab.start(1, prefix="aegirmyb", wait=float(os.environ.get("AEGIR_LAB_WAIT", "600"))) as lab:
        host = lab.host("hyp1")
        app.deploy(host, "shop", app.official_compose(), env=ENV, **HOW)  # type: ignore[arg-type]
        size = fill(host, args.mb)
        print(f"database: {size / 1e6:.0f} MB in /srv/apps/shop/db", flush=True)
        compose = ["docker", "compose", "--project-directory", "/srv/apps/shop", "-p", "shop"]

        def baseline() -> None:
            host.run([*compose, "stop", "mariadb"], timeout=300)
            host.run([*compose, "start", "mariadb"], timeout=300)

        def checkpoint(mode: str) -> dict:
            done = run_inv("-H", "hyp1", "mysql.checkpoint", "apps/shop", "--mode", mode, "--yes", "-f", "json",
                           inventory=lab.inventory_path, timeout=1800)
            if done.returncode:
                raise SystemExit(f"mysql.checkpoint --mode {mode} failed: {done.stdout[-800:]}{done.stderr[-800:]}")
            return json.loads(done.stdout)["hosts"][0]["result"]  # the envelope of every task

        b = measured(host, baseline)
        print(f"(a) compose stop + start mariadb:  outage {b[2]:.2f} s, {b[1]}/{b[0]} connections failed", flush=True)
        c = measured(host, lambda: checkpoint("cold"))
        steps = {s["step"]: s["seconds"] for s in c[3]["steps"]}  # type: ignore[index]
        print(f"(b) mysql.checkpoint --mode cold: outage {c[2]:.2f} s, {c[1]}/{c[0]} connections failed "
              f"(stop {steps['stop']:.2f} s, snapshot {steps['snapshot']:.2f} s, start {steps['start']:.2f} s, "
              f"wait {steps['wait']:.2f} s; verify after restart {steps['verify']:.2f} s; "
              f"logged in with {c[3]['login']})", flush=True)  # type: ignore[index]
        h = measured(host, lambda: checkpoint("hot"))
        hsteps = {s["step"]: s["seconds"] for s in h[3]["steps"]}  # type: ignore[index]
        print(f"(c) mysql.checkpoint --mode hot:  outage {h[2]:.2f} s, {h[1]}/{h[0]} connections failed "
              f"(backup {hsteps['backup']:.2f} s, prepare {hsteps['prepare']:.2f} s)", flush=True)
        ratio = c[2] / b[2] if b[2] else float("inf")
        print(f"cold/baseline outage ratio: {ratio:.2f} (target <= 1.5); hot failed connections: {h[1]} (target 0)")


if __name__ == "__main__":
    main()
