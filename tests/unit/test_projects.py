"""Project facts: discovery in one round trip, containers from one API call, status and orphans."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from aegir.compose.discovery import (
    Project,
    Service,
    compose_name,
    discover_cmd,
    parse_compose_spec,
    parse_discovery,
    select,
    split_names,
)
from aegir.compose.state import ProjectContainer, find_orphans, parse_containers, project_status
from aegir.errors import AegirError
from aegir.report import age

DATA = Path(__file__).parent / "data"


def make_srv(root: Path) -> Path:
    """A /srv with one core project, apps (one with .env, one renamed, one broken), users, and noise."""
    def write(rel, text, mode=None):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        if mode is not None:
            p.chmod(mode)

    write("core/front/docker-compose.yml", "services:\n  proxy:\n    image: aegir-lab/busybox:latest\n")
    write("apps/cloud/compose.yaml", "name: nextcloud\nservices:\n  web:\n    image: a\n  db:\n    image: b\n"
          "  debug:\n    image: c\n    profiles: [debug]\n  worker:\n    image: d\n    deploy:\n      replicas: 2\n")
    write("apps/cloud/.env", "DOMAIN=cloud.example.org\n", 0o640)
    write("apps/broken/docker-compose.yml", "services:\n  web: [\n")
    write("apps/twice/compose.yml", "services: {a: {image: x}}\n")
    write("apps/twice/docker-compose.yml", "services: {b: {image: x}}\n")
    (root / "apps/notes").mkdir(parents=True)
    write("users/Wiki.Team/docker-compose.yaml", "services:\n  wiki:\n    image: w\n")
    write("conf/ignored/docker-compose.yml", "services: {}\n")
    return root


@pytest.fixture
def srv(tmp_path):
    return make_srv(tmp_path / "srv")


def run_discovery(srv: Path, with_env: bool = False) -> str:
    cmd = discover_cmd(str(srv), with_env=with_env)
    return subprocess.run(cmd.line, shell=True, capture_output=True, text=True, check=True).stdout


def test_discovery_is_one_sh_command_taking_the_srv_path_as_data():
    cmd = discover_cmd("/srv")
    assert cmd.argv[:2] == ("sh", "-c") and cmd.argv[3:] == ("sh", "/srv", "", "1048576")  # limits.YAML_BYTES
    assert discover_cmd("/srv", with_env=True).argv[3:] == ("sh", "/srv", "env", "1048576")


def test_discovery_finds_every_project_folder_with_its_kind_in_start_order(srv):
    d = parse_discovery(run_discovery(srv), str(srv))
    assert [p.path for p in d.projects] == ["core/front", "apps/broken", "apps/cloud", "apps/twice", "users/Wiki.Team"]
    front, _, cloud, twice, wiki = d.projects
    assert (front.dir, front.file, front.env_mode) == (f"{srv}/core/front", "docker-compose.yml", None)
    assert (cloud.file, cloud.env_mode, cloud.declared_name) == ("compose.yaml", 0o640, "nextcloud")
    assert twice.file == "compose.yml"
    assert wiki.name == "wikiteam"


def test_expected_services_leave_out_profiles_and_count_replicas(srv):
    cloud = parse_discovery(run_discovery(srv), str(srv)).by_path()["apps/cloud"]
    assert cloud.services == (Service("web", 1, "a"), Service("db", 1, "b"), Service("worker", 2, "d"))
    assert cloud.expected == ("web", "db", "worker")


def test_discovery_warns_about_names_files_and_folders_it_cannot_use(srv):
    d = parse_discovery(run_discovery(srv), str(srv))
    assert d.warnings == (
        f"{srv}/apps/notes: no compose file (compose.yaml, compose.yml, docker-compose.yaml, docker-compose.yml)",
        f"{srv}/apps/cloud/compose.yaml:1: name: 'nextcloud' differs from the folder; aegir runs it as 'cloud'",
        f"{srv}/apps/twice: several compose files (compose.yml, docker-compose.yml); using compose.yml, as Compose does",
        f"{srv}/users/Wiki.Team: Compose names this project 'wikiteam', not 'Wiki.Team' (lower case, [a-z0-9_-])",
    )


def tar_line(files: dict[str, str]) -> str:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, text in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    return "T\t" + base64.b64encode(buf.getvalue()).decode() + "\n"


def test_a_compose_file_tar_could_not_read_is_a_project_in_error():
    """tar leaves out what it cannot read (root reads everything, so this output is made by hand)."""
    text = "P\tapps/a\tdocker-compose.yml\nP\tapps/b\tcompose.yaml\n" + tar_line(
        {"apps/a/docker-compose.yml": "services: {web: {image: x}}\n"})
    d = parse_discovery(text, "/srv").by_path()
    assert d["apps/a"].expected == ("web",)
    assert (d["apps/b"].error, d["apps/b"].services) == ("compose.yaml: cannot read it", ())


def test_a_compose_file_that_is_not_yaml_is_a_project_in_error(srv):
    broken = parse_discovery(run_discovery(srv), str(srv)).by_path()["apps/broken"]
    assert broken.error == "docker-compose.yml:3: invalid YAML: expected the node content, but found '<stream end>'"
    assert broken.services == ()


def test_env_texts_travel_only_when_asked_for(srv):
    assert parse_discovery(run_discovery(srv), str(srv)).envs == {}
    assert parse_discovery(run_discovery(srv, True), str(srv)).envs == {"apps/cloud": "DOMAIN=cloud.example.org\n"}


def test_reports_show_the_warnings_about_what_they_cover(srv):
    from aegir.compose.discovery import warnings_about

    d = parse_discovery(run_discovery(srv), str(srv))
    cloud = [d.by_path()["apps/cloud"]]
    assert [w.split(": ")[0] for w in warnings_about(d, cloud, all_of_kinds=False)] == [
        f"{srv}/apps/cloud/compose.yaml:1"]
    assert [w.split(": ")[0].split("/")[-1] for w in warnings_about(d, (), ("users",))] == ["Wiki.Team"]
    assert len(warnings_about(d, ())) == len(d.warnings) == 4
    gone = parse_discovery(run_discovery(srv / "nope"), str(srv / "nope"))
    assert warnings_about(gone, (), ("core",)) == gone.warnings


def test_a_missing_srv_is_said_not_failed(tmp_path):
    d = parse_discovery(run_discovery(tmp_path / "nope"), str(tmp_path / "nope"))
    assert d.srv_missing and d.projects == ()
    assert d.warnings == (f"{tmp_path}/nope does not exist or cannot be entered",)


def test_recorded_discovery_output_parses_the_same(srv):
    text = (DATA / "compose_discovery.txt").read_text()
    d = parse_discovery(text, "/srv")
    assert [p.path for p in d.projects] == ["core/front", "apps/cloud", "apps/wiki", "users/blog"]
    assert d.by_path()["apps/cloud"].env_mode == 0o600


def test_folder_names_that_could_reach_a_shell_are_skipped_with_a_warning():
    d = parse_discovery("P\tapps/$(id)\tdocker-compose.yml\t-\t\n", "/srv")
    assert d.projects == () and "skipped: invalid project folder name '$(id)'" in d.warnings[0]


@pytest.mark.parametrize("folder, name", [("cloud", "cloud"), ("Wiki.Team", "wikiteam"), ("_x-y", "x-y")])
def test_the_project_name_is_the_folder_name_as_compose_normalises_it(folder, name):
    assert compose_name(folder) == name


def test_a_services_key_that_is_not_a_mapping_is_an_error():
    assert parse_compose_spec("services: [a, b]\n").error == "?: 'services' is not a mapping"


# --------------------------------------------------------------------------- names


def test_names_are_split_on_commas_and_spaces_and_validated():
    assert split_names("cloud, users/wiki cloud") == ("cloud", "users/wiki")
    assert split_names("") == ()
    with pytest.raises(AegirError, match="invalid project name"):
        split_names("cloud;reboot")
    with pytest.raises(AegirError, match="must be one of core, apps, users"):
        split_names("etc/passwd")


PROJECTS = (Project("core", "front", "/srv/core/front", "docker-compose.yml"),
            Project("apps", "wiki", "/srv/apps/wiki", "docker-compose.yml"),
            Project("users", "wiki", "/srv/users/wiki", "docker-compose.yml"),
            Project("users", "blog", "/srv/users/blog", "docker-compose.yml"))


def test_select_keeps_kinds_finds_names_and_reports_the_rest():
    assert select(PROJECTS, ())[0] == PROJECTS
    assert select(PROJECTS, (), ("core",))[0] == PROJECTS[:1]
    chosen, missing = select(PROJECTS, ("blog", "users/wiki", "nope"))
    assert [p.path for p in chosen] == ["users/blog", "users/wiki"] and missing == ("nope",)


def test_a_bare_name_in_two_kinds_is_ambiguous():
    with pytest.raises(AegirError, match="hyp1: 'wiki' is ambiguous: apps/wiki, users/wiki"):
        select(PROJECTS, ("wiki",), host="hyp1")


# --------------------------------------------------------------------------- containers and status


def containers() -> tuple[ProjectContainer, ...]:
    return parse_containers(json.loads((DATA / "compose_containers_api.json").read_text()))


def test_containers_come_from_the_api_list_with_exit_codes_and_health_from_status():
    by_name = {c.name: c for c in containers()}
    assert by_name["cloud-web-1"].state == "running" and by_name["cloud-web-1"].health == ""
    assert by_name["cloud-db-1"].state == "exited" and by_name["cloud-db-1"].exit_code == 137
    assert by_name["front-proxy-1"].working_dir == "/srv/core/front"
    assert by_name["front-proxy-1"].service == "proxy"


CLOUD = Project("apps", "cloud", "/srv/apps/cloud", "docker-compose.yml",
                services=(Service("web"), Service("db")))
FRONT = Project("core", "front", "/srv/core/front", "docker-compose.yml", services=(Service("proxy"),))


def c(service, state="running", wd="/srv/apps/cloud", health="", code=None, image="sha256:a", project="cloud",
      oneoff=False):
    return ProjectContainer(f"id-{service}-{state}", f"{project}-{service}-1", project, wd, service, state, health, code,
                     image, oneoff)


def test_a_project_with_every_service_running_is_up_and_knows_its_image_age():
    s = project_status(CLOUD, [c("web"), c("db")], {"sha256:a": 1000}, now=1000 + 3 * 86400 + 5)
    assert (s.state, s.services, s.problems, s.ok, s.image_age) == ("up", "2/2", (), True, 3 * 86400 + 5)
    assert age(s.image_age) == "3d"


def test_a_stopped_container_makes_the_project_partial_and_says_its_exit_code():
    s = project_status(CLOUD, [c("web"), c("db", "exited", code=137)], {}, now=0)
    assert (s.state, s.services, s.problems, s.ok) == ("partial", "1/2", ("db exited (137)",), False)


def test_no_running_service_is_down_and_a_missing_container_is_named():
    s = project_status(CLOUD, [c("web", "exited", code=0)], {}, now=0)
    assert (s.state, s.problems) == ("down", ("web exited (0)", "db missing"))


def test_a_service_with_a_replica_down_is_not_running_and_the_project_is_partial():
    scaled = Project("apps", "cloud", "/srv/apps/cloud", "docker-compose.yml",
                     services=(Service("web"), Service("worker", replicas=2)))
    s = project_status(scaled, [c("web"), c("worker"), c("worker", "exited", code=137)], {}, now=0)
    assert (s.state, s.services, s.problems, s.ok) == (
        "partial", "1/2", ("worker exited (137)", "worker 1/2 replicas running"), False)
    s = project_status(scaled, [c("web", "exited", code=1), c("worker")], {}, now=0)
    assert (s.state, s.running) == ("partial", ())  # something runs: not "down"


def test_unhealthy_or_restarting_containers_are_a_problem_even_when_all_run():
    s = project_status(CLOUD, [c("web", health="unhealthy"), c("db")], {}, now=0)
    assert (s.state, s.problems, s.ok) == ("unhealthy", ("web unhealthy",), False)
    s = project_status(CLOUD, [c("web"), c("db"), c("db", "restarting", code=1)], {}, now=0)
    assert (s.state, s.problems) == ("unhealthy", ("db restarting (exit 1)",))


def test_one_off_run_containers_and_other_folders_do_not_count():
    s = project_status(CLOUD, [c("web"), c("db"), c("web", "exited", oneoff=True, code=1),
                               c("web", "exited", wd="/srv/apps/other", code=1)], {}, now=0)
    assert (s.state, s.problems, s.containers) == ("up", (), 2)


def test_containers_of_a_service_gone_from_the_file_are_reported():
    s = project_status(CLOUD, [c("web"), c("db"), c("old")], {}, now=0)
    assert s.problems == ("old: not in docker-compose.yml",)


def test_a_project_whose_file_is_broken_is_in_error():
    broken = Project("apps", "cloud", "/srv/apps/cloud", "docker-compose.yml", error="docker-compose.yml:3: invalid YAML")
    s = project_status(broken, [c("web")], {}, now=0)
    assert (s.state, s.problems, s.ok) == ("error", ("docker-compose.yml:3: invalid YAML",), False)


def test_orphans_are_projects_outside_the_project_folders_or_whose_folder_is_gone():
    from aegir.compose.discovery import Discovery

    disc = Discovery("/srv", (CLOUD, FRONT))
    found = [c("web"), c("proxy", wd="/srv/core/front", project="front"),
             c("x", wd="/home/alice/test", project="test"), c("y", "exited", wd="/srv/apps/gone", project="gone"),
             c("z", wd="/srv/apps/cloud/sub", project="sub")]
    assert [(o.project, o.reason, o.running, o.containers) for o in find_orphans(disc, found)] == [
        ("gone", "folder gone", 0, 1),
        ("sub", "outside /srv/{core,apps,users}", 1, 1),
        ("test", "outside /srv/{core,apps,users}", 1, 1),
    ]


@pytest.mark.parametrize("seconds, text", [(None, None), (5, "5s"), (59, "59s"), (60, "1m"), (7200, "2h"),
                                           (86400 * 400, "400d")])
def test_ages_are_short(seconds, text):
    assert age(seconds) == text


def test_image_creation_times_come_from_the_api_image_list():
    from aegir.compose.state import image_created

    images = image_created(json.loads((DATA / "compose_images_api.json").read_text()))
    assert images == {"sha256:fcdc443063bed0bf21c3a5fc37d9034f0926ad1d3a3d7b15774b4d3920a0b3a8": 946684800}
    assert {c.image_id for c in containers()} == set(images)
