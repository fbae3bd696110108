"""Real SSH connections to a candidate ruleset: the kernel's answer, in a scratch network namespace.

`SCRIPT` is a Python program sent as a command argument (data, never built
from host input) and run by the host's ``python3`` inside the scratch network
namespace where `nft.prove_cmd` loaded the whole ruleset that would be live (but the
container elements the model's own check accepts, which no SSH packet to an admin
address can match: `aegir.fw.plan.proof_text`):

- a veth pair joins it to a second, nested namespace playing the operator;
- the admin addresses go on the near end, the operator's source addresses on
  the far one; a listener answers on the SSH port;
- from every source address and several source ports, a TCP connection to
  every admin address must complete and echo a byte (SYN, SYN-ACK through the
  output hook, data both ways: new and established).

It prints one JSON list of ``[source, source port, destination, outcome]``.
`sources` picks the operator addresses to try; `problems` reads the answer.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping, Sequence
from typing import Any

#: Source ports tried from each source address: the kernel's pick, a low one, a high one.
SOURCE_PORTS = (0, 1022, 61000)
#: Operator addresses tried for a family with no admin_sources (SSH from anywhere).
ANYWHERE = {4: ("203.0.113.77", "198.18.7.7", "100.64.9.9"),
            6: ("2001:db8:ffff:fffe::77", "2001:db8:abcd::1", "fd00:9::9")}

SCRIPT = r'''
import json, os, socket, subprocess, sys, threading, time
port, admins, sources, sports = int(sys.argv[1]), sys.argv[2].split(), sys.argv[3].split(), sys.argv[4].split()
def sh(*a):
    subprocess.run(a, check=True, capture_output=True, timeout=10)
def plen(a):
    return "/128" if ":" in a else "/32"
sh("ip", "link", "set", "lo", "up")
sh("ip", "link", "add", "aegirk0", "type", "veth", "peer", "name", "aegirk1")
child = subprocess.Popen(["unshare", "-n", "sleep", "60"])
try:
    mine = os.readlink("/proc/self/ns/net")
    for _ in range(400):
        try:
            if os.readlink("/proc/%d/ns/net" % child.pid) != mine:
                break
        except OSError:
            pass
        time.sleep(0.005)
    def inside(*a):
        sh("nsenter", "-t", str(child.pid), "-n", *a)
    sh("ip", "link", "set", "aegirk1", "netns", str(child.pid))
    sh("ip", "link", "set", "aegirk0", "up")
    inside("ip", "link", "set", "lo", "up")
    inside("ip", "link", "set", "aegirk1", "up")
    for a in admins:
        sh("ip", "addr", "add", a + plen(a), "dev", "aegirk0", *(["nodad"] if ":" in a else []))
    for s in sources:
        inside("ip", "addr", "add", s + plen(s), "dev", "aegirk1", *(["nodad"] if ":" in s else []))
        sh("ip", "route", "add", s + plen(s), "dev", "aegirk0")
    inside("ip", "route", "add", "default", "dev", "aegirk1")
    inside("ip", "-6", "route", "add", "default", "dev", "aegirk1")
    srv = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("::", port))
    srv.listen(128)
    def serve():
        while True:
            conn, _ = srv.accept()
            try:
                conn.settimeout(2)
                if conn.recv(1):
                    conn.sendall(b"k")
            except OSError:
                pass
            conn.close()
    threading.Thread(target=serve, daemon=True).start()
    probes = [[s, int(p), a] for s in sources for a in admins if (":" in s) == (":" in a) for p in sports]
    client = r"""
import json, socket, sys, threading
port, probes, out = int(sys.argv[1]), json.loads(sys.argv[2]), []
def one(src, sport, dst):
    fam = socket.AF_INET6 if ":" in dst else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.settimeout(2)
    try:
        s.bind((src, sport))
        s.connect((dst, port))
        s.sendall(b"x")
        got = s.recv(1)
        out.append([src, s.getsockname()[1], dst, "ok" if got == b"k" else "closed"])
    except socket.timeout:
        out.append([src, sport, dst, "dropped"])
    except ConnectionRefusedError:
        out.append([src, sport, dst, "refused"])
    except OSError as exc:
        out.append([src, sport, dst, "error: %s" % exc])
    finally:
        s.close()
threads = [threading.Thread(target=one, args=p) for p in probes]
[t.start() for t in threads]
[t.join() for t in threads]
print(json.dumps(out))
"""
    done = subprocess.run(["nsenter", "-t", str(child.pid), "-n", sys.executable, "-c", client, str(port),
                           json.dumps(probes)], capture_output=True, text=True, timeout=20)
    sys.stdout.write(done.stdout if done.returncode == 0 else json.dumps([["", 0, "", "error: " + done.stderr[-300:]]]))
finally:
    child.kill()
'''


def sources(admin_sources: Mapping[int, Sequence[Any]], admin: Mapping[int, Sequence[Any]]) -> list[str]:
    """Operator addresses to connect from: the first and last address of each admin_sources network
    (at most three networks a family), or three unrelated addresses when anyone may connect."""
    taken = {str(a) for v in (4, 6) for a in admin.get(v) or ()}
    out: list[str] = []
    for v in (4, 6):
        nets = list(admin_sources.get(v) or ())[:3]
        picks = [str(x) for n in nets for x in (_first(n), _last(n))] if nets else list(ANYWHERE[v])
        out += [p for p in dict.fromkeys(picks) if p not in taken and not ipaddress.ip_address(p).is_loopback]
    return out


def _first(net: Any) -> Any:
    return next(iter(net.hosts()), net.network_address)


def _last(net: Any) -> Any:
    return net.broadcast_address - 1 if net.num_addresses > 2 else net.network_address


def problems(answer: str, port: int) -> list[str]:
    """One sentence per connection that did not complete, from `SCRIPT`'s output."""
    try:
        rows = json.loads(answer)
    except json.JSONDecodeError:
        return [f"the kernel test of SSH gave no answer ({answer.strip()[-200:]!r})"]
    out = []
    for src, sport, dst, outcome in rows:
        if outcome != "ok":
            where = f"[{dst}]" if ":" in str(dst) else str(dst)
            out.append(f"SSH from {src} (source port {sport or 'any'}) to {where}:{port}: {outcome} "
                       "(real packets, the whole ruleset loaded in a scratch network namespace)")
    return out
