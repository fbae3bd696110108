"""apps.compose's contract (issue 21) on a lab host, and every compose task on a host whose /srv is not mounted.

On the lab host: a read (``ps``) runs and prints only Compose's output; ``down -v``
(which removes the containers and the named volumes) is refused without a
terminal, planned and never run under ``--dry``, and run with ``--yes``. Every
claim is checked against the host's Docker API, never against aegir itself.

On this machine (``connection: local``, no lab): a /srv that is a plain folder
is a failed host with the reason for every task that reads projects, exit 1,
and nothing is written there; ``srv_mount: false`` says it is a folder on purpose.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from aegir.action import DRY_LINE
from aegir.compose.state import LABEL_PROJECT
from tests.helpers import remove_compose_containers, run_inv, write_inventory
from tests.lab import Lab, LabHost

IMAGE = "aegir-lab/busybox:latest"
FRONT = f"services:\n  proxy:\n    image: {IMAGE}\n    command: [\"sleep\", \"86400\"]\n"
SCRATCH = (f"services:\n  box:\n    image: {IMAGE}\n    command: [\"sleep\", \"86400\"]\n    volumes: [\"data:/data\"]\n"
           "volumes:\n  data: {}\n")
DOWN_V = ("docker compose --project-directory /srv/apps/scratch -f /srv/apps/scratch/docker-compose.yml "
          "-p scratch down -v")


def state(host: LabHost) -> tuple[list[tuple[str, str]], list[str]]:
    """The scratch project's containers (id, state) and named volumes, as the host's Docker API lists them."""
    client = host.docker_client()
    try:
        rows = client.api.containers(all=True, filters={"label": f"{LABEL_PROJECT}=scratch"})
        volumes = client.api.volumes(filters={"label": f"{LABEL_PROJECT}=scratch"}).get("Volumes") or []
    finally:
        client.close()
    return sorted((r["Id"], r["State"]) for r in rows), sorted(v["Name"] for v in volumes)


@pytest.fixture(scope="module")
def scratch(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LabHost, Path]]:
    """A lab host of its own with core/front and apps/scratch (one container, one named volume) up."""
    with lab.extra_host() as host:
        inv = lab.write_inventory(tmp_path_factory.mktemp("inv") / "hosts.yml", [host])
        host.write("core/front/docker-compose.yml", FRONT)
        host.write("apps/scratch/docker-compose.yml", SCRATCH)
        up = run_inv("apps.up", "--all", inventory=inv)
        assert up.returncode == 0, up.stdout + up.stderr
        try:
            yield host, inv
        finally:
            remove_compose_containers(host)


def test_a_read_runs_at_once_and_prints_only_composes_output(scratch):
    host, inv = scratch
    ps = run_inv("apps.compose", "scratch", "--", "ps", "--format", "{{.Name}} {{.State}}", inventory=inv)
    assert (ps.returncode, ps.stdout, ps.stderr) == (0, "scratch-box-1 running\n", "")


def test_down_v_is_refused_without_a_terminal_and_nothing_is_touched(scratch):
    """Before: `inv apps.compose scratch -- down -v` ran at once, exit 0, the volume gone."""
    host, inv = scratch
    before = state(host)
    assert before[0] and before[1] == ["scratch_data"]
    res = run_inv("apps.compose", "scratch", "--", "down", "-v", inventory=inv)
    assert res.returncode == 1, res.stdout + res.stderr
    assert res.stderr == "aegir: apps.compose: stdin is not a terminal; pass --yes to run it without a prompt\n"
    assert DOWN_V in " ".join(res.stdout.split()) and "would" in res.stdout  # the plan, shown first
    assert state(host) == before


@pytest.mark.parametrize("dry", [["apps.compose", "scratch", "--dry"], ["--dry", "apps.compose", "scratch"]],
                         ids=["task-flag", "program-flag"])
def test_down_v_is_planned_under_dry_and_never_run(scratch, dry):
    """Before: `inv --dry apps.compose front -- down -v` ran `down -v`, exit 0."""
    host, inv = scratch
    before = state(host)
    res = run_inv(*dry, "--", "down", "-v", inventory=inv)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stderr == DRY_LINE + "\n"
    rows = [line.split() for line in res.stdout.splitlines()[2:]]
    assert rows[0][:2] == [host.name, "apps/scratch"] and rows[0][-1] == "would"
    assert DOWN_V in " ".join(res.stdout.split())
    assert state(host) == before


def test_down_v_runs_with_yes_and_removes_the_containers_and_the_volume(scratch):
    host, inv = scratch
    res = run_inv("apps.compose", "scratch", "--yes", "--", "down", "-v", inventory=inv)
    assert res.returncode == 0, res.stdout + res.stderr
    assert state(host) == ([], [])
    table = " ".join(res.stdout.split())
    assert f"{host.name} apps/scratch {DOWN_V} done" in table
    back = run_inv("apps.up", "scratch", inventory=inv)  # as the fixture left it, for whatever runs next
    assert back.returncode == 0 and len(state(host)[0]) == 1


# --------------------------------------------------------------------------- a /srv that is not mounted (no lab)


@pytest.fixture
def unmounted(tmp_path: Path) -> tuple[Path, Path]:
    """This machine as a host whose /srv is a plain folder (not a mount point) with a core and an app project
    and a template: a hypervisor after a reboot, before boot.mount."""
    srv = tmp_path / "srv"
    for path in ("core/front", "apps/cloud", "templates/static"):
        (srv / path).mkdir(parents=True)
        (srv / path / "compose.yaml").write_text("services:\n  web:\n    image: busybox\n")
    return srv, write_inventory(tmp_path, f"hosts:\n  local:\n    connection: local\n    srv: {srv}\n")


def tree(root: Path) -> dict[str, tuple[int, int]]:
    return {str(f.relative_to(root)): (f.stat().st_size, f.stat().st_mtime_ns) for f in sorted(root.rglob("*"))}


TASKS = [
    ["apps.status"], ["apps.lint"], ["apps.templates"], ["core.status"],
    ["--dry", "core.up"], ["--dry", "apps.up", "--all"], ["--dry", "apps.up", "cloud", "--force"],
    ["apps.compose", "cloud", "--", "config", "--services"], ["apps.compose", "cloud", "--yes", "--", "down", "-v"],
    ["apps.new", "blog", "--template", "static"], ["--dry", "apps.new", "blog", "--template", "static"],
]


@pytest.mark.parametrize("task", TASKS, ids=[" ".join(t) for t in TASKS])
def test_a_host_whose_srv_is_not_mounted_fails_every_compose_task_with_the_reason(unmounted, task):
    """Before: `apps.lint` said "0 findings in 0 projects", `core.up --dry` printed a plan, exit 0."""
    srv, inventory = unmounted
    before = tree(srv)
    res = run_inv(*task, inventory=inventory, timeout=120)
    assert res.returncode == 1, res.stdout + res.stderr
    assert f"{srv} is not mounted: run boot.mount" in " ".join(res.stdout.split()), res.stdout
    assert res.stderr.strip().splitlines()[-1] == "aegir: failed on local", res.stderr
    assert "Traceback" not in res.stderr
    assert tree(srv) == before


@pytest.mark.parametrize("task", [["apps.lint"], ["apps.templates"], ["--dry", "core.up"]])
def test_the_json_says_the_reason_in_the_envelope(unmounted, task):
    srv, inventory = unmounted
    res = run_inv(*task, "--format", "json", inventory=inventory, timeout=120)
    assert res.returncode == 1, res.stdout + res.stderr
    [host] = json.loads(res.stdout)["hosts"]
    assert (host["status"], host["error"]) == ("failed", f"{srv} is not mounted: run boot.mount")


def test_srv_mount_false_reads_a_plain_folder_on_purpose(unmounted):
    srv, inventory = unmounted
    inventory.write_text(inventory.read_text() + "    srv_mount: false\n")
    lint = run_inv("apps.lint", "--format", "json", inventory=inventory, timeout=120)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    data = json.loads(lint.stdout)
    assert (data["task"], data["summary"]["projects"]) == ("apps.lint", 2)
    listed = run_inv("apps.templates", "--format", "json", inventory=inventory, timeout=60)
    assert [t["name"] for t in json.loads(listed.stdout)["hosts"][0]["templates"]] == ["static"]
    dry = run_inv("--dry", "core.up", inventory=inventory, timeout=60)
    assert dry.returncode == 0 and "core/front" in dry.stdout, dry.stdout + dry.stderr
