"""YAML read once, with line numbers, within limits: the one loader for hosts.yml and compose files.

`load(text)` composes the node tree once and builds the data from it (PyYAML's
safe constructors), so a caller gets both the values and where each key was
written (`YamlDoc.line`). Whatever the text holds, the outcome is a `YamlDoc`
or a `YamlError` with a line and one sentence: never a traceback (control
characters, deep nesting), never a hang. While the tree is composed, the
nodes (`MAX_NODES`), the levels (`MAX_DEPTH`) and the characters of the
scalars (`limits.YAML_EXPANDED`) are added up with every alias counted at each
use (an alias adds its anchor's totals, known once): an "alias bomb" is refused
at the line that passes a limit, nothing is expanded to measure it, and a
caller that joins or copies the values (``str()`` of a list of aliases) stays
within the limit. A text longer than `limits.YAML_BYTES` is refused before it
is read, and more than `MAX_DEPTH` open brackets in a row before it is scanned
(even inside a quoted string, where no real file has them). The events come
from libyaml when PyYAML has it (5 times as fast as PyYAML's own scanner).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

from aegir import limits
from aegir.errors import AegirError

try:
    from yaml._yaml import CParser  # libyaml's scanner and parser
except ImportError:  # pragma: no cover (PyYAML built without libyaml)
    CParser = None  # type: ignore[assignment,misc]

if TYPE_CHECKING:  # pragma: no cover
    _Base = yaml.SafeLoader
else:
    _Base = object

#: Nodes a document may expand to (aliases counted at each use) and how deep it may nest.
MAX_NODES = 100_000
MAX_DEPTH = 64
#: More than MAX_DEPTH flow openers in a row ("[[[[…"): nesting too deep, whatever follows.
_OPENERS = re.compile(r"[\[{](?:[ \t\r\n]*[\[{]){" + str(MAX_DEPTH) + "}")


class YamlError(AegirError):
    """A text that is not YAML aegir can read: `line` (1-based, or None) and `problem`."""

    def __init__(self, line: int | None, problem: str) -> None:
        self.line = line
        self.problem = problem
        super().__init__(f"{line if line else '?'}: {problem}")


@dataclass(frozen=True)
class YamlDoc:
    """A YAML document: its data and the line of every mapping key and sequence item by path."""

    data: Any
    lines: dict[tuple[Any, ...], int] = field(default_factory=dict)
    node: yaml.Node | None = field(default=None, repr=False)  # the composed tree, for callers that walk it

    def line(self, *path: Any) -> int | None:
        """The line of `path` or of its nearest written ancestor (None: nowhere)."""
        return line_in(self.lines, path)


def line_in(lines: Mapping[tuple[Any, ...], int], path: tuple[Any, ...]) -> int | None:
    """The line `lines` (a `YamlDoc.lines`) gives `path`, or its nearest written ancestor (None: nowhere)."""
    for n in range(len(path), 0, -1):
        if path[:n] in lines:
            return lines[path[:n]]
    return None


def load(text: str) -> YamlDoc:
    """Parse `text` (one document) into a `YamlDoc`, or raise `YamlError`.

    A key written twice in one mapping is an error at its second line (YAML
    says it is one; PyYAML would silently keep the last).
    """
    size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
    if size > limits.YAML_BYTES.value:
        raise YamlError(None, limits.YAML_BYTES.over(f"the text has {size:,} bytes"))
    run = _OPENERS.search(text)
    if run:  # PyYAML scans ahead 1,024 characters per open bracket, at O(depth) each: refuse before it starts
        raise YamlError(text.count("\n", 0, run.start()) + 1, f"nested deeper than {MAX_DEPTH} levels")
    if _FAST is not None and not _PARSERS_DIFFER.search(text):
        try:
            return _load(text, _FAST)
        except _Unsaid:
            pass  # libyaml's words for a mistake are not PyYAML's: say it (and find it) as PyYAML does
    return _load(text, _PyLoader)


#: Characters libyaml and PyYAML read differently (libyaml takes tabs PyYAML refuses, a BOM or NEL
#: within the text): such a text is left to PyYAML alone, so that every text means what it meant.
_PARSERS_DIFFER = re.compile("[\t\ufeff\x85\u2028\u2029]")


class _Unsaid(Exception):
    """libyaml found a mistake in the text: PyYAML reads it again to say which."""


def _load(text: str, kind: Callable[[str], Any]) -> YamlDoc:
    try:
        loader = kind(text)  # PyYAML's reader checks every character at once: a ReaderError is raised here
    except yaml.reader.ReaderError as exc:
        raise _reader_error(text, exc) from None
    try:
        node = loader.get_single_node()
        if node is None:
            return YamlDoc(None)
        lines: dict[tuple[Any, ...], int] = {}
        _walk(node, (), lines, 0)
        data = loader.construct_document(node)
    except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        if kind is not _PyLoader:  # a mistake is said (and found) as PyYAML does; a limit is refused as it is
            raise _Unsaid() from None
        raise _said(text, loader, exc) from None
    finally:
        loader.dispose()
    return YamlDoc(data, lines, node)


def _said(text: str, loader: Any, exc: BaseException) -> YamlError:
    """`exc`, raised while PyYAML read `text`, as a `YamlError` at its line."""
    if isinstance(exc, yaml.reader.ReaderError):
        return _reader_error(text, exc)
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        return YamlError(mark.line + 1 if mark else None,
                         f"invalid YAML: {exc.problem or exc.context or 'unreadable'}")
    if isinstance(exc, RecursionError):
        return YamlError(loader.line + 1, f"invalid YAML: nested too deep (more than {MAX_DEPTH} levels)")
    first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
    return YamlError(loader.where(), f"invalid YAML: {first}")


def _reader_error(text: str, exc: yaml.reader.ReaderError) -> YamlError:
    """A control character or an undecodable byte, at its line."""
    line = text.count("\n", 0, exc.position) + 1 if isinstance(exc.position, int) else None
    char = exc.character
    what = f"U+{char:04X}" if isinstance(char, int) else repr(char)
    return YamlError(line, f"invalid YAML: the character {what} is not allowed ({exc.reason})")


class _Checks(_Base):
    """PyYAML's safe loading, remembering which node it was building when a constructor failed,
    and adding up the characters of the scalars it composes (aliases at each use)."""

    building: yaml.Node | None = None
    depth = 0
    line = 0  # the reader's line (PyYAML's reader; libyaml's keeps none)

    def _start(self) -> None:
        self.expanded = 0  # characters of the scalars so far, aliases counted at each use
        self.nodes = 0  # nodes so far, aliases counted at each use
        self.reached = 0  # the deepest level reached so far, aliases expanded
        self.sizes: dict[int, tuple[int, int, int]] = {}  # id(node) -> (nodes, characters, levels), once composed
        self.most = limits.YAML_EXPANDED.value

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        # Refuse deep nesting while composing: PyYAML's scanner costs O(depth) per token and
        # its composer recurses, so a file of 2,000 '[' would take seconds, then overflow the stack.
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise YamlError(self.peek_event().start_mark.line + 1, f"nested deeper than {MAX_DEPTH} levels")
            alias = self.check_event(yaml.AliasEvent)
            line = self.peek_event().start_mark.line + 1
            before = (self.nodes, self.expanded)
            outer, self.reached = self.reached, self.depth  # the deepest level under this node, aliases expanded
            node = super().compose_node(parent, index)
            if node is None:
                return None
            if alias:
                if id(node) not in self.sizes:  # its anchor is still being composed: it contains itself
                    raise YamlError(node.start_mark.line + 1, "a recursive alias")
                nodes, chars, height = self.sizes[id(node)]
                self.nodes += nodes
                self.expanded += chars
                self.reached = self.depth + height - 1
                if self.reached > MAX_DEPTH:
                    raise YamlError(line, f"nested deeper than {MAX_DEPTH} levels")
            else:
                self.nodes += 1
                self.expanded += len(node.value) if isinstance(node, yaml.ScalarNode) else 0
            if self.nodes > MAX_NODES:
                raise YamlError(line, f"the document expands to more than {MAX_NODES} nodes "
                                "(aliases used over and over?)")
            if self.expanded > self.most:
                raise YamlError(line, limits.YAML_EXPANDED.over(
                    f"with its aliases expanded, the text's scalars reach {self.expanded:,} characters"))
            if not alias:
                self.sizes[id(node)] = (self.nodes - before[0], self.expanded - before[1],
                                        self.reached - self.depth + 1)
            self.reached = max(outer, self.reached)
            return node
        finally:
            self.depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        self.building = node
        return super().construct_object(node, deep)

    def where(self) -> int:
        """The line of the node being built, else of the reader (1-based)."""
        return self.building.start_mark.line + 1 if self.building is not None else self.line + 1


class _PyLoader(_Checks, yaml.SafeLoader):
    """Events from PyYAML's own reader, scanner and parser (pure Python)."""

    def __init__(self, stream: str) -> None:
        yaml.SafeLoader.__init__(self, stream)  # checks every character at once: a ReaderError is raised here
        self._start()


def _c_loader() -> Callable[[str], Any] | None:
    """Events from libyaml (about 5 times as fast: 0.6 s against 3.3 s for 100,000 nodes, measured on a
    shared machine), composed in Python as above, so the same limits hold while composing; None when
    PyYAML was built without libyaml."""
    if CParser is None:  # pragma: no cover
        return None

    def init(self: Any, stream: str) -> None:
        CParser.__init__(self, stream)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self._start()

    return type("_CLoader", (_Checks, Composer, SafeConstructor, Resolver, CParser), {"__init__": init})


#: The loader that reads a text first: libyaml's events when PyYAML has it.
_FAST = _c_loader()


def _walk(node: yaml.Node, here: tuple[Any, ...], lines: dict[tuple[Any, ...], int], depth: int) -> None:
    if depth > MAX_DEPTH:
        return
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for k, v in node.value:
            if not isinstance(k, yaml.ScalarNode) or k.value == "<<":
                continue
            line = k.start_mark.line + 1
            if k.value in seen:
                raise YamlError(line, f"duplicate key {k.value!r} (first written at line {seen[k.value]})")
            seen[k.value] = line
            lines[(*here, k.value)] = line
            _walk(v, (*here, k.value), lines, depth + 1)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            lines[(*here, i)] = v.start_mark.line + 1
            _walk(v, (*here, i), lines, depth + 1)
