"""One host as a task's function sees it: its inventory entry, a live connection, its facts.

`open_context(c, host)` returns a `HostContext`: an Invoke `Context` for the
local host, a Fabric `Connection` otherwise (a `Context` too, so code written
against ``c.run`` works for both). SSH host keys are checked against the host's
known_hosts file, on every hop (a ``ProxyJump`` gateway too); an unknown key is
refused with the command that lets the operator check and accept it, a key
marked ``@revoked`` is refused outright. Nothing is ever added to known_hosts
silently. ``@cert-authority`` lines are skipped (paramiko cannot check host
certificates): such hosts need their own key lines.

Liveness: an open connection whose host goes silent (packets dropped, a
cable pulled) is declared lost after ``timeouts.silent`` seconds: the kernel
sends TCP keepalives and aborts the socket once data or a probe goes unanswered
that long (``TCP_USER_TIMEOUT``), and paramiko sends an SSH keepalive every
``timeouts.keepalive`` seconds (traffic through gateways and NATs). Every
command has a deadline (its own, its step's, else ``timeouts.command``), and
every step of an act is journaled (`HostContext.step`, `aegir.journal`).
The settings are `Deadlines`.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import math
import os
import shlex
import socket
import struct
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from aegir import sh
from aegir.errors import AegirError, ConnectionLost, DeadlineExceeded, HostKeyError, Interrupted, UnreachableError
from aegir.interrupt import RUN
from aegir.inventory import Host
from aegir.journal import Journal
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


def _escaped() -> dict[str, Any]:
    """Where a streamed command's output goes: the terminal's streams, through `report.Escaping`."""
    import sys

    from aegir.report import Escaping

    return {"out": Escaping(sys.stdout), "err": Escaping(sys.stderr)}

class PlanningError(RuntimeError):
    """A command other than a fact ran while a host was planned: a bug in the plan (never the operator's)."""


@dataclass(frozen=True)
class Deadlines:
    """How long aegir waits, in seconds: the program's config ``timeouts.*`` (``aegir.yaml``, or the
    environment: ``AEGIR_TIMEOUTS_SILENT=5``; ``-t`` sets ``connect``, ``-T`` sets ``command``).

    ``connect``: an SSH connection to open (Fabric's); ``command``: a remote command that declares no
    deadline of its own and runs outside a step (a step gives its commands what is left of its own);
    ``compose``: a Compose ``up``/``restart``/``down``/``stop`` of one project, to which the
    services' ``stop_grace_period`` is added where containers stop; ``docker``: one Docker API call;
    ``silent``: an open connection with no answer for this long is lost; ``keepalive``: the SSH and
    TCP keepalive interval; ``interrupt``: after Ctrl-C, how long running steps may go on before
    they are abandoned.
    """

    connect: float = 10.0
    command: float = 600.0
    compose: float = 300.0
    docker: float = 60.0
    silent: float = 15.0
    keepalive: float = 5.0
    interrupt: float = 3.0

    @classmethod
    def of(cls, config: Any) -> "Deadlines":
        """The deadlines `config` sets (``timeouts``), the defaults for those it leaves out or unset."""
        given = dict((config.get("timeouts") if config is not None else None) or {})
        values = {}
        for f in dataclasses.fields(cls):
            try:
                value = float(given[f.name]) if given.get(f.name) is not None else None
            except (TypeError, ValueError):
                raise AegirError(f"timeouts.{f.name} must be a number of seconds, not {given[f.name]!r}") from None
            if value is not None and value > 0:
                values[f.name] = value
        return cls(**values)


@dataclass(frozen=True)
class _Current:
    """The step this thread runs on a host: its journal index, what it is, when its deadline falls."""

    index: int
    label: str
    what: str
    deadline: float  # seconds it may take
    ends: float  # time.monotonic() of its deadline


class StepHandle:
    """What ``with hc.step(...) as s`` gives: `s.fail(why)` marks the step failed without raising."""

    def __init__(self) -> None:
        self.error: str | None = None

    def fail(self, why: str) -> None:
        self.error = why


@dataclass
class HostContext:
    """One host as a per-host function sees it: its inventory entry and a live context.

    ``hc.run(cmd)`` runs a `Cmd` there (raising `CommandError` on failure);
    ``hc.docker()`` is a Docker SDK client for that host's daemon, opened once;
    ``with hc.step(name, what=...)`` journals one step of an act (`step`).
    `reached` is True once a connection was made: a failure after that is a
    lost connection (`ConnectionLost`), never "cannot connect".
    """

    host: Host
    c: "Context"
    deadlines: Deadlines | None = None  # None: from ``c.config``
    journal: Journal = field(default_factory=Journal)
    reached: bool = False
    _docker: Any = field(default=None, repr=False)
    _facts: dict[tuple[str, str], Any] = field(default_factory=dict, repr=False)
    _docker_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _planning: bool = field(default=False, repr=False)
    _connect_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _local: threading.local = field(default_factory=threading.local, repr=False)
    _closed: bool = False
    _reconnect_failed: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.deadlines is None:
            self.deadlines = Deadlines.of(getattr(self.c, "config", None))
        if self.host.is_local:
            self.reached = True

    @property
    def limits(self) -> Deadlines:
        assert self.deadlines is not None  # set by __post_init__
        return self.deadlines

    @property
    def name(self) -> str:
        return self.host.name

    @property
    def interrupted(self) -> bool:
        """True once Ctrl-C was pressed: start nothing new (`step` refuses to)."""
        return RUN.stopping

    def run(self, cmd: Cmd, *, check: bool = True, stream: bool = False) -> "Result":
        """Run `cmd` on the host, as `as_run` spells it; `stream` also prints its output as it comes.

        Its deadline: its own ``timeout``, capped by what is left of the step running it in this
        thread; outside a step, ``timeouts.command`` (none for a streamed command, which the
        operator watches and can stop). `CommandError` (host, line, exit code, stderr tail) on
        failure, `DeadlineExceeded` past the deadline, `ConnectionLost` when the connection dies.
        While the host is planned (`planning`) only facts may run: any other command is a bug.
        """
        if self._planning:
            raise PlanningError(f"`{cmd.line}` was run while {self.name} was being planned: a plan reads "
                                "facts only (aegir.facts.Fact), it never runs a command of its own")
        return self._run(cmd, check=check, stream=stream)

    def _run(self, cmd: Cmd, *, check: bool = True, stream: bool = False) -> "Result":
        cmd = as_run(self.host, cmd)
        cur: _Current | None = getattr(self._local, "step", None)
        timeout = cmd.timeout
        bound_by_step = False
        if cur is not None:
            left = cur.ends - time.monotonic()
            if left <= 0:
                raise DeadlineExceeded(self.name, cmd.line, cur.deadline)
            bound_by_step = timeout is None or left < timeout
            timeout = left if bound_by_step else timeout
            self.journal.running_command(cur.index, cmd.line)
        elif timeout is None and not stream:
            timeout = self.limits.command
        if self.reached and not self.host.is_local and not self.c.is_connected:
            self.connect()  # a reconnect: its failure says the connection was lost, not "cannot connect"
        try:
            return sh.run(self.c, cmd, host=self.name, check=check, stream=stream, timeout=timeout,
                          **_escaped() if stream else {})
        except DeadlineExceeded as exc:
            limit = cur.deadline if bound_by_step and cur is not None else exc.seconds
            raise DeadlineExceeded(self.name, cmd.line, limit, what=cur.what if cur else "") from None
        except ConnectionLost:
            raise self.lost(cmd.line) from None

    def lost(self, command: str = "", exc: BaseException | None = None) -> ConnectionLost:
        """The `ConnectionLost` to raise now that the connection died (while running `command`, in the
        current step if any); the journal remembers it, and no later step starts on this host."""
        why, silent = sh.lost_cause(self.c, exc)
        cur: _Current | None = getattr(self._local, "step", None)
        doing = f" while running `{command}`" if command else f" during {cur.label}" if cur else ""
        target = f" for {cur.what}" if command and cur and cur.what else ""
        if silent:
            text = f"no answer for {self.limits.silent:g} s{doing}{target}: the connection is lost"
        else:
            text = f"connection lost{doing}{target}: {why}"
        self.journal.lost = self.journal.lost or text
        return ConnectionLost(text, host=self.name)

    @contextmanager
    def step(self, name: str, *, what: str = "", deadline: float | None = None) -> Iterator[StepHandle]:
        """Journal one step of an act (`aegir.journal`): ``with hc.step("up", what="apps/cloud", deadline=300):``.

        Before it starts: `Interrupted` once Ctrl-C was pressed, `ConnectionLost` once the
        connection was lost part-way (nothing more is started on a host in an unknown state).
        Inside it, commands get what is left of `deadline` (default ``timeouts.command``).
        An exception leaving the block marks it failed; a Docker SDK or SSH exception leaves
        as the host failure it is (`failure`); ``handle.fail(why)`` marks it failed without raising.
        """
        label = f"{name} {what}".strip()
        if RUN.stopping:
            self.journal.interrupted = True
            raise Interrupted("not started: interrupted (Ctrl-C)", host=self.name)
        if self.journal.lost:
            raise ConnectionLost(f"not started: {self.journal.lost}", host=self.name)
        limit = self.limits.command if deadline is None else deadline
        index = self.journal.start(name, what, limit)
        outer = getattr(self._local, "step", None)
        self._local.step = _Current(index, label, what, limit, time.monotonic() + limit)
        handle = StepHandle()
        try:
            yield handle
        except BaseException as exc:
            err = self.failure(exc) if isinstance(exc, Exception) else None
            from aegir.docker import DockerError

            self.journal.end(index, error=(err.message if err is not None else f"{type(exc).__name__}: {exc}"),
                             cut=err is None or isinstance(err, (ConnectionLost, DeadlineExceeded, DockerError)))
            if err is not None and err is not exc:
                raise err from None
            raise
        else:
            self.journal.end(index, error=handle.error)
        finally:
            self._local.step = outer

    def failure(self, exc: Exception) -> AegirError | None:
        """`exc` as the host failure it is, or None for a bug.

        An `AegirError` is itself; an SSH error, or any error once the connection is down, is a
        `ConnectionLost` (a host that was reached); a Docker SDK or HTTP error is a
        `aegir.docker.DockerError` with its cause (and, when no dockerd runs any more, says so).
        """
        if isinstance(exc, AegirError):
            return exc
        from aegir.docker import DockerError, docker_failure, dockerd_gone

        if not self.host.is_local and self.reached and not self.c.is_connected:
            return self.lost()
        cur: _Current | None = getattr(self._local, "step", None)
        during = f" during {cur.label}" if cur else ""
        if _ssh_error(exc):
            return AegirError(f"SSH channel failed{during}: {str(exc) or type(exc).__name__}", host=self.name)
        why = docker_failure(exc)
        if why is None:
            return None
        if dockerd_gone(self):
            return DockerError(f"Docker stopped answering{during} ({why}): no dockerd process runs any more",
                               host=self.name)
        return DockerError(f"Docker API call failed{during}: {why}", host=self.name)

    @contextmanager
    def planning(self) -> Iterator[None]:
        """The length of a plan (`aegir.action.run`): the context reads facts only, it runs no command."""
        self._planning = True
        try:
            yield
        finally:
            self._planning = False

    def docker(self, running: bool | None = None) -> "docker.DockerClient":
        """The Docker SDK client of this host (cached for this context; one, whichever thread asks first).

        `running`: whether a dockerd runs, when the caller already asked (`aegir.docker.client_for`).
        """
        with self._docker_lock:
            if self._docker is None:
                from aegir.docker import client_for

                self._docker = client_for(self, running)
            return self._docker

    def connect(self) -> None:
        """(Re)open the SSH connection if it is not up; no-op for the local host.

        The first time, a failure is `UnreachableError` (or `HostKeyError`) with a one-line
        reason: the host was never reached. Once it was, the connection is made again when asked
        (the Docker API asks before each new channel; an area may ask to read what a lost step
        left), and a reconnect that fails is `ConnectionLost`, saying why the connection went and
        why it could not be made again; it is remembered, so a silent host costs one connect
        timeout, not one per caller. A loss noticed while working (`lost`) stays in the journal
        after a reconnect: no later step starts on the host (`step`).
        """
        if self.host.is_local or self.c.is_connected:
            return
        with self._connect_lock:
            if self.c.is_connected:
                return
            if self._closed:
                raise ConnectionLost("the connection was closed (the run is over)", host=self.name)
            if not self.reached:
                _connect(self.c, self.host, self.limits)
                self.reached = True
                return
            if self._reconnect_failed:
                raise ConnectionLost(self._reconnect_failed, host=self.name)
            noticed = self.journal.lost
            lost = noticed or self.lost().message
            try:
                _connect(self.c, self.host, self.limits)
            except UnreachableError as exc:
                self._reconnect_failed = f"{lost}; reconnecting failed: {exc.message}"
                self.journal.lost = self.journal.lost or self._reconnect_failed
                raise ConnectionLost(self._reconnect_failed, host=self.name) from None
            if not noticed:
                self.journal.lost = None  # an unnoticed drop (idle between passes), made good

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
            r = self._run(missing[0].cmd, check=False)
            replies = [sh.Reply(r.stdout, r.stderr, r.exited)]
        elif missing:
            batch = sh.Batch(tuple(f.cmd for f in missing))
            replies = list(batch.split(self._run(batch.cmd).stdout))
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
        self._closed = True
        client, self._docker = self._docker, None
        if client is not None:
            try:
                client.close()
            except Exception:  # closing a broken client must not mask the result
                pass
        closer = getattr(self.c, "close", None)
        if closer is not None:
            closer()


@dataclass(frozen=True)
class KnownHosts:
    """A known_hosts file as aegir trusts it: key lines, and the keys marked ``@revoked``."""

    path: str
    entries: tuple[Any, ...] = ()  # paramiko HostKeyEntry
    revoked: frozenset[tuple[str, str]] = frozenset()  # (key type, base64)


def read_known_hosts(path: str) -> KnownHosts:
    """Read `path` (missing: empty) line by line, as OpenSSH does.

    ``@revoked`` keys are collected (and never trusted, even when another line
    lists them); ``@cert-authority`` lines and lines paramiko cannot read are
    skipped instead of failing every host with a traceback.
    """
    from paramiko.hostkeys import HostKeyEntry, InvalidHostKey
    from paramiko.ssh_exception import SSHException

    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return KnownHosts(path)
    except OSError as exc:
        raise HostKeyError(f"cannot read known_hosts {path}: {exc.strerror or exc}") from None
    entries = []
    revoked: set[tuple[str, str]] = set()
    for line in lines:
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0].startswith("@"):
            if words[0] == "@revoked" and len(words) >= 4:
                revoked.add((words[2], words[3]))
            continue
        try:
            entry = HostKeyEntry.from_line(line)
        except (InvalidHostKey, SSHException, ValueError, TypeError):
            entry = None
        if entry is not None:
            entries.append(entry)
    keep = tuple(e for e in entries if (e.key.get_name(), e.key.get_base64()) not in revoked)
    return KnownHosts(path, keep, frozenset(revoked))


def keyscan_command(address: str, port: int, known_hosts: str) -> str:
    """The command that appends `address`'s keys to `known_hosts`, quoted for a shell."""
    argv = ["ssh-keyscan", *(["-p", str(port)] if port != 22 else []), address]
    return f"{shlex.join(argv)} >> {shlex.quote(known_hosts)}"


class _RefuseUnknown:
    """Paramiko host-key policy: refuse an unknown key saying how to accept it, a revoked one outright."""

    def __init__(self, host: Host, known: KnownHosts, address: str, port: int, hop: str = "") -> None:
        self.host = host
        self.known = known
        self.address = address
        self.port = port
        self.hop = hop  # "gateway " for a ProxyJump hop

    def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
        if (key.get_name(), key.get_base64()) in self.known.revoked:
            raise HostKeyError(
                f"SSH host key {key.get_name()} {key.fingerprint} of {self.hop}{hostname} is marked "
                f"@revoked in {self.known.path}; refusing to connect", host=self.host.name)
        raise HostKeyError(
            f"unknown SSH host key {key.get_name()} {key.fingerprint} for {self.hop}{hostname}, "
            f"not in {self.known.path}; check that fingerprint out of band, then accept it "
            f"with: {keyscan_command(self.address, self.port, self.known.path)}",
            host=self.host.name,
        )


_known_cache: dict[str, tuple[tuple[int, int], KnownHosts, Any]] = {}  # path -> (mtime, size), read, HostKeys
_known_lock = threading.Lock()


def known_hosts_of(path: str) -> tuple[KnownHosts, Any]:
    """`read_known_hosts(path)` and paramiko's `HostKeys` holding its trusted entries: read once per run
    (again only when the file changed), not once per host: a fleet of N hosts shares one file of
    N lines, and reading it per host made the run's cost grow as N squared (200 hosts: 40,000 lines
    parsed). Every connection looks its key up in the one `HostKeys` (read-only: aegir's policy
    never adds a key)."""
    from paramiko.hostkeys import HostKeys

    try:
        st = os.stat(path)
        stamp = (st.st_mtime_ns, st.st_size)
    except OSError:
        stamp = (-1, -1)
    with _known_lock:
        cached = _known_cache.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1], cached[2]
        known = read_known_hosts(path)
        keys = HostKeys()
        keys._entries = list(known.entries)  # type: ignore[attr-defined]  # what HostKeys.load() builds
        _known_cache[path] = (stamp, known, keys)
        return known, keys


def guard_host_keys(conn: Any, host: Host, known: KnownHosts, keys: Any = None) -> None:
    """Check `conn`'s host key, and every gateway hop's, against `known` only (`keys`: its paramiko
    `HostKeys`, shared by every connection of the run; built here when not given).

    Fabric gives each connection, the ``ProxyJump`` hops it builds included,
    paramiko's auto-add policy: every hop gets aegir's refusing one instead.
    """
    from fabric import Connection
    from paramiko.hostkeys import HostKeys

    if keys is None:
        keys = HostKeys()
        keys._entries = list(known.entries)  # type: ignore[attr-defined]
    hop = ""
    while isinstance(conn, Connection):
        conn.client._host_keys = keys  # paramiko looks the server's key up there (SSHClient.connect)
        conn.client.set_missing_host_key_policy(_RefuseUnknown(host, known, conn.host, int(conn.port), hop))
        conn, hop = conn.gateway, "gateway "


def connect_kwargs(config: Any, host: Host) -> dict[str, Any] | None:
    """What paramiko's ``connect`` gets: the config's (passphrase, password from the
    ``--prompt-for-*`` flags) plus the host's ``identity``; None: the config's as they are.

    Fabric uses a Connection's own `connect_kwargs` *instead of* the config's, so
    giving only ``key_filename`` would drop the prompted passphrase.
    """
    if not host.identity:
        return None
    merged = {k: v for k, v in dict(config.get("connect_kwargs") or {}).items() if k != "key_filename"}
    merged["key_filename"] = [os.path.expanduser(host.identity)]  # Fabric puts the config's key files first
    return merged


def connection_for(c: "Context", host: Host) -> Any:
    """A Fabric `Connection` to `host`, not yet open, checking host keys on every hop.

    Each connection gets a config of its own (a clone of the run's Fabric config, ~1 ms):
    Fabric's ``Connection()`` writes keys into the config it is given (``inline_ssh_env``,
    a Context attribute, at least), and Invoke rebuilds a config from empty on every write,
    so connections sharing one config saw it empty now and then while another host's
    connection was made ("No attribute or config key found for 'gateway'", 4 hosts of 30 in
    one lab run).
    """
    from fabric import Connection

    config = fabric_config(c.config).clone()
    conn = Connection(  # connect timeout: ssh_config's ConnectTimeout, else timeouts.connect (-t)
        host.address or host.name,
        user=host.user,
        port=host.port,
        config=config,
        connect_kwargs=connect_kwargs(config, host),
    )
    guard_host_keys(conn, host, *known_hosts_of(os.path.expanduser(host.known_hosts)))
    return conn


def open_context(c: "Context", host: Host) -> HostContext:
    """Connect to `host` (no-op for the local one) and wrap it in a `HostContext`.

    Raises `UnreachableError`/`HostKeyError` with a one-line reason.
    """
    if host.is_local:
        from invoke import Context

        return HostContext(host, Context(config=c.config), Deadlines.of(c.config))
    # paramiko logs its own tracebacks for failed handshakes on stderr; the
    # outcome row already says why (a handler configured by --debug still sees them).
    logging.getLogger("paramiko").addHandler(logging.NullHandler())
    hc = HostContext(host, connection_for(c, host), Deadlines.of(c.config))
    _import_docker_sdk_soon()
    hc.connect()
    return hc


_sdk_import: list[threading.Thread] = []
_sdk_lock = threading.Lock()


def _import_docker_sdk_soon() -> None:
    """Import the Docker SDK (about 50 ms of CPU, wanted by most tasks once connected) in a thread of its own,
    once per run, while the SSH handshakes wait on the network."""
    with _sdk_lock:
        if _sdk_import:
            return
        thread = threading.Thread(target=importlib.import_module, args=("docker",), name="import-docker")
        _sdk_import.append(thread)
    thread.start()


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
        # Read the ssh_config files once: Fabric's clone() (a ProxyJump hop's config) calls
        # load_ssh_config() on the config it clones, which parses the files again and *appends*
        # their entries to the same SSHConfig: a clone per host made every later lookup and copy
        # longer (N hosts: O(N^2)). The clones get the parsed object (Fabric's "explicit object").
        twin._given_explicit_object = True
        _fabric_configs.append((config, twin))
        return twin


def _connect(conn: Any, host: Host, limits: Deadlines | None = None) -> None:
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
        hop = "" if exc.hostname in (host.address, host.name) else f" (through gateway {exc.hostname})"
        raise HostKeyError(
            f"SSH host key for {where}{hop} does NOT match {known_hosts} "
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
        raise UnreachableError(f"cannot connect to {where}: {str(exc) or type(exc).__name__}", host=host.name) from None
    _no_delay(conn.transport.sock)
    limits = limits or Deadlines()
    link: Any = conn
    while link is not None and getattr(link, "transport", None) is not None:  # this host, then each gateway
        set_liveness(link.transport, silent=limits.silent, keepalive=limits.keepalive)
        link = getattr(link, "gateway", None)


def set_liveness(transport: Any, *, silent: float, keepalive: float) -> None:
    """Make a silent peer end the connection after about `silent` seconds instead of TCP's ~15 minutes.

    On the TCP socket (not through a ProxyCommand): keepalive probes after `keepalive` seconds
    idle, and ``TCP_USER_TIMEOUT``, after which unacknowledged data or probes abort the socket
    (paramiko's transport then closes every channel: the command running there ends as
    `ConnectionLost`). paramiko sends an SSH keepalive every `keepalive` seconds from the
    transport's own thread (no thread of ours), through `_Liveness`, which also notes how long
    the peer has been silent: the kernel's abort reaches paramiko as a bare EOF, and this is
    how `aegir.sh.lost_cause` tells silence from a close.
    """
    sock = transport.sock
    tcp = sock if isinstance(sock, socket.socket) else None
    every = max(1, int(keepalive))
    transport.aegir_liveness = liveness = _Liveness(transport, tcp, quiet_after=max(1.5 * every, silent / 2))
    transport.packetizer.set_keepalive(every, liveness)
    if tcp is None:
        return
    try:
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        tcp.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, every)
        tcp.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, every)
        tcp.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, max(1, math.ceil(silent / every)))
        tcp.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, max(1, int(silent * 1000)))
    except (OSError, AttributeError):  # not Linux, or not TCP: the command deadlines still hold
        pass


class _Liveness:
    """paramiko's keepalive callback: sends ``keepalive@lag.net`` (no reply asked, as paramiko's own)
    and first reads, from the kernel's ``TCP_INFO``, how long ago the peer last acknowledged anything."""

    #: Offset of ``tcpi_last_ack_recv`` (milliseconds) in Linux's ``struct tcp_info``.
    LAST_ACK_RECV = 56

    def __init__(self, transport: Any, sock: socket.socket | None, *, quiet_after: float) -> None:
        self._transport = weakref.ref(transport)
        self._sock = sock
        self.quiet_after = quiet_after  # seconds without an ACK that count as silence
        self.quiet = 0.0  # seconds without an ACK from the peer, at the last keepalive

    @property
    def silent(self) -> bool:
        """True when the peer had acknowledged nothing for `quiet_after` seconds at the last keepalive."""
        return self.quiet >= self.quiet_after

    def __call__(self) -> None:
        if self._sock is not None:
            try:
                info = self._sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
                self.quiet = struct.unpack_from("I", info, self.LAST_ACK_RECV)[0] / 1000
            except (OSError, AttributeError, struct.error):
                pass
        transport = self._transport()
        if transport is not None:
            transport.global_request("keepalive@lag.net", wait=False)


def _ssh_error(exc: BaseException) -> bool:
    """True for paramiko's errors (a channel that cannot be opened on a dying transport) and EOFError."""
    if isinstance(exc, EOFError):
        return True
    try:
        from paramiko.ssh_exception import SSHException
    except ImportError:  # pragma: no cover - paramiko is a dependency
        return False
    return isinstance(exc, SSHException)


def _no_delay(sock: Any) -> None:
    """Turn Nagle off, as OpenSSH does: every channel open is a small request
    answered by a small reply, and Nagle + delayed ACKs stall each one ~40 ms."""
    if isinstance(sock, socket.socket):  # not through a ProxyCommand or a gateway channel
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


def fresh_login(c: Context, hc: HostContext) -> Callable[[], None] | None:
    """A check that a *new* SSH connection still gets in (None for the local host).

    fw.apply and net.mesh run it after each host's change. The running session
    survives any ruleset or IPsec policy (connection tracking), so it is the way back: a wrong ``ssh_port`` or ``admin_sources`` that leaves out the
    operator's own address would pass every static check and lock out the next
    login.
    """
    if hc.host.is_local:
        return None

    def check() -> None:
        open_context(c, hc.host).close()

    return check
