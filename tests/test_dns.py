"""dns.zone and dns.check end to end: zones generated from a 3-host lab inventory and the projects on
the hosts load in BIND's and NSD's zone checkers and in two real authoritative servers (Knot DNS and NSD,
started here on loopback ports), and dns.check against each finds no difference; each edit of one served
record is reported as exactly that record. The default serial is YYYYMMDDnn, moved on only by a change.
``--dry`` writes no file; a host whose /srv is not mounted fails, and no zone is made.

The projects live under /srv/dnstest on the session lab's hosts (the inventory's ``srv:``), so other
tests' /srv/apps never see them; /srv/dnstest is bind-mounted on itself there, since dns reads the
projects of a mounted /srv only.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import yaml

from aegir.action import DRY_LINE
from tests.helpers import run_inv, usage_error, write_inventory
from tests.knot import Knot, Nsd, zones_refused
from tests.lab import Lab

SRV = "dnstest"
DNS = {"service_domain": "tedomum.in", "cname_domain": "tedomum.net", "rest_domain": "tedomum.org",
       "nameservers": ["hyp1.tedomum.org"], "ttl": 300, "mx": {"tedomum.net": ["mail.tedomum.net"]}}
PROJECTS = {
    "hyp1": {
        "apps/cloud": """\
            services:
              web:
                image: aegir-lab/busybox:latest
                ports: ["{service4}:443:443", "[{service6}]:443:443"]
            x-aegir:
              dns:
                names: [cloud, files]
            """,
        "apps/mail": """\
            services:
              smtp: {image: aegir-lab/busybox:latest}
            x-aegir:
              dns:
                names:
                  - {name: mail, cname: false, mx: [mail]}
                  - {name: webmail}
            """,
    },
    "hyp2": {
        "apps/chat": """\
            services:
              synapse: {image: aegir-lab/busybox:latest}
            x-aegir:
              dns:
                address: ${SERVICE_IPV4}
                names:
                  - {name: matrix, srv: ["_matrix._tcp:8448"]}
                  - {name: xmpp, srv: ["_xmpp-client._tcp:5222", "_xmpp-server._tcp:5269"]}
            """,
        "users/bnc": """\
            services:
              znc: {image: aegir-lab/busybox:latest}
            x-aegir:
              dns:
                names: [{name: irc, public: false}]
            """,
    },
    "hyp3": {
        "apps/wiki": """\
            services:
              wiki: {image: aegir-lab/busybox:latest}
            x-aegir: {dns: {names: [wiki]}}
            """,
        "apps/pad": """\
            services:
              pad:
                image: aegir-lab/busybox:latest
                labels: {aegir.dns.names: "pad, notes"}
            """,
    },
}
def lab_inventory(lab: Lab, tmp_path_factory: pytest.TempPathFactory, srv: str, dns: Mapping[str, object],
                  projects: Mapping[str, Mapping[str, str]], envs: Mapping[str, str] = {}) -> Iterator[Path]:
    """A 3-host lab inventory with `dns` as its dns: section, `projects` (host -> folder -> compose text,
    ``{service4}``/``{service6}`` filled in) written under each host's /srv/`srv`, bind-mounted on itself."""
    hosts = [lab.host(n) for n in ("hyp1", "hyp2", "hyp3")]
    data = lab.inventory_data(hosts)
    data["defaults"]["dns"] = dict(dns)
    for h in hosts:
        data["hosts"][h.name]["srv"] = f"/srv/{srv}"
        for path, text in projects.get(h.name, {}).items():
            body = text.replace("{service4}", str(h.addresses.service_ipv4)).replace(
                "{service6}", str(h.addresses.service_ipv6))
            h.write(f"{srv}/{path}/docker-compose.yml", "\n".join(ln[12:] for ln in body.splitlines()) + "\n")
    for where, text in envs.items():
        host, path = where.split(":", 1)
        lab.host(host).write(f"{srv}/{path}/.env", text.format(**{
            "SERVICE_IPV4": lab.host(host).addresses.service_ipv4}))
    path = tmp_path_factory.mktemp("dns") / "hosts.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    try:
        for h in hosts:
            h.run(["mount", "--bind", f"/srv/{srv}", f"/srv/{srv}"])
        yield path
    finally:
        for h in hosts:
            h.run(["umount", f"/srv/{srv}"], check=False)
            shutil.rmtree(h.root(f"/srv/{srv}"), ignore_errors=True)


@pytest.fixture(scope="module")
def inventory(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The 3-host lab inventory with a dns: section, its projects written under each host's /srv/dnstest."""
    yield from lab_inventory(lab, tmp_path_factory, SRV, DNS, PROJECTS,
                             {"hyp2:apps/chat": "SERVICE_IPV4={SERVICE_IPV4}\n"})


@pytest.fixture(scope="module")
def zones(inventory: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """dns.zone --out: the zone files, and the plan as JSON."""
    out = tmp_path_factory.mktemp("knot")
    done = run_inv("dns.zone", "--serial", "1", "--out", str(out / "zones"), "-f", "json", inventory=inventory)
    assert done.returncode == 0, done.stdout + done.stderr
    return {"dir": out, **json.loads(done.stdout)}


@pytest.fixture(scope="module")
def knot(zones: dict) -> Iterator[Knot]:
    with Knot.serving(zones["dir"], [z["origin"] for z in zones["zones"]], serial=1) as server:
        yield server


@pytest.fixture(scope="module")
def nsd(zones: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nsd]:
    d = tmp_path_factory.mktemp("nsd")
    shutil.copytree(zones["dir"] / "zones", d / "zones")
    with Nsd.serving(d, [z["origin"] for z in zones["zones"]], serial=1) as server:
        yield server


def check(knot: Knot | Nsd, inventory: Path, *extra: str) -> tuple[int, dict]:
    done = run_inv("dns.check", "--server", knot.server, "-f", "json", *extra, inventory=inventory)
    assert done.returncode in (0, 1), done.stdout + done.stderr
    return done.returncode, json.loads(done.stdout)


# --------------------------------------------------------------------------- tests


def test_the_zones_hold_every_projects_names(zones):
    records = {(r["name"], r["type"], r["data"]) for z in zones["zones"] for r in z["records"]}
    assert zones["problems"] == []
    assert {(n, t) for n, t, _ in records} >= {
        ("cloud.tedomum.net.", "CNAME"), ("files.tedomum.net.", "CNAME"), ("webmail.tedomum.net.", "CNAME"),
        ("wiki.tedomum.net.", "CNAME"), ("mail.tedomum.net.", "A"), ("mail.tedomum.net.", "AAAA"),
        ("mail.tedomum.net.", "MX"), ("tedomum.net.", "MX"), ("_matrix._tcp.tedomum.net.", "SRV"), ("_xmpp-server._tcp.tedomum.net.", "SRV"),
        ("matrix.tedomum.net.", "AAAA"), ("irc.tedomum.org.", "CNAME"), ("hyp3.tedomum.in.", "AAAA"),
        ("hyp1.tedomum.org.", "A")}
    assert ("cloud.tedomum.net.", "CNAME", "hyp1.tedomum.in.") in records
    assert ("wiki.tedomum.net.", "CNAME", "hyp3.tedomum.in.") in records
    assert ("notes.tedomum.net.", "CNAME", "hyp3.tedomum.in.") in records  # from a service label
    assert len([z for z in zones["zones"] if z["origin"].endswith(".ip6.arpa.")]) == 3


def test_every_zone_loads_in_bind_and_nsd(zones):
    assert zones_refused(zones["dir"] / "zones", [z["origin"] for z in zones["zones"]]) == {}


@pytest.mark.parametrize("server", ["knot", "nsd"])
def test_a_server_loaded_with_the_zones_has_no_difference(server, inventory, request):
    served = request.getfixturevalue(server)
    code, report = check(served, inventory)
    assert (code, report["differences"], report["notes"], report["problems"]) == (0, [], [], [])
    assert report["summary"]["checked"] > 30 and report["summary"]["ok"] is True
    assert [(h["host"], h["status"]) for h in report["hosts"]] == [("hyp1", "ok"), ("hyp2", "ok"), ("hyp3", "ok")]
    table = run_inv("dns.check", "--server", served.server, inventory=inventory)
    assert table.returncode == 0 and "no difference" in table.stdout, table.stdout + table.stderr


def test_one_edited_record_is_reported_and_nothing_else(knot, inventory):
    knot.edit("tedomum.net.", "cloud.tedomum.net.", "CNAME hyp1.tedomum.in.", "CNAME hyp2.tedomum.in.")
    try:
        code, report = check(knot, inventory)
        assert code == 1
        assert report["differences"] == [{"name": "cloud.tedomum.net.", "type": "CNAME", "status": "wrong",
                                          "expected": ["hyp1.tedomum.in."], "served": ["hyp2.tedomum.in."],
                                          "detail": ""}]
    finally:
        knot.edit("tedomum.net.", "cloud.tedomum.net.", "CNAME hyp2.tedomum.in.", "CNAME hyp1.tedomum.in.")


def test_an_added_record_is_unexpected_and_a_removed_one_missing(knot, inventory):
    knot.edit("tedomum.org.", "irc.tedomum.org.", "irc.tedomum.org.", "old.tedomum.org.")
    try:
        code, report = check(knot, inventory)
        assert code == 1
        assert [(d["name"], d["type"], d["status"]) for d in report["differences"]] == [
            ("irc.tedomum.org.", "CNAME", "missing"), ("old.tedomum.org.", "CNAME", "unexpected")]
    finally:
        knot.edit("tedomum.org.", "old.tedomum.org.", "old.tedomum.org.", "irc.tedomum.org.")


def test_an_inventory_without_dns_settings_is_a_usage_error_at_its_line(tmp_path):
    inv = write_inventory(tmp_path, "hosts:\n  local:\n    connection: local\n")
    assert usage_error("dns.zone", inventory=inv) == (f"aegir: {inv}:2: local: no 'dns:' section; set "
                                                      "service_domain, cname_domain and rest_domain under defaults: dns:")


def test_dry_writes_no_file_and_says_which_it_would_write(inventory, tmp_path):
    out = tmp_path / "zones"
    done = run_inv("--dry", "dns.zone", "--serial", "1", "--out", str(out), "-f", "json", inventory=inventory)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["dry"] is True and not out.exists()
    assert {(z["result"], z["file"]) for z in report["zones"]} == {
        ("would", str(out / f"{z['origin'].rstrip('.')}.zone")) for z in report["zones"]}
    assert done.stderr.strip().splitlines()[-1] == DRY_LINE


def test_a_second_run_with_the_same_serial_writes_nothing(inventory, tmp_path):
    out = tmp_path / "zones"
    first = run_inv("dns.zone", "--serial", "7", "--out", str(out), "-f", "json", inventory=inventory)
    assert first.returncode == 0, first.stdout + first.stderr
    assert {z["result"] for z in json.loads(first.stdout)["zones"]} == {"done"}
    before = {p.name: (p.stat().st_mtime_ns, p.read_text()) for p in out.iterdir()}
    again = run_inv("dns.zone", "--serial", "7", "--out", str(out), inventory=inventory)
    assert again.returncode == 0 and again.stderr == "", again.stdout + again.stderr
    assert [line.split()[-1] for line in again.stdout.splitlines()[2:]] == ["ok"] * len(before)
    assert {p.name: (p.stat().st_mtime_ns, p.read_text()) for p in out.iterdir()} == before
    dry = run_inv("dns.zone", "--dry", "--serial", "8", "--out", str(out), inventory=inventory)
    assert dry.returncode == 0 and "would" in dry.stdout, dry.stdout + dry.stderr
    assert {p.name: (p.stat().st_mtime_ns, p.read_text()) for p in out.iterdir()} == before


def test_the_default_serial_is_the_date_and_moves_on_only_with_a_change(inventory, tmp_path):
    out = tmp_path / "zones"
    first = run_inv("dns.zone", "--out", str(out), "-f", "json", inventory=inventory)
    assert first.returncode == 0, first.stdout + first.stderr
    day = int(time.strftime("%Y%m%d", time.gmtime())) * 100
    assert {(z["serial"], z["result"]) for z in json.loads(first.stdout)["zones"]} == {(day, "done")}
    cname = out / "tedomum.net.zone"
    cname.write_text(cname.read_text().replace("wiki.tedomum.net.", "old.tedomum.net."))  # the file drifts
    again = run_inv("dns.zone", "--out", str(out), "-f", "json", inventory=inventory)
    assert again.returncode == 0, again.stdout + again.stderr
    assert {(z["origin"], z["serial"], z["result"]) for z in json.loads(again.stdout)["zones"]
            if z["result"] != "ok" or z["serial"] != day} == {("tedomum.net.", day + 1, "done")}
    assert zones_refused(out, [z["origin"] for z in json.loads(again.stdout)["zones"]]) == {}


LOCAL = """\
defaults:
  dns: {{service_domain: tedomum.in, cname_domain: tedomum.net, rest_domain: tedomum.org,
        nameservers: [local.tedomum.org]}}
hosts:
  local:
    connection: local
    srv: {srv}
    admin_ipv4: 192.0.2.11
    service_ipv4: [192.0.2.111]
    ipv6_prefix: 2001:db8:0:100::/56
    admin_ipv6: 2001:db8:0:100::1
    service_ipv6: ['2001:db8:0:100::11']
"""


@pytest.fixture
def unmounted(tmp_path: Path) -> Path:
    """A local host whose /srv is a plain folder (not a mount point) holding a project that publishes a name."""
    srv = tmp_path / "srv"
    (srv / "apps" / "cloud").mkdir(parents=True)
    (srv / "apps" / "cloud" / "docker-compose.yml").write_text(
        "services: {web: {image: busybox}}\nx-aegir: {dns: {names: [cloud]}}\n")
    return write_inventory(tmp_path, LOCAL.format(srv=srv))


@pytest.mark.parametrize("task", [["dns.zone", "--out", "ZONES"], ["dns.check", "--server", "127.0.0.1:9"]])
def test_a_host_whose_srv_is_not_mounted_fails_and_no_zone_is_made(unmounted, tmp_path, task):
    out = tmp_path / "zones"
    done = run_inv(*[str(out) if a == "ZONES" else a for a in task], "-f", "json", inventory=unmounted)
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert [(h["host"], h["status"], h["error"]) for h in report["hosts"]] == [
        ("local", "failed", f"{tmp_path / 'srv'} is not mounted: run boot.mount")]
    assert "zones" not in report and "differences" not in report and not out.exists()
    table = run_inv(*[str(out) if a == "ZONES" else a for a in task], inventory=unmounted)
    assert table.returncode == 1 and "FAILED: " in table.stdout and "is not mounted: run boot.mount" in table.stdout
    assert not out.exists()


def test_a_mistyped_domain_or_serial_is_a_usage_error_before_any_host_is_read(unmounted):
    assert usage_error("dns.zone", "--domain", "tedomum.nte", inventory=unmounted) == (
        "aegir: dns.zone --domain: no zone 'tedomum.nte' (did you mean 'tedomum.net'?); zones: tedomum.in, "
        "tedomum.net, tedomum.org, 1.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa, 2.0.192.in-addr.arpa")
    assert usage_error("dns.zone", "--serial", "0", inventory=unmounted) == (  # refused as the line is parsed
        "aegir: dns.zone --serial: expected a SOA serial from 1 to 4294967295, not '0'")
