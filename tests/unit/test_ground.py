"""The shared ground every area uses: facts (asked once, in one round trip), yamldoc, poll, report helpers."""

from __future__ import annotations

import time

import pytest
from invoke import Context

from aegir.errors import AegirError, CommandError
from aegir.facts import Fact
from aegir.fleet import Outcome
from aegir.host import HostContext
from aegir.inventory import Host
from aegir.poll import until
from aegir.report import Result, age, failed_row, host_entry
from aegir.sh import Cmd, shell
from aegir.yamldoc import MAX_NODES, YamlError, load

LOCAL = Host("local", connection="local")


def counting(tmp_path, name: str, exit_code: int = 0) -> Fact[int]:
    """A fact whose command appends a line to a file each time it runs, and answers how many lines there are."""
    log = tmp_path / f"{name}.log"
    cmd = shell('echo x >> "$1"; wc -l < "$1"; exit "$2"', str(log), str(exit_code))
    return Fact(name, cmd, lambda r: int(r.stdout), answers=(0,))


def test_facts_are_asked_once_per_context_and_forgotten_on_request(tmp_path):
    hc = HostContext(LOCAL, Context())
    a, b = counting(tmp_path, "a"), counting(tmp_path, "b")
    assert hc.facts(a, b) == (1, 1)
    assert hc.facts(b, a) == (1, 1)  # cached: the commands did not run again
    hc.forget(a)
    assert hc.facts(a, b) == (2, 1)
    assert (tmp_path / "a.log").read_text() == "x\nx\n"


def test_an_uncached_fact_runs_every_time(tmp_path):
    hc = HostContext(LOCAL, Context())
    f = counting(tmp_path, "u")
    fresh = Fact(f.name, f.cmd, f.parse, cache=False)
    assert [hc.fact(fresh), hc.fact(fresh), hc.fact(fresh)] == [1, 2, 3]


def test_an_exit_code_that_is_no_answer_names_the_host_and_the_command(tmp_path):
    hc = HostContext(LOCAL, Context())
    bad = counting(tmp_path, "bad", exit_code=3)
    with pytest.raises(CommandError) as err:
        hc.facts(counting(tmp_path, "ok"), bad)
    assert err.value.host == "local" and err.value.exited == 3 and bad.cmd.line in str(err.value)


def test_a_parser_error_is_said_of_the_host():
    hc = HostContext(LOCAL, Context())

    def refuse(_r):
        raise AegirError("no compose here")

    with pytest.raises(AegirError, match="^local: no compose here$"):
        hc.fact(Fact("x", Cmd.of("true"), refuse))


def test_yaml_is_read_once_with_the_line_of_every_key():
    doc = load("hosts:\n  hyp1:\n    address: 192.0.2.1\n  hyp2: {}\n")
    assert doc.data == {"hosts": {"hyp1": {"address": "192.0.2.1"}, "hyp2": {}}}
    assert doc.line("hosts", "hyp2") == 4 and doc.line("hosts", "hyp1", "address") == 3
    assert doc.line("hosts", "hyp1", "nothing", "here") == 2


@pytest.mark.parametrize("text, line, words", [
    ("a: 1\na: 2\n", 2, "duplicate key 'a' (first written at line 1)"),
    ("a: [1\n", 2, "invalid YAML"),
    ("a: \x07\n", 1, "the character U+0007 is not allowed"),  # a control character has its line too
    ("a: " + "[" * 200 + "]" * 200 + "\n", 1, "nested deeper than"),
])
def test_unreadable_yaml_is_one_error_with_its_line(text, line, words):
    with pytest.raises(YamlError) as err:
        load(text)
    assert err.value.line == line and words in err.value.problem


def test_an_alias_bomb_is_refused_at_once():
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"{chr(97 + i)}: &{chr(97 + i)} [" + ", ".join([f"*{chr(96 + i)}"] * 10) + "]")
    start = time.monotonic()
    with pytest.raises(YamlError, match=f"more than {MAX_NODES} nodes"):
        load("\n".join(lines) + "\n")
    assert time.monotonic() - start < 5  # a generous bound: the refusal does not expand anything


def test_poll_returns_the_first_success_or_the_last_try_at_the_deadline():
    tries = iter(range(100))
    done, value, took = until(lambda: ((n := next(tries)) >= 2, n), timeout=5, interval=0.01)
    assert (done, value) == (True, 2) and took < 5
    done, value, took = until(lambda: (False, "never"), timeout=0.05, interval=0.01)
    assert (done, value) == (False, "never") and took >= 0.05


def test_a_failed_host_has_one_row_and_one_envelope_shape():
    o = Outcome(Host("hyp2"), error="cannot connect", kind="unreachable")
    assert failed_row(o, 4) == ["hyp2", None, None, "UNREACHABLE: cannot connect"]
    assert failed_row(o, 5, at=2, reason_at=4) == ["hyp2", None, "UNREACHABLE", None, "cannot connect"]
    assert host_entry(o, projects=[]) == {"host": "hyp2", "status": "unreachable", "error": "cannot connect",
                                          "projects": []}


def test_results_and_ages_have_one_spelling():
    assert [str(r) for r in Result] == ["ok", "done", "would", "skipped", "failed"]
    assert (age(None), age(59), age(3700), age(93784)) == (None, "59s", "1h", "1d")
