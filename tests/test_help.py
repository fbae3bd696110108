"""Help that is tested: every task's --help shows each flag as its parser reads it, fits 80 columns, starts
with an imperative sentence; one letter means one flag everywhere; the README's flag table says so."""

from __future__ import annotations

import inspect
import re
from collections import defaultdict

import pytest
from invoke import Argument

from aegir import report
from aegir.cli import AegirContext, make_program, metavar
from aegir.tasks import namespace
from aegir.tasks.flags import LETTERS, PROGRAM_LETTERS, Bound
from tests.helpers import REPO

TASKS = sorted(namespace.task_names)


@pytest.fixture(autouse=True)
def _display_width_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    """A program run that gets as far as a task sets the process's display width (`report.configure`):
    put back afterwards, so that later unit tests see the renderers' default (no limit)."""
    monkeypatch.setattr(report.display, "width", report.display.width)


def arguments(name: str) -> list[Argument]:
    return namespace[name].get_arguments()


def shorts(arg: Argument) -> list[str]:
    return [n for n in arg.names if len(n) == 1]


def long_name(arg: Argument) -> str:
    return next(n for n in arg.names if len(n) > 1)


def help_of(name: str, capsys: pytest.CaptureFixture[str]) -> str:
    """``inv --help NAME`` as the program prints it (not a terminal: Invoke wraps at 80 columns)."""
    make_program().run(["inv", "--help", name], exit=False)
    return capsys.readouterr().out


@pytest.mark.parametrize("name", TASKS)
def test_help_shows_every_flag_with_the_value_its_parser_reads_and_fits_80_columns(name, capsys):
    out = help_of(name, capsys)
    assert max(len(line) for line in out.splitlines()) <= 80, out
    options = out.split("Options:\n", 1)[1]
    for arg in arguments(name):
        flag = f"--{long_name(arg)}"
        spec = re.search(rf"^  ((?:-\w(?: \S+)?, )?{re.escape(flag)}(?:=\S+)?)(?:\s|$)", options, re.M)
        assert spec, (name, flag, options)
        assert arg.help, f"{name} {flag} has no help"
        if not arg.takes_value:  # a bare flag is a yes/no
            assert arg.kind is bool and spec[1] in (flag, f"-{shorts(arg)[0]}, {flag}" if shorts(arg) else flag)
            continue
        shown = metavar(arg)
        assert spec[1].endswith(f"{flag}={shown}"), (name, spec[1])
        # a value read by a typed parser, or free text: never Invoke's bare int/float casts (a traceback on 'x')
        assert isinstance(arg.kind, Bound) or arg.kind in (str, list), (name, flag, arg.kind)
        if isinstance(arg.kind, Bound):
            for value in arg.kind.kind.values:  # a choice's help names every value it takes
                assert value in " ".join(arg.help.split()), (name, flag, value)


@pytest.mark.parametrize("name", TASKS)
def test_help_after_the_task_is_the_tasks_help_even_where_it_takes_names(name, capsys):
    # Invoke's parser gave `--help` after a task to its NAMES: "invalid project name '--help'", exit 2
    want = help_of(name, capsys)
    takes_names = any(long_name(a) == "names" for a in arguments(name))
    for argv in ([name, "--help"], [name, "-h"], *([[name, "cloud", "--help"]] if takes_names else [])):
        make_program().run(["inv", *argv], exit=False)
        assert capsys.readouterr().out == want, argv


def test_help_after_a_double_dash_is_the_commands_word(capsys):
    with pytest.raises(SystemExit) as exited:
        make_program().run(["inv", "apps.compose", "cloud", "--", "--help"])
    assert exited.value.code == 2
    assert "a Compose subcommand must come first after '--'" in capsys.readouterr().err


def test_dns_check_timeout_takes_a_value_and_says_so(capsys):
    assert "--timeout=SECONDS" in help_of("dns.check", capsys)  # was `-t, --timeout`, shown as a bare flag


@pytest.mark.parametrize("name", TASKS)
def test_the_docstring_starts_with_an_imperative_sentence_and_no_line_runs_past_80_columns(name):
    lines = inspect.getdoc(namespace[name]).splitlines()
    first = lines[0]
    assert re.fullmatch(r"[A-Z][a-z]+\b.*\.", first), first  # one sentence, ended
    verb = first.split()[0]
    assert not verb.endswith("s") or verb in {"Pass", "Process"}, f"{name}: {verb!r} is not imperative"
    assert all(len(line) <= 78 for line in lines), name  # --help indents it by 2


def test_one_letter_means_one_flag_in_every_task_and_the_same_as_the_program():
    program = {}
    for arg in make_program().initial_context.args.values():
        for letter in shorts(arg):
            program[letter] = long_name(arg)
    assert program == PROGRAM_LETTERS  # the program's letters are the table's
    meaning: dict[str, set[tuple[str, str | None]]] = defaultdict(set)
    for name in TASKS:
        for arg in arguments(name):
            for letter in shorts(arg):
                assert LETTERS.get(letter) == long_name(arg), (name, letter, long_name(arg))
                assert program.get(letter, long_name(arg)) == long_name(arg), (name, letter)  # no program letter shadowed
                meaning[letter].add((long_name(arg), (metavar(arg) or "").removesuffix("S")))  # NAME(S): a project
    assert all(len(m) == 1 for m in meaning.values()), dict(meaning)  # same flag, same value kind
    assert set(meaning) == set(LETTERS)  # no letter in the table that no task uses


def test_a_project_is_named_the_same_way_in_every_task():
    flags = {long_name(a) for name in TASKS for a in arguments(name)}
    assert {"name", "app", "path"}.isdisjoint(flags)
    named = [name for name in TASKS if any(long_name(a) == "names" for a in arguments(name))]
    assert len(named) >= 20, named


def test_every_task_that_changes_hosts_takes_dry_or_the_readme_says_why_not():
    readme = (REPO / "README.md").read_text()
    why_not = readme.split("These change something and have no `--dry` of their own:", 1)[1].split("\n\n")[0]
    excused = set(re.findall(r"`(\w+\.\w+)", why_not))
    assert excused == {"fw.watch", "update.review"}
    for name in TASKS:
        flags = {long_name(a) for a in arguments(name)}
        if flags & {"yes", "keep-going"}:  # it asks, or it rolls: it changes hosts
            assert "dry" in flags, name
        if name in excused:
            assert "dry" not in flags, f"{name} has a --dry now: take it out of the README's list"


def test_the_readme_flag_table_is_the_table_the_program_enforces():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Flags: one letter, one meaning", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| ((?:`-\w`(?:, )?)+) \| `--([\w-]+)` \| (.*) \|$", section, re.M)
    documented = {letter: flag for letters, flag, _ in rows for letter in re.findall(r"`-(\w)`", letters)}
    assert documented == {**LETTERS, **PROGRAM_LETTERS}
    where = {flag: text for _, flag, text in rows}
    assert "dns.zone --serial" in where["serial"]  # the one flag whose name means something else there


def test_every_task_context_is_aegirs(capsys):
    program = make_program()
    program.run(["inv", "--list"], exit=False)
    capsys.readouterr()
    assert all(type(ctx) is AegirContext for ctx in program._make_parser().contexts.values())
