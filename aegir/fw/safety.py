"""Prove a ruleset never drops SSH to the admin addresses, by evaluating it for those packets.

The ruleset is nft's own JSON (``nft -j list table inet aegir``), so what is
checked is what the kernel holds, whatever template produced it. `evaluate`
walks the base chains of one hook in priority order for one `Packet` and
returns every outcome the packet may meet. It is conservative: a match it
cannot decide (an interface name, a mark, a rate limit) may or may not match,
and both branches are followed; a statement it does not know may do anything.
So "accepted" means accepted on every branch.

`ssh_packets` builds the SSH packets an operator sends (from each admin source,
or from anywhere, to each admin address, as a new connection and as an
established one) and sshd's replies; `ssh_problems` reports each way one of
them could be dropped, or rewritten (DNATed) on its way to sshd.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Addr = ipaddress.IPv4Address | ipaddress.IPv6Address

ACCEPT, DROP, DNAT, CONTINUE, UNKNOWN = "accept", "drop", "dnat", "continue", "unknown"
END = "end"  # leave the current chain (return, or the end of a goto'd chain)
#: Statements that neither decide nor change where a packet goes.
PASSIVE = {"counter", "log", "comment", "notrack", "quota", "limit", "set", "meta_set", "mangle_mark"}
#: Placeholders when a family has no admin address.
NOWHERE = {4: ipaddress.IPv4Address("198.18.0.22"), 6: ipaddress.IPv6Address("2001:db8:ffff:ffff::22")}


class _Maybe:
    """The value of a field the evaluator cannot know (an interface name...)."""

    def __repr__(self) -> str:
        return "MAYBE"


MAYBE: Any = _Maybe()
_ABSENT = object()  # the packet has no such header: the rule cannot match


@dataclass(frozen=True)
class Peer:
    """The operator's end of an SSH connection: any address in `nets` (none: anywhere), for IP `version`.

    A match on it is decided only when it holds for the whole of `nets`:
    "drop SSH unless from 203.0.113.77" may drop the operator, whatever
    address a test would pick.
    """

    version: int
    nets: tuple[Any, ...] = ()

    def __str__(self) -> str:
        return ",".join(str(n) for n in self.nets) or f"any IPv{self.version} source"


@dataclass(frozen=True)
class Packet:
    """One TCP packet as the firewall sees it on the way in.

    An address may be a `Peer` (the operator's side, known only as a range) and
    a port None (the operator's source port: anything).
    """

    saddr: Addr | Peer
    daddr: Addr | Peer
    dport: int | None
    sport: int | None = 50022
    proto: str = "tcp"
    ct_state: str = "new"
    outbound: bool = False  # sent by the host (output hook) rather than received
    dnat: bool = False  # already destination-NATed in prerouting (ct status dnat), as seen in forward

    def reply(self) -> "Packet":
        """The host's answer to this packet, leaving through the output hook."""
        return Packet(self.daddr, self.saddr, self.sport, self.dport, self.proto, self.ct_state, True)

    @property
    def version(self) -> int:
        return self.daddr.version

    def __str__(self) -> str:
        def end(a: Addr | Peer, port: int | None) -> str:
            where = f"[{a}]" if self.version == 6 and not isinstance(a, Peer) else str(a)
            return f"{where}:{'*' if port is None else port}"

        way = "reply " if self.outbound else ""
        return f"{way}{self.proto} {end(self.saddr, self.sport)} -> {end(self.daddr, self.dport)} ({self.ct_state})"


@dataclass(frozen=True)
class Fate:
    """What may happen to the packet, and where (``chain input, rule 3``)."""

    kind: str
    where: str = ""


@dataclass
class Ruleset:
    """The parts of nft's JSON the evaluator needs: chains, their rules, named sets."""

    chains: dict[str, dict[str, Any]] = field(default_factory=dict)
    rules: dict[str, list[list[dict[str, Any]]]] = field(default_factory=dict)
    sets: dict[str, dict[str, Any]] = field(default_factory=dict)
    dynamic: set[str] = field(default_factory=set)  # sets filled at runtime: their content is unknown

    @classmethod
    def from_json(cls, doc: Mapping[str, Any] | Sequence[Any]) -> "Ruleset":
        """Read ``nft -j list table ...`` output (already decoded)."""
        items = doc.get("nftables", []) if isinstance(doc, Mapping) else doc
        rs = cls()
        for item in items:
            if "chain" in item:
                c = item["chain"]
                rs.chains[_key(c, c["name"])] = c
                rs.rules.setdefault(_key(c, c["name"]), [])
            elif "rule" in item:
                r = item["rule"]
                exprs = r.get("expr") or []
                rs.rules.setdefault(_key(r, r["chain"]), []).append(exprs)
                for e in exprs:  # `update @ban { ip saddr }`, `add @seen ...`: filled by packets
                    for kind in ("set", "map"):
                        target = e.get(kind) if isinstance(e, Mapping) else None
                        if isinstance(target, Mapping) and isinstance(target.get(kind), str):
                            rs.dynamic.add(_key(r, target[kind].lstrip("@")))
            elif "set" in item or "map" in item:
                s = item.get("set") or item.get("map")
                rs.sets[_key(s, s["name"])] = s
                flags = s.get("flags") or []
                flags = [flags] if isinstance(flags, str) else flags
                if {"dynamic", "timeout"} & set(flags) or "timeout" in s:
                    rs.dynamic.add(_key(s, s["name"]))
        return rs

    def base_chains(self, hook: str, family: int) -> list[str]:
        """Keys of the base chains on `hook` a packet of IP `family` traverses, by priority."""
        fams = {"inet", "ip" if family == 4 else "ip6"}
        found = [(int(c.get("prio", 0)), k) for k, c in self.chains.items()
                 if c.get("hook") == hook and c.get("family") in fams]
        return [k for _, k in sorted(found)]


def _key(obj: Mapping[str, Any], name: str) -> str:
    return f"{obj.get('family')} {obj.get('table')} {name}"


# --------------------------------------------------------------------------- evaluation


def evaluate(rs: Ruleset, packet: Packet, hook: str) -> set[Fate]:
    """Every outcome `packet` may meet on `hook`: one per base chain that can end it.

    A base chain that accepts hands the packet to the next one; ACCEPT is in the
    result only if every base chain may accept.
    """
    result: set[Fate] = set()
    chains = rs.base_chains(hook, packet.version)
    for key in chains:
        if hook in ("prerouting", "postrouting", "output") and rs.chains[key].get("type") == "nat" \
                and packet.ct_state != "new":
            continue  # nat chains only see the first packet of a connection
        outs = _chain(rs, key, packet, depth=0)
        policy = rs.chains[key].get("policy", "accept")
        for o in outs:
            if o.kind == CONTINUE:
                result.add(Fate(ACCEPT if policy == "accept" else DROP, f"{_name(key)} policy {policy}"))
            else:
                result.add(o)
    if not chains:
        result.add(Fate(ACCEPT, f"no {hook} chain"))
    return {o for o in result if o.kind != ACCEPT} or {Fate(ACCEPT)}


def _name(key: str) -> str:
    return "chain " + key.split(" ", 2)[2]


def _chain(rs: Ruleset, key: str, p: Packet, depth: int) -> set[Fate]:
    if depth > 16:
        return {Fate(UNKNOWN, f"{_name(key)}: jumps nested too deep")}
    rules = rs.rules.get(key, [])
    # outcomes from rule i to the end, computed from the end: linear in the rule count
    after: set[Fate] = {Fate(CONTINUE)}
    for i in range(len(rules) - 1, -1, -1):
        where = f"{_name(key)}, rule {i + 1}"
        m = _matches(rs, key, rules[i], p)
        if m is False:
            continue
        taken = _statements(rs, key, rules[i], p, where, depth)
        if CONTINUE in {o.kind for o in taken}:
            taken = {o for o in taken if o.kind != CONTINUE} | after
        after = taken if m is True else taken | after
    return {Fate(CONTINUE, o.where) if o.kind == END else o for o in after}


def _statements(rs: Ruleset, key: str, exprs: list[dict[str, Any]], p: Packet, where: str,
                depth: int) -> set[Fate]:
    for e in exprs:
        kind = next(iter(e))
        arg = e[kind]
        if kind == "match":
            continue
        if kind in PASSIVE:
            continue
        if kind == "accept":
            return {Fate(ACCEPT, where)}
        if kind in ("drop", "reject"):
            return {Fate(DROP, where)}
        if kind == "return":
            return {Fate(END, where)}
        if kind == "continue":
            continue
        if kind in ("jump", "goto"):
            target = _key_like(key, arg["target"])
            inner = _chain(rs, target, p, depth + 1)
            if kind == "goto":  # falling off a goto'd chain ends the calling chain too
                return {Fate(END, o.where) if o.kind == CONTINUE else o for o in inner}
            return inner
        if kind in ("dnat", "redirect"):
            found = _dnat_applies(rs, key, arg or {}, p)
            if found is False:
                return {Fate(CONTINUE, where)}
            return {Fate(DNAT, where)}
        if kind in ("snat", "masquerade"):
            return {Fate(ACCEPT, where)}  # source rewriting does not stop the packet
        return {Fate(UNKNOWN, f"{where}: cannot evaluate statement {kind!r}")}
    return {Fate(CONTINUE, where)}


def _key_like(key: str, name: str) -> str:
    fam, table, _ = key.split(" ", 2)
    return f"{fam} {table} {name}"


def _dnat_applies(rs: Ruleset, key: str, arg: Mapping[str, Any], p: Packet) -> bool | Any:
    """Whether a dnat statement rewrites `p`: a map lookup that misses does not."""
    fam = arg.get("family")
    if fam in ("ip", "ip6") and (fam == "ip") != (p.version == 4):
        return False
    addr = arg.get("addr")
    if isinstance(addr, Mapping) and "map" in addr:
        lookup = addr["map"]
        value = _value(lookup.get("key"), p)
        if value is _ABSENT:
            return False
        return _member(rs, key, value, lookup.get("data"))
    return True


def _matches(rs: Ruleset, key: str, exprs: list[dict[str, Any]], p: Packet) -> bool | Any:
    """True, False or MAYBE: do all the rule's matches hold for `p`?"""
    result: bool | Any = True
    for e in exprs:
        if "match" in e:
            m = _match(rs, key, e["match"], p)
        elif "limit" in e or "quota" in e:
            m = MAYBE
        else:
            continue
        if m is False:
            return False
        if m is MAYBE:
            result = MAYBE
    return result


def _match(rs: Ruleset, key: str, m: Mapping[str, Any], p: Packet) -> bool | Any:
    value = _value(m.get("left"), p)
    if value is _ABSENT:
        return False  # nft's implicit dependency (e.g. `meta l4proto udp`) fails first
    op = m.get("op", "==")
    right = m.get("right")
    if op == "in" and isinstance(value, frozenset):  # flags: ct state, ct status
        wanted = set(right) if isinstance(right, list) else {right}
        return bool(value & wanted)
    if isinstance(value, frozenset):
        got = _member_flags(value, right)
        return _negate(got) if op == "!=" else got
    found = _member(rs, key, value, right)
    if op == "==" or op == "in":
        return found
    if op == "!=":
        return _negate(found)
    if op in ("<", ">", "<=", ">=") and isinstance(value, int) and isinstance(right, int):
        return {"<": value < right, ">": value > right, "<=": value <= right, ">=": value >= right}[op]
    return MAYBE


def _negate(v: bool | Any) -> bool | Any:
    return MAYBE if v is MAYBE else not v


def _member_flags(value: frozenset, right: Any) -> bool:
    if isinstance(right, Mapping) and "set" in right:
        return any(_member_flags(value, r) for r in right["set"])
    wanted = set(right) if isinstance(right, list) else {right}
    return value == frozenset(wanted)


def _value(left: Any, p: Packet) -> Any:
    """The packet's value for a JSON expression; MAYBE when unknown, _ABSENT when no such header."""
    if not isinstance(left, Mapping):
        return MAYBE
    if "concat" in left:
        parts = [_value(x, p) for x in left["concat"]]
        if any(x is _ABSENT for x in parts):
            return _ABSENT
        return tuple(parts)
    if "payload" in left:
        proto, fld = left["payload"].get("protocol"), left["payload"].get("field")
        if proto in ("ip", "ip6"):
            if (proto == "ip") != (p.version == 4):
                return _ABSENT
            return {"saddr": p.saddr, "daddr": p.daddr}.get(fld, MAYBE)
        if proto in (p.proto, "th"):
            port = {"sport": p.sport, "dport": p.dport}.get(fld, MAYBE)
            return MAYBE if port is None else port
        if proto in ("tcp", "udp", "sctp", "udplite", "dccp", "icmp", "icmpv6", "esp", "ah", "igmp"):
            return _ABSENT
        return MAYBE
    if "meta" in left:
        k = left["meta"].get("key")
        if k == "l4proto":
            return p.proto
        if k == "nfproto":
            return "ipv4" if p.version == 4 else "ipv6"
        if k in ("oifname", "oif", "oiftype") and not p.outbound:
            return ""  # a packet for this host has no output interface
        if k in ("iifname", "iif", "iiftype") and p.outbound:
            return ""  # nor has a packet the host sends an input interface
        return MAYBE
    if "ct" in left:
        k = left["ct"].get("key")
        if k == "state":
            return frozenset({p.ct_state})
        if k == "status":
            status = {"confirmed", "seen-reply", "assured"} if p.ct_state == "established" else set()
            return frozenset(status | ({"dnat"} if p.dnat else set()))
        if k == "direction":
            return "original"
        return MAYBE
    return MAYBE


def _member(rs: Ruleset, key: str, value: Any, right: Any) -> bool | Any:
    """Is `value` in `right` (a literal, an anonymous set, a prefix, a range, or ``@named``)?"""
    if value is MAYBE:
        return MAYBE
    if isinstance(value, Peer) and len(value.nets) > 1:  # each of the operator's networks on its own
        found = {_member(rs, key, Peer(value.version, (n,)), right) is True for n in value.nets}
        if found == {True}:
            return True
        nothing = all(_member(rs, key, Peer(value.version, (n,)), right) is False for n in value.nets)
        return False if nothing else MAYBE
    if isinstance(right, str) and right.startswith("@"):
        s = rs.sets.get(_key_like(key, right[1:]))
        if s is None or _key_like(key, right[1:]) in rs.dynamic:
            return MAYBE
        elems = s.get("elem") or []
        if s.get("map") is not None or "map" in s:
            elems = [e[0] if isinstance(e, list) else e for e in elems]
        held = _any(value, elems)
        # a named set can gain elements at runtime (`nft add element`, `update @set`, a ban list): that the
        # operator's address is not in it now proves nothing
        operator = isinstance(value, Peer) or (isinstance(value, tuple) and any(isinstance(v, Peer) for v in value))
        return MAYBE if held is False and operator else held
    if isinstance(right, Mapping) and "set" in right:
        return _any(value, right["set"])
    return _one(value, right)


def _any(value: Any, elems: Iterable[Any]) -> bool | Any:
    maybe = False
    for e in elems:
        r = _one(value, e)
        if r is True:
            return True
        maybe = maybe or r is MAYBE
    return MAYBE if maybe else False


def _one(value: Any, elem: Any) -> bool | Any:
    if isinstance(elem, Mapping) and "elem" in elem:  # {"elem": {"val": ..., "timeout": ...}}
        elem = elem["elem"].get("val")
    if isinstance(value, tuple):
        parts = elem.get("concat") if isinstance(elem, Mapping) else None
        if not isinstance(parts, list) or len(parts) != len(value):
            return MAYBE
        results = [_one(v, e) for v, e in zip(value, parts)]
        if False in results:
            return False
        return MAYBE if MAYBE in results else True
    if value is MAYBE:
        return MAYBE
    if isinstance(value, Peer):
        return _peer_in(value, elem)
    if isinstance(elem, Mapping):
        if "prefix" in elem:
            try:
                net = ipaddress.ip_network(f"{elem['prefix']['addr']}/{elem['prefix']['len']}", strict=False)
            except (ValueError, KeyError, TypeError):
                return MAYBE
            return isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)) \
                and value.version == net.version and value in net
        if "range" in elem:
            lo, hi = elem["range"]
            lo, hi = _coerce(value, lo), _coerce(value, hi)
            if lo is None or hi is None:
                return MAYBE
            return lo <= value <= hi
        return MAYBE
    other = _coerce(value, elem)
    if other is None:
        return MAYBE
    return other == value


def _peer_in(peer: Peer, elem: Any) -> bool | Any:
    """Is every address `peer` may have in `elem` (True), none (False), or some (MAYBE)?"""
    if isinstance(elem, Mapping) and "prefix" in elem:
        try:
            net = ipaddress.ip_network(f"{elem['prefix']['addr']}/{elem['prefix']['len']}", strict=False)
        except (ValueError, KeyError, TypeError):
            return MAYBE
    elif isinstance(elem, Mapping) and "range" in elem:
        try:
            lo, hi = (ipaddress.ip_address(x) for x in elem["range"])
            nets = list(ipaddress.summarize_address_range(lo, hi))  # type: ignore[type-var]
        except (ValueError, TypeError):
            return MAYBE
        return _any(peer, [{"prefix": {"addr": str(n.network_address), "len": n.prefixlen}}  # type: ignore[attr-defined]
                           for n in nets])
    else:
        try:
            net = ipaddress.ip_network(elem)
        except (ValueError, TypeError):
            return MAYBE
    if net.version != peer.version:
        return False
    mine = peer.nets or (ipaddress.ip_network("0.0.0.0/0" if peer.version == 4 else "::/0"),)
    if all(n.subnet_of(net) for n in mine):
        return True
    return MAYBE if any(n.overlaps(net) for n in mine) else False


_PROTO_NUMBERS = {"tcp": 6, "udp": 17, "sctp": 132, "icmp": 1, "ipv6-icmp": 58, "esp": 50}


def _coerce(value: Any, elem: Any) -> Any:
    """`elem` as the type of `value`, or None if it cannot be compared."""
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        try:
            a = ipaddress.ip_address(elem)
        except ValueError:
            return None
        return a if a.version == value.version else None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return elem if isinstance(elem, int) and not isinstance(elem, bool) else None
    if isinstance(value, str):
        if value in _PROTO_NUMBERS and isinstance(elem, int):
            return value if _PROTO_NUMBERS[value] == elem else ""
        return elem if isinstance(elem, str) else None
    return None


# --------------------------------------------------------------------------- SSH


def ssh_packets(admin: Mapping[int, Sequence[Addr]], sources: Mapping[int, Sequence[Any]],
                port: int) -> list[Packet]:
    """The SSH packets an operator sends: from any admin source (or anywhere) and any source port, to
    every admin address, new and established.

    Their replies are checked too (`Packet.reply`): when the ruleset first
    loads connection tracking, a running session's next packet is seen as new.
    The operator's address is a `Peer` (a match on it holds for all of it or is
    unknown) and the source port None (unknown): "accept SSH only from
    203.0.113.77" or "only from source port 50022" is not proof of anything.

    A family without an admin address is checked against a placeholder address.
    """
    out = []
    for v in (4, 6):
        dsts = list(admin.get(v) or []) or [NOWHERE[v]]  # type: ignore[list-item]
        peer = Peer(v, tuple(sources.get(v) or ()))
        for d in dsts:
            for state in ("new", "established"):
                out.append(Packet(peer, d, port, sport=None, ct_state=state))
                out.append(out[-1].reply())
    return out


def ssh_problems(rs: Ruleset, packets: Iterable[Packet]) -> list[str]:
    """One sentence per way an SSH packet could be dropped or redirected; empty when safe."""
    problems = []
    for p in packets:
        for hook in (("output", "postrouting") if p.outbound else ("prerouting", "input")):
            for o in sorted(evaluate(rs, p, hook), key=lambda o: (o.kind, o.where)):
                if o.kind == ACCEPT:
                    continue
                verb = {DROP: "dropped", DNAT: "redirected (DNAT)"}.get(o.kind, "possibly dropped")
                problems.append(f"SSH {p} could be {verb} by {o.where or hook}")
    return problems
