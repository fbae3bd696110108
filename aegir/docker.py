"""A Docker SDK client for one host: its local socket, or through the SSH connection.

For a remote host, the Docker API travels over the Fabric connection aegir has
already opened (and whose host key it has already checked): each HTTP
connection is an SSH channel running ``docker system dial-stdio`` on the host,
as ``docker -H ssh://`` does. No second SSH login, no silent host-key policy.

`DockerUnavailable` says, on one line, that a host has no answering daemon.

`parse_image_ref` reads an image reference the way Docker does (distribution's
``reference.ParseNormalizedNamed``): the one normaliser of ``image:`` values,
RepoTags and RepoDigests that Compose lifecycle and disk.prune both match with.
"""

from __future__ import annotations

import ipaddress
import os
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from aegir.errors import AegirError
from aegir.facts import Fact
from aegir.fields import Answer
from aegir.sh import Cmd, Reply, shell

if TYPE_CHECKING:  # pragma: no cover
    import docker

    from aegir.inventory import Host


class DockerHost(Protocol):
    """What this module needs of `aegir.host.HostContext` (which sits above it)."""

    host: "Host"
    c: Any

    @property
    def name(self) -> str: ...

    def connect(self) -> None: ...

    @property
    def limits(self) -> Any: ...  # aegir.host.Deadlines: .docker, one API call's deadline

    def docker(self, running: bool | None = None) -> "docker.DockerClient": ...

    def fact(self, fact: Fact[T]) -> T: ...


T = TypeVar("T")

DEFAULT_SOCKET = "unix:///var/run/docker.sock"
API_TIMEOUT = 60


class DockerUnavailable(AegirError):
    """The host's Docker daemon does not answer (not installed, stopped, no socket)."""


class DockerError(AegirError):
    """A Docker API call failed part-way (the daemon died, stopped answering, or refused): a host failure."""


def docker_failure(exc: BaseException) -> str | None:
    """What went wrong in a Docker SDK call, in one line, or None when `exc` is not the SDK's (nor requests').

    ``ReadTimeout`` -> ``no answer within 60 s``; a broken connection -> its innermost cause
    (``the connection to the daemon broke: RemoteDisconnected: Remote end closed connection
    without response``); an ``APIError`` -> its status and Docker's explanation.
    """
    import re
    import sys

    if not any(k.__module__.split(".")[0] in ("requests", "urllib3", "docker") for k in type(exc).__mro__):
        return None
    requests = sys.modules.get("requests")
    errors = sys.modules.get("docker.errors")
    if requests is not None and isinstance(exc, requests.exceptions.Timeout):
        limit = re.search(r"timeout=([0-9.]+)", str(exc))
        return f"no answer from the daemon within {limit.group(1) if limit else '?'} s"
    if requests is not None and isinstance(exc, requests.exceptions.ConnectionError):
        return f"the connection to the daemon broke: {_innermost(exc)}"
    if errors is not None and isinstance(exc, errors.APIError):
        status = exc.status_code
        text = str(exc.explanation or exc).strip().splitlines()
        return f"{status or 'error'}: {text[0][:300] if text else type(exc).__name__}"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


def _innermost(exc: BaseException) -> str:
    """The deepest exception inside `exc` (its args, urllib3's ``reason``, its cause), as ``Type: message``."""

    def inner(e: BaseException) -> BaseException | None:
        for a in e.args:
            if isinstance(a, BaseException):
                return a
        reason = getattr(e, "reason", None)
        return reason if isinstance(reason, BaseException) else e.__cause__

    found = exc
    for _ in range(8):
        deeper = inner(found)
        if deeper is None:
            break
        found = deeper
    text = str(found).strip()
    return f"{type(found).__name__}: {text}" if text else type(found).__name__


def dockerd_gone(hc: "DockerHost") -> bool:
    """True when the host answers that no ``dockerd`` runs any more (a Docker error's likeliest cause);
    False when it does, or when that cannot be asked."""
    try:
        return not hc.fact(dockerd_fact())
    except Exception:  # the host may be gone too: say what is known, nothing more
        return False


def docker_cli(docker_host: str | None, *args: str) -> Cmd:
    """A ``docker`` CLI command aimed at the host's daemon.

    >>> docker_cli(None, "system", "dial-stdio").line
    'docker system dial-stdio'
    >>> docker_cli("unix:///run/d.sock", "system", "dial-stdio").line
    'docker -H unix:///run/d.sock system dial-stdio'
    """
    return Cmd(("docker", *(["-H", docker_host] if docker_host else []), *args))


#: What every task says of a host where no dockerd runs.
NOT_RUNNING = "Docker is not running (no dockerd process)"


def client_for(hc: "DockerHost", running: bool | None = None) -> "docker.DockerClient":
    """A connected `docker.DockerClient` for `hc`'s host, or `DockerUnavailable`.

    A daemon on a Unix socket is asked for only once a ``dockerd`` process runs
    (`dockerd_running`, from /proc, unless the caller batched that fact and
    passes its answer as `running`): connecting to the socket that systemd's
    ``docker.socket`` listens on would start Docker, on an unmounted /srv too,
    from a mere ``apps.status`` or ``disk.report``.
    """
    host = hc.host
    target = host.docker_host or (os.environ.get("DOCKER_HOST") if host.is_local else None) or DEFAULT_SOCKET
    if target.startswith("unix://") and not (dockerd_running(hc) if running is None else running):
        raise DockerUnavailable(NOT_RUNNING, host=host.name)
    import docker
    from docker.errors import DockerException

    try:
        if host.is_local:
            client = docker.DockerClient(base_url=target, version="auto", timeout=_api_timeout(hc))
        else:
            client = _over_ssh(hc, docker_cli(host.docker_host, "system", "dial-stdio").line)
    except DockerException as exc:
        raise DockerUnavailable(f"Docker is not answering: {_reason(exc)}", host=host.name) from None
    return client


_DOCKERD_SCRIPT = """\
me=$(readlink /proc/self/ns/net) || exit 0
for comm in $(grep -lx dockerd /proc/[0-9]*/comm 2>/dev/null); do
  d=${comm%/comm}
  state=$(cut -d' ' -f3 "$d/stat" 2>/dev/null) || continue  # gone meanwhile
  [ "$state" != Z ] || continue  # exited, not reaped yet (its namespaces are gone)
  ns=$(readlink "$d/ns/net" 2>/dev/null) || exit 0
  [ "$ns" != "$me" ] || exit 0
done
exit 1
"""


def dockerd_cmd() -> Cmd:
    """Exit 0 when a ``dockerd`` runs in this host's network namespace (not one in a container), else 1.

    Read from /proc, never through Docker's socket: connecting to it while
    systemd's ``docker.socket`` listens would start Docker. Whatever cannot be
    read counts as running (the caller then asks Docker itself, as it would
    have without this check).
    """
    return shell(_DOCKERD_SCRIPT)


def parse_dockerd(exited: int, stderr: str) -> bool:
    """True when `dockerd_cmd` found a dockerd; raise if the probe itself failed."""
    if exited in (0, 1):
        return exited == 0
    raise AegirError(f"cannot tell whether dockerd runs: {stderr.strip() or f'exit code {exited}'}")


def dockerd_fact() -> Fact[bool]:
    """`dockerd_cmd` as a fact: asked afresh each time (Docker starts and stops under boot and update)."""
    return Fact("docker.dockerd", dockerd_cmd(), lambda r: parse_dockerd(r.exited, r.stderr), None, cache=False)


def running_info(hc: "DockerHost", running: bool | None = None) -> dict[str, Any]:
    """Docker's ``info``, asked only once a ``dockerd`` process runs on the host.

    A connection to the socket systemd's ``docker.socket`` listens on *starts*
    Docker (socket activation), on an unmounted /srv too; so /proc is asked
    first (`client_for` does), unless the caller already knows that none runs
    (`running` False). No dockerd: `DockerUnavailable`; the SDK's own errors
    pass through.
    """
    if running is False:
        raise DockerUnavailable(NOT_RUNNING, host=hc.name)
    return hc.docker(running).info()


def dockerd_running(hc: "DockerHost") -> bool:
    """Does a ``dockerd`` process run on the host? Asked of /proc, never of Docker's socket."""
    return hc.fact(dockerd_fact())


def _reason(exc: Exception) -> str:
    text = str(exc)
    for needle, reason in (
        ("No such file or directory", "no Docker socket (daemon not running or not installed)"),
        ("Connection refused", "connection refused (daemon not running)"),
        ("command not found", "the docker CLI is not installed on the host"),
    ):
        if needle in text:
            return reason
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _api_timeout(hc: "DockerHost") -> float:
    """One Docker API call's deadline: ``timeouts.docker`` (`aegir.host.Deadlines`), else `API_TIMEOUT`."""
    limits = getattr(hc, "limits", None)
    return float(getattr(limits, "docker", None) or API_TIMEOUT)


def why_fact(docker_host: str | None) -> Fact[str]:
    """Why the daemon does not answer, in the CLI's words (the last line of ``docker version``'s stderr; ""
    when it answers). Asked afresh: it is asked after a failure."""
    def last_line(r: Reply) -> str:
        lines = r.stderr.strip().splitlines()
        return lines[-1] if lines and r.exited != 0 else ""
    return Fact("docker.why", docker_cli(docker_host, "version", "--format", "{{.Server.Version}}"), last_line,
                answers=None, cache=False)


def _over_ssh(hc: "DockerHost", command: str) -> "docker.DockerClient":
    import docker
    from docker.errors import DockerException

    adapter = _DialAdapter(hc, command, _api_timeout(hc))
    # Build the API client without letting it open its own SSH session
    # (use_ssh_client=True only spawns `ssh` lazily, at first request), then put
    # our adapter where the SDK mounts its own SSH adapter, and ask the version.
    api = docker.APIClient(base_url="ssh://aegir", version="1.41", use_ssh_client=True,
                           timeout=_api_timeout(hc))
    api._custom_adapter.close()
    api._custom_adapter = adapter
    api.mount("http+docker://ssh", adapter)
    try:
        api._version = api._retrieve_server_version()
    except DockerException as exc:
        # Ask the CLI why: its message names the socket and the cause (a read: allowed while planning).
        why = hc.fact(why_fact(hc.host.docker_host)) or str(exc)
        raise DockerException(why) from None
    client = docker.DockerClient.__new__(docker.DockerClient)
    client.api = api
    return client


def _make_adapter_classes() -> tuple[type, type, type]:
    import urllib3
    from docker.transport.basehttpadapter import BaseHTTPAdapter
    from docker.transport.sshconn import SSHConnection, SSHConnectionPool

    class DialConnection(SSHConnection):
        def __init__(self, transport: Any, timeout: float, command: str) -> None:
            super().__init__(ssh_transport=transport, timeout=timeout)
            self.command = command

        def connect(self) -> None:
            chan = self.ssh_transport.open_session()
            chan.settimeout(self.timeout)
            chan.exec_command(self.command)
            self.sock = chan

    class DialPool(SSHConnectionPool):
        def __init__(self, transport: Any, timeout: float, maxsize: int, command: str) -> None:
            super().__init__(ssh_client=None, timeout=timeout, maxsize=maxsize)
            self.ssh_transport = transport
            self.command = command

        def _new_conn(self) -> DialConnection:
            return DialConnection(self.ssh_transport, self.timeout, self.command)

    class DialAdapter(BaseHTTPAdapter):
        def __init__(self, hc: Any, command: str, timeout: float = API_TIMEOUT, maxsize: int = 8) -> None:
            self.hc = hc
            self.command = command
            self.timeout = timeout
            self.maxsize = maxsize
            self.pools: Any = urllib3._collections.RecentlyUsedContainer(4, dispose_func=lambda p: p.close())
            self._lock = threading.Lock()
            super().__init__()

        def get_connection(self, url: str, proxies: Any = None) -> DialPool:
            # One pool for every URL: all requests go to the same daemon, and a new
            # connection costs an SSH session (requests keys pools by full URL).
            with self._lock:
                self.hc.connect()  # reconnects if the SSH link dropped; failures are UnreachableError
                pool = self.pools.get("daemon")
                if pool is None or pool.ssh_transport is not self.hc.c.transport:
                    pool = DialPool(self.hc.c.transport, self.timeout, self.maxsize, self.command)
                    self.pools["daemon"] = pool  # replaces (and closes) a pool on a dead transport
                return pool

    return DialConnection, DialPool, DialAdapter


_classes: tuple[type, type, type] | None = None


def _DialAdapter(hc: "DockerHost", command: str, timeout: float = API_TIMEOUT) -> Any:  # noqa: N802 - a factory
    global _classes
    if _classes is None:  # built on first use: importing docker costs ~0.15 s
        _classes = _make_adapter_classes()
    return _classes[2](hc, command, timeout)


# --------------------------------------------------------------------------- what the API lists

#: Networks Docker makes itself (disk.prune never removes them).
BUILTIN_NETWORKS = frozenset({"bridge", "host", "none", "docker_gwbridge", "ingress"})


@dataclass(frozen=True)
class DockerNetwork:
    """One network as the Docker API lists it (``GET /networks``): name, ID, driver, IPAM subnets."""

    name: str
    id: str = ""
    driver: str = ""
    subnets: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @property
    def ipv6(self) -> tuple[ipaddress.IPv6Network, ...]:
        return tuple(s for s in self.subnets if isinstance(s, ipaddress.IPv6Network))

    @property
    def builtin(self) -> bool:
        return self.name in BUILTIN_NETWORKS


def parse_networks(rows: Any) -> tuple[DockerNetwork, ...]:
    """The Docker API's network list (``api.networks()``), by name; a subnet that is not one is left out.
    A list of another shape is `aegir.fields.ShapeError`."""
    out = []
    for row in Answer(rows, "docker /networks").items():
        subnets = []
        for cfg in row["IPAM"]["Config"].items():
            try:
                subnets.append(ipaddress.ip_network(cfg["Subnet"].text(), strict=False))
            except ValueError:
                continue
        out.append(DockerNetwork(row["Name"].text() or "?", row["Id"].text(), row["Driver"].text(), tuple(subnets)))
    return tuple(sorted(out, key=lambda n: n.name))


# --------------------------------------------------------------------------- image references

#: Docker Hub as references name it after normalisation, the legacy name it is also given, and the
#: namespace of its official images (distribution/reference ``normalize.go``).
HUB = "docker.io"
LEGACY_HUB = "index.docker.io"
OFFICIAL = "library/"
DEFAULT_TAG = "latest"
#: Digest algorithms Docker can verify, and the length of their hex encoding (opencontainers/go-digest).
DIGEST_ALGORITHMS = {"sha256": 64, "sha384": 96, "sha512": 128}
#: Longer text is no reference Docker accepts (a name's path stops at 255); not parsed at all.
MAX_REFERENCE = 1024

# distribution/reference ``regexp.go``, ASCII only (Go's ``\w`` is ``[0-9A-Za-z_]``).
_ALNUM = r"[a-z0-9]+"
_PATH_COMPONENT = rf"{_ALNUM}(?:(?:[._]|__|-+){_ALNUM})*"
_REMOTE = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(rf"((?:{_DOMAIN})/{_REMOTE})(?::({_TAG}))?(?:@({_DIGEST}))?")
_IDENTIFIER = re.compile(r"[a-f0-9]{64}")


class InvalidReference(AegirError):
    """Text Docker would refuse as an image reference (the message says why, as Docker does)."""


@dataclass(frozen=True)
class ImageRef:
    """An image reference as Docker normalises it: `name` fully qualified (``docker.io/library/nginx``),
    its tag and digest as written (either may be None; neither means tag ``latest``)."""

    name: str
    tag: str | None = None
    digest: str | None = None

    @property
    def familiar(self) -> str:
        """The name as Docker shows it (RepoTags, RepoDigests): ``docker.io/`` and ``library/`` dropped."""
        domain, _, path = self.name.partition("/")
        if domain != HUB:
            return self.name
        rest = path.removeprefix(OFFICIAL)
        return rest if path.startswith(OFFICIAL) and "/" not in rest else path

    def __str__(self) -> str:
        """The reference as RepoTags spell it (``nginx:latest``), its digest kept (``nginx:1.25@sha256:…``)."""
        tag = self.tag or (None if self.digest else DEFAULT_TAG)
        return self.familiar + (f":{tag}" if tag else "") + (f"@{self.digest}" if self.digest else "")

    @property
    def key(self) -> str:
        """The one reference Docker resolves this to (``ParseDockerRef``): ``name@digest`` when pinned
        (a tag next to the digest is ignored), else ``name:tag`` (tag ``latest`` when none)."""
        return f"{self.name}@{self.digest}" if self.digest else f"{self.name}:{self.tag or DEFAULT_TAG}"

    @property
    def keys(self) -> frozenset[str]:
        """Every image this text names: `key`, and ``name:tag`` too when a tag stands next to a digest
        (Docker pulls by the digest and leaves that image untagged; the tag is still what the file says)."""
        return frozenset({self.key, *([f"{self.name}:{self.tag}"] if self.tag else [])})


def _split_domain(text: str) -> tuple[str, str]:
    """distribution's ``splitDockerDomain``: (domain, remote name), Docker Hub's ``library/`` added."""
    first, slash, rest = text.partition("/")
    if not slash:
        return HUB, OFFICIAL + text
    if first == LEGACY_HUB:
        domain, remote = HUB, rest
    elif first == "localhost" or any(c in first for c in ".:") or first.lower() != first:
        domain, remote = first, rest
    else:
        domain, remote = HUB, text
    if domain == HUB and "/" not in remote:
        remote = OFFICIAL + remote
    return domain, remote


def parse_image_ref(text: str) -> ImageRef:
    """Read `text` as Docker reads an image reference (``ParseNormalizedNamed``), or raise `InvalidReference`.

    >>> str(parse_image_ref("docker.io/library/mariadb:11")), str(parse_image_ref("library/mariadb"))
    ('mariadb:11', 'mariadb:latest')
    >>> parse_image_ref("registry.local:5000/x/y:1")
    ImageRef(name='registry.local:5000/x/y', tag='1', digest=None)
    """
    if len(text) > MAX_REFERENCE:
        raise InvalidReference(f"invalid reference format: longer than {MAX_REFERENCE} characters")
    if _IDENTIFIER.fullmatch(text):
        raise InvalidReference(f"invalid repository name ({text}), cannot specify 64-byte hexadecimal strings")
    domain, remote = _split_domain(text)
    repository = remote.split(":", 1)[0]
    if repository.lower() != repository:
        raise InvalidReference(f"invalid reference format: repository name ({repository}) must be lowercase")
    m = _REFERENCE.fullmatch(f"{domain}/{remote}")
    if m is None:
        raise InvalidReference(f"invalid reference format: {text!r}")
    name, tag, digest = m.groups()
    if len(name) - len(domain) - 1 > 255:
        raise InvalidReference("repository name must not be more than 255 characters")
    if digest is not None:
        algorithm, _, encoded = digest.partition(":")
        if algorithm not in DIGEST_ALGORITHMS:
            raise InvalidReference(f"unsupported digest algorithm: {digest}")
        if len(encoded) != DIGEST_ALGORITHMS[algorithm] or encoded.lower() != encoded:
            raise InvalidReference(f"invalid checksum digest format: {digest}")
    return ImageRef(name, tag, digest)


def image_ref(text: str) -> ImageRef | None:
    """`parse_image_ref` of an ``image:`` value, or None when it cannot be read from the file alone: Compose
    interpolates it (``${IMAGE}``) or Docker would refuse it."""
    if "$" in text:
        return None
    try:
        return parse_image_ref(text)
    except InvalidReference:
        return None


def image_keys(tags: Iterable[str], digests: Iterable[str]) -> frozenset[str]:
    """Every reference Docker finds an image by (`ImageRef.keys`), from its RepoTags and RepoDigests.

    An entry Docker itself would not write (``<none>:<none>``) is left out.
    """
    out: set[str] = set()
    for text in (*tags, *digests):
        ref = image_ref(text)
        if ref is not None:
            out |= ref.keys
    return frozenset(out)
