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
    """fw.status asks both in one batch: the state probe's own separators must not be the batch's."""
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
    assert "\\036" not in nft.probe_cmd("/t", "/s").argv[2]  # the batch's separator
