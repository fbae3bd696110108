"""Benchmark: `apps.status` against the runbook's loop, on one lab host with 30 projects.

Run as root: ``flock /tmp/aegir-lab.lock .venv/bin/python bench/status.py``
(starts its own one-host lab, ``aegirbench``, and stops it).

The runbook's status check is ``cd /srv/<x> && docker compose ps``, folder by
folder, core first. aegir reads every project of the host with one
discovery round trip and two Docker API calls (containers, images).

1. On the host, as the operator runs the loop once logged in: the loop vs
   `gather_status` (what `apps.status` does per host) with a local context,
   both timed by one Python process inside the lab host. Target: >= 10x.
2. Over an SSH connection already open: the loop as one remote command (one
   SSH session) vs `gather_status` (two sessions at once: the discovery command
   and ``docker system dial-stdio``). This machine's root ``~/.bashrc`` runs
   ``pyenv init`` in every SSH session (~0.1 s, measured as "session"), which a
   hypervisor does not: the line says it.
3. End to end, a fresh process each: ``ssh root@host '<loop>'`` vs
   ``inv -H host apps.status`` (Python start-up and the SSH login included).
   Target: >= 10x. The same with the warm agent (``AEGIR_WARM``, `aegir.launch`): one command after
   the first, and ten in a row cold vs warm. And ``inv --list`` against ``python -c pass``: the start-up
   every task pays before its first command (target: <= 0.15 s extra).
   In the same run ``ssh root@host true``, an SSH login and nothing else: the
   target is ``inv -H host apps.status`` within `BREATH` (0.10 s) of it. Where
   the time goes: Python's start, the program's imports (``inv --list``, then
   Fabric/paramiko and the Docker SDK), the inventory, the SSH handshake
   (`open_context`), the status itself over the open connection.
4. For information: bringing the 30 projects up with ``apps.up`` (8 at a time).

Each figure is the median of `REPEAT` runs.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from invoke import Context  # noqa: E402

from aegir.cli import AegirConfig  # noqa: E402
from aegir.compose.status import gather_status  # noqa: E402
from aegir.host import HostContext, open_context  # noqa: E402
from aegir.inventory import Host, load  # noqa: E402
from bench.common import REPO, median_seconds, operator_env, until_agent, warm_agent  # noqa: E402

REPEAT = 5
PROJECTS = 30
TARGET = 10.0
E2E_TARGET = 10.0
LIST_TARGET = 0.15  # seconds over bare Python
BREATH = 0.10  # seconds inv apps.status may take over `ssh host true`
COMPOSE = 'services:\n  main:\n    image: aegir-lab/busybox:latest\n    command: ["sleep", "86400"]\n'
#: The runbook, step 4: for each Compose project, core first, `cd /srv/<project> && docker compose ps`.
LOOP = 'for d in /srv/core/*/ /srv/apps/*/ /srv/users/*/; do [ -d "$d" ] && (cd "$d" && docker compose ps); done; true'


def median(fn, repeat: int = REPEAT) -> float:
    return median_seconds(fn, repeat)


def on_host() -> None:
    """Inside the lab host (``--on-host``): time the loop and `gather_status` with a local context."""
    c = Context(config=AegirConfig(lazy=True))
    local = Host("local", connection="local")

    def ours() -> None:
        hc = open_context(c, local)
        try:
            assert len(gather_status(hc).projects) == PROJECTS
        finally:
            hc.close()

    ours()
    loop = median(lambda: subprocess.run(["sh", "-c", LOOP], check=True, capture_output=True))
    print(json.dumps({"loop": loop, "ours": median(ours)}))


def main() -> None:
    from tests.lab import Lab

    with Lab.start(1, prefix="aegirbench", wait=float(os.environ.get("AEGIR_LAB_WAIT", "600"))) as lab:
        host = lab.hosts[0]
        host.write("core/front/docker-compose.yml", COMPOSE)
        names = [f"app{i:02d}" for i in range(PROJECTS - 1)]
        for n in names:
            host.write(f"apps/{n}/docker-compose.yml", COMPOSE)
        env = operator_env(AEGIR_INVENTORY=str(lab.inventory_path))
        inv = [sys.executable, "-m", "aegir", "-H", host.name]
        subprocess.run(inv + ["core.up"], cwd=REPO, env=env, check=True, capture_output=True)
        start = time.perf_counter()
        subprocess.run(inv + ["apps.up", ",".join(names), "--parallel", "8"], cwd=REPO, env=env, check=True,
                       capture_output=True)
        up_time = time.perf_counter() - start

        inside = json.loads(host.run([sys.executable, __file__, "--on-host"], timeout=300).stdout)

        c = Context(config=AegirConfig(lazy=True))
        target = load(str(lab.inventory_path)).get(host.name)
        hc = open_context(c, target)
        try:
            loop_out = hc.c.run(LOOP, hide=True)
            assert loop_out.stdout.count("Up ") == PROJECTS, loop_out.stdout
            status = gather_status(hc)
            assert len(status.projects) == PROJECTS and status.ok, status

            def ours() -> None:
                fresh = HostContext(target, hc.c)  # no memoised discovery, a new Docker client
                try:
                    assert len(gather_status(fresh).projects) == PROJECTS
                finally:
                    client, fresh._docker = fresh._docker, None  # close the client, keep the SSH link
                    if client is not None:
                        client.close()

            ours()  # warm up
            session = median(lambda: hc.c.run("true", hide=True))
            loop_t = median(lambda: hc.c.run(LOOP, hide=True))
            ours_t = median(ours)
        finally:
            hc.close()

        ssh = ["ssh", "-i", str(lab.identity), "-o", f"UserKnownHostsFile={lab.known_hosts}",
               "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
               # Debian's ssh_config asks for GSSAPI first: off, so the baseline is the fastest plain login
               "-o", "GSSAPIAuthentication=no", f"root@{host.addresses.admin_ipv4}"]
        loop_e2e = median(lambda: subprocess.run(ssh + [LOOP], check=True, capture_output=True))
        ours_e2e = median(lambda: subprocess.run(inv + ["apps.status"], cwd=REPO, env=env, check=True,
                                                 capture_output=True))
        ssh_true = median(lambda: subprocess.run(ssh + ["true"], check=True, capture_output=True))
        warm_e2e, ten_cold, ten_warm = warm_figures(inv + ["apps.status"], env)
        handshake = median(lambda: open_context(c, target).close())
        inventory = median(lambda: load(str(lab.inventory_path)))
        imports = median(lambda: subprocess.run(
            [sys.executable, "-c", "import aegir.cli, aegir.host, fabric, paramiko, docker"], cwd=REPO, env=env,
            check=True, capture_output=True))
        host.run(["sh", "-c", "docker rm -f $(docker ps -aq)"], timeout=120)  # a quiet host stops cleanly
    bare = median(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True, capture_output=True), 10)
    listing = median(lambda: subprocess.run(inv[:3] + ["--list"], cwd=REPO, env=env, check=True,
                                            capture_output=True), 10)

    print(f"one lab host, {PROJECTS} Compose projects (1 core + {PROJECTS - 1} apps), median of {REPEAT}")
    print(f"  on the host: runbook loop ({PROJECTS} x `docker compose ps`) {inside['loop']:.3f} s, "
          f"gather_status {inside['ours']:.3f} s")
    print(f"ratio loop/apps.status (on the host): {inside['loop'] / inside['ours']:.1f}x (target >= {TARGET:g}x)")
    print(f"  over an open SSH connection: loop {loop_t:.3f} s (1 session), gather_status {ours_t:.3f} s "
          f"(2 sessions at once); one empty session (`true`) costs {session:.3f} s here")
    print(f"ratio loop/apps.status (open SSH connection): {loop_t / ours_t:.1f}x; net of one session's cost "
          f"(both pay at least one): {(loop_t - session) / max(ours_t - session, 1e-3):.1f}x")
    print(f"  end to end, fresh process: `ssh host {shlex.quote('<loop>')}` {loop_e2e:.3f} s, "
          f"`inv -H {host.name} apps.status` {ours_e2e:.3f} s")
    print(f"ratio loop/apps.status (end to end): {loop_e2e / ours_e2e:.1f}x (target >= {E2E_TARGET:g}x)")
    print(f"  one SSH login, same run: `ssh host true` {ssh_true:.3f} s; `inv -H {host.name} apps.status` "
          f"{ours_e2e:.3f} s: {ours_e2e - ssh_true:+.3f} s over it (target <= +{BREATH:g} s)")
    print(f"  warm agent (AEGIR_WARM, opt-in; a command after the first): `inv -H {host.name} apps.status` "
          f"{warm_e2e:.3f} s: {warm_e2e - ssh_true:+.3f} s over `ssh host true` (target <= +{BREATH:g} s); "
          f"ten in a row: {ten_cold:.2f} s cold, {ten_warm:.2f} s warm ({ten_cold / ten_warm:.2f}x)")
    print(f"  where it goes: python -c pass {bare:.3f} s; + the program's imports to `inv --list` "
          f"{listing - bare:.3f} s; python + aegir + Fabric/paramiko + Docker SDK imported {imports:.3f} s; "
          f"inventory read {inventory:.3f} s; SSH handshake + login {handshake:.3f} s; status over the open "
          f"connection {ours_t:.3f} s")
    print(f"start-up: python -c pass {bare:.3f} s, inv --list {listing:.3f} s, extra {listing - bare:.3f} s "
          f"(target <= {LIST_TARGET:g} s)")
    print(f"for information: apps.up of {PROJECTS - 1} projects, 8 at a time: {up_time:.2f} s")


def warm_figures(argv: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    """`argv` served by a warm agent (`bench.common.warm_agent`): the median of `REPEAT` runs after the
    first, and ten runs in a row cold vs warm (the first warm one starts the agent)."""
    def ten(e: dict[str, str]) -> float:
        start = time.perf_counter()
        for _ in range(10):
            subprocess.run(argv, cwd=REPO, env=e, check=True, capture_output=True)
        return time.perf_counter() - start

    with warm_agent(env) as (warm, served):
        ten_warm = ten(warm)  # the first starts the agent: what an operator's first ten commands cost
        ten_cold = ten(env)
        until_agent(warm)
        before = served()
        one = median(lambda: subprocess.run(argv, cwd=REPO, env=warm, check=True, capture_output=True))
        assert served() - before >= REPEAT, "not served by the warm agent"
    return one, ten_cold, ten_warm


if __name__ == "__main__":
    on_host() if sys.argv[1:] == ["--on-host"] else main()
