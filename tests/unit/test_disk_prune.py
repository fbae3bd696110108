"""disk.prune's plan: what goes and what stays, from Docker's state and the /srv projects (pure)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aegir.disk.facts import (
    DockerContainer,
    DockerImage,
    DockerState,
    DockerUsage,
    DockerVolume,
    ProjectImages,
    Usage,
    parse_docker_state,
    parse_project_images,
)
from aegir.disk.plan import PruneOptions, plan_prune
from aegir.docker import DockerNetwork, parse_image_ref

DATA = Path(__file__).parent / "data"
NONE = Usage(0, 0, 0, 0)


def state(images=(), containers=(), networks=(), volumes=(), cache=NONE):
    return DockerState(tuple(images), tuple(containers), tuple(networks), tuple(volumes),
                       DockerUsage(NONE, NONE, NONE, cache))


def refs(path, *images, dir=None, unknown=None):
    return ProjectImages(path, dir or f"/srv/{path}", tuple(parse_image_ref(i) for i in images), unknown)


RUNNING = DockerContainer("c1", "live-app-1", "sha256:busy", "running", "/srv/apps/live", "live",
                          networks=("n-live",))
PAUSED = DockerContainer("c2", "paused-app-1", "sha256:paused", "exited", "/srv/apps/paused", "paused",
                         networks=("n-paused",))
ONEOFF = DockerContainer("c3", "oneoff", "sha256:busy", "exited", size_rw=10, volumes=("a" * 64,))
RUN_ONEOFF = DockerContainer("c4", "paused-app-run-1", "sha256:paused", "exited", "/srv/apps/paused", "paused",
                             oneoff=True)
IMAGES = (
    DockerImage("sha256:busy", ("busybox:latest",), size=100, shared=100, containers=2),
    DockerImage("sha256:paused", ("lab/paused:1",), size=150, shared=100, containers=1),
    DockerImage("sha256:stopped", ("lab/stopped:1",), size=170, shared=100),
    DockerImage("sha256:unused", ("lab/unused:1",), size=200, shared=100),
    DockerImage("sha256:dangling", (), size=130, shared=100),
)
PROJECTS = (refs("apps/live", "busybox:latest"), refs("apps/paused", "lab/paused:1"),
            refs("apps/archive", "lab/stopped:1"))
NETWORKS = (DockerNetwork("bridge", "n-bridge"), DockerNetwork("live_default", "n-live"),
            DockerNetwork("paused_default", "n-paused"), DockerNetwork("old_default", "n-old"))
VOLUMES = (DockerVolume("a" * 64, True, 5), DockerVolume("keepme", False, 7))
ALL = state(IMAGES, (RUNNING, PAUSED, ONEOFF, RUN_ONEOFF), NETWORKS, VOLUMES)


def removed(plan):
    return [(i.kind, i.name, i.bytes, i.why) for i in plan.remove]


def test_the_garbage_goes_and_what_srv_projects_use_or_name_stays():
    plan = plan_prune(ALL, PROJECTS)
    assert removed(plan) == [
        ("container", "oneoff", 10, "stopped container"),
        ("container", "paused-app-run-1", 0, "one-off container of apps/paused"),
        ("image", "<none> dangling", 30, "dangling"),
        ("image", "lab/unused:1", 100, "unused tag"),
        ("network", "old_default", 0, "no container attached"),
    ]
    assert [(i.kind, i.name, i.why) for i in plan.kept] == [
        ("container", "paused-app-1", "stopped service of apps/paused"),
        ("image", "lab/stopped:1", "referenced by apps/archive"),
        ("volume", "keepme", "named volume"),
    ]
    assert plan.bytes == 140 and plan.warnings == ()


def test_asked_for_project_images_and_containers_and_volumes_they_go_too_but_never_a_named_volume():
    plan = plan_prune(ALL, PROJECTS, PruneOptions(volumes=True, project_images=True, project_containers=True))
    assert [(k, n, w) for k, n, _, w in removed(plan)] == [
        ("container", "oneoff", "stopped container"),
        ("container", "paused-app-1", "stopped service of apps/paused"),
        ("container", "paused-app-run-1", "one-off container of apps/paused"),
        ("image", "<none> dangling", "dangling"),
        ("image", "lab/paused:1", "only apps/paused references it"),
        ("image", "lab/stopped:1", "only apps/archive references it"),
        ("image", "lab/unused:1", "unused tag"),
        ("network", "old_default", "no container attached"),
        ("network", "paused_default", "no container attached"),
        ("volume", "a" * 64, "anonymous, unused"),
    ]
    assert [(i.kind, i.name) for i in plan.kept] == [("volume", "keepme")]


def test_an_image_a_stopped_project_container_uses_stays_even_when_its_file_names_another():
    plan = plan_prune(ALL, (refs("apps/paused", "lab/paused:2"),), PruneOptions(project_images=True))
    assert "lab/paused:1" not in [i.name for i in plan.remove]  # its container stays, so does its image


def test_build_cache_not_in_use_is_one_item_with_dockers_bytes():
    plan = plan_prune(state(cache=Usage(5, 2, 900, 700)), ())
    assert removed(plan) == [("build cache", "3 records", 700, "not in use")]


def test_docker_state_reads_sizes_from_df_and_networks_and_volumes_from_the_container_list():
    df = {
        "LayersSize": 300,
        "Images": [{"Id": "sha256:a", "RepoTags": ["<none>:<none>"], "RepoDigests": [], "Size": 300,
                    "SharedSize": -1, "Containers": 1}],
        "Containers": [{"Id": "c1", "SizeRw": 42, "State": "exited"}],
        "Volumes": [{"Name": "b" * 64, "Labels": None, "UsageData": {"Size": 9, "RefCount": 1}},
                    {"Name": "c" * 64, "Labels": {"com.docker.compose.volume": "data"}, "UsageData": {"Size": -1}},
                    {"Name": "anon", "Labels": {"com.docker.volume.anonymous": ""}, "UsageData": {"Size": 1}}],
    }
    rows = [{"Id": "c1", "Names": ["/x-1"], "ImageID": "sha256:a", "State": "exited",
             "Labels": {"com.docker.compose.project": "x", "com.docker.compose.project.working_dir": "/srv/apps/x",
                        "com.docker.compose.oneoff": "True"},
             "NetworkSettings": {"Networks": {"x_default": {"NetworkID": "n1"}}},
             "Mounts": [{"Type": "volume", "Name": "b" * 64}, {"Type": "bind", "Source": "/srv/apps/x/data"}]}]
    s = parse_docker_state(df, rows, [{"Id": "n1", "Name": "x_default", "Driver": "bridge"}])
    assert s.images == (DockerImage("sha256:a", (), (), 300, 0, 1),)
    assert s.containers == (DockerContainer("c1", "x-1", "sha256:a", "exited", "/srv/apps/x", "x", True, 42,
                                            ("n1",), ("b" * 64,)),)
    assert [(v.name[:4], v.anonymous, v.size) for v in s.volumes] == [("anon", True, 1), ("bbbb", True, 9),
                                                                       ("cccc", False, 0)]
    assert s.networks == (DockerNetwork("x_default", "n1", "bridge"),)
    assert s.usage.containers == Usage(1, 0, 42, 42)


# --------------------------------------------------------------------------- names spelled any way

D = "sha256:" + "0123456789abcdef" * 4
E = "sha256:" + "fedcba9876543210" * 4


def test_an_image_a_project_names_is_kept_however_the_file_spells_it():
    """Docker's RepoTags and RepoDigests spell names its short way (``mariadb:11``, ``nginx@sha256:…``); compose
    files spell them any way Docker accepts. A tag next to a digest is pulled by the digest: the image has no
    tag, only that RepoDigest."""
    images = (
        DockerImage("sha256:maria", ("mariadb:11",), size=10),
        DockerImage("sha256:hub", ("lab/hub:2",), size=10),
        DockerImage("sha256:plain", ("lab/plain:latest",), size=10),
        DockerImage("sha256:pinned", (), (f"nginx@{D}",), size=10),  # pulled as nginx:1.25@sha256:…: no tag
        DockerImage("sha256:local", (), (f"registry.local:5000/x/y@{E}",), size=10),
        DockerImage("sha256:old-nginx", ("nginx:1.24",), (f"nginx@{E}",), size=10),
        DockerImage("sha256:dangling", (), size=10),
    )
    projects = (refs("apps/maria", "library/mariadb:11"), refs("apps/maria2", "docker.io/library/mariadb:11"),
                refs("apps/hub", "index.docker.io/lab/hub:2"), refs("apps/plain", "docker.io/lab/plain"),
                refs("apps/web", f"nginx:1.25@{D}"), refs("apps/local", f"registry.local:5000/x/y:1@{E}"))
    plan = plan_prune(state(images), projects)
    assert [(i.name, i.why) for i in plan.kept] == [
        ("lab/hub:2", "referenced by apps/hub"),
        ("lab/plain:latest", "referenced by apps/plain"),
        ("mariadb:11", "referenced by apps/maria, apps/maria2"),
        (f"nginx@{D}", "referenced by apps/web"),
        (f"registry.local:5000/x/y@{E}", "referenced by apps/local"),
    ]
    assert [(i.name, i.why) for i in plan.remove] == [
        ("<none> dangling", "dangling"),
        ("nginx:1.24", "unused tag"),  # the same repository, another digest: not what apps/web pins
    ]
    assert plan.warnings == ()


def test_a_digest_only_image_no_project_names_is_garbage_on_a_host_whose_projects_are_all_known():
    plan = plan_prune(state([DockerImage("sha256:old", (), (f"nginx@{E}",), size=10)]),
                      (refs("apps/web", f"nginx:1.25@{D}"),))
    assert [(i.name, i.why) for i in plan.remove] == [(f"nginx@{E}", "unused digest")]


def test_images_pulled_by_digest_on_record_from_a_real_dockerd_are_kept_by_their_digest():
    """``/system/df`` of a lab dockerd (20.10) after ``docker pull 127.0.0.1:5000/lab/pinned:1@…``,
    ``…/lab/orphan@…`` (the lab's registry, `tests.lab.registry`) and ``nginx:1.25@…`` (the same registry as
    the daemon's Docker Hub mirror): each has no RepoTags and one RepoDigest, as Docker leaves an image it
    pulled by digest (the tag next to a digest is dropped)."""
    df = json.loads((DATA / "docker_df_repodigest.json").read_text())
    s = parse_docker_state(df, [], [])
    by_digest = {i.digests[0].partition("@")[0]: i for i in s.images if i.digests}
    assert sorted(by_digest) == ["127.0.0.1:5000/lab/orphan", "127.0.0.1:5000/lab/pinned", "nginx"]
    assert all(i.tags == () for i in by_digest.values())
    pinned, nginx = by_digest["127.0.0.1:5000/lab/pinned"].digests[0], by_digest["nginx"].digests[0]
    plan = plan_prune(s, (refs("apps/pinned", pinned.replace("@", ":1@")),
                          refs("apps/web", "docker.io/library/" + nginx.replace("@", ":1.25@"))))
    assert [(i.name, i.why) for i in plan.kept] == [(pinned, "referenced by apps/pinned"),
                                                    (nginx, "referenced by apps/web")]
    assert [(i.name, i.why) for i in plan.remove] == [(by_digest["127.0.0.1:5000/lab/orphan"].digests[0],
                                                       "unused digest"), ("aegir-lab/busybox:latest", "unused tag")]


# --------------------------------------------------------------------------- unknown images

APP = "services:\n  app:\n    image: lab/app:1\n"
DEBUG = APP + "  debug:\n    image: ${DEBUG_IMAGE}\n    profiles: [debug]\n"
NO_IMAGE = 'service "debug" has neither an image nor a build context specified: invalid compose project'

#: cause -> (raw text, `compose config` output or None, keywords, the reason the plan gives)
UNKNOWN = {
    "a profile whose image is an unset variable (Compose v2 with --profile '*')": (
        DEBUG, None, dict(config_error=NO_IMAGE, unset={"DEBUG_IMAGE"}),
        "service debug (profiles: debug): image ${DEBUG_IMAGE}: DEBUG_IMAGE is not set"),
    "a profile Compose did not enable (v1, or a v2 without '*')": (
        DEBUG, APP, {}, "service debug (profiles: debug): image ${DEBUG_IMAGE} is left out by `compose config`"),
    "an unset variable in a name Docker still reads": (
        "services:\n  app:\n    image: lab/app${SUFFIX}\n", "services:\n  app:\n    image: lab/app\n",
        dict(unset={"SUFFIX"}), "service app: image lab/app${SUFFIX}: SUFFIX is not set"),
    "a compose file aegir could not read": (
        "", None, dict(error="compose.yaml: cannot read it", config_error="permission denied"),
        "compose.yaml: cannot read it"),
    "a compose file that is not YAML": (
        "services:\n  web: [\n", None,
        dict(error="docker-compose.yml:3: invalid YAML: expected the node content, but found '<stream end>'"),
        "docker-compose.yml:3: invalid YAML: expected the node content, but found '<stream end>'"),
    "a reference Docker refuses": (
        "services:\n  app:\n    image: Lab/App:1\n", "services:\n  app:\n    image: Lab/App:1\n", {},
        "service app: image 'Lab/App:1': invalid reference format: repository name (App) must be lowercase"),
    "an interpolated image and `compose config` failing": (
        "services:\n  app:\n    image: ${IMAGE}\n", None, dict(config_error="required variable IMAGE is missing a value"),
        "service app: image ${IMAGE}: `compose config` failed: required variable IMAGE is missing a value"),
    "services from another file and `compose config` failing": (
        "services:\n  app:\n    extends: {file: base.yml, service: app}\n", None,
        dict(config_error="open base.yml: no such file or directory"),
        "services from other files (extends, include): `compose config` failed: open base.yml: no such file or directory"),
}

#: One of each: tagged, pinned by digest only, and neither (dangling).
MIXED = (DockerImage("sha256:tagged", ("lab/other:1",), size=10),
         DockerImage("sha256:pinned", (), (f"lab/pinned@{D}",), size=20),
         DockerImage("sha256:dangling", (), size=30))


@pytest.mark.parametrize("cause", UNKNOWN)
def test_a_project_with_an_image_that_cannot_be_resolved_keeps_every_named_image_of_the_host(cause):
    """Only images with neither a tag nor a digest may go then: no ``image:`` can name them (Compose finds an
    image by name:tag or name@digest; a bare ID is refused or read as a Hub name), and one a container uses is
    kept anyway. They are what a rebuilt ``build:`` image leaves behind."""
    raw, resolved, kw, reason = UNKNOWN[cause]
    blind = parse_project_images("apps/x", "/srv/apps/x", "x", raw, resolved, **kw)
    assert blind.unknown == reason
    plan = plan_prune(state(MIXED), (blind, refs("apps/known", "lab/app:1")))
    assert [(i.name, i.why) for i in plan.kept] == [("lab/other:1", "images of apps/x unknown"),
                                                    (f"lab/pinned@{D}", "images of apps/x unknown")]
    assert [(i.name, i.why) for i in plan.remove] == [("<none> dangling", "dangling")]
    assert plan.warnings == (f"apps/x: {reason}; no image with a tag or a digest is pruned on this host",)
    asked = plan_prune(state(MIXED), (blind,), PruneOptions(project_images=True))  # the operator's call
    assert [i.name for i in asked.remove] == ["<none> dangling", "lab/other:1", f"lab/pinned@{D}"]


def test_a_file_is_read_as_compose_resolves_it_with_every_profile_plus_its_literals_and_build_names():
    raw = ("services:\n  web:\n    image: ${IMAGE}\n  worker:\n    build: .\n  debug:\n    image: docker.io/library/busybox\n"
           "    profiles: [debug]\n  tools:\n    image: ${TOOLS:-lab/tools:3}\n    profiles: [tools]\n")
    resolved = ("name: cloud\nservices:\n  debug:\n    image: docker.io/library/busybox\n  tools:\n    image: lab/tools:3\n"
                "  web:\n    image: lab/web:2\n  worker:\n    build:\n      context: .\n")
    got = parse_project_images("apps/cloud", "/srv/apps/cloud", "cloud", raw, resolved)
    assert ([str(r) for r in got.refs], got.unknown) == (
        ["busybox:latest", "cloud-worker:latest", "cloud_worker:latest", "lab/tools:3", "lab/web:2"], None)
    plain = parse_project_images("apps/wiki", "/srv/apps/wiki", "wiki", "services:\n  w:\n    image: wiki:1\n",
                                 None, config_error="config failed")  # literal images need no Compose
    assert ([str(r) for r in plain.refs], plain.unknown) == (["wiki:1"], None)


def test_compose_config_is_asked_with_every_profile_enabled():
    from aegir.compose import commands as compose
    from aegir.compose.discovery import Project

    p = Project("apps", "cloud", "/srv/apps/cloud", "compose.yaml", env_mode=0o600)
    assert compose.config(compose.Flavour(("docker", "compose"), "2.40.3"), p, profiles=("*",)).line == (
        "docker compose --project-directory /srv/apps/cloud -f /srv/apps/cloud/compose.yaml -p cloud "
        "--env-file /srv/apps/cloud/.env --profile '*' config")


def test_unset_variables_are_read_from_what_compose_v2_and_v1_say():
    from aegir.disk.facts import unset_variables

    stderr = ('time="2026-12-07T07:33:31Z" level=warning msg="The \\"SUFFIX\\" variable is not set. Defaulting to a blank '
              'string."\nWARN[0000] The "DEBUG_IMAGE" variable is not set. Defaulting to a blank string.\n'
              "WARNING: The OLD variable is not set. Defaulting to a blank string.\n")
    assert unset_variables(stderr) == {"SUFFIX", "DEBUG_IMAGE", "OLD"}


# --------------------------------------------------------------------------- folders discovery skips


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


SKIPPED = {
    "apps/ok/compose.yaml": APP,
    "apps/my wiki/compose.yaml": "services:\n  wiki:\n    image: lab/wiki:1\n",
    "apps/_old/docker-compose.yml": "services:\n  old:\n    image: lab/old:1\n",
    "apps/.trash/compose.yml": "services:\n  gone:\n    image: lab/gone:1\n",
    "apps/a\nb/compose.yaml": "services:\n  nl:\n    image: lab/nl:1\n",
    "apps/_notes/README": "not a project\n",
    "apps/.git/HEAD": "ref: refs/heads/main\n",
}
INVALID = "use letters, digits, '_', '.', '-' (at most 63, not starting with a symbol)"


def test_a_folder_discovery_skips_reaches_the_plan_named_with_why_and_makes_the_host_unknown(tmp_path):
    from aegir.compose.discovery import discover_cmd, parse_discovery
    from aegir.disk.facts import skipped_images

    srv = write(tmp_path / "srv", SKIPPED)
    out = subprocess.run(discover_cmd(str(srv)).line, shell=True, capture_output=True, text=True, check=True).stdout
    disc = parse_discovery(out, str(srv))
    assert [p.path for p in disc.projects] == ["apps/ok"]
    assert [(s.path, s.compose_file) for s in disc.skipped] == [
        ("apps/.trash", "compose.yml"), ("apps/?", "compose.yaml"), ("apps/_notes", None),
        ("apps/_old", "docker-compose.yml"), ("apps/my wiki", "compose.yaml")]
    blind = [skipped_images(str(srv), s) for s in disc.skipped if s.compose_file]
    plan = plan_prune(state(MIXED), blind)
    assert plan.warnings == (
        f"apps/.trash: discovery skipped this folder (invalid project folder name '.trash': {INVALID}), so its "
        "compose.yml is not read; no image with a tag or a digest is pruned on this host",
        "apps/?: discovery skipped this folder (its name holds a tab or a newline), so its compose.yaml is not "
        "read; no image with a tag or a digest is pruned on this host",
        f"apps/_old: discovery skipped this folder (invalid project folder name '_old': {INVALID}), so its "
        "docker-compose.yml is not read; no image with a tag or a digest is pruned on this host",
        f"apps/my wiki: discovery skipped this folder (invalid project folder name 'my wiki': {INVALID}), so its "
        "compose.yaml is not read; no image with a tag or a digest is pruned on this host",
    )
    assert [i.name for i in plan.remove] == ["<none> dangling"]
    assert f"{srv}/apps/_notes: skipped: invalid project folder name '_notes': {INVALID}" in disc.warnings
    assert not any(".git" in w for w in disc.warnings)  # a hidden folder without a compose file is nothing


# --------------------------------------------------------------------------- through the real Compose (no daemon)


@pytest.fixture
def local(tmp_path, monkeypatch):
    from invoke import Context

    from aegir.cli import AegirConfig
    from aegir.host import open_context
    from aegir.inventory import Host

    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    srv = tmp_path / "srv"
    srv.mkdir()
    hc = open_context(Context(config=AegirConfig(lazy=True)), Host("local", connection="local", srv=str(srv), srv_mount=False))
    yield srv, hc
    hc.close()


def test_project_images_asks_the_real_compose_for_profiles_and_unset_variables(local):
    from aegir.compose.status import discover
    from aegir.disk.facts import project_images

    srv, hc = local
    write(srv, {
        "apps/debug/compose.yaml": DEBUG,  # DEBUG_IMAGE set nowhere
        "apps/tools/compose.yaml": APP + "  tools:\n    image: ${TOOLS}\n    profiles: [tools]\n",
        "apps/tools/.env": "TOOLS=lab/tools:3\n",
        "apps/suffix/compose.yaml": "services:\n  app:\n    image: lab/app${SUFFIX}\n",
        "apps/my wiki/compose.yaml": "services:\n  wiki:\n    image: lab/wiki:1\n",
    })
    got = {p.path: ([str(r) for r in p.refs], p.unknown) for p in project_images(hc, discover(hc))}
    assert got == {
        "apps/debug": (["lab/app:1"],
                       "service debug (profiles: debug): image ${DEBUG_IMAGE}: DEBUG_IMAGE is not set"),
        "apps/tools": (["lab/app:1", "lab/tools:3"], None),  # the profile's image, from .env
        "apps/suffix": (["lab/app:latest"], "service app: image lab/app${SUFFIX}: SUFFIX is not set"),
        "apps/my wiki": ([], f"discovery skipped this folder (invalid project folder name 'my wiki': {INVALID}), "
                             "so its compose.yaml is not read"),
    }


def test_a_srv_that_cannot_be_entered_leaves_every_project_unknown(local):
    from aegir.compose.discovery import Discovery
    from aegir.disk.facts import project_images

    _, hc = local
    [blind] = project_images(hc, Discovery("/srv", (), srv_missing=True))
    assert (blind.path, blind.unknown) == ("/srv", "/srv cannot be entered: its projects are unknown")
