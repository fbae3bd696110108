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

Two variants are derived from that tarball (one more layer each, cached the
same way, no download): `official_image` (``aegir-lab/mariadb:official``)
sets a fresh datadir up like the official ``mariadb`` image does, root's
password from ``MARIADB_ROOT_PASSWORD`` (or ``MYSQL_ROOT_PASSWORD``, or their
``_FILE``), ``root@localhost`` and ``root@'%'`` with ``mysql_native_password``
and no socket login; `mysql_named_image` (``aegir-lab/mariadb:mysql``) is the
same with only MySQL's program names: ``mysql``, ``mysqlbinlog``, ``mysqld``
(no ``mariadb``, ``mariadb-binlog``, ``mariadbd``) and no ``mariadb-backup``
nor ``mbstream``, as an Oracle MySQL image has.
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


# --------------------------------------------------------------------------- variants, one layer on top

OFFICIAL_TAG = "aegir-lab/mariadb:official"
MYSQL_TAG = "aegir-lab/mariadb:mysql"

#: The entry point of the variants: the official images' password set-up. The password never reaches an
#: argv: `printf` is the shell's builtin, `sed` reads it on stdin (quoted for SQL).
OFFICIAL_ENTRYPOINT = """\
#!/bin/sh
# aegir lab MariaDB, set up like the official images: root's password from the environment, no socket login.
set -e
mkdir -p /run/mysqld
if [ ! -d /var/lib/mysql/mysql ]; then
  pw=${MARIADB_ROOT_PASSWORD:-$MYSQL_ROOT_PASSWORD}
  file=${MARIADB_ROOT_PASSWORD_FILE:-$MYSQL_ROOT_PASSWORD_FILE}
  if [ -z "$pw" ] && [ -n "$file" ]; then pw=$(cat "$file"); fi
  if [ -z "$pw" ]; then echo "aegir lab: set MARIADB_ROOT_PASSWORD" >&2; exit 1; fi
  mariadb-install-db @INSTALL@ --user=root --datadir=/var/lib/mysql --skip-test-db >/dev/null
  q=$(printf '%s' "$pw" | sed -e 's/\\\\/\\\\\\\\/g' -e "s/'/''/g")
  printf "FLUSH PRIVILEGES;\\nALTER USER root@localhost IDENTIFIED VIA mysql_native_password USING PASSWORD('%s');\\n\\
CREATE USER root@'%%' IDENTIFIED BY '%s';\\nGRANT ALL PRIVILEGES ON *.* TO root@'%%' WITH GRANT OPTION;\\n" "$q" "$q" \\
    | @SERVER@ --bootstrap --user=root --datadir=/var/lib/mysql >/dev/null 2>&1
fi
exec @SERVER@ --user=root --datadir=/var/lib/mysql --init-file=/etc/mysql/aegir-init.sql "$@"
"""

#: MySQL's names for the programs the mysql variant keeps (renamed, not linked): MariaDB's own are removed.
_MYSQL_NAMES = {"usr/bin/mariadb": "usr/bin/mysql", "usr/bin/mariadb-binlog": "usr/bin/mysqlbinlog",
                "usr/sbin/mariadbd": "usr/sbin/mysqld"}
_MYSQL_REMOVED = ("usr/bin/mariadb-backup", "usr/bin/mariabackup", "usr/bin/mbstream")
#: mariadb-install-db looks for sbin/mariadbd under --basedir: a relocatable base pointing at mysqld.
_MYSQL_BASEDIR = {"opt/aegir-lab/bin": "/usr/bin", "opt/aegir-lab/share": "/usr/share",
                  "opt/aegir-lab/lib": "/usr/lib", "opt/aegir-lab/sbin/mariadbd": "/usr/sbin/mysqld"}


def official_image(cache: Path = CACHE_DIR, *, log=print) -> Image:
    """``aegir-lab/mariadb:official``: the base image with the official images' root password set-up."""
    return _variant("official", OFFICIAL_TAG, cache, log)


def mysql_named_image(cache: Path = CACHE_DIR, *, log=print) -> Image:
    """``aegir-lab/mariadb:mysql``: the official variant with MySQL's program names only, no mariadb-backup."""
    return _variant("mysql", MYSQL_TAG, cache, log)


def _entrypoint(variant: str) -> str:
    server, install = ("mysqld", "--basedir=/opt/aegir-lab") if variant == "mysql" else ("mariadbd", "")
    return OFFICIAL_ENTRYPOINT.replace("@SERVER@", server).replace("@INSTALL@ ", f"{install} " if install else "")


def _variant(variant: str, tag: str, cache: Path, log) -> Image:
    base = mariadb_image(cache, log=log)
    key = hashlib.sha256(json.dumps({"base": recipe_key(), "variant": variant, "entry": _entrypoint(variant),
                                     "names": _MYSQL_NAMES, "removed": _MYSQL_REMOVED, "basedir": _MYSQL_BASEDIR},
                                    sort_keys=True).encode()).hexdigest()[:12]
    out = cache / f"aegir-lab_mariadb-{variant}-{key}.tar"
    if out.is_file():
        return Image(tag, out)
    with open(cache / ".mariadb.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not out.is_file():
            started = time.monotonic()
            tmp = out.with_suffix(f".{os.getpid()}.tmp")
            _save_variant(base.tarball, variant, tag, tmp)
            for stale in cache.glob(f"aegir-lab_mariadb-{variant}-*.tar"):
                stale.unlink()
            tmp.rename(out)
            log(f"aegir lab: {tag} ready in {time.monotonic() - started:.0f} s")
    return Image(tag, out)


def _info(name: str, size: int = 0, mode: int = 0o755, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime, info.type, info.linkname = size, mode, _EPOCH, kind, link
    return info


def _save_variant(base_tarball: Path, variant: str, tag: str, out: Path) -> None:
    """The base image's tarball plus one layer (`variant`'s files and whiteouts), as a ``docker save`` tarball."""
    with tarfile.open(base_tarball) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))[0]  # type: ignore[arg-type]
        config = json.load(outer.extractfile(manifest["Config"]))  # type: ignore[arg-type]
        [base_layer] = manifest["Layers"]
        layer = io.BytesIO()
        with tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT) as tar:
            entry = _entrypoint(variant).encode()
            tar.addfile(_info("usr/local/bin/aegir-mariadb", len(entry)), io.BytesIO(entry))
            if variant == "mysql":
                with tarfile.open(fileobj=outer.extractfile(base_layer)) as inner:  # type: ignore[arg-type]
                    for old, new in _MYSQL_NAMES.items():
                        data = inner.extractfile(old).read()  # type: ignore[union-attr]
                        tar.addfile(_info(new, len(data)), io.BytesIO(data))
                for gone in (*_MYSQL_NAMES, *_MYSQL_REMOVED):
                    folder, _, name = gone.rpartition("/")
                    tar.addfile(_info(f"{folder}/.wh.{name}", mode=0o644))
                tar.addfile(_info("opt/aegir-lab", kind=tarfile.DIRTYPE))
                tar.addfile(_info("opt/aegir-lab/sbin", kind=tarfile.DIRTYPE))
                for name, link in _MYSQL_BASEDIR.items():
                    tar.addfile(_info(name, mode=0o777, kind=tarfile.SYMTYPE, link=link))
        diff_id = hashlib.sha256(layer.getvalue()).hexdigest()
        config["rootfs"]["diff_ids"].append(f"sha256:{diff_id}")
        config["history"].append({"created": "2000-01-01T00:00:00Z", "created_by": f"aegir lab: {variant} variant"})
        data = json.dumps(config, sort_keys=True).encode()
        image_id = hashlib.sha256(data).hexdigest()
        new_manifest = json.dumps([{"Config": f"{image_id}.json", "RepoTags": [tag],
                                    "Layers": [base_layer, f"{diff_id}/layer.tar"]}]).encode()
        with tarfile.open(out, "w") as tar:
            member = outer.getmember(base_layer)
            tar.addfile(member, outer.extractfile(member))
            for name, blob in ((f"{diff_id}/layer.tar", layer.getvalue()), (f"{image_id}.json", data),
                               ("manifest.json", new_manifest)):
                tar.addfile(_info(name, len(blob), mode=0o644), io.BytesIO(blob))


def load(host, image: Image) -> None:
    """``docker load`` `image` into `host`'s dockerd unless it has it already."""
    if host.run(["docker", "image", "inspect", image.tag], check=False).returncode != 0:
        host.run(["docker", "load", "-q", "-i", str(image.tarball)], timeout=300)


if __name__ == "__main__":
    print(mariadb_image().tarball)
