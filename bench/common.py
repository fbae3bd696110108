"""What the benchmarks share: the repository's root and the median of timed runs.

A benchmark runs as a script (``.venv/bin/python bench/NAME.py``), so it puts
the repository on ``sys.path`` before it imports this module or aegir::

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

    from bench.common import REPO, median_seconds  # noqa: E402
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
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
