"""Container images for the lab, built without a registry or a daemon.

No registry is reachable, so the lab writes its images directly in the
``docker save`` tarball format (``manifest.json`` + a config + one layer tar)
and ``docker load``s them into each host's dockerd. Building is a matter of
milliseconds; the tarball is still cached under ``/var/cache/aegir-lab`` keyed
by the content it was made from, so every host loads the same image ID.

``aegir-lab/busybox:latest`` is ``FROM scratch`` + Debian's static busybox
installed as ``busybox --install -s`` would (one absolute symlink per applet):
``sh``, ``httpd``, ``nc``, ``wget``, ``sleep``…
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

CACHE_DIR = Path(os.environ.get("AEGIR_LAB_CACHE", "/var/cache/aegir-lab"))
BUSYBOX = Path("/bin/busybox")
BUSYBOX_TAG = "aegir-lab/busybox:latest"
_EPOCH = 946684800  # fixed mtime: the same inputs give the same image ID
_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Image:
    """A loadable image tarball and the tag it carries."""

    tag: str
    tarball: Path


@dataclass(frozen=True)
class Entry:
    """One member of a layer: a file (``data``), a directory or a symlink."""

    path: str
    data: bytes | None = None
    mode: int = 0o755
    link: str | None = None


def busybox_image(cache: Path = CACHE_DIR) -> Image:
    """The busybox image tarball, built on first use and cached."""
    binary = BUSYBOX.read_bytes()
    applets = subprocess.run(
        [str(BUSYBOX), "--list-full"], check=True, capture_output=True, text=True
    ).stdout.split()
    dirs = sorted(_with_parents({"tmp", "etc", "var/www"} | {os.path.dirname(a) for a in applets}))
    entries = [Entry(d, mode=0o1777 if d == "tmp" else 0o755) for d in dirs]
    entries.append(Entry("bin/busybox", binary))
    entries += [Entry(a, link="/bin/busybox") for a in applets if a != "bin/busybox"]
    passwd = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
    entries.append(Entry("etc/passwd", passwd, 0o644))
    entries.append(Entry("etc/group", b"root:x:0:\nnogroup:x:65534:\n", 0o644))
    return scratch_image(BUSYBOX_TAG, entries, cmd=["sh"], cache=cache)


def scratch_image(tag: str, entries: list[Entry], *, cmd: list[str], cache: Path = CACHE_DIR) -> Image:
    """A one-layer ``FROM scratch`` image holding `entries`, as a cached tarball."""
    layer = _layer_tar(entries)
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": "2000-01-01T00:00:00Z",
            "config": {"Cmd": cmd, "Env": [_PATH]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created": "2000-01-01T00:00:00Z", "created_by": "aegir lab (tests/lab/images.py)"}],
        },
        sort_keys=True,
    ).encode()
    image_id = hashlib.sha256(config).hexdigest()
    out = cache / f"{tag.replace('/', '_').replace(':', '_')}-{image_id[:12]}.tar"
    if not out.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        manifest = [{"Config": f"{image_id}.json", "RepoTags": [tag], "Layers": [f"{diff_id[7:]}/layer.tar"]}]
        members = [
            (f"{diff_id[7:]}/layer.tar", layer),
            (f"{image_id}.json", config),
            ("manifest.json", json.dumps(manifest).encode()),
        ]
        tmp = out.with_suffix(f".{os.getpid()}.tmp")
        with tarfile.open(tmp, "w") as tar:
            for name, data in members:
                tar.addfile(_info(name, len(data), 0o644), io.BytesIO(data))
        tmp.rename(out)
    return Image(tag, out)


def _layer_tar(entries: list[Entry]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = _info(e.path, len(e.data) if e.data is not None else 0, e.mode)
            if e.link is not None:
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, e.link, 0o777
            elif e.data is None:
                info.type = tarfile.DIRTYPE
            tar.addfile(info, io.BytesIO(e.data) if e.data is not None else None)
    return buf.getvalue()


def _with_parents(dirs: set[str]) -> set[str]:
    out = set()
    for d in dirs:
        while d:
            out.add(d)
            d = os.path.dirname(d)
    return out


def _info(name: str, size: int, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, mode, _EPOCH
    return info
