"""Output helpers: sizes, tables, JSON, progress on stderr."""

from __future__ import annotations

import io
import ipaddress
import json
import time
from dataclasses import dataclass

import pytest

from aegir.errors import AegirError
from aegir.report import Progress, check_format, dumps, human, table


@pytest.mark.parametrize("n, text", [(None, "-"), (0, "0B"), (1023, "1023B"), (1536, "1.5K"),
                                     (10 * 1024**2, "10M"), (5 * 1024**4, "5.0T")])
def test_sizes_are_short_iec_units(n, text):
    assert human(n) == text


def test_tables_show_missing_cells_as_dashes():
    assert table(["A", "B"], [["x", None]]).splitlines() == ["A    B", "---  ---", "x    -"]


def test_json_handles_dataclasses_and_addresses():
    @dataclass(frozen=True)
    class Row:
        addr: ipaddress.IPv6Address
        tags: tuple[str, ...]

    assert json.loads(dumps([Row(ipaddress.IPv6Address("2001:db8::1"), ("a",))])) == [
        {"addr": "2001:db8::1", "tags": ["a"]}]


def test_an_unknown_format_is_refused():
    with pytest.raises(AegirError, match="--format must be one of table, json, not 'yaml'"):
        check_format("yaml")


def test_progress_is_silent_for_quick_work_and_speaks_after_the_delay():
    quiet = io.StringIO()
    with Progress("t", ["a"], delay=0.5, stream=quiet) as p:
        p.done("a")
    assert quiet.getvalue() == ""
    slow = Terminal()
    with Progress("disk.report", ["hyp1", "hyp2"], delay=0.05, every=0.05, stream=slow) as p:
        p.done("hyp1")
        time.sleep(0.2)
    assert "\r\033[Kdisk.report: 1/2 done, waiting for hyp2" in slow.getvalue()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_on_a_non_terminal_is_one_line_per_finished_host_not_a_repeated_line():
    err = io.StringIO()
    with Progress("update.apply", ["a", "b", "c"], delay=0.05, every=0.01, stream=err) as p:
        p.done("a", "ok")  # before the delay: written when it passes
        time.sleep(0.2)
        p.done("b", "failed")
        time.sleep(0.1)
        p.done("c", "not attempted")
    assert err.getvalue().splitlines() == ["update.apply: a ok (1/3)", "update.apply: b failed (2/3)",
                                           "update.apply: c not attempted (3/3)"]


LONG = "FAILED: `apt-get -s upgrade` exited 100\n  | " + "E: Could not open lock file /var/lib/dpkg/lock - open (13) " * 30


def test_a_table_that_fits_is_left_as_it_is():
    rows = [["hyp1", "3", "ok"], ["hyp2", None, "a reason"]]
    assert table(["HOST", "N", "STATUS"], rows, width=80) == table(["HOST", "N", "STATUS"], rows, width=None)


def test_a_long_cell_is_wrapped_then_cut_so_that_every_line_fits_and_the_table_says_so():
    text = table(["HOST", "UPGRADES", "REVIEW"], [["hyp1", "3", "ok"], ["hyp4", None, LONG]], width=80)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert len(lines) == 2 + 1 + 3 + 1  # header, rule, hyp1, three lines of hyp4, the note
    assert lines[3].startswith("hyp4") and lines[5].endswith("…")
    assert lines[-1] == "(1 cell cut to fit 80 columns: --verbose or --format json shows it in full)"


def test_verbose_puts_the_full_text_of_each_cut_cell_after_the_table():
    text = table(["HOST", "REVIEW"], [["hyp4", LONG], ["hyp5", "x" * 500]], width=60, verbose=True)
    head, details = text.split("\n\nIn full:\n")
    assert max(len(line) for line in head.splitlines()) <= 60
    assert details == f"hyp4 REVIEW: {LONG}\nhyp5 REVIEW: {'x' * 500}"


def test_the_widest_columns_give_way_first_and_short_ones_keep_their_width():
    rows = [["hyp1", "apps/web", "y" * 200, "z" * 200]]  # more than three lines each: cut
    text = table(["HOST", "PROJECT", "A", "B"], rows, width=100)
    header = text.splitlines()[0]
    assert header.startswith("HOST    PROJECT    A ")  # HOST and PROJECT keep their width
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "(2 cells cut to fit 100 columns: --verbose or --format json show them in full)" in text


def test_text_from_a_host_reaches_the_terminal_escaped_not_acted_on():
    """A stderr tail or a compose detail may carry escape sequences (colour, clear screen, a title, bidi
    overrides): tables and error lines show them as text."""
    from aegir.report import printable, table

    hostile = "ok\x1b]0;pwned\x07\x1b[2J\u202egnp.exe\x9b1m\r"
    assert printable(hostile) == "ok\\x1b]0;pwned\\x07\\x1b[2J\\u202egnp.exe\\x9b1m\\x0d"
    assert printable("two\nlines\tand a tab") == "two\nlines\tand a tab"
    shown = table(["HOST", "DETAIL"], [["hyp1", hostile]], width=200)
    assert "\x1b" not in shown and "\x07" not in shown and "\u202e" not in shown and "\r" not in shown
    assert "\\x1b[2J" in shown


def test_an_error_line_from_a_task_is_escaped_too():
    import invoke
    import pytest

    from aegir.errors import CommandError
    from aegir.tasks.base import task

    @task
    def broken(c):
        raise CommandError("hyp1", "apt-get update", 100, "E: \x1b[2Jgone")

    with pytest.raises(invoke.Exit) as done:
        broken(invoke.Context())
    assert "\x1b" not in str(done.value.message) and "\\x1b[2Jgone" in str(done.value.message)
