"""Bounded work per host: every limit of `aegir.limits` is a refusal naming the limit and its value.

Not timed: each test asserts the refusal (or the work done once); `bench/hostile_input.py` holds the speed.
"""

from __future__ import annotations

import shlex

import pytest

from aegir import inventory, limits, yamldoc
from aegir.compose import lint
from aegir.compose.discovery import Project
from aegir.compose.lint import lint_texts
from aegir.dns import services
from aegir.errors import InventoryError
from aegir.limits import LimitError
from aegir.yamldoc import YamlError

#: 100 kB in one anchor, then an alias of it 4,000 times: 400 MB once expanded.
ALIASES = "a: &a \"" + "x" * 100_000 + "\"\nb: [" + ", ".join(["*a"] * 4000) + "]\n"


def refusal(text: str) -> str:
    with pytest.raises(YamlError) as err:
        yamldoc.load(text)
    return str(err.value)


# --------------------------------------------------------------------------- YAML


def test_a_text_over_the_byte_limit_is_refused_naming_the_limit(monkeypatch):
    monkeypatch.setenv("AEGIR_LIMIT_YAML_BYTES", "100")
    assert yamldoc.load("a: " + "x" * 96 + "\n").data == {"a": "x" * 96}  # 100 bytes: within
    assert refusal("a: " + "x" * 97 + "\n") == (
        "?: the text has 101 bytes, over the limit of 100 bytes (AEGIR_LIMIT_YAML_BYTES)")
    assert refusal("a: " + "é" * 49 + "\n") == (  # bytes, not characters
        "?: the text has 102 bytes, over the limit of 100 bytes (AEGIR_LIMIT_YAML_BYTES)")


def test_the_default_byte_limit_is_1_mib():
    assert refusal("a: " + "x" * (1024 * 1024) + "\n") == (
        "?: the text has 1,048,580 bytes, over the limit of 1,048,576 bytes (AEGIR_LIMIT_YAML_BYTES)")


def test_alias_expansion_is_refused_while_composing_before_the_limit_is_passed_by_one_alias():
    # the key "a", 100,000 characters, the key "b", then each alias adds 100,000: the 167th passes 16 MiB
    assert refusal(ALIASES) == ("2: with its aliases expanded, the text's scalars reach 16,800,002 characters, "
                                "over the limit of 16,777,216 characters (AEGIR_LIMIT_YAML_EXPANDED)")


def test_the_expansion_limit_is_settable_and_counts_nested_aliases(monkeypatch):
    monkeypatch.setenv("AEGIR_LIMIT_YAML_EXPANDED", "1000")
    text = "a: &a [" + ", ".join(["xxxxxxxxxx"] * 10) + "]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    assert refusal(text) == ("2: with its aliases expanded, the text's scalars reach 1,002 characters, "
                             "over the limit of 1,000 characters (AEGIR_LIMIT_YAML_EXPANDED)")
    assert yamldoc.load(text.replace("*a, *a]", "*a]")).data["b"][0][0] == "xxxxxxxxxx"  # 902: within


def test_a_limit_set_wrongly_is_an_error_naming_the_variable(monkeypatch):
    monkeypatch.setenv("AEGIR_LIMIT_YAML_EXPANDED", "lots")
    with pytest.raises(LimitError) as err:
        yamldoc.load("a: b\n")
    assert str(err.value) == "AEGIR_LIMIT_YAML_EXPANDED='lots': a limit is a whole number above 0"


def test_hosts_yml_over_a_limit_is_an_inventory_error_naming_the_file(monkeypatch):
    monkeypatch.setenv("AEGIR_LIMIT_YAML_BYTES", "10")
    with pytest.raises(InventoryError) as err:
        inventory.parse("hosts: {hyp1: {}}\n", "hosts.yml")
    assert str(err.value) == "hosts.yml:1: the text has 18 bytes, over the limit of 10 bytes (AEGIR_LIMIT_YAML_BYTES)"


def test_every_limit_is_in_the_readme_table():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for limit in limits.ALL:
        assert f"| `{limit.variable}` | {limit.default:,} {limit.unit} |" in readme, limit.variable


# --------------------------------------------------------------------------- lint


def test_lint_of_the_alias_bomb_is_one_yaml_finding():
    findings = lint_texts("/srv/apps/x/docker-compose.yml", ALIASES, "/srv/apps/x/.env", None, None)
    assert [(f.line, f.rule) for f in findings] == [(2, "yaml")]
    assert "AEGIR_LIMIT_YAML_EXPANDED" in findings[0].message


def test_an_aliased_command_item_is_split_once_and_its_findings_are_those_of_the_written_out_list(monkeypatch):
    calls: list[str] = []
    real = shlex.split
    monkeypatch.setattr(lint.shlex, "split", lambda s, *a, **k: (calls.append(s), real(s, *a, **k))[1])
    item = "--db-pass hunter2 " * 100
    aliased = ("x-a: &a \"" + item + "\"\nservices:\n  a:\n    image: x\n    command: [run, "
               + ", ".join(["*a"] * 1000) + "]\n")
    findings = lint_texts("/srv/apps/x/docker-compose.yml", aliased, "/srv/apps/x/.env", None, None)
    assert len(calls) == 1
    assert [(f.line, f.rule, f.message) for f in findings] == [
        (1, "secret", "--db-pass has a literal value: take it from .env (${DB_PASS})")]


def test_a_secret_flag_ending_one_argv_item_takes_the_next_items_first_word():
    text = 'services:\n  a:\n    image: x\n    command:\n      - sh\n      - "-c --password"\n      - hunter2\n'
    findings = lint_texts("/srv/apps/x/docker-compose.yml", text, "/srv/apps/x/.env", None, None)
    assert [(f.line, f.message) for f in findings] == [(6, "--password has a literal value: take it from .env "
                                                        "(${PASSWORD})")]
    text = text.replace("hunter2", "${PW}")
    assert lint_texts("/srv/apps/x/docker-compose.yml", text, "/srv/apps/x/.env", "PW=x\n", 0o600) == []


# --------------------------------------------------------------------------- dns


def dns_host() -> inventory.Host:
    inv = inventory.parse("hosts:\n  hyp1:\n    admin_ipv4: 192.0.2.11\n    service_ipv4: [192.0.2.111]\n"
                          "    ipv6_prefix: 2001:db8:0:100::/56\n    service_ipv6: ['2001:db8:0:100::11']\n", "hosts.yml")
    return inv.get("hyp1")


def test_dns_names_of_a_file_of_aliased_strings_are_refused_by_the_expansion_limit():
    text = ("x-s: &s \"" + "y" * 100_000 + "\"\nservices:\n  web:\n    image: x\n    labels:\n"
            "      aegir.dns.names: [" + ", ".join(["*s"] * 10_000) + "]\n")
    got = services.read(dns_host(), Project("apps", "x", "/srv/apps/x", "docker-compose.yml", compose_text=text))
    assert got == services.Read(problems=(
        "/srv/apps/x/docker-compose.yml:6: with its aliases expanded, the text's scalars reach 16,800,041 "
        "characters, over the limit of 16,777,216 characters (AEGIR_LIMIT_YAML_EXPANDED)",))


def test_more_than_256_label_names_is_one_problem():
    text = ("services:\n  web:\n    image: x\n    labels:\n      aegir.dns.names: \""
            + " ".join(f"n{i}" for i in range(257)) + "\"\n")
    got = services.read(dns_host(), Project("apps", "x", "/srv/apps/x", "docker-compose.yml", compose_text=text))
    assert got == services.Read(problems=(
        "/srv/apps/x/docker-compose.yml:5: label aegir.dns.names: names more than 256 names",))
