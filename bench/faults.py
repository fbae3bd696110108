"""Measurement: lifecycle actions under faults injected mid-run, one table (issue 19's matrix).

Run as root, by hand (not in the suite): ``.venv/bin/python bench/faults.py [ACTION|FAULT ...]`` (starts its
own 3-host lab under the machine's lab lock, waiting ``$AEGIR_LAB_WAIT`` seconds for it, and stops it).

Each host has core/front, apps/cloud (two services), apps/wiki, apps/blog, apps/chat and apps/slow (its
``compose up -d`` lasts about 6 s: a healthcheck gates its second service). For each action and each
fault, the hosts are first brought to the state the action starts from (everything down for the
actions that start things, up for the others); the action runs over the three hosts with the default
settings but ``timeouts.silent`` = 5 s; the fault hits the second host as soon as a Compose command of
the act runs there (the canary fault instead stops the first host's sshd before a ``--serial 1`` run):

- ``sshd``: sshd stopped and every session's sshd killed (SIGKILL);
- ``dockerd``: dockerd and containerd killed (SIGKILL);
- ``drop``: every packet of the host dropped (nftables in its namespace), lifted after the run;
- ``ctrl-c``: SIGINT to the ``inv`` process;
- ``canary``: the first host unreachable before the run, ``--serial 1``.

Per run: the exit code, the wall time (and after the fault), whether the faulted host's row is true
(not "cannot connect" once reached, no "internal error" nor traceback, the cause said), its
containers running after, and whether the same command, once the fault is healed, converges (exit 0).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.helpers import remove_compose_containers, run_inv, start_inv  # noqa: E402
from tests.lab import Lab, LabHost  # noqa: E402
from tests.test_faults import (  # noqa: E402
    IMAGE,
    SLOW,
    containers,
    drop_packets,
    heal,
    kill_dockerd,
    kill_sshd,
    remote,
    wait_for,
)

NAMES = "cloud,wiki,blog,chat,slow"
PROJECTS = {
    "core/front": f"services:\n  proxy:\n    image: {IMAGE}\n    command: [\"httpd\", \"-f\", \"-p\", \"80\"]\n",
    "apps/cloud": (f"services:\n  web:\n    image: {IMAGE}\n    command: [\"sleep\", \"86400\"]\n    stop_signal: SIGKILL\n"
                   f"  db:\n    image: {IMAGE}\n    command: [\"sleep\", \"86400\"]\n    stop_signal: SIGKILL\n"),
    **{f"apps/{n}": f"services:\n  {n}:\n    image: {IMAGE}\n    command: [\"sleep\", \"86400\"]\n    stop_signal: SIGKILL\n"
       for n in ("wiki", "blog", "chat")},
    "apps/slow": SLOW,
}
#: action -> (its arguments, whether it starts from everything up)
ACTIONS: dict[str, tuple[tuple[str, ...], bool]] = {
    "apps.up": (("apps.up", NAMES), False),
    "apps.down": (("apps.down", NAMES, "--yes"), True),
    "apps.restart": (("apps.restart", NAMES, "--yes"), True),
    "apps.up --all": (("apps.up", "--all"), False),
    "core.restart": (("core.restart", "--yes"), True),
    "apps.update": (("apps.update", NAMES, "--ignore-failures"), True),
}
FAULTS = ("sshd", "dockerd", "drop", "ctrl-c", "canary")
ENV = {"AEGIR_TIMEOUTS_SILENT": "5", "AEGIR_TIMEOUTS_KEEPALIVE": "1"}


def prepare(hosts: list[LabHost], inv: Path, up: bool) -> None:
    """Every host healed; everything up (`up`), or only core up."""
    for h in hosts:
        heal(h)
        h.write("apps/slow/.env", "SLOW=6\n").chmod(0o600)
    if up:
        res = run_inv("apps.up", "--all", inventory=inv, timeout=300)
    else:
        for h in hosts:
            remove_compose_containers(h)
        res = run_inv("core.up", inventory=inv, timeout=300)
    if res.returncode != 0:
        raise SystemExit(f"bench: preparing failed:\n{res.stdout}{res.stderr}")


def running(host: LabHost) -> str:
    rows = containers(host) if host.docker_running() else []
    return f"{sum(r['State'] == 'running' for r in rows)}/{len(rows)} running"


def truth(out: str, err: str, host: LabHost, fault: str) -> str:
    """Whether the faulted host's rows say what happened (a short verdict)."""
    out = out.rsplit("STATE / DETAIL", 1)[-1]  # the results, not the plan shown before a confirmation
    mine = [ln for ln in out.splitlines() if ln.startswith(host.name + " ")]
    text = " ".join(mine)
    if "Traceback" in err or "internal error" in out + err:
        return "no: a traceback"
    if fault in ("sshd", "dockerd", "drop") and ("cannot connect" in text or "UNREACHABLE" in text):
        return "no: says cannot connect"
    if fault == "canary":
        return "yes" if "UNREACHABLE" in text else f"no: {text[-120:]}"
    causes = {"sshd": ("connection lost", "SSH"), "dockerd": ("Docker", "daemon", "exited"),
              "drop": ("no answer",), "ctrl-c": ("interrupted", "not started", "abandoned", "done")}
    return "yes" if any(c in text for c in causes[fault]) else f"unclear: {text[-120:]}"


def one(hosts: list[LabHost], inv: Path, action: str, fault: str) -> list[str]:
    argv, up = ACTIONS[action]
    a, b, _ = hosts
    prepare(hosts, inv, up)
    extra = ("--serial", "1") if fault == "canary" else ()
    if fault == "canary":
        a.stop_sshd()
    started = time.monotonic()
    proc = start_inv(*argv, *extra, inventory=inv, env=ENV)
    hit = started
    if fault != "canary":
        inject: dict[str, Callable[[LabHost], None]] = {"sshd": kill_sshd, "dockerd": kill_dockerd,
                                                         "drop": drop_packets}
        try:
            wait_for("a Compose command of the act on the second host",
                     lambda: bool(remote(b, "compose", "--project-directory")), timeout=120)
        except AssertionError:
            pass  # the act never reached that host (a failed core step...): fault it all the same
        hit = time.monotonic()
        if fault == "ctrl-c":
            proc.send_signal(signal.SIGINT)
        else:
            inject[fault](b)
    out, err = proc.communicate(timeout=900)
    ended = time.monotonic()
    if os.environ.get("BENCH_SHOW"):
        print(f"--- {action} x {fault}: exit {proc.returncode}\n{out}{err}", flush=True)
    code = proc.returncode
    faulted = a if fault == "canary" else b
    verdict = truth(out, err, faulted, fault)
    if fault == "canary":  # and the others were not attempted
        results = out.rsplit("STATE / DETAIL", 1)[-1]
        others = [ln for ln in results.splitlines() if ln.startswith((b.name + " ", hosts[2].name + " "))]
        if verdict == "yes" and not all("not attempted" in ln for ln in others):
            verdict = "no: the others were acted on"
    heal(b)
    heal(a)
    state = running(b) if fault != "canary" else f"{running(b)} (2nd), {running(hosts[2])} (3rd)"
    if fault == "dockerd":  # a daemon restart stops every container, core/front too: apps.* refuse until core.up
        run_inv("core.up", inventory=inv, env=ENV, timeout=600)
    again = run_inv(*argv, *extra, inventory=inv, env=ENV, timeout=600)
    return [action, fault, str(code), f"{ended - started:.1f} s ({ended - hit:.1f} s after)", verdict, state,
            "yes" if again.returncode == 0 else f"no ({again.returncode})"]


def main(argv: list[str]) -> None:
    actions = [a for a in ACTIONS if a in argv] or list(ACTIONS)
    faults = [f for f in FAULTS if f in argv] or list(FAULTS)
    rows = []
    with Lab.start(3, prefix="aegirflt", wait=float(os.environ.get("AEGIR_LAB_WAIT", "900"))) as lab:
        hosts = list(lab.hosts)
        inv = lab.inventory_path
        for h in hosts:
            for path, text in PROJECTS.items():
                h.write(f"{path}/docker-compose.yml", text)
        for action in actions:
            for fault in faults:
                row = one(hosts, inv, action, fault)
                print(" | ".join(row), flush=True)
                rows.append(row)
    print()
    print("| action | fault | exit | time | row true? | 2nd host after | rerun converges? |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print(json.dumps(rows), file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
