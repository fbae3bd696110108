"""The Compose helper: v1/v2 detection, every command line as an exact string, both ps JSON shapes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from aegir.compose import commands as compose
from aegir.compose.commands import ComposeMissing, ComposeOutputError, Flavour, PsEntry, parse_detect, parse_ps
from aegir.compose.discovery import Project
from aegir.errors import AegirError

DATA = Path(__file__).parent / "data"

V2 = Flavour(("docker", "compose"), "2.40.3")
V2_STANDALONE = Flavour(("docker-compose",), "2.40.3")
V1 = Flavour(("docker-compose",), "1.29.2")
CLOUD = Project("apps", "cloud", "/srv/apps/cloud", "docker-compose.yml", env_mode=0o600)
NO_ENV = Project("core", "front", "/srv/core/front", "compose.yaml")


# --------------------------------------------------------------------------- detection


def test_detection_is_one_probe_trying_the_plugin_then_the_standalone_binary():
    cmd = compose.detect_cmd()
    assert cmd.line.startswith("sh -c ")
    script = cmd.argv[2]
    assert script.index("/cli-plugins") < script.index("docker compose version --short") < script.index(
        "docker-compose version --short")
    assert cmd.argv[4:] == ("/usr/local/lib/docker/cli-plugins", "/usr/local/libexec/docker/cli-plugins",
                            "/usr/lib/docker/cli-plugins", "/usr/libexec/docker/cli-plugins")


def test_a_plugin_found_on_disk_is_v2_without_running_compose():
    fl = parse_detect("plugin-file /usr/local/lib/docker/cli-plugins/docker-compose\n")
    assert fl == Flavour(("docker", "compose")) and not fl.v1 and fl.major == 2
    assert fl.label == "docker compose plugin (v2)"


def test_the_v2_plugin_is_docker_compose_with_a_space():
    assert parse_detect("plugin 2.40.3\n") == V2
    assert not V2.v1 and V2.major == 2


def test_a_standalone_v2_binary_is_still_v2():
    fl = parse_detect("standalone 2.40.3\n")
    assert fl == V2_STANDALONE and not fl.v1


def test_docker_compose_1_x_is_v1():
    fl = parse_detect("standalone 1.29.2\n")
    assert fl == V1 and fl.v1
    assert fl.label == "docker-compose 1.29.2 (v1)"


def test_a_leading_v_in_the_version_is_dropped():
    assert parse_detect("plugin v2.3.3\n").version == "2.3.3"


@pytest.mark.parametrize("out", ["none\n", "", "plugin\n", "plugin not-a-version\n", "docker 2.4\n"])
def test_no_compose_is_one_clear_error(out):
    with pytest.raises(ComposeMissing, match="hyp1: no Docker Compose"):
        parse_detect(out, host="hyp1")


def test_the_probe_really_runs_in_sh_and_reports_what_answers(tmp_path):
    """Run the probe script with fake `docker`/`docker-compose` on PATH: plugin first, then v1."""
    def fake(name, body):
        p = tmp_path / name
        p.write_text("#!/bin/sh\n" + body)
        p.chmod(0o755)

    fake("docker", 'exit 1\n')  # docker without the compose plugin
    fake("docker-compose", 'echo 1.29.2\n')
    plugins = tmp_path / "plugins"
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "HOME": str(tmp_path / "home")}

    def probe() -> str:
        line = compose.detect_cmd((str(plugins),)).line
        return subprocess.run(line, shell=True, env=env, capture_output=True, text=True).stdout

    assert parse_detect(probe()) == V1
    fake("docker", '[ "$1 $2 $3" = "compose version --short" ] && echo 2.40.3\n')
    assert parse_detect(probe()) == V2
    plugins.mkdir()
    (plugins / "docker-compose").write_text("")  # not executable: not a plugin the CLI would run
    assert parse_detect(probe()) == V2
    (plugins / "docker-compose").chmod(0o755)
    assert probe() == f"plugin-file {plugins}/docker-compose\n"
    user = tmp_path / "home" / ".docker" / "cli-plugins"
    user.mkdir(parents=True)
    (user / "docker-compose").write_text("")
    (user / "docker-compose").chmod(0o755)
    assert probe() == f"plugin-file {user}/docker-compose\n"  # the user's plugins first, as the CLI


# --------------------------------------------------------------------------- commands


def test_every_v2_command_names_the_folder_the_file_the_env_file_and_the_project():
    assert compose.up(V2, CLOUD).line == (
        "docker compose --project-directory /srv/apps/cloud -f /srv/apps/cloud/docker-compose.yml "
        "-p cloud --env-file /srv/apps/cloud/.env up -d")


def test_every_v1_command_calls_docker_compose_with_the_same_options():
    assert compose.up(V1, CLOUD).line == (
        "docker-compose --project-directory /srv/apps/cloud -f /srv/apps/cloud/docker-compose.yml "
        "-p cloud --env-file /srv/apps/cloud/.env up -d")


def test_a_project_without_env_file_gets_no_env_file_option():
    assert compose.down(V2, NO_ENV).line == (
        "docker compose --project-directory /srv/core/front -f /srv/core/front/compose.yaml -p front down")


@pytest.mark.parametrize("fl, prefix", [(V2, "docker compose"), (V1, "docker-compose")])
def test_lifecycle_commands_for_both_flavours(fl, prefix):
    base = f"{prefix} --project-directory /srv/apps/cloud -f /srv/apps/cloud/docker-compose.yml -p cloud --env-file /srv/apps/cloud/.env"
    assert compose.down(fl, CLOUD).line == f"{base} down"
    assert compose.restart(fl, CLOUD).line == f"{base} restart"
    assert compose.restart(fl, CLOUD, ["web", "worker"]).line == f"{base} restart web worker"
    assert compose.pull(fl, CLOUD).line == f"{base} pull"
    assert compose.pull(fl, CLOUD, ignore_failures=True).line == f"{base} pull --ignore-pull-failures"
    assert compose.logs(fl, CLOUD).line == f"{base} logs --no-color"
    assert compose.logs(fl, CLOUD, ["web"], follow=True, tail=50).line == f"{base} logs --no-color --follow --tail 50 web"
    assert compose.config_check(fl, CLOUD).line == f"{base} config --quiet"


def test_ps_asks_v2_for_json_and_v1_for_its_table():
    assert compose.ps(V2, NO_ENV).line.endswith("-p front ps --all --format json")
    assert compose.ps(V1, NO_ENV).line.endswith("-p front ps --all")


def test_the_inventory_docker_host_reaches_compose_as_DOCKER_HOST():
    cmd = compose.up(V2, NO_ENV, docker_host="unix:///run/docker-lab.sock")
    assert cmd.line == ("env DOCKER_HOST=unix:///run/docker-lab.sock docker compose --project-directory "
                        "/srv/core/front -f /srv/core/front/compose.yaml -p front up -d")


def test_odd_paths_are_quoted_not_interpolated():
    odd = Project("apps", "a b", "/srv/apps/a b", "docker-compose.yml")
    assert "'/srv/apps/a b'" in compose.down(V2, odd).line


@pytest.mark.parametrize("service", ["web;rm -rf /", "$(id)", "", "-f"])
def test_service_names_are_validated_before_they_reach_a_command(service):
    with pytest.raises(AegirError, match="invalid service name"):
        compose.restart(V2, CLOUD, [service])


def test_a_negative_tail_is_refused():
    with pytest.raises(AegirError, match="--tail"):
        compose.logs(V2, CLOUD, tail=-1)


# --------------------------------------------------------------------------- ps JSON


def test_ps_reads_one_object_per_line_as_compose_2_21_and_later_print():
    entries = parse_ps((DATA / "compose_ps_v2_lines.json").read_text())
    assert [(e.service, e.state, e.exit_code) for e in entries] == [
        ("db", "exited", 137), ("web", "running", 0)]
    assert entries[1].project == "cloud" and entries[1].image == "aegir-lab/busybox:latest"


def test_ps_reads_the_json_array_compose_2_20_and_earlier_print():
    entries = parse_ps((DATA / "compose_ps_v2_array.json").read_text())
    assert entries == (
        PsEntry("cloud-db-1", "db", "running", "healthy", 0, "cloud", ""),
        PsEntry("cloud-web-1", "web", "exited", "", 1, "cloud", ""),
    )


def test_no_containers_is_no_entries_in_both_shapes():
    assert parse_ps("") == () and parse_ps("[]\n") == ()


def test_ps_output_that_is_not_json_is_one_clear_error():
    with pytest.raises(ComposeOutputError, match="did not print JSON"):
        parse_ps("NAME   IMAGE   COMMAND\n")


def test_stop_keeps_the_containers_and_a_passthrough_is_argv_after_the_project_options():
    base = ("docker compose --project-directory /srv/core/front -f /srv/core/front/compose.yaml -p front")
    assert compose.stop(V2, NO_ENV).line == f"{base} stop"
    assert compose.passthrough(V2, NO_ENV, ["exec", "-T", "proxy", "sh", "-c", "echo a b; id"]).line == (
        f"{base} exec -T proxy sh -c 'echo a b; id'")
    assert compose.passthrough(V2, NO_ENV, ["images"]).line == f"{base} images"


@pytest.mark.parametrize("args", [[], ["--file", "x"], ["$(id)"], ["Exec"]])
def test_a_passthrough_must_start_with_a_compose_subcommand_word(args):
    with pytest.raises(AegirError, match="a Compose subcommand must come first after '--'"):
        compose.passthrough(V2, NO_ENV, args)
