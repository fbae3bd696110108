"""Finding and ending the lab's processes by pid, never by name.

A lab host's processes are: its init (pid + start time recorded at spawn),
everything whose network namespace is the host's (sshd, dockerd, containerd,
shims, SSH sessions), their descendants, and every process in the host's
Docker cgroup (the containers, which live in namespaces of their own).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProcId:
    """A pid plus its start time (clock ticks since boot), so a reused pid is not mistaken for it."""

    pid: int
    start: int

    @classmethod
    def of(cls, pid: int) -> ProcId | None:
        start = start_time(pid)
        return None if start is None else cls(pid, start)

    def alive(self) -> bool:
        return start_time(self.pid) == self.start


def _stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state, ppid, …), or None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()


def start_time(pid: int) -> int | None:
    fields = _stat(pid)
    if fields is None or fields[0] == "Z":
        return None  # a zombie is as good as gone
    return int(fields[19])


def all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def netns_inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def pids_in_netns(inode: int) -> set[int]:
    """Processes whose network namespace is `inode` (what ``ip netns pids`` does)."""
    want, out = f"net:[{inode}]", set()
    for pid in all_pids():
        try:
            if os.readlink(f"/proc/{pid}/ns/net") == want:
                out.add(pid)
        except OSError:
            pass
    return out


def descendants(pids: Iterable[int]) -> set[int]:
    """`pids` and all their descendants."""
    children: dict[int, list[int]] = {}
    for pid in all_pids():
        fields = _stat(pid)
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(pid)
    out, todo = set(), list(pids)
    while todo:
        pid = todo.pop()
        if pid not in out:
            out.add(pid)
            todo.extend(children.get(pid, ()))
    return out


def cgroup_mounts() -> list[Path]:
    """Where every cgroup hierarchy (v1 and v2) is mounted."""
    mounts = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _src, target, fstype, *_ = line.split()
        if fstype in ("cgroup", "cgroup2"):
            mounts.append(Path(target))
    return mounts


def cgroup_dirs(name: str) -> list[Path]:
    """The top-level cgroup `name` in every mounted hierarchy (v1 and v2)."""
    return [top / name for top in cgroup_mounts() if (top / name).is_dir()]


def pids_in_cgroup(name: str) -> set[int]:
    out = set()
    for top in cgroup_dirs(name):
        for here, _dirs, files in os.walk(top):  # os.walk skips folders that vanish mid-walk
            if "cgroup.procs" in files:
                try:
                    out.update(int(p) for p in Path(here, "cgroup.procs").read_text().split())
                except OSError:
                    pass
    return out


def remove_cgroup(name: str) -> None:
    """rmdir the (emptied) cgroup `name` and its children, deepest first."""
    for top in cgroup_dirs(name):
        for here, _dirs, _files in os.walk(top, topdown=False):  # deepest first; vanished ones skipped
            _rmdir(Path(here))


def _rmdir(d: Path) -> None:
    try:
        d.rmdir()
    except OSError:
        pass


def signal_all(pids: Iterable[int], sig: signal.Signals) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def wait_gone(procs: Iterable[ProcId], timeout: float) -> list[ProcId]:
    """Wait until `procs` have exited; return those still alive at `timeout`."""
    left = list(procs)
    deadline = time.monotonic() + timeout
    while left:
        left = [p for p in left if p.alive()]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    return left


def kill_and_wait(pids: Iterable[int], timeout: float = 5.0) -> list[ProcId]:
    """SIGKILL `pids` (identified now) and wait for them; return survivors."""
    procs = [p for p in (ProcId.of(pid) for pid in set(pids)) if p is not None]
    signal_all((p.pid for p in procs), signal.SIGKILL)
    return wait_gone(procs, timeout)

