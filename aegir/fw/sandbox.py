"""A render budget for a host's firewall template: what it builds, how long it loops, how long it takes.

Jinja's sandbox keeps a template from reaching outside its values, not from
working without end: ``{{ 'x' * 400000000 }}`` builds 400 MB, nested
``range()`` loops run 10^10 times. `BudgetedEnvironment` checks each thing
that builds a string or a list *before* it is built (``*``, ``+``, ``%``,
``**``, ``~``, the string methods and the filters that grow their input,
every output expression), counts loop iterations and watches a deadline,
against one `Budget` per rendering (`limits.TEMPLATE_OUTPUT`,
`TEMPLATE_LOOPS`, `TEMPLATE_MS`). Past a limit the rendering stops with
`Refused`, a sentence naming the limit and its value.

Loops, ``~`` and outputs are reached by rewriting the parsed template
(`_Rewrite`): each loop's iterable, each concatenation and each output
expression goes through a filter of ours, which the template cannot rename.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import re
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from aegir import limits


class Refused(Exception):
    """A rendering past one of its limits: `str()` is the sentence."""


class Budget:
    """One rendering's allowance: characters built, loop iterations, a deadline."""

    def __init__(self) -> None:
        self.chars = limits.TEMPLATE_OUTPUT.value
        self.loops = limits.TEMPLATE_LOOPS.value
        self.ms = limits.TEMPLATE_MS.value
        self.deadline = time.monotonic() + self.ms / 1000
        self.built = 0
        self.looped = 0

    def tick(self) -> None:
        """Refuse once the deadline has passed."""
        if time.monotonic() > self.deadline:
            raise Refused(limits.TEMPLATE_MS.over(f"rendering took more than {self.ms:,} ms"))

    def charge(self, size: int, what: str) -> None:
        """Count `size` characters (or items) about to be built by `what`; refuse past the limit."""
        self.tick()
        self.built += size
        if self.built > self.chars:
            raise Refused(limits.TEMPLATE_OUTPUT.over(
                f"{what} would bring what the template builds to {self.built:,} characters"))

    def loop(self, n: int = 1) -> None:
        self.tick()
        self.looped += n
        if self.looped > self.loops:
            raise Refused(limits.TEMPLATE_LOOPS.over(f"its loops reach {self.looped:,} iterations"))


_BUDGET: contextvars.ContextVar[Budget] = contextvars.ContextVar("aegir_template_budget")


def budget() -> Budget:
    """The budget of the rendering under way (a fresh one outside `rendering`)."""
    found = _BUDGET.get(None)
    return found if found is not None else Budget()


def rendering(chunks: Iterable[str]) -> str:
    """Join a template's output (``Template.generate``) under a fresh budget."""
    token = _BUDGET.set(Budget())
    try:
        return "".join(chunks)
    finally:
        _BUDGET.reset(token)


def size(value: Any, most: int) -> int:
    """About how many characters ``str(value)`` has, counting no further than past `most`.

    A container is walked once however often it is referred to (a list of the
    same list 1,000 times costs one walk), so this stays cheap where ``str()`` would not.
    """
    seen: dict[int, int] = {}

    def walk(v: Any) -> int:
        if isinstance(v, str):
            return len(v)
        if isinstance(v, range):
            return 2 + len(v) * 9  # "[1, 2, …]": up to 7 digits and ", " each
        if isinstance(v, bool) or v is None:
            return 5
        if isinstance(v, int):
            return v.bit_length() * 3 // 10 + 2
        if isinstance(v, (list, tuple, set, frozenset, dict)):
            key = id(v)
            if key in seen:
                return seen[key]
            seen[key] = most + 1  # a container within itself: too big
            total = 2
            for item in (v.items() if isinstance(v, dict) else v):
                total += 2 + walk(item)
                if total > most:
                    break
            seen[key] = total
            return total
        return 64

    return walk(value)


#: Numbers in a %-format or a str.format spec: widths and precisions make the text that long.
_DIGITS = re.compile(r"\d+")
_NESTED = re.compile(r"\{[^{}]*\{")


def _format_size(fmt: str, args: Any, most: int) -> int:
    """An upper bound of ``fmt % args`` / ``fmt.format(*args)``: the text, its widths, the values."""
    values = args if isinstance(args, (tuple, list)) else (args,)
    from_values = "*" in fmt or _NESTED.search(fmt) is not None  # '%*d', '{0:{1}}': a width among the values
    widths = sum(int(d) for d in _DIGITS.findall(fmt) if len(d) < 12) + (
        sum(abs(v) for v in values if isinstance(v, int) and not isinstance(v, bool)) if from_values else 0)
    return len(fmt) + widths + sum(size(v, most) for v in values) * max(1, fmt.count("%") + fmt.count("{"))


def _repeat_size(seq: Any, n: Any) -> int | None:
    """``seq * n`` for a sequence and a whole number: its length; None for anything else."""
    if isinstance(seq, int) and isinstance(n, (str, list, tuple)):
        seq, n = n, seq
    if isinstance(seq, (str, list, tuple)) and isinstance(n, int):
        return len(seq) * max(n, 0)
    return None


#: The most bits a number may grow to in ``*`` and ``**`` (2^100000: 30,103 digits).
MAX_BITS = 100_000


class BudgetedEnvironment(ImmutableSandboxedEnvironment):
    """The immutable sandbox with a render budget (see the module)."""

    intercepted_binops = frozenset({"*", "+", "%", "**", "//", "/"})

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.globals["range"] = _range
        self.globals["lipsum"] = _lipsum
        for name, func in list(self.filters.items()):
            self.filters[name] = guarded(name, func)
        self.filters.update({"aegir_loop": _loop, "aegir_concat": _concat, "aegir_out": _out})

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        rewritten: nodes.Template = _Rewrite().visit(tree)
        return rewritten

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
        b = budget()
        most = b.chars - b.built
        if operator == "*":
            n = _repeat_size(left, right)
            if n is not None:
                b.charge(n, "'*'")
            elif isinstance(left, int) and isinstance(right, int) and left.bit_length() + right.bit_length() > MAX_BITS:
                raise Refused(f"'*' would make a number of more than {MAX_BITS:,} bits")
        elif operator == "**":
            if isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 0 \
                    and left.bit_length() * right > MAX_BITS:
                raise Refused(f"'**' would make a number of more than {MAX_BITS:,} bits")
        elif operator == "+" and isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
            b.charge(len(left) + len(right), "'+'")
        elif operator == "%" and isinstance(left, str):
            b.charge(_format_size(left, right, most), "'%'")
        else:
            b.tick()
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: jinja2.runtime.Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        b = budget()
        target = getattr(__obj, "__wrapped__", __obj)  # str.format comes wrapped by the sandbox
        if isinstance(getattr(target, "__self__", None), str):
            if target.__name__ == "join" and args and not isinstance(args[0], (list, tuple)):
                args = (list(args[0]), *args[1:])  # a generator: counted, then joined
            n = _str_method_size(target.__self__, target.__name__, args, kwargs, b.chars - b.built)
            if n is not None:
                b.charge(n, f"str.{target.__name__}")
        b.tick()
        return super().call(__context, __obj, *args, **kwargs)

    def getattr(self, obj: Any, attribute: str) -> Any:
        budget().tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        budget().tick()
        return super().getitem(obj, argument)


def _str_method_size(s: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], most: int) -> int | None:
    """What a string method that can grow its string builds (None: one that cannot)."""
    first = args[0] if args else None
    if name in ("center", "ljust", "rjust", "zfill"):
        return max(len(s), first if isinstance(first, int) else 0)
    if name == "expandtabs":
        tab = first if isinstance(first, int) else kwargs.get("tabsize", 8)
        return len(s) + s.count("\t") * max(tab if isinstance(tab, int) else 8, 0)
    if name == "join":
        items = first if isinstance(first, (list, tuple)) else ()
        return sum(size(i, most) for i in items) + len(s) * len(items)
    if name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        n = s.count(args[0]) if args[0] else len(s) + 1
        return len(s) + n * max(0, len(args[1]) - len(args[0]))
    if name in ("format", "format_map"):
        return _format_size(s, (*args, *kwargs.values()), most)
    return None


def _range(*args: int) -> range:
    """``range()`` within what is left of the loop budget (a loop over it counts again, as it runs)."""
    r = range(*args)
    b = budget()
    if len(r) > b.loops - b.looped:
        raise Refused(limits.TEMPLATE_LOOPS.over(f"range() of {len(r):,} items after {b.looped:,} iterations"))
    b.tick()
    return r


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:  # noqa: A002 (Jinja's names)
    """Jinja's ``lipsum()``, counted first: `n` paragraphs of at most `max` words (of at most 15 characters)."""
    from jinja2.utils import generate_lorem_ipsum

    budget().charge(max * 16 * n if isinstance(n, int) and isinstance(max, int) else 0, "lipsum()")
    return str(generate_lorem_ipsum(n, html, min, max))


@jinja2.pass_context
def _loop(context: jinja2.runtime.Context, items: Any) -> Iterator[Any]:
    """A loop's iterable, counting each iteration against the budget."""
    b = budget()
    for item in items:
        b.looped += 1
        if b.looped > b.loops or not b.looped & 1023:  # the clock every 1,024 turns: a turn costs ~0.3 us
            b.loop(0)
        yield item


@jinja2.pass_context
def _concat(context: jinja2.runtime.Context, parts: list[Any]) -> str:
    """``a ~ b ~ c``: checked before it is joined."""
    b = budget()
    b.charge(sum(size(p, b.chars - b.built) for p in parts), "'~'")
    return "".join(str(p) for p in parts)


@jinja2.pass_context
def _out(context: jinja2.runtime.Context, value: Any) -> Any:
    """An output expression: its text is counted before Jinja makes it a string."""
    b = budget()
    b.charge(size(value, b.chars - b.built), "the output")
    return value


class _Rewrite(NodeTransformer):
    """Every loop's iterable, ``~`` and output expression through our filters (see the module)."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, "aegir_loop", [], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Filter(nodes.List(node.nodes, lineno=node.lineno), "aegir_concat", [], [], None, None,
                            lineno=node.lineno)

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        self.generic_visit(node)
        node.nodes = [nodes.Filter(nodes.Const(n.data, lineno=n.lineno) if isinstance(n, nodes.TemplateData) else n,
                                   "aegir_out", [], [], None, None, lineno=n.lineno) for n in node.nodes]
        return node


#: Filters whose size is worked out from their arguments (`_filter_size`).
_SIZED = frozenset({"center", "indent", "replace", "format", "batch", "slice", "join", "sum"})
#: Filters that build a text or list from their value: checked as large as their value (or more).
_GROWING = frozenset({"string", "tojson", "pprint", "e", "escape", "forceescape", "safe", "list", "xmlattr",
                      "urlencode", "wordwrap", "title", "upper", "lower", "capitalize", "trim", "striptags",
                      "truncate", "reverse", "sort", "unique", "dictsort", "items", "urlize"})


def _filter_size(name: str, bound: dict[str, Any], most: int) -> int | None:
    """What filter `name` would build, from its bound arguments (None: nothing to check)."""
    value = bound.get("value", bound.get("s"))
    if name == "center":
        return max(size(value, most), bound.get("width", 80) if isinstance(bound.get("width", 80), int) else 0)
    if name == "indent":
        width = bound.get("width", 4)
        pad = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
        text = str(value) if isinstance(value, str) else ""
        return len(text) + (text.count("\n") + 1) * max(pad, 0)
    if name == "replace":
        s, old, new = (bound.get(k) for k in ("s", "old", "new"))
        if isinstance(s, str) and isinstance(old, str) and isinstance(new, str):
            n = s.count(old) if old else len(s) + 1
            return len(s) + n * max(0, len(new) - len(old))
        return None
    if name == "format":
        return _format_size(str(value), (*bound.get("args", ()), *bound.get("kwargs", {}).values()), most)
    if name in ("batch", "slice"):
        count = bound.get("linecount", bound.get("slices", 0))
        return size(value, most) + (count if isinstance(count, int) else 0)
    if name == "join":
        sep = bound.get("d", "")
        n = len(value) if isinstance(value, (list, tuple)) else 0
        return size(value, most) + (len(sep) if isinstance(sep, str) else 0) * n
    if name == "sum" and isinstance(value, (list, tuple)) and value and isinstance(value[0], (list, tuple)):
        return sum(len(v) for v in value if isinstance(v, (list, tuple)))  # lists added up: a list of all items
    if name in _GROWING:
        return size(value, most)
    return None


def _linear_sum(args: tuple[Any, ...], kwargs: dict[str, Any], signature: inspect.Signature | None) -> Any:
    """``sum`` of lists onto a list ``start``, in one pass (Python's ``sum`` copies the list at each
    item: 3,000 lists of 10,000 took minutes); None for anything else (Jinja's own ``sum`` then)."""
    if signature is None:
        return None
    try:
        bound = signature.bind(*args, **kwargs).arguments
    except TypeError:
        return None
    items, start = bound.get("iterable"), bound.get("start", 0)
    if bound.get("attribute") is not None or not isinstance(start, list) or not isinstance(items, (list, tuple)) \
            or not all(isinstance(v, list) for v in items):
        return None
    out = list(start)
    for v in items:
        out.extend(v)
    return out


def guarded(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """Filter `name` checked against the budget before it runs (a `join` of a generator is made a list first)."""
    try:
        signature: inspect.Signature | None = inspect.signature(func)
    except (TypeError, ValueError):
        signature = None
    first = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0  # the value after Jinja's own argument
    params = list(signature.parameters) if signature is not None else []
    checked = name in _SIZED or name in _GROWING

    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        b = budget()
        if name in _SIZED and signature is not None:
            if name in ("join", "batch", "slice") and len(args) > first and not isinstance(args[first], (list, tuple)):
                args = (*args[:first], list(args[first]), *args[first + 1:])  # consumed once, here
            try:
                bound = signature.bind(*args, **kwargs).arguments
            except TypeError:
                bound = {}
            if first < len(params) and params[first] in bound:
                bound = {**bound, "value": bound[params[first]]}
            n = _filter_size(name, bound, b.chars - b.built)
            if n is not None:
                b.charge(n, f"the filter {name}")
        elif checked and len(args) > first:
            b.charge(size(args[first], b.chars - b.built), f"the filter {name}")
        b.tick()
        out = _linear_sum(args, kwargs, signature) if name == "sum" else None
        if out is None:
            out = func(*args, **kwargs)
        if isinstance(out, (list, tuple)):  # items made (of a generator: map, select, range) count as iterations
            b.looped += len(out)
            if b.looped > b.loops:
                raise Refused(limits.TEMPLATE_LOOPS.over(
                    f"the filter {name} brings its loop iterations and list items to {b.looped:,}"))
        return out

    return run
