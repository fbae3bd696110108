"""What ``swanctl --raw`` prints, read (pure): ``list-sa event {NAME {key=value ... child-sas {...}}}``.

Each event line is one VICI message dumped as text: sections ``NAME {...}``,
``key=value`` pairs and lists ``key=[a b]``. `parse_raw` turns the lines into
nested dicts (one per event); `parse_sas` and `parse_conns` read what
net.check and net.mesh need. Values never hold spaces in what aegir
configures (host names as identities, addresses); a word that follows a
value and opens no section is the rest of that value (``class=public key``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from aegir.errors import AegirError

_TOKEN = re.compile(r"\s*(?:(\{)|(\})|([^\s{}=]+)=(\[[^\]]*\]|[^\s{}]*)|([^\s{}=]+))")


@dataclass(frozen=True)
class Child:
    """One child SA of an IKE SA."""

    name: str
    state: str  # INSTALLED, REKEYING...
    bytes_in: int = 0
    bytes_out: int = 0
    packets_in: int = 0
    packets_out: int = 0
    installed: int | None = None  # seconds since it was installed

    @property
    def up(self) -> bool:
        return self.state == "INSTALLED"


@dataclass(frozen=True)
class IkeSa:
    """One IKE SA: its connection's name, state (ESTABLISHED, CONNECTING...), age and child SAs."""

    conn: str
    state: str
    established: int | None = None  # seconds
    remote: str = ""
    children: tuple[Child, ...] = ()

    @property
    def up(self) -> bool:
        return self.state == "ESTABLISHED" and any(c.up for c in self.children)


@dataclass(frozen=True)
class Sas:
    """A host's SAs; `down`: why charon could not be asked (then `sas` is empty)."""

    sas: tuple[IkeSa, ...] = ()
    down: str | None = None

    def of(self, conn: str) -> list[IkeSa]:
        return [s for s in self.sas if s.conn == conn]


def parse_raw(stdout: str) -> list[tuple[str, dict[str, Any]]]:
    """Each line ``WORDS {...}`` -> (WORDS, its body as nested dicts); lists become lists of str."""
    out = []
    for line in stdout.splitlines():
        head, brace, rest = line.partition("{")
        if not brace:
            continue
        body, end = _section(brace + rest, 0)
        out.append((head.strip(), body))
    return out


def _section(text: str, pos: int) -> tuple[dict[str, Any], int]:
    """The section opening at `pos` (a ``{``) -> its dict and the position after its ``}``."""
    m = _TOKEN.match(text, pos)
    if not m or not m.group(1):
        raise AegirError(f"cannot read swanctl's output near {text[pos:pos + 40]!r}")
    pos = m.end()
    out: dict[str, Any] = {}
    last: str | None = None
    while True:
        m = _TOKEN.match(text, pos)
        if not m:
            raise AegirError(f"cannot read swanctl's output: unterminated section near {text[pos:pos + 40]!r}")
        if m.group(2):
            return out, m.end()
        if m.group(3):
            value = m.group(4)
            last = m.group(3)
            out[last] = value[1:-1].split() if value.startswith("[") else value
            pos = m.end()
        elif m.group(5):
            after = _TOKEN.match(text, m.end())
            if after and after.group(1):
                out[m.group(5)], pos = _section(text, m.end())
                last = None
            elif last is not None and isinstance(out[last], str):  # a value with a space: `class=public key`
                out[last] += " " + m.group(5)
                pos = m.end()
            else:
                raise AegirError(f"cannot read swanctl's output near {text[pos:pos + 40]!r}")
        else:
            raise AegirError(f"cannot read swanctl's output near {text[pos:pos + 40]!r}")


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, str) and value.isdigit() else None


def parse_sas(stdout: str) -> tuple[IkeSa, ...]:
    """``swanctl --list-sas --raw`` -> every IKE SA with its child SAs."""
    out = []
    for head, body in parse_raw(stdout):
        if head != "list-sa event":
            continue
        for conn, sa in body.items():
            if not isinstance(sa, dict):
                continue
            children = []
            for _, ch in (sa.get("child-sas") or {}).items():
                if isinstance(ch, dict):
                    children.append(Child(str(ch.get("name", "")), str(ch.get("state", "")),
                                          _int(ch.get("bytes-in")) or 0, _int(ch.get("bytes-out")) or 0,
                                          _int(ch.get("packets-in")) or 0, _int(ch.get("packets-out")) or 0,
                                          _int(ch.get("install-time"))))
            out.append(IkeSa(conn, str(sa.get("state", "")), _int(sa.get("established")),
                             str(sa.get("remote-host", "")), tuple(children)))
    return tuple(out)


def parse_conns(stdout: str) -> tuple[str, ...]:
    """``swanctl --list-conns --raw`` -> the names of the loaded connections."""
    return tuple(name for head, body in parse_raw(stdout) if head == "list-conn event" for name in body)


def unreachable(stderr: str, exited: int) -> str:
    """Why swanctl could not ask charon, in one line."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip() and not ln.startswith("plugin '")]
    return (lines[-1] if lines else f"swanctl exited {exited}")[:300]
