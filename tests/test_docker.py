"""The Docker SDK over the host's SSH connection (docker system dial-stdio), in the lab."""

from __future__ import annotations

import pytest
from invoke import Context

from aegir import inventory
from aegir.cli import AegirConfig
from aegir.docker import DockerUnavailable
from aegir.host import open_context


@pytest.fixture
def hyp1(lab):
    host = inventory.load(str(lab.inventory_path)).get("hyp1")
    hc = open_context(Context(config=AegirConfig(lazy=True)), host)
    yield hc
    hc.close()


def test_the_api_over_ssh_sees_the_same_daemon_as_the_hosts_own_socket(lab, hyp1):
    local = lab.host("hyp1").docker_client()
    try:
        assert hyp1.docker().info()["ID"] == local.info()["ID"]
        assert hyp1.docker().info()["DockerRootDir"] == "/srv/docker"
    finally:
        local.close()


def test_many_calls_share_one_ssh_session_per_connection(lab, hyp1):
    client = hyp1.docker()
    for _ in range(5):
        client.version()
        client.containers.list(all=True)
    dialers = lab.host("hyp1").run(["pgrep", "-f", "-c", "^docker system dial-stdio"], check=False)
    assert dialers.stdout.strip() == "1"  # one channel, kept alive: every call went through it


def test_a_dropped_ssh_connection_is_reopened_for_the_next_api_call(lab, hyp1):
    client = hyp1.docker()
    before = client.version()["Version"]
    hyp1.c.close()  # the link drops (network blip, sshd restart...)
    assert not hyp1.c.is_connected
    assert client.version()["Version"] == before
    assert hyp1.c.is_connected


def test_a_stopped_daemon_is_docker_unavailable_without_touching_its_socket(lab):
    """No dockerd process: refused from /proc before any connection to the socket (which systemd's
    docker.socket would answer by starting Docker)."""
    with lab.extra_host(docker=False) as bare:
        host = inventory.load(str(lab.inventory_path)).get(bare.name)
        hc = open_context(Context(config=AegirConfig(lazy=True)), host)
        try:
            with pytest.raises(DockerUnavailable) as err:
                hc.docker()
        finally:
            hc.close()
    assert str(err.value) == f"{bare.name}: Docker is not running (no dockerd process)"
