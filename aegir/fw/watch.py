"""``fw.watch``: keep a host's firewall in step with its containers, driven by Docker events.

The loop, for one host:

1. open the event stream (container start/die/stop/destroy, network
   connect/disconnect) FIRST, then resync fully (inspect every running
   container, re-read the host's state, render, apply), so no change falls
   between the two;
2. on events, wait until the burst is over (`debounce` seconds of quiet, at
   most `max_delay` after the first event), re-inspect only the containers
   named by the events, render, apply (nothing happens if the ruleset is the same);
3. every `resync` seconds, resync fully (catches anything missed, and a ruleset
   changed by hand); a resync that failed, or an event whose container could
   not be inspected, is retried sooner (`backoff_min` doubling up to `backoff_max`);
   what events change is applied as element changes when it is only that
   (`aegir.fw.steps.apply`), what a resync changes always with the full proof,
   and a resync after element-only changes loads and proves the ruleset again;
4. when the stream breaks (the daemon restarts), reconnect with exponential
   backoff and resync fully;
5. `stop()` (SIGTERM) ends the loop after the current step.

Each change is logged in one line: what was added and removed, and how long it took.
A failed apply is logged too; the previous ruleset stays and the next event or
resync tries again.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from aegir.docker import client_for
from aegir.errors import AegirError
from aegir.fw import facts, nft
from aegir.fw import plan as fwplan
from aegir.fw import steps as fwsteps
from aegir.fw.model import Container, Exposures, parse_container
from aegir.fw.settings import for_host
from aegir.inventory import Inventory

if TYPE_CHECKING:  # pragma: no cover
    import docker

    from aegir.host import HostContext

EVENT_FILTERS = {
    "type": ["container", "network"],
    "event": ["start", "die", "stop", "destroy", "connect", "disconnect"],
}
_BROKEN = object()
_STOP = object()


@dataclass(frozen=True)
class Options:
    """How the watcher paces itself (seconds)."""

    resync: float = 300.0
    #: An element-only apply takes a few tens of ms: waiting longer to batch a burst costs more than it saves.
    debounce: float = 0.02
    max_delay: float = 0.5
    backoff_min: float = 0.5
    backoff_max: float = 30.0


def changes(old: Exposures | None, new: Exposures) -> tuple[list[str], list[str]]:
    """The exposures added and removed, as ``web tcp/192.0.2.11:80->172.17.0.2:80``."""
    before = set(old.items) if old else set()
    after = set(new.items)
    return [str(e) for e in new.items if e not in before], \
        [str(e) for e in (old.items if old else ()) if e not in after]


def one_line(text: str) -> str:
    return " | ".join(ln.strip() for ln in str(text).splitlines() if ln.strip())


class Watcher:
    """Runs the loop above for `hc`'s host; `log` receives one line per change."""

    def __init__(self, hc: "HostContext", inv: Inventory, options: Options = Options(),
                 log: Callable[[str], None] = print) -> None:
        self.hc = hc
        self.opt = options
        self._log = log
        self.events: "queue.Queue[Any]" = queue.Queue()
        self._stop = threading.Event()
        self._stream: Any = None
        self._client: "docker.DockerClient | None" = None
        self.containers: dict[str, Container] = {}
        self.bridges: tuple[str, ...] = ()
        self.applied: Exposures | None = None
        self.state: nft.State | None = None
        self.settings = for_host(inv, hc.host)
        self._last_resync = time.monotonic()
        self._retry: float | None = None  # seconds until the next try after a failed resync
        self._unproved = False  # element-only changes applied since the last full proof

    # -- public ---------------------------------------------------------------

    def log(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        self._log(f"{stamp} fw.watch {self.hc.name}: {one_line(message)}")

    def stop(self) -> None:
        """Ask the loop to end (safe from a signal handler or another thread)."""
        self._stop.set()
        self.events.put(_STOP)

    def run(self) -> None:
        """Watch until `stop()`; never returns on its own."""
        backoff = self.opt.backoff_min
        reason = "start"
        while not self._stop.is_set():
            try:
                self._connect()
            except Exception as exc:  # daemon down: wait and retry
                self.log(f"cannot reach Docker ({_why(exc)}); retrying in {backoff:g}s")
                if self._stop.wait(backoff):
                    break
                backoff = min(backoff * 2, self.opt.backoff_max)
                continue
            backoff = self.opt.backoff_min
            self.resync(reason)
            self._follow()
            reason = "reconnected"
        self._disconnect()
        self.log("stopped")

    def resync(self, reason: str) -> None:
        """Inspect every running container, re-read the host's state, apply."""
        self._last_resync = time.monotonic()
        try:
            assert self._client is not None
            self.containers = {c.id: c for c in facts.running_containers(self._client)}
            self.bridges = facts.docker_bridges(self._client)
            self.state = self.hc.fact(facts.state_fact(self.hc.host, self.settings))
        except Exception as exc:
            self._retry = min(self._retry * 2, self.opt.backoff_max) if self._retry else self.opt.backoff_min
            self.log(f"resync ({reason}) failed: {_why(exc)}; retrying in {min(self._retry, self.opt.resync):g}s")
            return
        self._retry = None
        self._apply(reason)

    def update(self, ids: set[str]) -> None:
        """Re-inspect the containers named by events, then apply."""
        assert self._client is not None
        from docker.errors import NotFound

        for cid in ids:
            try:
                c = parse_container(self._client.api.inspect_container(cid))
            except NotFound:
                self.containers.pop(cid, None)
                continue
            except Exception as exc:  # the daemon is going away (the reconnection resyncs), or a hiccup
                self.log(f"events: cannot inspect {cid[:12]} ({_why(exc)}); resyncing")
                self.resync("events")
                return
            if c.running:
                self.containers[c.id] = c
            else:
                self.containers.pop(c.id, None)
        try:  # a container on a new network brings a new bridge
            self.bridges = facts.docker_bridges(self._client)
        except Exception as exc:
            self.log(f"events: cannot list Docker's networks ({_why(exc)}); resyncing")
            self.resync("events")
            return
        self._apply("events")

    # -- inside ---------------------------------------------------------------

    def _apply(self, reason: str) -> None:
        """Render and apply; log one line when the ruleset changed (or at start and reconnection)."""
        if self.state is None:
            return
        try:
            fw = fwplan.firewall(self.hc.host, self.settings, self.containers.values(), self.state,
                                 bridges=self.bridges)
            again = self._unproved and reason != "events"  # a resync proves element-only changes as a whole
            if not fw.changed and not again:
                if reason in ("start", "reconnected"):
                    self.log(f"{reason}: in sync, nothing to do ({len(fw.exposures.items)} exposures)")
                self.applied = fw.exposures
                return
            # only the SSH settings a fresh login verified; a resync always takes the full proof
            done = fwsteps.apply(self.hc, fw, unattended=True, full=reason != "events", again=again)
        except AegirError as exc:
            self.log(f"{reason}: apply failed: {exc.message}")
            # what the host holds is unknown now (applied, not recorded?): re-read it soon
            self.state = None
            self._retry = min(self._retry * 2, self.opt.backoff_max) if self._retry else self.opt.backoff_min
            return
        self._unproved = done.elements or (self._unproved and not done.changed)
        added, removed = changes(self.applied, fw.exposures)
        self.applied = fw.exposures
        self.state = replace(self.state, last_good=fw.text, kept_hash=done.live_hash,
                             live_hash=done.live_hash or self.state.live_hash, marker=None, leftovers=())
        what = " ".join([*(f"+{a}" for a in added), *(f"-{r}" for r in removed)]) or \
            f"ruleset {done.reason}"
        path = "elements only" if done.elements else f"full proof: {done.full_because}"
        self.log(f"{reason}: applied in {done.seconds:.2f}s ({path}), {len(fw.exposures.items)} exposures: {what}")

    def _connect(self) -> None:
        self._disconnect()
        client = client_for(self.hc)
        client.ping()
        self._client = client
        # open the stream before the resync: nothing can slip between the two
        self._stream = client.events(decode=True, filters=EVENT_FILTERS)
        stream = self._stream
        threading.Thread(target=self._read, args=(stream,), daemon=True, name="fw-events").start()

    def _read(self, stream: Any) -> None:
        try:
            for event in stream:
                self.events.put(event)
        except Exception:  # the daemon went away mid-read
            pass
        self.events.put((_BROKEN, stream))

    def _disconnect(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.close()
            except Exception:  # already broken, or not cancellable (SSH)
                pass
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:
                pass

    def _follow(self) -> None:
        """Handle events until the stream breaks or stop(); resync when due."""
        while not self._stop.is_set():
            due = self._last_resync + min(self._retry or self.opt.resync, self.opt.resync)
            try:
                item = self.events.get(timeout=max(0.0, due - time.monotonic()))
            except queue.Empty:
                self.resync("retry" if self._retry else "periodic")
                continue
            if item is _STOP:
                return
            if isinstance(item, tuple) and item and item[0] is _BROKEN:
                if item[1] is self._stream:
                    self.log("Docker event stream lost; reconnecting")
                    return
                continue  # an old stream's end
            self.update(burst(self.events, item, self.opt.debounce, self.opt.max_delay))



def burst(events: "queue.Queue[Any]", first: Any, debounce: float, max_delay: float) -> set[str]:
    """The container ids of a burst of events starting with `first`.

    Waits until `debounce` seconds pass without an event, or `max_delay` after
    the first one; a stop or stream-lost marker ends the burst and is put back.
    """
    ids = {container_of(first)}
    start = time.monotonic()
    while True:
        left = min(debounce, start + max_delay - time.monotonic())
        if left <= 0:
            break
        try:
            item = events.get(timeout=left)
        except queue.Empty:
            break
        if not isinstance(item, dict):  # _STOP or (_BROKEN, stream): for the main loop
            events.put(item)
            break
        ids.add(container_of(item))
    ids.discard("")
    return ids


def container_of(event: Any) -> str:
    """The container an event is about (a network event names it in its attributes)."""
    if not isinstance(event, dict):
        return ""
    actor = event.get("Actor") or {}
    if event.get("Type") == "network":
        return str((actor.get("Attributes") or {}).get("container") or "")
    return str(actor.get("ID") or event.get("id") or "")


def _why(exc: Exception) -> str:
    text = exc.message if isinstance(exc, AegirError) else str(exc)
    return one_line(text or type(exc).__name__)[:300]
