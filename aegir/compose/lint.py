"""Publishability lint: a compose file says nothing site-specific, its .env says the rest.

The runbook wants every ``docker-compose.yml`` publishable: the domain names,
addresses, e-mail addresses and secrets of the site come from ``.env`` through
``${VAR}`` references. `lint_texts` checks one project's files (pure: text in,
`Finding`s out, each with file, line and rule); `lint_host` reads the files on
a host (one round trip for all projects) and adds Compose's own verdict
(``compose config --quiet``, built by `aegir.compose.commands`, asked as `config_fact`s
in one more round trip).

Rules (``Finding.rule``):

``domain``         a literal domain name (not in ``image:``, not a file name),
                   also after a reference or a wildcard (``${SUB}.example.org``),
                   and as a mapping key (``extra_hosts: {cloud.example.org: …}``)
``email``          a literal e-mail address
``public-ip``      a literal public IP address; documentation ranges
                   (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32)
                   count as public, private/loopback/link-local ones do not
``secret``         a key that looks secret (password, passphrase, secret, token,
                   key…) with a literal value instead of a ``${VAR}`` reference
                   (a literal default, ``${PW:-changeme}``, is a literal too); in
                   ``command``/``entrypoint``/``healthcheck.test`` also a secret-looking
                   flag or assignment: ``--db-pass hunter2``, ``sh -c "PASSWORD=x run"``
``undefined-var``  ``${VAR}`` (or ``$VAR``, ``${VAR:?…}``) without a default and
                   missing from .env
``unused-env``     a .env key nothing uses (``COMPOSE_*``/``DOCKER_*`` are Compose's
                   own; an ``env_file: .env`` uses every key)
``env-mode``       a world-readable .env
``env-syntax``     a .env line python-dotenv cannot parse
``x-aegir``        an ``x-aegir`` that is not a mapping, or a key of it no area of
                   aegir reads (``dsn:`` for ``dns:``: the settings would be ignored)
``yaml``           a compose file that is not valid YAML
``compose-config`` a compose file ``compose config`` rejects

No value of a project's ``.env`` is ever printed: every finding's message is
masked (`EnvFile.mask`), Compose's own errors too, which quote interpolated
values (``invalid hostPort: <the value>``).
"""

from __future__ import annotations

import functools
import io
import ipaddress
import re
import shlex
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import yaml

from aegir import yamldoc
from aegir.compose import commands as compose
from aegir.compose.discovery import ENV_FILE, Project, select, warnings_about
from aegir.compose.status import discover
from aegir.facts import Fact
from aegir.fields import unknown_key
from aegir.layout import PROJECT_KINDS
from aegir.sh import masker
from aegir.yamldoc import YamlError

if TYPE_CHECKING:  # pragma: no cover
    from aegir.host import HostContext

RULES = ("yaml", "compose-config", "domain", "email", "public-ip", "secret", "undefined-var",
         "unused-env", "env-mode", "env-syntax", "x-aegir")
#: The keys of ``x-aegir`` an area reads: dns (`aegir.dns.services`), clean (`aegir.disk.recipe`),
#: mysql (`aegir.mysql.onhost`, on the host).
X_AEGIR_KEYS = ("clean", "dns", "mysql")


@dataclass(frozen=True)
class Finding:
    """One lint finding: where (file, 1-based line or None for the whole file), which rule, why."""

    file: str
    line: int | None
    rule: str
    message: str

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


# --------------------------------------------------------------------------- variables


@dataclass(frozen=True)
class Ref:
    """One ``$VAR``/``${VAR…}`` reference: its name and operator (``""``, ``-``, ``:-``, ``?``, ``:?``, ``+``, ``:+``)."""

    name: str
    op: str = ""

    @property
    def has_default(self) -> bool:
        return self.op in ("-", ":-", "+", ":+")


_NAME = re.compile(r"[_A-Za-z][_A-Za-z0-9]*")
_OP = re.compile(r":?[-?+]")


def _scan(text: str) -> Iterator[tuple[str, Ref | None, str]]:
    """`text` as Compose reads it: (literal text, None, "") and (``""``, reference, its default or message) pieces."""
    i = 0
    while i < len(text):
        nxt = text[i + 1:i + 2] if text[i] == "$" else ""
        m = _NAME.match(text, i + (2 if nxt == "{" else 1)) if nxt not in ("", "$") else None
        if m is None:  # plain text; ``$$`` is a literal ``$``
            yield text[i], None, ""
            i += 2 if nxt == "$" else 1
        elif nxt != "{":  # $VAR
            yield "", Ref(m.group(0)), ""
            i = m.end()
        else:  # ${VAR}, ${VAR:-default}, ${VAR:?message}...
            op_m = _OP.match(text, m.end())
            j = start = op_m.end() if op_m else m.end()
            depth = 1
            while j < len(text) and depth:
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                j += 1
            yield "", Ref(m.group(0), op_m.group(0) if op_m else ""), text[start:j - 1] if op_m else ""
            i = j


#: How deep defaults inside defaults (``${A:-${B:-…}}``) are followed; deeper ones are read as text.
MAX_NESTING = 10


def refs(text: str, _depth: int = 0) -> list[Ref]:
    """The variable references in `text`, as Compose interpolates them (``$$`` is a literal ``$``).

    Defaults are scanned too: ``${A:-${B}}`` refers to A and (when A is unset) B
    (down to `MAX_NESTING` levels: a hostile file cannot exhaust the stack).
    """
    out: list[Ref] = []
    for _, ref, inner in _scan(text):
        if ref is not None:
            out += [ref, *(refs(inner, _depth + 1) if _depth < MAX_NESTING else [])]
    return out


def literal_part(text: str, _depth: int = 0) -> str:
    """What of `text` is written in the file: references removed, their defaults kept, ``?`` messages dropped.

    >>> literal_part("${DB_PASSWORD:-hunter2}"), literal_part("${A}"), literal_part("${A:?set A}")
    ('hunter2', '', '')
    """
    if _depth > MAX_NESTING:
        return text
    return "".join(plain if ref is None else literal_part(inner, _depth + 1) if "?" not in ref.op else ""
                   for plain, ref, inner in _scan(text))


def _strip_refs(text: str) -> str:
    """`text` with ``$$`` and bare ``$VAR``/``${VAR}`` references blanked (defaults are kept: they are literal)."""
    text = text.replace("$$", "  ")
    text = re.sub(r"\$\{[_A-Za-z][_A-Za-z0-9]*\}", lambda m: " " * len(m.group(0)), text)
    text = re.sub(r"\$\{[_A-Za-z][_A-Za-z0-9]*:?[-?+]", lambda m: " " * len(m.group(0)), text)
    return re.sub(r"\$[_A-Za-z][_A-Za-z0-9]*", lambda m: " " * len(m.group(0)), text)


# --------------------------------------------------------------------------- literals

_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])"  # starts at a word's start only: linear, not quadratic
                    r"[A-Za-z0-9._%+-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}")
_DOMAIN = re.compile(r"(?<![A-Za-z0-9_.-])(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9])?\.)+[A-Za-z][A-Za-z0-9-]*[A-Za-z0-9](?![A-Za-z0-9_-])")
_IPV4 = re.compile(r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?![\w.])")
_LONG_WORD = re.compile(r"\S{300,}")
_LEADING_DOT = re.compile(r"(?<![A-Za-z0-9_./-])\.(?=[A-Za-z0-9_])")
_IPV6 = re.compile(r"(?<![0-9A-Fa-f:])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![0-9A-Fa-f:])")

#: Last labels that make a dotted word a file name, not a domain.
FILE_SUFFIXES = frozenset("""
conf cfg config yml yaml json toml ini env properties sh bash py js mjs ts rb php pl lua go sql txt md
rst log pid sock pem crt cert key csr der p12 pfx html htm css xml db sqlite sqlite3 tar gz tgz bz2 xz
zip jar war so d example sample dist tmpl tpl j2 jinja service socket timer lock bak old orig png jpg
jpeg gif svg ico webp woff woff2 ttf otf map wasm conf-available local lan internal localhost test
invalid home arpa
""".split())

#: Documentation ranges stand for public addresses in examples: flag them.
_DOC_NETS = tuple(ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32"))

#: Values of these keys are never site data (image references name a registry).
_SKIP_LITERALS = frozenset({"image"})


def is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Globally routable, or in a documentation range (which stands for a public address)."""
    return any(ip in n for n in _DOC_NETS if n.version == ip.version) or ip.is_global


def _literals(text: str) -> Iterator[tuple[str, str, int]]:
    """(rule, literal, offset) for every e-mail address, domain name and public IP in `text`."""
    # No domain (253) or e-mail address (254) is longer than this: blank longer words, so that
    # the patterns' backtracking stays bounded on a hostile 100 kB word (48 s before).
    plain = _LONG_WORD.sub(lambda m: " " * len(m.group(0)), _strip_refs(text))
    for m in _EMAIL.finditer(plain):
        yield "email", m.group(0), m.start()
    plain = _EMAIL.sub(lambda m: " " * len(m.group(0)), plain)
    # a dot after a reference, a wildcard or nothing starts a domain too: ${SUB}.example.org, *.example.org
    plain = _LEADING_DOT.sub(" ", plain)
    for m in _DOMAIN.finditer(plain):
        word = m.group(0)
        labels = word.split(".")
        before = plain[max(0, m.start() - 3):m.start()]
        if before.endswith("/") and not before.endswith("://"):
            continue  # a path component: ./conf/nginx.conf
        if labels[-1].lower() in FILE_SUFFIXES or not labels[-1].isalpha() or len(labels[-1]) < 2:
            continue
        yield "domain", word, m.start()
    for rx in (_IPV4, _IPV6):
        for m in rx.finditer(plain):
            try:
                ip = ipaddress.ip_address(m.group(0))
            except ValueError:
                continue
            if is_public(ip):
                yield "public-ip", m.group(0), m.start()


_SECRET_WORDS = frozenset({"password", "passwd", "pass", "pwd", "secret", "token", "key", "apikey",
                           "credential", "credentials", "salt", "privatekey"})
#: Words secret even inside another (DBPASSWORD, BORG_PASSPHRASE, ACCESSTOKEN); `key` is not (monkey).
_SECRET_PARTS = ("password", "passwd", "passphrase", "secret", "token", "credential")
_NOT_SECRET_LAST = frozenset({"file", "path", "dir", "length", "len", "size", "type", "format", "algorithm",
                              "header", "enabled", "name", "id", "url_path"})
_BOOLS = frozenset({"", "true", "false", "yes", "no", "on", "off", "null", "~"})


def looks_secret(key: str) -> bool:
    """``DB_PASSWORD``, ``secretKey``, ``BORG_PASSPHRASE`` -> True; ``SSL_KEY_FILE``, ``monkey`` -> False."""
    words = [w.lower() for w in re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+", key)]
    return bool(words) and words[-1] not in _NOT_SECRET_LAST and any(
        w in _SECRET_WORDS or any(part in w for part in _SECRET_PARTS) for w in words)


#: Keys whose value is a command line: secrets hide in their arguments.
_COMMAND_KEYS = frozenset({"command", "entrypoint", "test"})
_SECRETISH = re.compile(r"(?i)pass|pwd|secret|token|key|credential|salt")
_FLAG = re.compile(r"(-{1,2}[A-Za-z][A-Za-z0-9_.-]*)(?:=(.*))?", re.DOTALL)
_ASSIGN = re.compile(r"([_A-Za-z][_A-Za-z0-9.-]*)=(.*)", re.DOTALL)


def _is_literal(value: str) -> bool:
    """A value written in the file: not a ``${VAR}`` reference, not a ``$$VAR`` the container's shell expands."""
    text = literal_part(value).strip()
    return text.lower() not in _BOOLS and not text.startswith("$")


def _argument_secrets(argv: Sequence[str], *, split: bool) -> list[tuple[int, str]]:
    """(index in `argv`, message) for each secret-looking flag or assignment with a literal value.

    `argv` is an exec-form list, or (`split`) one command line. Caught:
    ``--password=hunter2``, ``--db-pass hunter2``, ``DB_PASSWORD=x run``, and the
    same inside a script argument (``sh -c "mysqld --password=x"``).

    Linear in the distinct items: an item written again (a YAML alias used 1,000
    times) is split and read once; only a flag ending an item looks at the next one.
    """
    distinct = set(argv)
    if not any(_SECRETISH.search(item) for item in distinct):  # shlex reads ~100 kB/s: skip what cannot match
        return []
    read: dict[tuple[str, bool], tuple[list[str], list[str], str | None]] = {}
    items = []
    for i, item in enumerate(argv):
        script = split or (" " in item.strip() and i > 0)  # a command line, or a script inside an argv
        found = read.get((item, script))
        if found is None:
            found = read[(item, script)] = _item_secrets(item, script)
        items.append(found)
    out: list[tuple[int, str]] = []
    following = ""  # the first word of the items after this one
    firsts = []
    for words, _, _ in reversed(items):
        firsts.append(following)
        following = words[0] if words else following
    for i, ((_, messages, last_flag), value) in enumerate(zip(items, reversed(firsts))):
        out.extend((i, message) for message in messages)
        if last_flag is not None and not value.startswith("-") and _is_literal(value):
            out.append((i, _literal_secret(last_flag)))
    return out


def _item_secrets(item: str, script: bool) -> tuple[list[str], list[str], str | None]:
    """One argv item: its words, the messages about them (each once: they all name the item's line),
    and its last word when that is a secret flag whose value is the next item's first word."""
    if script:
        try:
            words = shlex.split(item)
        except ValueError:
            words = item.split()
    else:
        words = [item]
    messages: list[str] = []
    for n, tok in enumerate(words):
        flag = _FLAG.fullmatch(tok)
        if flag and looks_secret(flag.group(1).lstrip("-")):
            if flag.group(2) is None and n + 1 == len(words):
                return words, list(dict.fromkeys(messages)), flag.group(1)
            value = flag.group(2) if flag.group(2) is not None else words[n + 1]
            if (flag.group(2) is not None or not value.startswith("-")) and _is_literal(value):
                messages.append(_literal_secret(flag.group(1)))
            continue
        assign = _ASSIGN.fullmatch(tok)
        if assign and looks_secret(assign.group(1)) and _is_literal(assign.group(2)):
            messages.append(_literal_secret(assign.group(1)))
    return words, list(dict.fromkeys(messages)), None


def _literal_secret(key: str) -> str:
    return f"{key} has a literal value: take it from {ENV_FILE} (${{{_var(key)}}})"


#: Top-level domains a site's domain ends with (a key ending otherwise, like ``traefik.http.routers.x.rule``,
#: is a dotted name, not a domain); any two-letter label counts too (country codes).
_TLDS = frozenset("""
com net org info biz io dev app cloud site online tech xyz eu social email space club pro name me tv cc co page
blog network systems zone chat live media news one world host website link community coop asso
""".split())

#: First labels of reverse-DNS names (``com.docker.compose.project``).
_REVERSE_DNS = frozenset({"com", "org", "net", "io"})


def _domain_keys(root: yaml.Node | None) -> Iterator[tuple[str, int]]:
    """Mapping keys that are a site's domain (``cloud.example.org: …``), with their lines.

    Label-style keys (``traefik.http.routers.x.rule``) and reverse-DNS ones
    (``org.opencontainers.image.source``, ``com.example.site.eu``) are names, not domains.
    """
    stack = [root] if root is not None else []
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode):
                    for m in _DOMAIN.finditer(_strip_refs(str(k.value))):
                        labels = m.group(0).lower().split(".")
                        if _site_tld(labels[-1]) and labels[0] not in _REVERSE_DNS and labels[-1] not in FILE_SUFFIXES:
                            yield m.group(0), k.start_mark.line + 1
                stack.append(v)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


def _site_tld(label: str) -> bool:
    return label in _TLDS or (len(label) == 2 and label.isalpha())


# --------------------------------------------------------------------------- walking YAML


@dataclass(frozen=True)
class _Scalar:
    keys: tuple[str, ...]  # the mapping keys leading to it
    key: str | None  # its own key: mapping key, or K of a "K=V" list item
    value: str
    line: int
    in_list: bool
    node: int = 0  # id() of its YAML node: an alias yields the same node again


def _scalars(node: yaml.Node, keys: tuple[str, ...] = (), seen: set[int] | None = None) -> Iterator[_Scalar]:
    seen = set() if seen is None else seen
    if id(node) in seen:  # an alias repeats its anchor: report the anchor once
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            kname = str(k.value) if isinstance(k, yaml.ScalarNode) else "?"
            if isinstance(v, yaml.ScalarNode):
                yield _Scalar((*keys, kname), kname, str(v.value), _line(v), False, id(v))
            else:
                yield from _scalars(v, (*keys, kname), seen)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            if isinstance(item, yaml.ScalarNode):
                value = str(item.value)
                key = value.split("=", 1)[0] if "=" in value and _NAME.fullmatch(value.split("=", 1)[0].replace(".", "_").replace("-", "_")) else None
                yield _Scalar(keys, key, value, _line(item), True, id(item))
            else:
                yield from _scalars(item, keys, seen)


def _line(node: yaml.ScalarNode) -> int:
    # A block scalar (| or >) starts on the line after its indicator.
    return node.start_mark.line + (2 if node.style in ("|", ">") else 1)


def _offset_line(s: _Scalar, offset: int) -> int:
    return s.line + s.value[:offset].count("\n")


# --------------------------------------------------------------------------- the lint


@dataclass(frozen=True)
class EnvFile:
    """A parsed .env: key -> line, references its values make, syntax errors, the values (to mask)."""

    keys: dict[str, int]
    refs: frozenset[str]
    errors: tuple[int, ...]
    values: tuple[str, ...] = ()  # as written and as interpolated: never printed

    def mask(self, text: str) -> str:
        """`text` with every value of this .env replaced by ``****``."""
        return self._sub("****", text)

    @functools.cached_property
    def _sub(self) -> Callable[[str, str], str]:
        return masker(self.values)


def parse_env(text: str) -> EnvFile:
    """Read a .env with python-dotenv's parser, keeping each key's line and every value."""
    from dotenv.parser import parse_stream  # imported here: not on `inv --list`'s path
    from dotenv.variables import parse_variables

    keys: dict[str, int] = {}
    used: set[str] = set()
    errors: list[int] = []
    pairs: list[tuple[str, str | None]] = []
    values: set[str] = set()
    for b in parse_stream(io.StringIO(text)):
        s = b.original.string
        line = b.original.line + s[:len(s) - len(s.lstrip())].count("\n")
        if b.error:
            errors.append(line)
            values.update(s.partition("=")[2].strip().strip("'\"").splitlines())  # unreadable: mask what follows '='
        elif b.key is not None:
            keys.setdefault(b.key, line)
            used.update(r.name for r in refs(b.value or ""))
            pairs.append((b.key, b.value))
            values.add(b.value or "")
            values.update(s.partition("=")[2].strip().strip("'\"").splitlines())
    seen: dict[str, str | None] = {}  # the values Compose will see: ${A} inside B's value expanded
    for key, value in pairs:  # (dotenv's resolve_variables copies os.environ once per key: quadratic)
        seen[key] = None if value is None else "".join(atom.resolve(seen) for atom in parse_variables(value))
        values.add(seen[key] or "")
    return EnvFile(keys, frozenset(used), tuple(errors), tuple(sorted(v for v in values if v.strip())))


def env_files(data: object) -> list[str]:
    """Every ``env_file:`` path the services of a compose file's data name (as written, in order, once each)."""
    out: list[str] = []
    services = data.get("services") if isinstance(data, dict) else None
    for svc in (services or {}).values() if isinstance(services, dict) else ():
        ef = svc.get("env_file") if isinstance(svc, dict) else None
        items = ef if isinstance(ef, list) else [ef]
        for item in items:
            path = item.get("path") if isinstance(item, dict) else item
            if isinstance(path, str) and path.strip() and path.strip() not in out:
                out.append(path.strip())
    return out


def _uses_env_file(data: object) -> bool:
    """True when a service loads .env wholesale (``env_file: .env``)."""
    return any(path in (ENV_FILE, f"./{ENV_FILE}") for path in env_files(data))


def lint_texts(compose_file: str, compose_text: str, env_file: str, env_text: str | None,
               env_mode: int | None) -> list[Finding]:
    """Lint one project's compose text and .env (None: no .env); findings sorted by file, line, rule.

    No message holds a value of the .env (`masked`)."""
    env = parse_env(env_text) if env_text is not None else EnvFile({}, frozenset(), ())
    return [masked(f, env) for f in _findings(compose_file, compose_text, env_file, env_text, env_mode, env)]


def masked(f: Finding, env: EnvFile) -> Finding:
    """`f` with no value of `env` in its message."""
    message = env.mask(f.message)
    return f if message == f.message else Finding(f.file, f.line, f.rule, message)


_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')


def _masked_config(f: Finding, env: EnvFile, compose_text: str) -> Finding:
    """Compose's verdict without .env values: each value masked, and so is every double-quoted
    string of its message that the compose file does not hold (it came from interpolation:
    ``mem_limit: ${MEM}`` gives ``parsing "<part of the value>"``)."""
    def quoted(m: re.Match[str]) -> str:
        inner = m.group(1)
        return m.group(0) if not inner or inner in compose_text or inner == "****" else '"****"'

    f = masked(f, env)
    message = _QUOTED.sub(quoted, f.message)
    return f if message == f.message else Finding(f.file, f.line, f.rule, message)


def _findings(compose_file: str, compose_text: str, env_file: str, env_text: str | None, env_mode: int | None,
              env: EnvFile) -> list[Finding]:
    found: list[Finding] = []
    try:
        doc = yamldoc.load(compose_text)
    except YamlError as exc:
        return [Finding(compose_file, exc.line, "yaml", exc.problem)]
    data, root = doc.data, doc.node
    scalars = list(_scalars(root)) if root is not None else []
    argvs: dict[tuple[str, ...], list[_Scalar]] = {}  # exec-form lists, by the keys leading to them
    for s in scalars:
        if s.in_list and s.keys and s.keys[-1] in _COMMAND_KEYS:
            argvs.setdefault(s.keys, []).append(s)
    used: set[str] = set(env.refs)
    done: set[tuple[int, tuple[str, ...], str | None, bool]] = set()
    for s in scalars:
        if s.keys and s.keys[-1] in _COMMAND_KEYS and s.in_list and s is argvs[s.keys][0]:
            argv = argvs[s.keys]  # an exec-form list is read once, as one argv
            found.extend(Finding(compose_file, argv[i].line, "secret", message)
                         for i, message in _argument_secrets([t.value for t in argv], split=False))
        if (s.node, s.keys, s.key, s.in_list) in done:  # an alias of a scalar read here already: same findings
            continue
        done.add((s.node, s.keys, s.key, s.in_list))
        for r in refs(s.value):
            used.add(r.name)
            if not r.has_default and r.name not in env.keys:
                how = "required" if "?" in r.op else "used without a default"
                found.append(Finding(compose_file, s.line, "undefined-var",
                                     f"${{{r.name}}} is {how} and missing from {ENV_FILE}"))
        if s.key and looks_secret(s.key):
            value = s.value.split("=", 1)[1] if s.in_list else s.value
            if _is_literal(value):  # "hunter2", "${PW:-hunter2}", "x${Y}"; not "$$PW" (the container's own)
                found.append(Finding(compose_file, s.line, "secret", _literal_secret(s.key)))
        if s.keys and s.keys[-1] in _SKIP_LITERALS and not s.in_list:
            continue
        if s.keys and s.keys[-1] in _COMMAND_KEYS and not s.in_list:  # "--password hunter2": a flag, then its value
            found.extend(Finding(compose_file, s.line, "secret", message)
                         for _, message in _argument_secrets([s.value], split=True))
        text = s.value.split("=", 1)[1] if s.in_list and s.key else s.value
        shift = len(s.value) - len(text)
        for rule, literal, offset in _literals(text):
            what = {"email": "e-mail address", "domain": "domain name", "public-ip": "public IP address"}[rule]
            found.append(Finding(compose_file, _offset_line(s, offset + shift), rule,
                                 f"literal {what} {literal!r}: take it from {ENV_FILE}"))
    found.extend(Finding(compose_file, line, "domain", f"literal domain name {word!r} as a key: take it from {ENV_FILE}")
                 for word, line in _domain_keys(root))
    found.extend(_x_aegir(compose_file, doc))
    if env_text is not None:
        if env_mode is not None and env_mode & 0o004:
            found.append(Finding(env_file, None, "env-mode",
                                 f"world-readable (mode {env_mode:04o}): chmod 600 {env_file}"))
        for line in env.errors:
            found.append(Finding(env_file, line, "env-syntax", "python-dotenv cannot parse this line"))
        if not _uses_env_file(data):
            for key, line in env.keys.items():
                if key not in used and not key.startswith(("COMPOSE_", "DOCKER_")):
                    found.append(Finding(env_file, line, "unused-env", f"{key} is never used by {compose_file.rsplit('/', 1)[-1]}"))
    return sorted(set(found), key=lambda f: (f.file != compose_file, f.file, f.line or 0, f.rule, f.message))


def _x_aegir(compose_file: str, doc: yamldoc.YamlDoc) -> list[Finding]:
    """``x-aegir`` is a mapping of the keys some area reads (a typo there is silently ignored otherwise)."""
    ext = doc.data.get("x-aegir") if isinstance(doc.data, dict) else None
    if ext is None:
        return []
    if not isinstance(ext, dict):
        return [Finding(compose_file, doc.line("x-aegir"), "x-aegir", "x-aegir: must be a mapping")]
    return [Finding(compose_file, doc.line("x-aegir", key), "x-aegir", f"x-aegir: {unknown_key(key, X_AEGIR_KEYS)}")
            for key in ext if key not in X_AEGIR_KEYS]


def _var(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", key.lstrip("-")).upper()


_LINE_RE = re.compile(r"\bline (\d+)\b")


def config_finding(compose_file: str, exited: int, stderr: str) -> Finding | None:
    """Compose's verdict: None when ``config --quiet`` passed, else its last error line."""
    if exited == 0:
        return None
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip() and not ln.lstrip().startswith(("WARN", "level=warn"))]
    message = lines[-1] if lines else f"exited {exited}"
    m = _LINE_RE.search(message)
    return Finding(compose_file, int(m.group(1)) if m else None, "compose-config", f"compose config: {message}")


# --------------------------------------------------------------------------- on a host


@dataclass(frozen=True)
class ProjectLint:
    """The findings for one project of a host."""

    kind: str
    name: str
    findings: tuple[Finding, ...]


@dataclass(frozen=True)
class HostLint:
    host: str
    projects: tuple[ProjectLint, ...]
    missing: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def findings(self) -> int:
        return sum(len(p.findings) for p in self.projects)


def config_fact(fl: compose.Flavour, p: Project, docker_host: str | None = None) -> Fact[Finding | None]:
    """Compose's own verdict on `p` (``compose config --quiet``, `config_finding`): every exit code answers;
    never kept (Compose's errors quote the .env's values)."""
    cmd = compose.config_check(fl, p, docker_host=docker_host)
    return Fact("compose.config_check", cmd, lambda r: config_finding(p.compose_path, r.exited, r.stderr),
                answers=None, cache=False)


def text_findings(p: Project, env_text: str | None) -> list[Finding]:
    """`lint_texts` of `p`'s files (a compose file tar could not read is one ``yaml`` finding)."""
    if p.error and not p.compose_text:
        return [Finding(p.compose_path, None, "yaml", p.error)]
    return lint_texts(p.compose_path, p.compose_text, f"{p.dir}/{ENV_FILE}", env_text, p.env_mode)


def lint_project(p: Project, env_text: str | None, findings: Sequence[Finding],
                 verdict: Finding | None = None) -> ProjectLint:
    """`p`'s findings: Compose's `verdict` (`config_fact`), masked (Compose quotes interpolated values in
    its errors: ``invalid hostPort: <the .env value>``), then those of its texts (`text_findings`)."""
    if verdict is not None:
        env = parse_env(env_text) if env_text is not None else EnvFile({}, frozenset(), ())
        findings = [_masked_config(verdict, env, p.compose_text), *findings]
    return ProjectLint(p.kind, p.folder, tuple(findings))


def lint_host(hc: "HostContext", names: Sequence[str] = (), kinds: Sequence[str] = PROJECT_KINDS) -> HostLint:
    """Lint the projects of `hc` (all of `kinds`, or those `names` designate), on a mounted /srv.

    The compose files and .env files come in one round trip (`discover_cmd`
    with the .env texts); Compose's verdict on every project whose YAML reads
    (`config_fact`) in one more.
    """
    disc = discover(hc, with_env=True)
    chosen, missing = select(disc.projects, names, kinds, host=hc.name)
    texts = {p.path: text_findings(p, disc.envs.get(p.path)) for p in chosen}
    asked = [p for p in chosen if not any(f.rule == "yaml" for f in texts[p.path])]
    verdicts: dict[str, Finding | None] = {}
    if asked:
        fl = compose.flavour(hc)
        verdicts = dict(zip((p.path for p in asked), hc.facts(*(config_fact(fl, p, hc.host.docker_host)
                                                                 for p in asked))))
    results = [lint_project(p, disc.envs.get(p.path), texts[p.path], verdicts.get(p.path)) for p in chosen]
    return HostLint(hc.name, tuple(results), missing, warnings_about(disc, chosen, kinds, all_of_kinds=not names))
