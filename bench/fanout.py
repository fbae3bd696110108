"""Benchmark: the operator's cost per host, and how the fleet's wall time follows the machine's CPU.

Run as root: ``.venv/bin/python bench/fanout.py`` (the cheap lab: no lab lock needed), or
``flock /tmp/aegir-lab.lock .venv/bin/python bench/fanout.py --full`` for part 3 as well.

1. The curve, on the cheap lab (tests/lab/sshonly.py: `CHEAP` hosts that are an sshd
   and a shell each, no dockerd): ``inv -H <n hosts> disk.report`` for n in `SIZES`,
   a fresh ``inv`` process each, `REPEAT` times: the run of median wall time, and the
   least operator CPU of them (on a shared machine CPU time only grows with contention). Each host answers the filesystems
   (df of / and /srv, the project folders: none) and "Docker is not running": one SSH
   login and one session per host (the dockerd probe rides in disk.report's one round
   trip). Per size: wall; the operator's CPU (user+sys of the ``inv`` process and its
   children); the whole machine's CPU (/proc/stat: every sshd and shell of the lab runs
   on the same cores); the operator's CPU per extra host, (cpu(n) - cpu(1)) / (n - 1)
   (target <= 8 ms); and wall / (machine CPU / cores), how far the run is from the
   machine's own CPU bound (target <= 1.2: the operator is not what limits it).
   The 200 hosts once more split over 2 worker processes (``aegir.process_hosts``;
   by default a fleet is split past 250 hosts).
2. Start-up of ``inv --list`` against ``python -c pass`` (target <= 0.15 s extra).
3. ``--full``: the former figures on the full lab (sshd + dockerd, 5 projects per host):
   wall of 1, 3, 10 and 30 hosts, the serial loop, CPU of 1 and 30 hosts.

The machine may be shared (other labs, other benchmarks): the machine CPU then counts
their work too, which the operator's CPU does not; the bench prints the load average.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import median_seconds, operator_env, run_ok  # noqa: E402

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


SIZES = (1, 10, 30, 100, 200)
CHEAP = max(SIZES)
CPU_TARGET = 0.008  # seconds of operator CPU per extra host
BOUND_TARGET = 1.2


def curve() -> None:
    """Part 1: the cheap lab's curve."""
    from tests.lab.sshonly import SshOnlyLab

    inv = [sys.executable, "-m", "aegir"]
    cores = os.cpu_count() or 1
    rows = []
    with SshOnlyLab.start(CHEAP) as lab:
        env = operator_env(AEGIR_INVENTORY=str(lab.inventory_path))
        run_ok(inv + ["-H", "cheap", "disk.report"], env)  # warm caches
        load = os.getloadavg()[0]
        for n in SIZES:
            argv = inv + ["-H", ",".join(lab.hosts[:n]), "disk.report"]
            runs = sorted((cpu_of(argv, env) for _ in range(REPEAT)), key=lambda t: t[0])
            took, own, machine = runs[len(runs) // 2]  # the median run by wall time
            rows.append((n, took, min(r[1] for r in runs), machine))
        argv = inv + ["-H", "cheap", "disk.report"]
        split = {**env, "AEGIR_AEGIR_PROCESS_HOSTS": str(CHEAP // 2)}  # 2 worker processes
        runs = sorted((cpu_of(argv, split) for _ in range(REPEAT)), key=lambda t: t[0])
        procs = (runs[len(runs) // 2][0], min(r[1] for r in runs), runs[len(runs) // 2][2])
    print(f"disk.report on the cheap lab (sshd + shell per host, no dockerd), {REPEAT} runs each: median wall, "
          f"least operator CPU; "
          f"{cores} cores, load average {load:.1f} at the start (the machine may be shared)")
    print("  hosts   wall s  operator CPU s  machine CPU s  operator ms/extra host  wall/(machine CPU/cores)")
    one = rows[0][2]
    for n, took, own, machine in rows:
        extra = f"{(own - one) / (n - 1) * 1000:10.1f}" if n > 1 else "         -"
        print(f"  {n:5d}  {took:7.2f}  {own:14.2f}  {machine:13.2f}  {extra}              "
              f"{took / max(machine / cores, 1e-6):6.2f}")
    took, own, machine = procs
    print(f"  {CHEAP:5d}  {took:7.2f}  {own:14.2f}  {machine:13.2f}  {(own - one) / (CHEAP - 1) * 1000:10.1f}"
          f"              {took / max(machine / cores, 1e-6):6.2f}   (2 worker processes of {CHEAP // 2} hosts)")
    n, _, own, _ = rows[-1]
    per = (own - one) / (n - 1)
    print(f"operator CPU per extra host (1 -> {n} hosts): {per * 1000:.1f} ms (target <= {CPU_TARGET * 1000:g} ms)")
    worst = max(took / max(machine / cores, 1e-6) for _, took, _, machine in rows)
    print(f"worst wall / (machine CPU / cores): {worst:.2f} (target <= {BOUND_TARGET:g})")


def startup() -> None:
    """Part 2: inv --list over bare Python."""
    inv = [sys.executable, "-m", "aegir"]
    base = wall([sys.executable, "-c", "pass"], operator_env(), repeat=10)
    listing = wall(inv + ["--list"], operator_env(), repeat=10)
    print(f"start-up: python -c pass {base:.3f} s, inv --list {listing:.3f} s, "
          f"extra {listing - base:.3f} s (target <= 0.15 s)")


def main() -> None:
    curve()
    startup()
    if "--full" in sys.argv[1:]:
        full_lab()


def full_lab() -> None:
    """Part 3: the full lab (sshd + dockerd), as the bench measured before the cheap lab."""
    from tests.lab import Lab

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
    print(f"  operator CPU per extra host (full lab: Docker over SSH too): "
          f"{(cpu[HOSTS][1] - cpu[1][1]) / (HOSTS - 1) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
