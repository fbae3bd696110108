"""Faults mid-run (issue 19): a command ends in bounded time, Ctrl-C stops it cleanly, a host's row says what was
done and what was not, and an unreachable canary stops a roll.

Three lab hosts of their own, real sshd, dockerd and Compose, and real faults injected from outside aegir:
a host gone silent (nftables in its namespace drops every packet but loopback's), sshd stopped and every
session's sshd killed with SIGKILL, dockerd killed with SIGKILL, a real SIGINT sent to the ``inv`` process.

"Mid-run" is made deterministic by apps/slow, whose ``compose up -d`` waits for a healthcheck (its ``app``
starts once ``gate`` is healthy, ``SLOW`` seconds after it started: each host's ``.env`` says how long),
and by watching the host (its containers, its processes) for the moment the step is at before the fault
is injected. Deadlines are short, set as an operator would: ``AEGIR_TIMEOUTS_*`` in the environment.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from aegir.compose.state import LABEL_PROJECT, LABEL_SERVICE, LABEL_WORKING_DIR
from tests.helpers import remove_compose_containers, run_inv, start_inv
from tests.lab import Lab, LabHost
from tests.lab.procs import netns_inode, pids_in_netns

IMAGE = "aegir-lab/busybox:latest"
QUICK = f"services:\n  quick:\n    image: {IMAGE}\n    command: [\"sleep\", \"86400\"]\n    stop_signal: SIGKILL\n"
SLOW = f"""\
services:
  gate:
    image: {IMAGE}
    command: ["sh", "-c", "sleep ${{SLOW:-1}}; touch /tmp/ready; exec sleep 86400"]
    stop_signal: SIGKILL
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ready"]
      interval: 1s
      timeout: 2s
      retries: 600
  app:
    image: {IMAGE}
    command: ["sleep", "86400"]
    stop_signal: SIGKILL
    depends_on:
      gate:
        condition: service_healthy
"""
# Ignores SIGTERM (docker-init passes it to sh only): `compose restart` waits its whole stop_grace_period.
STUBBORN = (f"services:\n  stubborn:\n    image: {IMAGE}\n    command: [\"sh\", \"-c\", \"trap '' TERM; sleep 86400\"]\n"
            "    stop_grace_period: 30s\n")
# Exits at once: after `compose restart` aegir's check waits (up to 10 s) for it to be up, asking Docker.
FLAKY = f"services:\n  flaky:\n    image: {IMAGE}\n    command: [\"sh\", \"-c\", \"exit 3\"]\n"
PROJECTS = {"quick": QUICK, "slow": SLOW, "stubborn": STUBBORN, "flaky": FLAKY}

#: Short deadlines, as an operator sets them: a silent host is lost after 3 s.
FAST = {"AEGIR_TIMEOUTS_SILENT": "3", "AEGIR_TIMEOUTS_KEEPALIVE": "1", "AEGIR_TIMEOUTS_CONNECT": "3"}
NFT_DROP = """\
table inet aegirlabdrop {
  chain drop_in {
    type filter hook input priority -300; policy drop;
    iifname "lo" accept
  }
  chain drop_out {
    type filter hook output priority -300; policy drop;
    oifname "lo" accept
  }
}
"""


# --------------------------------------------------------------------------- the hosts, and faults


@pytest.fixture(scope="module")
def three(lab: Lab, tmp_path_factory) -> Iterator[tuple[LabHost, LabHost, LabHost, Path]]:
    """Three fresh lab hosts with the projects above written (none started), and an inventory of them."""
    with lab.extra_host() as a, lab.extra_host() as b, lab.extra_host() as c:
        inv = lab.write_inventory(tmp_path_factory.mktemp("inv") / "hosts.yml", [a, b, c])
        for host in (a, b, c):
            for name, text in PROJECTS.items():
                host.write(f"apps/{name}/docker-compose.yml", text)
        try:
            yield a, b, c, inv
        finally:
            for host in (a, b, c):
                heal(host)
                remove_compose_containers(host)
                shutil.rmtree(host.root("/srv/apps"), ignore_errors=True)


@pytest.fixture
def hosts(three) -> Iterator[tuple[LabHost, LabHost, LabHost, Path]]:
    """The three hosts, every fault healed and every container gone after each test."""
    try:
        yield three
    finally:
        for host in three[:3]:
            heal(host)
            remove_compose_containers(host)


def slow(host: LabHost, seconds: int) -> None:
    """apps/slow's `compose up -d` on `host` lasts about `seconds` from now on."""
    host.write("apps/slow/.env", f"SLOW={seconds}\n").chmod(0o600)


def host_pids(host: LabHost) -> set[int]:
    inode = netns_inode(f"/proc/{host.pid}/ns/net")
    assert inode is not None
    return pids_in_netns(inode)


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def remote(host: LabHost, *words: str) -> list[int]:
    """The host's processes whose command line holds every one of `words` (aegir's remote commands)."""
    return [p for p in host_pids(host) if all(w in cmdline(p) for w in words)]


def kill(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def wait_for(what: str, check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def containers(host: LabHost, project: str | None = None) -> list[dict]:
    client = host.docker_client()
    try:
        rows = client.api.containers(all=True, filters={"label": LABEL_PROJECT})
    finally:
        client.close()
    return [r for r in rows if project is None or r["Labels"].get(LABEL_WORKING_DIR) == f"/srv/apps/{project}"]


def created(host: LabHost, project: str, service: str) -> bool:
    return any(r["Labels"].get(LABEL_SERVICE) == service for r in containers(host, project))


def drop_packets(host: LabHost) -> None:
    host.run(["nft", "-f", "-"], input=NFT_DROP)


def kill_sshd(host: LabHost) -> None:
    """sshd stopped, and every session it served killed: the host's SSH is gone mid-session."""
    host.stop_sshd()
    kill([p for p in host_pids(host) if comm(p) == "sshd"])


def kill_dockerd(host: LabHost) -> None:
    """The Docker daemon dies: dockerd and its containerd killed (SIGKILL), the containers' shims left; their
    pid files are removed, as after a crash (the next dockerd would not start while the dead are unreaped)."""
    daemons = ("dockerd", "containerd")
    kill([p for p in host_pids(host) if comm(p) in daemons])
    wait_for("dockerd to die", lambda: not any(comm(p) in daemons and state(p) != "Z" for p in host_pids(host)), 10)
    host.paths.docker_pid.unlink(missing_ok=True)
    host.root("/run/docker/containerd/containerd.pid").unlink(missing_ok=True)


def state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat[stat.rindex(")") + 2:].split()[0]


def sshd_listens(host: LabHost) -> bool:
    try:
        pid = int(host.paths.sshd_pid.read_text())
    except (OSError, ValueError):
        return False
    return comm(pid) == "sshd"


def heal(host: LabHost) -> None:
    """Undo every fault: packets flow, sshd listens, dockerd answers; aegir's leftover compose processes end."""
    host.run(["nft", "delete", "table", "inet", "aegirlabdrop"], check=False)
    if not sshd_listens(host):
        host.start_sshd()
    kill(remote(host, "compose"))
    if not host.docker_running():
        host.start_docker()


# --------------------------------------------------------------------------- reading the results


def lines_of(out: str, host: LabHost) -> list[str]:
    return [ln for ln in out.splitlines() if ln.startswith(host.name + " ")]


def row(out: str, host: LabHost, project: str) -> str:
    """The table line of `host` x apps/`project` (exactly one)."""
    found = [ln for ln in lines_of(out, host) if ln.split()[1] == f"apps/{project}"]
    assert len(found) == 1, (project, out)
    return found[0]


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str, str, float]:
    """Wait for `proc`: its exit code, stdout, stderr, and when it ended (time.monotonic())."""
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err, time.monotonic()


def up_with_a_fault(hosts, fault: Callable[[LabHost], None]) -> tuple[int, str, str, float]:
    """``apps.up quick,slow --parallel 1`` on the three hosts; `fault` hits the second one while its
    apps/slow starts (its gate created, its app waiting): exit code, stdout, stderr, seconds after the fault."""
    a, b, c, inv = hosts
    for host, seconds in ((a, 1), (b, 40), (c, 1)):
        slow(host, seconds)
    proc = start_inv("apps.up", "quick,slow", "--parallel", "1", inventory=inv, env=FAST)
    wait_for("apps/slow's gate on the second host", lambda: created(b, "slow", "gate"))
    fault(b)
    hit = time.monotonic()
    code, out, err, ended = finish(proc)
    return code, out, err, ended - hit


# --------------------------------------------------------------------------- a host that goes silent


def test_a_host_that_goes_silent_mid_up_fails_within_its_deadline_and_the_others_are_reported(hosts):
    """apps.up over three hosts; hyp-b's packets are dropped while its `compose up -d` of apps/slow waits:
    the command ends a few seconds after the silence (timeouts.silent = 3 s), every other row is there and
    true, and hyp-b's row says which step got no answer, not "cannot connect"."""
    a, b, c, _ = hosts
    code, out, err, after = up_with_a_fault(hosts, drop_packets)
    assert code == 1, out + err
    assert after < 3 + 1 + 8, f"{after:.1f} s after the silence"
    for host in (a, c):
        assert " done " in row(out, host, "quick") and " done " in row(out, host, "slow"), out
    assert " done " in row(out, b, "quick")
    silent = row(out, b, "slow")
    assert " failed " in silent and "no answer for 3 s while running `docker compose" in silent, out
    assert "up -d` for apps/slow: the connection is lost" in silent
    assert all("cannot connect" not in ln and "UNREACHABLE" not in ln for ln in lines_of(out, b)), out
    assert "Traceback" not in err
    assert f"aegir: {b.name} may be part-way: `inv apps.status` shows where things stand; " in err
    assert err.rstrip().endswith(f"aegir: failed on {b.name}")


def test_a_host_silent_before_the_run_is_unreachable_and_the_others_go_on_with_one_line_saying_so(hosts):
    a, b, c, inv = hosts
    drop_packets(a)
    started = time.monotonic()
    res = run_inv("apps.up", "quick", inventory=inv, env=FAST)
    assert res.returncode == 1, res.stdout + res.stderr
    assert time.monotonic() - started < 3 + 8  # the connect timeout (3 s), not TCP's minutes
    assert f"UNREACHABLE  cannot connect to root@{a.addresses.admin_ipv4}" in lines_of(res.stdout, a)[0]
    assert " done " in row(res.stdout, b, "quick") and " done " in row(res.stdout, c, "quick")
    assert (f"aegir: left out: {a.name} (unreachable); going on with {b.name}, {c.name} "
            "(--all-or-nothing: act on none)") in res.stderr.splitlines()


def test_all_or_nothing_changes_no_host_while_one_cannot_be_reached(hosts):
    a, b, c, inv = hosts
    a.stop_sshd()
    res = run_inv("apps.up", "quick", "--all-or-nothing", "--format", "json", inventory=inv, env=FAST)
    assert res.returncode == 1, res.stdout + res.stderr
    by_host = {h["host"]: h for h in json.loads(res.stdout)["hosts"]}
    assert by_host[a.name]["status"] == "unreachable"
    for host in (b, c):
        assert by_host[host.name]["status"] == "skipped"
        assert by_host[host.name]["error"] == f"not attempted: --all-or-nothing and {a.name} could not be planned"
        assert containers(host, "quick") == []
    assert (f"aegir: --all-or-nothing: {a.name} (unreachable) could not be planned, so nothing is done on "
            f"{b.name}, {c.name}") in res.stderr


# --------------------------------------------------------------------------- an unreachable canary


def test_an_unreachable_canary_stops_the_roll(hosts):
    """--serial 1 with the first host unreachable before the run: it is the canary, it failed, nothing else
    is touched (before: the next two hosts were changed)."""
    a, b, c, inv = hosts
    a.stop_sshd()
    res = run_inv("apps.up", "quick", "--serial", "1", "--format", "json", inventory=inv, env=FAST)
    assert res.returncode == 1, res.stdout + res.stderr
    by_host = {h["host"]: h for h in json.loads(res.stdout)["hosts"]}
    assert by_host[a.name]["status"] == "unreachable"
    for host in (b, c):
        assert by_host[host.name]["status"] == "skipped"
        assert by_host[host.name]["error"] == f"not attempted: {a.name} failed and the canary batch stops there"
        assert containers(host, "quick") == []  # never touched
    assert f"aegir: left out: {a.name} (unreachable); the roll counts it as a failed host" in res.stderr
    assert res.stderr.rstrip().endswith(f"aegir: failed on {a.name}; not attempted: {b.name}, {c.name}")


# --------------------------------------------------------------------------- sshd killed


def test_sshd_killed_mid_up_leaves_a_row_naming_the_step_reached_not_cannot_connect(hosts):
    a, b, c, _ = hosts
    code, out, err, _ = up_with_a_fault(hosts, kill_sshd)
    assert code == 1, out + err
    assert " done " in row(out, b, "quick")
    lost = row(out, b, "slow")
    assert " failed " in lost and "connection lost while running `docker compose" in lost, out
    assert "up -d` for apps/slow: " in lost
    assert all("cannot connect" not in ln and "UNREACHABLE" not in ln for ln in lines_of(out, b)), out
    for host in (a, c):
        assert " done " in row(out, host, "slow")
    assert "Traceback" not in err
    assert err.rstrip().endswith(f"aegir: failed on {b.name}")


# --------------------------------------------------------------------------- dockerd killed


def test_dockerd_killed_while_compose_restarts_is_a_host_row_with_composes_cause(hosts):
    a, b, c, inv = hosts
    up = run_inv("apps.compose", "stubborn", "-H", b.name, "--yes", "--", "up", "-d", inventory=inv)
    assert up.returncode == 0, up.stderr
    proc = start_inv("apps.restart", "stubborn", "-H", b.name, inventory=inv, env=FAST)
    wait_for("compose restart on the host", lambda: bool(remote(b, "compose", "restart")))
    time.sleep(0.5)  # Docker is now waiting for the stop_grace_period
    kill_dockerd(b)
    code, out, err, _ = finish(proc)
    assert code == 1, out + err
    line = row(out, b, "stubborn")
    assert " failed " in line and "exited " in line, out
    assert "Traceback" not in err and "internal error" not in out + err


def test_dockerd_killed_while_aegir_checks_a_restart_is_a_host_row_with_the_cause(hosts):
    """The Docker API call that fails is aegir's own (its check after `compose restart`): before, this was
    ``BUG internal error ConnectionError`` with a traceback through run_step -> containers."""
    a, b, c, inv = hosts
    up = run_inv("apps.compose", "flaky", "-H", b.name, "--yes", "--", "up", "-d", inventory=inv)
    assert up.returncode == 0, up.stderr
    proc = start_inv("apps.restart", "flaky", "-H", b.name, inventory=inv, env=FAST)
    wait_for("compose restart on the host", lambda: bool(remote(b, "compose", "restart")))
    wait_for("compose restart to end", lambda: not remote(b, "compose", "restart"))
    kill_dockerd(b)  # aegir now polls Docker for up to 10 s, waiting for flaky to be up
    code, out, err, _ = finish(proc)
    assert code == 1, out + err
    line = row(out, b, "flaky")
    assert " failed " in line, out
    assert "Docker stopped answering during restart apps/flaky (the connection to the daemon broke: " in line, out
    assert line.rstrip().endswith("no dockerd process runs any more"), out
    assert "Traceback" not in err and "internal error" not in out + err and "BUG" not in out


# --------------------------------------------------------------------------- Ctrl-C


def test_ctrl_c_mid_roll_exits_130_within_5_s_with_each_hosts_state(hosts):
    """apps.up --serial 1 over three hosts, SIGINT while the second one's apps/slow starts: the first is
    done, the second interrupted at that step (its grace, timeouts.interrupt = 3 s, runs out: abandoned,
    may be half-done), the third not started; exit 130, a table, and how to see and finish."""
    a, b, c, inv = hosts
    for host, seconds in ((a, 1), (b, 60), (c, 1)):
        slow(host, seconds)
    proc = start_inv("apps.up", "quick,slow", "--serial", "1", "--parallel", "1", inventory=inv, env=FAST)
    wait_for("apps/slow's gate on the second host", lambda: created(b, "slow", "gate"), timeout=90)
    proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    code, out, err, ended = finish(proc)

    assert code == 130, out + err
    assert ended - sent < 5, f"{ended - sent:.1f} s"
    assert " done " in row(out, a, "quick") and " done " in row(out, a, "slow")
    assert " done " in row(out, b, "quick")
    assert " running " in row(out, b, "slow"), out
    abandoned = [ln for ln in lines_of(out, b) if "INTERRUPTED" in ln]
    assert len(abandoned) == 1 and "abandoned (Ctrl-C) while running `docker compose" in abandoned[0], out
    assert "up -d` for apps/slow" in abandoned[0] and "it may be half-done" in abandoned[0]
    [third] = lines_of(out, c)
    assert "SKIPPED" in third and "not started: interrupted (Ctrl-C)" in third
    assert containers(c) == []
    assert "Traceback" not in err
    assert (f"aegir: interrupted (Ctrl-C): done on {a.name}; interrupted on {b.name}; not started: {c.name}; "
            f"may be half-done: {b.name}") in err.splitlines()
    assert ("aegir: `inv apps.status` shows where things stand; `inv apps.up quick,slow --serial 1 --parallel 1` "
            "again finishes the job") in err.splitlines()


def test_a_second_ctrl_c_abandons_the_running_steps_at_once(hosts):
    a, b, c, inv = hosts
    for host in (a, b, c):
        slow(host, 60)
    proc = start_inv("apps.up", "slow", inventory=inv, env=FAST)
    wait_for("apps/slow's gate everywhere", lambda: all(created(h, "slow", "gate") for h in (a, b, c)), timeout=90)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    code, out, err, ended = finish(proc)
    assert code == 130, out + err
    assert ended - sent < 2, f"{ended - sent:.1f} s"
    for host in (a, b, c):
        assert " running " in row(out, host, "slow"), out
    assert f"may be half-done: {a.name}, {b.name}, {c.name}" in err
    assert "aegir: interrupted again: abandoning the running steps" in err
    assert "Traceback" not in err


def test_ctrl_c_between_steps_lets_the_running_one_finish_and_starts_no_other(hosts):
    """The first Ctrl-C while apps/slow starts (about 4 s) on every host, apps/quick queued after it
    (--parallel 1) and a grace of 12 s: slow finishes everywhere, quick is started nowhere, and the hosts
    are interrupted, not half-done."""
    a, b, c, inv = hosts
    for host in (a, b, c):
        slow(host, 4)
    proc = start_inv("apps.up", "slow,quick", "--parallel", "1", inventory=inv,
                     env={**FAST, "AEGIR_TIMEOUTS_INTERRUPT": "12"})
    wait_for("apps/slow's gate everywhere", lambda: all(created(h, "slow", "gate") for h in (a, b, c)), timeout=90)
    proc.send_signal(signal.SIGINT)
    code, out, err, _ = finish(proc)
    assert code == 130, out + err
    for host in (a, b, c):
        assert " done " in row(out, host, "slow"), out
        skipped = row(out, host, "quick")
        assert " skipped " in skipped and "not started: interrupted (Ctrl-C)" in skipped
        assert containers(host, "quick") == []
    assert (f"aegir: interrupted (Ctrl-C): interrupted on {a.name}, {b.name}, {c.name}") in err.splitlines()
    assert "half-done" not in err and "Traceback" not in err
