"""Commands as data: exact command lines, validated names, secrets kept off argv."""

from __future__ import annotations

import pytest
from invoke import Context

from aegir import sh
from aegir.errors import AegirError, CommandError
from aegir.sh import Cmd


def test_a_command_line_is_its_argv_quoted_by_shlex():
    assert Cmd.of("du", "-s", "/srv/apps/my app").line == "du -s '/srv/apps/my app'"


def test_environment_and_sudo_become_argv_prefixes():
    cmd = Cmd(("df", "/"), env={"LC_ALL": "C", "A": "1"}, sudo=True)
    assert cmd.line == "sudo -n -- env A=1 LC_ALL=C df /"


def test_a_shell_script_takes_its_data_as_positional_arguments():
    cmd = sh.shell('cd "$1" && ls', "/srv/x; rm -rf /")
    assert cmd.line == "sh -c 'cd \"$1\" && ls' sh '/srv/x; rm -rf /'"


def test_stdin_never_shows_in_the_line_or_the_repr():
    cmd = Cmd.of("cryptsetup", "luksOpen", "--key-file=-", "/dev/md2", "data", stdin="s3cret")
    assert "s3cret" not in cmd.line and "s3cret" not in repr(cmd)


@pytest.mark.parametrize("name", ["mastodon", "front", "a.b-c_d", "x" * 63])
def test_safe_names_pass(name):
    assert sh.check_name("app", name) == name


@pytest.mark.parametrize("name", ["", ".", "..", "-rf", "a/b", "a b", "$(reboot)", "x" * 64, "é", "app\n"])
def test_unsafe_names_are_refused_with_the_rule(name):
    with pytest.raises(AegirError, match="invalid app name"):
        sh.check_name("app", name)


def test_an_empty_argv_is_a_bug_not_a_command():
    with pytest.raises(TypeError):
        Cmd(())


def test_run_sends_stdin_and_returns_output():
    result = sh.run(Context(), Cmd.of("sh", "-c", "read x; echo got:$x", stdin="hello\n"), host="local")
    assert result.stdout == "got:hello\n"


def test_a_failing_command_names_host_command_exit_code_and_stderr_tail_with_secrets_masked():
    script = "for i in 1 2 3 4 5 6 7; do echo line$i >&2; done; read pw; echo \"bad $pw\" >&2; exit 3"
    with pytest.raises(CommandError) as err:
        sh.run(Context(), Cmd(("sh", "-c", script), stdin="hunter2\n"), host="hyp9")
    msg = str(err.value)
    assert msg.startswith("hyp9: `sh -c ")
    assert "exited 3" in msg
    assert "line1" not in msg and "line4" in msg  # the last 5 lines only
    assert "bad ****" in msg and "hunter2" not in msg
    assert err.value.exited == 3


def test_a_command_that_does_not_read_stdin_does_not_hang():
    assert sh.run(Context(), Cmd.of("cat"), host="local").stdout == ""


def test_a_command_without_stdin_reads_dev_null_and_runs_no_stdin_thread(monkeypatch):
    """No EOF is ever sent on its own for it (paramiko's EOF-after-CLOSE race drops the SSH connection)."""
    from invoke.runners import Result

    seen = []

    def fake_run(self, line, **kw):
        seen.append((line, kw["in_stream"]))
        return Result(stdout="", exited=0)

    monkeypatch.setattr(Context, "run", fake_run)
    sh.run(Context(), Cmd.of("du", "-s", "/srv data"), host="local")
    assert seen == [("exec du -s '/srv data' </dev/null", False)]


def test_a_timeout_is_a_command_error_that_names_the_deadline():
    with pytest.raises(CommandError, match=r"^local: `sleep 5` did not finish within its deadline of 0.5 s$"):
        sh.run(Context(), Cmd(("sleep", "5"), timeout=0.5), host="local")


def test_a_batch_runs_every_probe_in_one_round_trip_and_gives_each_its_own_answer():
    probes = [Cmd.of("printf", "a\nb"), sh.shell("echo out; echo err >&2; exit 3"),
              Cmd(("ls", "--", "/nonexistent"), env={"LC_ALL": "C"}), Cmd.of("echo", "$(reboot); it's")]
    cmd = sh.batch(probes)
    assert cmd.argv[-4:] == tuple(p.line for p in probes)  # data as positional arguments, never in the script
    out = sh.split_batch(sh.run(Context(), cmd, host="local").stdout, len(probes))
    assert out[0] == sh.Reply("a\nb", "", 0)
    assert out[1] == sh.Reply("out\n", "err", 3)
    assert out[2].exited == 2 and "No such file or directory" in out[2].stderr and out[2].stdout == ""
    assert out[3] == sh.Reply("$(reboot); it's\n", "", 0)


def test_a_batch_refuses_what_it_cannot_carry_and_an_unreadable_answer_is_an_error():
    with pytest.raises(ValueError):
        sh.batch([Cmd.of("cat", stdin="secret")])
    with pytest.raises(AegirError, match="cannot read the answers of 2 batched commands"):
        sh.split_batch("x\0360\n\036", 2)
