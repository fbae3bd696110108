"""Benchmark: net.check over 3 hosts against the same checks by hand over ssh, one run each.

Run as root: ``.venv/bin/python bench/net_check.py`` (it waits for the machine's lab lock like the tests and
starts its own 3-host lab, prefix ``aegirncb``, with charon and a busybox container on each host; then
net.keys and net.mesh, and waits until every pair is up).

Timed, once each (the SAs are up, so both find the same thing):

- ``inv net.check -f json``: every pair's SA at both ends and a ping from a container of the first host to
  the global IPv6 of a container of the second, counted by the SA;
- by hand, as an operator's shell loop: for each pair (a, b), ``ssh a swanctl --list-sas``,
  ``ssh b swanctl --list-sas``, then ``ssh a docker exec meshprobe ping -6 -c 1 -W 2 ADDR_OF_B``; the
  containers' addresses are looked up beforehand (untimed), which the loop would have to do too.

Prints both wall times and the ratio by hand / net.check. One run on a shared machine: a rough figure.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REPO, operator_env, run_ok  # noqa: E402
from tests.lab import Lab  # noqa: E402
from tests.test_mesh import libipsec_sources  # noqa: E402

IMAGE = "aegir-lab/busybox:latest"
PROBE = "meshprobe"


def main() -> None:
    lab = Lab.start(3, prefix="aegirncb", wait=3600)
    try:
        env = operator_env(AEGIR_INVENTORY=str(lab.inventory_path))
        inv = [sys.executable, "-m", "aegir"]
        for h in lab.hosts:
            h.run(["docker", "run", "-d", "--name", PROBE, IMAGE, "sleep", "3600"])
            h.start_charon(libipsec_sources(lab, h))
        run_ok([*inv, "net.keys"], env)
        run_ok([*inv, "net.mesh"], env)
        deadline = time.monotonic() + 90
        while subprocess.run([*inv, "net.check"], cwd=REPO, env=env, capture_output=True).returncode != 0:
            if time.monotonic() > deadline:
                raise SystemExit("bench: the pairs did not come up within 90 s")
            time.sleep(1)
        addr = {h.name: h.run(["docker", "inspect", "-f", "{{.NetworkSettings.GlobalIPv6Address}}", PROBE]
                              ).stdout.strip() for h in lab.hosts}
        ssh = ["ssh", "-i", str(lab.identity), "-o", f"UserKnownHostsFile={lab.known_hosts}",
               "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"]
        where = {h.name: f"root@{h.addresses.admin_ipv4}" for h in lab.hosts}

        start = time.perf_counter()
        done = run_ok([*inv, "net.check", "-f", "json"], env)
        aegir_s = time.perf_counter() - start
        pairs = json.loads(done.stdout)["pairs"]
        assert all(p["reach"] == "yes" for p in pairs), pairs

        names = [h.name for h in lab.hosts]
        start = time.perf_counter()
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                for host in (a, b):
                    subprocess.run([*ssh, where[host], "swanctl", "--list-sas"], check=True, capture_output=True)
                subprocess.run([*ssh, where[a], "docker", "exec", PROBE, "ping", "-6", "-c", "1", "-W", "2", addr[b]],
                               check=True, capture_output=True)
        by_hand_s = time.perf_counter() - start
        print(f"net.check, {len(pairs)} pairs over 3 hosts: {aegir_s:.2f} s (one run)")
        print(f"by hand over ssh (swanctl --list-sas at both ends + ping -6 per pair): {by_hand_s:.2f} s (one run)")
        print(f"ratio by hand / net.check: {by_hand_s / aegir_s:.2f}x  (2 shared cores: a rough figure)")
    finally:
        for h in lab.hosts:
            h.stop_charon()
        lab.stop()


if __name__ == "__main__":
    main()
