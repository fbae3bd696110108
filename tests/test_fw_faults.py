"""fw.apply under a fault mid-run (issue 19): a host that goes silent while fw.apply acts on it.

Three lab hosts of their own, each with a ``fw:`` section (SSH from the lab's bridge, this machine) and a
container publishing a port, so that each has a ruleset to apply. The second host's packets are dropped
(nftables in its namespace, `tests.test_faults.drop_packets`) once its act is under way: after its state
probe, as soon as a command naming this apply's candidate file runs there (the write, ``nft -c``, the
proof or ``nft -f``). Deadlines are short, as an operator sets them: ``AEGIR_TIMEOUTS_*``.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.helpers import run_inv, start_inv
from tests.lab import Lab, LabHost
from tests.lab.plan import BRIDGE_IPV6
from tests.test_faults import IMAGE, drop_packets, heal, lines_of, remote, wait_for

pytestmark = pytest.mark.timeout(300)

SILENT, CONNECT = 5, 3
#: A silent host is lost after 5 s; asking it again what is live costs one connect timeout (3 s).
FAST = {"AEGIR_TIMEOUTS_SILENT": str(SILENT), "AEGIR_TIMEOUTS_KEEPALIVE": "1",
        "AEGIR_TIMEOUTS_CONNECT": str(CONNECT)}


@pytest.fixture
def fleet(lab: Lab, tmp_path: Path) -> Iterator[tuple[LabHost, LabHost, LabHost, Path]]:
    """Three fresh hosts with a ``fw:`` section and a container publishing port 8080 each (no ruleset yet)."""
    with lab.extra_host() as a, lab.extra_host() as b, lab.extra_host() as c:
        data = lab.inventory_data([a, b, c])
        for entry in data["hosts"].values():
            entry["fw"] = {"admin_sources": [str(lab.names.bridge_ipv4), str(BRIDGE_IPV6)]}
        inventory = tmp_path / "hosts.yml"
        inventory.write_text(yaml.safe_dump(data, sort_keys=False))
        for host in (a, b, c):
            host.run(["docker", "run", "-d", "--name", "pub", "-p", "8080:80", IMAGE, "httpd", "-f", "-p", "80"])
        try:
            yield a, b, c, inventory
        finally:
            for host in (a, b, c):
                heal(host)


def test_a_host_silent_mid_apply_fails_within_its_deadline_and_the_others_are_applied(fleet) -> None:
    """fw.apply over three hosts, the second one's packets dropped while its proof runs (past its state probe,
    write and ``nft -c``): the command ends within timeouts.silent (5 s) plus one connect timeout (3 s: the
    host asked again what is live) plus a few seconds; the other hosts' rows say applied; the silent one's
    names the step that got no answer (not its script), that the host did not answer again and that the new
    ruleset may be live, not "cannot connect" nor "nothing changed"; and fw.status, once the host answers,
    says what its kernel holds (the previous ruleset: the proof changes nothing live)."""
    a, b, c, inventory = fleet
    proc = start_inv("fw.apply", inventory=inventory, env=FAST)
    try:
        wait_for("the proof of this apply's candidate on the second host",
                 lambda: bool(remote(b, "/candidate-", "unshare -n")), timeout=60)
        drop_packets(b)
        hit = time.monotonic()
        out, err = proc.communicate(timeout=60)
    except (AssertionError, subprocess.TimeoutExpired):
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"fw.apply did not end within 60 s of the silence:\n{out}{err}")
    after = time.monotonic() - hit
    assert proc.returncode == 1, out + err
    assert after < SILENT + CONNECT + 4, f"{after:.1f} s after the silence"
    for host in (a, c):
        [row] = lines_of(out, host)
        assert " applied in " in row, out
    [silent] = lines_of(out, b)
    assert silent.split(None, 3)[1:] == ["-", "-", (
        f"FAILED: no answer for {SILENT} s during the proof in a scratch network namespace: the connection is "
        f"lost: the host did not answer again (reconnecting failed: cannot connect to root@{b.addresses.admin_ipv4}"
        f":22: timed out after {CONNECT}s): the new ruleset may be live and unverified; fw.status says what is live "
        "once the host answers")], out
    assert "Traceback" not in err and "internal error" not in out + err
    assert err.rstrip().endswith(f"aegir: failed on {b.name}"), err

    heal(b)  # once the host answers, fw.status says what its kernel holds
    status = run_inv("fw.status", "-H", b.name, "--format", "json", inventory=inventory, env=FAST)
    [row] = json.loads(status.stdout)["hosts"]
    assert (row["live"], row["pending"]) == ("not loaded", True), row
    assert b.run(["nft", "list", "table", "inet", "aegir"], check=False).returncode != 0
    again = run_inv("fw.apply", inventory=inventory, env=FAST)  # the rerun converges
    assert again.returncode == 0, again.stdout + again.stderr
