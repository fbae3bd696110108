"""YAML read once, with line numbers, within limits: the one loader for hosts.yml and compose files.

`load(text)` composes the node tree once and builds the data from it (PyYAML's
safe constructors), so a caller gets both the values and where each key was
written (`YamlDoc.line`). Whatever the text holds, the outcome is a `YamlDoc`
or a `YamlError` with a line and one sentence: never a traceback (control
characters, deep nesting), never a hang (an "alias bomb" whose expansion
would exceed `MAX_NODES` is refused before anything walks it; more than
`MAX_DEPTH` open brackets in a row are refused before PyYAML scans them, even
inside a quoted string, where no real file has them). A text longer than
`limits.YAML_BYTES`, or whose scalars add up to more than `limits.YAML_EXPANDED`
characters with every alias counted at each use, is refused too: the sizes are
added up while the tree is composed (an alias adds its anchor's total, known
once), so nothing is expanded to measure it and a caller that joins or copies
the values (``str()`` of a list of aliases) stays within the limit.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from aegir import limits
from aegir.errors import AegirError

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
    try:
        loader = _Loader(text)  # checks every character at once: a ReaderError is raised here
    except yaml.reader.ReaderError as exc:
        raise _reader_error(text, exc) from None
    try:
        node = loader.get_single_node()
        if node is None:
            return YamlDoc(None)
        _check_size(node)
        lines: dict[tuple[Any, ...], int] = {}
        _walk(node, (), lines, 0)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise YamlError(mark.line + 1 if mark else None,
                        f"invalid YAML: {exc.problem or exc.context or 'unreadable'}") from None
    except yaml.reader.ReaderError as exc:
        raise _reader_error(text, exc) from None
    except RecursionError:
        raise YamlError(loader.line + 1, f"invalid YAML: nested too deep (more than {MAX_DEPTH} levels)") from None
    except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise YamlError(loader.where(), f"invalid YAML: {first}") from None
    finally:
        loader.dispose()
    return YamlDoc(data, lines, node)


def _reader_error(text: str, exc: yaml.reader.ReaderError) -> YamlError:
    """A control character or an undecodable byte, at its line."""
    line = text.count("\n", 0, exc.position) + 1 if isinstance(exc.position, int) else None
    char = exc.character
    what = f"U+{char:04X}" if isinstance(char, int) else repr(char)
    return YamlError(line, f"invalid YAML: the character {what} is not allowed ({exc.reason})")


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, remembering which node it was building when a constructor failed,
    and adding up the characters of the scalars it composes (aliases at each use)."""

    building: yaml.Node | None = None
    depth = 0

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.expanded = 0  # characters of the scalars so far, aliases counted at each use
        self.nodes = 0  # nodes so far, aliases counted at each use
        self.sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (its nodes, its characters), once composed
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
            node = super().compose_node(parent, index)
            if node is None:
                return None
            if alias:
                if id(node) not in self.sizes:  # its anchor is still being composed: it contains itself
                    raise YamlError(node.start_mark.line + 1, "a recursive alias")
                self.nodes += self.sizes[id(node)][0]
                self.expanded += self.sizes[id(node)][1]
            else:
                self.nodes += 1
                self.expanded += len(node.value) if isinstance(node, yaml.ScalarNode) else 0
            if self.nodes > MAX_NODES:
                raise YamlError(line, f"the document expands to more than {MAX_NODES} nodes (aliases used over and over?)")
            if self.expanded > self.most:
                raise YamlError(line, limits.YAML_EXPANDED.over(
                    f"with its aliases expanded, the text's scalars reach {self.expanded:,} characters"))
            if not alias:
                self.sizes[id(node)] = (self.nodes - before[0], self.expanded - before[1])
            return node
        finally:
            self.depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        self.building = node
        return super().construct_object(node, deep)

    def where(self) -> int:
        """The line of the node being built, else of the reader (1-based)."""
        return self.building.start_mark.line + 1 if self.building is not None else self.line + 1


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for kv in node.value for n in kv]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_size(root: yaml.Node) -> None:
    """Refuse a document that nests deeper than `MAX_DEPTH` or expands beyond `MAX_NODES` nodes."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    on_path: set[int] = set()
    while stack:
        node, depth, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            sizes[key] = min(MAX_NODES + 1, 1 + sum(sizes[id(c)] for c in _children(node)))
            if sizes[key] > MAX_NODES:
                raise YamlError(node.start_mark.line + 1, f"the document expands to more than {MAX_NODES} "
                                "nodes (aliases used over and over?)")
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise YamlError(node.start_mark.line + 1, "a recursive alias")
        if depth > MAX_DEPTH:
            raise YamlError(node.start_mark.line + 1, f"nested deeper than {MAX_DEPTH} levels")
        on_path.add(key)
        stack.append((node, depth, True))
        stack.extend((c, depth + 1, False) for c in _children(node) if id(c) not in sizes)


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
