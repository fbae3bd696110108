"""A real authoritative server for tests and benches: Knot DNS (Debian's ``knot``) on a loopback port.

``with Knot.serving(dir, origins, serial) as knot:`` starts ``knotd`` on the zone
files ``dir/zones/<origin>.zone`` (as ``dns.zone --out dir/zones`` writes them),
waits until every zone is served with `serial`, and stops it by pid afterwards.
Zone transfers are allowed from 127.0.0.0/8, so ``dns.check`` can look for
unexpected names.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

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


def free_port() -> int:
    """A UDP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Knot:
    """A knotd serving the zone files in `dir`/zones on 127.0.0.1:`port`."""

    dir: Path
    port: int
    proc: subprocess.Popen[str]

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

    def wait_serial(self, zones: list[str], serial: int, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while any(self.serial(z) != serial for z in zones):
            assert self.proc.poll() is None, f"knotd exited: {self.proc.stderr.read() if self.proc.stderr else ''}"
            assert time.monotonic() < deadline, f"knotd does not serve serial {serial} of {zones}"
            time.sleep(0.05)

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

    @classmethod
    @contextlib.contextmanager
    def serving(cls, d: Path, origins: Sequence[str], serial: int) -> Iterator["Knot"]:
        port = free_port()
        zones = "\n".join(f"  - domain: {o}" for o in origins)
        (d / "knot.conf").write_text(KNOT_CONF.format(port=port, dir=d, zones=zones))
        proc = subprocess.Popen(["knotd", "-c", str(d / "knot.conf")], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        server = cls(d, port, proc)
        try:
            server.wait_serial(list(origins), serial)
            yield server
        finally:
            proc.terminate()
            proc.wait(timeout=10)
