"""A rolling `update.apply`: one host at a time, the first as canary, stopped at the first failed host.

Three lab hosts whose / is a Debian 12 root of their own (tests/lab/debian_root.py),
each with the same upgrades waiting. The second one's apt is broken the way a
real host's can be: a ``DPkg::Pre-Invoke`` hook that fails, so apt's simulation
(the review, the plan) is fine and the real ``apt-get upgrade`` exits 100
before dpkg touches anything. The third host is never attempted, and says so.
"""

from __future__ import annotations

import json

import pytest
import yaml

from tests.helpers import run_inv
from tests.lab import Lab, LabHost, debian_root

BROKEN_HOOK = ("/etc/apt/apt.conf.d/99aegir-lab-broken",
               'DPkg::Pre-Invoke { "echo aegir-lab: dpkg is locked by the lab >&2; false"; };\n')


@pytest.fixture(scope="module")
def rolled(lab: Lab, tmp_path_factory) -> dict:
    hosts = [debian_root.add_debian_host(lab) for _ in range(3)]
    try:
        data = lab.inventory_data(hosts)
        data["defaults"]["update"] = {"extra_crucial_units": ["aegir-lab-beacon.service"]}
        path = tmp_path_factory.mktemp("rolling") / "hosts.yml"
        path.write_text(yaml.safe_dump(data))
        yield {"hosts": hosts, "inventory": path}
    finally:
        for h in hosts:
            lab.remove_host(h)


def version(host: LabHost, package: str) -> str:
    return host.run(["dpkg-query", "-W", "-f", "${Version}", package]).stdout


def test_a_rolling_apply_stops_at_the_failed_host_and_the_next_one_is_not_attempted(rolled):
    first, second, third = rolled["hosts"]
    names = [h.name for h in rolled["hosts"]]
    review = run_inv("update.review", "--refresh", inventory=rolled["inventory"])
    assert review.returncode == 1, review.stdout + review.stderr  # risky: docker and a crucial unit restart
    path, text = BROKEN_HOOK
    second.root(path).write_text(text)
    before = version(third, "libaegirlab1")

    res = run_inv("update.apply", "--yes", "--force", "--serial", "1", "--format", "json",
                  inventory=rolled["inventory"])

    assert res.returncode == 1, res.stdout + res.stderr
    data = json.loads(res.stdout)
    by_host = {h["host"]: h for h in data["hosts"]}
    assert [h["host"] for h in data["hosts"]] == names
    assert by_host[first.name]["status"] == "ok" and by_host[first.name]["problems"] == []
    assert version(first, "libaegirlab1") == by_host[first.name]["upgraded"]["libaegirlab1"][1] != before
    # the install failed there: a failed host, with its apply's details, and the roll stops
    assert by_host[second.name]["status"] == "failed"
    assert by_host[second.name]["problems"][0] == "apt-get install failed (exit 100): E: Sub-process returned an error code"
    assert by_host[second.name]["error"].startswith(by_host[second.name]["problems"][0])
    assert version(second, "libaegirlab1") == before
    assert by_host[third.name]["status"] == "skipped"
    assert by_host[third.name]["error"].startswith(f"not attempted: {second.name} ")
    assert version(third, "libaegirlab1") == before
    assert not third.root("/var/lib/aegir/update-apply.json").exists()  # nothing recorded: it never ran there
    # progress on a pipe: one line per finished host, in the order they finished
    assert [line for line in res.stderr.splitlines() if line.startswith("update.apply: ")][-3:] == [
        f"update.apply: {first.name} ok (1/3)", f"update.apply: {second.name} failed (2/3)",
        f"update.apply: {third.name} not attempted (3/3)"]
    assert res.stderr.rstrip().endswith(f"aegir: failed on {second.name}; not attempted: {third.name}")
