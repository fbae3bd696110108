"""Benchmark: dns.check asks its queries in parallel.

Run as root or not (no lab needed): ``.venv/bin/python bench/dns_check.py``. Needs
``knotd`` (Debian's knot). Builds the plan of a 12-host fleet publishing 60
projects (hundreds of record sets), serves it with a real Knot DNS on a loopback
port, and times `aegir.dns.check.check` with its default worker pool against one
worker (the query-at-a-time loop it replaces), median of `REPEAT` runs each:

1. straight to Knot on loopback (well under a millisecond of network: a floor);
2. through a UDP relay that holds each answer `DELAY` seconds, standing for a
   server 10 ms away (this kernel has no netem to delay the link itself).
   Zone transfers (TCP) are not relayed there: the check notes them refused.
"""

from __future__ import annotations

import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aegir import inventory  # noqa: E402
from aegir.dns import check, plan, zonefile  # noqa: E402
from aegir.dns import settings as dnssettings  # noqa: E402
from aegir.dns.services import Name, Publication, Srv  # noqa: E402
from bench.common import median_seconds  # noqa: E402
from tests.knot import Knot  # noqa: E402

REPEAT = 3
DELAY = 0.010
HOSTS = 12
PROJECTS = 60


def fleet() -> plan.Plan:
    lines = ["defaults:", "  dns: {service_domain: tedomum.in, cname_domain: tedomum.net, rest_domain: tedomum.org,",
             "        nameservers: [hyp1.tedomum.org]}",
             "hosts:"]
    for i in range(1, HOSTS + 1):
        lines += [f"  hyp{i}:", f"    admin_ipv4: 198.51.100.{i}", f"    service_ipv4: [198.51.100.{100 + i}]",
                  f"    ipv6_prefix: 2001:db8:0:{i:x}00::/56", f"    admin_ipv6: 2001:db8:0:{i:x}00::1",
                  f"    service_ipv6: ['2001:db8:0:{i:x}00::11']"]
    inv = inventory.parse("\n".join(lines) + "\n")
    pubs = [Publication(f"hyp{1 + p % HOSTS}", f"apps/p{p}", 0,
                        (Name(f"app{p}"), Name(f"www.app{p}"), Name(f"mx{p}", cname=False, mx=((f"app{p}", 10),)),
                         Name(f"chat{p}", srv=(Srv(f"_xmpp-client._tcp.app{p}", 5222),))), f"p{p}")
            for p in range(PROJECTS)]
    return plan.build(inv.hosts, dnssettings.for_inventory(inv), pubs, 1)


@contextmanager
def delayed(port: int) -> Iterator[int]:
    """A UDP relay to 127.0.0.1:`port` answering `DELAY` seconds late; yields its own port."""
    front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    front.bind(("127.0.0.1", 0))
    front.settimeout(0.2)
    stop = threading.Event()

    def relay(data: bytes, client: tuple[str, int]) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as up:
            up.settimeout(2)
            up.sendto(data, ("127.0.0.1", port))
            answer = up.recv(65535)
        time.sleep(DELAY)
        front.sendto(answer, client)

    def loop() -> None:
        while not stop.is_set():
            try:
                data, client = front.recvfrom(65535)
            except TimeoutError:
                continue
            threading.Thread(target=relay, args=(data, client), daemon=True).start()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield front.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        front.close()


def timed(server: check.Server, p: plan.Plan, workers: int) -> float:
    def once() -> None:
        result = check.check(server, p, workers=workers)
        assert not result.differences, result.differences[:3]

    return median_seconds(once, REPEAT)


def main() -> None:
    p = fleet()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "zones").mkdir()
        for z in p.zones:
            (d / "zones" / zonefile.file_name(z.origin)).write_text(zonefile.render(z))
        with Knot.serving(d, [z.origin for z in p.zones], serial=1) as knot:
            server = check.parse_server(knot.server)
            sets = len(check.expected(p))
            timed(server, p, check.WORKERS)  # warm up
            parallel = timed(server, p, check.WORKERS)
            serial = timed(server, p, 1)
            with delayed(knot.port) as port:
                far = check.Server("127.0.0.1", port)
                far_parallel = timed(far, p, check.WORKERS)
                far_serial = timed(far, p, 1)
    print(f"dns.check of {sets} record sets in {len(p.zones)} zones against Knot, median of {REPEAT}")
    for what, par, ser in (("loopback", parallel, serial), (f"answers {DELAY * 1000:.0f} ms late", far_parallel,
                                                             far_serial)):
        print(f"  {what}: {check.WORKERS} workers {par * 1000:.0f} ms, 1 worker {ser * 1000:.0f} ms, "
              f"ratio serial/parallel {ser / par:.2f}")


if __name__ == "__main__":
    main()
