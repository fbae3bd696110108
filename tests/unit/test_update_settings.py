"""The inventory's ``update:`` section through the real program: a mistake is one exit-2 ``file:line`` line."""

from __future__ import annotations

import pytest

from tests.helpers import run_inv

INVENTORY = """\
defaults:
  user: root
hosts:
  local:
    connection: local
    update:
      notify:
        command: {command}
"""


@pytest.mark.parametrize(("command", "why"), [
    ("\"/usr/local/bin/announce --channel 'ops\"", "no closing quotation"),
    ("echo \"hi there", "no closing quotation"),
    ("\"announce \\\\\"", "no escaped character"),
    ("\"announce --to 'ops team\"", "no closing quotation"),
])
def test_a_notify_command_with_an_unclosed_quote_is_an_inventory_error_not_a_traceback(tmp_path, command, why):
    path = tmp_path / "hosts.yml"
    path.write_text(INVENTORY.format(command=command))
    for task in (["update.review"], ["update.announce", "--message", "x", "--dry"], ["update.apply", "--dry"]):
        res = run_inv("-H", "local", *task, inventory=path)
        assert res.returncode == 2, (task, res.stdout, res.stderr)
        assert "Traceback" not in res.stderr + res.stdout
        [line] = [ln for ln in (res.stderr + res.stdout).splitlines() if ln.strip()]
        assert line.startswith(f"aegir: {path}:8: local: update.notify.command: cannot be read as a command line "
                               f"({why})"), line


@pytest.mark.parametrize("command", ["[]", "''", "[1, 2]", "{a: b}", "[echo, [x]]"])
def test_a_notify_command_of_the_wrong_shape_is_an_inventory_error(tmp_path, command):
    path = tmp_path / "hosts.yml"
    path.write_text(INVENTORY.format(command=command))
    res = run_inv("-H", "local", "update.review", inventory=path)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"{path}:8: local: update.notify.command: must be a command line or a non-empty list of words" in res.stderr
