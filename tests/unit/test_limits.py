"""Bounded work per host: every limit of `aegir.limits` is a refusal naming the limit and its value.

Not timed: each test asserts the refusal (or the work done once); `bench/hostile_input.py` holds the speed.
"""

from __future__ import annotations

import shlex

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


# --------------------------------------------------------------------------- the firewall template

FW = "hyp1:/srv/templates/nftables.nft.j2"
OUTPUT = "over the limit of 33,554,432 characters (AEGIR_LIMIT_TEMPLATE_OUTPUT)"


def fw_refusal(source: str) -> str:
    from aegir.fw import plan as fwplan
    from aegir.fw import render
    from tests.unit.test_fw_render import HOST, SETTINGS, containers

    with pytest.raises(render.TemplateError) as err:
        fwplan.firewall(HOST, SETTINGS, containers(), template=render.Template(source, FW))
    return str(err.value)


@pytest.mark.parametrize(("source", "refused"), [
    ("# ok\n{{ 'x' * 400000000 }}\n", f"2: template refused: '*' would bring what the template builds to "
                                      f"400,000,005 characters, {OUTPUT}"),  # the first line's 5, output
    ("{{ [0] * 400000000 }}\n", f"1: template refused: '*' would bring what the template builds to "
                                f"400,000,000 characters, {OUTPUT}"),
    ("{{ 9 ** 999999 }}\n", "1: template refused: '**' would make a number of more than 100,000 bits"),
    ("{% set a = 'x' * 9000000 %}{{ a ~ a ~ a ~ a }}\n",
     f"1: template refused: '~' would bring what the template builds to 45,000,000 characters, {OUTPUT}"),
    ("{{ 'x'|center(400000000) }}\n", f"1: template refused: the filter center would bring what the template "
                                      f"builds to 400,000,000 characters, {OUTPUT}"),
    ("{{ 'x'.ljust(400000000) }}\n", f"1: template refused: str.ljust would bring what the template builds to "
                                     f"400,000,000 characters, {OUTPUT}"),
    ("{{ '%400000000s' % 1 }}\n", f"1: template refused: '%' would bring what the template builds to "
                                  f"400,000,013 characters, {OUTPUT}"),
    ("{{ '{:>400000000}'.format(1) }}\n", f"1: template refused: str.format would bring what the template builds "
                                          f"to 400,000,015 characters, {OUTPUT}"),
    ("{{ '{0:{1}}'.format(1, 400000000) }}\n", f"1: template refused: str.format would bring what the template "
                                                f"builds to 400,000,033 characters, {OUTPUT}"),
    ("{{ '%*d' % (400000000, 1) }}\n", f"1: template refused: '%' would bring what the template builds to "
                                      f"400,000,016 characters, {OUTPUT}"),
    ("{{ [1]|batch(400000000, 'x')|list }}\n", f"1: template refused: the filter batch would bring what the "
                                               f"template builds to 400,000,006 characters, {OUTPUT}"),
    ("{% set a = 'x' * 1000000 %}{% set b = [a, a, a, a, a, a] %}{{ [b, b, b, b, b, b] }}\n",
     f"1: template refused: the output would bring what the template builds to 37,000,098 characters, {OUTPUT}"),
    ("{% set a = 'x' * 10000 %}{% set s %}{% for i in range(1000000) %}{{ a }}{% endfor %}{% endset %}\n",
     f"1: template refused: the output would bring what the template builds to 33,560,000 characters, {OUTPUT}"),
    ("{{ lipsum(1000000) }}\n", f"1: template refused: lipsum() would bring what the template builds to "
                                 f"1,600,000,000 characters, {OUTPUT}"),
    ("{% set a = 'x' * 1000000 %}{{ ''.join(([a] * 40)|map('lower')) }}\n",
     f"1: template refused: the filter lower would bring what the template builds to 34,000,040 characters, "
     f"{OUTPUT}"),
    ("{% set a = 'x' %}{{ ([[a] * 10000] * 3000)|sum(start=[])|length }}\n",  # one pass, not 3,000 copies
     "1: template refused: the filter sum brings its loop iterations and list items to 30,000,000, over the "
     "limit of 1,000,000 iterations (AEGIR_LIMIT_TEMPLATE_LOOPS)"),
    ("{{ [range(999999)|list, range(999999)|list]|length }}\n",
     "1: template refused: range() of 999,999 items after 999,999 iterations, over the limit of 1,000,000 "
     "iterations (AEGIR_LIMIT_TEMPLATE_LOOPS)"),
    ("{% for i in range(100000) %}\n{% for j in range(100000) %}{% endfor %}{% endfor %}\n",
     "2: template refused: range() of 100,000 items after 900,010 iterations, over the limit of 1,000,000 "
     "iterations (AEGIR_LIMIT_TEMPLATE_LOOPS)"),
    ("{% set a = [0] * 1000 %}{% for i in a %}{% for j in a %}{% for k in a %}{% endfor %}{% endfor %}{% endfor %}",
     "1: template refused: its loops reach 1,000,001 iterations, over the limit of 1,000,000 iterations "
     "(AEGIR_LIMIT_TEMPLATE_LOOPS)"),
])
def test_a_template_bomb_is_refused_naming_host_file_line_and_limit(source, refused, monkeypatch):
    monkeypatch.setenv("AEGIR_LIMIT_TEMPLATE_MS", "120000")  # which limit refuses, however loaded the machine
    assert fw_refusal(source) == f"{FW}:{refused}"


def test_a_slow_template_is_refused_at_its_time_limit(monkeypatch):
    monkeypatch.setenv("AEGIR_LIMIT_TEMPLATE_MS", "50")
    assert fw_refusal("{% for i in range(1000000) %}{{ (dnat[4] * 100)|sort|length }}{% endfor %}\n") == (
        f"{FW}:1: template refused: rendering took more than 50 ms, over the limit of 50 ms (AEGIR_LIMIT_TEMPLATE_MS)")


def test_the_template_limits_are_settable(monkeypatch):
    monkeypatch.setenv("AEGIR_LIMIT_TEMPLATE_OUTPUT", "1000")
    assert fw_refusal("{{ 'x' * 1001 }}\n") == (
        f"{FW}:1: template refused: '*' would bring what the template builds to 1,001 characters, "
        "over the limit of 1,000 characters (AEGIR_LIMIT_TEMPLATE_OUTPUT)")
    monkeypatch.setenv("AEGIR_LIMIT_TEMPLATE_LOOPS", "10")
    assert fw_refusal("{% for i in range(11) %}{% endfor %}\n") == (
        f"{FW}:1: template refused: range() of 11 items after 0 iterations, over the limit of 10 iterations "
        "(AEGIR_LIMIT_TEMPLATE_LOOPS)")


def test_a_template_over_its_byte_limit_is_refused_before_it_is_compiled():
    assert fw_refusal("#" * (1024 * 1024 + 1)) == (
        f"{FW}: template refused: it has 1,048,577 bytes, over the limit of 1,048,576 bytes (AEGIR_LIMIT_TEMPLATE_BYTES)")


def test_the_shipped_template_renders_within_its_budget_as_before():
    from aegir.fw import plan as fwplan
    from tests.unit.test_fw_render import HOST, SETTINGS, containers

    text = fwplan.firewall(HOST, SETTINGS, containers()).text
    assert text.startswith("# aegir firewall for hyp1") and "map dnat4" in text


#: Templates using loops (loop.*, else, recursive, filtered), ~, macros and call blocks, set blocks,
#: filter blocks, the operators and filters the budget intercepts: each renders as in the plain sandbox.
ORDINARY = [
    "{% for x in items %}{{ loop.index }}/{{ loop.length }}/{{ loop.revindex }}{{ ',' if not loop.last }}{% endfor %}",
    "{% for k, v in d|dictsort %}{{ k }}={{ v }};{% endfor %}{% for x in items if x > 1 %}{{ x }}{% endfor %}",
    "{% for x in [] %}{{ x }}{% else %}none{% endfor %}",
    "{% for x in tree recursive %}{{ x.n }}{% if x.c %}[{{ loop(x.c) }}]{% endif %}{% endfor %}",
    "{{ items|join(', ') }} {{ items|map('string')|join('-') }} {{ 'a' ~ 1 ~ none }} {{ ','.join(['a']|map('upper')) }}",
    "{{ '%s-%d' % ('a', 3) }} {{ '{}:{}'.format('a', 2) }} {{ 'ab'|center(6) }}|{{ 'x\ny'|indent(2) }}",
    "{% macro m(a) %}<{{ a }}{{ caller() if caller is defined }}>{% endmacro %}{{ m(1) }}{% call m(2) %}c{% endcall %}",
    "{% set ns = namespace(t=0) %}{% for i in range(5) %}{% set ns.t = ns.t + i %}{% endfor %}{{ ns.t }} {{ 2 ** 10 }}"
    " {{ 7 // 2 }} {{ 7 / 2 }} {{ [1, 2] + [3] }} {{ 'ab' * 2 }} {{ 3 * 4 }}",
    "{% filter upper %}abc{% endfilter %} {{ items|batch(2)|list }} {{ items|slice(2)|list }} {{ items|sum }}"
    " {{ [[1], [2, 3]]|sum(start=[0]) }} {{ [[1], [2]]|sum(start=[], attribute=0) if false }}",
    "{{ items|tojson }} {{ items|first }} {{ items|reverse|list }} {{ 'a,b'.split(',') }} {{ lipsum(1)|length > 9 }}",
    "{% set x %}block{{ 1 }}{% endset %}{{ x }} {{ items|select('odd')|list }} {{ 'x'.ljust(3) }}|",
]


@pytest.mark.parametrize("source", ORDINARY)
def test_the_budget_changes_nothing_a_template_renders_within_it(source):
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    from aegir.fw.sandbox import BudgetedEnvironment, rendering

    values = {"items": [1, 2, 3], "d": {"b": 2, "a": 1}, "tree": [{"n": 1, "c": [{"n": 2, "c": []}]}]}
    plain = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined).from_string(source).render(values)
    budgeted = BudgetedEnvironment(undefined=jinja2.StrictUndefined).from_string(source)
    assert rendering(budgeted.generate(values)) == plain


# --------------------------------------------------------------------------- libyaml's events, PyYAML's words

yaml_pieces = st.sampled_from([
    "services:\n", "  web:\n", "    image: x\n", "    command: ", "- ", "&a ", "*a", "<<: ", "[", "]", "{", "}", ": ",
    "'", '"', "\n", "\t", "  ", "#", "? ", "!!str ", "!!binary ", "%YAML 1.1\n", "---\n", "...\n", "\x85", "\ufeff",
    "é", "1e3", "0x1F", "2026-12-07", "yes", "~", "|\n", ">-\n", "\\", "a,b", "\x07",
])


@settings(max_examples=1000, deadline=None, derandomize=True)
@given(st.lists(yaml_pieces, max_size=30).map("".join))
def test_libyaml_events_give_what_pyyamls_give_or_pyyaml_says_why_not(text):
    def outcome(load):
        try:
            doc = load(text)
            return repr(doc.data), doc.lines
        except yamldoc._Unsaid:
            return "libyaml refused"
        except YamlError as exc:
            return str(exc)

    python = outcome(lambda t: yamldoc._load(t, yamldoc._PyLoader))
    if not yamldoc._PARSERS_DIFFER.search(text):  # libyaml's answer is taken: a value or a limit as PyYAML's
        assert outcome(lambda t: yamldoc._load(t, yamldoc._FAST)) in (python, "libyaml refused")
    assert outcome(yamldoc.load) == python  # what load() answers is what PyYAML's own parser makes of the text


# --------------------------------------------------------------------------- discovery on the host


def test_a_compose_file_or_env_over_the_byte_limit_stays_on_the_host_and_is_that_projects_error(tmp_path, monkeypatch):
    import subprocess

    from aegir.compose.discovery import discover_cmd, parse_discovery

    monkeypatch.setenv("AEGIR_LIMIT_YAML_BYTES", "100")
    srv = tmp_path / "srv"
    for folder, text in (("big", "services: {web: {image: x}}\n#" + "x" * 120 + "\n"),
                         ("ok", "services: {web: {image: x}}\n"), ("ig", "services: {web: {image: y}}\n")):
        (srv / "apps" / folder).mkdir(parents=True)
        (srv / "apps" / folder / "docker-compose.yml").write_text(text)
    (srv / "apps/ok/.env").write_text("A=" + "y" * 200 + "\n")
    cmd = discover_cmd(str(srv), with_env=True)
    assert cmd.argv[3:] == ("sh", str(srv), "env", "100")
    out = subprocess.run(cmd.line, shell=True, capture_output=True, text=True, check=True).stdout
    assert [line for line in out.splitlines() if line.startswith("L")] == [
        "L\t150\tapps/big/docker-compose.yml", "L\t203\tapps/ok/.env"]
    found = parse_discovery(out, str(srv))
    by_path = found.by_path()
    assert by_path["apps/big"].error == ("docker-compose.yml:?: the text has 150 bytes, over the limit of 100 bytes "
                                         "(AEGIR_LIMIT_YAML_BYTES)")
    assert by_path["apps/big"].compose_text == ""
    assert by_path["apps/ok"].error is None and by_path["apps/ok"].expected == ("web",)
    assert by_path["apps/ig"].error is None  # "apps/ig/…" is within "apps/big/…": matched as a whole path
    assert f"{srv}/apps/ok/.env: not read: the text has 203 bytes, over the limit of 100 bytes " \
           "(AEGIR_LIMIT_YAML_BYTES)" in found.warnings
    assert "apps/ok" not in found.envs
