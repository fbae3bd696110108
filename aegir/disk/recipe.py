"""Per-app clean-up recipes: YAML data, validated with file and line, rendered to exact commands (pure).

A recipe (``aegir/disk/recipes/NAME.yml``, or ``aegir-clean.yml`` in an app's
folder, which replaces it)::

    description: Remove cached remote media and old preview cards.
    service: web          # the Compose service whose container runs the steps
    user: mastodon        # as this user (``compose exec --user``); optional
    vars: {days: 7}       # values steps use as {days}; an app may override them
    steps:
      - name: remote media
        run: [tootctl, media, remove, --days, "{days}"]
      - name: state compressor
        run: [synapse_auto_compressor, ...]
        if_missing: skip  # the executable is not installed there: skipped, not failed
        stdin: "y\\n"     # fed to the command, then closed

In ``run`` and ``stdin``: ``{VAR}`` a var, ``{days_ago_ms:VAR}`` the Unix time
in milliseconds VAR days ago; in ``stdin`` only, ``{env:NAME}`` a value of the
app's ``.env`` (secrets travel on stdin, never in argv). ``{{``/``}}`` are braces.
A step may name its own ``service``, ``user`` and ``timeout`` (seconds, or ``30s``, ``5m``, ``2h``).

An app's compose file may choose and tune its recipe::

    x-aegir:
      clean:
        recipe: mastodon   # default: the app folder's name
        service: web
        user: mastodon
        vars: {days: 3}
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import Any

from aegir import fields, yamldoc
from aegir.errors import AegirError
from aegir.fields import FieldError, Fields
from aegir.sh import check_name
from aegir.yamldoc import YamlDoc, YamlError

#: The file in an app's folder that replaces the shipped recipe.
APP_RECIPE = "aegir-clean.yml"
_TOP = ("description", "service", "user", "vars", "steps")
_STEP = ("name", "run", "service", "user", "stdin", "if_missing", "timeout")
_OVERRIDE = ("recipe", "service", "user", "vars")
_FIELD = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")
_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
#: Exit code of `compose exec` when the executable is not in the container.
NOT_FOUND = 127


class RecipeError(AegirError):
    """A recipe that cannot be used: ``FILE:LINE: problem``."""

    def __init__(self, file: str, line: int | None, problem: str, *, host: str | None = None) -> None:
        self.file = file
        self.line = line
        super().__init__(f"{file}:{line}: {problem}" if line else f"{file}: {problem}", host=host)


@dataclass(frozen=True)
class RecipeStep:
    name: str
    run: tuple[str, ...]
    service: str | None = None
    user: str | None = None
    stdin: str | None = None
    if_missing: str = "fail"  # fail | skip
    timeout: float | None = None
    line: int | None = None


@dataclass(frozen=True)
class Recipe:
    name: str
    file: str
    steps: tuple[RecipeStep, ...]
    description: str = ""
    service: str | None = None
    user: str | None = None
    vars: Mapping[str, str] = field(default_factory=dict)


def shipped() -> tuple[str, ...]:
    """The names of the recipes aegir ships."""
    return tuple(sorted(p.name[:-4] for p in resources.files("aegir.disk").joinpath("recipes").iterdir()
                        if p.name.endswith(".yml")))


def shipped_text(name: str) -> tuple[str, str]:
    """(path, text) of a shipped recipe; `AegirError` naming the ones there are."""
    check_name("recipe", name)
    path = resources.files("aegir.disk").joinpath("recipes", f"{name}.yml")
    if not path.is_file():
        raise AegirError(f"no recipe {name!r}; shipped: {', '.join(shipped())}")
    return str(path), path.read_text()


def _load(text: str, file: str) -> YamlDoc:
    try:
        return yamldoc.load(text)
    except YamlError as exc:
        raise RecipeError(file, exc.line, exc.problem) from None


def _fields(doc: YamlDoc, file: str, value: Any, path: tuple[Any, ...], known: tuple[str, ...]) -> Fields:
    """The mapping `value` at `path` of `doc`, read by the field reader, its keys checked against `known`."""
    f = Fields({}, file, lambda keys: doc.line(*path, *keys), path=path, error=RecipeError)
    if not isinstance(value, dict):
        raise f.fail((), "must be a mapping")
    f = replace(f, values=value)
    f.check(known)
    return f


def _vars(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise FieldError("must be a mapping of names to numbers or words")
    out = {}
    for k, v in value.items():
        if not isinstance(k, str) or not _VAR.match(k):
            raise FieldError(f"invalid var name {k!r}", (k,))
        if isinstance(v, float) and not math.isfinite(v) or isinstance(v, str) and not _finite(v):
            raise FieldError(f"var {k!r}: {v!r} is not a number (infinite or NaN)", (k,))
        if isinstance(v, bool) or not isinstance(v, (int, str)) or (isinstance(v, str) and not v.strip()):
            raise FieldError(f"var {k!r} must be a number or a word", (k,))
        out[k] = str(v)
    return out


def _finite(text: str) -> bool:
    """False for a word Python reads as an infinite or NaN float (``inf``, ``nan``, ``1e400``), else True."""
    try:
        return math.isfinite(float(text))
    except ValueError:
        return True  # a word, not a number


def _run(value: Any) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(a, (str, int)) and not isinstance(a, bool)
                                                           for a in value):
        raise FieldError("must be a non-empty list of words (argv, no shell)")
    return [str(a) for a in value]


def _stdin(value: Any) -> str:
    if not isinstance(value, str):
        raise FieldError("must be text")
    return value


def _check_fields(step: Fields, key: str, text: str, names: set[str], *, env: bool) -> None:
    for m in _FIELD.finditer(text):
        f = m.group(1)
        if f is None:
            continue
        kind, sep, arg = f.partition(":")
        if not sep and kind in names:
            continue
        if sep and kind == "days_ago_ms" and arg in names:
            continue
        if sep and kind == "env" and _VAR.match(arg):
            if env:
                continue
            raise step.fail((key,), f"{{{f}}}: .env values go on stdin only, never in a command line")
        raise step.fail((key,), f"unknown field {{{f}}} (vars: {', '.join(sorted(names)) or 'none'})")


def parse_recipe(text: str, file: str, name: str, *, extra_vars: frozenset[str] = frozenset()) -> Recipe:
    """Read and validate one recipe file; `RecipeError` names `file` and the line."""
    doc = _load(text, file)
    if not isinstance(doc.data, dict):
        raise RecipeError(file, 1, "a recipe is a mapping with 'steps'")
    top = _fields(doc, file, doc.data, (), _TOP)
    variables = top.get("vars", _vars, {})
    names = set(variables) | set(extra_vars)
    raw_steps = top.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise top.fail(("steps",), "must be a non-empty list")
    steps = []
    for i, s in enumerate(raw_steps):
        step = _fields(doc, file, s, ("steps", i), _STEP)
        run = step.get("run", _run)
        if run is None:
            raise step.fail(("run",), "must be a non-empty list of words (argv, no shell)")
        for a in run:
            _check_fields(step, "run", a, names, env=False)
        stdin = step.get("stdin", _stdin)
        if stdin is not None:
            _check_fields(step, "stdin", stdin, names, env=True)
        steps.append(RecipeStep(
            name=str(step.get("name") or " ".join(run)), run=tuple(run),
            service=step.get("service", fields.name("service")), user=step.get("user", fields.name("user")),
            stdin=stdin, if_missing=step.get("if_missing", fields.choice("fail", "skip"), "fail"),
            timeout=step.get("timeout", fields.duration), line=doc.line("steps", i),
        ))
    recipe = Recipe(name, file, tuple(steps), str(top.get("description") or ""),
                    top.get("service", fields.name("service")), top.get("user", fields.name("user")), variables)
    for st in recipe.steps:
        if not (st.service or recipe.service):
            raise RecipeError(file, st.line, f"step {st.name!r}: no service (set 'service' in the step or the recipe)")
    return recipe


@dataclass(frozen=True)
class Override:
    """An app's ``x-aegir.clean`` settings (from its compose file)."""

    file: str
    recipe: str | None = None
    service: str | None = None
    user: str | None = None
    vars: Mapping[str, str] = field(default_factory=dict)
    var_lines: Mapping[str, int | None] = field(default_factory=dict)


def parse_override(compose_text: str, file: str) -> Override:
    """Read ``x-aegir.clean`` from a compose file (none: an empty `Override`)."""
    doc = _load(compose_text, file)
    data = doc.data if isinstance(doc.data, dict) else {}
    ext = data.get("x-aegir")
    if ext is None:
        return Override(file)
    if not isinstance(ext, dict):
        raise RecipeError(file, doc.line("x-aegir"), "x-aegir: must be a mapping")
    if ext.get("clean") is None:
        return Override(file)
    path = ("x-aegir", "clean")
    clean = _fields(doc, file, ext["clean"], path, _OVERRIDE)
    variables = clean.get("vars", _vars, {})
    return Override(file, clean.get("recipe", fields.name("recipe")), clean.get("service", fields.name("service")),
                    clean.get("user", fields.name("user")), variables,
                    {k: doc.line(*path, "vars", k) for k in variables})


def apply_override(recipe: Recipe, ov: Override) -> Recipe:
    """`recipe` with the app's service, user and vars; a var the recipe does not use is an error."""
    for k in ov.vars:
        if k not in recipe.vars:
            raise RecipeError(ov.file, ov.var_lines.get(k),
                              f"x-aegir.clean.vars: {recipe.name} has no var {k!r} "
                              f"(it has: {', '.join(recipe.vars) or 'none'})")
    return replace(recipe, service=ov.service or recipe.service, user=ov.user or recipe.user,
                   vars={**recipe.vars, **ov.vars})


@dataclass(frozen=True)
class Command:
    """One step rendered: where it runs, its argv, its stdin (`shown`: stdin with .env values hidden)."""

    step: str
    service: str
    user: str | None
    argv: tuple[str, ...]
    stdin: str | None
    shown_stdin: str | None
    if_missing: str
    timeout: float | None


def _render(text: str, variables: Mapping[str, str], env: Mapping[str, str | None], now: float, *,
            hide: bool, file: str, line: int | None) -> str:
    def field(m: re.Match[str]) -> str:
        if m.group(0) in ("{{", "}}"):
            return m.group(0)[0]
        kind, sep, arg = m.group(1).partition(":")
        if not sep:
            return variables[kind]
        if kind == "days_ago_ms":
            try:
                ms = (now - float(variables[arg]) * 86400) * 1000
            except ValueError:
                ms = math.nan
            if not math.isfinite(ms):  # a word, or a number of days no clock reaches
                raise RecipeError(file, line, f"{{days_ago_ms:{arg}}}: {arg} = {variables[arg]!r} is not a number "
                                              "of days")
            return str(int(ms))
        if hide:
            return f"<.env {arg}>"
        value = env.get(arg)
        if value is None:
            raise RecipeError(file, line, f"{{env:{arg}}}: the app's .env does not set {arg}")
        return value

    return _FIELD.sub(field, text)


def render(recipe: Recipe, env: Mapping[str, str | None], now: float) -> tuple[Command, ...]:
    """The exact commands of `recipe` (vars and .env values filled in) at time `now`."""
    out = []
    for s in recipe.steps:
        def r(text: str, *, hide: bool = False, s: RecipeStep = s) -> str:
            return _render(text, recipe.vars, env, now, hide=hide, file=recipe.file, line=s.line)

        service = s.service or recipe.service
        assert service is not None  # parse_recipe checked it
        out.append(Command(s.name, service, s.user or recipe.user, tuple(r(a) for a in s.run),
                           None if s.stdin is None else r(s.stdin),
                           None if s.stdin is None else r(s.stdin, hide=True), s.if_missing, s.timeout))
    return tuple(out)
