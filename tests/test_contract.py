"""The operator's contract (issues 20 and 21) over every task of the collection, on two hosts.

The tasks come from the collection (`aegir.tasks.namespace`), never from a hand list: a task that takes
``--dry`` is run with it (and ``--yes`` where it asks: under --dry even a yes must not act), a task that changes
hosts without a --dry of its own (`NO_OWN_DRY`) under the program's ``--dry``, every other task (read-only) for
real; ``--format json`` wherever the task takes it. `ARGS` gives the few tasks that need arguments theirs; a task
that needs one and is missing there fails `test_every_task_can_be_run_by_the_contract`.

Each task runs once per host (`run_once`, cached for the module), on:

- ``lab``: a lab host of its own with core/front, apps/cloud (a volume, a clean-up recipe, DNS names) and
  users/blog up, a template;
- ``local``: this machine as a ``connection: local`` host whose /srv is a plain tmp folder (not mounted) holding
  a project, as issue 21 found it ("all fine" while /srv is not mounted).

and around each run the host is snapshotted (`snapshot`): files (path, mtime, size, mode) under /srv, the parts
of /etc aegir could touch, /var/lib/aegir and /var/log/aegir; containers (id, name, state, start time),
volumes and networks; the nftables ruleset of the host's network namespace.

- `test_json_follows_the_schema`: every ``--format json`` validates against aegir/report.schema.json;
- `test_a_dry_or_read_only_run_changes_nothing`: the snapshot after equals the one before, a dry run says
  `aegir.action.DRY_LINE` on stderr (unless it was refused as a usage error, exit 2), a read-only one does not.
"""

from __future__ import annotations

import importlib.resources
import json
import os
import shlex
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from aegir.action import DRY_LINE
from aegir.tasks import namespace
from tests.helpers import remove_compose_containers, run_inv
from tests.lab import Lab, LabHost
from tests.lab import mysql_app as shop

IMAGE = "aegir-lab/busybox:latest"
FRONT = (f"services:\n  proxy:\n    image: {IMAGE}\n    pull_policy: never\n"
         "    command: [\"httpd\", \"-f\", \"-p\", \"80\"]\n    ports: [\"8080:80\"]\n")
CLOUD = (f"services:\n  web:\n    image: {IMAGE}\n    pull_policy: never\n"
         "    command: [\"httpd\", \"-f\", \"-p\", \"80\"]\n    volumes: [\"./data:/data\"]\n"
         "  db:\n    image: ${IMAGE}\n    pull_policy: never\n    command: [\"sleep\", \"86400\"]\n"
         "x-aegir:\n  dns:\n    names: [cloud]\n")
# the clean-up recipe writes into the app's folder: a dry run that ran it would leave data/cleaned behind
CLEAN = "description: the contract's recipe\nservice: web\nsteps:\n  - name: mark\n    run: [touch, /data/cleaned]\n"
BLOG = f"services:\n  blog:\n    image: {IMAGE}\n    pull_policy: never\n    command: [\"sleep\", \"86400\"]\n"
PROJECTS = {
    "core/front/docker-compose.yml": FRONT,
    "apps/cloud/docker-compose.yml": CLOUD,
    "apps/cloud/.env": f"IMAGE={IMAGE}\n",
    "apps/cloud/aegir-clean.yml": CLEAN,
    "apps/cloud/data/.keep": "",
    "users/blog/docker-compose.yml": BLOG,
    "templates/static/docker-compose.yml": BLOG,
    "templates/static/.env.example": "DOMAIN=\n",
    "scratch/.keep": "",  # mysql.restore --into /srv/scratch: an empty folder once .keep is gone
}
#: The MariaDB app of the mysql tasks (on the lab host its server runs: tests/lab/mysql_app.py).
SHOP = {"apps/shop/docker-compose.yml": shop.COMPOSE}
#: Files a running service writes by itself: the lab host's MariaDB datadir and binary logs.
LIVE = ("/srv/apps/shop/db", "/srv/apps/shop/wal")
DNS = {"service_domain": "contract.test", "cname_domain": "contract.net", "rest_domain": "contract.org",
       "nameservers": [{"name": "ns1.contract.org", "ipv4": "192.0.2.53"}], "hostmaster": "hostmaster@contract.org"}

#: The arguments of the tasks that need some (or that the contract wants to reach their plan). ``{out}``: a
#: folder of the operator's machine that is snapshotted too. After ``--``: the task's remainder.
ARGS: dict[str, str] = {
    "apps.down": "cloud",
    "apps.logs": "cloud --tail 3",
    "apps.new": "newapp static",
    "apps.pull": "cloud",
    "apps.restart": "cloud",
    "apps.stop": "cloud",
    "apps.up": "cloud",
    "apps.update": "cloud",
    "boot.all": "--start",
    "core.logs": "front --tail 3",
    "disk.clean": "cloud",
    "dns.check": "--server 127.0.0.1:9 --timeout 1",  # nothing answers there: every record is missing
    "dns.zone": "--out {out}",
    "mysql.checkpoint": "shop",
    "mysql.restore": "shop latest /srv/scratch",
    "mysql.status": "shop",
    "update.announce": "--message 'contract test'",
    # issue 21's first finding: a core project's volumes, passed through under --dry (last: on a main where it
    # still acts, the runs after it would see a host without its front)
    "apps.compose": "front -- down -v",
}

#: Tasks that change hosts and have no --dry of their own (the README says why): run under the program's
#: --dry, which they honour (update.review: no record, no apt-get update) or refuse (exit 2: fw.watch).
NO_OWN_DRY = ("fw.watch", "update.review")
#: Of those, the ones the program's --dry refuses as a usage error (exit 2) rather than runs.
REFUSE_DRY = ("fw.watch",)
#: Exit codes a run on the lab host may end with (the contract's arguments are right there): 0, or 1 when a
#: host failed or a check found something; update.review says 1 for a risky upgrade and 2 for a host it could
#: not review (its help; on a loaded machine a dpkg read can pass its 20 s deadline).
EXITS: dict[str, tuple[int, ...]] = {"update.review": (0, 1, 2), **{t: (2,) for t in REFUSE_DRY}}

TASKS = sorted(namespace.task_names, key=lambda t: (t == "apps.compose", t))  # apps.compose last: see ARGS


def flags(task: str) -> dict[str, Any]:
    """The task's arguments by long name (Invoke's `Argument`s)."""
    return {a.names[0]: a for a in namespace[task].get_arguments()}


def dry_run(task: str) -> bool:
    """Whether the contract runs `task` under --dry (its own, or the program's)."""
    return "dry" in flags(task) or task in NO_OWN_DRY


def command(task: str, out: Path) -> list[str]:
    """The argv after ``inv`` that runs `task` for the contract (see the module's docstring)."""
    own = flags(task)
    before, _, after = f" {ARGS.get(task, '').format(out=out)} ".partition(" -- ")
    argv = ["--dry"] if task in NO_OWN_DRY else []
    argv += [task, *shlex.split(before)]
    argv += ["--dry"] if "dry" in own else []
    argv += ["--yes"] if "yes" in own else []
    argv += ["--format", "json"] if "format" in own else []
    return argv + (["--", *shlex.split(after)] if after.strip() else [])


def test_every_task_can_be_run_by_the_contract():
    """A task with a required positional argument needs `ARGS`; every name in the tables is a task."""
    for task in TASKS:
        needs = [name for name, a in flags(task).items() if a.positional and a.default in (None, "")]
        assert not needs or task in ARGS, f"{task} needs {needs}: give it arguments in ARGS"
    assert set(ARGS) <= set(TASKS) and set(NO_OWN_DRY) <= set(TASKS)
    for task in NO_OWN_DRY:
        assert "dry" not in flags(task), f"{task} has a --dry of its own now: take it out of NO_OWN_DRY"
    assert command("apps.compose", Path("/o")) == ["apps.compose", "front", "--dry", "--yes", "--", "down", "-v"]
    assert command("dns.zone", Path("/o")) == ["dns.zone", "--out", "/o", "--dry", "--format", "json"]
    assert command("disk.report", Path("/o")) == ["disk.report", "--format", "json"]


# --------------------------------------------------------------------------- what a host looks like


#: The parts of /etc aegir reads or writes (grep aegir/ for /etc): fw.install's unit and boot.guard's drop-in
#: (systemd/system), Docker's daemon.json, the inventory's search path, what boot.mount/unlock read, apt's
#: configuration and state (update.apply), strongSwan's keys and connections (net.keys, net.mesh). Not all of
#: /etc: this machine's /etc (which lab hosts share) changes for reasons of its own (other sessions installing
#: packages).
AEGIR_ETC = ("/etc/systemd/system", "/etc/docker", "/etc/aegir", "/etc/fstab", "/etc/crypttab", "/etc/apt",
             "/etc/hostname", "/etc/swanctl")
#: aegir's state and logs on a host (update's review and transcripts), dpkg's record of installed packages.
AEGIR_VAR = ("/var/lib/aegir", "/var/log/aegir", "/var/lib/dpkg/status")


@dataclass
class Place:
    """One host as the contract looks at it from this machine."""

    name: str
    inventory: Path
    out: Path  # the operator's folder for dns.zone --out
    files: dict[str, Path]  # label (the host's path) -> where it is from here
    skip: tuple[Path, ...]  # not walked (Docker's data-root: its layers and logs move as containers run)
    ruleset: Callable[[], str]
    docker: Callable[[], Any]  # a Docker SDK client, or None when no daemon answers
    runs: dict[str, Run] = field(default_factory=dict)
    made: float = 0.0  # seconds its fixture took


@dataclass(frozen=True)
class Snapshot:
    files: dict[str, tuple[int, int, int]]  # path -> (mtime ns, size, mode)
    docker: dict[str, Any] | None  # containers, volumes, networks; None: no daemon
    ruleset: str


@dataclass(frozen=True)
class Run:
    argv: tuple[str, ...]
    result: subprocess.CompletedProcess[str]
    before: Snapshot
    after: Snapshot
    seconds: float


def walk(label: str, root: Path, skip: tuple[Path, ...]) -> Iterator[tuple[str, tuple[int, int, int]]]:
    """Every file and folder under `root` (itself included), named as the host names it."""
    if not root.exists() and not root.is_symlink():
        return
    st = root.lstat()
    yield label, (st.st_mtime_ns, st.st_size, st.st_mode)
    if not root.is_dir() or root.is_symlink():
        return
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if here / d not in skip)
        for name in [*dirnames, *sorted(filenames)]:
            try:
                st = (here / name).lstat()
            except FileNotFoundError:  # gone while walking: not ours to judge
                continue
            yield f"{label}/{(here / name).relative_to(root)}", (st.st_mtime_ns, st.st_size, st.st_mode)


def docker_state(client: Any) -> dict[str, Any] | None:
    if client is None:
        return None
    try:
        containers = sorted(
            (c["Id"][:12], c["Names"][0], c["State"], client.api.inspect_container(c["Id"])["State"]["StartedAt"])
            for c in client.api.containers(all=True))
        volumes = sorted(v["Name"] for v in client.api.volumes().get("Volumes") or [])
        networks = sorted(n["Name"] for n in client.api.networks())
    finally:
        client.close()
    return {"containers": containers, "volumes": volumes, "networks": networks}


def snapshot(place: Place) -> Snapshot:
    files = {path: st for label, root in {**place.files, "{out}": place.out}.items()
             for path, st in walk(label, root, place.skip)}
    return Snapshot(files, docker_state(place.docker()), place.ruleset())


def changes(before: Snapshot, after: Snapshot) -> list[str]:
    """What differs, one line each."""
    out = [f"created {p}" for p in sorted(after.files.keys() - before.files.keys())]
    out += [f"removed {p}" for p in sorted(before.files.keys() - after.files.keys())]
    out += [f"modified {p} (mtime, size, mode {before.files[p]} -> {after.files[p]})"
            for p in sorted(before.files.keys() & after.files.keys()) if before.files[p] != after.files[p]]
    if before.docker != after.docker:
        out.append(f"docker: {before.docker} -> {after.docker}")
    if before.ruleset != after.ruleset:
        out.append(f"nft ruleset changed:\n--- before\n{before.ruleset}\n--- after\n{after.ruleset}")
    return out


def run_once(place: Place, task: str) -> Run:
    """Run `task` on `place` as the contract does (once per module), with a snapshot before and after."""
    if task not in place.runs:
        argv = command(task, place.out)
        before = snapshot(place)
        started = time.monotonic()
        result = run_inv(*argv, inventory=place.inventory, timeout=180)
        seconds = time.monotonic() - started
        place.runs[task] = Run(tuple(argv), result, before, snapshot(place), seconds)
    return place.runs[task]


# --------------------------------------------------------------------------- the two hosts


def write_projects(srv: Path, files: dict[str, str] = PROJECTS) -> None:
    for rel, text in files.items():
        target = srv / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    if (srv / "apps/cloud/.env").exists():
        (srv / "apps/cloud/.env").chmod(0o600)


def write_inventory(path: Path, data: dict[str, Any]) -> Path:
    data.setdefault("defaults", {})["dns"] = DNS
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def netns_ruleset(host: LabHost | None) -> Callable[[], str]:
    def ruleset() -> str:
        argv = ["nft", "list", "ruleset"]
        return host.run(argv).stdout if host is not None else subprocess.run(
            argv, check=True, capture_output=True, text=True).stdout
    return ruleset


@pytest.fixture(scope="module")
def lab_place(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Place]:
    """A lab host of its own: core/front, apps/cloud and users/blog up, the rest of `PROJECTS` written."""
    with lab.extra_host() as host:
        write_projects(host.root("/srv"))
        shop.deploy(host)
        tmp = tmp_path_factory.mktemp("contract-lab")
        inventory = write_inventory(tmp / "hosts.yml", lab.inventory_data([host]))
        for up in (["core.up"], ["apps.up", "cloud,blog"]):
            done = run_inv(*up, inventory=inventory)
            assert done.returncode == 0, done.stdout + done.stderr
        (tmp / "out").mkdir()
        try:
            yield Place("lab", inventory, tmp / "out",
                        {**{p: host.root(p) for p in ("/srv", *AEGIR_ETC, *AEGIR_VAR)}},
                        (host.root("/srv/docker"), *map(host.root, LIVE)), netns_ruleset(host), host.docker_client)
        finally:
            remove_compose_containers(host)


def local_docker() -> Any:
    import docker

    try:
        client = docker.DockerClient(base_url="unix:///var/run/docker.sock", timeout=10)
        client.ping()
    except docker.errors.DockerException:
        return None
    return client


@pytest.fixture(scope="module")
def local_place(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Place:
    """This machine as `connection: local` with /srv a plain folder (projects in it, nothing mounted).

    Its docker_start would leave a mark in that folder. Asks for the lab only to hold the machine's lab lock:
    no other session's lab changes this machine's ruleset meanwhile.
    """
    tmp = tmp_path_factory.mktemp("contract-local")
    srv = tmp / "srv"
    write_projects(srv)
    write_projects(srv, SHOP)
    (tmp / "out").mkdir()
    host = {"connection": "local", "srv": str(srv), "docker_start": f"touch {srv}/docker-started"}
    inventory = write_inventory(tmp / "hosts.yml", {"hosts": {"local": host}})
    return Place("local", inventory, tmp / "out", {"/srv": srv, **{p: Path(p) for p in (*AEGIR_ETC, *AEGIR_VAR)}},
                 (), netns_ruleset(None), local_docker)


@pytest.fixture(scope="module")
def places(request: pytest.FixtureRequest) -> Iterator[dict[str, Place]]:
    """The hosts, made when a test first asks (`place`); at the end, where the module's time went."""
    found: dict[str, Place] = {}
    request.getfixturevalue("lab")  # the session's lab (waiting for the machine's lock), before the clock starts
    started = time.monotonic()
    yield found
    runs = {name: f"{len(p.runs)} runs {sum(r.seconds for r in p.runs.values()):.0f} s, made in {p.made:.0f} s"
            for name, p in found.items()}
    print(f"\ncontract: {time.monotonic() - started:.0f} s in all (the lab's start apart); {runs}")
    for name, p in found.items():  # what did not plan cleanly, for whoever reads the log
        print(f"contract: {name}: " + ", ".join(f"{t} exit {r.result.returncode}" for t, r in p.runs.items()
                                                  if r.result.returncode))


def place(request: pytest.FixtureRequest, places: dict[str, Place], name: str) -> Place:
    if name not in places:
        started = time.monotonic()
        places[name] = request.getfixturevalue(f"{name}_place")
        places[name].made = time.monotonic() - started
    return places[name]


CASES = [(where, task) for where in ("lab", "local") for task in TASKS]


def shown(run: Run, why: str) -> str:
    """`why`, then the command, its exit code and its output's tails."""
    return (f"{why}\ninv {shlex.join(run.argv)} exited {run.result.returncode}\n{run.result.stdout[-3000:]}\n"
            f"{run.result.stderr[-3000:]}")


# --------------------------------------------------------------------------- the tests

SCHEMA = json.loads(importlib.resources.files("aegir").joinpath("report.schema.json").read_text())


@pytest.mark.parametrize(("where", "task"), [c for c in CASES if "format" in flags(c[1])],
                         ids=[f"{w}-{t}" for w, t in CASES if "format" in flags(t)])
def test_json_follows_the_schema(request, places, where, task):
    run = run_once(place(request, places, where), task)
    res = run.result
    assert "Traceback" not in res.stderr, shown(run, "a traceback")
    if res.returncode == 2 and not res.stdout.strip():  # refused before anything ran: one line
        assert where == "local", shown(run, "a usage error on the lab host (are ARGS right?)")
        assert len(res.stderr.strip().splitlines()) == 1, shown(run, "a usage error of more than one line")
        return
    assert where == "local" or res.returncode in EXITS.get(task, (0, 1)), shown(run, "exit code")
    doc = json.loads(res.stdout)
    try:
        jsonschema.validate(doc, SCHEMA)
    except jsonschema.ValidationError as exc:
        pytest.fail(shown(run, f"not aegir/report.schema.json: {exc.message} at {exc.json_path}"))
    assert doc["task"] == task, shown(run, "the document names another task")
    assert doc["dry"] is (True if dry_run(task) else None), shown(run, '"dry" is not what the run was')


@pytest.mark.parametrize(("where", "task"), CASES, ids=[f"{w}-{t}" for w, t in CASES])
def test_a_dry_or_read_only_run_changes_nothing(request, places, where, task):
    run = run_once(place(request, places, where), task)
    res = run.result
    assert "Traceback" not in res.stderr, shown(run, "a traceback")
    changed = changes(run.before, run.after)
    assert not changed, shown(run, "the host changed:\n" + "\n".join(changed))
    if task in REFUSE_DRY or where == "lab":
        assert res.returncode in EXITS.get(task, (0, 1)), shown(run, "exit code")
    # a dry run that was not refused says it stopped; on the local host a run may fail before its dry stop
    # (dns.zone makes no zone when a host failed: /srv is not mounted), which exit 1 says
    if dry_run(task) and (res.returncode == 0 or (where == "lab" and task not in REFUSE_DRY)):
        assert DRY_LINE in res.stderr.splitlines(), shown(run, f"a dry run without {DRY_LINE!r} on stderr")
    elif not dry_run(task):
        assert DRY_LINE not in res.stderr, shown(run, "a read-only run that says it stopped before acting")
