"""Real authoritative servers for tests and benches, on a loopback port: Knot DNS (Debian's ``knot``) and
NSD (``nsd``); and the offline zone checkers of BIND and NSD (`checkzone`).

``with Knot.serving(dir, origins, serial) as knot:`` (or ``Nsd.serving``) starts the
server on the zone files ``dir/zones/<origin>.zone`` (as ``dns.zone --out dir/zones``
writes them), waits until every zone is served with its serial (one for all, or a
mapping origin -> serial), and stops it by pid afterwards. Zone transfers are
allowed from 127.0.0.0/8, so ``dns.check`` can look for unexpected names. Bookworm
has no ``kzonecheck``: a zone Knot refuses is a zone a started knotd never serves.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rdatatype

KNOT_CONF = """\
server:
    listen: 127.0.0.1@{port}
    rundir: {dir}
database:
    storage: {dir}/db
log:
  - target: stderr
    any: warning
acl:
  - id: transfer
    address: 127.0.0.0/8
    action: transfer
template:
  - id: default
    storage: {dir}/zones
    file: "%s.zone"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
    acl: transfer
zone:
{zones}
"""

NSD_CONF = """\
server:
  ip-address: 127.0.0.1@{port}
  port: {port}
  username: ""
  chroot: ""
  zonesdir: {dir}/zones
  pidfile: {dir}/nsd.pid
  database: ""
  xfrdfile: {dir}/xfrd.state
  xfrdir: {dir}
  zonelistfile: {dir}/zone.list
  server-count: 1
  do-ip6: no
  verbosity: 1
remote-control:
  control-enable: no
{zones}
"""

#: The offline checkers that refuse a zone their server would not load (exit status 1, the reason on stdout).
CHECKERS = {"bind": ["named-checkzone"], "nsd": ["nsd-checkzone"]}


def free_port() -> int:
    """A UDP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def checkzone(server: str, origin: str, path: Path) -> str | None:
    """None when `server`'s checker ("bind", "nsd") loads the zone file `path`, else what it says."""
    argv = CHECKERS[server]
    if shutil.which(argv[0]) is None:
        return f"{argv[0]} is not installed (scripts/test-all installs bind9-utils and nsd)"
    done = subprocess.run([*argv, origin.rstrip("."), str(path)], capture_output=True, text=True, timeout=30)
    return None if done.returncode == 0 else (done.stdout + done.stderr).strip() or f"exit {done.returncode}"


def zones_refused(folder: Path, origins: Sequence[str]) -> dict[str, str]:
    """(server origin) -> why, for every zone file of `folder` that BIND's or NSD's checker refuses."""
    out = {}
    for origin in origins:
        for server in CHECKERS:
            why = checkzone(server, origin, folder / f"{origin.rstrip('.')}.zone")
            if why is not None:
                out[f"{server} {origin}"] = why
    return out


@dataclass
class Served:
    """A server serving the zone files in `dir`/zones on 127.0.0.1:`port`."""

    dir: Path
    port: int
    proc: subprocess.Popen[str]
    program: ClassVar[str] = ""

    @property
    def server(self) -> str:
        return f"127.0.0.1:{self.port}"

    def serial(self, zone: str) -> int | None:
        try:
            answer = dns.query.udp(dns.message.make_query(zone, "SOA"), "127.0.0.1", port=self.port, timeout=0.5)
        except (dns.exception.Timeout, OSError):
            return None
        rrset = answer.get_rrset(answer.answer, dns.name.from_text(zone), 1, dns.rdatatype.SOA)
        return rrset[0].serial if rrset else None

    def wait_serial(self, zones: Sequence[str], serial: int | Mapping[str, int], timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        want = serial if isinstance(serial, Mapping) else dict.fromkeys(zones, serial)
        while any(self.serial(z) != want[z] for z in zones):
            assert self.proc.poll() is None, (f"{self.program} exited: "
                                              f"{self.proc.stderr.read() if self.proc.stderr else ''}")
            late = {z: self.serial(z) for z in zones if self.serial(z) != want[z]}
            assert time.monotonic() < deadline, f"{self.program} does not serve {want} (serves {late})"
            time.sleep(0.05)

    @classmethod
    def config(cls, d: Path, port: int, origins: Sequence[str]) -> Path:
        raise NotImplementedError

    @classmethod
    @contextlib.contextmanager
    def serving(cls, d: Path, origins: Sequence[str], serial: int | Mapping[str, int]) -> Iterator[Served]:
        if shutil.which(cls.program) is None:
            raise AssertionError(f"{cls.program} is not installed (scripts/test-all installs knot and nsd)")
        port = free_port()
        conf = cls.config(d, port, origins)
        argv = [cls.program, "-c", str(conf)] + (["-d"] if cls.program == "nsd" else [])
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        server = cls(d, port, proc)
        try:
            server.wait_serial(list(origins), serial)
            yield server
        finally:
            proc.terminate()
            proc.wait(timeout=10)


@dataclass
class Knot(Served):
    """A knotd; `edit` changes one served record."""

    program: ClassVar[str] = "knotd"

    @classmethod
    def config(cls, d: Path, port: int, origins: Sequence[str]) -> Path:
        zones = "\n".join(f"  - domain: {o}" for o in origins)
        (d / "knot.conf").write_text(KNOT_CONF.format(port=port, dir=d, zones=zones))
        return d / "knot.conf"

    def reload(self, zone: str) -> None:
        subprocess.run(["knotc", "-c", str(self.dir / "knot.conf"), "zone-reload", zone],
                       check=True, capture_output=True, text=True, timeout=10)

    def edit(self, zone: str, owner: str, old: str, new: str) -> None:
        """In the one line of `owner`, replace `old` by `new`; bump the serial, reload, wait until it is served."""
        path = self.dir / "zones" / f"{zone.rstrip('.')}.zone"
        lines = path.read_text().splitlines(keepends=True)
        hits = [i for i, ln in enumerate(lines) if ln.startswith(owner + " ")]
        assert len(hits) == 1 and old in lines[hits[0]], f"{owner} {old!r} is not one line of {path}"
        serial = self.serial(zone)
        assert serial is not None
        lines[hits[0]] = lines[hits[0]].replace(old, new)
        path.write_text("".join(lines).replace(f" {serial} ", f" {serial + 1} "))
        self.reload(zone)
        self.wait_serial([zone], serial + 1)


@dataclass
class Nsd(Served):
    """An nsd in the foreground (no chroot, no user switch, no database file)."""

    program: ClassVar[str] = "nsd"

    @classmethod
    def config(cls, d: Path, port: int, origins: Sequence[str]) -> Path:
        zones = "\n".join(f"zone:\n  name: {o}\n  zonefile: {o.rstrip('.')}.zone\n  provide-xfr: 127.0.0.0/8 NOKEY"
                          for o in origins)
        (d / "nsd.conf").write_text(NSD_CONF.format(port=port, dir=d, zones=zones))
        return d / "nsd.conf"
