"""Output helpers: sizes, tables, JSON, progress on stderr."""

from __future__ import annotations

import contextlib
import io
import ipaddress
import json
import time
from dataclasses import dataclass

import pytest

from aegir.errors import AegirError
from aegir.report import Progress, check_format, dumps, human, table, wrap


@pytest.mark.parametrize("n, text", [(None, "-"), (0, "0B"), (1023, "1023B"), (1536, "1.5K"),
                                     (10 * 1024**2, "10M"), (5 * 1024**4, "5.0T")])
def test_sizes_are_short_iec_units(n, text):
    assert human(n) == text


def test_tables_show_missing_cells_as_dashes():
    assert table(["A", "B"], [["x", None]]).splitlines() == ["A  B", "-  -", "x  -"]


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


def test_a_long_cell_is_wrapped_whole_so_that_every_line_fits_and_nothing_is_cut():
    text = table(["HOST", "UPGRADES", "REVIEW"], [["hyp1", "3", "ok"], ["hyp4", None, LONG]], width=80)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in text and "cut" not in text
    review = "".join(line[lines[0].index("REVIEW"):] for line in lines[3:])
    assert "".join(review.split()) == "".join(LONG.split())  # every character of the reason, in order


def test_cells_wrap_at_spaces_slashes_and_hyphens_inside_words_never_inside_an_option():
    row = ["hyp1", "docker compose --project-directory /srv/apps/my-cloud -p my-cloud up -d"]
    assert table(["HOST", "COMMAND"], [row], width=32).splitlines() == [
        "HOST  COMMAND",
        "----  -------------------------",
        "hyp1  docker compose",
        "      --project-directory /srv/",
        "      apps/my-cloud -p my-cloud",
        "      up -d",
    ]


def test_a_word_wider_than_its_column_is_split_as_the_last_resort_and_kept_whole():
    assert wrap("x" * 25, 10) == "xxxxxxxxxx\nxxxxxxxxxx\nxxxxx"
    assert wrap("warning: hyp1: " + "a" * 12, 20, indent="  ") == "warning: hyp1:\n  aaaaaaaaaaaa"
    assert wrap("FAILED\n  | E: lock held", 12) == "FAILED\n  | E: lock\nheld"  # a line's own indent stays


def test_the_widest_columns_give_way_first_and_short_ones_keep_their_width():
    rows = [["hyp1", "apps/web", "y" * 200, "z" * 200]]
    text = table(["HOST", "PROJECT", "A", "B"], rows, width=100)
    header = text.splitlines()[0]
    assert header.startswith("HOST  PROJECT   A ")  # HOST and PROJECT keep their width
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "".join(line.split()[-1] for line in text.splitlines()[2:]) .count("z") == 200  # nothing cut


def test_a_version_or_a_path_part_is_not_split_while_the_table_can_afford_it():
    rows = [["hyp1", "docker-ce", "5:24.0.7-1~debian.12~bookworm", "5:25.0.0-1~debian.12~bookworm",
             "restarts dockerd: every container stops unless live-restore"]]
    text = table(["HOST", "PACKAGE", "OLD", "NEW", "WHY"], rows, width=80)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "5:24.0.7-" in text and "1~debian.12~bookworm" in text  # broken after its '-' at most


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


def test_the_80_column_fleet_table_of_a_dry_run_shows_the_command_the_path_and_the_unreachable_reason_whole():
    """A snapshot: the --dry COMMAND column and the path in it, and an unreachable host's reason, wrapped
    (at spaces, after '/', at a '-' inside a word) over as many lines as they need; no line past 80."""
    from aegir.compose.plan import ActionResult, HostActions
    from aegir.compose.report import lifecycle_table
    from aegir.fleet import Outcome
    from aegir.inventory import Host

    srv = "/srv/hosting/collective-tedomum"
    command = (f"docker compose --project-directory {srv}/apps/nextcloud-office -f {srv}/apps/nextcloud-office/"
               "docker-compose.yml --env-file .env -p nextcloud-office up -d --remove-orphans")
    outcomes = [
        Outcome(Host("hyp1", srv=srv),
                HostActions("hyp1", (ActionResult("apps/nextcloud-office", "up", command, "would"),))),
        Outcome(Host("hyp2.tedomum.net"), error="cannot connect to root@hyp2.tedomum.net:22: No route to host",
                kind="unreachable"),
    ]
    with width(80):
        text = lifecycle_table(outcomes, planned=True)
    assert text == """\
HOST              PROJECT                ACTION  COMMAND (--dry: not run)
----------------  ---------------------  ------  ------------------------------
hyp1              apps/nextcloud-office  up      docker compose
                                                 --project-directory /srv/
                                                 hosting/collective-tedomum/
                                                 apps/nextcloud-office -f /srv/
                                                 hosting/collective-tedomum/
                                                 apps/nextcloud-office/docker-
                                                 compose.yml --env-file .env -p
                                                 nextcloud-office up -d
                                                 --remove-orphans
hyp2.tedomum.net  -                      -       UNREACHABLE: cannot connect to
                                                 root@hyp2.tedomum.net:22: No
                                                 route to host"""


@contextlib.contextmanager
def width(columns: int):
    from aegir.report import display

    before = display.width
    display.width = columns
    try:
        yield
    finally:
        display.width = before


def test_the_width_is_columns_else_the_terminal_else_80_for_a_pipe(monkeypatch):
    from aegir.report import configure, display

    with width(0):
        monkeypatch.delenv("COLUMNS", raising=False)
        configure(stream=io.StringIO())
        assert display.width == 80
        monkeypatch.setenv("COLUMNS", "132")
        configure(stream=io.StringIO())
        assert display.width == 132


def test_a_reports_long_lines_wrap_at_the_width_but_a_ruleset_or_zone_stays_verbatim():
    from aegir.report import emit

    warning = ("warning: hyp1: the review could not read /etc/docker/daemon.json (permission denied): "
               "whether live-restore keeps containers up across a restart of dockerd is unknown")
    out = io.StringIO()
    with width(80):
        emit("table", data=None, text=f"HOST  RISKY\n----  -----\nhyp1  yes\n{warning}", out=out)
        assert out.getvalue().splitlines() == [
            "HOST  RISKY", "----  -----", "hyp1  yes",
            "warning: hyp1: the review could not read /etc/docker/daemon.json (permission",
            "  denied): whether live-restore keeps containers up across a restart of dockerd",
            "  is unknown"]
        kept = io.StringIO()
        emit("table", data=None, text=warning, out=kept, verbatim=True)
        assert kept.getvalue() == warning + "\n"


def test_a_wrapped_table_reads_back_whole_cells_the_way_tests_read_it():
    from tests.helpers import read_table

    row = ["hyp1", "mount", "ok", "/srv is already mounted (/dev/vda[/tmp/aegir-lab/aegirlab/hyp1/srv], ext4)"]
    text = table(["HOST", "STEP", "RESULT", "DETAIL"], [row, ["hyp2", "mount", "would", "mount /srv"]], width=40)
    assert max(len(line) for line in text.splitlines()) <= 40
    assert read_table(text + "\n\nfleet: 2 hosts") == [dict(zip(["HOST", "STEP", "RESULT", "DETAIL"], row)),
                                                      {"HOST": "hyp2", "STEP": "mount", "RESULT": "would",
                                                       "DETAIL": "mount /srv"}]


def test_progress_rewritten_in_place_on_a_terminal_stays_on_one_line_of_the_width():
    slow = Terminal()
    with width(40), Progress("disk.report: project folders measured", [f"hyp{i}" for i in range(9)],
                             delay=0.01, every=0.01, stream=slow):
        time.sleep(0.1)
    shown = [line for line in slow.getvalue().split("\r\033[K") if line.strip()]
    assert shown and all(len(line.rstrip("\n")) <= 39 for line in shown), shown
    assert shown[0].startswith("disk.report: project folders measu") and shown[0].rstrip("\n").endswith("…")


#: What a hostile host plants in its data: a screen clear, an OSC 52 clipboard write ended by BEL, a C1 CSI,
#: a bidi override and isolate, a carriage return, a byte that was not UTF-8 (kept by surrogateescape).
HOSTILE = "a\x1b[2Jb\x1b]52;c;ZWNobyBwd25lZA==\x07c\x9b31md\u202eexe.txt\u2066e\rf\udc9bg"
HOSTILE_SHOWN = "a\\x1b[2Jb\\x1b]52;c;ZWNobyBwd25lZA==\\x07c\\x9b31md\\u202eexe.txt\\u2066e\\x0df\\x9bg"


def raw_controls(text: str) -> list[str]:
    """The characters of `text` a terminal would act on (newline and tab apart)."""
    return [ch for ch in text if (ord(ch) < 0x20 and ch not in "\n\t") or 0x7f <= ord(ch) <= 0x9f
            or 0x202a <= ord(ch) <= 0x202e or 0x2066 <= ord(ch) <= 0x2069 or 0xd800 <= ord(ch) <= 0xdfff]


def test_every_control_a_terminal_acts_on_is_escaped_and_valid_text_of_any_script_is_kept():
    from aegir.report import printable

    assert printable(HOSTILE) == HOSTILE_SHOWN
    assert printable("café naïve 日本語 Ωμέγα 🙂 \ufffd") == "café naïve 日本語 Ωμέγα 🙂 \ufffd"
    assert printable("\u200e\u200f\u061c\u202a\u2069") == "\\u200e\\u200f\\u061c\\u202a\\u2069"
    assert printable("\ud83d") == "\\ud83d"  # a lone high surrogate: not a byte, shown as the code point
    assert printable(printable(HOSTILE)) == HOSTILE_SHOWN  # escaping twice changes nothing more


def test_emit_escapes_the_text_of_every_report_and_keeps_a_ruleset_a_ruleset():
    """A summary line or a verbatim text (a ruleset with a host's comment) is escaped where it leaves;
    newlines and tabs stay, so the ruleset still reads as one. JSON keeps the host's text as data."""
    from aegir.report import emit

    ruleset = f"table inet aegir {{\n\t# {HOSTILE}\n\tchain input {{\n\t}}\n}}"
    for verbatim in (True, False):
        out = io.StringIO()
        emit("table", data=None, text=ruleset, out=out, verbatim=verbatim)
        assert out.getvalue() == ruleset.replace(HOSTILE, HOSTILE_SHOWN) + "\n"
    out = io.StringIO()
    emit("json", data={"name": HOSTILE}, text="", out=out)
    assert not raw_controls(out.getvalue()) and json.loads(out.getvalue()) == {"name": HOSTILE}


def test_say_ask_and_progress_escape_what_they_show(monkeypatch):
    from aegir import report

    err = io.StringIO()
    report.say(f"hyp1: {HOSTILE}", out=err)
    assert err.getvalue() == f"hyp1: {HOSTILE_SHOWN}\n"
    prompts = []
    monkeypatch.setattr("builtins.input", lambda prompt: prompts.append(prompt) or "n")
    assert report.ask(f"Stop {HOSTILE}? [y/N] ") == "n" and prompts == [f"Stop {HOSTILE_SHOWN}? [y/N] "]

    def ended(prompt: str) -> str:
        raise EOFError

    monkeypatch.setattr("builtins.input", ended)
    assert report.ask("Go on? ") == ""  # Ctrl-D: the empty answer, no
    shown = Terminal()
    with Progress("disk.report", [HOSTILE], delay=0.01, every=0.01, stream=shown) as p:
        p.add([f"apps/{HOSTILE}"])
        time.sleep(0.1)
        p.done(HOSTILE, "ok")
    assert HOSTILE_SHOWN in shown.getvalue() and raw_controls(shown.getvalue().replace("\r\033[K", "")) == []
    lines = io.StringIO()
    with Progress("disk.report", [HOSTILE], delay=0.01, stream=lines) as p:
        time.sleep(0.05)
        p.done(HOSTILE, f"failed {HOSTILE}")
    assert lines.getvalue() == f"disk.report: {HOSTILE_SHOWN} failed {HOSTILE_SHOWN} (1/1)\n"
