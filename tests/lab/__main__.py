"""``python -m tests.lab up|status|down``: the lab by hand.

``up`` starts a lab and leaves it running (the next ``up``, ``down`` or test
session ends it); ``status`` says what runs; ``down`` ends it by pid.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from tests.lab import teardown
from tests.lab.lab import Lab
from tests.lab.procs import start_time
from tests.lab.state import LabError, LabState, MachineLock, default_workdir, registered_labs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.lab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start a lab and leave it running")
    up.add_argument("-n", type=int, default=3, help="number of hosts (default 3)")
    up.add_argument("--loop", action="append", default=[], metavar="HOST",
                    help="give HOST a loop-mounted /srv (starts unmounted, Docker stopped); repeatable")
    for p in (up, sub.add_parser("down", help="stop the lab by pid"), sub.add_parser("status", help="show the lab")):
        p.add_argument("--prefix", default="aegirlab", help="name prefix of netns and links (default aegirlab)")
        p.add_argument("--workdir", type=Path, help="lab directory (default /tmp/aegir-lab/PREFIX)")
    args = parser.parse_args(argv)
    workdir = (args.workdir or default_workdir(args.prefix)).resolve()
    try:
        if args.command == "up":
            return _up(args, workdir)
        if args.command == "down":
            return _down(args.prefix, workdir)
        return _status(args.prefix, workdir)
    except LabError as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 1


def _up(args: argparse.Namespace, workdir: Path) -> int:
    started = time.monotonic()
    lab = Lab.start(args.n, prefix=args.prefix, workdir=workdir, variants={h: {"srv": "loop"} for h in args.loop},
                    wait=5, stop_at_exit=False)
    print(f"lab {lab.prefix}: {len(lab.hosts)} hosts up in {time.monotonic() - started:.1f} s")
    _print_hosts(lab.prefix, lab.workdir)
    inv = shlex.quote(str(lab.inventory_path))
    print(f"\ninventory: {lab.inventory_path}")
    print(f"  AEGIR_INVENTORY={inv} inv disk.report")
    print(f"  ssh -i {shlex.quote(str(lab.identity))} -o UserKnownHostsFile={shlex.quote(str(lab.known_hosts))} "
          f"root@{lab.hosts[0].addresses.admin_ipv4}" if lab.hosts else "")
    print(f"  nsenter -t {lab.hosts[0].pid} -n -m -u   # a shell inside {lab.hosts[0].name}" if lab.hosts else "")
    print(f"stop it: python -m tests.lab down --prefix {lab.prefix}")
    return 0


def _down(prefix: str, workdir: Path) -> int:
    lock = MachineLock()
    lock.acquire(wait=5)
    try:
        teardown.sweep(prefix, workdir)
    finally:
        lock.release()
    left = teardown.leftovers(prefix, workdir)
    print(f"lab {prefix}: down" + (f"; left behind: {', '.join(left)}" if left else ""))
    return 1 if left else 0


def _status(prefix: str, workdir: Path) -> int:
    if LabState.load(workdir) is None:
        others = ", ".join(f"{p} ({w})" for p, w in registered_labs().items())
        print(f"lab {prefix}: not running" + (f"; registered labs: {others}" if others else ""))
        return 1
    _print_hosts(prefix, workdir)
    print(f"inventory: {workdir / 'hosts.yml'}")
    return 0


def _print_hosts(prefix: str, workdir: Path) -> None:
    state = LabState.load(workdir)
    assert state is not None
    owner = f"owned by pid {state.owner}" if state.owner else "left running (no owner)"
    print(f"lab {prefix} in {workdir}, {owner}")
    for h in state.hosts:
        alive = h.init is not None and h.init.alive()
        sshd = _pidfile_alive(Path(h.dir) / "sshd.pid")
        docker = _pidfile_alive(Path(h.dir) / "docker.pid")
        srv = f"loop {h.loop_device}" if h.loop_device else "bind"
        print(f"  {h.name:8} init {h.init.pid if h.init else '-':>7} {'up' if alive else 'DEAD':4}  "
              f"sshd {'up' if sshd else 'down':4}  docker {'up' if docker else 'down':4}  srv {srv}")


def _pidfile_alive(path: Path) -> bool:
    try:
        return start_time(int(path.read_text().strip())) is not None
    except (OSError, ValueError):
        return False


if __name__ == "__main__":
    sys.exit(main())
