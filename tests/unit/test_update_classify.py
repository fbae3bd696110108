"""Classifying an upgrade from facts recorded on the lab's Debian 12 host, and the inventory's `update:` section."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from aegir.errors import InventoryError
from aegir.inventory import parse
from aegir.update.apt import owners, parse_dpkg_search, parse_package_info, parse_simulation, parse_units
from aegir.update.classify import HostFacts, classify, docker_dependencies, fleet_summary
from aegir.update.settings import DEFAULT_CRUCIAL_UNITS, UpdateConfig, for_host

DATA = Path(__file__).parent / "data"
LAB = UpdateConfig(crucial_units=(*DEFAULT_CRUCIAL_UNITS, "aegir-lab-beacon.service"))


def lab_facts(live_restore: bool | None = False) -> HostFacts:
    units = parse_units((DATA / "apt_lab_systemctl_show.txt").read_text())
    found = parse_dpkg_search((DATA / "apt_lab_dpkg_S.txt").read_text())
    fragments = {u: units[u].fragment_path for u in docker_dependencies(units)}
    by_path = owners(fragments.values(), found)
    return HostFacts(
        simulation=parse_simulation((DATA / "apt_lab_upgrade.txt").read_text()),
        held=("aegir-lab-held",),
        packages=parse_package_info((DATA / "apt_lab_package_info.txt").read_text()),
        units=units,
        unit_owners={u: by_path[p] for u, p in fragments.items()},
        live_restore=live_restore,
    )


def test_docker_requires_the_lab_unit_through_the_admins_drop_in():
    units = parse_units((DATA / "apt_lab_systemctl_show.txt").read_text())
    assert docker_dependencies(units) == {"aegir-lab-dockdep.service": ("docker.service Requires=",)}


def test_each_lab_package_gets_exactly_its_kind():
    review = classify(lab_facts(), LAB)
    assert {p.name: p.kinds for p in review.packages} == {
        "aegir-lab-dockdep": ("docker",),
        "containerd": ("docker", "crucial"),
        "aegir-lab-beacon": ("crucial",),
        "linux-image-aegir-lab": ("reboot",),
        "libaegirlab-sec1": ("security",),
        "libaegirlab1": ("other",),
    }
    assert [p.name for p in review.packages][:2] == ["aegir-lab-dockdep", "containerd"]  # most serious first
    assert review.risky and review.held == ("aegir-lab-held",)


def test_reasons_say_how_docker_is_restarted_and_what_happens_to_containers():
    review = classify(lab_facts(), LAB)
    by_name = {p.name: p for p in review.packages}
    assert by_name["aegir-lab-dockdep"].reasons == (
        "ships aegir-lab-dockdep.service, which docker.service Requires=, and restarts it "
        "(postinst: deb-systemd-invoke restart (debhelper's $_dh_action on upgrade)); "
        "running containers stop and restart with it (live-restore is off)",)
    assert by_name["containerd"].reasons[0].startswith("Docker engine package: restarts containerd.service")
    assert by_name["aegir-lab-beacon"].reasons == (
        "restarts aegir-lab-beacon.service, active and crucial "
        "(postinst: deb-systemd-invoke restart (debhelper's $_dh_action on upgrade))",)
    assert by_name["libaegirlab-sec1"].reasons == ("security update (Debian-Security:12/lab-security)",)
    live = classify(lab_facts(live_restore=True), LAB)
    assert "containers keep running (live-restore is on)" in live.packages[0].reasons[0]


def test_a_unit_not_in_the_crucial_list_is_only_mentioned():
    review = classify(lab_facts(), UpdateConfig())
    beacon = next(p for p in review.packages if p.name == "aegir-lab-beacon")
    assert beacon.kinds == ("other",) and not beacon.risky
    assert beacon.reasons[0].startswith("restarts aegir-lab-beacon.service, active but not crucial")


def test_the_headline_and_the_fleet_summary():
    risky = classify(lab_facts(), LAB)
    assert risky.headline() == ("would restart docker via aegir-lab-dockdep, containerd; "
                                "would restart aegir-lab-beacon.service via aegir-lab-beacon")
    facts = lab_facts()
    quiet = classify(replace(facts, simulation=replace(facts.simulation, upgrades=facts.simulation.upgrades[3:])), LAB)
    assert quiet.headline() == "3 upgrades, nothing risky (reboot needed after)" and not quiet.risky
    empty = classify(replace(facts, simulation=parse_simulation("")), LAB)
    assert empty.headline() == "nothing to upgrade"
    assert fleet_summary([("hyp1", quiet, None), ("hyp2", risky, None), ("hyp3", None, "cannot connect\nmore")]) == (
        "3 hosts: hyp1 3 upgrades, nothing risky (reboot needed after); hyp2 would restart docker via "
        "aegir-lab-dockdep, containerd; would restart aegir-lab-beacon.service via aegir-lab-beacon; "
        "hyp3 failed (cannot connect)")


INVENTORY = """\
defaults:
  update:
    extra_crucial_units: [aegir-lab-beacon]
    notify: {command: "/usr/local/bin/tell --all"}
hosts:
  hyp1: {address: 192.0.2.11}
  hyp2:
    address: 192.0.2.12
    update:
      crucial_units: [ssh]
      notify: {url: "http://127.0.0.1:8080/hook", headers: {X-Token: secret}, timeout: 3}
  hyp3:
    address: 192.0.2.13
    update:
      crucal_units: [ssh]
"""


def test_the_update_section_has_defaults_and_per_host_overrides():
    inv = parse(INVENTORY, "hosts.yml")
    one = for_host(inv, inv.get("hyp1"))
    assert one.crucial_units == (*DEFAULT_CRUCIAL_UNITS, "aegir-lab-beacon.service")
    assert one.notifier.command == ("/usr/local/bin/tell", "--all") and one.notifier.kind == "command"
    two = for_host(inv, inv.get("hyp2"))
    assert two.crucial_units == ("ssh.service", "aegir-lab-beacon.service")
    assert (two.notifier.url, dict(two.notifier.headers), two.notifier.timeout) == \
        ("http://127.0.0.1:8080/hook", {"X-Token": "secret"}, 3.0)
    assert "X-Token" not in repr(two.notifier)


def test_a_misspelt_update_key_is_an_inventory_error_at_its_line():
    inv = parse(INVENTORY, "hosts.yml")
    with pytest.raises(InventoryError) as err:
        for_host(inv, inv.get("hyp3"))
    assert str(err.value) == "hosts.yml:15: hyp3: update: unknown key 'crucal_units' (did you mean 'crucial_units'?)"


@pytest.mark.parametrize("notify, message", [
    ("{}", "update.notify: needs exactly one of 'command' (run on the host) or 'url' (HTTP POST)"),
    ("{url: ftp://x}", "update.notify.url: must be an http:// or https:// URL"),
    ("{command: [], url: null}", "update.notify.command: must be a command line or a non-empty list of words"),
    ("{url: http://x, timeout: 0}", "update.notify.timeout: must be a number of seconds above 0"),
    ("{url: http://x, zzz: 5}", "update.notify: unknown key 'zzz' (known: command, url, headers, timeout)"),
])
def test_a_bad_notifier_is_refused(notify, message):
    inv = parse(f"hosts:\n  h:\n    address: h\n    update:\n      notify: {notify}\n", "hosts.yml")
    with pytest.raises(InventoryError, match=message.replace(".", r"\.").replace("(", r"\(").replace(")", r"\)")):
        for_host(inv, inv.get("h"))


def test_a_dist_upgrade_removing_the_docker_engine_is_risky_and_said_first():
    facts = lab_facts()
    upgrades = tuple(u for u in facts.simulation.upgrades if u.name == "libaegirlab1")
    sim = replace(facts.simulation, upgrades=upgrades, removals=("docker.io", "oldtool"))
    review = classify(replace(facts, simulation=sim, dist=True), LAB)
    assert review.risky and review.docker_removals == ("docker.io",)
    assert review.headline() == "would stop docker: removes docker.io"
    harmless = classify(replace(facts, simulation=replace(sim, removals=("oldtool",)), dist=True), LAB)
    assert not harmless.risky and harmless.headline() == "1 upgrade, nothing risky"


def test_a_package_whose_new_version_could_not_be_read_fails_the_review_instead_of_passing_as_harmless():
    from aegir.errors import AegirError
    from aegir.update.facts import check_read

    out = ("@@aegir@@ package foo\n@@aegir@@ download-failed\nE: Can't find a source to download version '2' of "
           "'foo:amd64'\n@@aegir@@ old-files\n/lib/systemd/system/foo.service\n@@aegir@@ package bar\n"
           "@@aegir@@ skipped\n@@aegir@@ old-files\n")
    packages = parse_package_info(out)
    check_read({"bar": "1"}, packages, host="hyp1")
    with pytest.raises(AegirError) as err:
        check_read({"foo": "2", "bar": "1", "baz": "3"}, packages, host="hyp1")
    assert str(err.value) == ("hyp1: cannot review: could not read the maintainer scripts of foo 2 (E: Can't find a "
                              "source to download version '2' of 'foo:amd64'); baz 3 (no answer)")
