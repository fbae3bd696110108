"""disk.prune's plan: what goes and what stays, from Docker's state and the /srv projects (pure)."""

from __future__ import annotations

from aegir.disk.facts import (
    DockerContainer,
    DockerImage,
    DockerState,
    DockerUsage,
    DockerVolume,
    Usage,
    parse_docker_state,
    parse_project_images,
)
from aegir.disk.plan import PruneOptions, plan_prune
from aegir.docker import DockerNetwork

NONE = Usage(0, 0, 0, 0)


def state(images=(), containers=(), networks=(), volumes=(), cache=NONE):
    return DockerState(tuple(images), tuple(containers), tuple(networks), tuple(volumes),
                       DockerUsage(NONE, NONE, NONE, cache))


def refs(path, *images, dir=None):
    from aegir.disk.facts import ProjectImages

    return ProjectImages(path, dir or f"/srv/{path}", tuple(images))


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


def test_a_project_whose_images_are_unknown_keeps_every_tagged_image_and_says_why():
    from aegir.disk.facts import ProjectImages

    blind = ProjectImages("apps/archive", "/srv/apps/archive", None, "apps/archive: images interpolated")
    plan = plan_prune(ALL, (*PROJECTS[:2], blind))
    assert [i.name for i in plan.remove if i.kind == "image"] == ["<none> dangling"]
    assert plan.warnings == ("apps/archive: images interpolated; no tagged image is pruned on this host",)


def test_build_cache_not_in_use_is_one_item_with_dockers_bytes():
    plan = plan_prune(state(cache=Usage(5, 2, 900, 700)), ())
    assert removed(plan) == [("build cache", "3 records", 700, "not in use")]


def test_an_image_file_is_read_as_compose_resolves_it_plus_its_literal_images_and_build_names():
    raw = ("services:\n  web:\n    image: ${IMAGE}\n  worker:\n    build: .\n"
           "  debug:\n    image: docker.io/library/busybox\n    profiles: [debug]\n")
    resolved = "name: cloud\nservices:\n  web:\n    image: lab/web:2\n  worker:\n    build:\n      context: .\n"
    got = parse_project_images("apps/cloud", "/srv/apps/cloud", "cloud", raw, resolved, None)
    assert got.refs == ("busybox:latest", "cloud-worker:latest", "cloud_worker:latest", "lab/web:2")
    blind = parse_project_images("apps/cloud", "/srv/apps/cloud", "cloud", raw, None, "IMAGE: required")
    assert blind.refs is None
    assert blind.error == "apps/cloud: images interpolated from .env, and `compose config` failed: IMAGE: required"
    plain = parse_project_images("apps/wiki", "/srv/apps/wiki", "wiki", "services:\n  w:\n    image: wiki:1\n",
                                 None, "config failed")
    assert plain.refs == ("wiki:1",)


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
