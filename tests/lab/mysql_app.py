"""A lab app with a real MariaDB: ``<srv>/apps/<name>`` with ``db/``, ``wal/`` and two dependents.

The database service runs the lab's MariaDB image (tests/lab/mariadb_image.py)
with its datadir in ``./db`` and its binary logs in ``./wal``; ``web``
``depends_on`` it and ``worker`` is named in the file's ``x-aegir.mysql``
extension field, so both are its dependents. `probe_script` is the client
that connects every 50 ms and counts refusals (tests and bench/checkpoint.py).
"""

from __future__ import annotations

import time

from tests.lab.host import LabHost
from tests.lab.images import BUSYBOX_TAG
from tests.lab.mariadb_image import TAG, load, mariadb_image

_IDLE = '["sh", "-c", "trap \'exit 0\' TERM; while :; do sleep 1; done"]'

COMPOSE = f"""\
x-aegir:
  mysql:
    dependents: [worker]
services:
  db:
    image: {TAG}
    pull_policy: never
    command: ["--log-bin=/wal/mysql-bin", "--server-id=1", "--binlog-format=ROW"]
    volumes: ["./db:/var/lib/mysql", "./wal:/wal"]
  web:
    image: {BUSYBOX_TAG}
    pull_policy: never
    depends_on: [db]
    command: {_IDLE}
  worker:
    image: {BUSYBOX_TAG}
    pull_policy: never
    command: {_IDLE}
"""


def deploy(host: LabHost, name: str = "shop", compose: str = COMPOSE) -> str:
    """Write the app under the host's /srv/apps, load the image, ``compose up -d``, wait for the database."""
    load(host, mariadb_image())
    host.write(f"apps/{name}/docker-compose.yml", compose)
    host.run(["docker", "compose", "--project-directory", f"/srv/apps/{name}", "-p", name, "up", "-d"], timeout=120)
    wait_db(host, name)
    sql(host, "CREATE DATABASE IF NOT EXISTS shop; CREATE TABLE IF NOT EXISTS shop.rows "
              "(id INT PRIMARY KEY, note VARCHAR(64))", name)
    return f"/srv/apps/{name}"


def container(name: str, service: str = "db") -> str:
    return f"{name}-{service}-1"


def sql(host: LabHost, statement: str, name: str = "shop") -> str:
    return host.run(["docker", "exec", container(name), "mariadb", "-uroot", "-N", "-B", "-e", statement]).stdout


def wait_db(host: LabHost, name: str = "shop", timeout: float = 60) -> float:
    started = time.monotonic()
    while host.run(["docker", "exec", container(name), "mariadb", "-uroot", "-e", "SELECT 1"],
                   check=False).returncode != 0:
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"the database of {name} did not answer within {timeout}s")
        time.sleep(0.2)
    return time.monotonic() - started


def insert(host: LabHost, first: int, last: int, name: str = "shop") -> None:
    values = ",".join(f"({i},'row {i}')" for i in range(first, last + 1))
    sql(host, f"INSERT INTO shop.rows VALUES {values}", name)


def ids(host: LabHost, name: str = "shop") -> list[int]:
    return [int(x) for x in sql(host, "SELECT id FROM shop.rows ORDER BY id", name).split()]


def ip(host: LabHost, name: str = "shop") -> str:
    return host.run(["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                     container(name)]).stdout.strip()


def started_at(host: LabHost, name: str, service: str) -> str:
    return host.run(["docker", "inspect", "-f", "{{.State.StartedAt}}", container(name, service)]).stdout.strip()


#: Connect to ADDR:3306 every 50 ms until STOPFILE exists; a connection counts as served when the
#: server's greeting arrives. Prints ``tries refused longest-outage-seconds`` at the end (an outage runs
#: from the first failed try to the next served one).
PROBE = """\
import os, socket, sys, time
addr, stop = sys.argv[1], sys.argv[2]
tries = refused = 0
down = None
longest = 0.0
while not os.path.exists(stop):
    tries += 1
    at = time.monotonic()
    try:
        with socket.create_connection((addr, 3306), timeout=0.25) as s:
            ok = bool(s.recv(64))
    except OSError:
        ok = False
    if ok and down is not None:
        longest, down = max(longest, at - down), None
    elif not ok:
        refused += 1
        down = at if down is None else down
    time.sleep(0.05)
print(tries, refused, f"{longest:.3f}", flush=True)
"""


def probe_argv(addr: str, stopfile: str) -> list[str]:
    return ["python3", "-c", PROBE, addr, stopfile]
