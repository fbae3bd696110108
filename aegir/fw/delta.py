"""Pure: is a new ruleset the live one plus or minus elements of its container sets, and which elements.

A rendered ruleset is read as its `Shape`: its structure (every line but set
elements and comments: the table, the chains and their rules, each set's and
map's definition) and the elements of each named set or map, as the
``elements`` filter of `aegir.fw.render` writes them (one a line). A line of
an elements block that is not one plain element goes to the structure, so
whatever this reader does not understand takes the full path.

`diff` compares the last good ruleset (proved, live) with the new one. The
change is element-only (`Delta`) when the structures are the same line for
line and every set whose elements changed is a *container set*: one whose
elements come from the containers (the template puts the exposures there: the
sets that differ between the template rendered with no container and with a
sentinel one, `container_sets`). Anything else (a chain, a rule, a set's
definition, an admin address, an allow-list, the interfaces) is a `str`: why
the full proof runs.

`problems` validates every element a `Delta` adds with the model's own rule
(`aegir.fw.model.Guard`: no DNAT of the SSH port on an admin address, no DNAT
on an address that is not a service one...). `script` is the one ``nft -f``
transaction: every delete, then every add.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from aegir.fw.model import Guard

#: ``set NAME {`` or ``map NAME {`` opening a named set's block.
_OPEN = re.compile(r"^\s*(?:set|map)\s+([A-Za-z_][A-Za-z0-9_]*)\s*\{")
#: One element as `render.elements` writes it: no braces, no separators, no quotes (then: structure).
_ELEMENT = re.compile(r"[^{};,\"#]+")


@dataclass(frozen=True)
class Shape:
    """A ruleset's structure (its lines but elements and comments) and each named set's elements."""

    structure: tuple[str, ...]
    sets: Mapping[str, tuple[str, ...]]


def shape(text: str) -> Shape:
    """Read a rendered ruleset (see the module's docstring)."""
    read = _read(text)
    return Shape(read.structure, dict(read.sets))


def blanked(text: str, drop: Mapping[str, Iterable[str]]) -> str:
    """`text` with the line of each element of `drop` (per set: elements as `shape` reads them) made empty, and
    an ``elements = {`` block left with no element blanked whole (nft refuses an empty one). Read as `shape`
    reads it, so a line `shape` takes for structure is never blanked; every other line stays where it was:
    nft's ``file:line`` in an error is the same as in `text`."""
    lines = text.split("\n")
    for block in _read(text).blocks:
        wanted = frozenset(drop.get(block.name, ()))
        kept = block.others  # what nft reads in a block that is no element: the block stays
        for i, element in block.elements:
            if element in wanted:
                lines[i] = ""
            else:
                kept += 1
        if not kept and block.end is not None:
            lines[block.start] = lines[block.end] = ""
    return "\n".join(lines)


@dataclass(frozen=True)
class _Block:
    """An ``elements = {`` block of a named set or map, as `_read` found it."""

    name: str
    start: int  # the line opening it
    end: int | None  # the line closing it (None: the text ends inside it)
    elements: tuple[tuple[int, str], ...]  # (line, the element as `shape` reads it)
    others: int  # its lines that are no element but hold something nft reads (structure, for `shape`)


@dataclass(frozen=True)
class _Read:
    structure: tuple[str, ...]
    sets: Mapping[str, tuple[str, ...]]
    blocks: tuple[_Block, ...]


@lru_cache(maxsize=2)
def _read(text: str) -> _Read:
    """A ruleset read once for `shape` and `blanked` (`aegir.fw.plan.proof_text` asks both of the same
    60,000 lines; `elements_only` asks `shape` of it too): its structure, its sets' elements, its blocks."""
    structure: list[str] = []
    sets: dict[str, tuple[str, ...]] = {}
    blocks: list[_Block] = []
    name: str | None = None
    block: list[tuple[int, str]] | None = None
    start = others = 0
    for i, line in enumerate(text.split("\n")):
        code = line.partition("#")[0].strip()
        if block is not None:
            assert name is not None
            if code == "}":
                sets[name] = (*sets.get(name, ()), *(e for _, e in block))
                blocks.append(_Block(name, start, i, tuple(block), others))
                block = None
                continue
            item = code.removesuffix(",").strip()
            if _ELEMENT.fullmatch(item):
                block.append((i, " ".join(item.split())))
                continue
            structure.append(line)  # not one plain element: structure, so the full path decides
            others += bool(code)
            continue
        if not code:
            continue  # a comment (the warnings) or an empty line
        opened = _OPEN.match(code)
        if opened:
            name = opened.group(1)
            sets.setdefault(name, ())
        elif code == "elements = {" and name is not None:
            block, start, others = [], i, 0
            continue
        structure.append(line.rstrip())
    if block is not None:
        assert name is not None
        blocks.append(_Block(name, start, None, tuple(block), others))
    return _Read(tuple(structure), sets, tuple(blocks))


@dataclass(frozen=True)
class Delta:
    """The elements to delete and to add, per set: a ruleset change that changes nothing else."""

    delete: Mapping[str, tuple[str, ...]]
    add: Mapping[str, tuple[str, ...]]

    @property
    def empty(self) -> bool:
        return not any(self.delete.values()) and not any(self.add.values())

    def count(self) -> tuple[int, int]:
        """How many elements are added, and deleted."""
        return sum(map(len, self.add.values())), sum(map(len, self.delete.values()))

    def script(self, table: str = "inet aegir") -> str:
        """The ``nft -f`` file: every delete first (a map's element by its key), then every add; one
        transaction, so a re-addressed container's key is deleted and added again atomically."""
        lines = [f"delete element {table} {name} {{ {', '.join(key(e) for e in items)} }}"
                 for name, items in sorted(self.delete.items()) if items]
        lines += [f"add element {table} {name} {{ {', '.join(items)} }}"
                  for name, items in sorted(self.add.items()) if items]
        return "\n".join(lines) + "\n"


def key(element: str) -> str:
    """A map element's key (``k : v`` -> ``k``); a set element is its own key."""
    return element.partition(" : ")[0]


def container_sets(bare: Shape, sentinel: Shape) -> frozenset[str]:
    """The sets whose elements come from the containers: those that differ between the ruleset rendered
    with no container and with a sentinel one."""
    return frozenset(n for n in sentinel.sets.keys() | bare.sets.keys() if sentinel.sets.get(n) != bare.sets.get(n))


def diff(old: Shape, new: Shape, containers: Iterable[str]) -> Delta | str:
    """The element-only change from `old` to `new`, or why it is not one (then the full proof runs)."""
    if old.structure != new.structure:
        return "the structure changed (chains, rules, set definitions or interfaces)"
    ours = set(containers)
    delete: dict[str, tuple[str, ...]] = {}
    add: dict[str, tuple[str, ...]] = {}
    for name in sorted(old.sets.keys() | new.sets.keys()):
        before, after = old.sets.get(name, ()), new.sets.get(name, ())
        if before == after:
            continue
        if name not in ours:
            return f"the elements of {name} changed (not a container set)"
        was, now = set(before), set(after)
        keys_after = {key(e) for e in after}
        if len(keys_after) != len(after) or len({key(e) for e in before}) != len(before):
            return f"{name} holds one key twice"
        delete[name] = tuple(e for e in before if e not in now)
        add[name] = tuple(e for e in after if e not in was)
    return Delta(delete, add)


Addr = ipaddress.IPv4Address | ipaddress.IPv6Address


def _address(text: str) -> Addr | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _port(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() and 0 < int(text) < 65536 else None


def problems(delta: Delta, guard: Guard) -> tuple[list[str], list[str]]:
    """Every element `delta` adds, checked: (refusals, unknown). A DNAT key (``addr . proto . port : ...``)
    gets the model's check (`Guard.dnat_problem`); a container address (``addr . proto . port``) may not
    be one of the host's own. An element of another shape is unknown: the full proof decides."""
    refused: list[str] = []
    unknown: list[str] = []
    own = guard.admin | guard.service
    for name, items in sorted(delta.add.items()):
        for e in items:
            known, why = _check(e, guard, own)
            if not known:
                unknown.append(f"{name}: {e}")
            elif why:
                refused.append(f"{name}: {why}")
    return refused, unknown


def accepted(sets: Mapping[str, Iterable[str]], guard: Guard) -> dict[str, tuple[str, ...]]:
    """The elements of `sets` that pass `problems`' check (known shape, nothing refused) with every address
    and port written as nft and Python write it back (else it is not one of them): those the full proof
    leaves out (`aegir.fw.plan.proof_text`).

    The answer is `_check`'s (``(True, None)``) with canonical addresses and ports only, 2-3 times faster
    (45,000 elements in 0.05 s), by these shortcuts that give the same answer:

    - An address is the text `_packed` accepts: canonical for the family its text names (a colon: IPv6),
      as bytes, no `ipaddress` object; the element's two addresses must name the same family (what
      comparing the versions of the two objects compared). Its bytes are remembered by text: a DNAT key
      holds one of the host's few service addresses, a container's address comes back once per port.
    - A port is as nft writes it back (`_port_text`): no int is made.
    - A set element's address may not be the host's own: its bytes are compared (an IPv4 and an IPv6
      address never have the same length, as an IPv4Address never equals an IPv6Address).
    - A DNAT key's verdict (`Guard.dnat_problem` is None or not) reads the port only as "is it the SSH
      port", so it is remembered by (address, proto, port == SSH port): the host has 2-4 service
      addresses, a few protocols, and tens of thousands of ports.
    """
    own = frozenset(a.packed for a in guard.admin | guard.service)
    ssh = None if guard.ssh_port is None else str(guard.ssh_port)
    addresses: dict[str, bytes | None] = {}
    keys: dict[tuple[str, str, bool], bool] = {}

    def address(text: str) -> bytes | None:
        if text in addresses:
            return addresses[text]
        found = addresses[text] = _packed(text)
        return found

    def ok(e: str) -> bool:
        left, sep, right = e.partition(" : ")
        parts = left.split(" . ")
        if len(parts) != 3:
            return False
        addr, proto, port = parts
        packed = address(addr)
        if packed is None or not _port_text(port):
            return False
        if not sep:
            return packed not in own
        target = right.split(" . ")
        if len(target) != 2 or (":" in target[0]) != (":" in addr) or address(target[0]) is None \
                or not _port_text(target[1]):
            return False
        k = (addr, proto, port == ssh)
        verdict = keys.get(k)
        if verdict is None:
            verdict = keys[k] = guard.dnat_problem(ipaddress.ip_address(packed), proto, int(port)) is None
        return verdict

    return {name: tuple(e for e in items if ok(e)) for name, items in sets.items()}


def _port_text(text: str) -> bool:
    """Is `text` a port as nft and Python write it back: 1-65535 in ASCII digits, no leading zero (``010`` is
    not 10 for every reader; ``٨`` is a digit to `str.isdigit`, not to nft)? Five digits compare as text as
    they do as numbers: no int is made."""
    return text.isdigit() and text.isascii() and text[0] != "0" and (len(text) < 5 or len(text) == 5 and text <= "65535")


def _packed(text: str) -> bytes | None:
    """The address `text` names if it is written as ``inet_ntop`` prints it (else None), as bytes: 10 times
    faster than an `ipaddress` object. The family is the text's: a colon, IPv6 (``::ffff:1.2.3.4`` too)."""
    family = socket.AF_INET6 if ":" in text else socket.AF_INET
    try:
        packed = socket.inet_pton(family, text)
    except (OSError, ValueError):  # ValueError: a NUL or a lone surrogate in the text
        return None
    return packed if socket.inet_ntop(family, packed) == text else None


def _check(e: str, guard: Guard, own: frozenset, address: Callable[[str], Addr | None] = lambda t: _address(t),
           port_of: Callable[[str], int | None] = lambda t: _port(t)) -> tuple[bool, str | None]:
    """One element: (of a shape `problems` knows, why it is refused or None)."""
    left, sep, right = e.partition(" : ")
    parts = left.split(" . ")
    addr = address(parts[0]) if len(parts) == 3 else None
    port = port_of(parts[2]) if len(parts) == 3 else None
    if addr is None or port is None:
        return False, None
    if sep:
        target = right.split(" . ")
        to = address(target[0]) if len(target) == 2 else None
        if to is None or to.version != addr.version or port_of(target[1]) is None:
            return False, None
        return True, guard.dnat_problem(addr, parts[1], port)
    return True, (f"{e}: {addr} is an address of the host, not a container's" if addr in own else None)
