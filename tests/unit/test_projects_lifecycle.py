"""Lifecycle plans and their execution order; templates; the status and action tables."""

from __future__ import annotations

import subprocess
import threading
import time
from types import SimpleNamespace

from aegir.compose.discovery import Project
from aegir.compose.plan import ActionResult, HostActions, Step, core_order
from aegir.compose.report import lifecycle_table, lifecycle_warnings
from aegir.compose.state import ProjectStatus
from aegir.compose.status import HostStatus, has_problems, render_status, status_envelope, status_json
from aegir.compose.steps import run_steps
from aegir.compose.templates import ServiceTemplate, parse_list, plan_new
from aegir.docker import image_ref
from aegir.fleet import Outcome
from aegir.host import open_context
from aegir.inventory import Host
from aegir.sh import Cmd


def p(folder: str, kind: str = "core") -> Project:
    return Project(kind, folder, f"/srv/{kind}/{folder}", "docker-compose.yml")


def test_core_projects_start_with_front_then_in_name_order():
    assert [x.folder for x in core_order([p("dns"), p("adm"), p("front"), p("mail")])] == ["front", "adm", "dns", "mail"]


def test_pull_compares_images_as_docker_tags_them_and_never_guesses_an_interpolated_one():
    digest = "sha256:" + "ab" * 32
    assert [str(image_ref(r)) for r in ("busybox", "docker.io/library/busybox", "docker.io/acme/web:2",
                                        "ghcr.io/acme/web", "registry:5000/web", f"x@{digest}", "${IMAGE}",
                                        "x@sha256:ab")] == [
        "busybox:latest", "busybox:latest", "acme/web:2", "ghcr.io/acme/web:latest", "registry:5000/web:latest",
        f"x@{digest}", "None", "None"]


def steps(n: int) -> list[Step]:
    return [Step(p(f"app{i}", "apps"), "up", Cmd.of("true")) for i in range(n)]


def test_several_projects_run_at_once_up_to_the_bound_and_results_keep_plan_order():
    running, peak, lock = [0], [0], threading.Lock()

    def runner(hc, s):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.1 if s.project.folder != "app0" else 0.3)  # the first one finishes last
        with lock:
            running[0] -= 1
        return ActionResult(s.project.path, s.action, s.cmd.line, "done")

    out = run_steps(None, steps(7), parallel=3, runner=runner)
    assert peak[0] == 3
    assert [r.project for r in out] == [f"apps/app{i}" for i in range(7)]


def test_core_start_up_stops_at_the_first_failure_and_skips_the_rest():
    ran = []

    def runner(hc, s):
        ran.append(s.project.folder)
        return ActionResult(s.project.path, "up", s.cmd.line, "failed" if s.project.folder == "app1" else "done")

    out = run_steps(SimpleNamespace(host=Host("hyp1")), steps(4), stop_on_failure=True, runner=runner)
    assert ran == ["app0", "app1"]
    assert [(r.project, r.result, r.detail) for r in out] == [
        ("apps/app0", "done", ""), ("apps/app1", "failed", ""),
        ("apps/app2", "skipped", "not started: apps/app1 failed"),
        ("apps/app3", "skipped", "not started: apps/app1 failed")]


H1, H2 = Host("hyp1"), Host("hyp2")


def test_dry_run_tables_show_the_exact_command_of_every_step():
    rows = (ActionResult("apps/cloud", "down", "docker compose -p cloud down", "would"),)
    text = lifecycle_table([Outcome(H1, HostActions("hyp1", rows)), Outcome(H2, error="cannot connect", kind="unreachable")],
                           planned=True)
    assert text.splitlines() == [
        "HOST  PROJECT     ACTION  COMMAND (--dry: not run)",
        "----  ----------  ------  ----------------------------",
        "hyp1  apps/cloud  down    docker compose -p cloud down",
        "hyp2  -           -       UNREACHABLE: cannot connect",
    ]


def test_names_no_host_has_are_said_once_for_the_fleet():
    a = Outcome(H1, HostActions("hyp1", (), missing=("clud", "wiki")))
    b = Outcome(H2, HostActions("hyp2", (), missing=("clud",)))
    assert lifecycle_warnings([a, b]) == ["warning: not found on any target host: clud"]


def status_of(*projects: ProjectStatus) -> HostStatus:
    return HostStatus("hyp1", "/srv", projects)


def test_the_status_table_puts_every_core_row_first_then_apps_then_users():
    a = Outcome(H1, HostStatus("hyp1", "/srv", (
        ProjectStatus("core", "front", "/srv/core/front", "up", ("proxy",), ("proxy",), image_age=90000),
        ProjectStatus("apps", "cloud", "/srv/apps/cloud", "partial", ("web", "db"), ("web",), ("db exited (137)",)),
    )))
    b = Outcome(H2, HostStatus("hyp2", "/srv", (
        ProjectStatus("core", "front", "/srv/core/front", "up", ("proxy",), ("proxy",)),
        ProjectStatus("users", "blog", "/srv/users/blog", "up", ("blog",), ("blog",)),
    )))
    lines = render_status([a, b]).splitlines()
    assert [ln.split()[:5] for ln in lines[2:6]] == [
        ["hyp1", "core", "front", "1/1", "up"], ["hyp2", "core", "front", "1/1", "up"],
        ["hyp1", "apps", "cloud", "1/2", "partial"], ["hyp2", "users", "blog", "1/1", "up"]]
    assert lines[2].split()[5] == "1d" and lines[4].endswith("db exited (137)")
    assert lines[-1] == "3/4 projects up on 2/2 hosts; 1 need attention"
    assert has_problems([a, b]) and not has_problems([b])
    assert status_json([a, b])["hosts"][0]["projects"][1]["problems"] == ["db exited (137)"]
    data = status_envelope("apps.status")([a, b, Outcome(H2, None, "/srv is not mounted: run boot.mount", "failed")])
    assert (data["task"], data["dry"], data["summary"], data["missing"]) == (
        "apps.status", None, {"hosts": 3, "hosts_ok": 2, "projects": 4, "up": 3}, [])
    assert data["hosts"][0]["projects"] == status_json([a, b])["hosts"][0]["projects"]
    assert data["hosts"][2] == {"host": "hyp2", "status": "failed", "error": "/srv is not mounted: run boot.mount"}


# --------------------------------------------------------------------------- templates


def test_a_new_project_is_made_by_commands_that_cannot_overwrite():
    t = ServiceTemplate("static", "/srv/templates/static", "docker-compose.yml", env_example=True, conf=True)
    assert [c.line for c in plan_new(t, "/srv/users/site")] == [
        "mkdir -m 0755 -- /srv/users/site",
        "cp -p -- /srv/templates/static/docker-compose.yml /srv/users/site/docker-compose.yml",
        "cp -Rp -- /srv/templates/static/conf /srv/users/site/conf",
        "install -m 0600 -- /srv/templates/static/.env.example /srv/users/site/.env",
        "mkdir -m 0755 -- /srv/users/site/data",
    ]


def test_templates_are_listed_with_what_they_hold(tmp_path):
    from aegir.compose.templates import list_cmd

    (tmp_path / "templates/static/conf").mkdir(parents=True)
    (tmp_path / "templates/static/compose.yaml").write_text("services: {}\n")
    (tmp_path / "templates/static/.env.example").write_text("DOMAIN=\n")
    (tmp_path / "templates/notes").mkdir()
    out = subprocess.run(list_cmd(str(tmp_path)).line, shell=True, capture_output=True, text=True).stdout
    assert parse_list(out, str(tmp_path)) == (
        ServiceTemplate("notes", f"{tmp_path}/templates/notes", None),
        ServiceTemplate("static", f"{tmp_path}/templates/static", "compose.yaml", env_example=True, conf=True),
    )
    out = subprocess.run(list_cmd(str(tmp_path / "nope")).line, shell=True, capture_output=True, text=True).stdout
    assert parse_list(out, str(tmp_path / "nope")) is None


# --------------------------------------------------------------------------- one Compose name, two folders


def test_two_folders_with_one_compose_name_are_warned_about_and_never_acted_on(tmp_path):
    """apps/cloud and users/cloud are both `-p cloud`: `up` in one would recreate the other's containers."""
    import pytest
    from invoke import Context

    from aegir.cli import AegirConfig
    from aegir.compose.steps import plan_host
    from aegir.errors import RefusedError

    for path in ("apps/cloud", "users/cloud", "apps/wiki"):
        (tmp_path / path).mkdir(parents=True)
        (tmp_path / path / "docker-compose.yml").write_text("services:\n  web:\n    image: x\n")
    hc = open_context(Context(config=AegirConfig(lazy=True)),
                            Host("local", connection="local", srv=str(tmp_path), srv_mount=False))
    try:
        from aegir.compose.status import discover

        assert [w for w in discover(hc).warnings if "also" in w] == [
            f"{tmp_path}/apps/cloud: Compose project 'cloud' is also users/cloud: the same project to Compose, "
            "so aegir does not start or stop it; rename one folder",
            f"{tmp_path}/users/cloud: Compose project 'cloud' is also apps/cloud: the same project to Compose, "
            "so aegir does not start or stop it; rename one folder"]
        with pytest.raises(RefusedError, match=r"apps/cloud and users/cloud are the same Compose project"):
            plan_host(hc, ("users/cloud",), "down", refuse_core=True)
    finally:
        hc.close()


# --------------------------------------------------------------------------- fleet actions: names, order, asking


def test_a_name_no_host_has_is_one_sentence_with_the_close_ones_difflib_finds():
    from aegir.compose.discovery import unknown_names

    found = [p("cloud", "apps"), p("clouds", "users"), p("wiki", "apps"), p("front")]
    assert unknown_names(["clowd", "wiki", "users/wikki", "zzz", "front"], found) == (
        "no project 'clowd' on any target host (did you mean cloud or clouds?)",
        "no project 'users/wikki' on any target host (did you mean apps/wiki?)",
        "no project 'zzz' on any target host",
    )
    assert unknown_names(["apps/clouds"], found) == (
        "no project 'apps/clouds' on any target host (did you mean apps/cloud or users/clouds?)",)


def test_core_goes_first_front_first_to_start_and_last_front_last_to_stop():
    from aegir.compose.plan import ordered

    projects = [p("adm"), p("front"), p("cloud", "apps"), p("blog", "users")]
    assert [x.path for x in ordered(projects, "up")] == ["core/front", "core/adm", "apps/cloud", "users/blog"]
    assert [x.path for x in ordered(projects, "update")] == ["core/front", "core/adm", "apps/cloud", "users/blog"]
    assert [x.path for x in ordered(projects, "down")] == ["apps/cloud", "users/blog", "core/adm", "core/front"]
    assert [x.path for x in ordered(projects, "stop")] == ["apps/cloud", "users/blog", "core/adm", "core/front"]


def _plans(action: str, per_host: dict[str, list[Project]]) -> list[Outcome]:
    from aegir.compose.plan import HostPlan

    return [Outcome(Host(name=h), HostPlan(h, action, tuple(Step(x, action, Cmd.of("true")) for x in ps)))
            for h, ps in per_host.items()]


def test_stopping_on_several_hosts_or_touching_core_asks_first_and_nothing_else_does():
    from aegir.compose.plan import question as needs_confirmation

    cloud, front = p("cloud", "apps"), p("front")
    assert needs_confirmation(_plans("down", {"a": [cloud], "b": [cloud]})) == "Down 2 projects on a, b?"
    assert needs_confirmation(_plans("stop", {"a": [cloud], "b": []})) is None  # one host acts
    assert needs_confirmation(_plans("restart", {"a": [cloud], "b": [cloud]})) is None
    assert needs_confirmation(_plans("up", {"a": [front, cloud], "b": [front]})) is None
    assert needs_confirmation(_plans("restart", {"a": [front]})) == (
        "Restart 1 project on a, core included (a:core/front: every app behind it is cut off until it is back)?")
    assert needs_confirmation(_plans("down", {"a": [cloud, front]})) == (
        "Down 2 projects on a, core included (a:core/front: every app behind it is cut off until core.up)?")


# --------------------------------------------------------------------------- the Lifecycle action


def test_a_name_no_host_has_refuses_the_command_and_says_which_hosts_were_not_asked():
    from aegir.compose.plan import HostPlan, refusal

    plans = [Outcome(H1, HostPlan("hyp1", "restart", (), ("wikki",), (p("wiki", "apps"),))),
             Outcome(H2, error="cannot connect", kind="unreachable")]
    assert refusal(("wiki", "wikki"), plans) == (
        "no project 'wikki' on any target host (did you mean wiki?) (not asked: hyp2, which did not answer); "
        "nothing done")
    assert refusal(("wiki",), plans) is None
    assert refusal(("wikki",), plans[1:]) is None  # no host answered: nothing to compare with


def test_a_lifecycle_run_is_reported_in_the_envelope_with_each_hosts_steps_and_failed_rows_by_failed_row():
    import json
    from pathlib import Path

    from aegir.action import HostRun, Ran
    from aegir.compose.plan import HostPlan
    from aegir.compose.report import lifecycle_report

    step = Step(p("cloud", "apps"), "down", Cmd.of("docker", "compose", "-p", "cloud", "down"))
    plan = HostPlan("hyp1", "down", (step,), warnings=("apps/x: no compose file",))
    done = HostActions("hyp1", (ActionResult("apps/cloud", "down", "docker compose -p cloud down", "done", "down 0/2",
                                             "no container left"),), warnings=plan.warnings)
    ran = Ran((Outcome(H1, HostRun(plan, done)), Outcome(H2, error="cannot connect", kind="unreachable")),
              dry=False, acted=True)
    shown = lifecycle_report("apps.down", ran)
    data = shown.data
    schema = json.loads((Path(__file__).parents[2] / "aegir/report.schema.json").read_text())
    assert set(schema["required"]) <= set(data) and data["task"] == "apps.down" and data["dry"] is False
    assert data["hosts"][0] == {
        "host": "hyp1", "status": "ok", "error": None, "missing": [], "warnings": ["apps/x: no compose file"],
        "steps": [{"project": "apps/cloud", "action": "down", "command": "docker compose -p cloud down",
                   "result": "done", "state": "down 0/2", "detail": "no container left"}]}
    assert data["hosts"][1] == {"host": "hyp2", "status": "unreachable", "error": "cannot connect", "steps": [],
                                "missing": [], "warnings": []}
    assert data["summary"] == {"steps": 1, "done": 1, "missing": []}
    assert shown.warnings == ("warning: hyp1: apps/x: no compose file",)
    assert not shown.problems
    assert shown.text.splitlines()[2:] == [
        "hyp1  apps/cloud  down    done         down 0/2: no container left",
        "hyp2  -           -       UNREACHABLE  cannot connect"]
    dry = lifecycle_report("apps.down", Ran((Outcome(H1, HostRun(plan)),), dry=True, acted=False))
    assert dry.data["dry"] is True and dry.data["hosts"][0]["steps"][0]["result"] == "would"
    assert dry.text.splitlines()[2] == "hyp1  apps/cloud  down    docker compose -p cloud down"


def test_under_all_or_nothing_an_action_acts_on_no_host_while_one_could_not_be_planned(capsys):
    """Before, `aegir.action.run` refused the whole command (exit 1, no rows); the lifecycle tasks' way is
    the one policy now: each host it would have acted on is not attempted, with a row saying why."""
    from invoke import Context

    from aegir import action
    from aegir.cli import AegirConfig
    from aegir.errors import AegirError

    acted: list[str] = []

    class Touch(action.Action[str, str]):
        label = "x.touch"

        def plan(self, hc) -> str:
            if hc.name == "a":
                raise AegirError("cannot read /srv", host=hc.name)
            return "touch"

        def act(self, hc, plan: str) -> str:
            acted.append(hc.name)
            return "touched"

    hosts = [Host(n, connection="local") for n in "abc"]
    ran = action.run(Context(config=AegirConfig(lazy=True)), Touch(), hosts, dry=False, all_or_nothing=True)
    assert acted == []
    assert [(o.host.name, o.kind, o.error) for o in ran.outcomes] == [
        ("a", "failed", "cannot read /srv"),
        ("b", "skipped", "not attempted: --all-or-nothing and a could not be planned"),
        ("c", "skipped", "not attempted: --all-or-nothing and a could not be planned")]
    assert capsys.readouterr().err == (
        "aegir: --all-or-nothing: a (failed) could not be planned, so nothing is done on b, c\n")
