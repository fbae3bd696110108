"""disk.prune under faults, in the lab (real sshd and dockerd): a daemon killed mid-prune, a host unreachable.

Each test uses hosts of its own (`lab.extra_host`): a prune removes every unused lab image too.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import run_inv
from tests.lab import Lab, LabHost
from tests.test_faults import kill_sshd

pytestmark = pytest.mark.timeout(600)
BUSYBOX = "aegir-lab/busybox:latest"
LABEL = "aegirtest"


def junk(host: LabHost, n: int, tag: str = "junk") -> set[str]:
    """`n` containers created and never started (stopped: garbage to prune), labelled ``aegirtest=TAG``."""
    client = host.docker_client(timeout=120)
    try:
        return {client.api.create_container(BUSYBOX, ["true"], name=f"{tag}-{i}", labels={LABEL: tag})["Id"]
                for i in range(n)}
    finally:
        client.close()


def left(host: LabHost, tag: str = "junk") -> set[str]:
    client = host.docker_client()
    try:
        return {c["Id"] for c in client.api.containers(all=True, filters={"label": f"{LABEL}={tag}"})}
    finally:
        client.close()


def prune(inventory: Path, *args: str):
    res = run_inv("-t", "3", "disk.prune", "--format", "json", *args, inventory=inventory, timeout=300)
    return res, (json.loads(res.stdout) if res.stdout.strip() else None)


def after_removals(host: LabHost, removals: int, since: int, fault: Callable[[], None]) -> threading.Thread:
    """Run `fault` once `removals` of the junk containers were destroyed: Docker's own events, replayed
    from `since`, so none is missed."""
    client = host.docker_client(timeout=300)

    def watch() -> None:
        seen = 0
        try:
            for _ in client.events(since=since, decode=True,
                                   filters={"type": "container", "event": "destroy", "label": f"{LABEL}=junk"}):
                seen += 1
                if seen >= removals:
                    fault()
                    return
        except Exception:  # the stream ends with the daemon
            return
        finally:
            client.close()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def kill_dockerd_after(host: LabHost, removals: int, since: int) -> threading.Thread:
    """Kill the host's dockerd (SIGKILL, as the OOM killer or a crash would) once `removals` of the junk
    containers were destroyed."""
    pid = int(host.paths.docker_pid.read_text())
    return after_removals(host, removals, since, lambda: os.kill(pid, signal.SIGKILL))


def test_a_daemon_killed_mid_prune_is_a_host_failure_with_its_cause_and_how_far_it_got(lab: Lab,
                                                                                      tmp_path: Path) -> None:
    with lab.extra_host() as host:
        ids = junk(host, 48)
        inventory = lab.write_inventory(tmp_path / "hosts.yml", [host])
        _, dry = prune(inventory, "--dry")
        planned = len(dry["hosts"][0]["remove"])
        assert planned >= 48
        # Removals run one after another: once Docker reports the 4th destroyed, the replies to the first 3
        # reached aegir; the 4th reply may die with the daemon (killing on the 3rd made `done` 2 at times).
        killer = kill_dockerd_after(host, 4, int(time.time()) - 1)
        res, data = prune(inventory, "--yes")
        killer.join(timeout=10)
        assert not host.docker_running(), "the daemon was never killed"
        assert res.returncode == 1, res.stdout + res.stderr
        assert "Traceback" not in res.stderr and "internal error" not in res.stdout + res.stderr
        [row] = data["hosts"]
        assert row["status"] == "failed", row
        assert row["planned"] == planned and row["done"] == len(row["removed"])
        assert row["error"].startswith(f"removed {row['done']} of {planned}; the Docker daemon stopped answering ("), row
        assert 3 <= row["done"] < planned, row
        assert row["freed"] is None and row["after"] is None  # nothing to measure with: not made up
        table = run_inv("disk.prune", "--dry", inventory=inventory).stdout  # the daemon is down: a row, no trace
        assert "Traceback" not in table
        host.start_docker()
        gone = ids - left(host)
        # what the row says was removed was; at most one more went while its answer was lost
        assert {i["id"] for i in row["removed"] if i["kind"] == "container"} <= gone
        assert row["done"] <= len(gone) <= row["done"] + 1 < 48
        res, data = prune(inventory, "--yes")  # the rerun finishes the job
        assert res.returncode == 0, res.stdout + res.stderr
        assert left(host) == set()


def test_sshd_killed_mid_prune_is_a_lost_connection_not_a_dead_daemon(lab: Lab, tmp_path: Path) -> None:
    """The Docker API rides on the SSH connection: when sshd dies mid-prune (every session killed), the row
    says the connection was lost and how far the prune got; the daemon, which runs on, is not blamed (before:
    "the Docker daemon stopped answering (ConnectionError: ... RemoteDisconnected ...)")."""
    with lab.extra_host() as host:
        junk(host, 48)
        inventory = lab.write_inventory(tmp_path / "hosts.yml", [host])
        _, dry = prune(inventory, "--dry")
        planned = len(dry["hosts"][0]["remove"])
        # as above: the 4th destroy event means the first 3 replies came back
        killer = after_removals(host, 4, int(time.time()) - 1, lambda: kill_sshd(host))
        try:
            res, data = prune(inventory, "--yes")
            killer.join(timeout=10)
        finally:
            host.start_sshd()
        assert res.returncode == 1, res.stdout + res.stderr
        assert "Traceback" not in res.stderr and "internal error" not in res.stdout + res.stderr
        [row] = data["hosts"]
        assert row["status"] == "failed", row
        assert row["error"].startswith(f"removed {row['done']} of {planned}; connection lost"), row
        assert "daemon" not in row["error"], row
        assert 3 <= row["done"] < planned, row
        assert host.docker_running()  # it never stopped
        res, data = prune(inventory, "--yes")  # the rerun finishes the job
        assert res.returncode == 0, res.stdout + res.stderr
        assert left(host) == set()


@contextlib.contextmanager
def extra_hosts(lab: Lab, n: int) -> Iterator[list[LabHost]]:
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(lab.extra_host()) for _ in range(n)]


def test_one_host_unreachable_the_others_are_pruned_and_the_line_says_so(lab: Lab, tmp_path: Path) -> None:
    with extra_hosts(lab, 3) as hosts:
        a, b, c = hosts
        planted = {h.name: junk(h, 2) for h in hosts}
        inventory = lab.write_inventory(tmp_path / "hosts.yml", hosts)
        b.stop_sshd()
        try:
            res, data = prune(inventory, "--yes", "--all-or-nothing")
            assert res.returncode == 1, res.stdout + res.stderr
            assert "Traceback" not in res.stderr
            assert data["summary"]["pruned"] is False
            assert (f"aegir: --all-or-nothing: {b.name} (unreachable) could not be planned, so nothing is done on "
                    f"{a.name}, {c.name}") in res.stderr
            assert all(left(h) == planted[h.name] for h in hosts)

            res, data = prune(inventory, "--yes")
        finally:
            b.start_sshd()
        assert res.returncode == 1, res.stdout + res.stderr
        assert "Traceback" not in res.stderr
        assert f"aegir: left out: {b.name} (unreachable); going on with {a.name}, {c.name}" in res.stderr
        assert res.stderr.strip().endswith(f"aegir: failed on {b.name}")
        assert left(a) == left(c) == set()
        assert left(b) == planted[b.name]
        rows = {r["host"]: r for r in data["hosts"]}
        assert list(rows) == [a.name, b.name, c.name]
        assert rows[a.name]["status"] == rows[c.name]["status"] == "ok"
        assert rows[a.name]["done"] == rows[a.name]["planned"] >= 2
        assert rows[b.name]["status"] == "unreachable" and "Connection refused" in rows[b.name]["error"]
        assert data["summary"]["pruned"] is True and data["summary"]["not_pruned"] == [b.name]

        # rolling, an unreachable canary stops the roll: the hosts after it are not attempted
        for h in (a, c):
            h.load_images()  # the prune removed the lab's image, unused
        planted = {h.name: junk(h, 2, "again") for h in (a, c)}
        canary_first = lab.write_inventory(tmp_path / "canary.yml", [b, a, c])
        b.stop_sshd()
        try:
            res, data = prune(canary_first, "--yes", "--serial", "1")
        finally:
            b.start_sshd()
        assert res.returncode == 1, res.stdout + res.stderr
        assert f"aegir: left out: {b.name} (unreachable); the roll counts it as a failed host" in res.stderr
        assert res.stderr.strip().endswith(f"aegir: failed on {b.name}; not attempted: {a.name}, {c.name}")
        assert left(a, "again") == planted[a.name] and left(c, "again") == planted[c.name]
        assert [(r["host"], r["status"]) for r in data["hosts"]] == [(b.name, "unreachable"), (a.name, "skipped"),
                                                                      (c.name, "skipped")]
