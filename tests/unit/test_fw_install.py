"""fw.install's probe, parser and plan: pure, from recorded answers."""

from __future__ import annotations

import pytest

from aegir.errors import AegirError
from aegir.fw.facts import UNIT_PATH, UnitState
from aegir.fw.facts import parse_unit as parse_probe
from aegir.fw.facts import unit_probe_cmd as probe_cmd
from aegir.fw.plan import plan_install as plan
from aegir.fw.plan import unit_text
from aegir.sh import write_file_cmd

WANTED = unit_text()


def test_the_probe_is_one_read_only_command_with_the_unit_and_path_as_arguments():
    argv = probe_cmd().argv
    assert argv[:2] == ("sh", "-c") and argv[3:] == ("sh", "aegir-fw-watch.service", UNIT_PATH)
    assert "systemctl is-enabled \"$1\"" in argv[2] and "[ -d /run/systemd/system ]" in argv[2]


def test_the_probe_output_is_parsed_with_the_unit_file_kept_byte_for_byte():
    state = parse_probe("booted=no\nenabled=enabled\nactive=inactive\nfile=yes\n[Unit]\nA=b\n\n")
    assert state == UnitState(False, "enabled", "inactive", "[Unit]\nA=b\n\n")
    assert state.summary == "inactive (enabled)"
    absent = parse_probe("booted=yes\nenabled=\nactive=inactive\nfile=no\n")
    assert absent.text is None and absent.summary == "not installed"
    with pytest.raises(AegirError, match="unexpected probe output"):
        parse_probe("sh: 1: systemctl: not found\n")


def steps(state: UnitState) -> list[str]:
    return [name for name, _ in plan(state, WANTED).steps]


def test_a_fresh_booted_host_gets_the_unit_written_reloaded_enabled_and_started():
    p = plan(UnitState(True, "", "inactive", None), WANTED)
    assert [name for name, _ in p.steps] == [f"write {UNIT_PATH}", "daemon-reload", "enable", "start"]
    assert p.steps[0][1] == write_file_cmd(UNIT_PATH, WANTED)
    assert [cmd.line for _, cmd in p.steps[1:]] == ["systemctl daemon-reload", "systemctl enable aegir-fw-watch.service",
                                                    "systemctl start aegir-fw-watch.service"]
    assert p.cannot_start is None


def test_an_installed_running_unit_is_nothing_to_do_and_a_changed_one_is_restarted():
    assert plan(UnitState(True, "enabled", "active", WANTED), WANTED).empty
    assert steps(UnitState(True, "enabled", "active", "old text")) == [f"write {UNIT_PATH}", "daemon-reload", "restart"]
    assert steps(UnitState(True, "disabled", "inactive", WANTED)) == ["enable", "start"]


def test_without_a_running_systemd_the_unit_is_written_and_enabled_but_cannot_start():
    p = plan(UnitState(False, "", "inactive", None), WANTED)
    assert [name for name, _ in p.steps] == [f"write {UNIT_PATH}", "enable"]  # no daemon-reload: nothing to reload
    assert p.cannot_start and "systemd is not running this host" in p.cannot_start
    assert plan(UnitState(False, "enabled", "inactive", WANTED), WANTED).empty
