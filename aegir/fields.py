"""Typed fields of YAML settings: one reader for hosts.yml, its sections, recipes and ``x-aegir``.

Two levels, used together:

- **Parsers** turn one value into its type or raise `FieldError` (a
  `ValueError`) holding one sentence: `port` (1 to 65535), `boolean`,
  `duration` (seconds, or ``30s``/``5m``/``2h``/``1d``), `size` (``500M``,
  ``2G``: powers of 1024), `whole` (a bounded integer), `name` (`aegir.sh.check_name`),
  `choice`, `text`, `ip`, `network`, `address` (what SSH may be pointed at),
  and `list_of` one of them. `unknown_key` is the one
  sentence for a key nobody reads, with "did you mean" (difflib).
- **`Answer`** reads what a host answered (Docker API JSON, a program's JSON
  result) by path, checking each value's type on the way: a value of a shape its
  writer never gives raises `ShapeError` (``docker /system/df: Images[3].Size:
  expected a number, got a string``), so a host's bad answer is that host's
  failed row, never a traceback. Absent and null values read as empty.
- **`Fields`** is one mapping of a document read key by key: a value its
  parser refuses becomes ``file:line: HEAD: PATH.KEY: sentence`` at the line the
  document's line map (`aegir.yamldoc.YamlDoc.line`) gives for that key, the
  list item or mapping key below it included, as the caller's error type
  (`InventoryError` for hosts.yml, `RecipeError` for a recipe, `FieldsError`
  otherwise)::

      fw = Fields(section, "hosts.yml", line, head="hyp1", path=("fw",))
      fw.check(("ssh_port", "ipsec"))             # hyp1: fw: unknown key 'ssh_prot' (did you mean 'ssh_port'?)
      fw.get("ssh_port", port, 22)                # hyp1: fw.ssh_port: 0 is not a port number from 1 to 65535
      fw.get("ipsec", boolean, True)              # hyp1: fw.ipsec: must be true or false, not 'yes'

Pure: no I/O. (``aegir/mysql/onhost.py`` runs on hosts with the standard
library alone and keeps its own reading of ``x-aegir.mysql``.)
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aegir.errors import AegirError
from aegir.sh import check_name

T = TypeVar("T")
Parse = Callable[[Any], T]
IP = ipaddress.IPv4Address | ipaddress.IPv6Address
Net = ipaddress.IPv4Network | ipaddress.IPv6Network

PORT_MAX = 65535
_DIGITS = re.compile(r"[0-9]{1,5}")  # ASCII digits only: str.isdigit() takes '²' and '٨'
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([smhd]?)")  # lower case only: 5M is a size, not 5 minutes
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
#: Control characters: no field of text holds one (a newline in a path ends up in a systemd unit).
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_HOSTNAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62}))*\.?")
_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([KMGTP]?)(?:i?B)?", re.IGNORECASE)


class FieldError(ValueError):
    """A value its field refuses: `sentence`, and `at`, the path below the value where it is wrong."""

    def __init__(self, sentence: str, at: tuple[Any, ...] = ()) -> None:
        self.sentence = sentence
        self.at = at
        super().__init__(sentence)


class FieldsError(AegirError):
    """A located mistake in a document that is not hosts.yml nor a recipe: ``file:line: message``."""

    def __init__(self, file: str, line: int | None, message: str) -> None:
        self.file = file
        self.line = line
        super().__init__(f"{file}:{line}: {message}" if line else f"{file}: {message}")


# --------------------------------------------------------------------------- parsers


def _integer(value: Any, text: bool) -> int | None:
    """`value` as an int: an int (not a bool), or with `text` a string of ASCII digits; else None."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if text and isinstance(value, str) and _DIGITS.fullmatch(value):
        return int(value)
    return None


def port(value: Any, *, text: bool = False) -> int:
    """A TCP/UDP port, 1 to 65535: an integer (with `text`, ASCII digits too, as Docker writes them)."""
    n = _integer(value, text)
    if n is None or not 0 < n <= PORT_MAX:
        raise FieldError(f"{value!r} is not a port number from 1 to {PORT_MAX}")
    return n


def whole(value: Any, *, least: int = 0, most: int | None = None, text: bool = False) -> int:
    """An integer from `least` to `most` (inclusive; no upper bound when None)."""
    n = _integer(value, text)
    if n is None or n < least or (most is not None and n > most):
        span = f"from {least} to {most}" if most is not None else f"of {least} or more"
        raise FieldError(f"must be a whole number {span}, not {value!r}")
    return n


def boolean(value: Any, *, text: bool = False) -> bool:
    """``true`` or ``false`` (YAML booleans; with `text`, the words too, any case, as in labels)."""
    if isinstance(value, bool):
        return value
    if text and isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise FieldError(f"must be true or false, not {value!r}")


def duration(value: Any, *, most: float | None = None, whole_seconds: bool = False) -> float:
    """Seconds above 0: a number, or a number with a unit (``30s``, ``5m``, ``2h``, ``1d``), at most `most`."""
    seconds: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(min(value, 10**300))  # a huge int would overflow a float
    elif isinstance(value, str) and (m := _DURATION.fullmatch(value.strip())):
        seconds = float(m[1]) * _SECONDS[m[2]]
    if seconds is None or not 0 < seconds < float("inf") or (most is not None and seconds > most) \
            or (whole_seconds and seconds != int(seconds)):
        span = f"from 1 to {int(most) if most == int(most) else most}" if most is not None else "above 0"
        kind = "whole number" if whole_seconds else "number"
        raise FieldError(f"must be a {kind} of seconds {span} (or with a unit: 30s, 5m, 2h, 1d), not {value!r}")
    return seconds


def size(value: Any) -> int:
    """Bytes: an integer, or a number with K, M, G, T or P (powers of 1024, as `report.human` prints them)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    m = _SIZE.fullmatch(value.strip()) if isinstance(value, str) else None
    n = float(m[1]) * 1024 ** " KMGTP".index(m[2].upper() or " ") if m else float("inf")
    if n == float("inf"):  # not a size, or one too long to be one
        raise FieldError(f"must be a size such as 500M or 2G, not {value!r}")
    return int(n)


def text(value: Any) -> str:
    """A non-empty string without control characters (newlines, tabs, escapes)."""
    if not isinstance(value, str):
        raise FieldError(f"must be a string, not {kind_of(value)}")
    if not value or CONTROL.search(value):
        raise FieldError(f"must be a non-empty string without control characters (newlines, tabs), not {value!r}")
    return value


def address(value: Any) -> str:
    """What SSH may be pointed at: a DNS name or an IP literal; no spaces, options, zone ids or shell words."""
    good = False
    if isinstance(value, str):
        try:
            good = "%" not in str(ipaddress.ip_address(value)) and "%" not in value
        except ValueError:
            good = len(value) <= 253 and bool(_HOSTNAME.fullmatch(value)) and not value.startswith("-")
    if not good:
        raise FieldError(f"{value!r} must be a host name or an IP address "
                         "(letters, digits, '.', '-', ':'; no spaces, no leading '-', no zone id)")
    return value


def name(kind: str) -> Parse[str]:
    """A parser of safe names (letters, digits, ``_ . -``; `aegir.sh.check_name`) of `kind` (app, service...)."""
    def parse(value: Any) -> str:
        try:
            return check_name(kind, value)
        except AegirError as exc:
            raise FieldError(str(exc)) from None
    return parse


def choice(*options: str) -> Parse[str]:
    """A parser that takes one of `options`, as written."""
    def parse(value: Any) -> str:
        if isinstance(value, str) and value in options:
            return value
        said = " or ".join(", ".join(repr(o) for o in options).rsplit(", ", 1))
        raise FieldError(f"must be {said}, not {value!r}")
    return parse


def ip(value: Any, version: int | None = None) -> IP:
    """An IP address (IPv`version` only, when given), written alone: no zone id, no spaces around it."""
    family = f"an IPv{version}" if version else "an IP"
    if isinstance(value, str) and "%" in value:
        raise FieldError(f"{value!r} has a zone id: give the address alone")
    try:
        if not isinstance(value, str) or value != value.strip():
            raise ValueError(value)
        a = ipaddress.ip_address(value)
    except ValueError:
        raise FieldError(f"{value!r} is not {family} address") from None
    if version and a.version != version:
        raise FieldError(f"{value!r} is not {family} address")
    return a


def network(value: Any) -> Net:
    """An address or a network (``192.0.2.0/24``, ``2001:db8::1``); host bits are dropped."""
    try:
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ValueError(value)
        return ipaddress.ip_network(str(value), strict=False)
    except ValueError:
        raise FieldError(f"{value!r} is not an address or network") from None


def list_of(item: Parse[T], what: str = "values", *, single: bool = True) -> Parse[list[T]]:
    """A parser of a list of `item`s (`what` names them in the error); with `single`, one scalar is a list of one.

    A refused item is reported at its index (`FieldError.at`).
    """
    def parse(value: Any) -> list[T]:
        if single and isinstance(value, (str, int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, list):
            raise FieldError(f"must be a list of {what}")
        out = []
        for i, v in enumerate(value):
            try:
                out.append(item(v))
            except FieldError as exc:
                raise FieldError(exc.sentence, (i, *exc.at)) from None
            except ValueError as exc:
                raise FieldError(str(exc), (i,)) from None
        return out
    return parse


def kind_of(value: Any) -> str:
    """What a YAML value is, in words: "a mapping", "a list", "a number"..."""
    return {dict: "a mapping", list: "a list", str: "a string", int: "a number", float: "a number",
            bool: "a boolean", type(None): "null"}.get(type(value), type(value).__name__)


def unknown_key(key: Any, known: Iterable[str], what: str = "key") -> str:
    """The sentence for a key nobody reads: ``unknown key 'adress' (did you mean 'address'?)``."""
    known = list(known)
    close = difflib.get_close_matches(str(key), known, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known)}"
    return f"unknown {what} {key!r} ({hint})"


# --------------------------------------------------------------------------- a host's answer, by shape


class ShapeError(AegirError):
    """A host's answer of a shape its writer never gives: ``WHAT: PATH: expected X, got Y``."""


def read_json(text: str, what: str) -> Any:
    """`text` read as JSON, or `ShapeError` naming `what` (``cannot read WHAT: ...``): also for nesting too
    deep for Python's parser (a RecursionError, not a ValueError)."""
    import json

    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        reason = str(exc) if isinstance(exc, ValueError) else "nested too deeply"
        raise ShapeError(f"cannot read {what}: {reason}") from None


_KINDS = {"a mapping": Mapping, "a list": list, "a string": str}


@dataclass(frozen=True)
class Answer:
    """One value of a host's answer and where it sits (`what` names the answer: ``docker /networks``).

    ``Answer(rows, "docker /networks").items()`` -> one `Answer` per row; ``row["IPAM"]["Config"]`` walks
    into mappings (an absent key reads as null); `text`, `number`, `flag`, `mapping`, `items`, `pairs` read
    the value as that type, null as empty, anything else as `ShapeError`. Python's ``json`` also reads
    ``NaN`` and ``Infinity``: `number` refuses them.
    """

    value: Any
    what: str
    path: tuple[Any, ...] = ()

    def fail(self, expected: str) -> ShapeError:
        """The error for this value not being `expected` (``a list``)."""
        where = f"{self.what}: {_label(self.path)}" if self.path else self.what
        number = isinstance(self.value, (int, float)) and not isinstance(self.value, bool)
        got = (repr(self.value) if len(str(self.value)) <= 24 else "a number too large") if number \
            else kind_of(self.value)
        return ShapeError(f"{where}: expected {expected}, got {got}")

    def _as(self, expected: str) -> Any:
        if self.value is not None and not isinstance(self.value, _KINDS[expected]):
            raise self.fail(expected)
        return self.value

    def __getitem__(self, key: str) -> Answer:
        """The value at `key` of this mapping (null when absent)."""
        return Answer((self._as("a mapping") or {}).get(key), self.what, (*self.path, key))

    def get(self, key: str) -> Any:
        """The raw value at `key` (this being a mapping), for a caller that only compares it."""
        return self[key].value

    def mapping(self) -> Mapping[Any, Any]:
        return self._as("a mapping") or {}

    def present(self, expected: str = "a value") -> Answer:
        """This value, which must be there (not null)."""
        if self.value is None:
            raise self.fail(expected)
        return self

    def pairs(self) -> list[tuple[str, Answer]]:
        """A mapping's (key, value) pairs, sorted by key."""
        return [(str(k), Answer(v, self.what, (*self.path, str(k))))
                for k, v in sorted(self.mapping().items(), key=lambda kv: str(kv[0]))]

    def items(self) -> list[Answer]:
        """A list's items."""
        return [Answer(v, self.what, (*self.path, i)) for i, v in enumerate(self._as("a list") or ())]

    def texts(self) -> list[str]:
        """A list of strings (none of them null)."""
        return [i.present("a string").text() for i in self.items()]

    def text(self, default: str = "") -> str:
        """A string (`default` when null)."""
        value = self._as("a string")
        return default if value is None else value

    def number(self, default: int = 0) -> int:
        """A whole number (an integer, or a finite float: JSON has one kind of number); `default` when null."""
        if self.value is None:
            return default
        return self.value if isinstance(self.value, int) and not isinstance(self.value, bool) else int(self.real())

    def real(self, default: float = 0.0) -> float:
        """A finite number, as a float; `default` when null."""
        value = self.value
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail("a number")
        try:
            if not math.isfinite(value):
                raise OverflowError(value)
            return float(value)
        except OverflowError:  # an int too large for a float, too
            raise self.fail("a finite number") from None

    def flag(self) -> bool:
        """A boolean (false when null)."""
        if self.value is not None and not isinstance(self.value, bool):
            raise self.fail("true or false")
        return bool(self.value)


# --------------------------------------------------------------------------- one mapping, located


def _label(keys: Iterable[Any]) -> str:
    """``("names", 0, "cname")`` -> ``names[0].cname``."""
    out = ""
    for k in keys:
        out += f"[{k}]" if isinstance(k, int) and not isinstance(k, bool) else f".{k}" if out else str(k)
    return out


@dataclass(frozen=True)
class Fields:
    """One mapping of a YAML document, read key by key; each mistake located ``file:line``.

    `line` gives the line of a key path relative to this mapping (its nearest
    written ancestor's when the path goes deeper than the text). A message
    reads ``HEAD: PATH.KEY: sentence`` (`head`: whose settings these are,
    like a host's name; `path`: where the mapping sits, like ``("fw",)``),
    raised as `error(file, line, message)`.
    """

    values: Mapping[Any, Any]
    file: str
    line: Callable[[tuple[Any, ...]], int | None]
    head: str = ""
    path: tuple[Any, ...] = ()
    error: Callable[[str, int | None, str], Exception] = field(default=FieldsError, repr=False)

    def get(self, key: str, parse: Parse[T] | None = None, default: Any = None) -> Any:
        """The value of `key` through `parse` (`default` when absent or null, not parsed)."""
        value = self.values.get(key)
        if value is None:
            return default
        if parse is None:
            return value
        try:
            return parse(value)
        except FieldError as exc:
            raise self.fail((key, *exc.at), exc.sentence) from None
        except ValueError as exc:
            raise self.fail((key,), str(exc)) from None

    def check(self, known: Iterable[str], what: str = "key") -> None:
        """Refuse the first key not in `known`, at its line, with "did you mean"."""
        known = tuple(known)
        for key in self.values:
            if key not in known:
                raise self.error(self.file, self.line((key,)), self.say((), unknown_key(key, known, what)))

    def below(self, key: str, known: Iterable[str] | None = None) -> Fields:
        """The mapping under `key` (empty when absent), its keys checked against `known` if given."""
        value = self.values.get(key)
        if value is not None and not isinstance(value, Mapping):
            raise self.fail((key,), "must be a mapping")
        sub = self.at((key,), value or {})
        if known is not None:
            sub.check(known)
        return sub

    def at(self, keys: tuple[Any, ...], values: Any) -> Fields:
        """A reader of `values`, found at `keys` below this mapping (a list item: ``("names", 0)``)."""
        return Fields(values, self.file, lambda more: self.line((*keys, *more)), self.head, (*self.path, *keys),
                      self.error)

    def fail(self, keys: tuple[Any, ...], sentence: str) -> Exception:
        """The error for `sentence` about the value at `keys` (relative to this mapping), at its line."""
        return self.error(self.file, self.line(keys), self.say(keys, sentence))

    def say(self, keys: tuple[Any, ...], sentence: str) -> str:
        """``HEAD: PATH.KEYS: sentence`` (parts left out when empty)."""
        return ": ".join(p for p in (self.head, _label((*self.path, *keys)), sentence) if p)
