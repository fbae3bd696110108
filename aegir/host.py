"""One host as a task's function sees it: its inventory entry, a live connection, its facts.

`open_context(c, host)` returns a `HostContext`: an Invoke `Context` for the
local host, a Fabric `Connection` otherwise (a `Context` too, so code written
against ``c.run`` works for both). SSH host keys are checked against the host's
known_hosts file; an unknown key is refused with the command that lets the
operator check and accept it. Nothing is ever added to known_hosts silently.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from aegir import sh
from aegir.errors import HostKeyError, UnreachableError
from aegir.inventory import Host
from aegir.sh import Cmd

if TYPE_CHECKING:  # pragma: no cover
    import docker
    from invoke import Context
    from invoke.runners import Result

    from aegir.facts import Fact

T = TypeVar("T")


def as_run(host: Host, cmd: Cmd) -> Cmd:
    """`cmd` as it runs on `host`: through ``sudo -n`` on a ``sudo: true`` host.

    Every aegir command is an admin command, so a sudo host runs all of them as root.
    """
    return dataclasses.replace(cmd, sudo=True) if host.sudo and not cmd.sudo else cmd


@dataclass
class HostContext:
    """One host as a per-host function sees it: its inventory entry and a live context.

    ``hc.run(cmd)`` runs a `Cmd` there (raising `CommandError` on failure);
    ``hc.docker()`` is a Docker SDK client for that host's daemon, opened once.
    """

    host: Host
    c: "Context"
    _docker: Any = field(default=None, repr=False)
    _facts: dict[tuple[str, str], Any] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.host.name

    def run(self, cmd: Cmd, *, check: bool = True, stream: bool = False) -> "Result":
        """Run `cmd` on the host, as `as_run` spells it; `stream` also prints its output as it comes.

        `CommandError` (host, line, exit code, stderr tail) on failure.
        """
        return sh.run(self.c, as_run(self.host, cmd), host=self.host.name, check=check, stream=stream)

    def docker(self) -> "docker.DockerClient":
        """The Docker SDK client of this host (cached for this context)."""
        if self._docker is None:
            from aegir.docker import client_for

            self._docker = client_for(self)
        return self._docker

    def connect(self) -> None:
        """(Re)open the SSH connection if it is not up; no-op for the local host.

        Every failure to connect becomes `UnreachableError` (or `HostKeyError`)
        with a one-line reason, whether at the start or on a reconnect (the
        Docker API calls this before each new channel).
        """
        if self.host.is_local or self.c.is_connected:
            return
        _connect(self.c, self.host)

    def fact(self, fact: "Fact[T]") -> T:
        """One fact of this host (`aegir.facts`), asked once for the life of this context."""
        return self.facts(fact)[0]

    def facts(self, *facts: "Fact[Any]") -> tuple[Any, ...]:
        """The parsed answers of `facts`, in order; those not known yet asked in one round trip.

        A fact whose command exits with a code that is not one of its answers
        raises `CommandError` (host, command, exit code, stderr tail).
        """
        missing = [f for f in facts if not f.cache or f.key not in self._facts]
        if len(missing) == 1:
            r = self.run(missing[0].cmd, check=False)
            replies = [sh.Reply(r.stdout, r.stderr, r.exited)]
        elif missing:
            replies = list(sh.split_batch(self.run(sh.batch([f.cmd for f in missing])).stdout, len(missing)))
        fresh = {id(f): f.read(reply, host=self.name) for f, reply in zip(missing, replies)} if missing else {}
        for f in missing:
            if f.cache:
                self._facts[f.key] = fresh[id(f)]
        return tuple(fresh[id(f)] if id(f) in fresh else self._facts[f.key] for f in facts)

    def forget(self, *facts: "Fact[Any]") -> None:
        """Drop what this context knows of `facts` (after a change): the next ask runs them again."""
        for f in facts:
            self._facts.pop(f.key, None)

    def close(self) -> None:
        client, self._docker = self._docker, None
        if client is not None:
            try:
                client.close()
            except Exception:  # closing a broken client must not mask the result
                pass
        closer = getattr(self.c, "close", None)
        if closer is not None:
            closer()


class _RefuseUnknown:
    """Paramiko host-key policy: refuse with a message saying how to accept."""

    def __init__(self, host: Host, known_hosts: str) -> None:
        self.host = host
        self.known_hosts = known_hosts

    def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
        addr = self.host.address or self.host.name
        port = self.host.port
        scan = f"ssh-keyscan {f'-p {port} ' if port != 22 else ''}{addr}"
        raise HostKeyError(
            f"unknown SSH host key {key.get_name()} {key.fingerprint} for {hostname}, "
            f"not in {self.known_hosts}; check that fingerprint out of band, then accept it "
            f"with: {scan} >> {self.known_hosts}",
            host=self.host.name,
        )


def open_context(c: "Context", host: Host) -> HostContext:
    """Connect to `host` (no-op for the local one) and wrap it in a `HostContext`.

    Raises `UnreachableError`/`HostKeyError` with a one-line reason.
    """
    if host.is_local:
        from invoke import Context

        return HostContext(host, Context(config=c.config))
    from fabric import Connection

    # paramiko logs its own tracebacks for failed handshakes on stderr; the
    # outcome row already says why (a handler configured by --debug still sees them).
    logging.getLogger("paramiko").addHandler(logging.NullHandler())
    known_hosts = os.path.expanduser(host.known_hosts)
    kwargs: dict[str, Any] = {}
    if host.identity:
        kwargs["key_filename"] = [os.path.expanduser(host.identity)]
    conn = Connection(  # connect timeout: ssh_config's ConnectTimeout, else timeouts.connect (-t)
        host.address or host.name,
        user=host.user,
        port=host.port,
        config=fabric_config(c.config),
        connect_kwargs=kwargs,
    )
    keys = conn.client.get_host_keys()
    if os.path.exists(known_hosts):
        keys.load(known_hosts)
    conn.client.set_missing_host_key_policy(_RefuseUnknown(host, known_hosts))
    hc = HostContext(host, conn)
    hc.connect()
    return hc


_fabric_configs: list[tuple[Any, Any]] = []  # (the program's config, its Fabric twin)
_fabric_lock = threading.Lock()


def fabric_config(config: Any) -> Any:
    """Fabric's `Config` for the program's (Invoke's) `config`: once per run, with the operator's ssh_config.

    The program keeps a plain Invoke config so that nothing imports Fabric or
    paramiko before the first SSH connection. Fabric's defaults (its remote
    runners, user, port) come in here; ``-S``/``ssh_config_path``, or else the
    user's and the system's ssh_config files, are read once.
    """
    from fabric import Config as FabricConfig

    if isinstance(config, FabricConfig):
        return config
    with _fabric_lock:
        for mine, twin in _fabric_configs:
            if mine is config:
                return twin
        twin = config.clone(into=FabricConfig)
        connect = (config.get("timeouts") or {}).get("connect")
        if connect is not None and twin.timeouts.connect is None:  # Fabric's default (None) went over ours
            twin.timeouts.connect = connect
        twin.load_ssh_config()
        _fabric_configs.append((config, twin))
        return twin


def _connect(conn: Any, host: Host) -> None:
    from paramiko.ssh_exception import (
        AuthenticationException,
        BadHostKeyException,
        NoValidConnectionsError,
        SSHException,
    )

    where = host.ssh_target
    known_hosts = os.path.expanduser(host.known_hosts)
    try:
        conn.open()
    except HostKeyError:
        raise
    except BadHostKeyException as exc:
        raise HostKeyError(
            f"SSH host key for {where} does NOT match {known_hosts} "
            f"(got {exc.key.get_name()} {exc.key.fingerprint}); refusing to connect",
            host=host.name,
        ) from None
    except AuthenticationException as exc:
        raise UnreachableError(f"SSH authentication failed for {where}: {exc}", host=host.name) from None
    except NoValidConnectionsError as exc:
        reasons = "; ".join(sorted({getattr(e, 'strerror', None) or str(e) for e in exc.errors.values()}))
        raise UnreachableError(f"cannot connect to {where}: {reasons}", host=host.name) from None
    except TimeoutError:
        raise UnreachableError(f"cannot connect to {where}: timed out after {conn.connect_timeout}s",
                               host=host.name) from None
    except (socket.gaierror, OSError, SSHException, EOFError) as exc:
        raise UnreachableError(f"cannot connect to {where}: {exc or type(exc).__name__}", host=host.name) from None
    _no_delay(conn.transport.sock)


def _no_delay(sock: Any) -> None:
    """Turn Nagle off, as OpenSSH does: every channel open is a small request
    answered by a small reply, and Nagle + delayed ACKs stall each one ~40 ms."""
    if isinstance(sock, socket.socket):  # not through a ProxyCommand or a gateway channel
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
