"""What DNS reads from a host: the names its Compose projects publish (``x-aegir: dns:``, service labels).

`names_fact(host)` is one command (the projects' discovery, ``.env`` texts
included for ``${VAR}`` addresses) and a pure parser (`parse_names`);
`read_host` asks it with whether /srv is mounted in one round trip (`srv_checked`), and fails the
host when its /srv is not mounted: the folders under an unmounted /srv are the
root disk's, not the host's projects, and a zone without their names would
drop them from the fleet's DNS. The fleet is read by the tasks
(`aegir.tasks.base.fleet_read`), never here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aegir.compose.discovery import Discovery
from aegir.compose.status import discovery_fact, srv_checked
from aegir.dns import services
from aegir.dns.services import Read
from aegir.facts import Fact
from aegir.inventory import Host

if TYPE_CHECKING:  # pragma: no cover
    from aegir.host import HostContext


def parse_names(host: Host, disc: Discovery) -> Read:
    """The names `host`'s projects publish, and their mistakes (``file:line: sentence``, one per mistake)."""
    pubs: list[services.Publication] = []
    problems: list[str] = []
    for p in disc.projects:
        got = services.read(host, p, disc.envs.get(p.path))
        pubs += got.publications
        problems += got.problems
    return Read(tuple(pubs), tuple(problems))


def names_fact(host: Host) -> Fact[Read]:
    """What `host`'s projects publish: the discovery command, parsed by `parse_names` (never cached: .env)."""
    disc = discovery_fact(host.srv, with_env=True)
    return Fact("dns.names", disc.cmd, lambda r: parse_names(host, disc.parse(r)), disc.answers, cache=False)


def read_host(hc: HostContext) -> Read:
    """`hc`'s published names (one round trip); a host whose /srv is not mounted fails."""
    read: Read = srv_checked(hc, names_fact(hc.host))[0]
    return read
