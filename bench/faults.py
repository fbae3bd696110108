"""Measurement: lifecycle actions under faults injected mid-run, one table (issue 19's matrix).

Run as root, by hand (not in the suite): ``.venv/bin/python bench/faults.py [ACTION|FAULT ...]`` (starts its
own 3-host lab under the machine's lab lock, waiting ``$AEGIR_LAB_WAIT`` seconds for it, and stops it).

Each host has core/front, apps/cloud (two services), apps/wiki, apps/blog, apps/chat and apps/slow (its
``compose up -d`` lasts about 6 s: a healthcheck gates its second service), and a ``fw:`` section (SSH from
the lab's bridge). The second host's /srv is an ext4 image of its own (the lab's "loop" variant, Docker's
data-root on it), so that filling it fills nothing of the machine's. For each action and each fault, the
hosts are first brought to the state the action starts from (everything down for the actions that start
things, up for the others; for fw.apply a container ``fwpub`` publishing a port not published before, so
that every host has a ruleset change to apply; for disk.prune 48 never-started containers to remove on
each host); the action runs over the three hosts with the default settings but ``timeouts.silent`` = 5 s;
the fault hits the second host as soon as the act is under way there: a Compose command of the act runs
(the lifecycle actions), the proof of this apply's candidate runs (fw.apply: after its state probe, the
write and the proof, before ``nft -f``), or Docker destroyed 3 of its containers to prune (disk.prune). The canary
fault instead stops the first host's sshd before a ``--serial 1`` run:

- ``sshd``: sshd stopped and every session's sshd killed (SIGKILL);
- ``dockerd``: dockerd and containerd killed (SIGKILL);
- ``drop``: every packet of the host dropped (nftables in its namespace), lifted after the run;
- ``full``: its /srv filled to the last block (fallocate, as root: the reserved blocks too), freed after
  the run;
- ``ctrl-c``: SIGINT to the ``inv`` process;
- ``canary``: the first host unreachable before the run, ``--serial 1``.

Per run: the exit code, the wall time (and after the fault), whether the faulted host's row is true
(not "cannot connect" once reached, no "internal error" nor traceback, the cause said: sshd "connection
lost", drop "no answer", full "No space left on device"; after Ctrl-C, exit 130 and the last lines name the
host's state; a run that ends 0 despite a dockerd or full fault is true when the state after is the
action's), its containers running after (fw.apply: and whether its live table is the last good one;
disk.prune: the junk left of 48), and whether the same command, once the fault is healed, converges
(exit 0).
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.helpers import remove_compose_containers, run_inv, start_inv  # noqa: E402
from tests.lab import Lab, LabHost  # noqa: E402
from tests.lab.plan import BRIDGE_IPV6  # noqa: E402
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
    "fw.apply": (("fw.apply",), True),
    "disk.prune": (("disk.prune", "--yes"), True),
    "apps.update": (("apps.update", NAMES, "--ignore-failures"), True),
}
FAULTS = ("sshd", "dockerd", "drop", "full", "ctrl-c", "canary")
ENV = {"AEGIR_TIMEOUTS_SILENT": "5", "AEGIR_TIMEOUTS_KEEPALIVE": "1"}
#: disk.prune's junk: never-started containers on each host, labelled ``aegirtest=junk``.
JUNK, LABEL = 48, "aegirtest"
#: The file that fills the second host's /srv (fault ``full``).
FILL = "/srv/.aegirlab-full"
#: A published port no run used before: each fw.apply run has a ruleset change to apply.
PORTS = itertools.count(8100)


# --------------------------------------------------------------------------- the lab and its faults


def inventory(lab: Lab) -> Path:
    """The lab's hosts, each with a ``fw:`` section letting SSH in from the lab's bridge (this machine)."""
    data = lab.inventory_data(list(lab.hosts))
    for entry in data["hosts"].values():
        entry["fw"] = {"admin_sources": [str(lab.names.bridge_ipv4), str(BRIDGE_IPV6)]}
    path = lab.workdir / "faults.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def fill_srv(host: LabHost) -> None:
    """The host's /srv full to its last block: a file allocated (not written) from the root namespace, as
    root (so ext4's reserved blocks go too), in shrinking chunks until ENOSPC."""
    with host.root(FILL).open("wb") as f:
        size = 0
        for chunk in (1 << 26, 1 << 20, 1 << 12):
            while True:
                try:
                    os.posix_fallocate(f.fileno(), size, chunk)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
                size += chunk


def heal_all(host: LabHost) -> None:
    """Every fault undone: /srv's room back first (dockerd may have to start again on it)."""
    host.root(FILL).unlink(missing_ok=True)
    heal(host)


def reset_docker(host: LabHost) -> None:
    """Docker's own state on the host made whole again: its Compose containers removed, and dockerd restarted
    without its network store (/srv full while Compose wrote it leaves endpoints that no container holds,
    and every later ``up`` of that project fails: "endpoint with name ... already exists")."""
    remove_compose_containers(host)
    host.stop_docker()
    host.root("/srv/docker/network/files/local-kv.db").unlink(missing_ok=True)
    host.start_docker()


def publish(host: LabHost, port: int) -> None:
    """A running container ``fwpub`` publishing `port` (replacing the previous one): a new exposure."""
    import docker.errors

    client = host.docker_client()
    try:
        try:
            client.api.remove_container("fwpub", force=True)
        except docker.errors.NotFound:
            pass
        client.containers.run(IMAGE, ["httpd", "-f", "-p", "80"], name="fwpub", ports={"80/tcp": port},
                              detach=True)
    finally:
        client.close()


def junk(host: LabHost) -> list[dict[str, Any]]:
    client = host.docker_client()
    try:
        return client.api.containers(all=True, filters={"label": f"{LABEL}=junk"})
    finally:
        client.close()


def plant(host: LabHost, run: int) -> None:
    """Exactly `JUNK` never-started containers to prune (those of an earlier run removed first)."""
    client = host.docker_client(timeout=120)
    try:
        for c in client.api.containers(all=True, filters={"label": f"{LABEL}=junk"}):
            client.api.remove_container(c["Id"], force=True)
        for i in range(JUNK):
            client.api.create_container(IMAGE, ["true"], name=f"junk{run}-{i}", labels={LABEL: "junk"})
    finally:
        client.close()


class Destroyed:
    """Counts the junk containers Docker destroys on a host from now on (its events, in a thread)."""

    def __init__(self, host: LabHost) -> None:
        self.count = 0
        self._client = host.docker_client(timeout=600)
        since = int(time.time()) - 1
        threading.Thread(target=self._watch, args=(since,), daemon=True).start()

    def _watch(self, since: int) -> None:
        try:
            for _ in self._client.events(since=since, decode=True, filters={
                    "type": "container", "event": "destroy", "label": f"{LABEL}=junk"}):
                self.count += 1
        except Exception:  # the stream ends with the daemon, or when closed
            return

    def close(self) -> None:
        self._client.close()


def prepare(hosts: list[LabHost], inv: Path, action: str, up: bool, run: int) -> None:
    """Every host healed; everything up (`up`), or only core up; fw.apply: a new port published on each
    host; disk.prune: `JUNK` containers to remove on each host."""
    for h in hosts:
        heal_all(h)
        h.load_images()  # a prune after a killed daemon may have removed the lab's image
        h.write("apps/slow/.env", "SLOW=6\n").chmod(0o600)
    if up:
        res = run_inv("apps.up", "--all", inventory=inv, timeout=300)
        if res.returncode != 0:  # an earlier run's damage (a full /srv: Docker's network store) must not be this one's
            for h in hosts:
                reset_docker(h)
            res = run_inv("core.up", inventory=inv, timeout=300)
            res = run_inv("apps.up", "--all", inventory=inv, timeout=300) if res.returncode == 0 else res
    else:
        for h in hosts:
            remove_compose_containers(h)
        res = run_inv("core.up", inventory=inv, timeout=300)
    if res.returncode != 0:
        raise SystemExit(f"bench: preparing failed:\n{res.stdout}{res.stderr}")
    if action == "fw.apply":
        port = next(PORTS)
        for h in hosts:
            publish(h, port)
    if action == "disk.prune":
        for h in hosts:
            plant(h, run)


def acting(action: str, host: LabHost) -> tuple[str, Callable[[], bool], Callable[[], None]]:
    """What shows `action`'s act under way on `host`: its description, the check, and what ends the watch."""
    if action == "fw.apply":  # past the state probe, the write and the proof: the longest step before `nft -f`
        return "the proof of the apply's candidate", lambda: bool(remote(host, "/candidate-", "unshare -n")), \
            lambda: None
    if action == "disk.prune":
        seen = Destroyed(host)
        return "3 of the junk containers destroyed", lambda: seen.count >= 3, seen.close
    return "a Compose command of the act", lambda: bool(remote(host, "compose", "--project-directory")), \
        lambda: None


# --------------------------------------------------------------------------- judging


def running(host: LabHost) -> str:
    rows = containers(host) if host.docker_running() else []
    return f"{sum(r['State'] == 'running' for r in rows)}/{len(rows)} running"


def state_after(action: str, host: LabHost, inv: Path) -> str:
    """The host's state after the run (healed): its Compose containers; fw.apply: what fw.status says of
    its live table; disk.prune: the junk left."""
    if action == "disk.prune":
        return f"{len(junk(host)) if host.docker_running() else '?'}/{JUNK} junk left, {running(host)}"
    if action == "fw.apply":
        res = run_inv("fw.status", "-H", host.name, "--format", "json", inventory=inv, env=ENV, timeout=120)
        try:
            [row] = json.loads(res.stdout)["hosts"]
            said = f"{row.get('live') or row.get('status')}, pending {row.get('pending')}"
        except (ValueError, KeyError):
            said = f"fw.status exit {res.returncode}"
        return f"fw.status: {said}, {running(host)}"
    return running(host)


def results(out: str) -> list[str]:
    """The lines of the last table printed (the results, not the plan shown before them)."""
    lines = out.splitlines()
    heads = [i for i, ln in enumerate(lines) if ln.startswith("HOST ")]
    return lines[heads[-1] + 1:] if heads else lines


def truth(out: str, err: str, code: int, host: LabHost, fault: str) -> str:
    """Whether the faulted host's rows say what happened (a short verdict)."""
    mine = [ln for ln in results(out) if ln.startswith(host.name + " ")]
    text = " ".join(mine)
    if "Traceback" in err or "internal error" in out + err:
        return "no: a traceback"
    if not mine:
        return "no: no row"
    # fw.apply's row may say it asked the host again what is live and could not connect: that is true
    claims = re.sub(r"did not answer again \([^)]*\)", "", text)
    if fault in ("sshd", "dockerd", "drop", "full") and ("UNREACHABLE" in text or "cannot connect" in claims):
        return "no: says cannot connect"
    if fault == "canary":
        return "yes" if "UNREACHABLE" in text else f"no: {text[-120:]}"
    if fault == "ctrl-c":  # the row says what the host did (done, interrupted, not started), the last lines agree
        said = [ln for ln in err.splitlines() if ln.startswith("aegir: interrupted (Ctrl-C): ")]
        return "yes" if code == 130 and said and host.name in said[0] else f"unclear: {text[-120:]}"
    if code == 0:  # the fault was not in the action's way (fw.apply needs no Docker past its plan...)
        return "yes: done" if fault in ("dockerd", "full") else f"no: done despite {fault}? {text[-120:]}"
    if fault == "full":  # each failed row of the host says why
        failed = [ln for ln in mine if " failed " in ln or "FAILED" in ln] or mine
        said = sum("no space left on device" in ln.lower() for ln in failed)
        return ("yes" if said == len(failed) else f"partly: {said} of {len(failed)} failed rows say no space left"
                if said else f"no: the cause is not said: {text[-120:]}")
    causes = {"sshd": ("connection lost",), "dockerd": ("Docker", "daemon", "exited"), "drop": ("no answer",)}
    return "yes" if any(c in text for c in causes[fault]) else f"unclear: {text[-120:]}"


# --------------------------------------------------------------------------- one run


def one(hosts: list[LabHost], inv: Path, action: str, fault: str, run: int) -> list[str]:
    argv, up = ACTIONS[action]
    a, b, c = hosts
    prepare(hosts, inv, action, up, run)
    extra = ("--serial", "1") if fault == "canary" else ()
    if fault == "canary":
        a.stop_sshd()
    what, under_way, unwatch = acting(action, b) if fault != "canary" else ("", lambda: True, lambda: None)
    started = time.monotonic()
    proc = start_inv(*argv, *extra, inventory=inv, env=ENV)
    hit = started
    if fault != "canary":
        inject: dict[str, Callable[[LabHost], None]] = {"sshd": kill_sshd, "dockerd": kill_dockerd,
                                                         "drop": drop_packets, "full": fill_srv}
        try:
            wait_for(f"{what} on the second host", under_way, timeout=120)
        except AssertionError:
            print(f"bench: {action} x {fault}: never saw {what} on {b.name}; faulting it all the same", flush=True)
        hit = time.monotonic()
        if fault == "ctrl-c":
            proc.send_signal(signal.SIGINT)
        else:
            inject[fault](b)
    try:
        out, err = proc.communicate(timeout=900)
    finally:
        unwatch()
    ended = time.monotonic()
    if os.environ.get("BENCH_SHOW"):
        print(f"--- {action} x {fault}: exit {proc.returncode}\n{out}{err}", flush=True)
    code = proc.returncode
    faulted = a if fault == "canary" else b
    verdict = truth(out, err, code, faulted, fault)
    if fault == "canary":  # and the others were not attempted
        others = [ln for ln in results(out) if ln.startswith((b.name + " ", c.name + " "))]
        if verdict == "yes" and not all("not attempted" in ln for ln in others):
            verdict = "no: the others were acted on"
    heal_all(b)
    heal_all(a)
    state = (state_after(action, b, inv) if fault != "canary"
             else f"{state_after(action, b, inv)} (2nd), {state_after(action, c, inv)} (3rd)")
    if fault == "dockerd":  # a daemon restart stops every container, core/front too: apps.* refuse until core.up
        run_inv("core.up", inventory=inv, env=ENV, timeout=600)
    again = run_inv(*argv, *extra, inventory=inv, env=ENV, timeout=600)
    if os.environ.get("BENCH_SHOW"):
        print(f"--- rerun: exit {again.returncode}\n{again.stdout}{again.stderr}", flush=True)
    return [action, fault, str(code), f"{ended - started:.1f} s ({ended - hit:.1f} s after)", verdict, state,
            "yes" if again.returncode == 0 else f"no ({again.returncode})"]


def main(argv: list[str]) -> None:
    actions = [a for a in ACTIONS if a in argv] or list(ACTIONS)
    faults = [f for f in FAULTS if f in argv] or list(FAULTS)
    rows = []
    # the second host's /srv on an image of its own (sparse, 1 GiB): `full` fills it, not the machine's disk
    variants = {"hyp2": {"srv": "loop", "srv_size": 1 << 30}}
    with Lab.start(3, prefix="aegirflt", variants=variants,
                   wait=float(os.environ.get("AEGIR_LAB_WAIT", "900"))) as lab:
        hosts = list(lab.hosts)
        hosts[1].run(["mount", "/srv"])
        hosts[1].start_docker()
        inv = inventory(lab)
        for h in hosts:
            for path, text in PROJECTS.items():
                h.write(f"{path}/docker-compose.yml", text)
        for run, (action, fault) in enumerate(itertools.product(actions, faults)):
            row = one(hosts, inv, action, fault, run)
            print(" | ".join(row), flush=True)
            rows.append(row)
    print()
    print("| action | fault | exit | time | row true? | faulted host after | rerun converges? |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print(json.dumps(rows), file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
