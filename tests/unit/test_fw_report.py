"""What fw.apply, fw.install and fw.render say, from plans and results: exact strings, the JSON envelope;
and what fw.apply says is live after a failure (`nft.after_failure`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from aegir import inventory
from aegir.action import HostRun, Ran
from aegir.fleet import Outcome
from aegir.fw import nft
from aegir.fw import plan as fwplan
from aegir.fw.facts import UNIT_PATH, UnitState
from aegir.fw.model import load_inspect
from aegir.fw.report import apply_report, apply_result, install_report, render_report
from aegir.fw.settings import for_host
from aegir.report import Result

DATA = Path(__file__).parent / "data"
INV = inventory.load(str(DATA / "fw_hosts.yml"))
HOST = INV.get("hyp1")
SETTINGS = for_host(INV, HOST)
CONTAINERS = load_inspect((DATA / "fw_inspect_lab.json").read_text())
WARNED = "v4app: no IPv6 address: tcp/[2001:db8:0:100::11]:8181 is not published"


def firewall(**state: object) -> fwplan.Firewall:
    """hyp1's firewall against a host that holds `state` (default: nothing loaded, nothing kept)."""
    return fwplan.firewall(HOST, SETTINGS, CONTAINERS, dataclasses.replace(nft.State(None, None, None, nft.ABSENT),
                                                                          **state))


def test_the_result_cell_says_what_was_done_or_would_be():
    new = firewall()
    assert apply_result(new, None, dry=True) == "would apply (dry)"
    live = firewall(last_good=new.text, kept_hash="1" * 64, live_hash="1" * 64, verified=new.fingerprint)
    assert not live.todo and apply_result(live, None, dry=False) == "nothing to do"
    left = dataclasses.replace(live, state=dataclasses.replace(live.state, leftovers=("candidate-1.nft", "x")))
    assert left.todo and not left.load  # a sweep is work too
    assert apply_result(left, None, dry=True) == "nothing to do; would remove 2 leftover files of interrupted runs"
    done = fwplan.Applied(True, ("a",), ("b", "c"), 0.123, "changed", "1" * 64, 1)
    assert apply_result(new, done, dry=False) == \
        "applied in 0.12s (changed, full proof: +1 -2 lines); removed 1 leftover file of interrupted runs"
    assert apply_result(left, fwplan.Applied(False, reason="nothing to do", swept=2), dry=False) == \
        "nothing to do; removed 2 leftover files of interrupted runs"


def test_ssh_settings_never_verified_are_loaded_again():
    new = firewall()
    same = firewall(last_good=new.text, kept_hash="1" * 64, live_hash="1" * 64, verified="another")
    assert (same.changed, same.load, fwplan.reason(same)) == (False, True, "SSH settings verified")


def test_the_apply_report_is_the_envelope_with_a_failed_host_in_its_row():
    fw = firewall()
    other = inventory.parse("hosts:\n  hyp2:\n    address: 192.0.2.12\n").get("hyp2")
    ran: Ran[fwplan.Firewall, fwplan.Applied] = Ran((
        Outcome(HOST, HostRun(fw, fwplan.Applied(True, ("x",), (), 0.5, "changed"))),
        Outcome(other, HostRun(fw), "refused: nothing listens", "failed"),  # its act raised: the plan stays
    ), dry=False, acted=True)
    report = apply_report(ran)
    rows = report.text.splitlines()
    assert rows[2].split() == ["hyp1", "4", "14", "applied", "in", "0.50s", "(changed,", "full", "proof:", "+1", "-0", "lines)"]
    assert rows[3].split(None, 3) == ["hyp2", "-", "-", "FAILED: refused: nothing listens"]
    hyp1, hyp2 = report.data["hosts"]
    assert (report.data["task"], report.data["dry"], report.data["summary"]) == ("fw.apply", False,
                                                                                 {"hosts": 2, "changed": 1})
    assert (hyp1["status"], hyp1["changed"], hyp1["exposures"], hyp1["added"]) == ("ok", True, 14, ["x"])
    assert hyp2 == {"host": "hyp2", "status": "failed", "error": "refused: nothing listens"}
    assert report.warnings == (f"warning: hyp1: {WARNED}", f"warning: hyp2: {WARNED}")  # hyp2's plan warned too


def test_the_render_report_warns_on_stderr_too():
    report = render_report([Outcome(HOST, firewall())])
    assert f"\n# warning: {WARNED}\n" in report.text and report.warnings == (f"warning: hyp1: {WARNED}",)
    assert report.data["hosts"][0]["warnings"] == [WARNED] and report.data["dry"] is None


def test_the_install_report_of_a_dry_run_and_of_a_host_that_cannot_start():
    before = UnitState(False, "", "inactive", None)
    plan = fwplan.plan_install(before, "unit\n")
    dry = install_report(Ran((Outcome(HOST, HostRun(plan)),), dry=True, acted=False))
    [row] = dry.data["hosts"]
    assert (row["result"], row["steps"], row["unit"], row["problem"]) == (
        "would", [f"write {UNIT_PATH}", "enable"], UNIT_PATH, plan.cannot_start)
    assert not dry.problems
    after = UnitState(False, "enabled", "inactive", "unit\n")
    done = fwplan.Installed(Result.FAILED, ("enable",), after, "systemd is not running this host")
    acted = install_report(Ran((Outcome(HOST, HostRun(plan, done), done.problem, "failed"),), dry=False, acted=True))
    assert acted.problems and acted.text.splitlines()[2].split()[:4] == ["hyp1", "FAILED", "enabled", "inactive"]


def test_what_a_failure_left_live_is_said_from_the_state_read_again():
    before = nft.State("t", "old", "2" * 64, "2" * 64)
    cand = "/srv/conf/aegir-fw/candidate-1.nft"
    marker = nft.Marker(cand, "2" * 64, "1" * 64)
    loaded = dataclasses.replace(before, live_hash="1" * 64, marker=marker)
    assert nft.after_failure(loaded, before, "new", cand) == (
        "new ruleset live and unverified (no fresh login checked it and it is not the last good one); "
        "run fw.apply again to check and record it", True)
    assert nft.after_failure(before, before, "new", cand) == (
        "nothing changed: the live ruleset is the previous one", False)
    recorded = dataclasses.replace(before, last_good="new", kept_hash="1" * 64, live_hash="1" * 64)
    assert nft.after_failure(recorded, before, "new", cand)[1] is True
    other = dataclasses.replace(before, live_hash="3" * 64)
    assert nft.after_failure(other, before, "new", cand) == (
        "the live table changed, but not to this apply's ruleset (another fw.apply or fw.watch?): it is "
        "changed since last apply", None)
