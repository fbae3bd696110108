"""Firewall: the nftables ruleset rendered from each host's running containers.

Only published ports reach containers (DNAT to the container, IPv4 and IPv6),
containers reach each other and the Internet, the host accepts SSH on its admin
addresses (always), the ICMP the network needs and its inventory allow-lists.
`fw.apply` proves the ruleset in a scratch network namespace (it loads there, and real SSH packets
reach the admin addresses) and swaps ``table inet aegir`` atomically;
`fw.watch` does it on every container change, and `fw.install` makes it a
systemd service on each host (`fw.status` says whether it runs).

Every target's ``fw:`` section is read before any host is touched: a mistake
there is a usage error (exit 2, ``file:line: sentence``). `fw.watch` has no
``--dry``: it is a loop that applies at every change (`fw.diff` shows what it
would apply).
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import TYPE_CHECKING

from invoke import Collection, Context

from aegir.errors import UsageError
from aegir.report import FORMAT_HELP, check_format
from aegir.tasks.base import ROLLING_HELP, act, finish, fleet_read, inventory, is_dry, one_host, targets, task
from aegir.tasks.flags import POSITIVE

if TYPE_CHECKING:  # pragma: no cover - the area's code is imported by the task that runs (inv --list stays quick)
    from aegir.fw.render import Template
    from aegir.fw.settings import FwSettings
    from aegir.inventory import Host

TEMPLATE_HELP = "Render with this local Jinja2 template instead of the host's or aegir's."
NO_DRY = ("fw.watch applies a ruleset at every change and has no dry run: see what it would apply "
          "with `inv fw.diff`")


def _read(path: str, flag: str) -> str:
    """The text of the local file a flag names (`flag`: ``fw.render --from-json``), or `UsageError` saying why not."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{flag}: cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{flag}: cannot read {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _template(path: str | None, task_name: str) -> Template | None:
    """``--template FILE``, read before any host is."""
    from aegir.fw.render import Template

    return Template(_read(path, f"{task_name} --template"), path) if path else None


def _settings(c: Context) -> tuple[tuple[Host, ...], dict[str, FwSettings]]:
    """The targets and their ``fw:`` settings, every one read before any host is touched (exit 2 on a mistake)."""
    from aegir.fw.settings import for_hosts

    hosts = targets(c)
    return hosts, for_hosts(inventory(c), hosts)


@task(help={"from_json": "Render from a saved `docker inspect` array (FILE) instead of the live host; "
                         "needs no Docker and no connection.",
            "template": TEMPLATE_HELP, "format": FORMAT_HELP})
def render(c: Context, from_json: str | None = None, template: str | None = None, format: str = "table") -> None:
    """Print the ruleset each host would get from its running containers."""
    from aegir.fleet import Outcome
    from aegir.fw import report, steps
    from aegir.fw.model import load_inspect
    from aegir.fw.plan import firewall
    from aegir.fw.settings import for_host

    fmt = check_format(format)
    tpl = _template(template, "fw.render")
    if from_json:
        host = one_host(c, "--from-json describes one host")
        containers = load_inspect(_read(from_json, "fw.render --from-json"), from_json)
        outcomes = [Outcome(host, firewall(host, for_host(inventory(c), host), containers, None, tpl))]
    else:
        hosts, settings = _settings(c)
        outcomes = fleet_read(c, "fw.render", lambda hc: steps.firewall_of(hc, settings[hc.name], tpl), hosts=hosts)
    report.failures(outcomes)  # on stderr: stdout holds the rulesets
    finish(c, fmt, report.render_report(outcomes), outcomes)


@task(help={"template": TEMPLATE_HELP, "format": FORMAT_HELP})
def diff(c: Context, template: str | None = None, format: str = "table") -> None:
    """Show how each host's ruleset would change against its live one."""
    from aegir.fw import report, steps

    fmt = check_format(format)
    tpl = _template(template, "fw.diff")
    hosts, settings = _settings(c)
    outcomes = fleet_read(c, "fw.diff", lambda hc: steps.firewall_of(hc, settings[hc.name], tpl), hosts=hosts)
    finish(c, fmt, report.diff_report(outcomes), outcomes)


@task(help={"dry": "Show what would change; apply nothing.", "template": TEMPLATE_HELP, "format": FORMAT_HELP,
            **ROLLING_HELP})
def apply(c: Context, dry: bool = False, template: str | None = None, format: str = "table",
          serial: str | None = None, keep_going: bool = False) -> None:
    """Prove each host's ruleset in a scratch namespace and apply it if it changed.

    After an apply, a new SSH connection must get in; if it does not (say an
    admin_sources that leaves out this machine), the last good ruleset is put
    back through the running session and the host's row says so. When anything
    fails past the proof (the session lost right after `nft -f`, say), the row
    says what the host holds, asked again: "new ruleset live and unverified"
    until the next apply checks it (fw.status says so too).
    """
    from aegir.fw.steps import Apply

    fmt = check_format(format)
    tpl = _template(template, "fw.apply")
    hosts, settings = _settings(c)
    act(c, Apply(c, settings, tpl), fmt=fmt, dry=dry, serial=serial, keep_going=keep_going, hosts=hosts)


@task(help={"format": FORMAT_HELP})
def status(c: Context, format: str = "table") -> None:
    """List what each host publishes and whether its ruleset and watcher are fine.

    Each published address:port and the container it goes to, whether the live
    table is in sync, and whether the watcher (fw.install) runs.
    """
    from aegir.fw import report, steps

    fmt = check_format(format)
    hosts, settings = _settings(c)
    outcomes = fleet_read(c, "fw.status", lambda hc: steps.status_of(hc, settings[hc.name]), hosts=hosts)
    finish(c, fmt, report.status_report(outcomes), outcomes)


@task(help={"dry": "Show what would be done; change nothing.", "format": FORMAT_HELP, **ROLLING_HELP})
def install(c: Context, dry: bool = False, format: str = "table", serial: str | None = None,
            keep_going: bool = False) -> None:
    """Install fw.watch as a systemd service on each host: write, enable, start it.

    Idempotent: a host whose unit is the shipped one, enabled and running, has
    nothing to do. Where systemd does not run the host, the unit is written and
    enabled but cannot start: the row says so and the exit code is 1.
    """
    from aegir.fw.steps import Install

    act(c, Install(), fmt=format, dry=dry, serial=serial, keep_going=keep_going)


@task(help={"resync": "Seconds between full resyncs (default 300).",
            "debounce": "Milliseconds of quiet that end a burst of events (default 20).",
            "max_delay": "Longest wait after an event before applying, in milliseconds (default 500)."},
      kinds={"resync": POSITIVE, "debounce": POSITIVE, "max_delay": POSITIVE})
def watch(c: Context, resync: int = 300, debounce: int = 20, max_delay: int = 500) -> None:
    """Keep one host's firewall in step with its containers until SIGTERM (no --dry).

    On Docker events. A loop that applies at every change, as fw.apply does but
    without a fresh login (only SSH settings fw.apply verified): it has no dry
    run; `fw.diff` shows what it would apply.
    """
    from aegir.fw.report import watch_log
    from aegir.fw.watch import Options, Watcher
    from aegir.host import open_context

    if is_dry(c):
        raise UsageError(NO_DRY)
    if min(resync, debounce, max_delay) <= 0:
        raise UsageError("fw.watch: --resync, --debounce and --max-delay must be positive")
    inv = inventory(c)
    host = one_host(c, "fw.watch watches one host")
    opts = Options(resync=float(resync), debounce=debounce / 1000, max_delay=max_delay / 1000)
    hc = open_context(c, host)
    watcher = Watcher(hc, inv, opts, log=watch_log)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: watcher.stop())
    try:
        watcher.run()
    finally:
        hc.close()


ns = Collection("fw")
for _t in (render, diff, apply, status, watch, install):
    ns.add_task(_t)
