"""Benchmark: disk.report fans out in parallel; `inv --list` starts fast.

Run as root, under the lab lock: ``flock /tmp/aegir-lab.lock .venv/bin/python bench/fanout.py``
(starts its own 6-host lab, ``aegirbench``, and stops it).

1. Wall time of ``inv disk.report`` over 1, 3 and 6 lab hosts (real SSH, real
   dockerd), median of `REPEAT` runs, and the same 6 hosts with the fleet bound
   to one host at a time (the serial loop it replaces). Prints the ratio
   6-host/1-host (target <= 1.5) and serial-6/parallel-6.
2. Start-up of ``inv --list`` against ``python -c pass`` (target <= 0.35 s extra).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.lab import Lab  # noqa: E402

REPEAT = 5
MiB = 1024 * 1024


def wall(argv: list[str], env: dict[str, str], repeat: int = REPEAT) -> float:
    """Median wall time of `argv` over `repeat` runs (each must succeed)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(argv, cwd=REPO, env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    inv = [sys.executable, "-m", "aegir"]
    with Lab.start(6, prefix="aegirbench") as lab:
        for i, host in enumerate(lab.hosts, start=1):
            for p in range(5):
                host.write(f"apps/app{p}/data/blob", (i + p) * MiB)
        env = {**os.environ, "AEGIR_INVENTORY": str(lab.inventory_path)}
        sets = {1: "hyp1", 3: "hyp1,hyp2,hyp3", 6: "lab"}
        wall(inv + ["-H", "hyp1", "disk.report"], env, repeat=1)  # warm caches
        times = {n: wall(inv + ["-H", spec, "disk.report"], env) for n, spec in sets.items()}
        serial = wall(inv + ["-H", "lab", "disk.report"], {**env, "AEGIR_AEGIR_PARALLEL": "1"})
    print("disk.report wall time, median of", REPEAT)
    for n, t in times.items():
        print(f"  {n} host(s) in parallel: {t:.2f} s")
    print(f"  6 hosts one at a time:  {serial:.2f} s")
    print(f"ratio 6-host/1-host: {times[6] / times[1]:.2f} (target <= 1.5)")
    print(f"ratio serial-6/parallel-6: {serial / times[6]:.2f}")

    base = wall([sys.executable, "-c", "pass"], dict(os.environ), repeat=10)
    listing = wall(inv + ["--list"], dict(os.environ), repeat=10)
    print(f"start-up: python -c pass {base:.3f} s, inv --list {listing:.3f} s, "
          f"extra {listing - base:.3f} s (target <= 0.35 s)")


if __name__ == "__main__":
    main()
