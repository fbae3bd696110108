"""``aegir-lab/mariadb``: a MariaDB image made from Debian's own packages, cached.

No registry is reachable, so the image is ``debootstrap --variant=minbase
bookworm`` plus ``mariadb-server``, ``mariadb-client`` and ``mariadb-backup``
(the hot checkpoint needs ``mariadb-backup`` and ``mbstream``), trimmed of
documentation, written as one layer in the ``docker save`` format and cached
under ``/var/cache/aegir-lab`` keyed by everything it is made from. Cold it
takes about a minute (a download and a dpkg run); after that a run only
``docker load``s the cached tarball into the host that needs it.

The entry point (`ENTRYPOINT`) makes a fresh datadir with
``mariadb-install-db`` when ``/var/lib/mysql`` is empty, then execs
``mariadbd`` as root with the arguments the compose file gives (``--log-bin``
etc.). ``/etc/mysql/aegir-init.sql`` creates the ``app``/``app`` account the
dependent service and the tests use over TCP.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import shutil
import tarfile
import time
from pathlib import Path

from tests.lab.debian_root import SUITE, chroot_run, debootstrap
from tests.lab.images import _EPOCH, _PATH, CACHE_DIR, Image

TAG = "aegir-lab/mariadb:latest"
PACKAGES = ("mariadb-server", "mariadb-client", "mariadb-backup")
#: Bumped when the way the image is made changes in a way the key cannot see.
RECIPE = 1

ENTRYPOINT = """\
#!/bin/sh
# aegir lab MariaDB entry point: initialise an empty datadir, then run the server as root.
set -e
mkdir -p /run/mysqld
if [ ! -d /var/lib/mysql/mysql ]; then
  mariadb-install-db --user=root --datadir=/var/lib/mysql --skip-test-db >/dev/null
fi
exec mariadbd --user=root --datadir=/var/lib/mysql --init-file=/etc/mysql/aegir-init.sql "$@"
"""

INIT_SQL = """\
CREATE USER IF NOT EXISTS 'app'@'%' IDENTIFIED BY 'app';
GRANT ALL PRIVILEGES ON *.* TO 'app'@'%';
"""

SERVER_CNF = """\
# aegir lab: listen on every address; no DNS lookups for clients
[mariadbd]
bind-address = 0.0.0.0
skip-name-resolve
"""

_TRIM = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "var/cache/apt",
         "var/lib/apt/lists", "usr/share/mysql/mroonga")


def recipe_key() -> str:
    data = {"recipe": RECIPE, "suite": SUITE, "packages": PACKAGES, "entry": ENTRYPOINT, "init": INIT_SQL,
            "cnf": SERVER_CNF, "trim": _TRIM}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


def mariadb_image(cache: Path = CACHE_DIR, *, log=print) -> Image:
    """The MariaDB image tarball, built on first use (under a lock) and cached."""
    out = cache / f"aegir-lab_mariadb-{recipe_key()}.tar"
    if out.is_file():
        return Image(TAG, out)
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".mariadb.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if out.is_file():
            return Image(TAG, out)
        started = time.monotonic()
        work = cache / f".build-mariadb-{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        try:
            root = work / "root"
            log(f"aegir lab: building {TAG} (debootstrap {SUITE} + {', '.join(PACKAGES)}, about a minute)")
            debootstrap(root, tuple(PACKAGES))
            chroot_run(root, ["apt-get", "clean"])
            _configure(root)
            tmp = out.with_suffix(f".{os.getpid()}.tmp")
            _save_tarball(root, work / "layer.tar", tmp)
            for stale in cache.glob("aegir-lab_mariadb-*.tar"):
                stale.unlink()
            tmp.rename(out)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        log(f"aegir lab: {TAG} ready in {time.monotonic() - started:.0f} s ({out.stat().st_size >> 20} MiB)")
    return Image(TAG, out)


def _configure(root: Path) -> None:
    for rel in _TRIM:
        shutil.rmtree(root / rel, ignore_errors=True)
    for rel in ("var/lib/mysql", "run/mysqld"):  # the package's own datadir: the compose file mounts ./db
        shutil.rmtree(root / rel, ignore_errors=True)
        (root / rel).mkdir(parents=True)
    entry = root / "usr/local/bin/aegir-mariadb"
    entry.write_text(ENTRYPOINT)
    entry.chmod(0o755)
    (root / "etc/mysql/aegir-init.sql").write_text(INIT_SQL)
    (root / "etc/mysql/mariadb.conf.d/90-aegir-lab.cnf").write_text(SERVER_CNF)


def _save_tarball(root: Path, layer: Path, out: Path) -> None:
    """Write `root` as one layer, then the ``docker save`` tarball holding it."""
    with tarfile.open(layer, "w", format=tarfile.PAX_FORMAT) as tar:
        for child in sorted(os.listdir(root)):
            if child in ("proc", "sys", "dev"):
                tar.add(root / child, arcname=child, recursive=False)
            else:
                tar.add(root / child, arcname=child)
    digest = hashlib.sha256()
    with layer.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    diff_id = digest.hexdigest()
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": "2000-01-01T00:00:00Z",
        "config": {"Entrypoint": ["/usr/local/bin/aegir-mariadb"], "Cmd": [], "Env": [_PATH],
                   "ExposedPorts": {"3306/tcp": {}}},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]},
        "history": [{"created": "2000-01-01T00:00:00Z", "created_by": "aegir lab (tests/lab/mariadb_image.py)"}],
    }, sort_keys=True).encode()
    image_id = hashlib.sha256(config).hexdigest()
    manifest = json.dumps([{"Config": f"{image_id}.json", "RepoTags": [TAG],
                            "Layers": [f"{diff_id}/layer.tar"]}]).encode()
    with tarfile.open(out, "w") as tar:
        tar.add(layer, arcname=f"{diff_id}/layer.tar")
        for name, data in ((f"{image_id}.json", config), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, _EPOCH
            tar.addfile(info, io.BytesIO(data))


def load(host, image: Image) -> None:
    """``docker load`` `image` into `host`'s dockerd unless it has it already."""
    if host.run(["docker", "image", "inspect", image.tag], check=False).returncode != 0:
        host.run(["docker", "load", "-q", "-i", str(image.tarball)], timeout=300)


if __name__ == "__main__":
    print(mariadb_image().tarball)
