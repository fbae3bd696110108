"""Fleet fan-out: every host gets a result, failures become rows, parallelism is bounded.

Real SSH behaviour (host keys, a stopped sshd) is tested in the lab: tests/test_disk.py.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
from invoke import Context

from aegir import fleet
from aegir.cli import AegirConfig
from aegir.errors import AegirError
from aegir.host import HostContext
from aegir.inventory import Host, parse_serial
from aegir.report import failed_line
from aegir.sh import Cmd


@pytest.fixture
def c() -> Context:
    return Context(config=AegirConfig(lazy=True))


def local(name: str) -> Host:
    return Host(name, connection="local")


def test_every_host_gets_an_outcome_in_order_and_one_failure_does_not_stop_the_others(c):
    def fn(hc: HostContext) -> str:
        if hc.name == "b":
            hc.run(Cmd.of("sh", "-c", "echo no space left >&2; exit 4"))
        return hc.run(Cmd.of("echo", hc.name)).stdout.strip()

    outs = fleet.each(c, [local("a"), local("b"), local("c")], fn)
    assert [(o.host.name, o.kind, o.value) for o in outs] == [("a", "ok", "a"), ("b", "failed", None), ("c", "ok", "c")]
    assert outs[1].error == "`sh -c 'echo no space left >&2; exit 4'` exited 4\n  | no space left"
    assert [o.host.name for o in fleet.failed(outs)] == ["b"]


def test_parallelism_is_bounded(c):
    running, peak, lock = [0], [0], threading.Lock()

    def fn(hc: HostContext) -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.2)
        with lock:
            running[0] -= 1

    fleet.each(c, [local(f"h{i}") for i in range(6)], fn, limit=2)
    assert peak[0] == 2
    peak[0] = 0
    fleet.each(c, [local(f"h{i}") for i in range(6)], fn)
    assert peak[0] == 6  # default bound (32) lets all six run at once


def test_a_bug_in_one_host_keeps_the_others_and_shows_its_traceback(c, capsys):
    def fn(hc: HostContext) -> int:
        return 1 // (hc.name != "boom")

    outs = fleet.each(c, [local("ok"), local("boom")], fn)
    assert [o.kind for o in outs] == ["ok", "bug"]
    assert outs[1].error == "internal error ZeroDivisionError: integer division or modulo by zero"
    assert "Traceback" in capsys.readouterr().err


def test_an_aegir_error_is_a_failed_row_with_its_message(c):
    def fn(hc: HostContext) -> None:
        raise AegirError("refusing: /srv is not mounted", host=hc.name)

    [out] = fleet.each(c, [local("x")], fn)
    assert (out.kind, out.error, failed_line(out)) == ("failed", "refusing: /srv is not mounted",
                                                       "x: FAILED: refusing: /srv is not mounted")


def test_a_host_whose_ssh_port_is_closed_is_unreachable_with_the_reason(c):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    host = Host("dead", address="127.0.0.1", port=port, user="root")
    [out] = fleet.each(c, [host], lambda hc: "never")
    assert out.kind == "unreachable"
    assert out.error == f"cannot connect to root@127.0.0.1:{port}: Connection refused"


def _rolled(c, names: str, fail: set[str], rolling, seen: list[str] | None = None):
    def fn(hc: HostContext) -> str:
        if seen is not None:
            seen.append(hc.name)
        if hc.name in fail:
            raise AegirError("apt-get upgrade exited 100", host=hc.name)
        return hc.name

    outs = fleet.each(c, [local(n) for n in names.split(",")], fn, rolling=rolling)
    return [(o.host.name, o.kind) for o in outs], outs


def test_a_roll_stops_at_the_first_failed_host_and_says_the_rest_were_not_attempted(c):
    seen: list[str] = []
    kinds, outs = _rolled(c, "a,b,c,d", {"b"}, parse_serial("1"), seen)
    assert seen == ["a", "b"]  # one at a time, in inventory order, nothing after b
    assert kinds == [("a", "ok"), ("b", "failed"), ("c", "skipped"), ("d", "skipped")]
    assert failed_line(outs[2]) == ("c: SKIPPED: not attempted: b failed and --serial 1 stops there; "
                                    "--keep-going goes on past a failed host")
    assert [o.host.name for o in fleet.failed(outs)] == ["b", "c", "d"]  # exit 1: not attempted is not done


def test_keep_going_goes_past_a_failed_host_but_never_past_a_failed_canary(c):
    kinds, _ = _rolled(c, "a,b,c", {"b"}, parse_serial("1", keep_going=True))
    assert kinds == [("a", "ok"), ("b", "failed"), ("c", "ok")]
    kinds, outs = _rolled(c, "a,b,c", {"a"}, parse_serial("1", keep_going=True))
    assert kinds == [("a", "failed"), ("b", "skipped"), ("c", "skipped")]
    assert outs[1].error == "not attempted: a failed and the canary batch stops there"


def test_a_percentage_rolls_in_batches_rounded_up_and_each_batch_runs_in_parallel(c):
    batches: list[set[str]] = []
    lock = threading.Lock()
    started = threading.Barrier(2, timeout=5)  # a batch of two must run both hosts at once

    def fn(hc: HostContext) -> None:
        with lock:
            if not batches or len(batches[-1]) == 2:
                batches.append(set())
            batches[-1].add(hc.name)
        if hc.name != "e":
            started.wait()

    outs = fleet.each(c, [local(n) for n in "abcde"], fn, rolling=parse_serial("40%"))
    assert [o.kind for o in outs] == ["ok"] * 5
    assert batches == [{"a", "b"}, {"c", "d"}, {"e"}]


def test_a_value_that_fails_is_a_failed_host_that_keeps_its_value_and_stops_a_roll(c):
    outs = fleet.each(c, [local(n) for n in "abc"], lambda hc: hc.name == "a", rolling=parse_serial("1"),
                      fails=lambda v: None if v else "not a")
    assert [o.kind for o in outs] == ["ok", "failed", "skipped"]
    assert (outs[1].value, outs[1].error) == (False, "not a")
    assert outs[2].error == "not attempted: b failed and --serial 1 stops there; --keep-going goes on past a failed host"
    assert [o.host.name for o in fleet.failed(outs)] == ["b", "c"]



def test_a_streamed_commands_output_reaches_the_terminal_escaped(c, capsys):
    """apps.logs and apps.compose stream a host's output: a control sequence in it is shown, never acted on."""
    def fn(hc: HostContext) -> str:
        return hc.run(Cmd.of("sh", "-c", r"printf 'a\033[2Jb\tc\n'; printf 'e\033]0;title\007\n' >&2"),
                      stream=True).stdout

    [out] = fleet.each(c, [local("x")], fn)
    seen = capsys.readouterr()
    assert (seen.out, seen.err) == ("a\\x1b[2Jb\tc\n", "e\\x1b]0;title\\x07\n")
    assert out.value == "a\x1b[2Jb\tc\n"  # what aegir parses stays the host's own bytes
