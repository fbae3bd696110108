"""What a running lab recorded about itself, and the machine-wide lab lock.

``<workdir>/state.json`` lists every pid, netns, link, cgroup and loop device
the lab made, so ``stop()`` (or the next ``Lab.start`` after a crash) ends
exactly those. A registry (``$AEGIR_LAB_ROOT/labs/<prefix>`` -> workdir) lets
a new lab find stale ones in other workdirs.

The lab's addresses are fixed, so one lab runs per machine at a time: a
process holding a lab holds ``$AEGIR_LAB_ROOT/.lock`` (flock, released when
the process dies). A lab whose owner is gone (a crashed test run, or
``python -m tests.lab up`` which leaves the lab to whoever comes next) is stale.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

from tests.lab.procs import ProcId

LAB_ROOT = Path(os.environ.get("AEGIR_LAB_ROOT", "/tmp/aegir-lab"))
LOCK_FD_ENV = "AEGIR_LAB_LOCK_FD"


class LabError(RuntimeError):
    """The lab could not be started, changed or stopped."""


@dataclass(frozen=True)
class HostRecord:
    """One host as recorded in state.json."""

    name: str
    index: int
    netns: str
    netns_inode: int | None
    veth: str
    cgroup: str
    dir: str
    init: ProcId | None = None
    loop_device: str | None = None
    srv_image: str | None = None


@dataclass(frozen=True)
class LabState:
    """The whole lab as recorded in state.json."""

    prefix: str
    workdir: str
    bridge: str
    client_netns: str
    owner: int | None = None
    hosts: tuple[HostRecord, ...] = field(default=())
    link4: str = ""

    def save(self) -> None:
        path = Path(self.workdir) / "state.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.rename(path)
        registry = LAB_ROOT / "labs"
        registry.mkdir(parents=True, exist_ok=True)
        (registry / self.prefix).write_text(self.workdir + "\n")

    @classmethod
    def load(cls, workdir: Path) -> LabState | None:
        try:
            data = json.loads((workdir / "state.json").read_text())
            hosts = tuple(
                HostRecord(**{**h, "init": ProcId(**h["init"]) if h.get("init") else None}) for h in data.pop("hosts")
            )
            return cls(**data, hosts=hosts)
        except (OSError, ValueError, TypeError, KeyError):
            return None


def default_workdir(prefix: str) -> Path:
    return LAB_ROOT / prefix


def registered_labs() -> dict[str, Path]:
    """prefix -> workdir of every lab started on this machine and not yet stopped."""
    registry = LAB_ROOT / "labs"
    if not registry.is_dir():
        return {}
    return {p.name: Path(p.read_text().strip()) for p in registry.iterdir() if p.is_file()}


def unregister(prefix: str) -> None:
    try:
        (LAB_ROOT / "labs" / prefix).unlink()
    except FileNotFoundError:
        pass


class MachineLock:
    """The one-lab-per-machine flock, held by the process that owns the running lab.

    The kernel drops it when that process dies. Within the holder it is shared,
    not taken twice: a second `MachineLock` in the same process joins the held
    lock, and so does a child started with `lend`'s environment and fd (flock
    belongs to the open file, which the child then shares). That lets a test
    holding the lab run ``python -m tests.lab`` without racing other sessions.
    """

    _fd: ClassVar[int | None] = None  # the locked open file, while this process holds it
    _holders: ClassVar[int] = 0

    def __init__(self, path: Path = LAB_ROOT / ".lock") -> None:
        self.path = path
        self.held = False

    def acquire(self, wait: float) -> None:
        """Take (or join) the lock, waiting up to `wait` seconds for another lab's owner to finish."""
        cls = type(self)
        if cls._holders == 0:
            cls._fd = self._borrowed() or self._take(wait)
        cls._holders += 1
        self.held = True

    def release(self) -> None:
        cls = type(self)
        if not self.held or cls._fd is None:
            return
        self.held = False
        cls._holders -= 1
        if cls._holders == 0:
            os.close(cls._fd)  # never LOCK_UN: a lender's lock must outlive its borrower
            cls._fd = None

    def lend(self) -> tuple[dict[str, str], tuple[int, ...]]:
        """Environment and ``pass_fds`` for a child process that should join this lock."""
        fd = type(self)._fd
        if not self.held or fd is None:
            raise LabError("lend() needs the lock held")
        return {LOCK_FD_ENV: str(fd)}, (fd,)

    def _borrowed(self) -> int | None:
        try:
            fd = int(os.environ.get(LOCK_FD_ENV, ""))
            mine, lock = os.fstat(fd), os.stat(self.path)
            if (mine.st_dev, mine.st_ino) != (lock.st_dev, lock.st_ino):
                return None
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # succeeds only on the lender's open file
        except (ValueError, OSError):
            return None
        return fd

    def _take(self, wait: float) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        deadline, told = time.monotonic() + wait, False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise LabError(f"another lab is running on this machine (held by pid {holder}); "
                                   f"gave up after {wait:.0f} s") from None
                if not told:
                    print(f"aegir lab: waiting for the lab held by pid {holder} to stop…", file=sys.stderr)
                    told = True
                time.sleep(0.5)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd
