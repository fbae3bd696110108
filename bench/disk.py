"""Benchmark: `disk.report` against the runbook's ``du -sh /srv/*/*/ | sort -h``, at real scale.

Run as root, by hand (not part of the test suite): ``.venv/bin/python bench/disk.py``
(starts its own one-host lab, ``aegirbench``, under the machine's lab lock, and stops it).
``--files N`` and ``--projects N`` change the scale (default 1,000,000 files over 30 projects).

The lab host's /srv gets N small files (64 bytes) spread over the projects'
``data/`` folders, 500 per folder. Over one SSH connection already open, each
figure is the median of a few runs of:

* the runbook: ``du -sh /srv/*/*/ | sort -h`` (one session, one du over every
  folder of /srv, Docker's data-root included);
* aegir's per-host work for ``disk.report`` (`aegir.disk.facts.gather`): df, the
  project list, one du per project with several at once, Docker's df;
* the same with ``--fast``: df and Docker only.

Cold: the kernel's page, dentry and inode caches are dropped before each run
(``echo 3 > /proc/sys/vm/drop_caches``: machine-wide, so other work on this
machine slows down for a moment). Warm: after a first run. Targets: the report
at least as fast as the runbook (ratio >= 1), ``--fast`` >= 10x.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from invoke import Context  # noqa: E402

from aegir.cli import AegirConfig  # noqa: E402
from aegir.disk.facts import gather  # noqa: E402
from aegir.host import HostContext, open_context  # noqa: E402
from aegir.inventory import load  # noqa: E402
from bench.common import median_seconds  # noqa: E402

RUNBOOK = "du -sh /srv/*/*/ | sort -h"
PER_DIR = 500
COLD_REPEAT = 3
WARM_REPEAT = 3


def populate(srv: Path, files: int, projects: int) -> None:
    """`files` files of 64 bytes over `projects` projects (core/front, apps/appNN), 500 per folder."""
    names = ["core/front"] + [f"apps/app{i:02d}" for i in range(projects - 1)]
    blob = b"x" * 64
    per_project = files // projects
    for n, name in enumerate(names):
        top = srv / name
        (top / "conf").mkdir(parents=True, exist_ok=True)
        (top / "docker-compose.yml").write_text("services: {}\n")
        count = per_project + (files % projects if n == 0 else 0)
        for d in range(0, count, PER_DIR):
            folder = top / "data" / f"{d // PER_DIR:04d}"
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
            try:
                for i in range(min(PER_DIR, count - d)):
                    f = os.open(f"f{i}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644, dir_fd=fd)
                    os.write(f, blob)
                    os.close(f)
            finally:
                os.close(fd)


def drop_caches() -> None:
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=1_000_000)
    ap.add_argument("--projects", type=int, default=30)
    args = ap.parse_args()
    from tests.lab import Lab

    with Lab.start(1, prefix="aegirbench") as lab:
        host = lab.hosts[0]
        start = time.perf_counter()
        populate(host.root("/srv"), args.files, args.projects)
        made = time.perf_counter() - start
        print(f"  ({args.files:,} files made in {made:.0f} s)", file=sys.stderr, flush=True)
        c = Context(config=AegirConfig(lazy=True))
        target = load(str(lab.inventory_path)).get(host.name)
        hc = open_context(c, target)
        try:
            def runbook() -> None:
                out = hc.c.run(RUNBOOK, hide=True, warn=True)
                assert out.stdout.count("\n") >= args.projects, out.stdout

            def ours(fast: bool) -> Callable[[], None]:
                def run() -> None:
                    fresh = HostContext(target, hc.c)  # a new Docker client each time, as a new run has
                    try:
                        d = gather(fresh, fast=fast)
                        assert d.docker is not None and (fast or len(d.projects or ()) == args.projects), d
                        assert fast or sum(p.total for p in d.projects or ()) >= args.files * 64
                    finally:
                        client, fresh._docker = fresh._docker, None  # close the client, keep the SSH link
                        if client is not None:
                            client.close()
                return run

            figures = {}
            for cold, repeat in ((True, COLD_REPEAT), (False, WARM_REPEAT)):
                if not cold:
                    runbook(), ours(False)()  # warm the caches
                for label, fn in (("runbook", runbook), ("report", ours(False)), ("fast", ours(True))):
                    figures[(cold, label)] = median_seconds(fn, repeat, before=drop_caches if cold else None)
                    print(f"  ({'cold' if cold else 'warm'} {label}: {figures[(cold, label)]:.3f} s)", file=sys.stderr,
                          flush=True)
            session = median_seconds(lambda: hc.c.run("true", hide=True), WARM_REPEAT)
        finally:
            hc.close()
        cpus = os.cpu_count()
        print(f"one lab host, {args.files:,} files of 64 bytes over {args.projects} projects "
              f"({made:.0f} s to make), {cpus} CPUs; over one open SSH connection "
              f"(an empty session costs {session:.3f} s here)")
        for cold, repeat in ((True, COLD_REPEAT), (False, WARM_REPEAT)):
            name = "cold cache" if cold else "warm cache"
            rb, rep, fast = (figures[(cold, k)] for k in ("runbook", "report", "fast"))
            print(f"  {name} (median of {repeat}): `{RUNBOOK}` {rb:.2f} s, disk.report {rep:.2f} s, "
                  f"disk.report --fast {fast:.3f} s")
            print(f"ratio runbook/disk.report ({name}): {rb / rep:.1f}x (target >= 1x); "
                  f"runbook/--fast: {rb / fast:.0f}x (target >= 10x)")
        subprocess.run(["true"])


if __name__ == "__main__":
    main()
