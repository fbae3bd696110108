"""`core` and `apps` end to end: two lab hosts of their own, real dockerd, real Compose v2, over SSH.

Each host gets core/front, apps/cloud (two services), apps/wiki and users/blog
(whose file says ``name: myblog``); the first host also has core/adm. Every
claim is checked against the host's Docker API, never against aegir itself.

No registry is reachable from the lab (its DNS goes nowhere): `apps.pull` is
tested for what it does without one -- the failure is reported per project
with Compose's own error and nothing is touched; ``--ignore-failures`` keeps
going and reports the images as unchanged; a service with
``pull_policy: never`` whose image is present is not pulled at all.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aegir.compose.state import LABEL_PROJECT, LABEL_SERVICE, LABEL_WORKING_DIR
from tests.helpers import REPO, answered_at_a_terminal, remove_compose_containers, run_inv
from tests.lab import Lab, LabHost

IMAGE = "aegir-lab/busybox:latest"
HTTPD = '["httpd", "-f", "-p", "80"]'
FRONT = f"services:\n  proxy:\n    image: {IMAGE}\n    command: {HTTPD}\n"
ADM = f"services:\n  adm:\n    image: {IMAGE}\n    command: [\"sleep\", \"86400\"]\n"
CLOUD = ("services:\n  web:\n    image: ${IMAGE}\n"
         "    command: [\"sh\", \"-c\", \"echo cloud web ready; exec httpd -f -p 80\"]\n"
         "  db:\n    image: ${IMAGE}\n    command: [\"sleep\", \"86400\"]\n")
WIKI = f"services:\n  wiki:\n    image: {IMAGE}\n    command: [\"sleep\", \"86400\"]\n"
BLOG = f"name: myblog\nservices:\n  blog:\n    image: {IMAGE}\n    pull_policy: never\n    command: {HTTPD}\n"
APPS = ("apps/cloud", "apps/wiki", "users/blog")
MINE = ("core", "apps", "users", "templates")


def containers(host: LabHost, working_dir: str | None = None) -> list[dict]:
    """The host's Compose containers as the Docker API lists them (optionally one project folder's)."""
    client = host.docker_client()
    try:
        rows = client.api.containers(all=True, filters={"label": LABEL_PROJECT})
    finally:
        client.close()
    return [r for r in rows if working_dir is None or r["Labels"].get(LABEL_WORKING_DIR) == working_dir]


def running_services(host: LabHost, working_dir: str) -> set[str]:
    return {r["Labels"][LABEL_SERVICE] for r in containers(host, working_dir) if r["State"] == "running"}


def started_at(host: LabHost, working_dir: str) -> dict[str, str]:
    client = host.docker_client()
    try:
        return {r["Labels"][LABEL_SERVICE]: client.api.inspect_container(r["Id"])["State"]["StartedAt"]
                for r in containers(host, working_dir)}
    finally:
        client.close()


def wipe(host: LabHost) -> None:
    """Remove every Compose container and the project folders this module wrote."""
    remove_compose_containers(host)
    for top in MINE:
        shutil.rmtree(host.root(f"/srv/{top}"), ignore_errors=True)


@pytest.fixture(scope="module")
def two(lab: Lab, tmp_path_factory):
    """Two fresh lab hosts with their projects up, and an inventory naming only them."""
    with lab.extra_host() as a, lab.extra_host() as b:
        inv = lab.write_inventory(tmp_path_factory.mktemp("inv") / "hosts.yml", [a, b])
        for host in (a, b):
            host.write("core/front/docker-compose.yml", FRONT)
            host.write("apps/cloud/docker-compose.yml", CLOUD)
            host.write("apps/cloud/.env", f"IMAGE={IMAGE}\n").chmod(0o600)
            host.write("apps/wiki/docker-compose.yml", WIKI)
            host.write("users/blog/docker-compose.yml", BLOG)
        a.write("core/adm/docker-compose.yml", ADM)
        up = inv_json(inv, "core.up")
        assert up.returncode == 0, up.stdout + up.stderr
        up = inv_json(inv, "apps.up", "cloud,wiki,blog")
        assert up.returncode == 0, up.stdout + up.stderr
        try:
            yield a, b, inv
        finally:
            for host in (a, b):
                wipe(host)


def inv_json(inventory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_inv(*args, "--format", "json", inventory=inventory)


def data(result: subprocess.CompletedProcess[str]) -> dict:
    return json.loads(result.stdout)


def rows(result: subprocess.CompletedProcess[str]) -> dict[tuple[str, str], dict]:
    """apps.status JSON -> {(host, kind/name): project}."""
    return {(h["host"], f"{p['kind']}/{p['name']}"): p for h in data(result)["hosts"] for p in h.get("projects", [])}


def steps(result: subprocess.CompletedProcess[str]) -> dict[tuple[str, str], dict]:
    return {(h["host"], s["project"]): s for h in data(result)["hosts"] for s in h["steps"]}


# --------------------------------------------------------------------------- status


def test_core_status_reports_the_core_projects_of_both_hosts(two):
    a, b, inv = two
    result = inv_json(inv, "core.status")
    assert result.returncode == 0, result.stdout + result.stderr
    assert {k: (p["state"], p["running"]) for k, p in rows(result).items()} == {
        (a.name, "core/adm"): ("up", ["adm"]),
        (a.name, "core/front"): ("up", ["proxy"]),
        (b.name, "core/front"): ("up", ["proxy"]),
    }


def test_apps_status_reports_what_the_docker_api_says_is_running_core_first(two):
    a, b, inv = two
    result = inv_json(inv, "apps.status")
    assert result.returncode == 0, result.stdout + result.stderr
    report = rows(result)
    assert len(report) == 9
    for (host_name, path), p in report.items():
        host = a if host_name == a.name else b
        assert set(p["running"]) == running_services(host, f"/srv/{path}") == set(p["expected"])
    table = run_inv("apps.status", inventory=inv).stdout.splitlines()
    kinds = [line.split()[1] for line in table[2:11]]
    assert kinds == ["core"] * 3 + ["apps"] * 4 + ["users"] * 2


def test_the_blog_started_under_its_own_name_still_counts_and_the_name_is_warned_about(two):
    a, _, inv = two
    blog = containers(a, "/srv/users/blog")
    assert {r["Labels"][LABEL_PROJECT] for r in blog} == {"blog"}  # aegir ran it as the folder's name
    assert inv_json(inv, "apps.down", "blog", "-H", a.name).returncode == 0
    a.run(["sh", "-c", "cd /srv/users/blog && docker compose up -d"], timeout=60)  # the runbook's way
    try:
        assert {r["Labels"][LABEL_PROJECT] for r in containers(a, "/srv/users/blog")} == {"myblog"}
        result = inv_json(inv, "apps.status", "--names", "blog", "-H", a.name)
        assert result.returncode == 0 and rows(result)[(a.name, "users/blog")]["state"] == "up"
        assert data(result)["hosts"][0]["warnings"] == [
            "/srv/users/blog/docker-compose.yml:1: name: 'myblog' differs from the folder; aegir runs it as 'blog'"]
    finally:
        a.run(["sh", "-c", "cd /srv/users/blog && docker compose down"], timeout=60)
        assert inv_json(inv, "apps.up", "blog", "-H", a.name).returncode == 0


def test_a_container_stopped_by_hand_shows_in_the_report_and_exits_non_zero(two):
    _, b, inv = two
    client = b.docker_client()
    try:
        client.containers.get("cloud-db-1").stop(timeout=1)
    finally:
        client.close()
    assert running_services(b, "/srv/apps/cloud") == {"web"}
    code = next(r for r in containers(b, "/srv/apps/cloud") if r["State"] == "exited")["Status"].split()[1]
    result = inv_json(inv, "apps.status")
    assert result.returncode == 1
    cloud = rows(result)[(b.name, "apps/cloud")]
    assert (cloud["state"], cloud["running"], cloud["problems"]) == ("partial", ["web"], [f"db exited {code}"])
    table = run_inv("apps.status", inventory=inv)
    assert table.returncode == 1
    assert any(line.split()[:5] == [b.name, "apps", "cloud", "1/2", "partial"] and line.endswith(f"db exited {code}")
               for line in table.stdout.splitlines())
    again = inv_json(inv, "apps.up", "cloud", "-H", b.name)
    assert again.returncode == 0, again.stdout
    assert running_services(b, "/srv/apps/cloud") == {"web", "db"}


SICK = (f"services:\n  main:\n    image: {IMAGE}\n    command: [\"sleep\", \"86400\"]\n"
        "    healthcheck:\n      test: [\"CMD\", \"false\"]\n      interval: 1s\n      retries: 1\n")


def test_an_unhealthy_container_is_reported_as_dockers_healthcheck_says(two):
    a, _, inv = two
    a.write("apps/sick/docker-compose.yml", SICK)
    try:
        assert inv_json(inv, "apps.up", "sick", "-H", a.name).returncode in (0, 1)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            result = inv_json(inv, "apps.status", "--names", "sick", "-H", a.name)
            if rows(result)[(a.name, "apps/sick")]["state"] == "unhealthy":
                break
            time.sleep(1)
        client = a.docker_client()
        try:
            health = client.api.inspect_container("sick-main-1")["State"]["Health"]["Status"]
        finally:
            client.close()
        sick = rows(result)[(a.name, "apps/sick")]
        assert (health, sick["state"], sick["problems"], result.returncode) == (
            "unhealthy", "unhealthy", ["main unhealthy"], 1)
    finally:
        assert inv_json(inv, "apps.down", "sick", "-H", a.name).returncode == 0
        shutil.rmtree(a.root("/srv/apps/sick"))


def test_orphans_are_compose_projects_outside_srv_or_whose_folder_is_gone(two):
    a, _, inv = two
    a.write("conf/scratch/compose.yaml", WIKI)
    a.write("apps/gone/docker-compose.yml", WIKI)
    a.run(["sh", "-c", "cd /srv/conf/scratch && docker compose up -d && cd /srv/apps/gone && docker compose up -d"],
          timeout=60)
    shutil.rmtree(a.root("/srv/apps/gone"))
    try:
        result = inv_json(inv, "apps.status", "-H", a.name)
        orphans = {(o["project"], o["working_dir"], o["reason"], o["running"]) for o in data(result)["hosts"][0]["orphans"]}
        assert orphans == {("scratch", "/srv/conf/scratch", "outside /srv/{core,apps,users}", 1),
                           ("gone", "/srv/apps/gone", "folder gone", 1)}
        assert "Orphans (Compose projects without a project folder):" in run_inv("apps.status", inventory=inv).stdout
    finally:
        shutil.rmtree(a.root("/srv/conf/scratch"))
        client = a.docker_client()
        try:
            for r in containers(a):
                if r["Labels"][LABEL_PROJECT] in ("scratch", "gone"):
                    client.api.remove_container(r["Id"], force=True)
        finally:
            client.close()


# --------------------------------------------------------------------------- lifecycle


def test_apps_up_is_refused_while_a_core_project_is_down_unless_forced(two):
    a, _, inv = two
    a.run(["sh", "-c", "cd /srv/core/front && docker compose stop"], timeout=60)
    a.run(["sh", "-c", "cd /srv/apps/wiki && docker compose down"], timeout=60)
    try:
        refused = run_inv("apps.up", "wiki", "-H", a.name, inventory=inv)
        assert refused.returncode == 1
        assert "core first: core/front is down (0/1); start it with `inv core.up`, or pass --force" in refused.stdout
        assert running_services(a, "/srv/apps/wiki") == set()
        forced = inv_json(inv, "apps.up", "wiki", "-H", a.name, "--force")
        assert forced.returncode == 0 and running_services(a, "/srv/apps/wiki") == {"wiki"}
    finally:
        core = inv_json(inv, "core.up", "-H", a.name)
    assert [s["project"] for s in data(core)["hosts"][0]["steps"]] == ["core/front", "core/adm"]
    assert core.returncode == 0 and running_services(a, "/srv/core/front") == {"proxy"}


def test_dry_prints_the_exact_compose_commands_and_changes_nothing(two):
    a, b, inv = two
    def state():
        return {h.name: sorted((r["Id"], r["State"]) for r in containers(h, "/srv/apps/cloud")) for h in (a, b)}

    before = state()
    result = run_inv("apps.down", "cloud", "--dry", inventory=inv)
    assert result.returncode == 0, result.stdout + result.stderr
    line = ("docker compose --project-directory /srv/apps/cloud -f /srv/apps/cloud/docker-compose.yml "
            "-p cloud --env-file /srv/apps/cloud/.env down")
    assert [ln.split(None, 3) for ln in result.stdout.splitlines()[2:] if not ln.startswith("warning:")] == [
        [a.name, "apps/cloud", "down", line], [b.name, "apps/cloud", "down", line]]
    assert state() == before and all(len(v) == 2 for v in before.values())
    core = run_inv("--dry", "core.up", "-H", a.name, inventory=inv)
    assert [ln.split()[1] for ln in core.stdout.splitlines()[2:] if not ln.startswith("warning:")] == [
        "core/front", "core/adm"]


def test_down_and_up_of_several_projects_change_real_containers(two):
    a, _, inv = two
    down = inv_json(inv, "apps.down", "cloud,wiki,blog", "-H", a.name)
    assert down.returncode == 0, down.stdout
    assert {k[1]: (s["result"], s["detail"]) for k, s in steps(down).items()} == {
        p: ("done", "no container left") for p in APPS}
    assert all(containers(a, f"/srv/{p}") == [] for p in APPS)
    up = inv_json(inv, "apps.up", "cloud,wiki,blog", "-H", a.name, "--parallel", "3")
    assert up.returncode == 0, up.stdout
    assert {k[1]: s["state"] for k, s in steps(up).items()} == {
        "apps/cloud": "up 2/2", "apps/wiki": "up 1/1", "users/blog": "up 1/1"}
    assert running_services(a, "/srv/apps/cloud") == {"web", "db"}
    assert running_services(a, "/srv/users/blog") == {"blog"}


def test_restart_of_one_service_restarts_only_that_service(two):
    _, b, inv = two
    before = started_at(b, "/srv/apps/cloud")
    time.sleep(1.1)  # StartedAt has a resolution finer than this, but make the change unmistakable
    result = inv_json(inv, "apps.restart", "cloud", "--service", "web", "-H", b.name)
    assert result.returncode == 0, result.stdout
    after = started_at(b, "/srv/apps/cloud")
    assert after["web"] > before["web"] and after["db"] == before["db"]
    assert steps(result)[(b.name, "apps/cloud")]["detail"] == "1 containers restarted"


def test_an_unknown_or_core_name_is_refused_and_names_are_validated(two):
    _, _, inv = two
    unknown = inv_json(inv, "apps.down", "clowd")
    assert (unknown.returncode, unknown.stdout) == (2, "")
    assert "aegir: no project 'clowd' on any target host (did you mean cloud?); nothing done" in unknown.stderr
    core = run_inv("apps.down", "front", inventory=inv)
    assert core.returncode == 1 and "core/front: a core project" in core.stdout
    bad = run_inv("apps.down", "cloud;reboot", inventory=inv)
    assert bad.returncode == 2 and "invalid project name 'cloud;reboot'" in bad.stderr  # a usage error


def test_pull_without_a_registry_fails_honestly_and_touches_nothing(two):
    a, _, inv = two
    ids = {r["Id"] for r in containers(a)}
    # Both runs wait for the same DNS timeout: run them side by side.
    env = {**os.environ, "AEGIR_INVENTORY": str(inv)}
    cmd = [sys.executable, "-m", "aegir", "apps.pull", "cloud,blog", "-H", a.name, "--format", "json"]
    plain = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ignoring = subprocess.Popen([*cmd[:4], "wiki", *cmd[5:], "--ignore-failures"], cwd=REPO, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, _ = plain.communicate(timeout=240)
    out2, _ = ignoring.communicate(timeout=240)
    assert plain.returncode == 1
    result = {s["project"]: s for h in json.loads(out)["hosts"] for s in h["steps"]}
    assert result["apps/cloud"]["result"] == "failed"
    assert "registry-1.docker.io" in result["apps/cloud"]["detail"]
    assert (result["users/blog"]["result"], result["users/blog"]["detail"]) == ("done", "images unchanged (1)")
    assert ignoring.returncode == 0, out2
    wiki = json.loads(out2)["hosts"][0]["steps"][0]
    assert wiki["command"].endswith("-p wiki pull --ignore-pull-failures")
    assert wiki["result"] == "done"
    assert wiki["detail"].startswith("images unchanged (1); ignored: wiki Error") and "registry-1.docker.io" in wiki["detail"]
    assert {r["Id"] for r in containers(a)} == ids


def test_logs_print_a_projects_output_from_the_host(two):
    a, _, inv = two
    result = run_inv("apps.logs", "cloud", "--service", "web", "--tail", "5", "-H", a.name, inventory=inv)
    assert result.returncode == 0, result.stderr
    assert "cloud web ready" in result.stdout
    both = run_inv("apps.logs", "cloud", "--service", "web", inventory=inv)
    assert both.stdout.count("cloud web ready") >= 2 and "==> " in both.stdout
    refused = run_inv("apps.logs", "cloud", "--follow", inventory=inv)
    assert refused.returncode == 1 and "--follow streams one host, choose it with -H" in refused.stderr


def test_a_tail_that_is_not_a_number_is_refused_in_one_line(tmp_path):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(f"hosts:\n  local:\n    connection: local\n    srv: {tmp_path}\n")
    result = run_inv("apps.logs", "cloud", "--tail", "ten", inventory=inventory, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr  # a usage error, refused before any host
    assert result.stderr == "aegir: apps.logs --tail: expected a whole number (0 or more), not 'ten'\n"


def test_logs_follow_streams_until_interrupted(two):
    a, _, inv = two
    env = {**os.environ, "AEGIR_INVENTORY": str(inv)}
    follow = subprocess.Popen([sys.executable, "-m", "aegir", "-H", a.name, "apps.logs", "cloud", "--service", "web", "-F"],
                              cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
    try:
        first = follow.stdout.readline()  # arrives while the command is still following
        assert "cloud web ready" in first and follow.poll() is None
    finally:
        follow.terminate()
        follow.wait(timeout=30)


# --------------------------------------------------------------------------- lint and templates


def test_lint_reads_every_hosts_files_over_ssh_and_exits_non_zero_on_findings(two):
    a, b, inv = two
    clean = inv_json(inv, "apps.lint")
    assert clean.returncode == 0 and data(clean)["findings"] == 0, clean.stdout
    b.root("/srv/apps/cloud/.env").chmod(0o644)
    b.write("apps/wiki/docker-compose.yml", WIKI + "    hostname: wiki.tedomum.net\n")
    try:
        dirty = inv_json(inv, "apps.lint")
        assert dirty.returncode == 1
        found = [(h["host"], f["file"], f["line"], f["rule"]) for h in data(dirty)["hosts"]
                 for p in h["projects"] for f in p["findings"]]
        assert found == [(b.name, "/srv/apps/cloud/.env", None, "env-mode"),
                         (b.name, "/srv/apps/wiki/docker-compose.yml", 5, "domain")]
    finally:
        b.root("/srv/apps/cloud/.env").chmod(0o600)
        b.write("apps/wiki/docker-compose.yml", WIKI)


def test_templates_make_a_private_env_refuse_to_overwrite_and_the_project_comes_up(two):
    a, _, inv = two
    a.write("templates/static/docker-compose.yml", BLOG.replace("name: myblog\n", ""))
    a.write("templates/static/conf/httpd.conf", "# nothing\n")
    a.write("templates/static/.env.example", "DOMAIN=\n")
    listed = inv_json(inv, "apps.templates")
    assert listed.returncode == 0
    assert [t["name"] for h in data(listed)["hosts"] for t in h["templates"]] == ["static"]
    everywhere = run_inv("apps.new", "site", "--template", "static", inventory=inv)
    assert everywhere.returncode == 1 and "apps.new makes a project on one host" in everywhere.stderr
    dry = run_inv("apps.new", "site", "--template", "static", "--users", "--dry", "-H", a.name, inventory=inv)
    assert dry.returncode == 0 and not a.root("/srv/users/site").exists()
    made = run_inv("apps.new", "site", "--template", "static", "--users", "-H", a.name, inventory=inv)
    assert made.returncode == 0, made.stdout + made.stderr
    site = a.root("/srv/users/site")
    assert sorted(p.name for p in site.iterdir()) == [".env", "conf", "data", "docker-compose.yml"]
    assert (site / ".env").stat().st_mode & 0o777 == 0o600 and list((site / "data").iterdir()) == []
    assert (site / "conf/httpd.conf").read_text() == "# nothing\n"
    again = run_inv("apps.new", "site", "--template", "static", "--users", "-H", a.name, inventory=inv)
    assert again.returncode == 1 and "/srv/users/site already exists: apps.new never overwrites" in again.stdout
    up = inv_json(inv, "apps.up", "site", "-H", a.name)
    assert up.returncode == 0 and running_services(a, "/srv/users/site") == {"blog"}
    down = inv_json(inv, "apps.down", "site", "-H", a.name)
    assert down.returncode == 0 and containers(a, "/srv/users/site") == []


# --------------------------------------------------------------------------- fleet operations (issue 13)


def created(host: LabHost, working_dir: str) -> dict[str, str]:
    """Container name -> id of a project folder's containers."""
    return {r["Names"][0].lstrip("/"): r["Id"] for r in containers(host, working_dir)}


def test_a_name_matching_nothing_refuses_the_whole_command_before_any_action(two):
    a, b, inv = two
    before = {h.name: started_at(h, "/srv/apps/wiki") for h in (a, b)}
    time.sleep(1.1)
    result = run_inv("apps.restart", "wiki,wikki", inventory=inv)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.strip() == ("aegir: no project 'wikki' on any target host (did you mean wiki?); "
                                     "nothing done")
    assert {h.name: started_at(h, "/srv/apps/wiki") for h in (a, b)} == before  # wiki was not restarted
    status = inv_json(inv, "apps.status", "--names", "wiki,wikki")  # a report keeps warning
    assert status.returncode == 1 and data(status)["missing"] == ["wikki"]


def test_stopping_on_several_hosts_is_refused_without_a_terminal_or_yes_and_asked_at_one(two):
    a, b, inv = two
    before = {h.name: created(h, "/srv/apps/wiki") for h in (a, b)}
    refused = run_inv("apps.down", "wiki", inventory=inv)  # stdin is not a terminal
    assert refused.returncode == 1
    assert "aegir: apps.down: stdin is not a terminal; pass --yes to down them without a prompt" in refused.stderr
    assert {h.name: created(h, "/srv/apps/wiki") for h in (a, b)} == before
    core = run_inv("core.restart", "-H", a.name, inventory=inv)  # core: asked even on one host
    assert core.returncode == 1 and "pass --yes to restart them without a prompt" in core.stderr
    said_no = answered_at_a_terminal(inv, "n", "apps.stop", "wiki")
    assert said_no.returncode == 1 and "aegir: nothing done" in said_no.stderr
    assert "Stop 2 projects on " in said_no.stdout and said_no.stdout.rstrip().endswith("[y/N]")
    assert {h.name: running_services(h, "/srv/apps/wiki") for h in (a, b)} == {a.name: {"wiki"}, b.name: {"wiki"}}
    stopped = inv_json(inv, "apps.stop", "wiki", "--yes")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert {k: (s["result"], s["detail"]) for k, s in steps(stopped).items()} == {
        (a.name, "apps/wiki"): ("done", "1 containers stopped (kept)"),
        (b.name, "apps/wiki"): ("done", "1 containers stopped (kept)")}
    assert {h.name: created(h, "/srv/apps/wiki") for h in (a, b)} == before  # the same containers, kept
    assert all(r["State"] == "exited" for h in (a, b) for r in containers(h, "/srv/apps/wiki"))
    assert inv_json(inv, "apps.up", "wiki").returncode == 0
    assert {h.name: running_services(h, "/srv/apps/wiki") for h in (a, b)} == {a.name: {"wiki"}, b.name: {"wiki"}}


def test_all_takes_core_down_last_and_brings_it_up_before_the_apps(two):
    a, _, inv = two
    down = inv_json(inv, "apps.down", "--all", "--yes", "-H", a.name)
    assert down.returncode == 0, down.stdout + down.stderr
    order = [s["project"] for s in data(down)["hosts"][0]["steps"]]
    assert order[-2:] == ["core/adm", "core/front"] and {*APPS} <= {*order[:-2]}  # core last, front last
    assert not any(p.startswith("core/") for p in order[:-2])
    assert containers(a) == []
    up = inv_json(inv, "apps.up", "--all", "-H", a.name)
    assert up.returncode == 0, up.stdout + up.stderr
    assert [s["project"] for s in data(up)["hosts"][0]["steps"]] == ["core/front", "core/adm", *order[:-2]]
    client = a.docker_client()
    try:
        def first_start(path: str) -> str:
            return min(client.api.inspect_container(r["Id"])["State"]["StartedAt"] for r in containers(a, path))

        def created_at(path: str) -> str:
            return min(client.api.inspect_container(r["Id"])["Created"] for r in containers(a, path))

        core_started = max(first_start("/srv/core/front"), first_start("/srv/core/adm"))
        assert all(core_started < created_at(f"/srv/{p}") for p in APPS)  # core ran before any app existed
    finally:
        client.close()
    assert {p: running_services(a, f"/srv/{p}") for p in ("core/front", *APPS)} == {
        "core/front": {"proxy"}, "apps/cloud": {"web", "db"}, "apps/wiki": {"wiki"}, "users/blog": {"blog"}}


def test_core_restart_logs_down_with_yes_act_on_core_only(two):
    a, _, inv = two
    before = started_at(a, "/srv/core/front")
    app = started_at(a, "/srv/apps/wiki")
    time.sleep(1.1)
    restarted = inv_json(inv, "core.restart", "--names", "front", "--yes", "-H", a.name)
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    assert started_at(a, "/srv/core/front")["proxy"] > before["proxy"] and started_at(a, "/srv/apps/wiki") == app
    logs = run_inv("core.logs", "front", "--tail", "3", "-H", a.name, inventory=inv)
    assert logs.returncode == 0, logs.stderr
    assert run_inv("core.logs", "cloud", "-H", a.name, inventory=inv).returncode == 2  # an app is not core
    dry = run_inv("core.down", "--dry", "-H", a.name, inventory=inv)
    assert dry.returncode == 0 and [ln.split()[1] for ln in dry.stdout.splitlines()[2:]] == ["core/adm", "core/front"]
    down = inv_json(inv, "core.down", "--names", "adm", "--yes", "-H", a.name)
    assert down.returncode == 0 and containers(a, "/srv/core/adm") == []
    assert inv_json(inv, "core.up", "-H", a.name).returncode == 0
    assert running_services(a, "/srv/core/adm") == {"adm"}


UPD = ("services:\n"
       "  fresh:\n    image: aegir-lab/busybox:upd\n    pull_policy: never\n    command: [\"sleep\", \"86400\"]\n"
       "  same:\n    image: aegir-lab/busybox:latest\n    pull_policy: never\n    command: [\"sleep\", \"86400\"]\n")


def test_update_pulls_then_recreates_only_the_service_whose_image_changed(two):
    a, _, inv = two
    client = a.docker_client()
    try:
        client.api.tag(IMAGE, "aegir-lab/busybox", "upd")
        a.write("apps/upd/docker-compose.yml", UPD)
        assert inv_json(inv, "apps.up", "upd", "-H", a.name).returncode == 0
        before = created(a, "/srv/apps/upd")
        nothing = inv_json(inv, "apps.update", "upd", "-H", a.name)
        assert nothing.returncode == 0, nothing.stdout + nothing.stderr
        step = steps(nothing)[(a.name, "apps/upd")]
        assert step["command"].count(" && ") == 1 and " pull && " in step["command"]
        assert step["detail"] == "nothing recreated; unchanged: upd-fresh-1, upd-same-1; images unchanged"
        assert created(a, "/srv/apps/upd") == before
        # What a pull brings, without a registry: the tag now names another image.
        client.api.commit(before["upd-same-1"], repository="aegir-lab/busybox", tag="upd", changes=["LABEL v=2"])
        changed = inv_json(inv, "apps.update", "upd", "-H", a.name)
        assert changed.returncode == 0, changed.stdout + changed.stderr
        # The pull itself brought nothing (the tag moved before it ran): "images unchanged" is the truth.
        assert steps(changed)[(a.name, "apps/upd")]["detail"] == (
            "recreated: upd-fresh-1; unchanged: upd-same-1; images unchanged")
        after = created(a, "/srv/apps/upd")
        assert after["upd-same-1"] == before["upd-same-1"] and after["upd-fresh-1"] != before["upd-fresh-1"]
        assert running_services(a, "/srv/apps/upd") == {"fresh", "same"}
    finally:
        client.close()
        assert inv_json(inv, "apps.down", "upd", "-H", a.name).returncode == 0
        shutil.rmtree(a.root("/srv/apps/upd"))


def test_compose_passes_any_subcommand_through_for_any_kind_of_project(two):
    a, b, inv = two
    ps = run_inv("apps.compose", "cloud", "-H", a.name, "--", "ps", "--format", "{{.Name}} {{.State}}", inventory=inv)
    assert ps.returncode == 0, ps.stderr
    assert sorted(ps.stdout.split("\n")[:2]) == ["cloud-db-1 running", "cloud-web-1 running"]
    images = run_inv("apps.compose", "front", "--", "images", inventory=inv)  # core, on both hosts
    assert images.returncode == 0, images.stderr
    assert images.stdout.count("aegir-lab/busybox") == 2
    assert f"==> {a.name} core/front <==" in images.stdout and f"==> {b.name} core/front <==" in images.stdout
    said = run_inv("apps.compose", "users/blog", "-H", a.name, "--", "exec", "-T", "blog", "sh", "-c", "echo 'a  b'; id -u",
                   inventory=inv)
    assert (said.returncode, said.stdout) == (0, "a  b\n0\n")
    failing = run_inv("apps.compose", "wiki", "-H", a.name, "--", "exec", "-T", "wiki", "false", inventory=inv)
    assert failing.returncode == 1 and f"failed on {a.name}" in failing.stderr
    assert run_inv("apps.compose", "wikki", "--", "ps", inventory=inv).returncode == 2


def test_a_rolling_lifecycle_action_stops_at_the_failed_canary_and_says_who_was_not_attempted(two):
    """apps.up --serial 1 over two hosts: the first (the canary) fails to start its project, so the
    second is never touched, and the table, the JSON and the exit line say so."""
    a, b, inv = two
    a.write("apps/roll/docker-compose.yml", "services:\n  main:\n    image: aegir-lab/nosuch:latest\n"
            "    pull_policy: never\n    command: [\"sleep\", \"86400\"]\n")
    b.write("apps/roll/docker-compose.yml", WIKI)
    try:
        res = inv_json(inv, "apps.up", "roll", "--serial", "1")
        assert res.returncode == 1, res.stdout + res.stderr
        hosts = {h["host"]: h for h in data(res)["hosts"]}
        assert hosts[a.name]["status"] == "failed"
        assert [s["result"] for s in hosts[a.name]["steps"]] == ["failed"]
        assert hosts[a.name]["error"].startswith("apps/roll failed: ")
        assert hosts[b.name]["status"] == "skipped"
        assert hosts[b.name]["error"] == f"not attempted: {a.name} failed and the canary batch stops there"
        assert containers(b, "/srv/apps/roll") == []  # never touched
        assert res.stderr.rstrip().endswith(f"aegir: failed on {a.name}; not attempted: {b.name}")
        table = run_inv("apps.up", "roll", "--serial", "1", inventory=inv)
        line = next(ln for ln in table.stdout.splitlines() if ln.startswith(b.name))
        assert table.returncode == 1 and "SKIPPED" in line and "not attempted" in line
    finally:
        for host in (a, b):
            run_inv("apps.down", "roll", "-H", host.name, "--yes", inventory=inv)
            shutil.rmtree(host.root("/srv/apps/roll"), ignore_errors=True)
