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
