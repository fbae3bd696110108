"""Service templates: ``SRV/templates/T`` -> a new project folder ``SRV/apps/NAME`` (or ``users/``).

A template folder holds a compose file, optionally ``conf/`` and a
``.env.example``. `templates_fact` lists them (apps.templates); `plan_new` is
the list of commands that make a project from one, none of which can
overwrite anything: the project folder is made with ``mkdir`` (no ``-p``: it
fails if the folder exists), everything else goes inside it. ``.env`` is
installed with mode 0600 from the first byte. `NewProjectAction` is apps.new:
plan (facts only), act, then verify by discovering the new project.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from aegir.compose.discovery import COMPOSE_FILES, ENV_FILE
from aegir.compose.status import discover, srv_checked
from aegir.errors import AegirError, RefusedError
from aegir.facts import Fact
from aegir.report import Result
from aegir.sh import Cmd, check_name, shell

if TYPE_CHECKING:  # pragma: no cover
    from aegir.host import HostContext

TEMPLATES_DIR = "templates"
ENV_EXAMPLE = ".env.example"


@dataclass(frozen=True)
class ServiceTemplate:
    """One template folder: its compose file (None: not a usable template), .env.example, conf/."""

    name: str
    dir: str
    file: str | None
    env_example: bool = False
    conf: bool = False


_LIST_SCRIPT = """\
cd "$1" 2>/dev/null || { echo X; exit 0; }
for d in */; do
  [ -d "$d" ] || continue
  d=${d%/}
  f=-
  for c in compose.yaml compose.yml docker-compose.yaml docker-compose.yml; do
    if [ -f "$d/$c" ]; then f=$c; break; fi
  done
  e=-; [ -f "$d/.env.example" ] && e=y
  k=-; [ -d "$d/conf" ] && k=y
  printf 'T\\t%s\\t%s\\t%s\\t%s\\n' "$d" "$f" "$e" "$k"
done
"""


def templates_dir(srv: str) -> str:
    return f"{srv.rstrip('/')}/{TEMPLATES_DIR}"


def list_cmd(srv: str) -> Cmd:
    """List the folders of SRV/templates with their compose file, .env.example and conf/."""
    return shell(_LIST_SCRIPT, templates_dir(srv))


def parse_list(stdout: str, srv: str) -> tuple[ServiceTemplate, ...] | None:
    """Read `list_cmd` output; None when SRV/templates does not exist."""
    out = []
    for line in stdout.splitlines():
        if line == "X":
            return None
        parts = line.split("\t")
        if len(parts) != 5 or parts[0] != "T":
            continue
        _, name, f, e, k = parts
        out.append(ServiceTemplate(name, f"{templates_dir(srv)}/{name}", None if f == "-" else f, e == "y", k == "y"))
    return tuple(sorted(out, key=lambda t: t.name))


def project_dir(srv: str, name: str, *, users: bool = False) -> str:
    """``SRV/apps/NAME`` or ``SRV/users/NAME`` (NAME validated)."""
    check_name("project", name)
    return f"{srv.rstrip('/')}/{'users' if users else 'apps'}/{name}"


def plan_new(t: ServiceTemplate, dest: str) -> list[Cmd]:
    """The commands making `dest` from `t`; each fails rather than overwrite.

    >>> [c.line for c in plan_new(ServiceTemplate("web", "/srv/templates/web", "docker-compose.yml"), "/srv/apps/blog")]
    ['mkdir -m 0755 -- /srv/apps/blog', 'cp -p -- /srv/templates/web/docker-compose.yml /srv/apps/blog/docker-compose.yml', 'mkdir -m 0755 -- /srv/apps/blog/data']
    """
    if t.file is None or t.file not in COMPOSE_FILES:
        raise ValueError(f"template {t.name} has no compose file")
    steps = [
        Cmd.of("mkdir", "-m", "0755", "--", dest),
        Cmd.of("cp", "-p", "--", f"{t.dir}/{t.file}", f"{dest}/{t.file}"),
    ]
    if t.conf:
        steps.append(Cmd.of("cp", "-Rp", "--", f"{t.dir}/conf", f"{dest}/conf"))
    if t.env_example:
        steps.append(Cmd.of("install", "-m", "0600", "--", f"{t.dir}/{ENV_EXAMPLE}", f"{dest}/{ENV_FILE}"))
    steps.append(Cmd.of("mkdir", "-m", "0755", "--", f"{dest}/data"))
    return steps


# --------------------------------------------------------------------------- on a host


def templates_fact(srv: str) -> Fact[tuple[ServiceTemplate, ...] | None]:
    """The templates under SRV/templates (`list_cmd`, `parse_list`); None when the folder does not exist."""
    return Fact("compose.templates", list_cmd(srv), lambda r: parse_list(r.stdout, srv))


def exists_fact(path: str) -> Fact[bool]:
    """Whether anything is at `path` (``test -e``), asked afresh each time."""
    return Fact("compose.exists", Cmd.of("test", "-e", path), lambda r: r.exited == 0, answers=(0, 1), cache=False)


def read_templates(hc: HostContext) -> tuple[ServiceTemplate, ...] | None:
    """apps.templates on one host: its templates (one round trip), on a mounted /srv (`srv_checked`)."""
    found: tuple[ServiceTemplate, ...] | None = srv_checked(hc, templates_fact(hc.host.srv))[0]
    return found


@dataclass(frozen=True)
class NewPlan:
    """apps.new on one host: the template, the project (``apps/NAME``), its folder and the commands."""

    host: str
    template: ServiceTemplate
    path: str
    dest: str
    cmds: tuple[Cmd, ...]


@dataclass(frozen=True)
class NewProject:
    """What ``apps.new`` did on one host: each command and its result, then the check."""

    host: str
    project: str  # apps/NAME or users/NAME
    steps: tuple[tuple[str, str], ...]  # (command line, "done" | "failed: …" | "not run")
    verified: str = ""  # what discovery shows afterwards

    @property
    def ok(self) -> bool:
        return all(r == Result.DONE for _, r in self.steps) and not self.verified.startswith("NOT")


def plan_project(hc: HostContext, name: str, template: str, *, users: bool = False) -> NewPlan:
    """What making SRV/apps/NAME (or users/NAME) from SRV/templates/TEMPLATE takes; refused when the
    template is missing or unusable, or the project folder exists. Facts only: one round trip."""
    check_name("template", template)
    srv = hc.host.srv
    dest = project_dir(srv, name, users=users)
    listed, exists = srv_checked(hc, templates_fact(srv), exists_fact(dest))
    if listed is None:
        raise AegirError(f"{templates_dir(srv)} does not exist", host=hc.name)
    found = {t.name: t for t in listed}
    t = found.get(template)
    if t is None:
        raise AegirError(f"no template {template!r} in {templates_dir(srv)} (have: {', '.join(found) or 'none'})",
                         host=hc.name)
    if t.file is None:
        raise AegirError(f"template {t.dir} has no compose file ({', '.join(COMPOSE_FILES)})", host=hc.name)
    if exists:
        raise RefusedError(f"{dest} already exists: apps.new never overwrites; pick another name", host=hc.name)
    return NewPlan(hc.name, t, f"{'users' if users else 'apps'}/{name}", dest, tuple(plan_new(t, dest)))


def verify_project(hc: HostContext, plan: NewPlan) -> str:
    """What discovery shows of the new project (``NOT …`` when it is missing or its .env is not private)."""
    p = discover(hc, fresh=True).by_path().get(plan.path)
    if p is None:
        return f"NOT found by discovery under {hc.host.srv}"
    if plan.template.env_example and p.env_mode != 0o600:
        return f"NOT private: .env has mode {p.env_mode and oct(p.env_mode)}"
    return f"{p.path}: {p.file}, services {', '.join(p.expected) or '-'}" + (", .env 0600" if p.env_mode else "")


