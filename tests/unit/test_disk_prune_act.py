"""disk.prune's act side, pure parts: when Docker stopped answering, what a partial prune's row says."""

from __future__ import annotations

import docker.errors
import requests.exceptions
from urllib3.exceptions import ProtocolError

from aegir.action import HostRun, Ran
from aegir.disk.facts import DockerUsage, Usage
from aegir.disk.plan import Done, HostPrune, Item, PrunePlan, PruneResult
from aegir.disk.report import left_out, prune_report, render_prune_result
from aegir.disk.steps import daemon_gone
from aegir.errors import AegirError, UnreachableError
from aegir.fleet import Outcome
from aegir.inventory import Host

MiB = 1024 * 1024
BEFORE = DockerUsage(Usage(2, 0, 3 * MiB, 3 * MiB), Usage(5, 0, 0, 0), Usage(0, 0, 0, 0), Usage(0, 0, 0, 0))
AFTER = DockerUsage(Usage(1, 0, MiB, 0), Usage(2, 0, 0, 0), Usage(0, 0, 0, 0), Usage(0, 0, 0, 0))


def test_transport_errors_say_the_daemon_stopped_answering_and_refusals_do_not():
    aborted = requests.exceptions.ConnectionError(ProtocolError("Connection aborted.", ConnectionResetError(104)))
    assert daemon_gone(aborted) == ("the Docker daemon stopped answering (ConnectionError: ('Connection aborted.', "
                                    "ConnectionResetError(104)))")
    timeout = requests.exceptions.ReadTimeout("UnixHTTPConnectionPool(host='localhost', port=None): Read timed out. "
                                              "(read timeout=60)")
    assert daemon_gone(timeout) == ("the Docker daemon stopped answering (ReadTimeout: UnixHTTPConnectionPool("
                                    "host='localhost', port=None): Read timed out. (read timeout=60))")
    assert daemon_gone(UnreachableError("cannot connect to root@hyp1:22: Connection refused", host="hyp1")) == \
        "cannot connect to root@hyp1:22: Connection refused"
    assert daemon_gone(docker.errors.APIError("409 Conflict")) is None  # Docker answered: one refusal
    assert daemon_gone(docker.errors.NotFound("gone")) is None
    assert daemon_gone(KeyError("Id")) is None  # a bug stays a bug
    assert daemon_gone(AegirError("Docker is not answering: connection refused (daemon not running)")) == \
        "Docker is not answering: connection refused (daemon not running)"


ITEMS = tuple(Item("container", f"c{i}", f"junk-{i}") for i in range(4)) + (Item("image", "sha256:x", "x:1"),)
PLANNED = HostPrune(PrunePlan(ITEMS), BEFORE)


def acted(r: PruneResult, **kw: str) -> Outcome[HostRun[HostPrune, PruneResult]]:
    """hyp1's outcome in a run: its plan of the five `ITEMS`, and what the prune did."""
    return Outcome(Host("hyp1"), HostRun(PLANNED, r), **kw)


def test_a_prune_the_daemon_stopped_says_how_far_it_got_and_measures_nothing_after():
    r = PruneResult(tuple(Done(i) for i in ITEMS[:3]), BEFORE, None, planned=5,
                    stopped="the Docker daemon stopped answering (ConnectionError: x)")
    assert r.removed == 3 and r.freed() is None
    assert r.problem == "removed 3 of 5; the Docker daemon stopped answering (ConnectionError: x)"
    assert r.problem is not None
    outcome = acted(r, error=r.problem, kind="failed")
    lines = render_prune_result([outcome]).splitlines()
    assert lines[2].split() == ["hyp1", "container", "3", "0B", "?", "?", "ok"]
    assert lines[3].split()[:8] == ["hyp1", "total", "3", "of", "5", "3.0M", "?", "?"]
    assert lines[3].endswith("removed 3 of 5; the Docker daemon stopped answering (ConnectionError: x)")
    report = prune_report(Ran((outcome,), dry=False, acted=True))
    [row] = report.data["hosts"]
    assert (row["status"], row["done"], row["planned"], row["after"], row["freed"]) == ("failed", 3, 5, None, None)
    assert row["stopped"] == "the Docker daemon stopped answering (ConnectionError: x)"
    assert row["error"] == r.problem and len(row["removed"]) == 3 and len(row["remove"]) == 5
    assert report.data["summary"] == {"hosts": 1, "pruned": True, "removals": 5, "bytes": 0, "removed": 3,
                                      "freed": None, "not_pruned": []}


def test_a_prune_that_went_through_says_all_of_them_and_what_docker_refused():
    done = (Done(ITEMS[0]), Done(ITEMS[1], "conflict: container is running"), *(Done(i) for i in ITEMS[2:]))
    r = PruneResult(done, BEFORE, AFTER, planned=5)
    assert r.problem == "removed 4 of 5; 1 refused by Docker"
    assert r.freed() == {"images": 2 * MiB, "containers": 0, "volumes": 0, "build_cache": 0, "total": 2 * MiB}
    assert PruneResult(tuple(Done(i) for i in ITEMS), BEFORE, AFTER, planned=5).problem is None
    total = render_prune_result([acted(r)]).splitlines()[-1]
    assert total.split()[:8] == ["hyp1", "total", "4", "of", "5", "3.0M", "1.0M", "2.0M"]


def test_the_hosts_left_out_are_named_by_why():
    bad = [Outcome(Host("hyp2"), error="x", kind="unreachable"), Outcome(Host("hyp3"), error="y", kind="failed"),
           Outcome(Host("hyp4"), error="z", kind="unreachable")]
    assert left_out(bad) == "hyp2, hyp4 unreachable; hyp3 failed"
    assert left_out(bad[:1]) == "hyp2 unreachable"
