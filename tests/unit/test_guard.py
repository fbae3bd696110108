"""The house's guard (issue 20): read aegir/'s source (AST) and fail where a rule of the one report layer,
the one fan-out or the Facts is broken, naming file:line.

Each rule is a test of its own. Where the tree still breaks a rule on purpose, `ALLOWED` says so per file with
the exact count: the test fails when a count goes up (a new breach) and when it goes down (then the entry must
be lowered or removed), so a port that lands takes its exception out with it. Never a blanket skip.
"""

from __future__ import annotations

import ast
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "aegir"

Rule = Callable[[ast.AST], bool]


def sources() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        yield rel, ast.parse(path.read_text(encoding="utf-8"), filename=rel)


def hits(rule: Rule, exempt: Callable[[str], bool]) -> list[tuple[str, int]]:
    """(file, line) of every node `rule` matches, outside the files `exempt` says may."""
    return [(rel, node.lineno) for rel, tree in sources() if not exempt(rel)
            for node in ast.walk(tree) if rule(node)]


def check(rule_name: str, found: list[tuple[str, int]], allowed: dict[str, int]) -> None:
    """Fail naming every file:line of a file over its allowance; fail as well when a file is under it."""
    per_file = Counter(rel for rel, _ in found)
    over = [f"{rel}:{line}" for rel, line in found if per_file[rel] > allowed.get(rel, 0)]
    assert not over, f"{rule_name}: {', '.join(over)}"
    stale = {rel: (n, per_file.get(rel, 0)) for rel, n in allowed.items() if per_file.get(rel, 0) != n}
    assert not stale, (f"{rule_name}: ALLOWED is out of date (file: allowed, found): {stale}; lower or remove "
                       "the entry")


def _is_attr(node: ast.AST, attr: str, on: str | None = None) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == attr
            and (on is None or (isinstance(node.value, ast.Name) and node.value.id == on)))


def _calls(node: ast.AST, attr: str, on: str | None = None) -> bool:
    return isinstance(node, ast.Call) and _is_attr(node.func, attr, on)


# ------------------------------------------------------------------------------------------------ the rules


def hand_envelope(node: ast.AST) -> bool:
    """``{"status": o.kind, ...}``: a host's JSON entry written by hand (`aegir.report.envelope` writes them)."""
    return isinstance(node, ast.Dict) and any(
        isinstance(k, ast.Constant) and k.value == "status" and _is_attr(v, "kind")
        for k, v in zip(node.keys, node.values))


FAILED_WORDS = {"FAILED", "UNREACHABLE"}


def hand_failed_row(node: ast.AST) -> bool:
    """A failed host's row or cell made by hand (`aegir.report.failed_row` makes them): a list or tuple
    literal holding "FAILED"/"UNREACHABLE", an f-string spelling the cell (``f"FAILED: {why}"``),
    ``str(o.error)``, or ``o.kind.upper()`` (the kind as a cell)."""
    if isinstance(node, (ast.List, ast.Tuple)):
        return any(isinstance(e, ast.Constant) and e.value in FAILED_WORDS for e in node.elts)
    if isinstance(node, ast.JoinedStr):
        first = node.values[0] if node.values else None
        return (isinstance(first, ast.Constant) and isinstance(first.value, str)
                and first.value.startswith(tuple(f"{w}: " for w in FAILED_WORDS)))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "str":
        return len(node.args) == 1 and _is_attr(node.args[0], "error")
    return _calls(node, "upper") and _is_attr(node.func.value, "kind")  # type: ignore[attr-defined]


def raw_output(node: ast.AST) -> bool:
    """``print(...)``, ``input(...)``, ``sys.stdout.write(...)``/``sys.stderr.write(...)`` (or their
    ``.buffer``), ``os.write(...)``: every character for the terminal leaves through aegir/report.py
    (`emit`, `say`, `warn`, `ask`, `Progress`, `Escaping`), which escapes host text (`printable`)."""
    if not isinstance(node, ast.Call):
        return False
    if isinstance(node.func, ast.Name):
        return node.func.id in ("print", "input")
    if _calls(node, "write", "os"):  # to the terminal's descriptors; a pipe to another process is not output
        return bool(node.args) and isinstance(node.args[0], ast.Constant) and node.args[0].value in (1, 2)
    if not _is_attr(node.func, "write"):
        return False
    target = node.func.value  # type: ignore[attr-defined]
    if _is_attr(target, "buffer"):
        target = target.value
    return _is_attr(target, "stdout", "sys") or _is_attr(target, "stderr", "sys")


def fleet_each(node: ast.AST) -> bool:
    """``fleet.each(...)`` or ``from aegir.fleet import each``: fan-out lives in aegir/action.py (actions) and
    aegir/tasks/base.py (read-only reports)."""
    if isinstance(node, ast.ImportFrom):
        return node.module == "aegir.fleet" and any(a.name == "each" for a in node.names)
    return _calls(node, "each", "fleet")


def hc_run(node: ast.AST) -> bool:
    """``hc.run(...)``: a read is an `aegir.facts.Fact` (an area's facts.py); a change runs in its steps.py."""
    return _calls(node, "run", "hc")


# ------------------------------------------------------------------------------------------------ exceptions

#: Breaches left on purpose, per rule: file -> exact count. Lower or remove an entry when its port lands.
ALLOWED: dict[str, dict[str, int]] = {
    "hand_envelope": {},
    "hand_failed_row": {},
    "raw_output": {
        # the program aegir sends to a host, not the operator's terminal: its stdout is JSON aegir reads back
        "aegir/mysql/onhost.py": 8,
        # the Ctrl-C lines, written from the signal handler straight to fd 2 (constant text, no host's)
        "aegir/interrupt.py": 1,
        # the entry point, before the report layer is imported (its imports are what the warm agent saves):
        # two constant lines about the agent (its folder's path, no host's text)
        "aegir/launch.py": 2,
    },
    "fleet_each": {},
    "hc_run": {
        # notify.py sends the announcement (an act of update.announce and mysql.checkpoint, on the shared
        # ground because both use it)
        "aegir/notify.py": 1,
    },
}


def _steps_or_facts(rel: str) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return name in ("steps.py", "facts.py") or rel == "aegir/host.py"


RULES: dict[str, tuple[Rule, Callable[[str], bool]]] = {
    "hand_envelope": (hand_envelope, lambda rel: rel == "aegir/report.py"),
    "hand_failed_row": (hand_failed_row, lambda rel: rel == "aegir/report.py"),
    "raw_output": (raw_output, lambda rel: rel == "aegir/report.py"),
    "fleet_each": (fleet_each, lambda rel: rel in ("aegir/action.py", "aegir/tasks/base.py")),
    "hc_run": (hc_run, _steps_or_facts),
}


def test_no_hand_written_host_envelope():
    check("hand_envelope", hits(*RULES["hand_envelope"]), ALLOWED["hand_envelope"])


def test_no_hand_made_failed_row():
    check("hand_failed_row", hits(*RULES["hand_failed_row"]), ALLOWED["hand_failed_row"])


def test_no_raw_output_outside_the_report_layer():
    check("raw_output", hits(*RULES["raw_output"]), ALLOWED["raw_output"])


def test_fleet_each_only_in_action_and_task_base():
    check("fleet_each", hits(*RULES["fleet_each"]), ALLOWED["fleet_each"])


def test_hc_run_only_in_steps_and_facts():
    check("hc_run", hits(*RULES["hc_run"]), ALLOWED["hc_run"])


# ------------------------------------------------------------------------------------------------ the guard's own


@pytest.mark.parametrize(("rule", "source"), [
    ("hand_envelope", 'x = {"host": o.host.name, "status": o.kind}'),
    ("hand_failed_row", 'rows.append([o.host.name, "UNREACHABLE", o.error])'),
    ("hand_failed_row", "row = (name, str(o.error))"),
    ("hand_failed_row", 'cell = f"{o.kind.upper()}: {o.error}"'),
    ("hand_failed_row", 'rows.append([o.host.name, f"UNREACHABLE: {o.error}"])'),
    ("raw_output", "print(result.stdout)"),
    ("raw_output", "answer = input(question)"),
    ("raw_output", "sys.stderr.write(line)"),
    ("raw_output", "sys.stdout.buffer.write(data)"),
    ("raw_output", "os.write(2, line)"),
    ("raw_output", "os.write(1, data)"),
    ("fleet_each", "outcomes = fleet.each(c, hosts, fn, label='x')"),
    ("fleet_each", "from aegir.fleet import Outcome, each"),
    ("hc_run", "out = parse(hc.run(cmd).stdout)"),
])
def test_each_rule_matches_what_it_names(rule, source):
    matcher, _ = RULES[rule]
    assert any(matcher(node) for node in ast.walk(ast.parse(source)))


@pytest.mark.parametrize(("rule", "source"), [
    ("hand_envelope", 'x = {"status": "ok", "kind": o.kind}'),
    ("hand_failed_row", 'rows.append([o.host.name, "failed", printable(o.error)])'),
    ("raw_output", "emit(fmt, data=d, text=t)"),
    ("raw_output", "out.write(printable(text))"),
    ("raw_output", "say(line, err=True)"),
    ("raw_output", "os.write(w, pickled)"),
    ("fleet_each", "for o in each(outcomes): pass"),
    ("hc_run", "hc.facts(fact)"),
])
def test_each_rule_leaves_the_house_way_alone(rule, source):
    matcher, _ = RULES[rule]
    assert not any(matcher(node) for node in ast.walk(ast.parse(source)))


def test_a_breach_is_named_by_file_and_line_and_a_stale_allowance_fails():
    with pytest.raises(AssertionError, match=r"raw_output: aegir/x\.py:3, aegir/x\.py:9"):
        check("raw_output", [("aegir/x.py", 3), ("aegir/x.py", 9)], {"aegir/x.py": 1})
    with pytest.raises(AssertionError, match=r"out of date.*'aegir/x\.py': \(2, 1\)"):
        check("raw_output", [("aegir/x.py", 3)], {"aegir/x.py": 2})
    check("raw_output", [("aegir/x.py", 3)], {"aegir/x.py": 1})
