"""Benchmark: disk.report fans out in parallel; `inv --list` starts fast.

Run as root, under the lab lock: ``flock /tmp/aegir-lab.lock .venv/bin/python bench/fanout.py``
(starts its own `HOSTS`-host lab, ``aegirbench``, and stops it).

1. Wall time of ``inv disk.report`` over 1, 3, 10 and 30 lab hosts (real SSH,
   real dockerd, each host with 5 projects), median of `REPEAT` runs, and the
   same 30 hosts with the fleet bound to one host at a time (the serial loop it
   replaces, median of `SERIAL_REPEAT`). Prints the ratio 30-host/1-host
   (target <= 1.5) and serial-30/parallel-30.
2. Start-up of ``inv --list`` against ``python -c pass`` (target <= 0.15 s extra).
"""

from __future__ import annotations

import sys
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


def main() -> None:
    inv = [sys.executable, "-m", "aegir"]
    with Lab.start(HOSTS, prefix="aegirbench") as lab:
        for i, host in enumerate(lab.hosts, start=1):
            for p in range(5):
                host.write(f"apps/app{p}/data/blob", (i + p) * MiB)
        env = operator_env(AEGIR_INVENTORY=str(lab.inventory_path))
        sets = {n: ",".join(h.name for h in lab.hosts[:n]) for n in (1, 3, 10, HOSTS)}
        wall(inv + ["-H", "lab", "disk.report"], env, repeat=1)  # warm caches
        times = {n: wall(inv + ["-H", spec, "disk.report"], env) for n, spec in sets.items()}
        serial = wall(inv + ["-H", "lab", "disk.report"], {**env, "AEGIR_AEGIR_PARALLEL": "1"}, repeat=SERIAL_REPEAT)
    print(f"disk.report wall time (fresh `inv` process each, SSH login included), median of {REPEAT}")
    for n, t in times.items():
        print(f"  {n} host(s) in parallel: {t:.2f} s")
    print(f"  {HOSTS} hosts one at a time (baseline, median of {SERIAL_REPEAT}): {serial:.2f} s")
    print(f"ratio {HOSTS}-host/1-host: {times[HOSTS] / times[1]:.2f} (target <= 1.5)")
    print(f"ratio serial-{HOSTS}/parallel-{HOSTS}: {serial / times[HOSTS]:.2f}")

    base = wall([sys.executable, "-c", "pass"], operator_env(), repeat=10)
    listing = wall(inv + ["--list"], operator_env(), repeat=10)
    print(f"start-up: python -c pass {base:.3f} s, inv --list {listing:.3f} s, "
          f"extra {listing - base:.3f} s (target <= 0.15 s)")


if __name__ == "__main__":
    main()
