"""Benchmark: disk.report fans out in parallel; `inv --list` starts fast.

Run as root, under the lab lock: ``flock /tmp/aegir-lab.lock .venv/bin/python bench/fanout.py``
(starts its own `HOSTS`-host lab, ``aegirbench``, and stops it).

1. Wall time of ``inv disk.report`` over 1, 3, 10 and 30 lab hosts (real SSH,
   real dockerd, each host with 5 projects), median of `REPEAT` runs, and the
   same 30 hosts with the fleet bound to one host at a time (the serial loop it
   replaces, median of `SERIAL_REPEAT`). Prints the ratio 30-host/1-host
   (target <= 1.5) and serial-30/parallel-30.
2. Start-up of ``inv --list`` against ``python -c pass`` (target <= 0.15 s extra).

For each run it also prints the CPU it took: the ``inv`` process's own, and the
whole machine's (every lab host's sshd, shells, du and dockerd run on the same
cores as the client: the lab shares this machine's CPUs, a fleet does not).
"""

from __future__ import annotations

import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import median_seconds, operator_env, run_ok  # noqa: E402
from tests.lab import Lab  # noqa: E402

REPEAT = 5
SERIAL_REPEAT = 3
HOSTS = 30
MiB = 1024 * 1024


def wall(argv: list[str], env: dict[str, str], repeat: int = REPEAT) -> float:
    """Median wall time of `argv` over `repeat` runs (each must succeed)."""
    return median_seconds(lambda: run_ok(argv, env), repeat)


def machine_busy() -> float:
    """Seconds of CPU every process of this machine has used since boot (/proc/stat: all but idle and iowait)."""
    fields = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def cpu_of(argv: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    """One run of `argv`: (wall, the process's CPU, the whole machine's CPU), in seconds."""
    before_self = resource.getrusage(resource.RUSAGE_CHILDREN)
    before_all, start = machine_busy(), time.perf_counter()
    run_ok(argv, env)
    took, after_all = time.perf_counter() - start, machine_busy()
    after_self = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = (after_self.ru_utime - before_self.ru_utime) + (after_self.ru_stime - before_self.ru_stime)
    return took, own, after_all - before_all


def main() -> None:
    inv = [sys.executable, "-m", "aegir"]
    with Lab.start(HOSTS, prefix="aegirbench", wait=float(os.environ.get("AEGIR_LAB_WAIT", "600"))) as lab:
        for i, host in enumerate(lab.hosts, start=1):
            for p in range(5):
                host.write(f"apps/app{p}/data/blob", (i + p) * MiB)
        env = operator_env(AEGIR_INVENTORY=str(lab.inventory_path))
        sets = {n: ",".join(h.name for h in lab.hosts[:n]) for n in (1, 3, 10, HOSTS)}
        wall(inv + ["-H", "lab", "disk.report"], env, repeat=1)  # warm caches
        times = {n: wall(inv + ["-H", spec, "disk.report"], env) for n, spec in sets.items()}
        serial = wall(inv + ["-H", "lab", "disk.report"], {**env, "AEGIR_AEGIR_PARALLEL": "1"}, repeat=SERIAL_REPEAT)
        cpu = {n: min((cpu_of(inv + ["-H", sets[n], "disk.report"], env) for _ in range(3)), key=lambda t: t[0])
               for n in (1, HOSTS)}
    print(f"disk.report wall time (fresh `inv` process each, SSH login included), median of {REPEAT}")
    for n, t in times.items():
        print(f"  {n} host(s) in parallel: {t:.2f} s")
    print(f"  {HOSTS} hosts one at a time (baseline, median of {SERIAL_REPEAT}): {serial:.2f} s")
    print(f"ratio {HOSTS}-host/1-host: {times[HOSTS] / times[1]:.2f} (target <= 1.5)")
    print(f"ratio serial-{HOSTS}/parallel-{HOSTS}: {serial / times[HOSTS]:.2f}")
    cores = os.cpu_count() or 1
    for n, (took, own, machine) in cpu.items():
        print(f"  CPU of one {n}-host run (fastest of 3, {took:.2f} s): inv {own:.2f} s, whole machine {machine:.2f} s "
              f"= {machine / took:.1f} of {cores} cores busy")

    base = wall([sys.executable, "-c", "pass"], operator_env(), repeat=10)
    listing = wall(inv + ["--list"], operator_env(), repeat=10)
    print(f"start-up: python -c pass {base:.3f} s, inv --list {listing:.3f} s, "
          f"extra {listing - base:.3f} s (target <= 0.15 s)")


if __name__ == "__main__":
    main()
