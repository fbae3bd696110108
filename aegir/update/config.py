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
from dataclasses import dataclass, field
from typing import Any

from aegir.errors import AegirError
from aegir.inventory import Host, Inventory
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
class Notifier:
    """How `update.announce` tells users: a command on the host, or an HTTP POST."""

    command: tuple[str, ...] = ()
    url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    timeout: float = 10.0

    @property
    def kind(self) -> str:
        return "command" if self.command else "http"


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
    fail = section.error

    def names(key: str, check) -> tuple[str, ...] | None:
        value = section.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise fail((key,), "must be a list of names")
        try:
            return tuple(check(v) for v in value)
        except AegirError as exc:
            raise fail((key,), str(exc)) from None

    crucial = names("crucial_units", check_unit)
    extra = names("extra_crucial_units", check_unit) or ()
    docker = names("extra_docker_packages", str) or ()
    reboot = names("reboot_packages", str)
    return UpdateConfig(
        crucial_units=tuple(dict.fromkeys((*(crucial if crucial is not None else DEFAULT_CRUCIAL_UNITS), *extra))),
        docker_packages=tuple(dict.fromkeys((*DOCKER_PACKAGES, *docker))),
        reboot_packages=reboot if reboot is not None else DEFAULT_REBOOT_PACKAGES,
        notifier=_notifier(section.get("notify"), fail),
    )


def _notifier(value: Any, fail) -> Notifier | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise fail(("notify",), "must be a mapping with 'command' or 'url'")
    for key in value:
        if key not in NOTIFY_KEYS:
            raise fail(("notify", key), f"unknown key (known: {', '.join(NOTIFY_KEYS)})")
    command, url = value.get("command"), value.get("url")
    if (command is None) == (url is None):
        raise fail(("notify",), "needs exactly one of 'command' (run on the host) or 'url' (HTTP POST)")
    if isinstance(command, str):
        try:
            command = shlex.split(command)
        except ValueError as exc:  # "No closing quotation", "No escaped character"
            raise fail(("notify", "command"), f"cannot be read as a command line ({str(exc).lower()}): "
                       "close the quote, or write the command as a list of words") from None
    if command is not None and (not isinstance(command, list) or not command
                                or not all(isinstance(w, str) for w in command)):
        raise fail(("notify", "command"), "must be a command line or a non-empty list of words")
    if url is not None and (not isinstance(url, str) or not url.startswith(("http://", "https://"))):
        raise fail(("notify", "url"), "must be an http:// or https:// URL")
    headers = value.get("headers") or {}
    if not isinstance(headers, Mapping) or not all(isinstance(k, str) and isinstance(v, str)
                                                   for k, v in headers.items()):
        raise fail(("notify", "headers"), "must map header names to strings")
    timeout = value.get("timeout", 10)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise fail(("notify", "timeout"), "must be a positive number of seconds")
    return Notifier(tuple(command or ()), url, dict(headers), float(timeout))
