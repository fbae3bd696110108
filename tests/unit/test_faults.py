"""The shared ground of issue 19 without the lab: deadlines, the step journal, Ctrl-C, Docker errors as host
failures, the policy for hosts a plan pass could not reach.

Real parts where they exist on this machine: local commands (``sleep``), a real SIGINT sent to this
process, real HTTP connections of the Docker SDK to a Unix socket whose server hangs up or never answers.
SSH faults (silence, sshd and dockerd killed) are in tests/test_faults.py, in the lab.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from invoke import Context

from aegir import fleet, interrupt
from aegir.action import go_on_without
from aegir.cli import AegirConfig
from aegir.compose.discovery import Project, Service, parse_compose_spec, parse_duration
from aegir.compose.plan import step_deadline
from aegir.docker import DockerError, docker_failure
from aegir.errors import AegirError, ConnectionLost, DeadlineExceeded, Interrupted
from aegir.host import Deadlines, HostContext
from aegir.inventory import Host, parse_serial
from aegir.journal import Journal, StepState, summary
from aegir.sh import Cmd
from aegir.tasks.exits import interrupted_line

LOCAL = Host("local", connection="local")


def local(name: str) -> Host:
    return Host(name, connection="local")


def config(**timeouts: float) -> AegirConfig:
    cfg = AegirConfig(lazy=True)
    for key, value in timeouts.items():
        cfg.timeouts[key] = value
    return cfg


@pytest.fixture(autouse=True)
def fresh_interrupt() -> Iterator[None]:
    """Every test starts and ends with no Ctrl-C pressed, and the SIGINT handler it found."""
    before = signal.getsignal(signal.SIGINT)
    interrupt.RUN.reset()
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)
        interrupt.RUN.reset()


def ctrl_c_after(seconds: float, times: int = 1) -> threading.Thread:
    """A real SIGINT to this process after `seconds` (`times` of them, 0.1 s apart), from a thread."""
    interrupt.install()

    def send() -> None:
        time.sleep(seconds)
        for _ in range(times):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.1)

    t = threading.Thread(target=send, daemon=True)
    t.start()
    return t


# --------------------------------------------------------------------------- settings


def test_deadlines_come_from_the_config_and_default_for_what_it_leaves_out():
    assert Deadlines.of(config()) == Deadlines(connect=10, command=600, compose=300, docker=60, silent=15,
                                               keepalive=5, interrupt=3)
    assert Deadlines.of(config(silent=3, interrupt=0.5)).silent == 3 == Deadlines.of({"timeouts": {"silent": "3"}}).silent
    assert Deadlines.of(Context().config).command == 600  # Invoke's own timeouts.command (None) leaves ours
    with pytest.raises(AegirError, match="^timeouts.docker must be a number of seconds, not 'soon'$"):
        Deadlines.of({"timeouts": {"docker": "soon"}})


def test_the_programs_flags_set_the_deadlines():
    """-t (connect) and -T (command) both reach the config (before, -t dropped -T's value); the parse stops
    before any task runs."""
    import dataclasses

    from aegir import report
    from aegir.cli import make_program

    shown = dataclasses.replace(report.display)  # update_config sets how tables are shown: put it back after
    program = make_program()
    program.argv = None
    try:
        program.create_config()
        program.parse_core(["inv", "-t", "3", "-T", "7", "disk.report"])
        program.parse_collection()
        program.parse_tasks()
        program.parse_cleanup()
        program.update_config()
    finally:
        for f in dataclasses.fields(shown):
            setattr(report.display, f.name, getattr(shown, f.name))
    assert Deadlines.of(program.config) == Deadlines(connect=3, command=7)


def test_a_compose_step_may_take_its_services_stop_grace_periods():
    spec = parse_compose_spec("services:\n  web:\n    image: x\n    stop_grace_period: 1m30s\n"
                              "  worker:\n    image: x\n    scale: 2\n    stop_grace_period: 500ms\n  db:\n    image: x\n")
    assert [(s.name, s.stop_grace) for s in spec.services] == [("web", 90.0), ("worker", 0.5), ("db", 10.0)]
    p = Project("apps", "a", "/srv/apps/a", "docker-compose.yml", services=spec.services)
    assert step_deadline(p, "down", 300) == 300 + 90 + 2 * 0.5 + 10 + 10  # + the check's 10 s
    assert step_deadline(p, "pull", 300) == 1800
    assert step_deadline(p, "update", 300) == 1800 + 300 + 101 + 10
    assert [parse_duration(v) for v in ("10s", "1h2m", "1.5s", 20, "", "10 s", True, "-1s")] == [
        10.0, 3720.0, 1.5, 20.0, None, None, None, None]
    assert Service("x").stop_grace == 10.0


# --------------------------------------------------------------------------- the journal and steps


def test_the_journal_says_what_was_done_running_and_not_started():
    j = Journal()
    j.expect([("up", "apps/a"), ("up", "apps/b"), ("up", "apps/c")])
    j.end(j.start("up", "apps/a"))
    j.running_command(j.start("up", "apps/b", 30), "docker compose up -d")
    steps = j.records()
    assert [(s.label, s.state) for s in steps] == [("up apps/a", StepState.DONE), ("up apps/b", StepState.RUNNING),
                                                   ("up apps/c", StepState.PENDING)]
    assert steps[1].command == "docker compose up -d" and steps[1].deadline == 30
    assert re.fullmatch(r"done: up apps/a; running: up apps/b \(\d s\); not started: up apps/c", summary(steps))
    j.end(1, "no answer", cut=True)
    assert j.records()[1].cut and j.records()[1].error == "no answer"


def test_a_step_gives_its_commands_what_is_left_of_its_deadline():
    hc = HostContext(LOCAL, Context())
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded) as err, hc.step("wait", what="apps/a", deadline=0.5):
        hc.run(Cmd.of("sleep", "5"))
    assert time.monotonic() - started < 2
    assert err.value.message == "`sleep 5` for apps/a did not finish within its deadline of 0.5 s"
    [step] = hc.journal.records()
    assert (step.state, step.command, step.cut) == (StepState.FAILED, "sleep 5", True)
    assert step.error == err.value.message


def test_a_command_outside_any_step_has_the_default_deadline():
    hc = HostContext(LOCAL, Context(config=config(command=0.3)))
    with pytest.raises(DeadlineExceeded, match=r"`sleep 5` did not finish within its deadline of 0.3 s$"):
        hc.run(Cmd.of("sleep", "5"))
    assert hc.run(Cmd.of("sleep", "0.1")).exited == 0


def test_no_step_starts_after_ctrl_c():
    hc = HostContext(LOCAL, Context())
    interrupt.RUN.interrupt()
    with pytest.raises(Interrupted, match=r"^local: not started: interrupted \(Ctrl-C\)$"), hc.step("up", what="apps/a"):
        raise AssertionError("the step ran")
    assert hc.journal.interrupted and not hc.journal


# --------------------------------------------------------------------------- Docker errors are host failures


def _server(tmp_path, answer: bool) -> str:
    """A Unix socket whose server reads a request and hangs up (`answer` False: keeps it open, silent)."""
    path = str(tmp_path / "docker.sock")
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(8)
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            conn.recv(65536)
            if answer:
                conn.close()
            else:
                held.append(conn)

    threading.Thread(target=serve, daemon=True).start()
    return f"unix://{path}"


def test_a_daemon_that_hangs_up_mid_step_fails_the_step_with_the_cause_not_a_bug(tmp_path):
    import docker

    api = docker.APIClient(base_url=_server(tmp_path, answer=True), version="1.41", timeout=5)
    hc = HostContext(LOCAL, Context())
    with pytest.raises(DockerError) as err, hc.step("restart", what="apps/a"):
        api.containers()
    assert re.fullmatch(r"Docker (stopped answering|API call failed) during restart apps/a:? \(?the connection to "
                        r"the daemon broke: RemoteDisconnected: Remote end closed connection without response\)?"
                        r"(: no dockerd process runs any more)?", err.value.message), err.value.message
    assert hc.journal.records()[0].cut


def test_a_daemon_that_never_answers_is_no_answer_within_the_api_deadline(tmp_path):
    import docker

    api = docker.APIClient(base_url=_server(tmp_path, answer=False), version="1.41", timeout=0.5)
    with pytest.raises(Exception) as err:
        api.containers()
    assert docker_failure(err.value) == "no answer from the daemon within 0.5 s"
    assert docker_failure(ValueError("x")) is None  # not the SDK's: a bug, with its traceback


def test_a_docker_error_under_a_host_is_a_failed_row_not_an_internal_error(tmp_path, capsys):
    import docker

    url = _server(tmp_path, answer=True)
    [out] = fleet.each(Context(config=config()), [local("h")], lambda hc: docker.APIClient(
        base_url=url, version="1.41", timeout=5).containers())
    assert out.kind == "failed" and "the connection to the daemon broke: RemoteDisconnected" in (out.error or "")
    assert "Traceback" not in capsys.readouterr().err


# --------------------------------------------------------------------------- the fleet: reached, then lost


def test_a_host_lost_after_it_was_reached_is_failed_with_its_steps_never_unreachable():
    def fn(hc: HostContext) -> None:
        hc.journal.expect([("up", "apps/a"), ("up", "apps/b")])
        with hc.step("up", what="apps/a"):
            pass
        with hc.step("up", what="apps/b"):
            raise ConnectionLost("no answer for 15 s while running `x` for apps/b: the connection is lost",
                                 host=hc.name)

    [out] = fleet.each(Context(config=config()), [local("h")], fn)
    assert out.kind == "failed"
    assert out.error == ("no answer for 15 s while running `x` for apps/b: the connection is lost "
                         "(done: up apps/a; failed: up apps/b)")
    assert out.unsure and not out.half_done


# --------------------------------------------------------------------------- Ctrl-C in a fleet run


def _three_steps(hc: HostContext) -> str:
    for i in range(3):
        with hc.step("s", what=f"{hc.name}/{i}", deadline=10):
            hc.run(Cmd.of("sleep", "0.4"))
    return "all done"


def test_the_first_ctrl_c_starts_no_new_host_or_step_and_lets_the_running_one_finish():
    ctrl_c_after(0.6)
    outs = fleet.each(Context(config=config()), [local("h0"), local("h1"), local("h2")], _three_steps, limit=1)
    assert [o.kind for o in outs] == ["interrupted", "skipped", "skipped"]
    assert outs[0].error == "not started: interrupted (Ctrl-C) (done: s h0/0, s h0/1)"
    assert [s.state for s in outs[0].steps] == [StepState.DONE, StepState.DONE]
    assert outs[1].error == "not started: interrupted (Ctrl-C)"
    assert interrupted_line(outs, "inv apps.status").splitlines()[0] == (
        "aegir: interrupted (Ctrl-C): interrupted on h0; not started: h1, h2")


def test_running_steps_are_abandoned_when_the_grace_runs_out_and_said_to_be_maybe_half_done():
    def long(hc: HostContext) -> None:
        with hc.step("up", what="apps/a", deadline=30):
            hc.run(Cmd.of("sleep", "3"))

    ctrl_c_after(0.3)
    started = time.monotonic()
    [out] = fleet.each(Context(config=config(interrupt=0.4)), [local("h0")], long)
    assert time.monotonic() - started < 1.5
    assert out.kind == "interrupted" and out.half_done
    assert re.fullmatch(r"abandoned \(Ctrl-C\) while running `sleep 3` for apps/a \(\d s in\): it may be half-done",
                        out.error or ""), out.error
    assert interrupt.RUN.abandoned
    assert "may be half-done: h0" in interrupted_line([out])


def test_a_second_ctrl_c_abandons_at_once():
    def long(hc: HostContext) -> None:
        with hc.step("up", what="apps/a", deadline=30):
            hc.run(Cmd.of("sleep", "3"))

    ctrl_c_after(0.3, times=2)
    started = time.monotonic()
    [out] = fleet.each(Context(config=config(interrupt=60)), [local("h0")], long)
    assert time.monotonic() - started < 1.2 and out.half_done and interrupt.RUN.count == 2


def test_ctrl_c_outside_a_fleet_run_raises_keyboard_interrupt_as_python_does():
    interrupt.install()
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)
    assert interrupt.RUN.count == 1  # the program exits 130 all the same


# --------------------------------------------------------------------------- hosts a plan pass could not reach


def test_an_unreachable_canary_stops_the_roll():
    seen: list[str] = []
    dead = fleet.Outcome(local("a"), error="cannot connect to root@a:22: Connection refused", kind="unreachable")
    outs = fleet.each(Context(config=config()), [local(n) for n in "abc"], lambda hc: seen.append(hc.name),
                      rolling=parse_serial("1"), settled={"a": dead})
    assert seen == []
    assert [(o.host.name, o.kind) for o in outs] == [("a", "unreachable"), ("b", "skipped"), ("c", "skipped")]
    assert outs[1].error == "not attempted: a failed and the canary batch stops there"


def test_an_action_whose_canary_could_not_be_planned_stops_its_roll(capsys):
    """`aegir.action.run` (fw.apply, update.apply, ...): before, a host whose plan failed was left out of the
    roll's batches, so the next host became the canary."""
    from aegir import action

    acted: list[str] = []

    class Touch(action.Action[str, str]):
        label = "x.touch"

        def plan(self, hc: HostContext) -> str:
            if hc.name == "a":
                raise AegirError("cannot read /srv", host=hc.name)
            return "touch"

        def act(self, hc: HostContext, plan: str) -> str:
            acted.append(hc.name)
            return "touched"

    ran = action.run(Context(config=config()), Touch(), [local(n) for n in "abc"], dry=False,
                     rolling=parse_serial("1"))
    assert acted == []
    assert [(o.host.name, o.kind) for o in ran.outcomes] == [("a", "failed"), ("b", "skipped"), ("c", "skipped")]
    assert ran.outcomes[1].error == "not attempted: a failed and the canary batch stops there"
    assert "aegir: left out: a (failed); the roll counts it as a failed host (--all-or-nothing: act on none)\n" in (
        capsys.readouterr().err)
    ran = action.run(Context(config=config()), Touch(), [local(n) for n in "abc"], dry=False)
    assert acted == ["b", "c"] and [o.kind for o in ran.outcomes] == ["failed", "ok", "ok"]


def test_an_action_goes_on_without_hosts_it_could_not_plan_or_under_all_or_nothing_acts_on_none(capsys):
    plans = [fleet.Outcome(local("a"), error="cannot connect", kind="unreachable"), fleet.Outcome(local("b"), 1),
             fleet.Outcome(local("c"), 1)]
    assert go_on_without(plans, [local("b"), local("c")]) == {}
    assert capsys.readouterr().err == "aegir: left out: a (unreachable); going on with b, c (--all-or-nothing: act on none)\n"
    go_on_without(plans, [local("b")], roll=parse_serial("1"))
    assert "the roll counts it as a failed host" in capsys.readouterr().err
    settled = go_on_without(plans, [local("b"), local("c")], all_or_nothing=True)
    assert {n: (o.kind, o.error) for n, o in settled.items()} == {
        n: ("skipped", "not attempted: --all-or-nothing and a could not be planned") for n in "bc"}
    assert capsys.readouterr().err == "aegir: --all-or-nothing: a (unreachable) could not be planned, so nothing is done on b, c\n"
