"""One hostile compose file is a finding of its own project, never the end of its host's report.

Discovery runs the real `discover_cmd` on a local /srv; lint runs the real lint
with the real Compose binary through a local host context (no daemon needed);
status is `project_status` on the containers Docker's labels describe.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from invoke import Context

from aegir.cli import AegirConfig
from aegir.compose.discovery import discover_cmd, parse_compose_spec, parse_discovery
from aegir.compose.lint import lint_host, lint_texts
from aegir.compose.state import ProjectContainer, project_status
from aegir.host import open_context
from aegir.inventory import Host

BOMB = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(7)) + "services: {}\n"

#: folder -> (compose text, the line its error must name, a phrase of it)
HOSTILE = {
    "deep": ("services:\n  web: " + "[" * 5000 + "]" * 5000 + "\n", 2, "nested deeper than 64 levels"),
    "blocks": ("services:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(100)), 64, "nested deeper"),
    "control": ("services:\n  web:\n    image: x\x07\n", 3, "U+0007 is not allowed"),
    "escape": ("services:\n  web:\n    image: \x1b[2Jx\n", 3, "U+001B is not allowed"),
    "bomb": (BOMB, 6, "expands to more than"),
    "recursive": ("services: &s\n  web: *s\n", 1, "a recursive alias"),
    "python": ("services:\n  web: !!python/object/apply:os.system [id]\n", 2, "could not determine a constructor"),
    # 0.4 MB that aliases expand to 400 MB: refused while composing, at the line that passes the limit
    "aliases": ("x-a: &a \"" + "x" * 100_000 + "\"\nservices: {web: [" + ", ".join(["*a"] * 4000) + "]}\n", 2,
                "over the limit of 16,777,216 characters (AEGIR_LIMIT_YAML_EXPANDED)"),
}
GOOD = "services:\n  web:\n    image: aegir-lab/busybox:latest\n"


def hostile_srv(root: Path) -> Path:
    for folder, (text, _, _) in HOSTILE.items():
        (root / "apps" / folder).mkdir(parents=True)
        (root / "apps" / folder / "docker-compose.yml").write_text(text, encoding="utf-8")
    (root / "core/front").mkdir(parents=True)
    (root / "core/front/docker-compose.yml").write_text(GOOD)
    return root


def test_discovery_keeps_every_project_and_puts_the_error_on_the_hostile_ones(tmp_path):
    srv = hostile_srv(tmp_path / "srv")
    out = subprocess.run(discover_cmd(str(srv)).line, shell=True, capture_output=True, text=True, check=True).stdout
    projects = parse_discovery(out, str(srv)).by_path()
    assert sorted(projects) == sorted(["core/front", *(f"apps/{f}" for f in HOSTILE)])
    assert projects["core/front"].error is None and projects["core/front"].expected == ("web",)
    for folder, (_, line, phrase) in HOSTILE.items():
        error = projects[f"apps/{folder}"].error
        assert error is not None and error.startswith(f"docker-compose.yml:{line}: ") and phrase in error, (folder, error)


def container(service: str, state: str = "running") -> ProjectContainer:
    return ProjectContainer(f"id-{service}-{state}", f"deep-{service}-1", "deep", "/srv/apps/deep", service, state)


def test_a_project_in_error_still_reports_what_runs_from_dockers_labels(tmp_path):
    srv = hostile_srv(tmp_path / "srv")
    out = subprocess.run(discover_cmd(str(srv)).line, shell=True, capture_output=True, text=True, check=True).stdout
    deep = parse_discovery(out, "/srv").by_path()["apps/deep"]
    s = project_status(deep, [container("web"), container("db"), container("worker", "exited")], {}, now=0)
    assert (s.state, s.running, s.services, s.containers) == ("error", ("db", "web"), "2/?", 3)
    assert s.problems[0] == deep.error and "worker exited" in s.problems


@pytest.fixture
def local(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    srv = hostile_srv(tmp_path / "srv")
    hc = open_context(Context(config=AegirConfig(lazy=True)), Host("local", connection="local", srv=str(srv), srv_mount=False))
    yield srv, hc
    hc.close()


def test_lint_gives_each_hostile_file_its_own_yaml_finding_and_lints_the_rest(local):
    srv, hc = local
    result = lint_host(hc)
    by_name = {p.name: p.findings for p in result.projects}
    assert by_name["front"] == ()
    for folder, (_, line, phrase) in HOSTILE.items():
        (finding,) = by_name[folder]
        assert (finding.file, finding.line, finding.rule) == (f"{srv}/apps/{folder}/docker-compose.yml", line, "yaml")
        assert phrase in finding.message


#: Pieces a compose file is made of, and pieces that hurt parsers and regexes.
pieces = st.sampled_from([
    "services:\n", "  web:\n", "    image: x\n", "    command: ", "    environment:\n", "      A: ", "- ", "${A:-",
    "}", "[", "]", "{", "}", "&a ", "*a", "<<: ", "\x07", "\x1b", "\ud7ff", "a" * 400, "a." * 200, "a@" * 200,
    "--password ", "DB_PASSWORD=", "'", '"', "\n", ": ", "cloud.example.org", "$$", "!!binary ", "!!python/name:x",
])


@settings(max_examples=300, deadline=None)
@given(st.lists(pieces, max_size=40).map("".join))
def test_any_compose_text_is_findings_or_a_yaml_finding_never_an_exception(text):
    found = lint_texts("c.yml", text, "e", "A=1\nDB_PASSWORD=x\n", 0o600)
    assert all(f.rule in {"yaml", "compose-config", "domain", "email", "public-ip", "secret", "undefined-var",
                          "unused-env", "env-mode", "env-syntax"} for f in found)
    spec = parse_compose_spec(text)
    assert spec.error is None or spec.error[:1] in "?0123456789"


def test_the_program_lints_a_host_with_hostile_files_project_by_project(tmp_path):
    import json

    from tests.helpers import run_inv

    srv = hostile_srv(tmp_path / "srv")
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(f"hosts:\n  local:\n    connection: local\n    srv: {srv}\n    srv_mount: false\n")
    res = run_inv("apps.lint", "--format", "json", inventory=inventory, timeout=120,
                  env={"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"})
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    (host,) = json.loads(res.stdout)["hosts"]
    assert host["status"] == "ok", host["error"]
    rules = {p["name"]: [f["rule"] for f in p["findings"]] for p in host["projects"]}
    assert rules == {"front": [], **{folder: ["yaml"] for folder in HOSTILE}}
