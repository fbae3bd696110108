"""The watcher: which container an event is about, bursts, one-line change logs, and its pace after a failure."""

from __future__ import annotations

import json
import queue
import threading
import time
from pathlib import Path

from aegir import inventory
from aegir.fw.model import expose, parse_container
from aegir.fw.watch import EVENT_FILTERS, burst, changes, container_of, one_line
from aegir.host import HostContext

DATA = Path(__file__).parent / "data"
HOST = inventory.parse("hosts:\n  h:\n    service_ipv4: [192.0.2.101]\n    ipv6_prefix: 2001:db8::/56\n"
                       "    service_ipv6: ['2001:db8::11']\n").get("h")


def recorded_events() -> list[dict]:
    """Docker 20.10's events while containers started, stopped and joined networks (filtered as the watcher asks)."""
    return json.loads((DATA / "fw_events_lab.json").read_text())


def test_the_watcher_asks_for_the_events_that_change_exposures():
    assert EVENT_FILTERS == {"type": ["container", "network"],
                             "event": ["start", "die", "stop", "destroy", "connect", "disconnect"]}


def test_each_recorded_event_names_its_container():
    assert [(e["Type"], e["Action"], container_of(e)[:12]) for e in recorded_events()] == [
        ("network", "connect", "0044b03789d3"),
        ("network", "connect", "b1772dd00f99"),
        ("container", "start", "b1772dd00f99"),
        ("network", "connect", "7baf198a4acb"),
        ("container", "start", "7baf198a4acb"),
        ("network", "connect", "7baf198a4acb"),
        ("container", "die", "1c017b4f92a3"),
        ("network", "disconnect", "1c017b4f92a3"),
        ("container", "stop", "1c017b4f92a3"),
        ("container", "destroy", "1c017b4f92a3"),
        ("network", "connect", "c2fd5b0269b4"),
        ("container", "start", "c2fd5b0269b4"),
    ]


def test_a_burst_collects_every_container_until_things_are_quiet():
    q: queue.Queue = queue.Queue()
    events = recorded_events()
    for e in events[1:]:
        q.put(e)
    ids = burst(q, events[0], debounce=0.05, max_delay=5)
    assert {i[:12] for i in ids} == {"0044b03789d3", "b1772dd00f99", "7baf198a4acb", "1c017b4f92a3", "c2fd5b0269b4"}
    assert q.empty()


def test_a_burst_never_waits_longer_than_max_delay():
    q: queue.Queue = queue.Queue()
    stop = threading.Event()

    def chatter() -> None:  # an event every 20 ms, forever
        while not stop.is_set():
            q.put({"Type": "container", "Actor": {"ID": "noisy"}})
            time.sleep(0.02)

    threading.Thread(target=chatter, daemon=True).start()
    start = time.monotonic()
    ids = burst(q, {"Type": "container", "Actor": {"ID": "first"}}, debounce=0.1, max_delay=0.3)
    took = time.monotonic() - start
    stop.set()
    assert ids == {"first", "noisy"}
    assert 0.25 < took < 0.6


def test_a_stop_request_ends_the_burst_and_stays_queued():
    q: queue.Queue = queue.Queue()
    marker = object()
    q.put(marker)
    assert burst(q, {"Type": "container", "Actor": {"ID": "a"}}, debounce=1, max_delay=5) == {"a"}
    assert q.get_nowait() is marker


def test_changes_are_the_exposures_added_and_removed():
    def web(port: int):
        b = {"80/tcp": [{"HostIp": "", "HostPort": str(port)}]}
        return parse_container({"Id": "w", "Name": "/web", "State": {"Running": True}, "HostConfig": {"PortBindings": b},
                                "NetworkSettings": {"Ports": b, "Networks": {"n": {"IPAddress": "172.18.0.2"}}}})

    before, after = expose([web(8080)], HOST), expose([web(8081)], HOST)
    assert changes(before, after) == (["web tcp/192.0.2.101:8081->172.18.0.2:80"],
                                      ["web tcp/192.0.2.101:8080->172.18.0.2:80"])
    assert changes(None, before) == (["web tcp/192.0.2.101:8080->172.18.0.2:80"], [])


def test_a_log_line_is_one_line():
    assert one_line("`nft -f x` exited 1\n  | x:3:1-5: Error: syntax error\n") == \
        "`nft -f x` exited 1 | | x:3:1-5: Error: syntax error"


class _DaemonDown:
    """A Docker client whose daemon does not answer (what the watcher sees during a restart)."""

    class api:  # noqa: N801 - the SDK's attribute name
        @staticmethod
        def containers(**_):
            raise ConnectionError("connection refused")


def test_a_failed_resync_is_retried_with_backoff_not_at_the_next_periodic_resync():
    from invoke import Context

    from aegir.cli import AegirConfig
    from aegir.fw.watch import Options, Watcher

    inv = inventory.parse("hosts:\n  h:\n    connection: local\n")
    hc = HostContext(inv.get("h"), Context(config=AegirConfig(lazy=True)))
    lines: list[str] = []
    w = Watcher(hc, inv, Options(resync=300, backoff_min=0.05, backoff_max=0.2), log=lines.append)
    w._client = _DaemonDown()
    w.resync("start")
    follow = threading.Thread(target=w._follow)
    follow.start()
    time.sleep(0.8)
    w.stop()
    follow.join(timeout=5)
    retries = [ln for ln in lines if "resync (retry) failed: connection refused" in ln]
    assert lines[0].endswith("resync (start) failed: connection refused; retrying in 0.05s")
    assert len(retries) >= 3 and retries[0].endswith("retrying in 0.1s") and retries[-1].endswith("retrying in 0.2s")
    assert not follow.is_alive()
