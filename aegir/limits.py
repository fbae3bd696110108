"""Bounded work per host: the limits on what a host's data may make aegir do on the operator's machine.

Each limit has a default here and can be set in the environment
(``AEGIR_LIMIT_<NAME>=<whole number>``, for one run: ``AEGIR_LIMIT_YAML_BYTES=8000000 inv …``).
A text or template over a limit is refused with a `LimitError` naming the
limit and its value, for that file or host only (the README has the table).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from aegir.errors import AegirError


@dataclass(frozen=True)
class Limit:
    """One limit: its name (``AEGIR_LIMIT_<name>``), its default, and what it counts."""

    name: str
    default: int
    unit: str

    @property
    def variable(self) -> str:
        return f"AEGIR_LIMIT_{self.name}"

    @property
    def value(self) -> int:
        """The default, or the environment's whole number (> 0)."""
        raw = os.environ.get(self.variable)
        if raw is None or not raw.strip():
            return self.default
        try:
            value = int(raw.strip().replace("_", ""))
        except ValueError:
            value = 0
        if value <= 0:
            raise LimitError(f"{self.variable}={raw!r}: a limit is a whole number above 0")
        return value

    def over(self, what: str) -> str:
        """The sentence of a refusal: ``WHAT, over the limit of N UNIT (AEGIR_LIMIT_NAME)``."""
        return f"{what}, over the limit of {self.value:,} {self.unit} ({self.variable})"


class LimitError(AegirError):
    """Some data from a host asks for more work than a limit allows (or a limit is set wrongly)."""


#: Bytes of one YAML text aegir parses (a compose file, hosts.yml, a recipe).
YAML_BYTES = Limit("YAML_BYTES", 1024 * 1024, "bytes")
#: Characters of all scalars of one YAML document, aliases counted at each use (refused while composing).
YAML_EXPANDED = Limit("YAML_EXPANDED", 16 * 1024 * 1024, "characters")
#: Bytes of a host's firewall template.
TEMPLATE_BYTES = Limit("TEMPLATE_BYTES", 1024 * 1024, "bytes")
#: Characters a host's firewall template may produce (output and every string or list it builds).
TEMPLATE_OUTPUT = Limit("TEMPLATE_OUTPUT", 32 * 1024 * 1024, "characters")
#: Milliseconds a host's firewall template may take to render.
TEMPLATE_MS = Limit("TEMPLATE_MS", 5_000, "ms")
#: Loop iterations a host's firewall template may make (all loops of one rendering together, and the items
#: of the lists its filters make).
TEMPLATE_LOOPS = Limit("TEMPLATE_LOOPS", 1_000_000, "iterations")

ALL = (YAML_BYTES, YAML_EXPANDED, TEMPLATE_BYTES, TEMPLATE_OUTPUT, TEMPLATE_MS, TEMPLATE_LOOPS)
