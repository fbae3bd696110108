"""`Lab`: N fake hypervisors on this machine, started in seconds, ended by pid."""

from __future__ import annotations

import atexit
import contextlib
import os
import select
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from tests.lab import net, teardown
from tests.lab.host import Client, LabHost
from tests.lab.hostfiles import HostOptions, HostPaths, SrvKind, has_swanctl, write_host_files
from tests.lab.images import Image, busybox_image
from tests.lab.keys import keygen, known_hosts_lines, public_key
from tests.lab.plan import MAX_INDEX, LabNames, check_host_name, check_prefix
from tests.lab.procs import ProcId, netns_inode
from tests.lab.state import HostRecord, LabError, LabState, MachineLock, default_workdir, registered_labs
from tests.lab.tools import ensure_compose_plugin, missing_tools

HOSTINIT = Path(__file__).with_name("hostinit.py")
READY_TIMEOUT = 60.0


class Lab:
    """A running lab: hosts on a bridge, a client namespace, an inventory for aegir.

    Start it with `Lab.start`; it owns the machine's lab lock until `stop`.
    """

    def __init__(self, names: LabNames, workdir: Path, images: tuple[Image, ...], lock: MachineLock) -> None:
        self.prefix = names.prefix
        self.workdir = workdir
        self.names = names
        self.client = Client(self.names.client_netns)
        self.images = images
        self.hosts: list[LabHost] = []
        self._lock = lock
        self._inits: dict[str, subprocess.Popen[bytes]] = {}
        self._pending: list[HostRecord] = []
        self._stopped = False
        self.owner: int | None = None  # the pid that stops the lab at exit; None: left to the next start

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else f"{self.names.link4}, hosts {', '.join(h.name for h in self.hosts)}"
        return f"<Lab {self.prefix} in {self.workdir}: {state}>"

    # -- life cycle -------------------------------------------------------------

    @classmethod
    def start(cls, n: int = 3, *, prefix: str = "aegirlab", workdir: str | Path | None = None,
              variants: Mapping[str, HostOptions | Mapping[str, Any]] | None = None,
              wait: float = 600.0, stop_at_exit: bool = True) -> Lab:
        """Start hosts ``hyp1`` … ``hyp<n>`` (after ending any stale lab) and return the lab.

        variants: per host name, `HostOptions` or their keywords, e.g.
          ``{"hyp3": {"srv": "loop"}}``.
        wait: seconds to wait for a lab held by another live process to stop.
        stop_at_exit: stop the lab when this process exits (``up`` from the CLI says no).
        """
        prefix = check_prefix(prefix)
        workdir = Path(workdir or default_workdir(prefix)).resolve()
        if os.geteuid() != 0:
            raise LabError("the lab needs root (namespaces, mounts, loop devices)")
        if missing := missing_tools():
            raise LabError(f"the lab needs these commands: {', '.join(missing)}")
        lock = MachineLock()
        lock.acquire(wait)
        try:
            for stale_prefix, stale_dir in registered_labs().items():
                teardown.sweep(stale_prefix, stale_dir)
            teardown.sweep(prefix, workdir)
            ensure_compose_plugin()
            Path("/srv").mkdir(exist_ok=True)  # the mount point every host's /srv goes on
            workdir.mkdir(parents=True)
            names = LabNames(prefix, net.free_ipv4_link())
            lab = cls(names, workdir, (busybox_image(),), lock)
            keygen(lab.identity, f"operator@{prefix}")
            lab.authorized_keys.write_text(lab.identity.with_name("id_ed25519.pub").read_text())
            lab._save()
            net.lab_link(lab.names)
            options = {k: v if isinstance(v, HostOptions) else HostOptions(**v) for k, v in (variants or {}).items()}
            lab._add([(f"hyp{i}", i, options.get(f"hyp{i}", HostOptions())) for i in range(1, n + 1)])
        except BaseException:
            teardown.sweep(prefix, workdir)
            lock.release()
            raise
        if stop_at_exit:
            lab.owner = os.getpid()
            lab._save()
            atexit.register(lab.stop)
        return lab

    def stop(self) -> None:
        """End every process of the lab by pid and remove its netns, links, loops and workdir."""
        if self._stopped:
            return
        self._stopped = True
        atexit.unregister(self.stop)
        try:
            teardown.sweep(self.prefix, self.workdir)
        finally:
            for popen in self._inits.values():
                with contextlib.suppress(subprocess.TimeoutExpired):
                    popen.wait(timeout=5)
            self._lock.release()

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- hosts ----------------------------------------------------------------------

    def host(self, name: str) -> LabHost:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(f"no lab host {name!r}; hosts: {', '.join(h.name for h in self.hosts)}")

    def add_host(self, name: str | None = None, *, srv: SrvKind = "bind", docker: bool = True,
                 **options: Any) -> LabHost:
        """Start one more host (``hyp<next>`` unless named) and add it to the inventory."""
        index = max((h.addresses.index for h in self.hosts), default=0) + 1
        if index > MAX_INDEX:
            raise LabError(f"the lab's addressing plan has room for {MAX_INDEX} hosts")
        name = check_host_name(name or f"hyp{index}")
        if any(h.name == name for h in self.hosts):
            raise LabError(f"lab host {name!r} exists already")
        return self._add([(name, index, HostOptions(srv=srv, docker=docker, **options))])[0]

    def remove_host(self, host: LabHost | str) -> None:
        """Stop one host (by pid, like `stop`) and drop it from the inventory."""
        host = self.host(host) if isinstance(host, str) else host
        teardown.stop_host(self._record(host))
        net.remove_host_routes(self.names, host.addresses)
        self.hosts = [h for h in self.hosts if h.name != host.name]
        popen = self._inits.pop(host.name, None)
        if popen is not None:
            popen.wait(timeout=5)
        shutil.rmtree(host.paths.dir, ignore_errors=True)
        self._save()
        self._write_access_files()

    @contextlib.contextmanager
    def extra_host(self, name: str | None = None, *, srv: SrvKind = "bind", docker: bool = True,
                   **options: Any) -> Iterator[LabHost]:
        """A host for the duration of a ``with`` block: `add_host`, then `remove_host`."""
        host = self.add_host(name, srv=srv, docker=docker, **options)
        try:
            yield host
        finally:
            self.remove_host(host)

    # -- files for aegir ----------------------------------------------------------

    @property
    def identity(self) -> Path:
        """The operator's SSH private key (root on every host accepts it)."""
        return self.workdir / "id_ed25519"

    @property
    def authorized_keys(self) -> Path:
        return self.workdir / "authorized_keys"

    @property
    def known_hosts(self) -> Path:
        """Every host's key, for its admin IPv4 and IPv6."""
        return self.workdir / "known_hosts"

    @property
    def inventory_path(self) -> Path:
        """hosts.yml listing every host of the lab (rewritten when hosts come and go)."""
        return self.workdir / "hosts.yml"

    def write_inventory(self, path: str | Path | None = None, hosts: Sequence[LabHost | str] | None = None) -> Path:
        """Write an aegir inventory of `hosts` (default: all) to `path` (default: `inventory_path`)."""
        chosen = [self.host(h) if isinstance(h, str) else h for h in (self.hosts if hosts is None else hosts)]
        target = Path(path) if path is not None else self.inventory_path
        text = "# aegir lab inventory (generated by tests/lab; rewritten as hosts come and go)\n"
        text += yaml.safe_dump(self.inventory_data(chosen), sort_keys=False, default_flow_style=None)
        target.write_text(text)
        return target

    def inventory_data(self, hosts: Sequence[LabHost]) -> dict[str, Any]:
        """The inventory as a mapping (what `write_inventory` dumps)."""
        entries: dict[str, Any] = {}
        for h in hosts:
            a = h.addresses
            entry: dict[str, Any] = {"address": str(a.admin_ipv4)}
            if h.options.ssh_port != 22:
                entry["port"] = h.options.ssh_port
            entry |= {
                "groups": ["lab"],
                "srv": "/srv",
                "docker_start": shlex.join(h.docker_start),
                "admin_ipv4": str(a.admin_ipv4),
                "service_ipv4": [str(a.service_ipv4)],
                "ipv6_prefix": str(a.ipv6_prefix),
                "admin_ipv6": str(a.admin_ipv6),
                "service_ipv6": [str(a.service_ipv6)],
            }
            entries[h.name] = entry
        defaults: dict[str, Any] = {"user": "root", "known_hosts": str(self.known_hosts), "identity": str(self.identity)}
        if any(has_swanctl(h.options) for h in hosts):
            defaults["mesh"] = {"encap": True}  # kernel-libipsec sends ESP inside UDP (see hostfiles.charon_config)
        return {"defaults": defaults, "hosts": entries}

    # -- internals ------------------------------------------------------------------

    def _add(self, wanted: list[tuple[str, int, HostOptions]]) -> list[LabHost]:
        """Create, start and wait for hosts; load the images where Docker runs."""
        started: list[tuple[LabHost, int]] = []
        try:
            for name, index, opts in wanted:
                started.append(self._spawn(name, index, opts))
            self._wait_ready(started)
            started_hosts = [h for h, _ in started]
            with ThreadPoolExecutor(max_workers=len(started_hosts)) as pool:
                list(pool.map(LabHost.load_images, [h for h in started_hosts if h.options.docker_at_boot]))
        except BaseException:
            for record in self._pending:
                teardown.stop_host(record)
            raise
        finally:
            for _, fd in started:
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._pending = []
        hosts = [h for h, _ in started]
        self.hosts.extend(hosts)
        self._save()
        self._write_access_files()
        return hosts

    def _spawn(self, name: str, index: int, opts: HostOptions) -> tuple[LabHost, int]:
        """Lay out one host's files, wire it, and start its init; return it and its ready fd."""
        plan = self.names.host(name, index)
        paths = HostPaths(self.workdir / name)
        shutil.rmtree(paths.dir, ignore_errors=True)
        paths.dir.mkdir(parents=True)
        keygen(paths.host_key, f"root@{name}")
        loop_device = None
        record = HostRecord(name, index, plan.netns, None, plan.veth, plan.cgroup, str(paths.dir),
                            srv_image=str(paths.srv_image) if opts.srv == "loop" else None)
        self._pending.append(record)
        self._save()
        if opts.srv == "loop":
            with paths.srv_image.open("wb") as f:
                f.truncate(opts.srv_size)
            subprocess.run(["mkfs.ext4", "-q", "-F", "-L", f"srv-{name}", str(paths.srv_image)], check=True)
            loop_device = subprocess.run(["losetup", "--find", "--show", str(paths.srv_image)],
                                         check=True, capture_output=True, text=True).stdout.strip()
            self._pending[-1] = record = replace(record, loop_device=loop_device)
            self._save()
        write_host_files(plan, paths, opts, authorized_keys=self.authorized_keys, loop_device=loop_device)
        net.add_host_link(self.names, plan)
        self._pending[-1] = record = replace(record, netns_inode=netns_inode(f"/run/netns/{plan.netns}"))
        read_fd, write_fd = os.pipe()
        with paths.init_log.open("ab") as log:
            popen = subprocess.Popen(
                ["nsenter", f"--net=/run/netns/{plan.netns}",
                 "unshare", "--mount", "--uts", "--propagation", "private",
                 sys.executable, "-I", "-S", str(HOSTINIT), str(paths.spec), str(write_fd)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                pass_fds=(write_fd,), start_new_session=True,
            )
        os.close(write_fd)
        self._inits[name] = popen
        init = ProcId.of(popen.pid) or ProcId(popen.pid, 0)
        self._pending[-1] = replace(record, init=init)
        self._save()
        host = LabHost(plan, opts, paths, init, self.images, loop_device)
        return host, read_fd

    def _wait_ready(self, started: list[tuple[LabHost, int]]) -> None:
        """Read each init's ``ready``/``error: …`` line (the caller closes the fds); raise on failure."""
        waiting = {fd: host for host, fd in started}
        buffers = {fd: b"" for fd in waiting}
        deadline = time.monotonic() + READY_TIMEOUT
        errors = []
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                names = ", ".join(h.name for h in waiting.values())
                raise LabError(f"lab hosts not ready after {READY_TIMEOUT:.0f} s: {names}")
            ready, _, _ = select.select(list(waiting), [], [], left)
            for fd in ready:
                chunk = os.read(fd, 4096)
                buffers[fd] += chunk
                if chunk and b"\n" not in buffers[fd]:
                    continue
                host = waiting.pop(fd)
                line = buffers[fd].decode(errors="replace").strip()
                if not line.startswith("ready"):
                    log = host.paths.init_log.read_text(errors="replace")[-800:] if host.paths.init_log.exists() else ""
                    errors.append(f"{host.name}: {line or 'init died'}\n{log}")
        if errors:
            raise LabError("lab hosts failed to start:\n" + "\n".join(errors))

    def _record(self, host: LabHost) -> HostRecord:
        a = host.addresses
        return HostRecord(host.name, a.index, a.netns, netns_inode(f"/run/netns/{a.netns}"), a.veth, a.cgroup,
                          str(host.paths.dir), host.init, host.loop_device,
                          str(host.paths.srv_image) if host.options.srv == "loop" else None)

    def _save(self) -> None:
        hosts = tuple(self._record(h) for h in self.hosts) + tuple(self._pending)
        LabState(self.prefix, str(self.workdir), self.names.bridge, self.names.client_netns, self.owner, hosts,
                 str(self.names.link4)).save()

    def _write_access_files(self) -> None:
        lines = []
        for h in self.hosts:
            a = h.addresses
            lines += known_hosts_lines(public_key(h.paths.host_key), [a.admin_ipv4, a.admin_ipv6], h.options.ssh_port)
        self.known_hosts.write_text("".join(f"{line}\n" for line in lines))
        self.write_inventory()
