"""fw end to end: real packets from the lab's client namespace (the Internet) to a lab host whose
dockerd runs with --iptables=false --ip6tables=false --userland-proxy=false --ipv6, so aegir's
ruleset is the only thing publishing anything.

The tests use a host of their own (``fw``), added to the session lab and removed at the end, since
they replace its firewall; SSH from the admin side is checked after every apply.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.helpers import REPO, lab_ssh, run_inv, ssh_run, usage_error, write_inventory
from tests.lab import Client, Lab, LabHost
from tests.lab.plan import BRIDGE_IPV6, CLIENT_IPV6

pytestmark = pytest.mark.timeout(300)
IMAGE = "aegir-lab/busybox:latest"
CGI = '#!/bin/sh\necho "Content-Type: text/plain"\necho\necho "$REMOTE_ADDR"\n'
TEMPLATE = "templates/nftables.nft.j2"

# Run in the client namespace: fetch a URL (prints the body, exit 1 if no answer), or wait until a
# TCP port answers and print when (time.monotonic is the same clock in every process).
CLIENT = textwrap.dedent("""\
    import socket, sys, time, urllib.request
    if sys.argv[1] == "get":
        try:
            print(urllib.request.urlopen(sys.argv[2], timeout=float(sys.argv[3])).read().decode().strip())
        except Exception as exc:
            print(type(exc).__name__, exc); sys.exit(1)
    else:  # wait ADDR PORT SECONDS
        addr, port, deadline = sys.argv[2], int(sys.argv[3]), time.monotonic() + float(sys.argv[4])
        while time.monotonic() < deadline:
            try:
                socket.create_connection((addr, port), timeout=0.05).close()
                print(time.monotonic()); sys.exit(0)
            except OSError:
                time.sleep(0.01)
        sys.exit(1)
""")


@dataclass
class FwLab:
    """The lab, the host under test, its inventories (over SSH, and local for fw.watch) and helpers."""

    lab: Lab
    host: LabHost
    inventory: Path
    local_inventory: Path
    client_script: Path

    @property
    def service4(self) -> str:
        return str(self.host.addresses.service_ipv4)

    @property
    def service6(self) -> str:
        return str(self.host.addresses.service_ipv6)

    def docker(self, *args: str) -> str:
        return self.host.run(["docker", *args], timeout=60).stdout.strip()

    def get(self, url: str, timeout: float = 1.5) -> str | None:
        """The body `url` answers to the client namespace, or None when nothing answers."""
        done = self.lab.client.run([sys.executable, str(self.client_script), "get", url, str(timeout)],
                                   check=False, timeout=timeout + 10)
        return done.stdout.strip() if done.returncode == 0 else None

    def inv(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_inv(*args, inventory=self.inventory, timeout=120)

    def apply(self) -> dict:
        """``fw.apply --format json``, which must succeed; then SSH must still work."""
        done = self.inv("fw.apply", "--format", "json")
        assert done.returncode == 0, done.stdout + done.stderr
        assert_ssh_works(self)
        return envelope(done, "fw.apply", dry=False)["hosts"][0]

    def live(self) -> str:
        return self.host.run(["nft", "-s", "list", "table", "inet", "aegir"], check=False).stdout


def envelope(done: subprocess.CompletedProcess[str], task: str, *, dry: bool | None = None) -> dict:
    """The JSON a fw task printed: the one envelope of every task (aegir/report.schema.json's required keys)."""
    doc = json.loads(done.stdout)
    assert (doc["task"], doc["dry"]) == (task, dry) and isinstance(doc["summary"], dict), doc
    assert all({"host", "status", "error"} <= set(h) for h in doc["hosts"]), doc["hosts"]
    return doc


def assert_ssh_works(fw: FwLab) -> None:
    """A new SSH session from the admin side works on the admin IPv4 and IPv6."""
    for address in (fw.host.addresses.admin_ipv4, fw.host.addresses.admin_ipv6):
        with lab_ssh(fw.lab, fw.host, address, timeout=5) as client:
            assert ssh_run(client, "hostname", timeout=10) == fw.host.name


def client_address(seen: str) -> str:
    return seen.strip("[]").removeprefix("::ffff:")


@pytest.fixture(scope="module")
def fw(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FwLab]:
    host = lab.add_host("fw")
    try:
        tmp = tmp_path_factory.mktemp("fw")
        entry = lab.inventory_data([host])
        entry["hosts"]["fw"]["fw"] = {"admin_sources": [str(lab.names.bridge_ipv4), str(BRIDGE_IPV6)]}
        (tmp / "hosts.yml").write_text(yaml.safe_dump(entry))
        local = {k: v for k, v in entry["hosts"]["fw"].items() if k not in ("address", "port", "docker_start")}
        (tmp / "local.yml").write_text(yaml.safe_dump({"hosts": {"fw": {**local, "connection": "local"}}}))
        (tmp / "client.py").write_text(CLIENT)
        cgi = host.write("fwtest/www/cgi-bin/ip", CGI)
        os.chmod(cgi, 0o755)
        host.write("fwtest/www/hello", "hello\n")
        yield FwLab(lab, host, tmp / "hosts.yml", tmp / "local.yml", tmp / "client.py")
    finally:
        lab.remove_host(host)


@pytest.fixture(scope="module")
def served(fw: FwLab) -> FwLab:
    """web publishes 80 as 8080 (and listens on 81 too); hidden publishes nothing; other is on a second network."""
    www = ["-v", "/srv/fwtest/www:/www", IMAGE]
    fw.docker("run", "-d", "--name", "web", "-p", "8080:80", *www, "sh", "-c",
              "httpd -p 81 -h /www; exec httpd -f -p 80 -h /www")
    fw.docker("run", "-d", "--name", "hidden", *www, "httpd", "-f", "-p", "80", "-h", "/www")
    prefix = fw.host.addresses.ipv6_prefix
    net6 = ipaddress.IPv6Network((int(prefix.network_address) + (2 << 64), 64))
    fw.docker("network", "create", "--ipv6", "--subnet", f"172.30.{fw.host.addresses.index}.0/24",
              "--subnet", str(net6), "appnet")
    fw.docker("run", "-d", "--name", "other", "--network", "appnet", IMAGE, "sleep", "3600")
    return fw


def addresses_of(fw: FwLab, name: str) -> tuple[str, str]:
    out = fw.docker("inspect", "-f", "{{.NetworkSettings.IPAddress}} {{.NetworkSettings.GlobalIPv6Address}}", name)
    v4, v6 = out.split()
    return v4, v6


# --------------------------------------------------------------------------- no lab needed

#: A host nothing answers at: ``fw.render --from-json`` must need no connection.
GONE = "hosts:\n  gone:\n    address: 192.0.2.254\n    admin_ipv4: 192.0.2.254\n"
GONE_PUBLISHING = GONE + ("    service_ipv4: [198.51.100.101]\n    ipv6_prefix: 2001:db8:0:100::/56\n"
                          "    service_ipv6: ['2001:db8:0:100::11']\n")


def render_from_json(inventory: Path, saved: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_inv("fw.render", "--from-json", str(saved), *args, inventory=inventory, timeout=30)


def test_render_from_a_saved_inspect_needs_no_docker_and_no_connection(tmp_path: Path) -> None:
    inventory = write_inventory(tmp_path, GONE_PUBLISHING)
    saved = REPO / "tests/unit/data/fw_inspect_lab.json"
    done = render_from_json(inventory, saved)
    assert done.returncode == 0, done.stderr
    assert "198.51.100.101 . tcp . 8080 : 172.30.0.2 . 80,  # web" in done.stdout
    assert done.stdout.startswith("# aegir firewall for gone")
    warned = "v4app: no IPv6 address: tcp/[2001:db8:0:100::11]:8181 is not published"
    assert f"\n# warning: {warned}\n" in done.stdout  # a comment of the ruleset, and a line on stderr
    assert done.stderr == f"warning: gone: {warned}\n"
    as_json = envelope(render_from_json(inventory, saved, "--format", "json"), "fw.render")
    assert len(as_json["hosts"][0]["exposures"]) == 14
    assert as_json["hosts"][0]["warnings"] == [warned]


@pytest.mark.parametrize("task", ["fw.apply", "fw.render", "fw.diff", "fw.status", "fw.apply --dry"])
def test_a_mistake_in_a_hosts_fw_section_is_a_usage_error_before_any_host_is_touched(tmp_path: Path,
                                                                                      task: str) -> None:
    # nothing answers at either address: a host tried would take the connect timeout and be a failed row
    inventory = write_inventory(tmp_path, GONE + "  also:\n    address: 192.0.2.253\n    admin_ipv4: 192.0.2.253\n"
                                         "    fw:\n      ipsec: false\n      input: [tcp/9100, udp/70000]\n")
    start = time.monotonic()
    said = usage_error("-t", "10", *task.split(), inventory=inventory)
    assert said == (f"aegir: {inventory}:10: also: fw.input[1]: 'udp/70000': '70000' is not a port number "
                    "from 1 to 65535"), said
    assert time.monotonic() - start < 8


def test_watch_has_no_dry_run_and_refuses_one(tmp_path: Path) -> None:
    # the Docker socket does not exist: should the refusal go, the watcher could only retry, never apply here
    inventory = write_inventory(tmp_path, f"hosts:\n  here:\n    connection: local\n"
                                          f"    docker_host: unix://{tmp_path}/none.sock\n")
    done = run_inv("--dry", "fw.watch", inventory=inventory, timeout=30)
    assert done.returncode == 2  # a usage error, in one line
    assert done.stderr == ("aegir: fw.watch applies a ruleset at every change and has no dry run: see what it "
                           "would apply with `inv fw.diff`\n")


@pytest.mark.parametrize("name,ports,message", [
    ("digits", {"80/tcp": [{"HostIp": "", "HostPort": "\u0668\u0660"}]}, "HostPort: '\u0668\u0660' is not a port number"),
    ("zero", {"80/tcp": [{"HostIp": "", "HostPort": "0"}]}, "HostPort: '0' is not a port number from 1 to 65535"),
    ("big", {"80/tcp": [{"HostIp": "", "HostPort": "70000"}]}, "HostPort: '70000' is not a port number"),
    ("list", [{"80/tcp": [{"HostPort": "80"}]}], "NetworkSettings.Ports: expected an object, got list"),
])
def test_render_refuses_odd_docker_inspect_data_in_one_line(tmp_path: Path, name: str, ports: object,
                                                            message: str) -> None:
    inventory = write_inventory(tmp_path, GONE)
    saved = tmp_path / "inspect.json"
    saved.write_text(json.dumps([{"Id": "c1", "Name": f"/{name}", "State": {"Running": True},
                                  "NetworkSettings": {"Ports": ports, "Networks": {"bridge": {
                                      "IPAddress": "172.17.0.2"}}}}]))
    done = render_from_json(inventory, saved)
    assert done.returncode == 1, done.stdout
    assert "Traceback" not in done.stderr
    assert f"container '{name}': " in done.stderr and message in done.stderr


def test_render_keeps_a_container_name_with_newlines_in_its_comment(tmp_path: Path) -> None:
    inventory = write_inventory(tmp_path, GONE_PUBLISHING)
    saved = tmp_path / "inspect.json"
    saved.write_text(json.dumps([{"Id": "c1", "Name": "/web\n}\nflush ruleset\ntable ip evil {", "State": {"Running": True},
                                  "NetworkSettings": {"Ports": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]},
                                                      "Networks": {"bridge": {"IPAddress": "172.17.0.2"}}}}]))
    done = render_from_json(inventory, saved)
    assert done.returncode == 0, done.stderr
    assert "\t\t\t198.51.100.101 . tcp . 8080 : 172.17.0.2 . 80,  # web?}?flush ruleset?table ip evil {\n" in done.stdout
    assert not [ln for ln in done.stdout.splitlines() if ln.startswith(("flush", "table ip"))]


# --------------------------------------------------------------------------- packets


def test_only_published_ports_answer_and_containers_see_the_client(served: FwLab) -> None:
    fw = served
    _, web6 = addresses_of(fw, "web")
    _, hidden6 = addresses_of(fw, "hidden")
    before = lab_ssh(fw.lab, fw.host, timeout=5)  # a session older than the firewall
    # Without aegir's ruleset nothing is published and every container is wide open over IPv6:
    assert fw.live() == ""
    assert fw.get(f"http://{fw.service4}:8080/hello") is None
    assert fw.get(f"http://[{hidden6}]:80/hello") == "hello"

    result = fw.apply()
    assert result["changed"] and result["exposures"] == 2

    assert client_address(fw.get(f"http://{fw.service4}:8080/cgi-bin/ip")) == str(fw.lab.names.client_ipv4)
    assert client_address(fw.get(f"http://[{fw.service6}]:8080/cgi-bin/ip")) == str(CLIENT_IPV6)
    assert fw.get(f"http://[{web6}]:80/hello") == "hello"  # the published container port, on its global IPv6
    assert fw.get(f"http://{fw.service4}:81/hello") is None  # an unpublished port of the same container
    assert fw.get(f"http://[{web6}]:81/hello") is None  # ... on the container's global IPv6
    assert fw.get(f"http://[{hidden6}]:80/hello") is None  # any port of a container publishing nothing
    assert ssh_run(before, "hostname", timeout=10) == fw.host.name  # the older session survived the first apply
    before.close()


def test_containers_reach_each_other_and_the_outside(served: FwLab) -> None:
    fw = served
    outside = fw.lab.workdir / "fw-outside"
    outside.mkdir(exist_ok=True)
    (outside / "hello").write_text("outside\n")
    server = subprocess.Popen(fw.lab.client.command([sys.executable, "-m", "http.server", "--bind", "::",
                                                     "--directory", str(outside), "8000"]),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        fw.apply()
        request = "printf 'GET /hello HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {} {} | tail -n 1"
        hidden4, _ = addresses_of(fw, "hidden")
        for _ in range(50):  # the server is up
            if fw.get(f"http://{fw.lab.names.client_ipv4}:8000/hello") == "outside":
                break
            time.sleep(0.1)
        assert fw.docker("exec", "web", "sh", "-c", request.format(fw.lab.names.client_ipv4, 8000)) == "outside"
        assert fw.docker("exec", "web", "sh", "-c", request.format(CLIENT_IPV6, 8000)) == "outside"
        assert fw.docker("exec", "other", "sh", "-c", request.format(hidden4, 80)) == "hello"  # across networks
        assert fw.docker("exec", "other", "sh", "-c", request.format(fw.service4, 8080)) == "hello"  # hairpin
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_ssh_is_refused_from_the_internet_but_not_from_the_admin_side(served: FwLab) -> None:
    fw = served
    fw.apply()
    probe = fw.lab.client.run([sys.executable, str(fw.client_script), "wait",
                               str(fw.host.addresses.admin_ipv4), "22", "1"], check=False)
    assert probe.returncode == 1  # admin_sources lists the admin workstation only
    assert_ssh_works(fw)


# --------------------------------------------------------------------------- apply


def test_applying_again_is_nothing_to_do_and_a_hand_edit_is_undone(served: FwLab) -> None:
    fw = served
    fw.apply()
    kept = fw.host.root("/srv/conf/aegir-fw/last-good.nft").stat().st_mtime_ns
    assert fw.apply()["result"] == "nothing to do"
    assert fw.host.root("/srv/conf/aegir-fw/last-good.nft").stat().st_mtime_ns == kept
    assert "nothing to do" in fw.inv("fw.diff").stdout

    fw.host.run(["nft", "add", "rule", "inet", "aegir", "input", "tcp", "dport", "9999", "accept"])
    assert "live table changed since last apply" in fw.inv("fw.diff").stdout
    assert envelope(fw.inv("fw.diff", "--format", "json"), "fw.diff")["hosts"][0]["changed"] is True
    edited = fw.live()
    dry = fw.inv("fw.apply", "--dry", "--format", "json")  # the one dry stop: planned, nothing loaded
    assert dry.returncode == 0 and dry.stderr.endswith("aegir: --dry: stopped before acting; nothing was changed\n")
    [row] = envelope(dry, "fw.apply", dry=True)["hosts"]
    assert (row["result"], row["changed"]) == ("would apply (dry)", True) and fw.live() == edited
    assert fw.apply()["result"].startswith("applied")
    assert "9999" not in fw.live()


def test_a_broken_template_or_an_nft_error_leaves_the_live_ruleset(served: FwLab) -> None:
    fw = served
    fw.apply()
    live = fw.live()
    broken = {
        "{% for e in dnat[4] %}\n": "nftables.nft.j2:1: template error: Unexpected end of template",
        "table inet aegir {}\ndelete table inet aegir\ntable inet aegir {\n\tchain input {\n"
        "\t\ttype filter hook input priority filter; policy drop;\n\t\ttcp dport {{ ssh_port }} acept\n\t}\n}\n":
            "Error: syntax error",
        "table inet aegir {}\ndelete table inet aegir\ntable inet aegir {\n\tchain input {\n"
        "\t\ttype filter hook input priority filter; policy drop;\n\t}\n}\n":
            "refused: this ruleset could lock SSH out",
    }
    try:
        for template, message in broken.items():
            fw.host.write(TEMPLATE, template)
            done = fw.inv("fw.apply")
            assert done.returncode == 1, done.stdout
            assert message in done.stdout
            assert fw.live() == live
            assert fw.get(f"http://{fw.service4}:8080/hello") == "hello"
            assert_ssh_works(fw)
        assert "nothing changed" in done.stdout
        # nft's words name the candidate and its line (the proof loads its text, lines where they were)
        fw.host.write(TEMPLATE, list(broken)[1])
        assert re.search(r"/srv/conf/aegir-fw/candidate-[0-9a-f]{12}\.nft:6:\d+-\d+: Error: syntax error",
                         fw.inv("fw.apply").stdout)
        # container elements the proof leaves out (the model's check accepts them) that nft refuses live: a
        # template whose dnat4 holds no port in its data. One transaction: nothing changed either
        packaged = (REPO / "aegir" / "fw" / "nftables.nft.j2").read_text()
        odd = packaged.replace("type ipv{{ v }}_addr . inet_proto . inet_service : ipv{{ v }}_addr . inet_service",
                               "type ipv{{ v }}_addr . inet_proto . inet_service : ipv{{ v }}_addr")
        assert odd != packaged
        fw.host.write(TEMPLATE, odd)
        done = fw.inv("fw.apply")
        assert done.returncode == 1 and "FAILED: `nft -f /srv/conf/aegir-fw/candidate-" in done.stdout
        assert re.search(r"candidate-[0-9a-f]{12}\.nft:\d+:\d+-\d+: Error: .* \. tcp \. 8080 : ", done.stdout)
        assert "(nothing changed: the live ruleset is the previous one; the rejected ruleset is " in done.stdout
        assert fw.live() == live
        assert fw.get(f"http://{fw.service4}:8080/hello") == "hello"
        assert_ssh_works(fw)
    finally:
        fw.host.root(f"/srv/{TEMPLATE}").unlink()
    assert fw.apply()["result"] == "nothing to do"


def test_a_template_escaping_jinja_runs_nothing_on_the_operators_side(served: FwLab, tmp_path: Path) -> None:
    fw = served
    fw.apply()
    live = fw.live()
    marker = tmp_path / "ran"
    escapes = [
        f"{{{{ cycler.__init__.__globals__.os.popen('id > {marker}').read() }}}}",
        f"{{{{ lipsum.__globals__['os'].system('touch {marker}') }}}}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    ]
    try:
        for escape in escapes:
            fw.host.write(TEMPLATE, f"# aegir\n{escape}\n")
            for task in ("fw.render", "fw.apply"):
                done = fw.inv(task)
                assert done.returncode == 1, done.stdout
                assert "Traceback" not in done.stderr
                assert f"fw:/srv/{TEMPLATE}:2: template refused: it reaches outside the values it is given" in \
                    done.stdout + done.stderr
                assert not marker.exists()
                assert fw.live() == live
    finally:
        fw.host.root(f"/srv/{TEMPLATE}").unlink()


SECOND_TABLE = "\ntable ip other {\n\tchain input {\n\t\ttype filter hook input priority -500; policy drop;\n\t}\n}\n"


@pytest.mark.parametrize("change,message", [
    (lambda t: t + SECOND_TABLE, "refused: the ruleset touches more than table inet aegir (line "),
    (lambda t: t + "\nflush ruleset\n", "refused: the ruleset touches more than table inet aegir (line "),
    (lambda t: t + "table ip6 x {\n}\n", "refused: the ruleset touches more than table inet aegir"),
    (lambda t: t.replace("# SSH to the admin addresses comes first: no later rule can drop it",
                         "tcp dport 22 ip saddr != 203.0.113.77 drop"), "refused: this ruleset could lock SSH out"),
    (lambda t: t.replace("# SSH to the admin addresses comes first: no later rule can drop it",
                         "tcp dport 22 tcp sport != 50022 drop"), "refused: this ruleset could lock SSH out"),
    (lambda t: t.replace("# SSH to the admin addresses comes first: no later rule can drop it",
                         "tcp dport 22 ip saddr @ban drop").replace("\tchain input {",
                         "\tset ban {\n\t\ttype ipv4_addr\n\t}\n\tchain input {", 1),
     "refused: this ruleset could lock SSH out"),
])
def test_a_template_touching_other_tables_or_restricting_ssh_by_source_is_refused_before_apply(
        served: FwLab, change: Callable[[str], str], message: str) -> None:
    fw = served
    fw.apply()
    live, whole = fw.live(), fw.host.run(["nft", "-s", "list", "ruleset"]).stdout
    packaged = (REPO / "aegir/fw/nftables.nft.j2").read_text()
    try:
        fw.host.write(TEMPLATE, change(packaged))
        done = fw.inv("fw.apply")
        assert done.returncode == 1, done.stdout
        assert message in done.stdout and "nothing changed" in done.stdout
        assert fw.live() == live and fw.host.run(["nft", "-s", "list", "ruleset"]).stdout == whole
        assert_ssh_works(fw)
    finally:
        fw.host.root(f"/srv/{TEMPLATE}").unlink()


def test_an_edited_file_with_the_packaged_name_is_proved_too(served: FwLab, tmp_path: Path) -> None:
    fw = served
    fw.apply()
    edited = tmp_path / "nftables.nft.j2"  # same name as aegir's: no proof was skipped by name
    edited.write_text((REPO / "aegir/fw/nftables.nft.j2").read_text() + SECOND_TABLE)
    done = fw.inv("fw.apply", "--template", str(edited))
    assert done.returncode == 1 and "refused: the ruleset touches more than table inet aegir" in done.stdout


def test_a_hand_edited_set_element_is_drift(served: FwLab) -> None:
    fw = served
    fw.apply()
    fw.host.run(["nft", "add", "element", "inet", "aegir", "ssh_from4", "{ 192.0.2.200 }"])
    assert "live table changed since last apply" in fw.inv("fw.diff").stdout
    assert fw.apply()["result"].startswith("applied")
    assert "192.0.2.200" not in fw.live()


def test_an_ssh_port_sshd_does_not_listen_on_is_refused(served: FwLab, tmp_path: Path) -> None:
    fw = served
    fw.apply()
    live = fw.live()
    data = yaml.safe_load(fw.inventory.read_text())
    data["hosts"]["fw"]["fw"]["ssh_port"] = 2222
    wrong = tmp_path / "hosts.yml"
    wrong.write_text(yaml.safe_dump(data))
    done = run_inv("fw.apply", inventory=wrong, timeout=120)
    assert done.returncode == 1, done.stdout
    assert "refused: fw.ssh_port is 2222 but nothing listens on tcp/2222 on the host" in done.stdout
    assert fw.live() == live


def test_an_apply_that_would_lock_out_the_next_login_is_rolled_back(served: FwLab, tmp_path: Path) -> None:
    """admin_sources without this machine: every static check passes (SSH is allowed, from the
    sources configured), the running session survives, but a new login would fail. fw.apply
    opens one, fails, and puts the last good ruleset back through the running session."""
    fw = served
    fw.apply()
    live = fw.live()
    data = yaml.safe_load(fw.inventory.read_text())
    data["hosts"]["fw"]["fw"]["admin_sources"] = [str(fw.lab.names.client_ipv4), str(CLIENT_IPV6)]
    wrong = tmp_path / "hosts.yml"
    wrong.write_text(yaml.safe_dump(data))
    done = run_inv("-t", "3", "fw.apply", "--format", "json", inventory=wrong, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    [row] = json.loads(done.stdout)["hosts"]
    assert row["status"] == "failed"
    assert row["error"].startswith("rolled back: after the apply a new SSH connection failed (cannot connect to ")
    assert row["error"].endswith("; the last good ruleset is live again")
    assert fw.live() == live
    assert_ssh_works(fw)
    assert fw.apply()["result"] == "nothing to do"  # the last good ruleset and its hash are back too


#: nft on the host under test, for one test: any rollback file is refused, as a full disk or a broken nft would.
FAILING_ROLLBACK_NFT = """#!/bin/sh
case "$*" in *rollback-*) echo "nft: the lab refuses rollbacks for this test" >&2; exit 1;; esac
exec /srv/fwtest/nft.real "$@"
"""


def test_a_rollback_that_fails_too_says_the_live_ruleset_is_unverified_and_what_to_do(
        served: FwLab, tmp_path: Path) -> None:
    """The fresh login fails after the apply (as in the test above) and then nft refuses the last good
    ruleset: the row must not claim a rollback, must say that the new ruleset is live and unverified and
    that the running session is the way to fix it; the host keeps running."""
    fw = served
    fw.apply()
    before = fw.live()
    state = "/srv/conf/aegir-fw"
    fw.host.run(["cp", "/usr/sbin/nft", "/srv/fwtest/nft.real"])
    wrapper = fw.host.write("fwtest/nft", FAILING_ROLLBACK_NFT)
    os.chmod(wrapper, 0o755)
    fw.host.run(["mount", "--bind", "/srv/fwtest/nft", "/usr/sbin/nft"])
    try:
        data = yaml.safe_load(fw.inventory.read_text())
        data["hosts"]["fw"]["fw"]["admin_sources"] = [str(fw.lab.names.client_ipv4), str(CLIENT_IPV6)]
        wrong = tmp_path / "hosts.yml"
        wrong.write_text(yaml.safe_dump(data))
        done = run_inv("-t", "3", "fw.apply", "--format", "json", inventory=wrong, timeout=120)
    finally:
        fw.host.run(["umount", "/usr/sbin/nft"])
    assert done.returncode == 1, done.stdout + done.stderr
    [row] = json.loads(done.stdout)["hosts"]
    assert row["status"] == "failed"
    assert "rolled back" not in row["error"]
    assert "loading the last good ruleset failed too" in row["error"]
    assert "nft: the lab refuses rollbacks for this test" in row["error"]
    assert row["error"].endswith("THE LIVE RULESET IS THE NEW, UNVERIFIED ONE; fix it through the running session")
    assert fw.live() != before  # the new ruleset is what the kernel holds, as said
    assert fw.host.run(["test", "-f", f"{state}/last-good.nft"], check=False).returncode == 0  # kept for the fix
    # the fix, through a session that was open all along (here: the lab's own way in)
    fw.host.run(["nft", "-f", f"{state}/last-good.nft"])
    assert fw.live() == before
    assert_ssh_works(fw)
    assert "drifted" in fw.apply()["result"]  # aegir sees the hand-made fix and records it as its own again
    assert fw.apply()["result"] == "nothing to do"


#: nft on the host under test, for one test: right after `nft -f` has loaded a candidate into the host's
#: own network namespace (not the scratch one fw.apply proves it in), the SSH connection that ran it is cut
#: from the host's side (its sshd session processes killed), once: a link or sshd dying at the worst time.
CUTTING_NFT = """#!/bin/sh
/srv/fwtest/nft.real "$@"; rc=$?
case " $* " in *" -c "*) exit $rc;; *" -f "*/candidate-*) ;; *) exit $rc;; esac
[ $rc -eq 0 ] && [ ! -e /srv/fwtest/cut ] || exit $rc
[ "$(readlink /proc/$$/ns/net)" = "$(readlink /proc/@INIT@/ns/net)" ] || exit $rc
: > /srv/fwtest/cut
p=$PPID
while [ "$p" -gt 1 ]; do
  up=$(awk '/^PPid:/ {print $2}' /proc/$p/status)
  [ "$(cat /proc/$p/comm)" = sshd ] && [ "$(cat /proc/$up/comm)" = sshd ] && kill -9 "$p"
  p=$up
done
exit $rc
"""

FW_STATE = "/srv/conf/aegir-fw"


def state_files(fw: FwLab) -> set[str]:
    return {p.name for p in fw.host.root(FW_STATE).iterdir()}


def test_a_session_cut_right_after_nft_f_says_the_new_ruleset_is_live_and_unverified(served: FwLab) -> None:
    """The SSH connection dies right after `nft -f` loaded the new ruleset: the row must not say
    "nothing changed" but what the host holds (asked again over a new connection): the new ruleset,
    live and unverified; fw.status says so too; the next fw.apply checks it, records it, and cleans
    what interrupted runs left in the state folder (old files of its own kinds only)."""
    fw = served
    fw.apply()
    last_good = fw.host.root(f"{FW_STATE}/last-good.nft").read_text()
    old = ["candidate-0123456789ab.nft", "candidate-0123456789ab.nft.aegir-new",
           "rollback-0123456789ab.nft", "rollback-0123456789ab.nft.aegir-new"]
    young = ["candidate-fedcba987654.nft"]  # another apply's, being checked right now
    foreign = ["notes.txt", "mine.aegir-new", "last-good.nft.bak"]

    def leave(names: list[str], *, aged: bool = True) -> None:
        for name in names:
            fw.host.write(f"conf/aegir-fw/{name}", "# left here\n")
            if aged:
                fw.host.run(["touch", "-d", "-1 hour", f"{FW_STATE}/{name}"])

    # on a network of its own: a new bridge changes the chains, so the apply takes the full path (a container
    # on an existing network is element-only: no candidate loaded by `nft -f` to cut the session after)
    fw.docker("network", "create", "cutnet")
    fw.docker("run", "-d", "--name", "cut", "--network", "cutnet", "-p", "8090:80", "-v", "/srv/fwtest/www:/www",
              IMAGE, "httpd", "-f", "-p", "80", "-h", "/www")
    before = state_files(fw)
    fw.host.run(["cp", "/usr/sbin/nft", "/srv/fwtest/nft.real"])
    wrapper = fw.host.write("fwtest/nft", CUTTING_NFT.replace("@INIT@", str(fw.host.pid)))
    os.chmod(wrapper, 0o755)
    fw.host.run(["rm", "-f", "/srv/fwtest/cut"])
    fw.host.run(["mount", "--bind", "/srv/fwtest/nft", "/usr/sbin/nft"])
    try:
        start = time.monotonic()
        done = run_inv("-t", "5", "fw.apply", "--format", "json", inventory=fw.inventory, timeout=120)
        took = time.monotonic() - start
        status = fw.inv("fw.status", "--format", "json")
    finally:
        fw.host.run(["umount", "/usr/sbin/nft"])
    try:
        assert fw.host.root("/srv/fwtest/cut").exists(), "the session was never cut"
        assert done.returncode == 1, done.stdout + done.stderr
        assert "Traceback" not in done.stderr
        [row] = json.loads(done.stdout)["hosts"]
        assert row["status"] == "failed", row
        assert "new ruleset live and unverified" in row["error"] and "nothing changed" not in row["error"], row
        assert took < 60
        assert ". 8090 :" in fw.live()  # the kernel holds the new ruleset, as the row says
        assert fw.host.root(f"{FW_STATE}/last-good.nft").read_text() == last_good  # not recorded as good
        assert status.returncode == 0, status.stdout + status.stderr
        [host] = json.loads(status.stdout)["hosts"]
        assert (host["live"], host["pending"]) == ("new ruleset live and unverified", True)
        assert "new ruleset live and unverified" in fw.inv("fw.status").stdout

        interrupted = state_files(fw) - before
        assert {n for n in interrupted if n.startswith("candidate-")} and "unverified" in interrupted
        # what earlier interrupted runs left: old files of fw.apply's kinds go, young ones and others stay
        leave(old + foreign)
        leave(young, aged=False)
        again = fw.apply()  # a fresh login checks it, then it is recorded
        assert again["result"].startswith("applied") and "new ruleset live and unverified" in again["result"]
        assert "removed 5 leftover files of interrupted runs" in again["result"]  # 4 old ones, the cut run's
        left = state_files(fw)
        assert not set(old) & left and not {n for n in interrupted if n.startswith("candidate-")} & left
        assert set(young + foreign) <= left
        assert "unverified" not in left  # recorded: nothing unverified is live
        # what is left of those kinds: the young one, and those earlier tests' rejected rulesets left (young too)
        assert {n for n in left if n.startswith(("candidate-", "rollback-"))} <= set(young) | before
        assert ". 8090 :" in fw.host.root(f"{FW_STATE}/last-good.nft").read_text()
        assert json.loads(fw.inv("fw.status", "--format", "json").stdout)["hosts"][0]["live"] == "in sync"
        leave(old[:1])
        assert fw.apply()["result"] == "nothing to do; removed 1 leftover file of interrupted runs"
        assert fw.apply()["result"] == "nothing to do"
    finally:
        fw.host.run(["docker", "rm", "-f", "cut"], check=False)
        fw.host.run(["docker", "network", "rm", "cutnet"], check=False)
        for name in young + foreign:
            fw.host.run(["rm", "-f", f"{FW_STATE}/{name}"])
    assert fw.apply()["result"].startswith("applied")


def test_status_lists_what_each_host_publishes(served: FwLab) -> None:
    fw = served
    fw.apply()
    done = fw.inv("fw.status", "--format", "json")
    assert done.returncode == 0, done.stderr
    host = envelope(done, "fw.status")["hosts"][0]
    assert (host["live"], host["pending"]) == ("in sync", False)
    assert sorted((e["container"], e["host_addr"], e["host_port"]) for e in host["exposures"]) == [
        ("web", fw.service4, 8080), ("web", fw.service6, 8080)]
    table = fw.inv("fw.status").stdout
    assert f"{fw.service4}:8080" in table and "in sync" in table


# --------------------------------------------------------------------------- fw.watch


class Watch:
    """``fw.watch`` running inside the lab host (nsenter), with a local inventory."""

    def __init__(self, fw: FwLab, log: Path, path: str = "") -> None:
        self.log = log
        cmd = f"cd {REPO} && exec {sys.executable} -m aegir --inventory {fw.local_inventory} fw.watch --resync 30"
        if path:  # folders searched first (a shim that counts the commands it runs)
            cmd = f"PATH={path}:$PATH && {cmd}"
        self.proc = subprocess.Popen(fw.host.command(["sh", "-c", cmd]), stdout=log.open("w"),
                                     stderr=subprocess.STDOUT)

    def wait_for(self, text: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log.read_text():
            assert self.proc.poll() is None, f"fw.watch exited {self.proc.returncode}: {self.log.read_text()}"
            assert time.monotonic() < deadline, f"no {text!r} in fw.watch's log:\n{self.log.read_text()}"
            time.sleep(0.05)


def answers_after(client: Client, script: Path, address: str, port: int, start: Callable[[], object],
                  within: float) -> float:
    """Seconds from `start()` returning until ``address:port`` answers the client namespace (`CLIENT`
    polls it from before the start; bench/fw.py measures with this too)."""
    probe = subprocess.Popen(client.command([sys.executable, str(script), "wait", address, str(port), str(within)]),
                             stdout=subprocess.PIPE, text=True)
    time.sleep(0.2)  # the probe is polling
    start()
    started = time.monotonic()
    out, _ = probe.communicate(timeout=within + 30)
    assert probe.returncode == 0, f"port {port} never answered"
    return float(out) - started


def reachable_after(fw: FwLab, port: int, start: list[str], within: float = 5) -> float:
    """Seconds from the container's start (``docker run -d`` returning) until its port answers the client."""
    return answers_after(fw.lab.client, fw.client_script, fw.service4, port, lambda: fw.docker(*start), within + 5)


def dnat_gone_after(fw: FwLab, port: int, stop: list[str]) -> float:
    fw.docker(*stop)
    stopped = time.monotonic()
    while f". {port} :" in fw.host.run(["nft", "list", "map", "inet", "aegir", "dnat4"]).stdout:
        assert time.monotonic() - stopped < 10, f"port {port} still published"
        time.sleep(0.02)
    return time.monotonic() - stopped


def test_watch_follows_containers_within_a_second_and_survives_a_daemon_restart(served: FwLab,
                                                                                  tmp_path: Path) -> None:
    fw = served
    www = ["-v", "/srv/fwtest/www:/www", IMAGE, "httpd", "-f", "-p", "80", "-h", "/www"]
    fw.docker("run", "-d", "--name", "keeper", "--restart", "always", "-p", "8383:80", *www)
    watch = Watch(fw, tmp_path / "watch.log")
    try:
        watch.wait_for(" start: ")
        assert fw.get(f"http://{fw.service4}:8383/hello") == "hello"  # resynced at start

        up = reachable_after(fw, 8181, ["run", "-d", "--name", "new1", "-p", "8181:80", *www])
        down = dnat_gone_after(fw, 8181, ["rm", "-f", "new1"])
        print(f"fw.watch: container start -> reachable {up:.3f} s; removal -> rule gone {down:.3f} s")
        assert up < 1.0 and down < 1.0
        assert fw.get(f"http://{fw.service4}:8181/hello", timeout=1) is None
        watch.wait_for("-new1 tcp/")

        fw.host.stop_docker()
        watch.wait_for("Docker event stream lost")
        fw.host.start_docker()  # keeper comes back (restart: always), likely on a new address
        watch.wait_for("reconnected")
        deadline = time.monotonic() + 15
        while fw.get(f"http://{fw.service4}:8383/hello", timeout=0.5) != "hello":
            assert time.monotonic() < deadline, watch.log.read_text()
        up = reachable_after(fw, 8282, ["run", "-d", "--name", "new2", "-p", "8282:80", *www])
        assert up < 1.0, f"after the daemon restart, a new container took {up:.2f} s"
        assert_ssh_works(fw)

        watch.proc.send_signal(signal.SIGTERM)
        assert watch.proc.wait(timeout=10) == 0
        assert watch.log.read_text().rstrip().endswith("stopped")
        changes = [ln for ln in watch.log.read_text().splitlines() if " applied in " in ln]
        assert changes and all(ln.count("\n") == 0 and " fw.watch fw: " in ln for ln in changes)
    finally:
        if watch.proc.poll() is None:
            watch.proc.kill()
            watch.proc.wait()
        for name in ("keeper", "new1", "new2"):
            fw.host.run(["docker", "rm", "-f", name], check=False)


def test_watch_refuses_ssh_settings_no_fresh_login_verified(served: FwLab, tmp_path: Path) -> None:
    """fw.watch makes no fresh-login check: it applies only the SSH settings fw.apply verified."""
    fw = served
    fw.apply()
    data = yaml.safe_load(fw.local_inventory.read_text())
    data["hosts"]["fw"].setdefault("fw", {})["admin_sources"] = [str(fw.lab.names.client_ipv4)]
    changed = tmp_path / "local.yml"
    changed.write_text(yaml.safe_dump(data))
    fw.host.run(["nft", "add", "element", "inet", "aegir", "ssh_from4", "{ 192.0.2.201 }"])  # drift: watch acts
    live = fw.live()
    log = tmp_path / "watch.log"
    cmd = f"cd {REPO} && exec {sys.executable} -m aegir --inventory {changed} fw.watch --resync 30"
    proc = subprocess.Popen(fw.host.command(["sh", "-c", cmd]), stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while "apply failed" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        assert "refused: the SSH settings (fw.ssh_port, admin addresses, admin_sources) are not the ones a fresh " \
               "login verified; run `inv -H fw fw.apply` first" in log.read_text()
        assert fw.live() == live
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    assert fw.apply()["result"].startswith("applied")
    assert_ssh_works(fw)


# --------------------------------------------------------------------------- the incremental path

WWW = ["-v", "/srv/fwtest/www:/www", IMAGE, "httpd", "-f", "-p", "80", "-h", "/www"]


def unshare_shim(fw: FwLab) -> tuple[str, Path]:
    """A folder holding an ``unshare`` that logs each run (then runs the real one): the proof in a scratch
    namespace is ``unshare -n``; the log (seen from outside the host)."""
    real = fw.host.run(["sh", "-c", "command -v unshare"]).stdout.strip()
    shim = fw.host.write("fwtest/shim/unshare", f'#!/bin/sh\necho "$*" >> /srv/fwtest/unshare.log\nexec {real} "$@"\n')
    os.chmod(shim, 0o755)
    log = fw.host.write("fwtest/unshare.log", "")
    return "/srv/fwtest/shim", log


def proved_fully(fw: FwLab) -> None:
    """Load the ruleset with the full proof (the table gone: drift), so the structure proved is recorded."""
    fw.host.run(["nft", "delete", "table", "inet", "aegir"], check=False)
    assert fw.apply()["path"] == "full"


def test_a_container_start_is_elements_only_and_an_admin_change_runs_the_full_proof(served: FwLab,
                                                                                   tmp_path: Path) -> None:
    fw = served
    proved_fully(fw)
    shim, proofs = unshare_shim(fw)
    watch = Watch(fw, tmp_path / "watch.log", path=shim)
    try:
        watch.wait_for(" start: ")
        proofs.write_text("")  # from here on, what the container's start and stop ran
        up = reachable_after(fw, 8484, ["run", "-d", "--name", "inc1", "-p", "8484:80", *WWW])
        watch.wait_for("+inc1 tcp/")
        [line] = [ln for ln in watch.log.read_text().splitlines() if "+inc1 tcp/" in ln]
        assert " events: applied in " in line and "(elements only)" in line, line
        assert f"{fw.service4} . tcp . 8484 : " in fw.host.run(["nft", "list", "map", "inet", "aegir", "dnat4"]).stdout
        fw.docker("rm", "-f", "inc1")
        watch.wait_for("-inc1 tcp/")
        [line] = [ln for ln in watch.log.read_text().splitlines() if "-inc1 tcp/" in ln]
        assert "(elements only)" in line, line
        assert proofs.read_text() == ""  # no scratch namespace: no proof ran
        print(f"fw.watch, elements only: container start -> reachable {up:.3f} s")
    finally:
        watch.proc.send_signal(signal.SIGTERM)
        watch.proc.wait(timeout=10)
        fw.host.run(["docker", "rm", "-f", "inc1"], check=False)
    # an admin address goes (admin_ipv6): the full proof, with the shim on the PATH of a local fw.apply
    data = yaml.safe_load(fw.local_inventory.read_text())
    del data["hosts"]["fw"]["admin_ipv6"]
    changed = tmp_path / "local.yml"
    changed.write_text(yaml.safe_dump(data))
    cmd = f"PATH={shim}:$PATH && cd {REPO} && exec {sys.executable} -m aegir --inventory {changed} fw.apply --format json"
    done = fw.host.run(["sh", "-c", cmd], check=False, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    row = envelope(done, "fw.apply", dry=False)["hosts"][0]
    assert (row["path"], row["full_because"]) == ("full", "SSH settings a fresh login did not verify"), row
    assert proofs.read_text().startswith("-n sh -c "), proofs.read_text()
    row = fw.apply()  # the admin address back: the full proof again, and the fresh login
    assert (row["path"], row["full_because"]) == ("full", "SSH settings a fresh login did not verify"), row


#: A host template that, once a container publishes 8585, also DNATs the SSH port of the admin IPv4 (which
#: the model never publishes) in the same map: an element-only change.
EVIL = """{%- set ns = namespace(on=false) -%}
{%- for d in dnat[4] %}{% if " . tcp . 8585 : " in d %}{% set ns.on = true %}{% endif %}{% endfor -%}
{%- set extra = ["ADMIN . tcp . 22 : 10.9.9.9 . 22"] if ns.on else [] -%}
"""


def test_an_element_that_would_dnat_the_ssh_port_of_an_admin_address_is_refused_by_the_watcher(
        served: FwLab, tmp_path: Path) -> None:
    fw = served
    admin = str(fw.host.addresses.admin_ipv4)
    packaged = (REPO / "aegir/fw/nftables.nft.j2").read_text()
    shown = "{{- dnat[v] | elements(dnat_notes[v]) }}"
    assert shown in packaged
    fw.host.write(TEMPLATE, EVIL.replace("ADMIN", admin)
                  + packaged.replace(shown, "{{- (dnat[v] + (extra if v == 4 else [])) | elements }}"))
    proved_fully(fw)  # no container on 8585: the template adds nothing, the proof passes
    watch = Watch(fw, tmp_path / "watch.log")
    try:
        watch.wait_for(" start: ")
        before = fw.live()
        fw.docker("run", "-d", "--name", "evil", "-p", "8585:80", *WWW)
        watch.wait_for("apply failed")
        assert (f"events: apply failed: refused: dnat4: tcp/{admin}:22 would DNAT the SSH port of the admin "
                f"address {admin}; nothing changed") in watch.log.read_text()
        assert fw.live() == before and f"{admin} . tcp . 22" not in fw.live()
        assert_ssh_works(fw)
    finally:
        watch.proc.send_signal(signal.SIGTERM)
        watch.proc.wait(timeout=10)
        fw.host.run(["docker", "rm", "-f", "evil"], check=False)
        fw.host.run(["rm", "-f", f"/srv/{TEMPLATE}"])
    fw.apply()  # aegir's template again (the same ruleset when no container is published): SSH works
    assert f"{admin} . tcp . 22" not in fw.live()
