"""DNS names as aegir writes them: lower case, absolute (a trailing dot), validated.

>>> absolute("Cloud", "tedomum.net.")
'cloud.tedomum.net.'
>>> absolute("@", "tedomum.net.")
'tedomum.net.'
>>> domain("tedomum.in")
'tedomum.in.'
"""

from __future__ import annotations

import re

LABEL_RE = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)\Z")
#: Owner labels of SRV records: ``_matrix``, ``_tcp``.
SERVICE_LABEL_RE = re.compile(r"^_[a-z0-9][a-z0-9-]{0,61}\Z")
MAX_NAME = 253


def _labels(text: str) -> list[str]:
    return text.lower().rstrip(".").split(".")


def check_relative(text: object, *, underscore: bool = False) -> str:
    """A name relative to a domain (``cloud``, ``chat.irc``, ``@`` for the domain itself), or ValueError."""
    if not isinstance(text, str) or not text:
        raise ValueError(f"{text!r} is not a DNS name")
    if text == "@":
        return text
    if text.endswith("."):
        raise ValueError(f"{text!r}: write names relative to the domain, without a trailing dot")
    for label in _labels(text):
        if not (LABEL_RE.match(label) or (underscore and SERVICE_LABEL_RE.match(label))):
            raise ValueError(f"{text!r}: {label!r} is not a DNS label (letters, digits, '-', at most 63)")
    return text.lower()


def domain(text: object) -> str:
    """A domain written in hosts.yml (``tedomum.in`` or ``tedomum.in.``) -> ``tedomum.in.``, or ValueError."""
    if not isinstance(text, str) or not text.strip("."):
        raise ValueError(f"{text!r} is not a domain name")
    for label in _labels(text):
        if not LABEL_RE.match(label):
            raise ValueError(f"{text!r}: {label!r} is not a DNS label (letters, digits, '-', at most 63)")
    name = text.lower().rstrip(".") + "."
    if len(name) > MAX_NAME + 1:
        raise ValueError(f"{text!r} is longer than {MAX_NAME} characters")
    return name


def absolute(relative: str, origin: str) -> str:
    """`relative` (``@`` = the origin itself) under `origin` (absolute)."""
    return origin if relative == "@" else f"{relative.lower()}.{origin}"


def is_under(name: str, origin: str) -> bool:
    """Is absolute `name` `origin` itself or below it?"""
    return name == origin or name.endswith("." + origin)
