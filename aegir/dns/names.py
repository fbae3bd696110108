"""DNS names as aegir writes them: A-labels, lower case, absolute (a trailing dot), checked as DNS names.

Every name from hosts.yml or a project passes `label` (one label: an IDN is
converted to its A-label form, ``xn--...``, with IDNA 2003's nameprep, which
case-folds; at most 63 octets) and, once absolute, `check_absolute` (at most
255 octets in wire form), before any zone text is made: a zone holds only names
every server loads.

>>> absolute("Cloud", "tedomum.net.")
'cloud.tedomum.net.'
>>> absolute("@", "tedomum.net.")
'tedomum.net.'
>>> domain("tedomum.in")
'tedomum.in.'
>>> check_relative("Café")
'xn--caf-dma'
"""

from __future__ import annotations

import encodings.idna
import re

LABEL_RE = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)\Z")
#: Owner labels of SRV records: ``_matrix``, ``_tcp``.
SERVICE_LABEL_RE = re.compile(r"^_[a-z0-9][a-z0-9-]{0,61}\Z")
MAX_LABEL = 63
#: A name is at most 255 octets in wire form: 254 characters written absolute (``a.b.`` is 5 octets).
MAX_WIRE = 255
MAX_NAME = MAX_WIRE - 2  # characters of a name written without its trailing dot


def wire_length(name: str) -> int:
    """Octets of `name` (absolute or not, already A-labels) in wire form: each label and its length, then the root."""
    body = name.rstrip(".")
    return len(body) + 2 if body else 1


def label(text: str, *, underscore: bool = False) -> str:
    """One label as written in a zone: its A-label form, lower case; ValueError saying why it cannot be one.

    >>> label("ÉCOLE")
    'xn--cole-9oa'
    """
    folded = text.lower()
    if not folded.isascii():
        try:
            folded = encodings.idna.ToASCII(text).decode("ascii").lower()
        except UnicodeError as exc:
            raise ValueError(f"{text!r} cannot be written as an IDN A-label ({exc})") from None
    elif folded.startswith("xn--"):
        try:
            encodings.idna.ToUnicode(folded)
        except UnicodeError:
            raise ValueError(f"{text!r} is not a valid IDN A-label (xn-- then punycode)") from None
    if len(folded) > MAX_LABEL:
        raise ValueError(f"{text!r} is {len(folded)} octets long: a DNS label is at most {MAX_LABEL}")
    if LABEL_RE.match(folded) or (underscore and SERVICE_LABEL_RE.match(folded)):
        return folded
    raise ValueError(f"{text!r} is not a DNS label (letters, digits, '-' inside, at most {MAX_LABEL})")


def _labels(text: str, *, underscore: bool = False) -> str:
    """`text` (no trailing dot), each label checked: the A-label form, lower case."""
    out = []
    for one in text.split("."):
        try:
            out.append(label(one, underscore=underscore))
        except ValueError as exc:
            raise ValueError(f"{text!r}: {exc}" if "." in text else str(exc)) from None
    return ".".join(out)


def check_relative(text: object, *, underscore: bool = False) -> str:
    """A name relative to a domain (``cloud``, ``chat.irc``, ``@`` for the domain itself), or ValueError."""
    if not isinstance(text, str) or not text:
        raise ValueError(f"{text!r} is not a DNS name")
    if text == "@":
        return text
    if text.endswith("."):
        raise ValueError(f"{text!r}: write names relative to the domain, without a trailing dot")
    name = _labels(text, underscore=underscore)
    if wire_length(name) > MAX_WIRE:
        raise ValueError(f"{text!r} is {wire_length(name)} octets in wire form: a DNS name is at most {MAX_WIRE}")
    return name


def check_absolute(name: str) -> str:
    """Absolute `name` (checked labels) if it fits a DNS name, else ValueError saying by how much it does not."""
    if wire_length(name) > MAX_WIRE:
        raise ValueError(f"{name} is {wire_length(name)} octets in wire form: a DNS name is at most {MAX_WIRE}")
    return name


def domain(text: object) -> str:
    """A domain written in hosts.yml (``tedomum.in`` or ``tedomum.in.``) -> ``tedomum.in.``, or ValueError."""
    if not isinstance(text, str) or not text.strip("."):
        raise ValueError(f"{text!r} is not a domain name")
    name = _labels(text[:-1] if text.endswith(".") else text) + "."
    if wire_length(name) > MAX_WIRE:
        raise ValueError(f"{text!r} is {wire_length(name)} octets in wire form: a DNS name is at most {MAX_WIRE}")
    return name


def absolute(relative: str, origin: str) -> str:
    """`relative` (``@`` = the origin itself; already checked) under `origin` (absolute)."""
    return origin if relative == "@" else f"{relative.lower()}.{origin}"


def is_under(name: str, origin: str) -> bool:
    """Is absolute `name` `origin` itself or below it?"""
    return name == origin or name.endswith("." + origin)


def has_service_label(name: str) -> bool:
    """Does `name` hold a label starting with ``_`` (the ``_service._proto`` space)?"""
    return any(one.startswith("_") for one in name.split("."))
