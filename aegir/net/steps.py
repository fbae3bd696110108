"""The IPsec mesh's changes, one `aegir.action.Action` each: net.keys (`Keys`), net.mesh (`Mesh`).

`Keys` makes a host's IKE key pair on the host itself (``pki --gen`` writes
the private key straight into a 0600 file: it never crosses SSH, argv or the
operator's disk); only the public key is ever read (``pki --pub``).

`Mesh` writes each host's ``conf.d/aegir-mesh.conf`` and every member's public
key (atomically, `aegir.sh.write_file_cmd`), loads them (``swanctl --load-all``),
starts once the SAs its peers keep (a keeper that loaded first tried a host
that did not know it yet, and gave up), then a *new* SSH login must get in (`aegir.host.fresh_login`, as fw.apply): if
not, the files it had are put back and loaded again. Its plan refuses, for the
whole fleet, a traffic selector holding an admin address or the operator's
session (`aegir.net.mesh.unsafe`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aegir import action
from aegir.errors import AegirError, RefusedError
from aegir.facts import file_fact
from aegir.fleet import Outcome
from aegir.host import fresh_login
from aegir.net import facts, mesh
from aegir.net import report as netreport
from aegir.net.mesh import Member, MeshPlan
from aegir.report import Result
from aegir.sh import Cmd, shell, write_file_cmd

if TYPE_CHECKING:  # pragma: no cover
    from invoke import Context

    from aegir.host import HostContext


# --------------------------------------------------------------------------- net.keys

_KEYGEN_SCRIPT = """\
set -e
umask 077
mkdir -p -- "$(dirname -- "$1")"
pki --gen --type rsa --size "$2" --outform pem > "$1.aegir-new"
mv -f -- "$1.aegir-new" "$1"
"""


def keygen_cmd(private_key: str = mesh.PRIVATE_KEY, bits: int = mesh.KEY_BITS) -> Cmd:
    """Make the host's key pair on the host: the private key goes from pki's stdout into a 0600 file."""
    return shell(_KEYGEN_SCRIPT, private_key, str(bits))


@dataclass(frozen=True)
class KeyPlan:
    host: str
    pubkey: str | None  # None: no key pair yet

    @property
    def todo(self) -> bool:
        return self.pubkey is None


@dataclass(frozen=True)
class KeyResult:
    result: Result
    pubkey: str | None
    problem: str | None = None


class Keys(action.Action[KeyPlan, KeyResult]):
    """net.keys: a key pair on every target that has none."""

    label = "net.keys"

    def plan(self, hc: HostContext) -> KeyPlan:
        return KeyPlan(hc.name, hc.fact(facts.pubkey_fact()))

    def todo(self, plan: KeyPlan) -> bool:
        return plan.todo

    def act(self, hc: HostContext, plan: KeyPlan) -> KeyResult:
        hc.run(keygen_cmd())
        after = hc.fact(facts.pubkey_fact())
        if after is None:
            return KeyResult(Result.FAILED, None, f"{mesh.PRIVATE_KEY} is still missing after `pki --gen`")
        return KeyResult(Result.DONE, after)

    def failed(self, result: KeyResult) -> str | None:
        return result.problem

    def render(self, ran: action.Ran[KeyPlan, KeyResult]) -> action.Report:
        return netreport.keys_report(ran)


# --------------------------------------------------------------------------- net.mesh


def initiate_cmd(conn: str) -> Cmd:
    """Start `conn`'s child SA; after 3 s swanctl leaves charon to it (a peer that is away is not waited for).

    >>> initiate_cmd("aegir-hyp1").line
    'swanctl --initiate --child aegir-hyp1 --timeout 3'
    """
    return facts.swanctl_cmd("--initiate", "--child", conn, "--timeout", "3")


@dataclass(frozen=True)
class MeshResult:
    result: Result
    written: tuple[str, ...]
    loaded: tuple[str, ...]
    problem: str | None = None


class Mesh(action.Action[MeshPlan, MeshResult]):
    """net.mesh: each member's swanctl files written and loaded, then a fresh SSH login checked."""

    label = "net.mesh"

    def __init__(self, c: Context, members: Sequence[Member], pubkeys: Mapping[str, str]) -> None:
        self.c = c
        self.members = tuple(members)
        self.pubkeys = dict(pubkeys)
        self.by_name = {h.name: (h, s) for h, s in members}

    def plan(self, hc: HostContext) -> MeshPlan:
        paths = mesh.wanted_paths(self.members)
        *texts, loaded, operator = hc.facts(*(file_fact(p) for p in paths), facts.conns_fact(),
                                            facts.ssh_connection_fact())
        return mesh.plan(self.by_name[hc.name], self.members, self.pubkeys, dict(zip(paths, texts)), loaded,
                         operator)

    def todo(self, plan: MeshPlan) -> bool:
        return plan.todo

    def refuse(self, plans: Sequence[Outcome[MeshPlan]]) -> None:
        unsafe = [f"{o.host.name}: {why}" for o in plans if o.value is not None for why in o.value.unsafe]
        if unsafe:
            more = f" (and {len(unsafe) - 3} more)" if len(unsafe) > 3 else ""
            raise RefusedError("net.mesh: refused, a tunnel would carry an SSH path: " + "; ".join(unsafe[:3])
                               + more + "; nothing changed")

    def act(self, hc: HostContext, plan: MeshPlan) -> MeshResult:
        written = tuple(f.path for f in plan.changed)
        for f in plan.changed:
            hc.run(write_file_cmd(f.path, f.after))
        hc.run(facts.swanctl_cmd("--load-all", "--noprompt"))
        for conn in plan.answers:  # its keeper may have tried before this host knew it, and given up
            hc.run(initiate_cmd(conn), check=False)
        check = fresh_login(self.c, hc)
        if check is not None:
            try:
                check()
            except AegirError as exc:
                undone = self._rollback(hc, plan)
                raise RefusedError(f"rolled back: after loading the mesh a new SSH connection failed ({exc.message}); "
                                   f"{undone}", host=hc.name) from None
        return self._verify(hc, plan, written)

    def _rollback(self, hc: HostContext, plan: MeshPlan) -> str:
        """Put back the files the host had, and load them."""
        for f in plan.changed:
            hc.run(write_file_cmd(f.path, f.before) if f.before is not None else Cmd.of("rm", "-f", "--", f.path))
        hc.run(facts.swanctl_cmd("--load-all", "--noprompt"), check=False)
        return "the previous swanctl files are back and loaded"

    def _verify(self, hc: HostContext, plan: MeshPlan, written: tuple[str, ...]) -> MeshResult:
        paths = [f.path for f in plan.files]
        *texts, loaded = hc.facts(*(file_fact(p) for p in paths), facts.conns_fact())
        wrong = [f.path for f, t in zip(plan.files, texts) if t != f.after]
        mine = tuple(c for c in loaded if c.startswith("aegir-"))
        problems = [f"{p} does not hold what was written" for p in wrong]
        if set(mine) != set(plan.wanted):
            problems.append(f"charon has {', '.join(mine) or 'no aegir connection'} loaded, "
                            f"not {', '.join(plan.wanted)}")
        if problems:
            return MeshResult(Result.FAILED, written, mine, "; ".join(problems))
        return MeshResult(Result.DONE, written, mine)

    def failed(self, result: MeshResult) -> str | None:
        return result.problem

    def render(self, ran: action.Ran[MeshPlan, MeshResult]) -> action.Report:
        return netreport.mesh_report(ran)
