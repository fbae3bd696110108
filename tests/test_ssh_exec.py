"""A remote command as `aegir.sh.run` runs it over SSH: one session, both outputs read as they come, in the
calling thread (no Invoke runner threads), against real sshd hosts of the cheap lab (tests/lab/sshonly.py:
sshd and a shell, no dockerd; it needs root, not the machine's lab lock).

Also the per-run costs that grew with the fleet: the known_hosts file and the ssh_config files read once.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator

import pytest
from invoke import Context

from aegir.cli import AegirConfig
from aegir.errors import CommandError, DeadlineExceeded
from aegir.host import HostContext, open_context
from aegir.inventory import load
from aegir.sh import Cmd, shell
from tests.helpers import run_inv
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
