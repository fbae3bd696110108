"""What the benchmarks share: the repository's root, the median of timed runs, an operator's environment.

A benchmark runs as a script (``.venv/bin/python bench/NAME.py``), so it puts
the repository on ``sys.path`` before it imports this module or aegir::

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

    from bench.common import REPO, median_seconds  # noqa: E402
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def median_seconds(fn: Callable[[], object], repeat: int, *, before: Callable[[], object] | None = None) -> float:
    """The median wall time of `repeat` calls of `fn`; `before`, untimed, runs ahead of each (dropping caches)."""
    times = []
    for _ in range(repeat):
        if before is not None:
            before()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def operator_env(**extra: str) -> dict[str, str]:
    """The environment for a timed ``inv`` process, as an operator's shell has it, plus `extra`.

    Python keeps its bytecode there: this machine's environment sets
    ``PYTHONDONTWRITEBYTECODE``, under which every ``inv`` compiles aegir's
    modules anew (about 60 ms a run) as no installed aegir does. So the variable
    is dropped and aegir and tasks.py are compiled once, here, before timing.
    ``AEGIR_WARM`` is dropped too: a figure is a cold command's unless a bench asks for the warm agent.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "AEGIR_WARM")}
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "aegir"), str(REPO / "tasks.py")],
                   env=env, check=True, capture_output=True)
    return {**env, **extra}


def run_ok(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run `argv` in the repository; a failure stops the benchmark with its exit code and the end of its stderr."""
    res = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"bench: {' '.join(argv[2:])} exited {res.returncode}:\n{res.stdout[-3000:]}{res.stderr[-3000:]}")
    return res


@contextlib.contextmanager
def warm_agent(env: dict[str, str], idle: float = 120) -> Iterator[tuple[dict[str, str], Callable[[], int]]]:
    """`env` with the warm agent on (``AEGIR_WARM``, `aegir.launch`) in a runtime folder of its own, and a
    function counting the commands it served (a bench asserts its figures were served warm). Every agent
    started is killed at the end, the folder removed."""
    from aegir import launch

    run = Path(tempfile.mkdtemp(prefix="aw-", dir="/tmp"))  # short: a Unix socket's path is <= 107 bytes
    log = run / "aegir" / launch.LOG

    def text() -> str:
        return log.read_text() if log.is_file() else ""

    try:
        yield {**env, "AEGIR_WARM": f"{idle:g}", "XDG_RUNTIME_DIR": str(run)}, lambda: text().count("served pid")
    finally:
        for pid in re.findall(r"agent pid (\d+) serves", text()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        shutil.rmtree(run, ignore_errors=True)


def until_agent(served_env: dict[str, str], timeout: float = 60) -> None:
    """Wait until the warm agent of `served_env` listens (the first command started it)."""
    from aegir import launch

    log = Path(served_env["XDG_RUNTIME_DIR"]) / "aegir" / launch.LOG
    deadline = time.monotonic() + timeout
    while "serves" not in (log.read_text() if log.is_file() else ""):
        if time.monotonic() > deadline:
            raise SystemExit("the warm agent did not start")
        time.sleep(0.1)
