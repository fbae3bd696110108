"""Exposures + settings -> the nftables ruleset text, through a Jinja2 template.

The template shipped with aegir (``aegir/fw/nftables.nft.j2``) is used unless
the host has ``<srv>/templates/nftables.nft.j2``. Every value reaching the
template is an element string built here (addresses, networks, ports), so a
template only arranges them. A template that does not parse or render raises
`TemplateError` naming ``file:line``; rendering is deterministic (same input,
same bytes), which is what "nothing changed" is measured against.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from aegir import limits
from aegir.errors import AegirError
from aegir.fw.model import Addr, Exposures, admin_addresses
from aegir.fw.settings import FwSettings, Rule
from aegir.inventory import Host

if TYPE_CHECKING:  # pragma: no cover
    import jinja2  # imported when a ruleset is rendered: not on `inv --list`'s path

TEMPLATE_NAME = "nftables.nft.j2"
PACKAGED = f"aegir/fw/{TEMPLATE_NAME}"


class TemplateError(AegirError):
    """The ruleset template does not parse or does not render (``file:line: why``)."""


@dataclass(frozen=True)
class Template:
    """A template's source and where it came from (for messages)."""

    source: str
    origin: str


def override_path(host: Host) -> str:
    """Where a host's own template lives: ``<srv>/templates/nftables.nft.j2``."""
    return host.srv_path("templates", TEMPLATE_NAME)


def packaged() -> Template:
    """The template shipped with aegir."""
    return Template(resources.files("aegir.fw").joinpath(TEMPLATE_NAME).read_text(encoding="utf-8"), PACKAGED)


def elements(items: Sequence[str], notes: Sequence[str] | None = None) -> str:
    """A set's ``elements = { ... }`` block, one element a line (a Jinja filter: fast for 10^5 elements)."""
    if not items:
        return ""
    if notes:
        lines = [f"\t\t\t{item},  # {note}" for item, note in zip(items, notes)]
    else:
        lines = [f"\t\t\t{item}," for item in items]
    return "\n\t\telements = {\n" + "\n".join(lines) + "\n\t\t}"


def comment(text: str) -> str:
    """`text` made safe for an nft ``# comment``: printable ASCII only, one line (others become ``?``)."""
    return "".join(ch if " " <= ch <= "~" else "?" for ch in str(text))


def address_text(a: Addr) -> str:
    """``str(a)``, 3 times faster: ``inet_ntop`` prints an address as `ipaddress` does (lower-case hex, no
    leading zero, the longest run of two zero groups or more as ``::``, the first of equal runs), but for
    an IPv6 address it prints with an IPv4 tail (``::ffff:1.2.3.4``: a dot) or one with a scope id: those
    are `ipaddress`'s own text."""
    if isinstance(a, ipaddress.IPv4Address):
        return socket.inet_ntop(socket.AF_INET, a.packed)
    if a.scope_id is None:
        found = socket.inet_ntop(socket.AF_INET6, a.packed)
        if "." not in found:
            return found
    return str(a)


def _compile(source: str, origin: str) -> "jinja2.Template":
    size = len(source.encode("utf-8", "surrogatepass"))
    if size > limits.TEMPLATE_BYTES.value:
        raise TemplateError(f"{origin}: template refused: {limits.TEMPLATE_BYTES.over(f'it has {size:,} bytes')}")
    return _compiled(source, origin)


@lru_cache(maxsize=8)
def _compiled(source: str, origin: str) -> "jinja2.Template":
    import jinja2

    from aegir.fw.sandbox import BudgetedEnvironment, guarded

    # A host's template is data from that host: sandboxed, so it can arrange the values it is
    # given and nothing more (no attribute walk to os.popen on the operator's machine), and
    # within a render budget (aegir.fw.sandbox: what it builds, its loops, its time).
    env = BudgetedEnvironment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    env.filters["elements"] = guarded("elements", elements)
    try:
        return env.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"{origin}:{exc.lineno}: template error: {exc.message}") from None


#: The container interfaces when neither the settings nor Docker name any (Docker not started yet).
FALLBACK_INTERFACES = ("docker0",)


def context(host: Host, settings: FwSettings, exposures: Exposures,
            bridges: Sequence[str] = ()) -> dict[str, Any]:
    """What the template sees: element strings per IP version, and the warnings.

    The container interfaces are the settings' if given, else `bridges` (Docker's bridge networks).
    """

    def rules(rs: Sequence[Rule], v: int) -> list[str]:
        return [f"{r.net} . {r.proto} . {r.ports}" for r in rs if r.family == v]

    admin = admin_addresses(host)
    # str() (and hash()) of an address is slow, and the same few objects come back (a host has few
    # addresses, a container one or two): their text is made once per object, looked up by identity
    objects = {id(e.host_addr): e.host_addr for e in exposures.items}
    objects.update((id(e.target_addr), e.target_addr) for e in exposures.items)
    text = {i: address_text(a) for i, a in objects.items()}
    dnat = {v: exposures.of(v) for v in (4, 6)}
    # a container's name, made a comment once (it publishes several ports)
    notes = {name: comment(name) for name in {e.container for e in exposures.items}}

    return {
        "host": host.name,
        "ssh_port": settings.ssh_port,
        "admin": {v: [str(a) for a in admin[v]] for v in (4, 6)},
        "ssh_from": {v: [str(n) for n in settings.sources(v)] for v in (4, 6)},
        "peers": {v: [str(a) for a in settings.ipsec_peers if a.version == v] for v in (4, 6)},
        "inputs": {v: rules(settings.input, v) for v in (4, 6)},
        "outputs": {v: rules(settings.output, v) for v in (4, 6)},
        "interfaces": list(settings.container_interfaces or bridges or FALLBACK_INTERFACES),
        "dnat": {v: [f"{text[id(e.host_addr)]} . {e.proto} . {e.host_port} : {text[id(e.target_addr)]} . "
                     f"{e.target_port}" for e in dnat[v]] for v in (4, 6)},
        "dnat_notes": {v: [notes[e.container] for e in dnat[v]] for v in (4, 6)},
        # IPv6 only: an IPv4 container address is private, reached through the dnat maps alone
        "exposed": {6: [f"{text.get(id(a)) or address_text(a)} . {p} . {port}"
                        for a, p, port in exposures.targets(6)]},
        "warnings": [comment(w) for w in exposures.warnings],
    }


def render(host: Host, settings: FwSettings, exposures: Exposures, template: Template | None = None,
           bridges: Sequence[str] = ()) -> str:
    """The ruleset text for `host` (raises `TemplateError` with the template's file:line)."""
    import jinja2
    from jinja2.exceptions import SecurityError

    from aegir.fw.sandbox import Refused, rendering

    tpl = template or packaged()
    compiled = _compile(tpl.source, tpl.origin)
    values = context(host, settings, exposures, bridges)
    try:
        return rendering(compiled.generate(values))
    except Refused as exc:
        raise TemplateError(f"{tpl.origin}:{_line(tpl) or '?'}: template refused: {exc}") from None
    except SecurityError as exc:
        raise TemplateError(f"{tpl.origin}:{_line(tpl) or '?'}: template refused: it reaches outside the "
                            f"values it is given ({exc}); nothing was run") from None
    except Exception as exc:  # a template is code: `{{ dnat[4] + 1 }}` raises TypeError, not a jinja2 error
        why = exc if isinstance(exc, jinja2.TemplateError) else f"{type(exc).__name__}: {exc}"
        raise TemplateError(f"{tpl.origin}:{_line(tpl) or '?'}: template error: {why}") from None


def _line(tpl: Template) -> int | None:
    """The template line being rendered when the current exception was raised."""
    tb = sys.exc_info()[2]
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
