"""fw.apply under a fault mid-run (issue 19): a host that goes silent while fw.apply acts on it.

Three lab hosts of their own, each with a ``fw:`` section (SSH from the lab's bridge, this machine) and a
container publishing a port, so that each has a ruleset to apply. The second host's packets are dropped
(nftables in its namespace, `tests.test_faults.drop_packets`) once its act is under way: after its state
probe, as soon as a command naming this apply's candidate file runs there (the write, ``nft -c``, the
proof or ``nft -f``). Deadlines are short, as an operator sets them: ``AEGIR_TIMEOUTS_*``.
"""

from __future__ import annotations

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
    """fw.apply over three hosts, the second one's packets dropped while its apply acts: the command ends
    within timeouts.silent (5 s) plus one connect timeout (3 s, asking the host again what is live) plus a
    few seconds; the other hosts' rows say applied, the silent one's says it got no answer, that the host
    did not answer again and that the new ruleset may be live, not "cannot connect"."""
    a, b, c, inventory = fleet
    proc = start_inv("fw.apply", inventory=inventory, env=FAST)
    try:
        wait_for("a command of the apply naming its candidate on the second host",
                 lambda: bool(remote(b, "/candidate-")), timeout=60)
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
    assert "FAILED: " in silent and f"no answer for {SILENT} s while running " in silent, out
    assert "the connection is lost" in silent, out
    assert (f"the host did not answer again (cannot connect to root@{b.addresses.admin_ipv4}:22: timed out after "
            f"{CONNECT}s): the new ruleset may be live and unverified; fw.status says what is live once the host "
            "answers") in silent, out
    assert "UNREACHABLE" not in silent and "Traceback" not in err and "internal error" not in out + err
    assert err.rstrip().endswith(f"aegir: failed on {b.name}"), err

    heal(b)  # what fw.status says of the host, once it answers, is what its kernel holds
    status = run_inv("fw.status", "-H", b.name, inventory=inventory, env=FAST)
    assert status.returncode == 0, status.stdout + status.stderr
    assert run_inv("fw.apply", inventory=inventory, env=FAST).returncode == 0  # the rerun converges
