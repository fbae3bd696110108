"""Telling users before an upgrade: the announcement's text and the notifiers that send it.

The text says, per host, what the reviewed upgrade will do and how long each
service is expected to be interrupted: every running Compose project when
Docker restarts (unless live-restore keeps containers up), each crucial unit
restarted. A notifier is either a command run on the host (the text on its
stdin; ``AEGIR_HOST``/``AEGIR_WHEN`` in its environment) or an HTTP POST of a
JSON document from the machine running aegir (`aegir.update.config`).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from aegir.compose.state import LABEL_PROJECT, LABEL_WORKING_DIR
from aegir.docker import DockerUnavailable
from aegir.errors import AegirError, RefusedError
from aegir.sh import Cmd, write_file_cmd
from aegir.update.config import Notifier
from aegir.update.records import ANNOUNCE_PATH, REVIEW_PATH, AnnounceRecord, ReviewRecord, read_cmd
from aegir.update.review import live_restore

if TYPE_CHECKING:  # pragma: no cover
    from aegir.host import HostContext



@dataclass(frozen=True)
class Interruption:
    """One service and what the upgrade does to it."""

    service: str
    expected: str


def services_of(containers: Sequence[Any], srv: str) -> tuple[str, ...]:
    """Running services from Docker container objects: ``apps/web`` per Compose project, else the name."""
    out = []
    for c in containers:
        labels = getattr(c, "labels", None) or {}
        workdir = labels.get(LABEL_WORKING_DIR, "")
        if labels.get(LABEL_PROJECT):
            prefix = srv.rstrip("/") + "/"
            out.append(workdir[len(prefix):] if workdir.startswith(prefix) else labels[LABEL_PROJECT])
        else:
            out.append(getattr(c, "name", "?"))
    return tuple(sorted(set(out)))


def interruptions(record: ReviewRecord, services: Sequence[str], live_restore: bool | None) -> tuple[Interruption, ...]:
    """What each service should expect from the reviewed upgrade."""
    out: list[Interruption] = []
    docker = [p for p in record.risky if record.kinds.get(p) == "docker"]
    if docker:
        if live_restore:
            expected = "keeps running (live-restore); Docker's API pauses for a few seconds"
        else:
            expected = f"stops and restarts with Docker ({', '.join(docker)}): about a minute"
        out += [Interruption(s, expected) for s in services] or [Interruption("docker", expected)]
    for effect in record.effects:
        if effect.startswith("would restart ") and not effect.startswith("would restart docker"):
            unit, _, via = effect[len("would restart "):].partition(" via ")
            out.append(Interruption(unit, f"restarts ({via}): a few seconds"))
    return tuple(out)


def compose_text(host: str, message: str, when: str, record: ReviewRecord,
                 cuts: Sequence[Interruption]) -> str:
    """The announcement for one host, as users read it."""
    lines = [message.strip()]
    if when:
        lines.append(f"When: {when}")
    n = len(record.versions)
    lines.append(f"{host}: {n} package{'s' if n != 1 else ''} upgraded"
                 + (f"; {'; '.join(record.effects)}" if record.effects else "; no service interruption expected"))
    lines += [f"  - {c.service}: {c.expected}" for c in cuts]
    return "\n".join(lines) + "\n"


def command_cmd(notifier: Notifier, text: str, *, host: str, when: str) -> Cmd:
    """The notifier command, run on the host, with the text on stdin."""
    return Cmd(notifier.command, env={"AEGIR_HOST": host, "AEGIR_WHEN": when}, stdin=text, timeout=notifier.timeout)


def payload(host: str, message: str, when: str, text: str, record: ReviewRecord,
            cuts: Sequence[Interruption]) -> dict[str, Any]:
    """The JSON document an HTTP notifier receives."""
    return {"host": host, "message": message, "when": when, "text": text, "effects": list(record.effects),
            "packages": {k: list(v) for k, v in record.versions.items()},
            "interruptions": [asdict(c) for c in cuts]}


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


def send(hc: "HostContext", notifier: Notifier, text: str, document: dict[str, Any], *, when: str) -> str:
    """Send `text` through `notifier` (its command on the host, text on stdin) or POST `document`; its answer."""
    if notifier.command:
        done = hc.run(command_cmd(notifier, text, host=hc.name, when=when))
        first = (done.stdout.strip().splitlines() or [""])[0][:120]
        return "exit 0" + (f": {first}" if first else "")
    return post(notifier, document, host=hc.name)


@dataclass(frozen=True)
class Announced:
    """One host's announcement: its text, how it was sent and what the notifier answered."""

    text: str
    notifier: str  # "command" | "http" | "none"
    response: str
    interruptions: tuple[Interruption, ...] = ()
    sent: bool = False


def announce_host(hc: "HostContext", notifier: Notifier | None, *, message: str, when: str, dry: bool,
                  now: float) -> Announced:
    """Tell users what the reviewed upgrade of `hc` will do; record it on the host (unless `dry`)."""
    record = ReviewRecord.from_json(hc.run(read_cmd(REVIEW_PATH)).stdout, hc.name)
    if record is None:
        raise RefusedError("no review to announce: run `inv update.review` first", host=hc.name)
    restore, why = live_restore(hc) if record.risky else (None, None)
    try:  # only once live_restore found Docker running: asking its socket may start it
        services = services_of(hc.docker().containers.list(), hc.host.srv) if record.risky and not why else ()
    except DockerUnavailable:
        services = ()
    cuts = interruptions(record, services, restore)
    text = compose_text(hc.name, message, when, record, cuts)
    if dry:
        return Announced(text, notifier.kind if notifier else "none", "not sent (--dry)", cuts)
    if notifier is None:
        raise AegirError("no notifier: set update.notify.command (run on the host) or update.notify.url "
                         "(HTTP POST) in the inventory", host=hc.name)
    response = send(hc, notifier, text, payload(hc.name, message, when, text, record, cuts), when=when)
    hc.run(write_file_cmd(ANNOUNCE_PATH, AnnounceRecord(now, record.digest, message, when, notifier.kind, text).to_json()))
    return Announced(text, notifier.kind, response, cuts, True)
