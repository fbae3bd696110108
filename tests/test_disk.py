"""disk.report end to end in the lab, over real SSH to real sshd and dockerd."""

from __future__ import annotations

import json
import secrets
import shutil
from pathlib import Path

import pytest
import yaml

from tests.helpers import ProcScan, read_table, run_inv

MiB = 1024 * 1024


def envelope(stdout: str, task: str, *, dry: bool | None) -> dict:
    """The JSON a disk task printed: the one envelope of every task (aegir/report.schema.json's required keys)."""
    doc = json.loads(stdout)
    assert (doc["task"], doc["dry"]) == (task, dry) and isinstance(doc["summary"], dict), doc
    assert all({"host", "status", "error"} <= set(h) for h in doc["hosts"]), doc["hosts"]
    assert {h["status"] for h in doc["hosts"]} <= {"ok", "failed", "unreachable", "bug", "skipped", "interrupted"}
    return doc


def report(lab, *args: str, inventory: Path | None = None):
    res = run_inv(*args, "disk.report", "--format", "json", inventory=inventory or lab.inventory_path)
    return res, (envelope(res.stdout, "disk.report", dry=None) if res.stdout.strip() else None)


def inventory_with(lab, tmp_path: Path, **defaults: str) -> Path:
    data = yaml.safe_load(lab.inventory_path.read_text())
    data["defaults"].update(defaults)
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_h_names_one_host_and_only_that_host_is_reported(lab):
    res, data = report(lab, "-H", "hyp1")
    assert res.returncode == 0, res.stderr
    assert [h["host"] for h in data["hosts"]] == ["hyp1"]


def test_h_leaves_out_what_it_marks_with_a_bang_and_exclude_does_the_same(lab):
    res, data = report(lab, "-H", "lab,!hyp2")
    assert res.returncode == 0, res.stderr
    assert [h["host"] for h in data["hosts"]] == ["hyp1", "hyp3"]
    res, data = report(lab, "--exclude", "hyp1,hyp3")
    assert res.returncode == 0, res.stderr
    assert [h["host"] for h in data["hosts"]] == ["hyp2"]
    typo = run_inv("-H", "!hyp22", "disk.report", inventory=lab.inventory_path)
    assert typo.returncode == 2 and typo.stdout == ""  # refused before any connection: a typo keeps no host in
    assert "unknown host or group 'hyp22' to leave out (did you mean 'hyp2'?)" in typo.stderr
    everyone = run_inv("-H", "lab", "--exclude", "lab", "disk.report", inventory=lab.inventory_path)
    assert everyone.returncode == 2 and "no host left: lab excludes every target (hyp1, hyp2, hyp3)" in everyone.stderr


def test_every_host_reports_the_sizes_written_into_its_srv(lab):
    hyp = {h.name: h for h in lab.hosts}
    for n, name in enumerate(["hyp1", "hyp2", "hyp3"], start=1):
        hyp[name].write(f"apps/blob{n}/data/file", n * MiB)
        hyp[name].write(f"apps/blob{n}/wal/binlog", n * 100 * 1024)
        hyp[name].write("core/front/conf/traefik.yml", "entryPoints: {}\n")

    res, data = report(lab)
    assert res.returncode == 0, res.stderr
    by_host = {h["host"]: h for h in data["hosts"]}
    assert list(by_host) == ["hyp1", "hyp2", "hyp3"]
    for n, name in enumerate(["hyp1", "hyp2", "hyp3"], start=1):
        host = by_host[name]
        assert host["status"] == "ok" and host["srv_state"] == "mounted"
        [blob] = [p for p in host["projects"] if p["name"] == f"blob{n}"]
        # du counts allocated blocks: the bytes written plus at most a few directory blocks
        assert n * MiB <= blob["data"] <= n * MiB + 16 * 1024
        assert n * 100 * 1024 <= blob["wal"] <= n * 100 * 1024 + 16 * 1024
        assert blob["db"] is None and blob["kind"] == "apps"
        assert blob["total"] >= blob["data"] + blob["wal"]
        assert any(p["kind"] == "core" and p["name"] == "front" for p in host["projects"])
        assert host["docker"]["images"]["count"] >= 1  # the lab's busybox image, via the Docker API over SSH
        assert host["docker_error"] is None
    assert data["summary"]["hosts_ok"] == 3
    assert data["summary"]["projects"] == sum(p["total"] for h in data["hosts"] for p in h["projects"])


def test_the_table_has_one_row_per_host_and_the_fleet_total(lab):
    res = run_inv("disk.report", inventory=lab.inventory_path)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].split()[:3] == ["HOST", "/", "/srv"]
    assert [ln.split()[0] for ln in lines[2:5]] == ["hyp1", "hyp2", "hyp3"]
    assert lines[-1].startswith("fleet: 3/3 hosts;")


def test_a_host_with_sshd_stopped_is_a_row_saying_unreachable_and_the_others_still_report(lab):
    hyp2 = lab.host("hyp2")
    hyp2.stop_sshd()
    try:
        res, data = report(lab)
    finally:
        hyp2.start_sshd()
    assert res.returncode == 1
    rows = {h["host"]: h for h in data["hosts"]}
    assert rows["hyp1"]["status"] == rows["hyp3"]["status"] == "ok"
    assert rows["hyp2"]["status"] == "unreachable"
    assert rows["hyp2"]["error"].startswith(f"cannot connect to root@{hyp2.addresses.admin_ipv4}:22: ")
    assert "Connection refused" in rows["hyp2"]["error"]
    assert res.stderr.strip().endswith("aegir: failed on hyp2")


def test_an_unknown_host_key_is_refused_with_how_to_accept_it(lab, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    res, data = report(lab, "-H", "hyp1", inventory=inventory_with(lab, tmp_path, known_hosts=str(empty)))
    assert res.returncode == 1
    [row] = data["hosts"]
    assert row["status"] == "unreachable"
    assert row["error"].startswith("unknown SSH host key ssh-ed25519 ")
    assert f"not in {empty}" in row["error"]
    assert row["error"].endswith(f"accept it with: ssh-keyscan {lab.host('hyp1').addresses.admin_ipv4} >> {empty}")
    assert empty.read_text() == ""  # nothing was added behind the operator's back


def test_a_changed_host_key_is_refused(lab, tmp_path):
    hyp1, hyp2 = (lab.host(n).addresses.admin_ipv4 for n in ("hyp1", "hyp2"))
    known = lab.known_hosts.read_text().splitlines()
    hyp1_key = next(ln for ln in known if ln.startswith(f"{hyp1} "))
    hyp2_key = next(ln for ln in known if ln.startswith(f"{hyp2} ")).split(" ", 1)[1]
    forged = tmp_path / "known_hosts"
    forged.write_text(f"{hyp1} {hyp2_key}\n")  # hyp1's address with hyp2's key
    assert hyp1_key != forged.read_text().strip()
    res, data = report(lab, "-H", "hyp1", inventory=inventory_with(lab, tmp_path, known_hosts=str(forged)))
    assert res.returncode == 1
    assert "does NOT match" in data["hosts"][0]["error"]


def test_a_host_without_docker_or_srv_gets_a_row_that_says_so(lab, tmp_path):
    with lab.extra_host(srv="loop", docker=False) as bare:
        res, data = report(lab, "-H", bare.name)
    assert res.returncode == 0, res.stderr
    [row] = data["hosts"]
    assert row["status"] == "ok"
    assert row["srv_state"] == "not mounted" and row["srv"] is None
    assert row["docker"] is None
    assert row["docker_error"] == "Docker is not running (no dockerd process)"  # its socket never touched


@pytest.mark.parametrize("template", ["root@{}:22", "{}"])
def test_a_raw_address_of_an_inventory_host_reports_as_that_host(lab, template):
    res, data = report(lab, "-H", template.format(lab.host("hyp3").addresses.admin_ipv4))
    assert res.returncode == 0, res.stderr
    assert [h["host"] for h in data["hosts"]] == ["hyp3"]


def test_fast_reads_filesystems_and_docker_but_measures_no_project(lab):
    lab.host("hyp1").write("apps/fastblob/data/file", MiB)
    res = run_inv("-H", "hyp1", "disk.report", "--fast", "--format", "json", inventory=lab.inventory_path)
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    [row] = data["hosts"]
    assert row["projects"] is None and row["srv_state"] == "mounted" and row["docker"]["images"]["count"] >= 1
    res, data = report(lab, "-H", "hyp1")
    assert any(p["name"] == "fastblob" and p["data"] >= MiB for p in data["hosts"][0]["projects"])


def test_warn_exits_1_naming_the_filesystem_over_the_threshold(lab):
    res = run_inv("-H", "hyp1", "disk.report", "--warn", "0", inventory=lab.inventory_path)
    assert res.returncode == 1
    assert "warning: hyp1: / is " in res.stderr and "% used (" in res.stderr and "warn above 0%)" in res.stderr
    res = run_inv("-H", "hyp1", "disk.report", "--warn", "100", inventory=lab.inventory_path)
    assert res.returncode == 0, res.stderr


def test_prometheus_format_carries_the_same_figures_as_json(lab):
    lab.host("hyp2").write("apps/promblob/data/file", 2 * MiB)
    res = run_inv("-H", "hyp2", "disk.report", "--format", "prometheus", inventory=lab.inventory_path)
    assert res.returncode == 0, res.stderr
    metrics = {}
    for line in res.stdout.splitlines():
        if not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            metrics[key] = int(value)
    data = json.loads(run_inv("-H", "hyp2", "disk.report", "--top", "1000", "--format", "json",
                              inventory=lab.inventory_path).stdout)
    [row] = data["hosts"]
    [blob] = [p for p in row["projects"] if p["name"] == "promblob"]
    assert metrics['aegir_disk_report_up{host="hyp2"}'] == 1
    assert metrics['aegir_project_bytes{host="hyp2",project="apps/promblob",part="data"}'] == blob["data"] >= 2 * MiB
    srv = row["srv"]
    assert metrics[f'aegir_filesystem_size_bytes{{host="hyp2",mountpoint="/srv",device="{srv["source"]}"}}'] \
        == srv["size"]
    assert metrics['aegir_docker_bytes{host="hyp2",kind="images"}'] == row["docker"]["images"]["size"]


# --------------------------------------------------------------------------- a /srv that is not mounted (no lab)


@pytest.fixture
def unmounted(tmp_path: Path) -> tuple[Path, Path]:
    """This machine as a `connection: local` host whose /srv is a plain folder (a project in it), not a mount
    point: a hypervisor after a reboot, before boot.mount, as every task that reads projects sees it."""
    srv = tmp_path / "srv"
    (srv / "apps/cloud").mkdir(parents=True)
    (srv / "apps/cloud/compose.yaml").write_text("services:\n  web:\n    image: busybox\n")
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(f"hosts:\n  local:\n    connection: local\n    srv: {srv}\n")
    return srv, inventory


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under `root` with its size and mtime: what a run that changes nothing leaves as it was."""
    return {str(f.relative_to(root)): (f.stat().st_size, f.stat().st_mtime_ns) for f in sorted(root.rglob("*"))}


def test_without_warn_a_srv_that_is_not_mounted_is_a_row_that_says_so(unmounted):
    srv, inventory = unmounted
    res = run_inv("disk.report", "--format", "json", inventory=inventory, timeout=60)
    assert res.returncode == 0, res.stderr
    [row] = envelope(res.stdout, "disk.report", dry=None)["hosts"]
    assert (row["status"], row["srv_state"], row["srv"]) == ("ok", "not mounted", None)


def test_with_warn_a_srv_that_is_not_mounted_is_a_failed_host_saying_run_boot_mount(unmounted):
    """Before: `disk.report --warn 90` exited 0 on such a host: cron heard nothing."""
    srv, inventory = unmounted
    for fmt in ("json", "table"):
        res = run_inv("disk.report", "--warn", "90", "--format", fmt, inventory=inventory, timeout=60)
        assert res.returncode == 1, res.stdout + res.stderr
        assert res.stderr.strip().splitlines()[-1] == "aegir: failed on local"
        if fmt == "json":
            [row] = envelope(res.stdout, "disk.report", dry=None)["hosts"]
            assert (row["status"], row["error"]) == ("failed", f"{srv} is not mounted: run boot.mount")
        else:
            assert read_table(res.stdout)[0]["STATUS"] == f"FAILED: {srv} is not mounted: run boot.mount"


@pytest.mark.parametrize("argv", [["disk.prune", "--yes"], ["disk.prune", "--dry"], ["disk.clean", "cloud", "--yes"],
                                  ["disk.clean", "cloud", "--dry"]], ids=" ".join)
def test_prune_and_clean_fail_a_host_whose_srv_is_not_mounted_and_change_nothing(unmounted, argv):
    """A prune there would take every image the projects on the unmounted volume name for unused."""
    srv, inventory = unmounted
    before = tree(srv)
    res = run_inv(*argv, "--format", "json", inventory=inventory, timeout=60)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    [row] = envelope(res.stdout, argv[0], dry="--dry" in argv)["hosts"]
    assert (row["status"], row["error"]) == ("failed", f"{srv} is not mounted: run boot.mount")
    assert res.stderr.strip().splitlines()[-1] == "aegir: failed on local"
    assert tree(srv) == before


# --------------------------------------------------------------------------- disk.prune

BUSYBOX = "aegir-lab/busybox:latest"
SLEEP = '["sleep", "86400"]'


def build(host, tag: str, seed: str) -> str:
    """Build `tag` on `host`'s dockerd from the lab's busybox image, with a unique 1 MiB layer; its ID."""
    import io
    import tarfile

    dockerfile = f"FROM {BUSYBOX}\nRUN head -c 1048576 /dev/urandom > /blob-{seed}\n".encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
    buf.seek(0)
    client = host.docker_client(timeout=120)
    try:
        image, _ = client.images.build(fileobj=buf, custom_context=True, tag=tag, rm=True, forcerm=True)
        return image.id
    finally:
        client.close()


def docker_df(host):

    client = host.docker_client()
    try:
        return client.api.df()
    finally:
        client.close()


def usage_json(df) -> dict:
    from aegir.disk.facts import parse_docker_df
    from aegir.report import jsonable

    return jsonable(parse_docker_df(df))


def inventory_of(lab, host, tmp_path: Path) -> Path:
    return lab.write_inventory(tmp_path / "hosts.yml", [host])


@pytest.fixture(scope="module")
def junk(lab, tmp_path_factory):
    """A fresh host seeded with garbage and with projects that are not garbage.

    Images (all built locally): busybox used by the running apps/live; lab/paused:1 used by the stopped
    containers of apps/paused; lab/stopped:1 only named (through .env) by apps/archive, never started;
    lab/unused:1 and lab/rebuilt:1 tagged and unused; the first lab/rebuilt:1, dangling. A stopped
    one-off container (with an anonymous volume), a named volume, an unused network.
    """
    with lab.extra_host() as host:
        inv = inventory_of(lab, host, tmp_path_factory.mktemp("prune"))
        ids = {tag: build(host, tag, tag.replace("/", "-").replace(":", "-"))
               for tag in ("lab/unused:1", "lab/stopped:1", "lab/paused:1")}
        ids["dangling"] = build(host, "lab/rebuilt:1", "first")
        ids["lab/rebuilt:1"] = build(host, "lab/rebuilt:1", "second")
        host.write("apps/live/docker-compose.yml", f"services:\n  app:\n    image: {BUSYBOX}\n    command: {SLEEP}\n")
        host.write("apps/paused/docker-compose.yml", f"services:\n  app:\n    image: lab/paused:1\n    command: {SLEEP}\n")
        host.write("apps/archive/docker-compose.yml", f"services:\n  app:\n    image: ${{IMAGE}}\n    command: {SLEEP}\n")
        host.write("apps/archive/.env", "IMAGE=lab/stopped:1\n")
        up = run_inv("apps.up", "live,paused", inventory=inv)
        assert up.returncode == 0, up.stdout + up.stderr
        host.run(["docker", "compose", "--project-directory", "/srv/apps/paused", "stop"])
        host.run(["docker", "run", "--name", "oneoff", "-v", "/scratch", BUSYBOX, "sh", "-c", "echo x > /scratch/x"])
        host.run(["docker", "volume", "create", "keepme"])
        host.run(["docker", "network", "create", "lab-unused"])
        yield host, inv, ids


def names(host):
    client = host.docker_client()
    try:
        api = client.api
        return {
            "images": {i["Id"] for i in api.images()},
            "tags": {t for i in api.images() for t in i.get("RepoTags") or () if t != "<none>:<none>"},
            "containers": {c["Names"][0].lstrip("/"): c["State"] for c in api.containers(all=True)},
            "networks": {n["Name"] for n in api.networks()},
            "volumes": {v["Name"]: v.get("Labels") for v in api.volumes()["Volumes"] or ()},
        }
    finally:
        client.close()


def prune(inv: Path, *args: str):
    res = run_inv("disk.prune", "--format", "json", *args, inventory=inv)
    return res, (envelope(res.stdout, "disk.prune", dry="--dry" in args) if res.stdout.strip() else None)


def test_prune_plans_first_and_refuses_to_act_without_yes_when_stdin_is_not_a_terminal(junk):
    host, inv, ids = junk
    seen = names(host)
    res, data = prune(inv, "--dry")
    assert res.returncode == 0, res.stderr
    [plan] = data["hosts"]
    removing = {(i["kind"], i["name"]) for i in plan["remove"]}
    assert removing == {("container", "oneoff"), ("image", "lab/unused:1"), ("image", "lab/rebuilt:1"),
                        ("image", f"<none> {ids['dangling'].removeprefix('sha256:')[:12]}"),
                        ("network", "lab-unused")}
    kept = {(i["kind"], i["name"]): i["why"] for i in plan["kept"]}
    assert kept[("image", "lab/stopped:1")] == "referenced by apps/archive"  # through .env, resolved by Compose
    assert kept[("container", "paused-app-1")] == "stopped service of apps/paused"
    assert kept[("volume", "keepme")] == "named volume"
    assert names(host) == seen and data["summary"]["pruned"] is False

    res = run_inv("disk.prune", inventory=inv)  # stdin is a pipe, not a terminal
    assert res.returncode == 1
    assert "disk.prune: stdin is not a terminal; pass --yes to prune without a prompt" in res.stderr
    assert "lab/unused:1" in res.stdout  # the plan was shown
    assert names(host) == seen


def test_prune_dry_with_yes_still_removes_nothing(junk):
    host, inv, _ = junk
    seen = names(host)
    res, data = prune(inv, "--dry", "--yes")
    assert res.returncode == 0, res.stderr
    assert data["hosts"][0]["remove"] and "removed" not in data["hosts"][0]  # a plan with work, not acted on
    assert res.stderr.strip().splitlines()[-1] == "aegir: --dry: stopped before acting; nothing was changed"
    assert names(host) == seen


def test_a_host_whose_srv_is_not_mounted_is_not_pruned_at_all(junk, tmp_path):
    """The inventory's srv a plain folder (no mount point there, as /srv before boot.mount): no project can be
    read, so every image and stopped container of the projects would look like garbage. Before: pruned, exit 0
    (lab/stopped:1, lab/paused:1 and the stopped service container of apps/paused went)."""
    host, inv, _ = junk
    data = yaml.safe_load(inv.read_text())
    data["hosts"][host.name]["srv"] = "/srv/apps"  # a folder on the mounted /srv, not a mount point itself
    plain = tmp_path / "hosts.yml"
    plain.write_text(yaml.safe_dump(data))
    seen = names(host)
    res, data = prune(plain, "--yes")
    assert res.returncode == 1, res.stdout + res.stderr
    [row] = data["hosts"]
    assert (row["status"], row["error"]) == ("failed", "/srv/apps is not mounted: run boot.mount")
    assert names(host) == seen


def test_prune_yes_removes_exactly_the_garbage_and_frees_what_docker_accounts(junk):
    host, inv, ids = junk
    before_df = docker_df(host)
    seen = names(host)
    res, data = prune(inv, "--yes")
    assert res.returncode == 0, res.stdout + res.stderr
    after_df = docker_df(host)
    now = names(host)
    assert seen["images"] - now["images"] == {ids["lab/unused:1"], ids["lab/rebuilt:1"], ids["dangling"]}
    assert {BUSYBOX, "lab/stopped:1", "lab/paused:1"} <= now["tags"]
    assert set(seen["containers"]) - set(now["containers"]) == {"oneoff"}
    assert now["containers"]["live-app-1"] == "running" and now["containers"]["paused-app-1"] == "exited"
    assert seen["networks"] - now["networks"] == {"lab-unused"}
    assert now["volumes"] == seen["volumes"] and "keepme" in now["volumes"]  # no volume without --volumes

    [result] = data["hosts"]
    assert result["failed"] == []
    # Docker's own accounting, read by the test before and after: the same figures aegir printed.
    assert result["before"] == usage_json(before_df) and result["after"] == usage_json(after_df)
    gone = [i for i in before_df["Images"] if i["Id"] in seen["images"] - now["images"]]
    assert result["freed"]["images"] == sum(i["Size"] - i["SharedSize"] for i in gone) >= 3 * MiB
    res, data = prune(inv, "--dry")  # nothing left but what is kept on purpose
    assert res.returncode == 0 and data["hosts"][0]["remove"] == []


def test_include_project_images_then_removes_the_stopped_projects_image_and_volumes_only_anonymous_ones(junk):
    host, inv, ids = junk
    seen = names(host)
    res, data = prune(inv, "--include-project-images", "--volumes", "--yes")
    assert res.returncode == 0, res.stdout + res.stderr
    now = names(host)
    assert seen["images"] - now["images"] == {ids["lab/stopped:1"]}
    assert {BUSYBOX, "lab/paused:1"} <= now["tags"]  # a container of a /srv project still uses them
    assert now["containers"] == seen["containers"]
    assert len(seen["volumes"]) == 2 and "keepme" in seen["volumes"], seen["volumes"]
    assert set(now["volumes"]) == {"keepme"}  # the one-off container's anonymous volume went
    assert data["hosts"][0]["freed"]["images"] >= MiB


# --------------------------------------------------------------------------- disk.prune: names spelled any way

#: project -> its ``image:``, spelled unlike Docker's RepoTags/RepoDigests ({name}: the digest the registry serves).
SPELLED = {
    "apps/web": "nginx:1.25@{web}",  # Docker Hub, a tag and a digest: pulled by digest, RepoDigests nginx@…
    "apps/pinned": "127.0.0.1:5000/lab/pinned:1@{pinned}",  # a registry with a port, a tag and a digest
    "apps/maria": "library/mariadb:11",  # RepoTags mariadb:11
    "apps/hub": "docker.io/lab/hub:2",  # RepoTags lab/hub:2
    "apps/plain": "index.docker.io/library/lab-plain",  # RepoTags lab-plain:latest
    "apps/box": "docker.io/aegir-lab/busybox",  # the lab's busybox, loaded: RepoTags aegir-lab/busybox:latest
}


def images(host) -> dict[str, tuple[list[str], list[str]]]:
    """Image ID -> (RepoTags, RepoDigests), from the host's Docker API."""
    client = host.docker_client()
    try:
        return {i["Id"]: ([t for t in i.get("RepoTags") or () if t != "<none>:<none>"],
                          [d for d in i.get("RepoDigests") or () if d != "<none>@<none>"])
                for i in client.api.images()}
    finally:
        client.close()


def images_named(host, ref: str) -> str:
    """The ID of the image `ref` names on `host`."""
    return host.run(["docker", "image", "inspect", "--format", "{{.Id}}", ref]).stdout.strip()


def pull(host, ref: str) -> str:
    """``docker pull`` `ref` on `host`; the image's ID."""
    host.run(["docker", "pull", ref], timeout=60)
    return images_named(host, ref)


def garbage(host, seed: str, served) -> dict[str, str]:
    """Three images no project names, by kind: tagged, pinned by digest only (pulled from the lab's registry),
    and dangling (a tag built twice leaves the first one with neither tag nor digest)."""
    dangling = build(host, f"lab/rebuilt-{seed}:1", f"{seed}-first")
    return {"tagged": build(host, f"lab/rebuilt-{seed}:1", f"{seed}-second"),
            "digest": pull(host, f"127.0.0.1:5000/lab/orphan@{served[f'orphan-{seed}'].digest}"),
            "dangling": dangling}


@pytest.fixture(scope="module")
def spelled(lab, tmp_path_factory):
    """A host whose stopped projects (down: no container left) name their images otherwise than Docker does.

    RepoDigests are real: ``docker load`` keeps none (moby/moby#22011), so the images pinned by digest are
    pulled from a registry running in the host (`tests.lab.registry`), which is also the daemon's Docker Hub
    mirror (``registry-mirrors``) so that ``nginx:1.25@sha256:…`` is pulled as Docker pulls it from the Hub.
    The tagged ones are built and tagged with another spelling than the project's (``docker.io/library/…``,
    ``index.docker.io/…``): Docker records its short one.
    """
    from tests.lab.registry import Registry, scratch_image

    served = {name: scratch_image(name) for name in ("web", "pinned", "orphan-a", "orphan-b", "orphan-c")}
    with lab.extra_host() as host:
        inv = inventory_of(lab, host, tmp_path_factory.mktemp("spelled"))
        with Registry(host, list(served.values())) as registry:
            config = json.loads(host.paths.docker_config.read_text())
            config["registry-mirrors"] = [f"http://{registry.address}"]
            host.paths.docker_config.write_text(json.dumps(config))
            host.stop_docker()
            host.start_docker()
            ids = {"apps/web": pull(host, f"nginx:1.25@{served['web'].digest}"),
                   "apps/pinned": pull(host, f"127.0.0.1:5000/lab/pinned:1@{served['pinned'].digest}"),
                   "apps/maria": build(host, "docker.io/library/mariadb:11", "maria"),
                   "apps/hub": build(host, "index.docker.io/lab/hub:2", "hub"),
                   "apps/plain": build(host, "lab-plain", "plain"),
                   "apps/box": images_named(host, BUSYBOX)}
            digests = {k: v.digest for k, v in served.items()}
            for path, image in SPELLED.items():
                host.write(f"{path}/compose.yaml",
                           f"services:\n  app:\n    image: {image.format(**digests)}\n    command: {SLEEP}\n")
            yield host, inv, ids, served


def test_prune_keeps_every_image_a_stopped_project_names_however_the_file_spells_it(spelled):
    host, inv, ids, served = spelled
    junk_ids = garbage(host, "a", served)
    before = images(host)
    assert before[ids["apps/web"]] == ([], [f"nginx@{served['web'].digest}"])  # what Docker recorded
    assert before[ids["apps/pinned"]] == ([], [f"127.0.0.1:5000/lab/pinned@{served['pinned'].digest}"])
    assert [before[ids[p]][0] for p in ("apps/maria", "apps/hub", "apps/plain")] == [
        ["mariadb:11"], ["lab/hub:2"], ["lab-plain:latest"]]

    res, data = prune(inv, "--yes")
    assert res.returncode == 0, res.stdout + res.stderr
    after = images(host)
    assert {ids[p] for p in SPELLED} <= set(after)
    assert set(before) - set(after) == set(junk_ids.values())  # garbage of each kind went: the prune ran
    [plan] = data["hosts"]
    assert {i["id"]: i["why"] for i in plan["kept"] if i["kind"] == "image"} == {
        ids[p]: f"referenced by {p}" for p in SPELLED}
    assert plan["warnings"] == []


def test_a_profile_service_whose_image_is_an_unset_variable_makes_the_host_unknown_and_the_plan_names_it(spelled):
    """``DEBUG_IMAGE=lab/debug:1 docker compose --profile debug up``: aegir cannot know which image that is."""
    host, inv, ids, served = spelled
    host.write("apps/debug/compose.yaml", "services:\n  app:\n    image: library/mariadb:11\n"
               "  debug:\n    image: ${DEBUG_IMAGE}\n    profiles: [debug]\n")
    try:
        debug = build(host, "lab/debug:1", "debug")
        junk_ids = garbage(host, "b", served)
        before = images(host)
        res, data = prune(inv, "--yes")
        assert res.returncode == 0, res.stdout + res.stderr
        after = images(host)
        assert {debug, junk_ids["tagged"], junk_ids["digest"], *ids.values()} <= set(after)
        assert set(before) - set(after) == {junk_ids["dangling"]}  # neither tag nor digest: no file can name it

        warning = ("apps/debug: service debug (profiles: debug): image ${DEBUG_IMAGE}: DEBUG_IMAGE is not set; "
                   "no image with a tag or a digest is pruned on this host")
        assert data["hosts"][0]["warnings"] == [warning]
        kept = {i["id"]: i["why"] for i in data["hosts"][0]["kept"] if i["kind"] == "image"}
        assert kept[debug] == kept[junk_ids["tagged"]] == kept[junk_ids["digest"]] == "images of apps/debug unknown"
        table = run_inv("disk.prune", "--dry", inventory=inv)
        assert table.returncode == 0, table.stdout + table.stderr
        assert f"warning: {host.name}: {warning}" in table.stderr.splitlines()  # aegir.report.warning's spelling
    finally:
        shutil.rmtree(host.root("/srv/apps/debug"))


def test_folders_discovery_skips_make_the_host_unknown_and_the_plan_names_each_with_why(spelled):
    host, inv, ids, served = spelled
    host.write("apps/my wiki/compose.yaml", "services:\n  wiki:\n    image: lab/wiki:1\n")
    host.write("apps/_old/docker-compose.yml", "services:\n  old:\n    image: docker.io/lab/old:1\n")
    try:
        named = {build(host, "lab/wiki:1", "wiki"), build(host, "lab/old:1", "old")}
        junk_ids = garbage(host, "c", served)
        before = images(host)
        res, data = prune(inv, "--yes")
        assert res.returncode == 0, res.stdout + res.stderr
        after = images(host)
        assert {*named, junk_ids["tagged"], junk_ids["digest"], *ids.values()} <= set(after)
        assert set(before) - set(after) == {junk_ids["dangling"]}

        rule = "use letters, digits, '_', '.', '-' (at most 63, not starting with a symbol)"
        warnings = [f"apps/_old: discovery skipped this folder (invalid project folder name '_old': {rule}), so its "
                    "docker-compose.yml is not read; no image with a tag or a digest is pruned on this host",
                    f"apps/my wiki: discovery skipped this folder (invalid project folder name 'my wiki': {rule}), "
                    "so its compose.yaml is not read; no image with a tag or a digest is pruned on this host"]
        assert data["hosts"][0]["warnings"] == warnings
        table = run_inv("disk.prune", "--dry", inventory=inv)
        assert table.returncode == 0, table.stdout + table.stderr
        assert [f"warning: {host.name}: {w}" for w in warnings] == [
            ln for ln in table.stderr.splitlines() if ln.startswith("warning: ")]
    finally:
        shutil.rmtree(host.root("/srv/apps/my wiki"))
        shutil.rmtree(host.root("/srv/apps/_old"))


# --------------------------------------------------------------------------- disk.clean

#: Stand-in for tootctl and npm: records container, user, argv and stdin; `media remove` empties /calls/cache.
STANDIN = """#!/bin/sh
in=$(cat)
printf '%s\\t%s\\t%s\\t%s\\n' "$(hostname)" "$(id -un)" "$(basename "$0") $*" "$in" >> /calls/log
[ "$1 $2" = "media remove" ] && rm -rf /calls/cache
exit 0
"""
STANDIN_DOCKERFILE = f"""FROM {BUSYBOX}
RUN echo 'mastodon:x:991:991::/opt/mastodon:/bin/sh' >> /etc/passwd && \\
    echo 'peertube:x:999:999::/app:/bin/sh' >> /etc/passwd && mkdir -p /usr/local/bin
COPY standin /usr/local/bin/tootctl
COPY standin /usr/local/bin/npm
"""
TOOT = """services:
  web:
    image: lab/standin:1
    command: ["sleep", "86400"]
    volumes: ["./data:/calls"]
  sidekiq:
    image: lab/standin:1
    command: ["sleep", "86400"]
    volumes: ["./data:/calls"]
x-aegir:
  clean:
    recipe: mastodon
    vars:
      media_days: 3
"""
TUBE = """services:
  peertube:
    image: lab/standin:1
    command: ["sleep", "86400"]
    volumes: ["./data:/calls"]
"""
BROKEN = """description: a recipe with a mistake on line 5
service: web
steps:
  - name: fine
    runs: [tootctl, media, remove]
"""


def build_context(host, tag: str, files: dict[str, str]) -> None:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, text in files.items():
            info = tarfile.TarInfo(name)
            data = text.encode()
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    client = host.docker_client(timeout=120)
    try:
        client.images.build(fileobj=buf, custom_context=True, tag=tag, rm=True, forcerm=True)
    finally:
        client.close()


@pytest.fixture(scope="module")
def apps(lab, tmp_path_factory):
    """A fresh host with a Mastodon-like app (apps/toot, x-aegir picks the recipe) and apps/peertube."""
    with lab.extra_host() as host:
        inv = inventory_of(lab, host, tmp_path_factory.mktemp("clean"))
        build_context(host, "lab/standin:1", {"Dockerfile": STANDIN_DOCKERFILE, "standin": STANDIN})
        for app, text in (("toot", TOOT), ("peertube", TUBE)):
            host.write(f"apps/{app}/docker-compose.yml", text)
            host.write(f"apps/{app}/data/cache/blob", MiB)
            for d in (f"apps/{app}/data", f"apps/{app}/data/cache"):
                host.root(f"/srv/{d}").chmod(0o777)
        host.write("apps/broken/docker-compose.yml", TUBE)
        host.write("apps/broken/aegir-clean.yml", BROKEN)
        host.write("apps/matrix/docker-compose.yml", TUBE.replace("peertube:", "synapse:"))
        host.write("apps/matrix/.env", "SYNAPSE_ADMIN_TOKEN=s3cret-token\nPOSTGRES_USER=synapse\n"
                                       "POSTGRES_PASSWORD=pg-pass\nPOSTGRES_DB=synapse\n")
        up = run_inv("apps.up", "toot,peertube", inventory=inv)
        assert up.returncode == 0, up.stdout + up.stderr
        yield host, inv


def calls(host, app: str) -> list[list[str]]:
    log = host.root(f"/srv/apps/{app}/data/log")
    return [line.split("\t") for line in log.read_text().splitlines()] if log.exists() else []


def container_id(host, project: str, service: str) -> str:
    client = host.docker_client()
    try:
        [row] = client.api.containers(filters={"label": [f"com.docker.compose.project={project}",
                                                         f"com.docker.compose.service={service}"]})
        return row["Id"][:12]
    finally:
        client.close()


def test_clean_dry_prints_the_exact_commands_per_container_and_runs_nothing(apps):
    host, inv = apps
    res = run_inv("disk.clean", "toot", "--dry", "--format", "json", inventory=inv)
    assert res.returncode == 0, res.stderr
    [plan] = envelope(res.stdout, "disk.clean", dry=True)["hosts"]
    base = ("docker compose --project-directory /srv/apps/toot -f /srv/apps/toot/docker-compose.yml -p toot "
            "exec -T --user mastodon web")
    assert [c["line"] for c in plan["commands"]] == [
        f"{base} tootctl media remove --days 3",  # x-aegir's media_days
        f"{base} tootctl preview_cards remove --days 30",
        f"{base} tootctl media remove-orphans",
    ]
    assert plan["recipe"] == "mastodon" and calls(host, "toot") == []

    res = run_inv("disk.clean", "matrix", "--recipe", "synapse", "--dry", inventory=inv)
    assert res.returncode == 0, res.stderr
    assert ("exec -T synapse curl -fsS -X POST -H @- 'http://localhost:8008/_synapse/admin/v1/purge_media_cache"
            "?before_ts=") in res.stdout
    assert "<<< 'Authorization: Bearer <.env SYNAPSE_ADMIN_TOKEN>\\n'" in res.stdout
    assert "s3cret-token" not in res.stdout + res.stderr and "pg-pass" not in res.stdout + res.stderr


def test_clean_dry_with_yes_runs_nothing_and_a_missing_app_is_a_usage_error_with_did_you_mean(apps):
    host, inv = apps
    data_dir = host.root("/srv/apps/toot/data")
    before = tree(data_dir)
    res = run_inv("disk.clean", "toot", "--dry", "--yes", "--format", "json", inventory=inv)
    assert res.returncode == 0, res.stderr
    [row] = envelope(res.stdout, "disk.clean", dry=True)["hosts"]
    assert len(row["commands"]) == 3 and "result" not in row
    assert res.stderr.strip().splitlines()[-1] == "aegir: --dry: stopped before acting; nothing was changed"
    assert calls(host, "toot") == [] and tree(data_dir) == before

    res = run_inv("disk.clean", "tooot", "--yes", inventory=inv)  # before: no "did you mean"
    assert (res.returncode, res.stdout) == (2, ""), res.stdout + res.stderr
    assert res.stderr.strip() == "aegir: no app 'tooot' on any target host (did you mean toot?)"


def test_clean_runs_each_step_in_the_right_container_as_the_right_user_with_its_stdin(apps):
    host, inv = apps
    refused = run_inv("disk.clean", "toot", inventory=inv)
    assert refused.returncode == 1 and "pass --yes to clean up without a prompt" in refused.stderr
    assert calls(host, "toot") == []

    res = run_inv("disk.clean", "toot", "--yes", "--format", "json", inventory=inv)
    assert res.returncode == 0, res.stdout + res.stderr
    web = container_id(host, "toot", "web")
    assert calls(host, "toot") == [
        [web, "mastodon", "tootctl media remove --days 3", ""],
        [web, "mastodon", "tootctl preview_cards remove --days 30", ""],
        [web, "mastodon", "tootctl media remove-orphans", ""],
    ]
    [result] = [h["result"] for h in envelope(res.stdout, "disk.clean", dry=False)["hosts"]]
    assert [(s["step"], s["exit_code"], s["state"]) for s in result["steps"]] == [
        ("remote media cache", 0, "ok"), ("preview cards", 0, "ok"), ("orphaned media files", 0, "ok")]
    assert all(s["seconds"] > 0 for s in result["steps"])
    assert result["size_before"] - result["size_after"] >= MiB  # the stand-in emptied data/cache

    res = run_inv("disk.clean", "peertube", "--yes", inventory=inv)
    assert res.returncode == 0, res.stdout + res.stderr
    tube = container_id(host, "peertube", "peertube")
    assert calls(host, "peertube") == [[tube, "peertube", "npm run prune-storage", "y"],
                                       [tube, "peertube", "npm run house-keeping", ""]]
    assert "apps/peertube" in res.stdout and " -> " in res.stdout


def test_a_recipe_file_with_a_mistake_is_reported_with_its_file_and_line(apps):
    host, inv = apps
    res = run_inv("disk.clean", "broken", "--yes", "--format", "json", inventory=inv)
    assert res.returncode == 1
    [row] = envelope(res.stdout, "disk.clean", dry=False)["hosts"]
    assert row["error"] == "/srv/apps/broken/aegir-clean.yml:5: steps[0]: unknown key 'runs' (did you mean 'run'?)"


#: Stand-ins for what the synapse recipe runs, each slow enough (2 s) for the /proc scan to see it, each failing
#: the way the real one does when the database refuses: printing what it was given, secrets too.
SYNAPSE_STANDINS = {
    # curl, also showing a value the container has from an env_file: other than .env.
    "curl": '#!/bin/sh\nin=$(cat)\nsleep 2\necho "curl: (22) 401 Unauthorized; sent $in; with $SIGNING" >&2\nexit 22\n',
    # The compressor's Python module (the recipe's `python3 -c ...`): the URL on stdin, put in its error.
    "python3": '#!/bin/sh\nread -r url\nsleep 2\necho "RuntimeError: Error occured while connecting to $url" >&2\n'
               'exit 1\n',
    # The program the recipe ran before: it takes the URL in its argv (-p URL) and panics with it.
    "synapse_auto_compressor": '#!/bin/sh\nsleep 2\necho "thread main panicked at Error occured while connecting '
                               'to $2" >&2\nexit 101\n',
}
SYNAPSE_DOCKERFILE = f"""FROM {BUSYBOX}
COPY curl python3 synapse_auto_compressor /usr/local/bin/
"""
CHAT = """services:
  synapse:
    image: lab/synapse-standin:1
    command: ["sleep", "86400"]
    env_file: [signing.env]
"""


def test_clean_synapse_shows_no_env_secret_in_output_json_plan_or_any_process_argv(apps):
    """The synapse recipe with a password and a token in .env and a key in another env_file:, both steps failing
    and printing them: none appears in stdout, stderr, the JSON, the --dry plan, nor in the command line of any
    process while it runs."""
    host, inv = apps
    password, token, signing = ("pg-" + secrets.token_hex(8), "tok-" + secrets.token_hex(8),
                                "sig-" + secrets.token_hex(8))
    build_context(host, "lab/synapse-standin:1", {"Dockerfile": SYNAPSE_DOCKERFILE, **SYNAPSE_STANDINS})
    host.write("apps/chat/docker-compose.yml", CHAT)
    host.write("apps/chat/signing.env", f"SIGNING={signing}\n")
    host.write("apps/chat/.env", f"SYNAPSE_ADMIN_TOKEN={token}\nPOSTGRES_USER=synapse\n"
                                 f"POSTGRES_PASSWORD={password}\nPOSTGRES_DB=synapse\n")
    try:
        up = run_inv("apps.up", "chat", inventory=inv)
        assert up.returncode == 0, up.stdout + up.stderr
        dry = run_inv("disk.clean", "chat", "--recipe", "synapse", "--dry", inventory=inv)
        dry_json = run_inv("disk.clean", "chat", "--recipe", "synapse", "--dry", "--format", "json", inventory=inv)
        assert dry.returncode == dry_json.returncode == 0, dry.stdout + dry.stderr
        assert "exec -T synapse python3 -c" in dry.stdout  # the plan is still readable: user and service shown
        with ProcScan(password, token, signing, watch="synapse_auto_compressor", where=("cmdline",)) as scan:
            table = run_inv("disk.clean", "chat", "--recipe", "synapse", "--yes", inventory=inv)
        with ProcScan(password, token, signing, watch="synapse_auto_compressor", where=("cmdline",)) as scan_json:
            res = run_inv("disk.clean", "chat", "--recipe", "synapse", "--yes", "--format", "json", inventory=inv)
        assert table.returncode == res.returncode == 1, table.stdout + table.stderr
        [row] = envelope(res.stdout, "disk.clean", dry=False)["hosts"]
        assert [(s["step"], s["exit_code"], s["state"]) for s in row["result"]["steps"]] == [
            ("purge remote media cache", 22, "failed"), ("state compressor", 1, "failed")]
        # The steps did print the secrets: the output says where, masked (here the whole stdin, token and all).
        assert row["result"]["steps"][0]["output"] == "curl: (22) 401 Unauthorized; sent ****; with ****"
        assert row["result"]["steps"][1]["output"] == "RuntimeError: Error occured while connecting to ****"
        assert "connecting to ****" in table.stdout
        for run in (dry, dry_json, table, res):
            for secret in (password, token, signing):
                assert secret not in run.stdout + run.stderr
        assert scan.watched and scan_json.watched  # the scan saw the compressor step run
        assert scan.hits == scan_json.hits == [], f"a secret was visible in /proc: {scan.hits + scan_json.hits}"
    finally:
        run_inv("apps.down", "chat", "--yes", inventory=inv)
        shutil.rmtree(host.root("/srv/apps/chat"))
