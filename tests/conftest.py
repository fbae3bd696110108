"""Fixtures shared by every test: the lab (tests/lab), started once per session.

The lab starts only for sessions that ask for the ``lab`` fixture, and is
stopped at the end of the session whatever happened (fixture finalizer, plus
``atexit`` and SIGTERM/SIGHUP turned into KeyboardInterrupt so pytest
unwinds). A run killed outright leaves a stale lab, which the next
``Lab.start`` ends first. Tests using the lab are marked ``lab`` (deselect
with ``-m "not lab"``). One lab runs per machine: a session waits up to
``$AEGIR_LAB_WAIT`` seconds (default 900) for another process's lab to stop.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from types import FrameType

import pytest

from tests.lab import Lab
from tests.lab.teardown import leftovers

LAB_PREFIX = "aegirlab"
_session_lab: dict[str, Lab] = {}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "lab_exclusive: starts labs of its own; runs last, after the session lab is stopped"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "lab" in getattr(item, "fixturenames", ()) or item.get_closest_marker("lab_exclusive"):
            item.add_marker(pytest.mark.lab)
    items.sort(key=lambda item: item.get_closest_marker("lab_exclusive") is not None)  # stable: order kept


def lab_unavailable() -> str | None:
    """Why the lab cannot run here, or None."""
    if os.geteuid() != 0:
        return "the lab needs root (network namespaces, mounts, loop devices)"
    try:
        subprocess.run(["ip", "netns", "list"], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        return f"`ip netns` is unavailable: {exc}"
    return None


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """Three lab hosts (hyp1-3) for the whole session; tests needing more use `lab.extra_host`."""
    if reason := lab_unavailable():
        pytest.skip(reason)
    handlers = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    running = Lab.start(3, prefix=LAB_PREFIX, wait=float(os.environ.get("AEGIR_LAB_WAIT", "900")))
    _session_lab["lab"] = running
    dropped: list[str] = []
    try:
        yield running
    finally:
        _session_lab.pop("lab", None)
        dropped = dropped_by_sshd(running.workdir)
        running.stop()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    if left := leftovers(running.prefix, running.workdir):
        pytest.fail(f"the lab left things behind: {', '.join(left)}")
    if dropped:
        pytest.fail("an sshd dropped aegir's connection for a protocol error (paramiko's EOF after CLOSE?): "
                    + "; ".join(dropped[:5]))


def dropped_by_sshd(workdir) -> list[str]:
    """Lines of the lab hosts' sshd logs where OpenSSH dropped a connection for a client's protocol error."""
    return [f"{log.parent.name}: {line}" for log in sorted(workdir.glob("*/sshd.log"))
            for line in log.read_text(errors="replace").splitlines() if "referred to nonexistent channel" in line]


@pytest.fixture
def no_lab() -> None:
    """For ``lab_exclusive`` tests: stop the session lab first (one lab per machine)."""
    if reason := lab_unavailable():
        pytest.skip(reason)
    if running := _session_lab.pop("lab", None):
        running.stop()
