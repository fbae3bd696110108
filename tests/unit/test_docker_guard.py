"""The Docker client is never opened on a Unix socket unless a dockerd process runs (read from /proc).

systemd's docker.socket starts Docker at the first connection to its socket:
a report at 3 a.m. on a host whose /srv is not mounted must not be what starts it.
"""

from __future__ import annotations

from typing import Any

import pytest

from aegir import docker as aegir_docker
from aegir.docker import DockerUnavailable, client_for
from aegir.inventory import Host


class Probed:
    """A host context whose only answer is the dockerd probe; anything else is a failure of the test."""

    def __init__(self, host: Host, running: bool) -> None:
        self.host, self.running, self.asked = host, running, 0

    @property
    def name(self) -> str:
        return self.host.name

    def fact(self, fact: Any) -> Any:
        assert fact.name == "docker.dockerd"
        self.asked += 1
        return self.running

    def run(self, *a: Any, **kw: Any) -> Any:
        raise AssertionError("no command but the probe")


def test_no_dockerd_is_refused_before_the_socket_is_touched(monkeypatch):
    monkeypatch.setattr(aegir_docker, "_over_ssh", lambda *a: pytest.fail("connected to Docker's socket"))
    hc = Probed(Host("hyp1", address="192.0.2.1"), running=False)
    with pytest.raises(DockerUnavailable, match=r"^hyp1: Docker is not running \(no dockerd process\)$"):
        client_for(hc)  # type: ignore[arg-type]
    assert hc.asked == 1


def test_a_daemon_elsewhere_than_a_local_socket_is_not_looked_for_in_proc(monkeypatch):
    opened = []
    monkeypatch.setattr(aegir_docker, "_over_ssh", lambda hc, command: opened.append(command) or "client")
    hc = Probed(Host("hyp1", address="192.0.2.1", docker_host="tcp://192.0.2.9:2376"), running=False)
    assert client_for(hc) == "client"  # type: ignore[arg-type]
    assert (hc.asked, opened) == (0, ["docker -H tcp://192.0.2.9:2376 system dial-stdio"])


def test_a_caller_that_batched_the_dockerd_probe_is_not_asked_again(monkeypatch):
    opened = []
    monkeypatch.setattr(aegir_docker, "_over_ssh", lambda hc, command: opened.append(command) or "client")
    hc = Probed(Host("hyp1", address="192.0.2.1"), running=False)
    assert client_for(hc, running=True) == "client"  # type: ignore[arg-type]
    assert (hc.asked, opened) == (0, ["docker system dial-stdio"])
    with pytest.raises(DockerUnavailable, match="no dockerd process"):
        client_for(hc, running=False)  # type: ignore[arg-type]
    assert (hc.asked, opened) == (0, ["docker system dial-stdio"])


def test_why_the_daemon_does_not_answer_is_the_clis_last_line_asked_afresh():
    from aegir.docker import why_fact
    from aegir.sh import Reply

    fact = why_fact("ssh://root@hyp2")
    assert fact.cmd.line == "docker -H ssh://root@hyp2 version --format '{{.Server.Version}}'"
    assert (fact.answers, fact.cache) == (None, False)
    stderr = "Client: ...\nCannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?\n"
    assert fact.parse(Reply("", stderr, 1)) == ("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
                                                "Is the docker daemon running?")
    assert fact.parse(Reply("27.5.1\n", "", 0)) == ""
