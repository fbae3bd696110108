"""net.check's verdict per pair of hosts (pure): is the SA up at both ends, and does a container of the
first reach a container of the second through it?

A pair is up when both hosts have an ESTABLISHED IKE SA to each other with an
INSTALLED child SA, and a ping from a container of the first to the global
IPv6 of a container of the second is answered *and* counted by the first
host's child SA (packets out grew): an answer the SA did not count went
around the tunnel, in clear. A pair where either host has no container to
test with is "untested", which is not down.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aegir.fleet import Outcome
from aegir.net.facts import CheckFacts, Pinged
from aegir.net.mesh import conn_name
from aegir.net.swanctl import Sas

UP, DOWN = "up", "down"


@dataclass(frozen=True)
class Pair:
    """One row of net.check."""

    a: str
    b: str
    sa: str  # up | down
    age: int | None = None  # seconds since the IKE SA was established (a's view)
    bytes_in: int | None = None  # a's child SA to b
    bytes_out: int | None = None
    reach: str = "untested"  # yes | no | untested
    esp_packets: int | None = None  # packets a's child SA sent during the ping
    reason: str | None = None

    @property
    def down(self) -> bool:
        return self.sa != UP or self.reach == "no"

    @property
    def name(self) -> str:
        return f"{self.a} <-> {self.b}"


def to_ping(read: Sequence[Outcome[CheckFacts]]) -> dict[str, list[tuple[str, str]]]:
    """Per host: the (peer, address) pairs it pings, every later host in `read`'s order whose SA with it is up
    at both ends and which has a container to test."""
    out: dict[str, list[tuple[str, str]]] = {}
    for i, a in enumerate(read):
        for b in read[i + 1:]:
            if a.value is None or b.value is None or a.value.probe is None or b.value.probe is None:
                continue
            if _sa_state(a.host.name, a.value.sas, b.host.name, b.value.sas)[0] == UP:
                out.setdefault(a.host.name, []).append((b.host.name, str(b.value.probe.ipv6)))
    return out


def pairs(read: Sequence[Outcome[CheckFacts]], pinged: Mapping[str, Outcome[Pinged]]) -> list[Pair]:
    """Every pair of `read`'s hosts, in order, from the first read and the pings (`pinged`: by host name)."""
    out = []
    for i, a in enumerate(read):
        for b in read[i + 1:]:
            out.append(_pair(a, b, pinged.get(a.host.name)))
    return out


def _pair(a: Outcome[CheckFacts], b: Outcome[CheckFacts], pinged: Outcome[Pinged] | None) -> Pair:
    an, bn = a.host.name, b.host.name
    for o in (a, b):
        if o.value is None:
            return Pair(an, bn, DOWN, reason=f"{o.host.name} could not be read ({o.kind}: {o.error})")
    assert a.value is not None and b.value is not None
    state, why = _sa_state(an, a.value.sas, bn, b.value.sas)
    mine = [s for s in a.value.sas.of(conn_name(bn)) if s.up]
    age = max((s.established for s in mine if s.established is not None), default=None)
    children = [ch for s in mine for ch in s.children if ch.up]
    bytes_in = sum(ch.bytes_in for ch in children) if children else None
    bytes_out = sum(ch.bytes_out for ch in children) if children else None
    if state != UP:
        return Pair(an, bn, DOWN, reason=why)
    if a.value.probe is None or b.value.probe is None:
        missing = a if a.value.probe is None else b
        assert missing.value is not None
        return Pair(an, bn, UP, age, bytes_in, bytes_out, reason=f"untested: {missing.host.name}: {missing.value.note}")
    if pinged is None or pinged.value is None:
        why = f"{an} could not ping ({pinged.kind}: {pinged.error})" if pinged is not None else f"{an} did not ping"
        return Pair(an, bn, UP, age, bytes_in, bytes_out, "no", reason=why)
    answered = dict(pinged.value.answered).get(bn, False)
    before = _packets_out(a.value.sas, bn)
    after = _packets_out(pinged.value.sas, bn)
    sent = after - before if after >= before else None  # a rekey in between starts the counters again
    target = f"{bn}'s container {b.value.probe.container} ({b.value.probe.ipv6})"
    if not answered:
        return Pair(an, bn, UP, age, bytes_in, bytes_out, "no", sent,
                    f"no answer from {target} to {an}'s container {a.value.probe.container}")
    if sent == 0:
        return Pair(an, bn, UP, age, bytes_in, bytes_out, "no", sent,
                    f"{target} answered, but not through the SA (its counters did not move): in clear")
    return Pair(an, bn, UP, age, bytes_in, bytes_out, "yes", sent)


def _packets_out(sas: Sas, peer: str) -> int:
    return sum(ch.packets_out for s in sas.of(conn_name(peer)) for ch in s.children if ch.up)


def _sa_state(an: str, asas: Sas, bn: str, bsas: Sas) -> tuple[str, str | None]:
    """UP when both ends hold an established SA with an installed child to the other; else DOWN and why."""
    ends = ((an, asas, bn), (bn, bsas, an))
    for me, sas, _ in ends:  # a charon that does not answer says more than its peer's retrying SA
        if sas.down:
            return DOWN, f"{me}: {sas.down}"
    for me, sas, peer in ends:
        mine = sas.of(conn_name(peer))
        if not mine:
            return DOWN, f"{me}: no SA to {peer}"
        if not any(s.up for s in mine):
            states = ", ".join(sorted({s.state if s.state != "ESTABLISHED" else "ESTABLISHED without a child SA"
                                       for s in mine}))
            return DOWN, f"{me}: SA to {peer} {states}"
    return UP, None
