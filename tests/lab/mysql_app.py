"""A lab app with a real MariaDB: ``<srv>/apps/<name>`` with ``db/``, ``wal/`` and two dependents.

The database service runs the lab's MariaDB image (tests/lab/mariadb_image.py)
with its datadir in ``./db`` and its binary logs in ``./wal``; ``web``
``depends_on`` it and ``worker`` is named in the file's ``x-aegir.mysql``
extension field, so both are its dependents. `probe_script` is the client
that connects every 50 ms and counts refusals (tests and bench/checkpoint.py).

`official_compose` is an app set up as upstream apps set up the official
images: a service called ``mariadb`` (or ``mysql``), root's password in
``.env`` (``ROOT_PASSWORD``), no socket login for root; the tests and
`writer_argv` then log in as ``app`` (password ``app``) over TCP.
"""

from __future__ import annotations

import time

from tests.lab.host import LabHost
from tests.lab.images import BUSYBOX_TAG
from tests.lab.mariadb_image import OFFICIAL_TAG, TAG, load, mariadb_image, mysql_named_image, official_image

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


def official_compose(*, service: str = "mariadb", image: str = OFFICIAL_TAG, log_bin: str = "/wal/mysql-bin",
                     env: str = "MARIADB_ROOT_PASSWORD: ${ROOT_PASSWORD}", service_extra: str = "",
                     top_extra: str = "") -> str:
    """An app set up like upstream apps set up the official images (root's password from .env)."""
    return f"""\
services:
  {service}:
    image: {image}
    pull_policy: never
    environment:
      {env}
      MARIADB_DATABASE: shop
    command: ["--log-bin={log_bin}", "--server-id=1", "--binlog-format=ROW"]
    volumes: ["./db:/var/lib/mysql", "./wal:/wal"]
{service_extra}  web:
    image: {BUSYBOX_TAG}
    pull_policy: never
    depends_on: [{service}]
    command: {_IDLE}
{top_extra}"""


#: Where `sql` and `wait_db` log in: root through the socket (the lab's own image) or ``app`` over TCP
#: (the official variants: root has a password only the app's .env knows).
SOCKET = ("-uroot",)
APP_USER = ("-uapp", "-h127.0.0.1")


def deploy(host: LabHost, name: str = "shop", compose: str = COMPOSE, *, env: str = "", service: str = "db",
           client: str = "mariadb", login: tuple[str, ...] = SOCKET) -> str:
    """Write the app under the host's /srv/apps (and its .env), load the images, ``compose up -d``, wait for
    the database, create shop.rows."""
    load(host, mariadb_image())  # the tests' own throw-away servers use it too
    for image in (official_image(), mysql_named_image()):
        if image.tag in compose:
            load(host, image)
    host.write(f"apps/{name}/docker-compose.yml", compose)
    if env:
        host.write(f"apps/{name}/.env", env)
    host.run(["docker", "compose", "--project-directory", f"/srv/apps/{name}", "-p", name, "up", "-d"], timeout=120)
    wait_db(host, name, service=service, client=client, login=login)
    sql(host, "CREATE DATABASE IF NOT EXISTS shop; CREATE TABLE IF NOT EXISTS shop.rows "
              "(id INT PRIMARY KEY, note VARCHAR(64))", name, service=service, client=client, login=login)
    return f"/srv/apps/{name}"


def container(name: str, service: str = "db") -> str:
    return f"{name}-{service}-1"


def _client(name: str, service: str, client: str, login: tuple[str, ...]) -> list[str]:
    env = ["-e", "MYSQL_PWD=app"] if login == APP_USER else []
    return ["docker", "exec", *env, container(name, service), client, *login]


def sql(host: LabHost, statement: str, name: str = "shop", *, service: str = "db", client: str = "mariadb",
        login: tuple[str, ...] = SOCKET) -> str:
    return host.run([*_client(name, service, client, login), "-N", "-B", "-e", statement]).stdout


def wait_db(host: LabHost, name: str = "shop", timeout: float = 60, *, service: str = "db", client: str = "mariadb",
            login: tuple[str, ...] = SOCKET) -> float:
    started = time.monotonic()
    while host.run([*_client(name, service, client, login), "-e", "SELECT 1"], check=False).returncode != 0:
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"the database of {name} did not answer within {timeout}s")
        time.sleep(0.2)
    return time.monotonic() - started


def insert(host: LabHost, first: int, last: int, name: str = "shop", **how: object) -> None:
    values = ",".join(f"({i},'row {i}')" for i in range(first, last + 1))
    sql(host, f"INSERT INTO shop.rows VALUES {values}", name, **how)  # type: ignore[arg-type]


def ids(host: LabHost, name: str = "shop", **how: object) -> list[int]:
    return [int(x) for x in sql(host, "SELECT id FROM shop.rows ORDER BY id", name, **how).split()]  # type: ignore[arg-type]


def ip(host: LabHost, name: str = "shop", service: str = "db") -> str:
    return host.run(["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                     container(name, service)]).stdout.strip()


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


#: The app: insert one row into shop.rows every 50 ms, as ``app`` over TCP (a fresh client each time, so a
#: restarted server is written to as soon as it answers), ids from FIRST up; a row counts as written when the
#: server said so (or, retried, says it is there already). Prints ``first last failed-tries`` at the end.
WRITER = """\
import os, subprocess, sys, time
addr, stop, i = sys.argv[1], sys.argv[2], int(sys.argv[3])
first, failed = i, 0
env = {**os.environ, "MYSQL_PWD": "app"}
while not os.path.exists(stop):
    done = subprocess.run(["mariadb", "-h", addr, "-uapp", "--connect-timeout=1", "-e",
                           f"INSERT INTO shop.rows VALUES ({i}, 'written by the app')"],
                          env=env, capture_output=True, text=True)
    if done.returncode == 0 or "Duplicate entry" in done.stderr:
        i += 1
    else:
        failed += 1
    time.sleep(0.05)
print(first, i - 1, failed, flush=True)
"""


def writer_argv(addr: str, stopfile: str, first: int) -> list[str]:
    return ["python3", "-c", WRITER, addr, stopfile, str(first)]
