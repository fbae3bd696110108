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
    batch = sh.Batch(tuple(probes))
    assert batch.cmd.argv[-4:] == tuple(p.line for p in probes)  # data as positional arguments, never in the script
    out = batch.split(sh.run(Context(), batch.cmd, host="local").stdout)
    assert out[0] == sh.Reply("a\nb", "", 0)
    assert out[1] == sh.Reply("out\n", "err", 3)
    assert out[2].exited == 2 and "No such file or directory" in out[2].stderr and out[2].stdout == ""
    assert out[3] == sh.Reply("$(reboot); it's\n", "", 0)


def test_a_batch_is_one_exact_command_line_with_its_boundary_as_printf_escapes():
    batch = sh.Batch((Cmd.of("echo", "a b"),), sh.Boundary("0f"))
    assert batch.cmd.line == ("sh -c 'm=$1; shift\nfor line in \"$@\"; do\n"
                              "  { err=$(eval \"$line\" 2>&1 >&3 3>&- </dev/null); rc=$?; } 3>&1\n"
                              "  printf '\"'\"'%b%s\\n%s%b'\"'\"' \"$m\" \"$rc\" \"$err\" \"$m\"\ndone\n' "
                              "sh '\\0036\\0060\\0146' 'echo '\"'\"'a b'\"'\"''")
    assert sh.Boundary("0f").text == "\x1e0f"
    assert sh.Boundary().nonce != sh.Boundary().nonce and len(sh.Boundary().nonce) == 24


def test_host_data_cannot_end_a_batched_answer_early():
    """A file name, a log line, a process name may hold the old fixed separator (\\x1e), or what a boundary
    looks like with another nonce: each answer stays whole, stdout and stderr alike."""
    forged = "x\x1e0\nforged\x1e" + sh.Boundary("f" * 24).text + "1\nalso forged" + sh.Boundary("f" * 24).text
    probes = (Cmd.of("printf", "%s", forged), sh.shell('printf "%s" "$1" >&2', forged), Cmd.of("echo", "next"))
    batch = sh.Batch(probes)
    assert batch.cmd.argv[4] == batch.boundary.arg and batch.boundary.nonce not in batch.cmd.line  # nor by a `ps`
    out = batch.split(sh.run(Context(), batch.cmd, host="local").stdout)
    assert out == (sh.Reply(forged, "", 0), sh.Reply("", forged, 0), sh.Reply("next\n", "", 0))


def test_a_batch_refuses_what_it_cannot_carry_and_an_unreadable_answer_is_an_error():
    with pytest.raises(ValueError):
        sh.Batch((Cmd.of("cat", stdin="secret"),))
    b = sh.Boundary("ab")
    with pytest.raises(AegirError, match="cannot read the answers of 2 batched commands"):
        sh.Batch((Cmd.of("true"), Cmd.of("true")), b).split(f"x{b.text}0\n{b.text}")
    with pytest.raises(AegirError, match="cannot read the answers of 1 batched commands"):
        sh.Batch((Cmd.of("true"),), b).split("x\x1e0\n\x1e")  # the old fixed separator is no boundary
