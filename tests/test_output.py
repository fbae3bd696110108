"""What aegir prints fits the width: tables wrap (tests/unit/test_report.py), and so do aegir's own lines."""

from __future__ import annotations

from tests.helpers import REPO, run_inv, write_inventory

#: A host nothing answers at, with no service address: fw.render --from-json needs no connection.
GONE = "hosts:\n  gone:\n    address: 192.0.2.254\n    admin_ipv4: 192.0.2.254\n"


def test_fw_render_says_what_is_not_published_on_stderr_as_well_as_in_the_ruleset_comments(tmp_path):
    inventory = write_inventory(tmp_path, GONE)
    done = run_inv("fw.render", "--from-json", str(REPO / "tests/unit/data/fw_inspect_lab.json"),
                   inventory=inventory, env={"COLUMNS": ""}, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "# warning: web: tcp/0.0.0.0:7070: the host has no service address to publish it on" in done.stdout
    warned = done.stderr.replace("\n  ", " ")  # a warning wider than 80 columns goes on, indented
    assert "warning: gone: web: tcp/0.0.0.0:7070: the host has no service address to publish it on" in warned
    assert warned.count("warning: gone: ") == done.stdout.count("# warning: ") == 9
    assert max(len(line) for line in done.stderr.splitlines()) <= 80
