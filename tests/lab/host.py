"""A running lab host (and the client namespace), as tests use them.

Commands run *inside* a host through ``nsenter`` into its init's network,
mount and UTS namespaces (and its root and cwd, ready for a chroot variant);
Docker is reached from the root namespace through the init's view of the
host's private /run: ``unix:///proc/<pid>/root/run/docker.sock``.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tests.lab.hostfiles import HostOptions, HostPaths
from tests.lab.images import Image
from tests.lab.plan import HostPlan
from tests.lab.procs import ProcId
from tests.lab.state import LabError

if TYPE_CHECKING:
    import docker

_CHUNK = 1 << 20


class CommandFailed(subprocess.CalledProcessError):
    """A command in a lab namespace exited non-zero; says where, what, and stderr's tail."""

    def __init__(self, where: str, done: subprocess.CompletedProcess[str]) -> None:
        super().__init__(done.returncode, done.args, done.stdout, done.stderr)
        self.where = where

    def __str__(self) -> str:
        tail = (self.stderr or self.stdout or "").strip()[-600:]
        return f"{self.where}: {shlex.join(self.cmd[self.cmd.index('--') + 1:])} exited {self.returncode}: {tail}"


def run_entered(command: Sequence[str], where: str, *, check: bool, input: str | None,
                timeout: float) -> subprocess.CompletedProcess[str]:
    """Run `command` (an ``nsenter … -- argv`` line) and capture its output."""
    done = subprocess.run(command, input=input, capture_output=True, text=True, timeout=timeout,
                          stdin=None if input is not None else subprocess.DEVNULL)
    if check and done.returncode != 0:
        raise CommandFailed(where, done)
    return done


@dataclass(frozen=True)
class Client:
    """The client namespace: the Internet, as seen by the lab's hosts."""

    netns: str

    def command(self, argv: Sequence[str]) -> list[str]:
        """`argv` entering the client namespace: for a process `run` does not wait for (Popen)."""
        return ["nsenter", f"--net=/run/netns/{self.netns}", "--", *argv]

    def run(self, argv: Sequence[str], check: bool = True, input: str | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run `argv` in the client namespace; raise `CommandFailed` if it fails and `check`."""
        return run_entered(self.command(argv), f"client {self.netns}", check=check, input=input, timeout=timeout)


@dataclass(frozen=True)
class LabHost:
    """One fake hypervisor: its names and addresses, its init, its files."""

    addresses: HostPlan
    options: HostOptions
    paths: HostPaths
    init: ProcId
    images: tuple[Image, ...] = ()
    loop_device: str | None = None

    @property
    def name(self) -> str:
        return self.addresses.name

    @property
    def pid(self) -> int:
        """The host's init: every namespace of the host is reachable through it."""
        return self.init.pid

    @property
    def srv_dir(self) -> Path:
        """Where /srv's data comes from: the bound folder, or the ext4 image (variant "loop")."""
        return self.paths.srv_dir if self.options.srv == "bind" else self.paths.srv_image

    @property
    def docker_start(self) -> tuple[str, ...]:
        """The inventory's ``docker_start`` for this host."""
        return (str(self.paths.bin / "start-docker"),)

    @property
    def docker_url(self) -> str:
        return f"unix:///proc/{self.pid}/root/run/docker.sock"

    def root(self, path: str = "/") -> Path:
        """`path` as the host sees it, from the root namespace (``/proc/<pid>/root/...``)."""
        return Path(f"/proc/{self.pid}/root") / path.lstrip("/")

    def command(self, argv: Sequence[str]) -> list[str]:
        """`argv` entering the host (network, mount, UTS, root, cwd of its init): for a Popen."""
        return ["nsenter", "-t", str(self.pid), "-n", "-m", "-u", "-r", "-w", "--", *argv]

    def run(self, argv: Sequence[str], check: bool = True, input: str | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run `argv` inside the host; raise `CommandFailed` if it fails and `check`."""
        return run_entered(self.command(argv), f"lab host {self.name}", check=check, input=input, timeout=timeout)

    def docker_client(self, timeout: int = 30) -> docker.DockerClient:
        """A Docker SDK client on this host's dockerd (from the root namespace)."""
        import docker

        return docker.DockerClient(base_url=self.docker_url, timeout=timeout)

    def start_docker(self) -> None:
        """Start dockerd as the inventory's docker_start would, then load the lab images it lacks."""
        self.run(self.docker_start, timeout=40)
        self.load_images()

    def stop_docker(self) -> None:
        """Stop dockerd (its containers stop with it); with start_docker, a daemon restart."""
        self.run([str(self.paths.bin / "stop-docker")], timeout=40)

    def docker_running(self) -> bool:
        return self.run(["docker", "version"], check=False).returncode == 0

    def start_charon(self, sources: Sequence[str] = ()) -> None:
        """Start strongSwan's charon (kernel-libipsec: the lab's kernel has no ESP) and load /etc/swanctl.

        `sources`: addresses put on ``lo`` first. kernel-libipsec routes each remote network into its TUN
        device with a source address taken from the local traffic selector, and fails the child SA when
        one local network holds no address of the host (the kernel's own IPsec needs no route): give it
        one address in each network the host's tunnels carry.
        """
        for a in sources:
            self.run(["ip", "-6", "addr", "replace", f"{a}/128", "dev", "lo"])
        self.run([str(self.paths.bin / "start-charon")], timeout=30)

    def stop_charon(self) -> None:
        self.run([str(self.paths.bin / "stop-charon")], timeout=40)

    def start_sshd(self) -> None:
        self.run([str(self.paths.bin / "start-sshd")])

    def stop_sshd(self) -> None:
        self.run([str(self.paths.bin / "stop-sshd")])

    def load_images(self) -> None:
        """``docker load`` the lab's images this host's dockerd does not have yet."""
        import docker

        client = self.docker_client()
        try:
            for image in self.images:
                try:
                    client.images.get(image.tag)
                except docker.errors.ImageNotFound:
                    client.images.load(image.tarball.read_bytes())
        finally:
            client.close()

    def srv_mounted(self) -> bool:
        """Whether something is mounted on the host's /srv (its mount table, not a guess by device)."""
        mountinfo = Path(f"/proc/{self.pid}/mountinfo").read_text()
        return any(line.split()[4] == "/srv" for line in mountinfo.splitlines())

    def write(self, path_in_srv: str, content: bytes | str | int) -> Path:
        """Write a file under the host's /srv, which must be mounted; an int writes that many real bytes.

        Returns the path as seen from the root namespace.
        """
        if not self.srv_mounted():  # else the write would land in this machine's own /srv
            raise LabError(f"/srv is not mounted on lab host {self.name}; mount it first")
        target = self.root("/srv") / path_in_srv.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, int):
            with target.open("wb") as f:
                left = content
                while left > 0:
                    left -= f.write(b"\0" * min(left, _CHUNK))
        else:
            target.write_bytes(content.encode() if isinstance(content, str) else content)
        return target
