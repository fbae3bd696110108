"""Benchmark: hostile inputs are refused (or linted) as fast as ordinary ones.

Run: ``.venv/bin/python bench/hostile_input.py`` (no lab needed).

1. The program (``inv -H zz-none disk.report``) on a hostile hosts.yml against
   the same program on a good one: wall time and peak RSS of each, and the
   ratio (target: refusal within 1 s, ratio <= 1.5; the review measured 7 s and
   1.1 GiB for the 376-byte alias bomb before yamldoc bounded expansion).
2. `lint_texts` on hostile compose files and .env files against a clean
   project of ordinary size: seconds and ratio (target: < 1 s each).
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aegir.compose.lint import lint_texts  # noqa: E402
from bench.common import REPO, median_seconds  # noqa: E402

REPEAT = 3
GOOD_INVENTORY = ("hosts:\n  hyp1:\n    address: hyp1.example.org\n    admin_ipv4: 192.0.2.10\n"
                  "    ipv6_prefix: 2001:db8:0:100::/56\n    admin_ipv6: 2001:db8:0:100::1\n")
BOMB = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(7)) + "hosts: {x: {}}\n"
HOSTILE_INVENTORIES = {
    f"alias bomb ({len(BOMB.encode())} bytes)": BOMB,
    "5,000 nested brackets": "hosts:\n  hyp1: " + "[" * 5000 + "]" * 5000 + "\n",
    "srv with a newline": 'hosts:\n  hyp1:\n    srv: "/srv\\nExecStartPre=/bin/sh -c id"\n',
}
CLEAN_COMPOSE = "services:\n" + "".join(
    f"  s{i}:\n    image: ghcr.io/acme/s{i}:1\n    environment:\n      DOMAIN: ${{DOMAIN}}\n"
    f"      DB_PASSWORD: ${{DB_PASSWORD}}\n    command: [\"serve\", \"--port\", \"80{i:02d}\"]\n" for i in range(30))
CLEAN_ENV = "DOMAIN=cloud.example.org\nDB_PASSWORD=s3cret\n"
HOSTILE_LINT = {
    "100 kB word in a command": ("services:\n  a:\n    image: x\n    command: " + "a-" * 50000 + "\n", CLEAN_ENV),
    "3,000 nested defaults": ("services:\n  a:\n    image: x\n    environment:\n      A: " + "${A:-" * 3000
                              + "}" * 3000 + "\n", CLEAN_ENV),
    "5,000 nested brackets": ("services:\n  a: " + "[" * 5000 + "]" * 5000 + "\n", CLEAN_ENV),
    ".env of 20,000 values": (CLEAN_COMPOSE, "".join(f"K{i}=value{i}\n" for i in range(20000))),
}


def program(inventory: str) -> tuple[float, float]:
    """Median wall time (s) and peak RSS (MiB) of the program refusing or accepting `inventory`."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hosts.yml"
        path.write_text(inventory)
        times, peaks = [], []
        for _ in range(REPEAT):
            start = time.perf_counter()
            proc = subprocess.Popen([sys.executable, "-m", "aegir", "-H", "zz-none", "disk.report"], cwd=REPO,
                                    env={**os.environ, "AEGIR_INVENTORY": str(path)},
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            _, err = proc.communicate()
            times.append(time.perf_counter() - start)
            assert proc.returncode == 2 and b"Traceback" not in err, err
        peaks.append(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
    return statistics.median(times), max(peaks)


def lint_seconds(compose: str, env: str) -> float:
    return median_seconds(lambda: lint_texts("/srv/apps/x/docker-compose.yml", compose, "/srv/apps/x/.env", env, 0o600),
                          REPEAT)


def main() -> None:
    base_t, base_m = program(GOOD_INVENTORY)
    print(f"program, good inventory (baseline): {base_t:.2f} s, peak RSS so far {base_m:.0f} MiB")
    for name, text in HOSTILE_INVENTORIES.items():
        t, m = program(text)
        print(f"program, {name}: {t:.2f} s (ratio {t / base_t:.2f}), peak RSS of any run so far {m:.0f} MiB")
    base = lint_seconds(CLEAN_COMPOSE, CLEAN_ENV)
    print(f"lint_texts, clean 30-service project (baseline): {base * 1000:.1f} ms")
    for name, (compose, env) in HOSTILE_LINT.items():
        t = lint_seconds(compose, env)
        print(f"lint_texts, {name}: {t:.3f} s (ratio {t / base:.1f})")


if __name__ == "__main__":
    main()
