"""The firewall's facts on this machine (a local host, reads only): batched in one round trip, each parsed."""

from __future__ import annotations

from pathlib import Path

from invoke import Context

from aegir import inventory
from aegir.cli import AegirConfig
from aegir.fw import facts, nft
from aegir.fw.settings import for_host
from aegir.host import HostContext


def test_the_state_and_the_watcher_are_asked_in_one_round_trip_and_each_parsed(tmp_path: Path, monkeypatch):
    """fw.status asks both in one batch: the state probe's own boundary is not the batch's."""
    srv = tmp_path / "srv"
    (srv / "templates").mkdir(parents=True)
    (srv / "templates" / "nftables.nft.j2").write_text("table inet aegir {}\n")
    state_dir = srv / "conf" / "aegir-fw"
    state_dir.mkdir(parents=True)
    (state_dir / "last-good.nft").write_text("# last good\n")
    inv = inventory.parse(f"hosts:\n  here:\n    connection: local\n    srv: {srv}\n    fw:\n      ipsec: false\n")
    host = inv.get("here")
    hc = HostContext(host, Context(config=AegirConfig(lazy=True)))
    sent = []
    run = hc._run
    monkeypatch.setattr(hc, "_run", lambda cmd, **kw: sent.append(cmd) or run(cmd, **kw))
    state, watcher = hc.facts(facts.state_fact(host, for_host(inv, host)), facts.watcher_fact())
    assert len(sent) == 1  # one round trip
    assert isinstance(state, nft.State) and state.template == "table inet aegir {}\n"
    assert state.last_good == "# last good\n" and state.kept_hash is None
    assert watcher == "not installed" or watcher.startswith(("unknown", "inactive", "active", "failed"))


def test_a_process_name_holding_the_old_separators_is_data_in_the_real_probe(tmp_path: Path):
    """Any user may listen on a port under a name of their choosing (``ss -p`` shows it raw): it used to cut
    the state probe (\\x1d) or the batch (\\x1e) in two, and fw.status failed on that host."""
    import subprocess
    import sys

    name = "a\x1dabsent\x1eb"
    listener = subprocess.Popen([sys.executable, "-c", f"""
import ctypes, socket, sys
ctypes.CDLL(None).prctl(15, {name.encode()!r}, 0, 0, 0)  # PR_SET_NAME
s = socket.create_server(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
sys.stdin.read()
"""], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        port = int(listener.stdout.readline())
        srv = tmp_path / "srv"
        inv = inventory.parse(f"hosts:\n  here:\n    connection: local\n    srv: {srv}\n    fw:\n      ipsec: false\n")
        host = inv.get("here")
        hc = HostContext(host, Context(config=AegirConfig(lazy=True)))
        state, _ = hc.facts(facts.state_fact(host, for_host(inv, host)), facts.watcher_fact())
    finally:
        listener.stdin.close()
        listener.wait()
    assert state.listeners is not None and state.listeners[port] == frozenset({name})
