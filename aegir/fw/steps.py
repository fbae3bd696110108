"""The firewall's changes, one `aegir.action.Action` each: fw.apply (`Apply`), fw.install (`Install`).

`Apply` plans a host from its facts (`firewall_of`: `aegir.fw.facts.read`, then
`aegir.fw.plan.firewall`) and acts through `apply`, which boot.docker and
fw.watch use too:

1. `load`, the checked atomic apply: refuse statements reaching beyond
   ``table inet aegir``; write this apply's own candidate; load it in a scratch
   network namespace next to the host's other tables (what nft refuses stops
   there: no separate ``nft -c``) and prove that SSH to the admin addresses
   gets through the whole ruleset (but the container elements the model's own
   check accepts: `aegir.fw.plan.proof_text`); ``nft -f``
   (one transaction, under the state folder's lock, between two writes of the
   ``unverified`` marker);
2. `verify`: a *new* SSH login must get in (`fresh_login`; on failure the last
   good ruleset is put back through the running session, `rollback`), then,
   under the lock, the live table must still be the one loaded: only then is it
   kept as the last good ruleset with the SSH settings the login proved.

A change of the container sets' elements only (`aegir.fw.plan.elements_only`: a
container started, stopped, re-addressed) skips both: each key it adds is checked
(`aegir.fw.plan.elements_refusal`), then one ``nft -f`` of element deletes and
adds runs under the lock once the host confirmed that the live table and the
whole ruleset's structure are the ones last proved (`load_elements`).

Whatever fails once nft loaded the candidate in the scratch namespace, the
host is asked again what is live (`what_is_live`: the same session, else a new
one) before the row says so. The files interrupted runs left are deleted under the lock on the way.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from aegir import action
from aegir.errors import AegirError, CommandError, ConnectionLost, RefusedError, UnreachableError
from aegir.fw import delta, facts, nft
from aegir.fw import plan as fwplan
from aegir.fw import report as fwreport
from aegir.fw.plan import Applied, Firewall, Installed, InstallPlan
from aegir.fw.render import Template
from aegir.fw.settings import FwSettings, for_host
from aegir.host import fresh_login
from aegir.inventory import Inventory
from aegir.report import Result
from aegir.sh import Cmd

if TYPE_CHECKING:  # pragma: no cover
    from invoke import Context

    from aegir.host import HostContext


class NftError(AegirError):
    """nft refused a ruleset; the live ruleset is the previous one."""


class RollbackFailed(AegirError):
    """nft refused to put the last good ruleset back: the new one stays live, unverified."""


# --------------------------------------------------------------------------- reads (plans may call them)


def firewall_of(hc: HostContext, settings: FwSettings, template: Template | None = None) -> Firewall:
    """One live host's firewall: its facts (one round trip, then Docker), rendered through `template` if
    given, else the host's or aegir's. Reads only."""
    f = facts.read(hc, settings)
    return fwplan.firewall(hc.host, settings, f.containers, f.state, template, f.bridges)


def status_of(hc: HostContext, settings: FwSettings) -> tuple[Firewall, str]:
    """`firewall_of`, and the watcher's unit as fw.status's WATCHER cell says it (in the same round trip)."""
    f = facts.read(hc, settings, watcher=True)
    assert f.watcher is not None
    return fwplan.firewall(hc.host, settings, f.containers, f.state, None, f.bridges), f.watcher


def before_docker(hc: HostContext, inv: Inventory) -> Firewall | None:
    """boot.docker's plan: the ruleset with no container published (`aegir.fw.plan.before_docker`), for a
    host whose firewall aegir manages; None otherwise. Reads only."""
    settings = for_host(inv, hc.host)
    return fwplan.before_docker(hc.host, settings, hc.fact(facts.state_fact(hc.host, settings)))


# --------------------------------------------------------------------------- the actions


class Apply(action.Action[Firewall, Applied]):
    """fw.apply on every target: nothing to do where the ruleset is live, verified and no leftovers wait."""

    label = "fw.apply"

    def __init__(self, c: Context, settings: Mapping[str, FwSettings], template: Template | None = None) -> None:
        self.c = c
        self.settings = settings
        self.template = template

    def plan(self, hc: HostContext) -> Firewall:
        return firewall_of(hc, self.settings[hc.name], self.template)

    def todo(self, plan: Firewall) -> bool:
        return plan.todo

    def act(self, hc: HostContext, plan: Firewall) -> Applied:
        # a new login still works before the ruleset counts as good, or the apply is undone
        return apply(hc, plan, fresh_login(self.c, hc))

    def render(self, ran: action.Ran[Firewall, Applied]) -> action.Report:
        return fwreport.apply_report(ran)


class Install(action.Action[InstallPlan, Installed]):
    """fw.install on every target: write, enable and start the watcher's unit unless it already is."""

    label = "fw.install"

    def plan(self, hc: HostContext) -> InstallPlan:
        return fwplan.plan_install(hc.fact(facts.unit_fact()), fwplan.unit_text())

    def todo(self, plan: InstallPlan) -> bool:
        return plan.todo

    def act(self, hc: HostContext, plan: InstallPlan) -> Installed:
        """Run the plan's commands, then read the unit back: written, enabled, running?"""
        for _, cmd in plan.steps:
            hc.run(cmd)
        names = tuple(name for name, _ in plan.steps)
        after = hc.fact(facts.unit_fact()) if names else plan.before
        problems = fwplan.install_problems(plan, after)
        if problems:
            return Installed(Result.FAILED, names, after, "; ".join(problems))
        return Installed(Result.DONE if names else Result.OK, names, after)

    def failed(self, result: Installed) -> str | None:
        return None if result.ok else result.problem or "the watcher is not running"

    def render(self, ran: action.Ran[InstallPlan, Installed]) -> action.Report:
        return fwreport.install_report(ran)


# --------------------------------------------------------------------------- the apply


def apply(hc: HostContext, fw: Firewall, fresh_login: Callable[[], None] | None = None, *,
          unattended: bool = False, full: bool = False, again: bool = False) -> Applied:
    """Apply `fw` on its host (nothing to do when it is live and verified); raise and change nothing on error.

    A change of container-set elements only (`fwplan.elements_only`) is one ``nft -f`` of element adds and
    deletes (`load_elements`), each added key checked first (`fwplan.elements_refusal`); anything else, or
    `full`, takes the full path: the proof in a scratch namespace (`load`), then the fresh login (`verify`).

    `fresh_login` opens a new SSH connection after the load (None on the local
    host: the operator is there). `unattended` (fw.watch: nobody to check a
    login) applies only the SSH settings a fresh login verified. `again` (fw.watch's resync after
    element-only changes): load and prove the ruleset even when it is the live one.
    """
    assert fw.state is not None, "applying needs the host's state (firewall_of)"
    if unattended:
        fwplan.unattended_refusal(fw)
    fwplan.preflight(fw)
    start = time.monotonic()
    if not fw.load and not again:
        return Applied(False, reason="nothing to do", swept=sweep(hc, fw))
    change = "proved again after element-only changes" if again else "a full resync" if full \
        else fwplan.elements_only(fw)
    if isinstance(change, delta.Delta):
        fwplan.elements_refusal(fw, change)
        live_hash, change = load_elements(hc, fw, change)
        if live_hash is not None:
            added, removed = nft.changed_lines(fw.state.last_good, fw.text)
            return Applied(True, added, removed, time.monotonic() - start, fwplan.reason(fw), live_hash,
                           elements=True)
    candidate, loaded, swept = load(hc, fw)
    live_hash = verify(hc, fw, candidate, loaded, fresh_login)
    added, removed = nft.changed_lines(fw.state.last_good, fw.text)
    why = "proved again" if again and not fw.load else fwplan.reason(fw)
    return Applied(True, added, removed, time.monotonic() - start, why, live_hash, swept, full_because=change)


def load_elements(hc: HostContext, fw: Firewall, change: delta.Delta) -> tuple[str | None, str]:
    """The element-only apply, one command (`nft.elements_cmd`): the new ruleset's text lands as this apply's
    candidate, then, under the lock, ``nft -f`` of the element changes and the candidate recorded as the
    last good ruleset. The live hash; or None and why, when the host is not the one planned against
    (nothing changed: the caller takes the full path)."""
    state_dir = fw.settings.state_dir
    candidate = nft.candidate_path(state_dir)
    cmd = nft.elements_cmd(candidate, state_dir, change.script(), fw.text)
    try:
        return hc.run(cmd).stdout.strip(), ""
    except CommandError as exc:
        if exc.exited != nft.NOT_ELEMENTS:
            raise _failed(hc, exc, "the element-only `nft -f`", fw, candidate, nft_step=True, cmd=cmd) from None
        why = exc.stderr.strip().splitlines()[-1:] or ["the host is not as planned"]
        return None, why[0].removeprefix("aegir: not element-only: ")


def load(hc: HostContext, fw: Firewall) -> tuple[str, str, int]:
    """The checked atomic apply (steps 1 above): the candidate's path, the terse hash of the table nft
    loaded (what `nft.keep_cmd` compares) and its full hash (what it records), and how many files of
    interrupted runs were deleted."""
    assert fw.state is not None
    state_dir = fw.settings.state_dir
    foreign = nft.foreign_statements(fw.text)
    if foreign:
        raise RefusedError("refused: the ruleset touches more than table inet aegir (" + "; ".join(foreign[:3])
                           + "); nothing changed", host=hc.name)
    candidate = nft.candidate_path(state_dir)
    hc.run(nft.write_cmd(candidate, fw.text))
    # No ``nft -c`` of its own: the proof's first step is ``nft -f`` of the candidate (but the container
    # elements the model's check accepts, `fwplan.proof_text`) in the scratch namespace, next to the host's
    # other tables: the same parser and the same kernel validation, so a ruleset nft refuses is refused
    # there, nothing live changed (`NOT_LOADED`). And one the live kernel refuses all the same (one of those
    # elements, say) changes nothing either: ``nft -f`` is one transaction (a file failing at any statement,
    # in the parser or in the kernel, applies none of it), and the row says nft's words and what is live.
    ssh = fwplan.ssh_packets(fw.host, fw.settings)
    port, admins, tried = fwplan.proof_args(ssh)
    prove = nft.prove_cmd(candidate, fwplan.proof_text(fw), port, admins, tried)
    try:
        proved = hc.run(prove).stdout
    except CommandError as exc:
        if exc.exited == nft.NOT_LOADED:
            said = exc.message.replace(f"`{exc.command}` exited {exc.exited}",
                                       f"`nft -f {candidate}` refused it (in a scratch network namespace)", 1)
            raise NftError(f"{said}\n  (nothing changed: the live ruleset is the previous one; the rejected ruleset "
                           f"is {candidate})", host=hc.name) from None
        raise _failed(hc, exc, "the proof in a scratch network namespace", fw, candidate, nft_step=True,
                      cmd=prove) from None
    except AegirError as exc:
        raise _failed(hc, exc, "the proof in a scratch network namespace", fw, candidate, nft_step=True,
                      cmd=prove) from None
    problems = fwplan.lockout_problems(*nft.parse_proof(proved), port, ssh)
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise RefusedError("refused: this ruleset could lock SSH out: " + "; ".join(problems[:3]) + more
                           + f"; nothing changed (rejected ruleset: {candidate})", host=hc.name)
    apply_ = nft.apply_cmd(candidate, state_dir, fw.state.live_hash)
    try:
        out = hc.run(apply_).stdout.split()
    except AegirError as exc:
        raise _failed(hc, exc, f"`nft -f {candidate}`", fw, candidate, nft_step=True, cmd=apply_) from None
    swept = int(out[2]) if len(out) == 3 and out[2].isdigit() else 0
    return candidate, " ".join(out[:2]) if len(out) >= 2 else f"{nft.ABSENT} {nft.ABSENT}", swept


def verify(hc: HostContext, fw: Firewall, candidate: str, loaded: str,
           fresh_login: Callable[[], None] | None) -> str:
    """Step 2 above: a fresh login gets in (else roll back and raise), then the live table, still the one
    `loaded`, is recorded as the last good one with the SSH settings verified; the live hash."""
    assert fw.state is not None
    if fresh_login is not None:
        try:
            fresh_login()
        except AegirError as exc:
            try:
                undone = rollback(hc, fw.state, fw.settings.state_dir)
            except RollbackFailed:
                raise
            except AegirError as again:
                raise _failed(hc, again, "the rollback", fw, candidate,
                              prefix=f"after the apply a new SSH connection failed ({exc.message}); then ") from None
            hc.run(Cmd.of("rm", "-f", "--", candidate), check=False)
            raise RefusedError(f"rolled back: after the apply a new SSH connection failed ({exc.message}); {undone}",
                               host=hc.name) from None
    terse, _, full = loaded.partition(" ")
    keep = nft.keep_cmd(candidate, fw.settings.state_dir, terse, fw.fingerprint, full)
    try:
        return hc.run(keep).stdout.strip()
    except AegirError as exc:
        first = "applied, and a new SSH login got in" if fresh_login is not None else "applied"
        raise _failed(hc, exc, "recording it as the last good ruleset", fw, candidate,
                      prefix=f"{first}; then ", cmd=keep) from None


def sweep(hc: HostContext, fw: Firewall) -> int:
    """Delete the files interrupted runs left in the state folder, if the probe found any; how many went."""
    if fw.state is None or not fw.state.leftovers:
        return 0
    out = hc.run(nft.sweep_cmd(fw.settings.state_dir)).stdout.strip()
    return int(out) if out.isdigit() else 0


def rollback(hc: HostContext, state: nft.State, state_dir: str) -> str:
    """Undo an apply: load the last good ruleset again, or drop aegir's table when there was none.

    `state` is what the host held before the apply. Returns what was done, for
    messages; raises `RollbackFailed` saying the live ruleset is the unverified
    one when nft could not undo it.
    """
    path = None
    if state.last_good is not None:
        path = f"{state_dir}/rollback-{uuid.uuid4().hex[:12]}.nft"
        hc.run(nft.write_cmd(path, state.last_good))
    try:
        hc.run(nft.restore_cmd(path, state_dir))
    except CommandError as exc:
        if exc.exited < 0:  # no answer: whether nft did it is unknown
            raise
        undo = "loading the last good ruleset" if path else "deleting table inet aegir"
        raise RollbackFailed(f"the apply failed its check and {undo} failed too ({exc.message}): THE LIVE RULESET "
                             "IS THE NEW, UNVERIFIED ONE; fix it through the running session", host=hc.name) from None
    if path is None:
        return "aegir's table is removed (there was no earlier ruleset)"
    return "the last good ruleset is live again"


# --------------------------------------------------------------------------- after a failure


def what_is_live(hc: HostContext, fw: Firewall, candidate: str) -> tuple[str, bool | None]:
    """After a failure once nft loaded `candidate` in the scratch namespace: ask the host what is live,
    through the same session or, when it died, a new one (once any load under way ended);
    `nft.after_failure` says it. None: the host did not answer, or neither ruleset is live."""
    assert fw.state is not None
    try:
        now = _settled_state(hc, fw.settings.state_dir)
    except AegirError as exc:
        # a failed reconnect repeats the loss the row already says (`cause`): only why it failed is new
        again = exc.message.removeprefix(f"{hc.journal.lost}; ") if hc.journal.lost else exc.message
        again = named(again, facts.settled_fact(fw.settings.state_dir).cmd, "asking what is live")
        return (f"the host did not answer again ({again}): the new ruleset may be live and unverified; "
                "fw.status says what is live once the host answers"), None
    return nft.after_failure(now, fw.state, fw.text, candidate)


def _settled_state(hc: HostContext, state_dir: str) -> nft.State:
    """The host's state once no load is under way: the same session, else (once) a new connection."""
    fact = facts.settled_fact(state_dir)
    try:
        hc.connect()
        return hc.fact(fact)
    except AegirError:
        if hc.host.is_local:
            raise
    hc.c.close()  # the session died with the command: a new one
    hc.connect()
    return hc.fact(fact)


def named(message: str, cmd: Cmd | None, what: str) -> str:
    """`message` with the command line of `cmd` it quotes (most of fw's steps are scripts of dozens of
    lines) replaced by what the step is: a row stays one line."""
    return message.replace(f" while running `{cmd.line}`", f" during {what}") if cmd is not None else message


def cause(exc: AegirError, what: str, cmd: Cmd | None = None) -> str:
    """Why `what` (running `cmd`) failed, in one line: nft's own words, or how the session ended (silence:
    no answer for timeouts.silent; a close: the connection lost, and why)."""
    if isinstance(exc, ConnectionLost):
        return named(exc.message, cmd, what)
    if isinstance(exc, CommandError):
        tail = " / ".join(ln.strip() for ln in exc.stderr.strip().splitlines()[-3:] if ln.strip())
        if exc.exited < 0:
            return f"no exit status from {what} ({tail})" if tail else f"the session ended during {what} (no exit status)"
        return f"{what} exited {exc.exited}" + (f": {tail}" if tail else "")
    if isinstance(exc, UnreachableError):
        return f"the SSH connection was lost during {what}"
    return f"{what}: {exc.message.splitlines()[0][:300]}"


def _failed(hc: HostContext, exc: AegirError, what: str, fw: Firewall, candidate: str, *, nft_step: bool = False,
            prefix: str = "", cmd: Cmd | None = None) -> AegirError:
    """The error of a step that failed once nft loaded `candidate` in the scratch namespace: its cause,
    then what the host says is live now (`what_is_live`). `nft_step`: nft's own refusal there leaves the
    previous ruleset."""
    truth, new_live = what_is_live(hc, fw, candidate)
    why = cause(exc, what, cmd)
    if nft_step and new_live is False and isinstance(exc, CommandError) and exc.exited > 0:
        return NftError(f"{prefix}{why}\n  ({truth}; the rejected ruleset is {candidate})", host=hc.name)
    return AegirError(f"{prefix}{why}: {truth}", host=hc.name)

