"""Telling users: a notifier sends a text through a command run on the host, or an HTTP POST from here.

A `Notifier` is read from the inventory's ``update.notify`` section
(`aegir.update.settings`). A command notifier runs on the host with the text
on its stdin and ``AEGIR_HOST``/``AEGIR_WHEN`` in its environment; an HTTP
notifier receives a JSON document, POSTed from the machine running aegir.
``update.announce`` and ``mysql.checkpoint`` send through `send`: it is acting
code (it changes what users know), called from their steps only.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aegir.errors import AegirError
from aegir.sh import Cmd

if TYPE_CHECKING:  # pragma: no cover
    from aegir.host import HostContext


@dataclass(frozen=True)
class Notifier:
    """How users are told: a command on the host, or an HTTP POST."""

    command: tuple[str, ...] = ()
    url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    timeout: float = 10.0

    @property
    def kind(self) -> str:
        return "command" if self.command else "http"


def command_cmd(notifier: Notifier, text: str, *, host: str, when: str) -> Cmd:
    """The notifier command, run on the host, with the text on stdin."""
    return Cmd(notifier.command, env={"AEGIR_HOST": host, "AEGIR_WHEN": when}, stdin=text, timeout=notifier.timeout)


def post(notifier: Notifier, document: Mapping[str, Any], *, host: str) -> str:
    """POST `document` as JSON to the notifier's URL; returns ``HTTP <status>``."""
    assert notifier.url
    body = json.dumps(document).encode()
    request = urllib.request.Request(notifier.url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", **notifier.headers})
    try:
        with urllib.request.urlopen(request, timeout=notifier.timeout) as response:
            return f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        raise AegirError(f"notifier POST {notifier.url} answered HTTP {exc.code} {exc.reason}", host=host) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise AegirError(f"notifier POST {notifier.url} failed: {reason}", host=host) from None


def send(hc: HostContext, notifier: Notifier, text: str, document: Mapping[str, Any], *, when: str) -> str:
    """Send `text` through `notifier` (its command on the host, text on stdin) or POST `document`; its answer
    (``exit 0: <first line>``, ``HTTP 204``)."""
    if notifier.command:
        done = hc.run(command_cmd(notifier, text, host=hc.name, when=when))
        first = (done.stdout.strip().splitlines() or [""])[0][:120]
        return "exit 0" + (f": {first}" if first else "")
    return post(notifier, document, host=hc.name)
