"""Firewall: the nftables ruleset rendered from each host's running containers.

Only published ports reach containers (DNAT to the container, IPv4 and IPv6),
containers reach each other and the Internet, the host accepts SSH on its admin
addresses (always), the ICMP the network needs and its inventory allow-lists.
`fw.apply` checks with ``nft -c`` and swaps ``table inet aegir`` atomically;
`fw.watch` does it on every container change, and `fw.install` makes it a
systemd service on each host (`fw.status` says whether it runs).
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invoke import Collection

from aegir.errors import AegirError
from aegir.report import FORMAT_HELP, check_format, emit, failed_row, host_entry, table
from aegir.tasks.base import ROLLING_HELP, exit_if_failed, inventory, is_dry, one_host, rolling, targets, task

if TYPE_CHECKING:  # pragma: no cover - the area's code is imported by the task that runs (inv --list stays quick)
    from aegir import fleet
    from aegir.fw import host as fwhost
    from aegir.fw import nft
    from aegir.fw.render import Template
    from aegir.host import HostContext

TEMPLATE_HELP = "Render with this local Jinja2 template instead of the host's or aegir's."


def _read(path: str, what: str = "") -> str:
    """A local file's text, or `AegirError` saying why not."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AegirError(f"cannot read {what}{path}: {exc}") from None


def _template(path: str | None) -> Template | None:
    from aegir.fw.render import Template

    return Template(_read(path, "template "), path) if path else None


def _builder(inv: Any, template: Template | None) -> Any:
    from aegir.fw import host as fwhost

    return lambda hc: fwhost.build(hc, inv, template)


def _failures(outcomes: Sequence[fleet.Outcome[Any]]) -> str:
    return "\n".join(f"{o.host.name}: {o.status}" for o in outcomes if not o.ok)


@task(help={"from_json": "Render from a saved `docker inspect` array (FILE) instead of the live host; "
                         "needs no Docker and no connection.",
            "template": TEMPLATE_HELP, "format": FORMAT_HELP})
def render(c, from_json=None, template=None, format="table"):
    """Print the ruleset each host would get from its running containers."""
    from aegir import fleet
    from aegir.fw import host as fwhost
    from aegir.fw.model import load_inspect
    from aegir.fw.settings import for_host

    fmt = check_format(format)
    inv, tpl = inventory(c), _template(template)
    if from_json:
        host = one_host(c, "--from-json describes one host")
        fw = fwhost.plan(host, for_host(inv, host), load_inspect(_read(from_json), from_json), None, tpl)
        outcomes = [fleet.Outcome(host, fw)]
    else:
        outcomes = fleet.each(c, targets(c), _builder(inv, tpl), label="fw.render")
    ok = [o for o in outcomes if o.value is not None]
    data = {"hosts": [{"host": o.host.name, "status": o.kind, "error": o.error,
                       **({"ruleset": o.value.text, "exposures": list(o.value.exposures.items),
                           "warnings": list(o.value.exposures.warnings)} if o.value else {})}
                      for o in outcomes]}
    texts = [o.value.text if len(outcomes) == 1 else f"# ==== {o.host.name} ====\n{o.value.text}" for o in ok]
    emit(fmt, data=data, text="\n".join(texts).rstrip("\n"))
    if len(ok) != len(outcomes):
        print(_failures(outcomes), file=sys.stderr)
    exit_if_failed(outcomes)


@task(help={"template": TEMPLATE_HELP, "format": FORMAT_HELP})
def diff(c, template=None, format="table"):
    """Show how each host's ruleset would change against its live one."""
    from aegir import fleet

    fmt = check_format(format)
    outcomes = fleet.each(c, targets(c), _builder(inventory(c), _template(template)), label="fw.diff")
    data, parts = [], []
    for o in outcomes:
        fw = o.value
        if fw is None:
            data.append(host_entry(o))
            parts.append(f"{o.host.name}: {o.status}")
            continue
        assert fw.state is not None
        d = fw.diff()
        data.append({"host": o.host.name, "status": o.kind, "live": fw.state.status, "changed": fw.changed,
                     "diff": d, "warnings": list(fw.exposures.warnings)})
        head = f"{o.host.name}: live table {fw.state.status}; {len(fw.exposures.items)} exposures"
        if not fw.changed:
            parts.append(f"{head}; nothing to do")
        elif d:
            parts.append(f"{head}; fw.apply would change:\n{d.rstrip()}")
        else:
            parts.append(f"{head}; same ruleset as the last apply: fw.apply would load it again")
        parts += [f"{o.host.name}: warning: {w}" for w in fw.exposures.warnings]
    emit(fmt, data={"hosts": data}, text="\n".join(parts))
    exit_if_failed(outcomes)


@task(help={"dry": "Show what would change; apply nothing.", "template": TEMPLATE_HELP, "format": FORMAT_HELP,
            **ROLLING_HELP})
def apply(c, dry=False, template=None, format="table", serial=None, keep_going=False):
    """Check each host's ruleset with `nft -c` and apply it atomically (nothing to do if unchanged).

    After an apply, a new SSH connection must get in; if it does not (say an
    admin_sources that leaves out this machine), the last good ruleset is put
    back through the running session and the host's row says so. When anything
    fails past `nft -c` (the session lost right after `nft -f`, say), the row
    says what the host holds, asked again: "new ruleset live and unverified"
    until the next apply checks it (fw.status says so too).
    """
    from aegir import fleet
    from aegir.fw import host as fwhost

    fmt = check_format(format)
    dry = is_dry(c, dry)
    build = _builder(inventory(c), _template(template))

    def one(hc: HostContext) -> tuple[fwhost.Firewall, nft.Applied | None]:
        fw = build(hc)
        if dry:
            return fw, None
        # a new login still works before the ruleset counts as good, or the apply is undone
        return fw, fwhost.apply(hc, fw, fwhost.fresh_login(c, hc))

    hosts = targets(c)
    roll = None if dry else rolling(c, hosts, serial, keep_going)
    outcomes = fleet.each(c, hosts, one, label="fw.apply", rolling=roll)
    rows, data = [], []
    for o in outcomes:
        if o.value is None:
            rows.append([o.host.name, None, None, o.status])
            data.append(host_entry(o))
            continue
        fw, done = o.value
        if done is None:
            result = "would apply (dry)" if fw.changed else "nothing to do"
        elif done.changed:
            result = f"applied in {done.seconds:.2f}s ({done.reason}: +{len(done.added)} -{len(done.removed)} lines)"
        else:
            result = "nothing to do"
        if done is not None and done.swept:
            result += f"; removed {done.swept} leftover file{'s' if done.swept > 1 else ''} of interrupted runs"
        warn = "; ".join(fw.exposures.warnings)
        rows.append([o.host.name, len(fw.exposures.containers), len(fw.exposures.items),
                     result + (f"; warnings: {warn}" if warn else "")])
        data.append({"host": o.host.name, "status": o.kind, "result": result, "dry": dry,
                     "changed": bool(done.changed) if done else fw.changed, **fwhost.summary(fw),
                     "added": list(done.added) if done else [], "removed": list(done.removed) if done else []})
    emit(fmt, data={"hosts": data}, text=table(["HOST", "CONTAINERS", "EXPOSURES", "RESULT"], rows))
    exit_if_failed(outcomes)


def _watcher(hc: HostContext) -> str:
    """The watcher's unit on the host, as the WATCHER cell says it: ``active (enabled)``, ``not installed``..."""
    from aegir.fw import install as fwinstall

    try:
        return fwinstall.read_state(hc).summary
    except (AegirError, ValueError) as exc:
        return f"unknown: {exc}"


@task(help={"format": FORMAT_HELP})
def status(c, format="table"):
    """List what each host publishes (address:port -> container), whether its live table is in sync
    and whether the watcher (fw.install) runs."""
    from aegir import fleet
    from aegir.fw import host as fwhost
    from aegir.fw.model import hostport

    fmt = check_format(format)
    build = _builder(inventory(c), None)
    outcomes = fleet.each(c, targets(c), lambda hc: (build(hc), _watcher(hc)), label="fw.status")
    hosts, rows, data = [], [], []
    for o in outcomes:
        if o.value is None:
            hosts.append([o.host.name, None, None, None, None, o.status])
            data.append(host_entry(o))
            continue
        fw, watcher = o.value
        assert fw.state is not None
        hosts.append([o.host.name, fw.state.status, "yes" if fw.changed else "no", len(fw.exposures.items), watcher,
                      "; ".join(fw.exposures.warnings) or "ok"])
        rows += [[o.host.name, e.container, e.proto, hostport(e.host_addr, e.host_port),
                  hostport(e.target_addr, e.target_port)] for e in fw.exposures.items]
        data.append({"host": o.host.name, "status": o.kind, "pending": fw.changed, **fwhost.summary(fw),
                     "watcher": watcher, "exposures": list(fw.exposures.items)})
    text = table(["HOST", "LIVE TABLE", "PENDING", "EXPOSURES", "WATCHER", "STATUS"], hosts)
    if rows:
        text += "\n\n" + table(["HOST", "CONTAINER", "PROTO", "PUBLISHED ON", "CONTAINER ADDRESS"], rows)
    emit(fmt, data={"hosts": data}, text=text)
    exit_if_failed(outcomes)


@task(help={"dry": "Show what would be done; change nothing.", "format": FORMAT_HELP, **ROLLING_HELP})
def install(c, dry=False, format="table", serial=None, keep_going=False):
    """Install the watcher (fw.watch) as a systemd service on each host: write its unit, enable and start it.

    Idempotent: a host whose unit is the shipped one, enabled and running, has
    nothing to do. Where systemd does not run the host, the unit is written and
    enabled but cannot start: the row says so and the exit code is 1.
    """
    from aegir import fleet
    from aegir.fw import install as fwinstall

    fmt = check_format(format)
    act = not is_dry(c, dry)
    hosts = targets(c)
    outcomes = fleet.each(c, hosts, lambda hc: fwinstall.install(hc, act=act), label="fw.install",
                          rolling=rolling(c, hosts, serial, keep_going) if act else None,
                          fails=lambda r: None if r.ok else r.problem or "the watcher is not running")
    rows, data = [], []
    for o in outcomes:
        r = o.value
        if r is None:
            rows.append(failed_row(o, 5, at=1, reason_at=4))
            data.append(host_entry(o))
            continue
        done = ", ".join(r.did) or "nothing to do"
        rows.append([o.host.name, r.result.upper() if not r.ok else r.result.value, r.state.enabled or None,
                     r.state.active or None, done + (f"\n{r.problem}" if r.problem else "")])
        data.append(host_entry(o, result=r.result.value, steps=list(r.did), unit=fwinstall.UNIT_PATH,
                               booted=r.state.booted, enabled=r.state.enabled, active=r.state.active,
                               problem=r.problem))
    emit(fmt, data={"hosts": data}, text=table(["HOST", "RESULT", "ENABLED", "ACTIVE", "STEPS"], rows))
    exit_if_failed(outcomes, problems=any(o.value is not None and not o.value.ok for o in outcomes))


@task(help={"resync": "Seconds between full resyncs (default 300).",
            "debounce": "Milliseconds of quiet that end a burst of events (default 100).",
            "max_delay": "Longest wait after an event before applying, in milliseconds (default 500)."})
def watch(c, resync=300, debounce=100, max_delay=500):
    """Keep one host's firewall in step with its containers, on Docker events, until SIGTERM."""
    from aegir.fw.watch import Options, Watcher
    from aegir.host import open_context

    if is_dry(c):
        raise AegirError("fw.watch applies a ruleset at every change and has no dry run: "
                         "see what it would apply with `inv fw.diff`")
    inv = inventory(c)
    host = one_host(c, "fw.watch watches one host")
    if min(resync, debounce, max_delay) <= 0:
        raise AegirError("--resync, --debounce and --max-delay must be positive")
    opts = Options(resync=float(resync), debounce=debounce / 1000, max_delay=max_delay / 1000)
    hc = open_context(c, host)
    watcher = Watcher(hc, inv, opts, log=lambda line: print(line, flush=True))
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: watcher.stop())
    try:
        watcher.run()
    finally:
        hc.close()


ns = Collection("fw")
for _t in (render, diff, apply, status, watch, install):
    ns.add_task(_t)
