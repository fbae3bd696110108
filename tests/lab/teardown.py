"""Ending a lab (or one host of it) by pid, and proving nothing is left.

Order per host: kill the containers (the host's Docker cgroup), stop dockerd
with SIGTERM (so it shuts down cleanly), then SIGKILL whatever still runs in
the host's netns plus the init and their descendants, remove the cgroup, the
netns, the veth and the loop device. The same code ends a crashed lab found
from its state.json, and anything named ``<prefix>-*`` that the state missed.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.lab import net, procs
from tests.lab.plan import LabNames
from tests.lab.state import HostRecord, LabState, unregister


def stop_host(rec: HostRecord, *, docker_grace: float = 10.0) -> None:
    """End every process of host `rec` and remove its netns, link, cgroup and loop device."""
    inode = rec.netns_inode or procs.netns_inode(f"/run/netns/{rec.netns}")
    dockerd = _dockerd(rec, inode)
    if dockerd is not None:  # a clean daemon shutdown; its containers are killed meanwhile
        procs.signal_all([dockerd.pid], signal.SIGTERM)
        deadline = time.monotonic() + docker_grace
        while dockerd.alive() and time.monotonic() < deadline:
            procs.signal_all(procs.pids_in_cgroup(rec.cgroup), signal.SIGKILL)
            time.sleep(0.05)
    victims = set(procs.pids_in_netns(inode)) if inode else set()
    if rec.init is not None and rec.init.alive():
        victims.add(rec.init.pid)
    victims |= procs.pids_in_cgroup(rec.cgroup)
    left = procs.kill_and_wait(procs.descendants(victims))
    if left:
        raise RuntimeError(f"lab host {rec.name}: pids {[p.pid for p in left]} survived SIGKILL")
    procs.remove_cgroup(rec.cgroup)
    _quiet(["ip", "netns", "del", rec.netns])
    if rec.veth:
        _quiet(["ip", "link", "del", rec.veth])
    if rec.loop_device:
        detach_loops({rec.loop_device: rec.srv_image})


def stop_lab(state: LabState) -> None:
    """End all hosts of `state` (in parallel), then the client netns and the bridge."""
    with ThreadPoolExecutor(max_workers=max(1, len(state.hosts))) as pool:
        list(pool.map(stop_host, state.hosts))
    client_inode = procs.netns_inode(f"/run/netns/{state.client_netns}")
    if client_inode:
        procs.kill_and_wait(procs.descendants(procs.pids_in_netns(client_inode)))
    _quiet(["ip", "netns", "del", state.client_netns])
    _quiet(["ip", "link", "del", state.bridge])


def sweep(prefix: str, workdir: Path, *, remove_workdir: bool = True) -> None:
    """End the lab `prefix` whatever its state: from state.json, then by name."""
    names = LabNames(prefix)
    state = LabState.load(workdir) or LabState(prefix, str(workdir), names.bridge, names.client_netns)
    known = {h.netns for h in state.hosts}
    strays = [
        HostRecord(name=ns.removeprefix(f"{prefix}-"), index=0, netns=ns, netns_inode=None, veth="", cgroup=ns,
                   dir=str(workdir / ns.removeprefix(f"{prefix}-")))
        for ns in net.netns_named(prefix) if ns not in known and ns != names.client_netns
    ]
    strays += [
        HostRecord(name=cg, index=0, netns=cg, netns_inode=None, veth="", cgroup=cg, dir="")
        for cg in _cgroups_named(prefix) if cg not in known and cg not in {s.cgroup for s in strays}
    ]
    stop_lab(LabState(prefix, str(workdir), names.bridge, names.client_netns, hosts=state.hosts + tuple(strays)))
    for link in net.links_named(prefix):
        _quiet(["ip", "link", "del", link])
    detach_loops({dev: back for dev, back in loop_devices().items() if _under(back, workdir)})
    unregister(prefix)
    if remove_workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        (workdir / "state.json").unlink(missing_ok=True)


def leftovers(prefix: str, workdir: Path) -> list[str]:
    """Everything of lab `prefix` still on the machine (empty when torn down cleanly)."""
    found = [f"netns {n}" for n in net.netns_named(prefix)]
    found += [f"link {n}" for n in net.links_named(prefix)]
    found += [f"loop {d} ({b})" for d, b in loop_devices().items() if _under(b, workdir)]
    found += [f"cgroup {c}" for c in _cgroups_named(prefix)]
    return found


def loop_devices() -> dict[str, str]:
    """Attached loop devices -> their backing file."""
    out = subprocess.run(["losetup", "--list", "--json", "--output", "NAME,BACK-FILE"],
                         capture_output=True, text=True).stdout
    if not out.strip():
        return {}
    return {d["name"]: (d.get("back-file") or "").removesuffix(" (deleted)")
            for d in json.loads(out).get("loopdevices", [])}


def detach_loops(devices: dict[str, str | None], timeout: float = 5.0) -> None:
    """Detach `devices` (checking each still backs the recorded file) and wait until released.

    A device still mounted in a dying mount namespace is detached lazily
    (autoclear), so this polls until the kernel lets go.
    """
    current = loop_devices()
    mine = [d for d, back in devices.items() if d in current and (back is None or current[d] == back)]
    for dev in mine:
        _quiet(["losetup", "-d", dev])
    deadline = time.monotonic() + timeout
    while mine and time.monotonic() < deadline:
        current = loop_devices()
        mine = [d for d in mine if d in current and current[d] == devices[d]]
        if mine:
            time.sleep(0.05)
    if mine:
        raise RuntimeError(f"loop devices still attached after {timeout:.0f} s: {', '.join(mine)}")


def _dockerd(rec: HostRecord, inode: int | None) -> procs.ProcId | None:
    """The host's dockerd from its pidfile, if that pid really is in the host's netns."""
    if not rec.dir:
        return None
    try:
        pid = int((Path(rec.dir) / "docker.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    if inode is None or pid not in procs.pids_in_netns(inode):
        return None
    return procs.ProcId.of(pid)


def _cgroups_named(prefix: str) -> list[str]:
    out: set[str] = set()
    for top in procs.cgroup_mounts():
        try:
            out.update(p.name for p in top.iterdir() if p.is_dir() and p.name.startswith(f"{prefix}-"))
        except OSError:
            pass
    return sorted(out)


def _under(path: str | None, directory: Path) -> bool:
    return bool(path) and Path(path).is_relative_to(directory)


def _quiet(argv: list[str]) -> None:
    subprocess.run(argv, capture_output=True)
