"""Benchmark: aegir against compose-farm on the same 3 lab hosts x 10 Compose projects, in one run.

Run as root, by hand (not in the suite): ``.venv/bin/python bench/compare.py``
(starts its own 3-host lab, ``aegircmp``, under the machine's lab lock, and
stops it). It needs PyPI: compose-farm is installed by the bench itself into
a temporary venv, with its config, SSH key and known_hosts in a temporary
HOME (``~/.config/compose-farm/compose-farm.yaml``, ``~/.ssh/compose-farm/``),
so nothing of the operator's is read or written.

Both tools get the same hosts (the lab's admin addresses, root, the lab's
key and host keys) and the same projects: host i has ``/srv/apps/h<i>p<j>``
for j in 0..9, one busybox service each. compose-farm's ``compose_dir`` is
``/srv/apps`` and its ``stacks`` map each project to its host; aegir reads the
same from the hosts (discovery), with no per-project configuration.

Measured end to end, a fresh process each (Python start-up, SSH logins,
output included), median of `REPEAT`:

1. status of the 30 projects: ``cf ps`` vs ``inv apps.status``.
   Target: aegir >= 5x faster.
2. restart of one app: ``cf restart h1p5`` (``docker compose restart`` on the
   host its config names) vs ``inv apps.restart h1p5`` (plans on every host --
   a name no host has refuses the command --, restarts it where it is, then
   verifies through the Docker API that every container restarted and the
   project is up). Target: aegir no slower (ratio >= 1.0).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REPO, operator_env, until_agent, warm_agent  # noqa: E402
from bench.status import REPEAT, median  # noqa: E402

HOSTS = 3
PER_HOST = 10
CF_VERSION = "1.27.3"
TARGET_STATUS = 5.0
TARGET_RESTART = 1.0
#: ``stop_signal: SIGKILL``: a restart then measures the tools, not busybox ``sleep`` (PID 1, deaf to
#: SIGTERM) making Compose wait out its 10 s stop timeout in both.
COMPOSE = ('services:\n  main:\n    image: aegir-lab/busybox:latest\n    command: ["sleep", "86400"]\n'
           '    stop_signal: SIGKILL\n')
APP = "h1p5"


def install_compose_farm(tmp: Path) -> Path:
    """compose-farm in its own venv under `tmp`; its ``cf`` program."""
    venv = tmp / "cf-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin/pip"), "install", "-q", f"compose-farm=={CF_VERSION}"], check=True)
    return venv / "bin/cf"


def compose_farm_home(tmp: Path, lab, stacks: dict[str, str]) -> Path:
    """A HOME holding compose-farm's config, the lab's key and known_hosts."""
    home = tmp / "home"
    keys = home / ".ssh/compose-farm"
    keys.mkdir(parents=True)
    shutil.copy(lab.identity, keys / "id_ed25519")
    shutil.copy(lab.identity.with_name("id_ed25519.pub"), keys / "id_ed25519.pub")
    shutil.copy(lab.known_hosts, keys / "known_hosts")
    (keys / "id_ed25519").chmod(0o600)
    conf = home / ".config/compose-farm"
    conf.mkdir(parents=True)
    (conf / "compose-farm.yaml").write_text(yaml.safe_dump({
        "compose_dir": "/srv/apps",
        "hosts": {h.name: {"address": str(h.addresses.admin_ipv4), "user": "root", "port": h.options.ssh_port}
                  for h in lab.hosts},
        "stacks": stacks,
    }))
    return home


def main() -> None:
    from tests.lab import Lab

    with tempfile.TemporaryDirectory(prefix="aegir-compare-") as tmpdir:
        tmp = Path(tmpdir)
        cf = install_compose_farm(tmp)
        with Lab.start(HOSTS, prefix="aegircmp") as lab:
            stacks: dict[str, str] = {}
            for i, host in enumerate(lab.hosts):
                for j in range(PER_HOST):
                    name = f"h{i}p{j}"
                    host.write(f"apps/{name}/docker-compose.yml", COMPOSE)
                    stacks[name] = host.name
            home = compose_farm_home(tmp, lab, stacks)
            aegir_env = operator_env(AEGIR_INVENTORY=str(lab.inventory_path))
            cf_env = operator_env(HOME=str(home), NO_COLOR="1", COLUMNS="200")
            cf_env.pop("CF_CONFIG", None)

            def aegir(*args: str, check: bool = True, env: dict[str, str] | None = None
                      ) -> subprocess.CompletedProcess[str]:
                return subprocess.run([sys.executable, "-m", "aegir", *args], cwd=REPO, env=env or aegir_env,
                                      capture_output=True, text=True, check=check, stdin=subprocess.DEVNULL)

            def farm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
                return subprocess.run([str(cf), *args], cwd=tmp, env=cf_env, capture_output=True, text=True,
                                      check=check, stdin=subprocess.DEVNULL)

            aegir("apps.up", ",".join(stacks), "--parallel", "8")
            # Both see the same 30 running projects before anything is timed.
            status = aegir("apps.status")
            assert status.stdout.count(" up ") >= HOSTS * PER_HOST, status.stdout
            ps = farm("ps")
            assert sum(ps.stdout.count(f"{n}-main-1") for n in stacks) == HOSTS * PER_HOST, ps.stdout + ps.stderr
            restarted = aegir("apps.restart", APP, "--format", "json")
            assert '"detail": "1 containers restarted"' in restarted.stdout, restarted.stdout
            farm("restart", APP)

            cf_status = median(lambda: farm("ps"))
            aegir_status = median(lambda: aegir("apps.status"))
            cf_restart = median(lambda: farm("restart", APP))
            aegir_restart = median(lambda: aegir("apps.restart", APP))
            aegir_plan = median(lambda: aegir("apps.restart", APP, "--dry"))
            with warm_agent(aegir_env) as (warm_env, served):  # opt-in: a command after the first
                aegir("--list", env=warm_env)
                until_agent(warm_env)
                before = served()
                warm_status = median(lambda: aegir("apps.status", env=warm_env))
                warm_restart = median(lambda: aegir("apps.restart", APP, env=warm_env))
                assert served() - before >= 2 * REPEAT, "not served by the warm agent"
            for host in lab.hosts:  # a quiet host stops cleanly
                host.run(["sh", "-c", "docker rm -f $(docker ps -aq)"], timeout=120)

    print(f"{HOSTS} lab hosts x {PER_HOST} Compose projects, end to end (fresh process), median of {REPEAT}; "
          f"compose-farm {CF_VERSION}")
    print(f"  status of {HOSTS * PER_HOST} projects: `cf ps` {cf_status:.3f} s, `inv apps.status` {aegir_status:.3f} s")
    print(f"ratio cf/aegir (status): {cf_status / aegir_status:.2f}x (target >= {TARGET_STATUS:g}x)")
    print(f"  restart of one app: `cf restart {APP}` {cf_restart:.3f} s, `inv apps.restart {APP}` "
          f"(every host planned, then verified) {aegir_restart:.3f} s")
    print(f"ratio cf/aegir (restart): {cf_restart / aegir_restart:.2f}x (target >= {TARGET_RESTART:g}x: no slower)")
    print(f"  with the warm agent (AEGIR_WARM, opt-in; a command after the first): status {warm_status:.3f} s "
          f"({cf_status / warm_status:.2f}x), restart {warm_restart:.3f} s ({cf_restart / warm_restart:.2f}x)")
    print(f"for information: `inv apps.restart {APP} --dry` (start-up, every host planned, nothing done) "
          f"{aegir_plan:.3f} s")


if __name__ == "__main__":
    main()
