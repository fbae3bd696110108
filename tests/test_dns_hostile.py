"""A hostile project cannot shape the fleet's DNS (issue 22), end to end on the lab: the takeover
project on hyp2 (``ns1`` non-public with MX at ``hyp1`` and the apex) and a name of 4 x 63 labels on
hyp3 make no record, one problem row each (host, compose file and line), exit 1; every other name
still renders, the zones load in BIND, NSD and Knot, and dns.check against Knot and NSD reports the
rows instead of a traceback. An in-zone name server without an address refuses the inventory."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.helpers import run_inv
from tests.knot import Knot, Nsd, zones_refused
from tests.lab import Lab
from tests.test_dns import lab_inventory

SRV = "dnshostile"
LONG = ".".join(c * 63 for c in "abcd")
GLUE = [{"name": "ns1.tedomum.org", "ipv4": "192.0.2.53", "ipv6": "2001:db8::53"},
        {"name": "ns2.tedomum.org", "ipv4": "192.0.2.54"}]
DNS = {"service_domain": "tedomum.in", "cname_domain": "tedomum.net", "rest_domain": "tedomum.org",
       "nameservers": GLUE, "ttl": 300}
PROJECTS = {
    "hyp1": {"apps/cloud": """\
            services: {web: {image: aegir-lab/busybox:latest}}
            x-aegir: {dns: {names: [cloud]}}
            """},
    "hyp2": {"apps/evil": """\
            services:
              web: {image: aegir-lab/busybox:latest}
            x-aegir:
              dns:
                names:
                  - chat
                  - {name: ns1, public: false, mx: [hyp1, "@"]}
                  - {name: irc, public: false}
            """},
    "hyp3": {"apps/long": f"""\
            services: {{web: {{image: aegir-lab/busybox:latest}}}}
            x-aegir:
              dns:
                names: [wiki, '{LONG}']
            """},
}
FILE = "/srv/dnshostile/apps/{}/docker-compose.yml"
ROWS = [
    f"hyp2: {FILE.format('evil')}:7: ns1.tedomum.org. is a name server of the inventory",
    f"hyp2: {FILE.format('evil')}:7: MX at hyp1.tedomum.org. -> ns1.tedomum.org.: hyp1.tedomum.org. is hyp1's admin "
    "name",
    f"hyp2: {FILE.format('evil')}:7: MX at tedomum.org. -> ns1.tedomum.org.: tedomum.org. is the apex of the zone "
    "tedomum.org."]
LONG_ROW = (f"hyp3: {FILE.format('long')}:4: x-aegir.dns.names[1].name: {LONG!r} is 257 octets in wire form: a DNS "
            "name is at most 255")


@pytest.fixture(scope="module")
def inventory(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield from lab_inventory(lab, tmp_path_factory, SRV, DNS, PROJECTS)


@pytest.fixture(scope="module")
def zones(inventory: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("hostile")
    done = run_inv("dns.zone", "--serial", "1", "--out", str(out / "zones"), "-f", "json", inventory=inventory)
    return {"dir": out, "code": done.returncode, "stderr": done.stderr, **json.loads(done.stdout)}


def test_the_takeover_and_the_long_name_make_no_record_one_row_each_and_exit_1(zones):
    assert zones["code"] == 1, zones["stderr"]
    assert sorted(zones["problems"]) == sorted([LONG_ROW, *ROWS])
    assert [ln for ln in zones["stderr"].splitlines() if ln.startswith("warning: ")] == [
        f"warning: {p}" for p in zones["problems"]]
    records = {(r["name"], r["type"], r["data"]) for z in zones["zones"] for r in z["records"]}
    assert [r for r in records if r[1] == "MX"] == []
    assert {r for r in records if r[0] == "ns1.tedomum.org."} == {
        ("ns1.tedomum.org.", "A", "192.0.2.53"), ("ns1.tedomum.org.", "AAAA", "2001:db8::53")}  # hosts.yml's only
    assert not any("aaaa" in r[0] for r in records)
    assert {("chat.tedomum.net.", "CNAME", "hyp2.tedomum.in."), ("irc.tedomum.org.", "CNAME", "hyp2.tedomum.in."),
            ("cloud.tedomum.net.", "CNAME", "hyp1.tedomum.in."), ("wiki.tedomum.net.", "CNAME", "hyp3.tedomum.in.")
            } <= records


def test_every_zone_loads_in_bind_nsd_and_knot_and_dns_check_reports_the_rows_on_two_servers(zones, inventory,
                                                                                              tmp_path):
    origins = [z["origin"] for z in zones["zones"]]
    assert zones_refused(zones["dir"] / "zones", origins) == {}
    shutil.copytree(zones["dir"] / "zones", tmp_path / "zones")
    with Knot.serving(zones["dir"], origins, serial=1) as knot, Nsd.serving(tmp_path, origins, serial=1) as nsd:
        for server in (knot, nsd):
            done = run_inv("dns.check", "--server", server.server, "-f", "json", inventory=inventory)
            assert done.returncode == 1 and "Traceback" not in done.stderr, done.stdout + done.stderr
            report = json.loads(done.stdout)
            assert (report["differences"], sorted(report["problems"])) == ([], sorted([LONG_ROW, *ROWS]))


def test_an_in_zone_name_server_without_an_address_refuses_the_inventory(inventory, tmp_path):
    data = yaml.safe_load(inventory.read_text())
    data["defaults"]["dns"]["nameservers"] = ["ns1.tedomum.org", "ns2.tedomum.org"]  # the issue's: no glue
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    done = run_inv("dns.zone", inventory=path)
    assert done.returncode == 2 and done.stdout == "", done.stdout + done.stderr
    assert done.stderr.rstrip("\n").endswith(
        "hyp1: dns.nameservers[0]: ns1.tedomum.org. is a name server inside the zone tedomum.org. with no "
        "address (A or AAAA) in hosts.yml: the zone tedomum.org. would not load; write "
        "{name: ns1.tedomum.org, ipv4: ADDR, ipv6: ADDR} or name a host's admin name"), done.stderr
