"""SSH keys of the lab: one client key (the operator's), one host key per host,
and the ``known_hosts`` lines paramiko (hence Fabric and aegir) looks up."""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Iterable
from pathlib import Path


def keygen(path: Path, comment: str) -> str:
    """A fresh ed25519 key pair at `path` (+ ``.pub``); returns ``"<type> <base64>"``."""
    for p in (path, path.with_name(path.name + ".pub")):
        p.unlink(missing_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True, capture_output=True)
    return public_key(path)


def public_key(path: Path) -> str:
    kind, blob, *_ = path.with_name(path.name + ".pub").read_text().split()
    return f"{kind} {blob}"


def known_host_name(address: str | ipaddress.IPv4Address | ipaddress.IPv6Address, port: int = 22) -> str:
    """The name paramiko looks up: the bare address on port 22, else ``[address]:port``."""
    return str(address) if port == 22 else f"[{address}]:{port}"


def known_hosts_lines(key: str, addresses: Iterable[object], port: int = 22) -> list[str]:
    return [f"{known_host_name(str(a), port)} {key}" for a in addresses]
