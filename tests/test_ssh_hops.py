"""SSH trust end to end in the lab: a ProxyJump gateway's key is checked too; @revoked and @cert-authority lines.

hyp2 is reached through hyp1 (``ProxyJump`` in a runtime ssh_config, ``-S``),
over real sshd. The known_hosts file is the only source of trust: it is never
written to.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.helpers import run_inv


def setup(lab, tmp_path: Path, known_hosts_text: str) -> tuple[Path, Path, Path]:
    """(inventory, ssh_config, known_hosts) for reaching hyp2 through hyp1."""
    hyp1 = lab.host("hyp1")
    a1, port1 = hyp1.addresses.admin_ipv4, hyp1.options.ssh_port
    a2 = lab.host("hyp2").addresses.admin_ipv4
    known = tmp_path / "known_hosts"
    known.write_text(known_hosts_text)
    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text(f"Host {a2}\n  ProxyJump root@{a1}:{port1}\nHost *\n  IdentityFile {lab.identity}\n"
                          "  IdentitiesOnly yes\n")
    data = yaml.safe_load(lab.inventory_path.read_text())
    data["defaults"]["known_hosts"] = str(known)
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump(data))
    return inventory, ssh_config, known


def report(inventory: Path, ssh_config: Path) -> tuple[int, dict]:
    res = run_inv("-S", str(ssh_config), "-H", "hyp2", "disk.report", "--format", "json", inventory=inventory,
                  timeout=120)
    assert "Traceback" not in res.stderr, res.stderr
    return res.returncode, json.loads(res.stdout)["hosts"][0]


def lines_of(lab, name: str) -> list[str]:
    a = lab.host(name).addresses
    return [ln for ln in lab.known_hosts.read_text().splitlines()
            if ln.split(" ", 1)[0] in {str(a.admin_ipv4), f"[{a.admin_ipv4}]:{lab.host(name).options.ssh_port}",
                                       str(a.admin_ipv6), f"[{a.admin_ipv6}]:{lab.host(name).options.ssh_port}"}]


def key_of(lab, name: str) -> str:
    return lines_of(lab, name)[0].split(" ", 1)[1]


def test_the_gateway_of_a_proxyjump_is_refused_when_its_key_is_unknown(lab, tmp_path):
    inventory, ssh_config, known = setup(lab, tmp_path, "\n".join(lines_of(lab, "hyp2")) + "\n")
    before = known.read_text()
    code, row = report(inventory, ssh_config)
    assert code == 1 and row["status"] == "unreachable", row
    a1 = lab.host("hyp1").addresses.admin_ipv4
    assert row["error"].startswith("unknown SSH host key ssh-ed25519 "), row["error"]
    assert "for gateway " in row["error"] and str(a1) in row["error"]
    assert known.read_text() == before  # nothing auto-added for the hop


def test_the_same_jump_works_once_the_gateway_key_is_known_and_cert_authority_lines_are_skipped(lab, tmp_path):
    text = "\n".join([f"@cert-authority *.example.org {key_of(lab, 'hyp3')}", *lines_of(lab, "hyp1"),
                      *lines_of(lab, "hyp2")]) + "\n"
    inventory, ssh_config, _ = setup(lab, tmp_path, text)
    code, row = report(inventory, ssh_config)
    assert (code, row["status"]) == (0, "ok"), row


def test_a_revoked_gateway_key_is_refused_even_when_listed(lab, tmp_path):
    text = "\n".join([f"@revoked * {key_of(lab, 'hyp1')}", *lines_of(lab, "hyp1"), *lines_of(lab, "hyp2")]) + "\n"
    inventory, ssh_config, _ = setup(lab, tmp_path, text)
    code, row = report(inventory, ssh_config)
    assert code == 1 and "is marked @revoked in" in row["error"], row
