"""nft commands and the atomic apply: check first, change nothing on error, keep the last good.

The host keeps its firewall state under ``Settings.state_dir``
(``<srv>/conf/aegir-fw`` by default):

- ``candidate.nft``: the ruleset being applied (left there when nft rejects it);
- ``last-good.nft``: the last ruleset applied and verified;
- ``live.sha256``: the hash of ``nft -a -t -s list table inet aegir`` right
  after that apply, which tells whether the live table was changed since: gone
  (a reboot, a flush), recreated (its handle changes) or edited (a rule, a
  chain, a set's definition). It is the terse listing (no set elements), three
  times cheaper on a big table; an element added by hand goes unnoticed.

`apply` writes the candidate, runs ``nft -c -f`` then ``nft -f`` (one
transaction: the table is deleted and recreated atomically, so any error leaves
the previous ruleset in place), then keeps it as the last good ruleset. A
host's own template is first proven (`safety`) on the ruleset as nft loads it
in a scratch network namespace: SSH to the admin addresses must be accepted,
or nothing is applied. (aegir's template is proven by its test suite on
generated inputs, which is cheaper than doing it at every apply.)
"""

from __future__ import annotations

import difflib
import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aegir.errors import AegirError, CommandError, RefusedError
from aegir.fw import safety
from aegir.sh import Cmd, shell

if TYPE_CHECKING:  # pragma: no cover
    from aegir.host import HostContext

TABLE = "inet aegir"
CANDIDATE = "candidate.nft"
LAST_GOOD = "last-good.nft"
#: sha256 of an empty listing: the table is not there.
ABSENT = hashlib.sha256(b"").hexdigest()
_RS = "\x1e"


class NftError(AegirError):
    """nft refused a ruleset; the live ruleset is the previous one."""


# --------------------------------------------------------------------------- commands


def check_cmd(path: str) -> Cmd:
    """``nft -c -f PATH``: parse and validate against the kernel, change nothing."""
    return Cmd.of("nft", "-c", "-f", path)


def apply_cmd(path: str) -> Cmd:
    """``nft -f PATH``: one transaction, all or nothing."""
    return Cmd.of("nft", "-f", path)


def write_cmd(state_dir: str, name: str, text: str) -> Cmd:
    """Write `text` (sent on stdin) to ``STATE_DIR/NAME``, creating the folder (mode 700)."""
    return Cmd(shell('umask 077; mkdir -p -- "$1" && cat > "$1/$2"', state_dir, name).argv, stdin=text)


_PROBE = r"""for f in "$1" "$2/last-good.nft" "$2/live.sha256"; do
  if [ -f "$f" ]; then printf '\036present\n'; cat -- "$f"; else printf '\036absent\n'; fi
done
printf '\036live\n'; nft -a -t -s list table inet aegir 2>/dev/null | sha256sum
"""


def probe_cmd(template_path: str, state_dir: str) -> Cmd:
    """One round trip: the host's template override, the last good ruleset, its hash, the live hash."""
    return shell(_PROBE, template_path, state_dir)


_PROVE = r"""unshare -n sh -c 'nft -f "$1" >/dev/null && nft -s -j list table inet aegir' sh "$1"
"""


def prove_cmd(path: str) -> Cmd:
    """Load PATH in a scratch network namespace and print it back as nft's JSON (nothing live changes)."""
    return shell(_PROVE, path)


_KEEP = r"""h=$(nft -a -t -s list table inet aegir | sha256sum) || exit
mv -f -- "$1/candidate.nft" "$1/last-good.nft" && printf '%s\n' "${h%% *}" > "$1/live.sha256" && printf '%s\n' "${h%% *}"
"""


def keep_cmd(state_dir: str) -> Cmd:
    """Hash the live table, promote the candidate to last good, record and print the hash."""
    return shell(_KEEP, state_dir)


# --------------------------------------------------------------------------- state


@dataclass(frozen=True)
class State:
    """What the host holds: its template override, the last good ruleset, the live table's hash."""

    template: str | None
    last_good: str | None
    kept_hash: str | None
    live_hash: str

    @property
    def live(self) -> bool:
        """Is ``table inet aegir`` loaded at all?"""
        return self.live_hash != ABSENT

    @property
    def drifted(self) -> bool:
        """Was the live table changed since aegir's last apply (or is it missing)?"""
        return self.live_hash != (self.kept_hash or ABSENT)

    @property
    def status(self) -> str:
        if not self.live:
            return "not loaded"
        if self.kept_hash is None:
            return "loaded (not by aegir)"
        return "changed since last apply" if self.drifted else "in sync"


def parse_probe(stdout: str) -> State:
    """Read `probe_cmd` output."""
    parts = stdout.split(_RS)[1:]
    if len(parts) != 4:
        raise AegirError(f"unexpected firewall state probe output: {stdout[:200]!r}")

    def body(part: str) -> str | None:
        head, _, rest = part.partition("\n")
        return rest if head == "present" else None

    tpl, last, kept = (body(p) for p in parts[:3])
    words = parts[3].partition("\n")[2].split()
    live_hash = words[0] if words else ABSENT
    return State(tpl, last, kept.strip() if kept else None, live_hash)


def parse_listing(stdout: str) -> dict:
    """nft's JSON listing (`prove_cmd`), decoded."""
    try:
        return json.loads(stdout)
    except json.JSONDecodeError as exc:
        raise AegirError(f"cannot read nft's JSON listing: {exc}") from None


# --------------------------------------------------------------------------- apply


@dataclass(frozen=True)
class Applied:
    """What `apply` did: changed or not, the ruleset's line changes, how long it took."""

    changed: bool
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    seconds: float = 0.0
    reason: str = ""
    live_hash: str | None = None  # of the table now live, when changed


def diff(old: str | None, new: str, *, name: str = "ruleset") -> str:
    """A unified diff of the last good ruleset against `new` ('' when identical)."""
    return "".join(difflib.unified_diff((old or "").splitlines(True), new.splitlines(True),
                                        f"{name} (last good)", f"{name} (new)", n=2))


def changed_lines(old: str | None, new: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The lines added and removed between two rulesets, stripped (comments kept)."""
    before, after = (old or "").splitlines(), new.splitlines()
    sm = difflib.SequenceMatcher(a=before, b=after, autojunk=False)
    added: list[str] = []
    removed: list[str] = []
    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        if tag in ("delete", "replace"):
            removed += [ln.strip() for ln in before[i1:i2] if ln.strip()]
        if tag in ("insert", "replace"):
            added += [ln.strip() for ln in after[j1:j2] if ln.strip()]
    return tuple(added), tuple(removed)


def apply(hc: "HostContext", text: str, state: State, state_dir: str,
          ssh: Sequence[safety.Packet] | None = None) -> Applied:
    """Apply `text` on the host unless it is already live; raise and change nothing on any error.

    Steps: write the candidate, ``nft -c -f``; when `ssh` packets are given
    (a host's own template: aegir's is proven by its tests), load it in a
    scratch network namespace and prove every packet is accepted, refusing
    otherwise; ``nft -f`` (atomic); record the live hash and keep the candidate
    as the last good ruleset.
    """
    start = time.monotonic()
    if text == state.last_good and not state.drifted:
        return Applied(False, reason="nothing to do")
    candidate = f"{state_dir}/{CANDIDATE}"
    hc.run(write_cmd(state_dir, CANDIDATE, text))
    _nft(hc, check_cmd(candidate), candidate)
    if ssh is not None:
        listing = parse_listing(_nft(hc, prove_cmd(candidate), candidate))
        problems = safety.ssh_problems(safety.Ruleset.from_json(listing), ssh)
        if problems:
            more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
            raise RefusedError("refused: this ruleset could lock SSH out: " + "; ".join(problems[:3]) + more
                               + f"; nothing changed (rejected ruleset: {candidate})", host=hc.name)
    _nft(hc, apply_cmd(candidate), candidate)
    live_hash = hc.run(keep_cmd(state_dir)).stdout.strip()
    added, removed = changed_lines(state.last_good, text)
    why = "drifted" if text == state.last_good else "changed"
    return Applied(True, added, removed, time.monotonic() - start, reason=why, live_hash=live_hash)


def rollback(hc: "HostContext", state: State, state_dir: str) -> str:
    """Undo an apply: load the last good ruleset again, or drop aegir's table when there was none.

    `state` is what the host held before the apply. Returns what was done, for messages.
    """
    if state.last_good is None:
        hc.run(Cmd.of("nft", "delete", "table", *TABLE.split()), check=False)
        hc.run(Cmd.of("rm", "-f", "--", f"{state_dir}/{LAST_GOOD}", f"{state_dir}/live.sha256"))
        return "aegir's table is removed (there was no earlier ruleset)"
    candidate = f"{state_dir}/{CANDIDATE}"
    hc.run(write_cmd(state_dir, CANDIDATE, state.last_good))
    _nft(hc, apply_cmd(candidate), candidate)
    hc.run(keep_cmd(state_dir))
    return "the last good ruleset is live again"


def _nft(hc: "HostContext", cmd: Cmd, candidate: str) -> str:
    try:
        return hc.run(cmd).stdout
    except CommandError as exc:
        raise NftError(f"{exc.message}\n  (nothing changed: the live ruleset is the previous one; "
                       f"the rejected ruleset is {candidate})", host=hc.name) from None
