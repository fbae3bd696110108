"""The inventory's ``update:`` section, validated (file:line errors), with sane defaults.

::

    defaults:
      update:
        crucial_units: [ssh.service, nftables.service]   # replaces the default list
        extra_crucial_units: [traefik-watch.service]      # added to it
        extra_docker_packages: [docker-ce-rootless-extras]
        reboot_packages: ["linux-image-*", libc6, systemd] # replaces the default patterns
        notify:                                # how update.announce tells users
          command: [/usr/local/bin/announce, --channel, ops]   # run on the host, text on stdin
          # or
          url: https://status.example.org/api/announce        # HTTP POST (JSON) from here
          headers: {Authorization: "Bearer ..."}
          timeout: 10

Hosts may set their own ``update:``; it merges one level deep with the
defaults' (inventory rules).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aegir import fields
from aegir.errors import AegirError
from aegir.fields import Fields
from aegir.inventory import Host, Inventory
from aegir.notify import Notifier
from aegir.update.apt import check_unit

#: Units whose restart users notice (a unit's aliases count: sshd.service is ssh.service).
DEFAULT_CRUCIAL_UNITS = (
    "ssh.service", "nftables.service", "systemd-networkd.service", "networking.service",
    "systemd-resolved.service", "docker.service", "docker.socket", "containerd.service",
)
#: Packages of the Docker engine itself: upgrading them restarts Docker.
DOCKER_PACKAGES = (
    "docker.io", "docker-ce", "docker-engine", "moby-engine", "containerd", "containerd.io",
    "moby-containerd", "runc", "moby-runc",
)
#: Packages (shell patterns) whose upgrade takes effect only after a reboot.
DEFAULT_REBOOT_PACKAGES = (
    "linux-image-*", "linux-signed-image-*", "libc6", "systemd", "systemd-sysv", "libsystemd-shared",
    "udev", "dbus", "dbus-daemon", "dbus-system-bus-common", "*-microcode", "firmware-*",
)

KEYS = ("crucial_units", "extra_crucial_units", "extra_docker_packages", "reboot_packages", "notify")
NOTIFY_KEYS = ("command", "url", "headers", "timeout")


@dataclass(frozen=True)
class UpdateConfig:
    """What `update` needs to know about one host."""

    crucial_units: tuple[str, ...] = DEFAULT_CRUCIAL_UNITS
    docker_packages: tuple[str, ...] = DOCKER_PACKAGES
    reboot_packages: tuple[str, ...] = DEFAULT_REBOOT_PACKAGES
    notifier: Notifier | None = None


def for_host(inv: Inventory, host: Host) -> UpdateConfig:
    """Validate `host`'s ``update:`` section; errors point at the inventory line."""
    section = inv.section(host, "update", KEYS)
    units = fields.list_of(_unit, "unit names", single=False)
    names = fields.list_of(fields.text, "package names", single=False)
    crucial = section.get("crucial_units", units)
    extra = section.get("extra_crucial_units", units, ())
    docker = section.get("extra_docker_packages", names, ())
    reboot = section.get("reboot_packages", names)
    return UpdateConfig(
        crucial_units=tuple(dict.fromkeys((*(crucial if crucial is not None else DEFAULT_CRUCIAL_UNITS), *extra))),
        docker_packages=tuple(dict.fromkeys((*DOCKER_PACKAGES, *docker))),
        reboot_packages=tuple(reboot) if reboot is not None else DEFAULT_REBOOT_PACKAGES,
        notifier=_notifier(section),
    )


def _unit(value: Any) -> str:
    try:
        return check_unit(fields.text(value))
    except AegirError as exc:
        raise fields.FieldError(str(exc)) from None


def _notifier(section: Fields) -> Notifier | None:
    if section.get("notify") is None:
        return None
    notify = section.below("notify", NOTIFY_KEYS)
    command, url = notify.get("command", _command), notify.get("url", _url)
    if (command is None) == (url is None):
        raise section.fail(("notify",), "needs exactly one of 'command' (run on the host) or 'url' (HTTP POST)")
    headers = notify.get("headers", _headers, {})
    timeout = notify.get("timeout", fields.duration, 10.0)
    return Notifier(tuple(command or ()), url, headers, timeout)


def _command(value: Any) -> list[str]:
    if isinstance(value, str):
        try:
            value = shlex.split(value)
        except ValueError as exc:  # "No closing quotation", "No escaped character"
            raise fields.FieldError(f"cannot be read as a command line ({str(exc).lower()}): "
                                    "close the quote, or write the command as a list of words") from None
    if not isinstance(value, list) or not value or not all(isinstance(w, str) for w in value):
        raise fields.FieldError("must be a command line or a non-empty list of words")
    return value


def _url(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise fields.FieldError("must be an http:// or https:// URL")
    return value


def _headers(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise fields.FieldError("must map header names to strings")
    return dict(value)
