"""A remote command as `aegir.sh.run` runs it over SSH: one session, both outputs read as they come, in the
calling thread (no Invoke runner threads), against real sshd hosts of the cheap lab (tests/lab/sshonly.py:
sshd and a shell, no dockerd; it needs root, not the machine's lab lock).

Also the per-run costs that grew with the fleet: the known_hosts file and the ssh_config files read once.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest
from invoke import Context

from aegir.cli import AegirConfig
from aegir.errors import CommandError, DeadlineExceeded
from aegir.fleet import WORKER_GRACE
from aegir.host import HostContext, open_context
from aegir.inventory import load
from aegir.sh import Cmd, shell
from tests.helpers import read_table, run_inv, start_inv
from tests.lab.sshonly import SshOnlyLab

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the cheap lab needs root")


@pytest.fixture(scope="module")
def cheap() -> Iterator[SshOnlyLab]:
    with SshOnlyLab.start(3) as lab:
        yield lab


@pytest.fixture
def hc(cheap: SshOnlyLab) -> Iterator[HostContext]:
    host = load(str(cheap.inventory_path)).get("c1")
    ctx = open_context(Context(config=AegirConfig(lazy=True)), host)
    try:
        yield ctx
    finally:
        ctx.close()


def test_both_outputs_beyond_the_channel_window_come_back_whole_in_any_order(hc):
    """3 MB on stderr before any stdout, then 3 MB on stdout: a reader of stdout alone would wait
    forever once stderr filled the SSH window (2 MB)."""
    script = "head -c 3000000 /dev/zero | tr '\\0' e >&2; head -c 3000000 /dev/zero | tr '\\0' o; echo; exit 3"
    started = time.monotonic()
    r = hc.run(shell(script), check=False)
    assert (r.exited, len(r.stdout), len(r.stderr)) == (3, 3000001, 3000000)
    assert set(r.stdout.strip()) == {"o"} and set(r.stderr) == {"e"}
    assert time.monotonic() - started < 10


def test_stdin_arrives_whole_and_a_failure_names_the_command_and_its_stderr(hc):
    assert hc.run(Cmd.of("wc", "-c", stdin="x" * 200_000)).stdout.split() == ["200000"]
    with pytest.raises(CommandError, match=r"^c1: `sh -c .*` exited 7\n  \| nope$"):
        hc.run(shell("echo nope >&2; exit 7"))


def test_past_its_deadline_a_command_is_cut_and_says_so_and_the_connection_serves_on(hc):
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        hc.run(Cmd.of("sleep", "30", timeout=0.5))
    assert time.monotonic() - started < 3
    assert hc.run(Cmd.of("echo", "still here")).stdout == "still here\n"


def test_a_command_that_never_reads_its_stdin_is_cut_at_its_deadline_too(hc):
    """8 MB of stdin is beyond the SSH window: sending it waits on the host, and that wait has the deadline."""
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        hc.run(Cmd.of("sleep", "30", stdin="x" * 8_000_000, timeout=1))
    assert time.monotonic() - started < 5
    assert hc.run(Cmd.of("echo", "still here")).stdout == "still here\n"


def test_a_captured_command_starts_no_thread(hc):
    """Invoke's runner started three per command (stdout, stderr, stdin), a fleet's main CPU cost."""
    hc.run(Cmd.of("true"))
    seen: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.append(threading.active_count())
            time.sleep(0.001)

    before = threading.active_count()
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for _ in range(5):
            hc.run(shell("sleep 0.05; echo out; echo err >&2"))
    finally:
        stop.set()
        watcher.join()
    assert max(seen) == before + 1  # the watcher itself


def test_disk_report_reads_every_cheap_host(cheap):
    res = run_inv("-H", "cheap", "disk.report", "--format", "json", inventory=cheap.inventory_path)
    assert res.returncode == 0, res.stderr
    hosts = json.loads(res.stdout)["hosts"]
    assert sorted(h["host"] for h in hosts) == ["c1", "c2", "c3"]
    assert all(h["status"] == "ok" for h in hosts), hosts


# --------------------------------------------------------------------------- worker processes (aegir.fleet)

#: Two worker processes for any fleet of more than one host (the default engages them past 250 hosts).
PROCESSES = {"AEGIR_AEGIR_PROCESSES": "2", "AEGIR_AEGIR_PROCESS_HOSTS": "1"}


def test_worker_processes_read_the_fleet_as_the_threads_do_in_inventory_order(cheap):
    args = ("-H", "cheap", "disk.report", "--format", "json")
    threads = run_inv(*args, inventory=cheap.inventory_path)
    workers = run_inv(*args, inventory=cheap.inventory_path, env=PROCESSES)
    assert (threads.returncode, workers.returncode) == (0, 0), workers.stderr

    def rows(res):
        return [(h["host"], h["status"], h["error"], h["root"]["size"]) for h in json.loads(res.stdout)["hosts"]]

    assert rows(workers) == rows(threads)
    assert [r[0] for r in rows(workers)] == ["c1", "c2", "c3"]
    assert "Traceback" not in workers.stderr


@pytest.fixture(scope="module")
def stuck() -> Iterator[SshOnlyLab]:
    """Three cheap hosts; every command on c2 sleeps 30 s instead (a host that never answers)."""
    with SshOnlyLab.start(3, force={"c2": "sleep 30"}) as lab:
        yield lab


def test_ctrl_c_reaches_every_worker_once_and_the_run_ends_after_the_grace_with_each_hosts_row(stuck):
    """One SIGINT to the program alone (as `kill -INT`; a terminal sends it to every process of the
    group, which the workers ignore): c1 and c3 answered, c2 (its worker's other host) is abandoned
    after the 1 s grace, in one table, with one line saying what Ctrl-C does, exit 130."""
    proc = start_inv("-H", "cheap", "disk.report", inventory=stuck.inventory_path,
                     env={**PROCESSES, "AEGIR_TIMEOUTS_INTERRUPT": "1"})
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    out, err = proc.communicate(timeout=30)
    ended = time.monotonic()
    assert proc.returncode == 130, out + err
    assert ended - sent < 1 + WORKER_GRACE + 1.5, f"{ended - sent:.1f} s"
    assert err.count("aegir: interrupted: no new host or step starts") == 1, err
    rows = {r["HOST"]: r for r in read_table(out)}
    assert sorted(rows) == ["c1", "c2", "c3"], out
    assert rows["c2"]["STATUS"].startswith("INTERRUPTED: abandoned (Ctrl-C)"), out
    # c1 shares c2's worker: its row comes back only because that worker was told to abandon c2 and answer
    assert "abandoned" not in rows["c1"]["STATUS"] and "abandoned" not in rows["c3"]["STATUS"], out
    assert "Traceback" not in err
