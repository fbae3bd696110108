"""Sending a message to users through a notifier: a command run on the host, or an HTTP POST from here.

A notifier (`aegir.update.config.Notifier`, the inventory's ``update.notify``)
is either a command run on the host (the text on its stdin;
``AEGIR_HOST``/``AEGIR_WHEN`` in its environment) or an HTTP POST of a JSON
document from the machine running aegir. ``update.announce`` and
``mysql.checkpoint`` send through it.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

from aegir.errors import AegirError
from aegir.sh import Cmd
from aegir.update.config import Notifier

if TYPE_CHECKING:  # pragma: no cover
    from aegir.host import HostContext


def command_cmd(notifier: Notifier, text: str, *, host: str, when: str) -> Cmd:
    """The notifier command, run on the host, with the text on stdin."""
    return Cmd(notifier.command, env={"AEGIR_HOST": host, "AEGIR_WHEN": when}, stdin=text, timeout=notifier.timeout)


def post(notifier: Notifier, document: dict[str, Any], *, host: str) -> str:
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


def send(hc: HostContext, notifier: Notifier, text: str, document: dict[str, Any], *, when: str) -> str:
    """Send `text` through `notifier` (its command on the host, text on stdin) or POST `document`; its answer."""
    if notifier.command:
        done = hc.run(command_cmd(notifier, text, host=hc.name, when=when))
        first = (done.stdout.strip().splitlines() or [""])[0][:120]
        return "exit 0" + (f": {first}" if first else "")
    return post(notifier, document, host=hc.name)
