"""The layering contract is enforced by the test command's static checks (scripts/check).

A scratch copy of the tree gets one import that points upward (the shared
ground importing a task module): the same checks that pass on the real tree
must then fail, naming the import.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO


def _copy(tmp: Path) -> Path:
    root = tmp / "tree"
    shutil.copytree(REPO / "aegir", root / "aegir", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "scripts"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, root / name)
    (root / "tests").mkdir()
    (root / "bench").mkdir()
    os.symlink(Path(sys.executable).parent.parent, root / ".venv")
    return root


def _check(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(["bash", "scripts/check"], cwd=root, env=env, capture_output=True, text=True, timeout=300)


def test_the_checks_pass_on_the_tree_and_fail_on_a_back_import(tmp_path):
    root = _copy(tmp_path)
    clean = _check(root)
    assert clean.returncode == 0, clean.stdout + clean.stderr

    sh = root / "aegir" / "sh.py"
    sh.write_text(sh.read_text() + "\nfrom aegir.tasks.base import EXIT_USAGE  # noqa: E402\n\nUSAGE = EXIT_USAGE\n")
    broken = _check(root)
    assert broken.returncode != 0
    assert "aegir.sh is not allowed to import aegir.tasks" in broken.stdout, broken.stdout + broken.stderr


def import_cycles(package: str = "aegir") -> list[list[str]]:
    """Every import cycle among `package`'s modules (strongly connected sets of more than one module), as grimp
    sees the imports: module level, ``TYPE_CHECKING`` blocks and imports inside functions alike."""
    import grimp

    graph = grimp.build_graph(package, include_external_packages=False)
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in sorted(graph.modules)}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = stack[stack.index(v):]
            del stack[stack.index(v):]
            if len(part) > 1:
                cycles.append(sorted(part))

    for module in edges:
        if module not in index:
            visit(module)
    return cycles


def test_no_module_imports_itself_back_even_inside_a_function():
    assert import_cycles() == []


def test_the_cycle_finder_finds_a_cycle_made_by_an_import_inside_a_function(tmp_path, monkeypatch):
    pkg = tmp_path / "loop"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from loop import b\n")
    (pkg / "b.py").write_text("def late():\n    from loop import a\n")
    (pkg / "c.py").write_text("from loop import a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert import_cycles("loop") == [["loop.a", "loop.b"]]
