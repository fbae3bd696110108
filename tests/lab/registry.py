"""A pull-only Docker registry inside a lab host, so that images there get real RepoDigests.

``docker load`` keeps no RepoDigests (moby/moby#22011): Docker records a digest
only for an image it pulled from a registry, and no registry is reachable from
the lab. This one is the Registry HTTP API V2 as far as ``docker pull`` reads
it (``GET /v2/``, manifests and blobs, ``HEAD`` too), serving schema-2 images
built here (``FROM scratch``, one gzipped layer), under any repository name,
by tag or digest. It listens on 127.0.0.1 inside the host's network namespace:
Docker pulls from loopback over plain HTTP without ``insecure-registries``.
Used as the daemon's ``registry-mirrors`` entry, it also serves Docker Hub names
(``nginx@sha256:…``), as a pull-through cache would.

The server is the Python standard library, fed its blobs on stdin, and stopped
by pid (`Registry.stop`).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import subprocess
import tarfile
import time
from dataclasses import dataclass, field

from tests.lab.host import LabHost

MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG = "application/vnd.docker.container.image.v1+json"
LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

_SERVER = r"""
import base64, http.server, json, sys
blobs = {d: (t, base64.b64decode(b)) for d, (t, b) in json.load(sys.stdin)["blobs"].items()}
tags = json.loads(sys.argv[2])
class H(http.server.BaseHTTPRequestHandler):
    def answer(self, body):
        parts = self.path.split("?")[0].strip("/").split("/")
        if parts == ["v2"]:
            return self.send(200, "application/json", b"{}", None, body)
        if len(parts) >= 4 and parts[0] == "v2" and parts[-2] in ("manifests", "blobs"):
            ref = parts[-1]
            digest = tags.get(ref) if parts[-2] == "manifests" and not ref.startswith("sha256:") else ref
            if digest in blobs:
                kind, data = blobs[digest]
                return self.send(200, kind, data, digest, body)
        self.send(404, "application/json", b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}', None, body)
    def send(self, code, kind, data, digest, body):
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        if digest:
            self.send_header("Docker-Content-Digest", digest)
        self.end_headers()
        if body:
            self.wfile.write(data)
    def do_GET(self):
        self.answer(True)
    def do_HEAD(self):
        self.answer(False)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class PushedImage:
    """One image the registry serves: its manifest digest (what RepoDigests record) and its image ID."""

    digest: str
    image_id: str
    blobs: dict[str, tuple[str, bytes]] = field(repr=False, compare=False)


def scratch_image(seed: str) -> PushedImage:
    """A ``FROM scratch`` image holding one file, ``/seed`` (its content `seed`): distinct seeds, distinct images."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("seed")
        data = seed.encode()
        info.size, info.mtime, info.mode = len(data), 946684800, 0o644
        tar.addfile(info, io.BytesIO(data))
    layer = buf.getvalue()
    packed = gzip.compress(layer, mtime=0)
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": "2000-01-01T00:00:00Z",
        "config": {"Cmd": ["/seed"]},
        "rootfs": {"type": "layers", "diff_ids": [_sha(layer)]},
        "history": [{"created": "2000-01-01T00:00:00Z", "created_by": "aegir lab (tests/lab/registry.py)"}],
    }, sort_keys=True).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": MANIFEST,
        "config": {"mediaType": CONFIG, "size": len(config), "digest": _sha(config)},
        "layers": [{"mediaType": LAYER, "size": len(packed), "digest": _sha(packed)}],
    }, sort_keys=True).encode()
    return PushedImage(_sha(manifest), _sha(config), {
        _sha(manifest): (MANIFEST, manifest), _sha(config): (CONFIG, config), _sha(packed): ("application/octet-stream", packed)})


class Registry:
    """The registry server running in `host`'s network namespace on ``127.0.0.1:port``, serving `images`
    (and each under the tags of `tags`: tag -> image)."""

    def __init__(self, host: LabHost, images: list[PushedImage], tags: dict[str, PushedImage] | None = None,
                 port: int = 5000) -> None:
        self.host = host
        self.port = port
        blobs = {d: (kind, base64.b64encode(data).decode()) for img in images for d, (kind, data) in img.blobs.items()}
        tag_map = {tag: img.digest for tag, img in (tags or {}).items()}
        self.proc = subprocess.Popen(host.command(["python3", "-c", _SERVER, str(port), json.dumps(tag_map)]),
                                     stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"blobs": blobs}).encode())
        self.proc.stdin.close()
        self._wait()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _wait(self) -> None:
        probe = ["python3", "-c", f"import urllib.request; urllib.request.urlopen('http://{self.address}/v2/')"]
        for _ in range(100):
            if self.proc.poll() is not None:
                raise RuntimeError(f"the lab registry exited {self.proc.returncode}: "
                                   f"{self.proc.stderr.read().decode() if self.proc.stderr else ''}")
            if self.host.run(probe, check=False).returncode == 0:
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the lab registry did not answer on {self.address} within 10 s")

    def stop(self) -> None:
        """End the server (by its pid: nsenter execs it)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        if self.proc.stderr is not None:
            self.proc.stderr.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
