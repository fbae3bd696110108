"""The lab: real hypervisors on this machine, for aegir's end-to-end tests.

``Lab.start(n)`` makes hosts ``hyp1`` … ``hypN``, each a process tree in its
own network, mount and UTS namespaces: its own hostname, /srv, sshd (key auth,
lab known_hosts), dockerd (data-root /srv/docker, socket in its private /run),
addresses on a bridge (IPv4 + IPv6 documentation prefixes) and a client
namespace playing the Internet. ``lab.inventory_path`` is a hosts.yml for aegir.
Everything is ended by pid at ``lab.stop()`` (or by the next start after a
crash). By hand: ``python -m tests.lab up|status|down``.

See DESIGN.md, "The lab"; plan.py has the addressing plan.
"""

from tests.lab.host import Client, CommandFailed, LabHost
from tests.lab.hostfiles import HostOptions
from tests.lab.lab import Lab
from tests.lab.state import LabError
from tests.lab.waiting import eventually

__all__ = ["Client", "CommandFailed", "HostOptions", "Lab", "LabError", "LabHost", "eventually"]
