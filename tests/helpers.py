"""Shared test helpers: run the real `inv` program as an operator would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_inv(*args: str, inventory: str | os.PathLike[str] | None = None, cwd: str | os.PathLike[str] | None = None,
            env: dict[str, str] | None = None, input: str | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``inv ARGS`` (this checkout's program) and capture its output.

    `inventory` sets $AEGIR_INVENTORY; the working directory defaults to the
    repository, so ``tasks.py`` is found like stock ``inv`` finds it.
    """
    full_env = {**os.environ, **(env or {})}
    if inventory is not None:
        full_env["AEGIR_INVENTORY"] = str(inventory)
    return subprocess.run(
        [sys.executable, "-m", "aegir", *args],
        cwd=str(cwd or REPO), env=full_env, input=input if input is not None else "",
        capture_output=True, text=True, timeout=timeout,
    )
