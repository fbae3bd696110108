"""nft commands and the atomic apply: check first, change nothing on error, keep the last good.

The host keeps its firewall state under ``FwSettings.state_dir``
(``<srv>/conf/aegir-fw`` by default):

- ``candidate-<token>.nft``: the ruleset one apply is loading (each apply its
  own; left there when nft rejects it);
- ``last-good.nft``: the last ruleset applied and verified (a fresh SSH login
  got in after it);
- ``live.sha256``: the hash of ``nft -a -s list table inet aegir`` (set
  elements included) right after that apply, which tells whether the live
  table was changed since: gone, recreated, edited, an element added by hand;
- ``ssh.verified``: the SSH settings (port, admin addresses and sources) that
  fresh login proved; `fw.watch` refuses to apply other ones;
- ``lock``: taken (flock) by every nft load and every record of the state.

`apply` refuses statements that reach beyond ``table inet aegir``, writes the
candidate, runs ``nft -c -f``, loads it in a scratch network namespace next
to the host's other tables and proves (`safety`) that SSH to the admin
addresses gets through the whole ruleset, then ``nft -f`` (one transaction: the
table is deleted and recreated atomically, so any error leaves the previous
ruleset in place), then the fresh login, then keeps it as the last good one.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aegir.errors import AegirError, CommandError, RefusedError
from aegir.fw import knock, safety
from aegir.sh import Cmd, shell, write_file_cmd

if TYPE_CHECKING:  # pragma: no cover
    from aegir.host import HostContext

TABLE = "inet aegir"
CANDIDATE = "candidate.nft"  # prefix: each apply writes its own candidate-<token>.nft
LAST_GOOD = "last-good.nft"
VERIFIED = "ssh.verified"
LOCK = "lock"
#: sha256 of an empty listing: the table is not there.
ABSENT = hashlib.sha256(b"").hexdigest()
_RS = "\x1e"
#: Hash the live table with its set elements: a hand-edited element is drift too.
_LIST = "nft -a -s list table inet aegir"
#: The terse listing (no elements, 3x cheaper on a big table): enough to tell that another load
#: replaced the table (its handle changes) between an apply and its record.
_TERSE = "nft -a -t -s list table inet aegir"


class NftError(AegirError):
    """nft refused a ruleset; the live ruleset is the previous one."""


# --------------------------------------------------------------------------- commands


def check_cmd(path: str) -> Cmd:
    """``nft -c -f PATH``: parse and validate against the kernel, change nothing."""
    return Cmd.of("nft", "-c", "-f", path)


def candidate_path(state_dir: str) -> str:
    """A candidate file of this apply's own: fw.apply and fw.watch never share one."""
    return f"{state_dir}/candidate-{uuid.uuid4().hex[:12]}.nft"


def write_cmd(path: str, text: str) -> Cmd:
    """Write `text` (sent on stdin) to `path` atomically (`sh.write_file_cmd`)."""
    return write_file_cmd(path, text)


_PROBE = rf"""for f in "$1" "$2/last-good.nft" "$2/live.sha256" "$2/{VERIFIED}"; do
  if [ -f "$f" ]; then printf '\036present\n'; cat -- "$f"; else printf '\036absent\n'; fi
done
printf '\036live\n'; {_LIST} 2>/dev/null | sha256sum
printf '\036listen\n'; ss -Hltnp 2>/dev/null || echo '?'
"""


def probe_cmd(template_path: str, state_dir: str) -> Cmd:
    """One round trip: the template override, last good ruleset, its hash, the SSH settings last
    verified by a fresh login, the live hash, the listening TCP sockets."""
    return shell(_PROBE, template_path, state_dir)


_PROVE = r"""rest=$(mktemp) || exit
trap 'rm -f -- "$rest"' EXIT
nft -s list ruleset > "$rest" || exit
unshare -n sh -c '
  nft -f "$1" >/dev/null || { echo "aegir: the ruleset does not load on its own" >&2; exit 3; }
  t=$(nft list tables | tr "\n" " ")
  if [ "$t" != "table inet aegir " ]; then
    echo "aegir: refused: the ruleset creates tables other than inet aegir: $t" >&2; exit 4
  fi
  nft flush ruleset
  nft -f "$2" >/dev/null || { echo "aegir: the host'"'"'s other tables do not load in a scratch namespace: the whole ruleset cannot be proved" >&2; exit 5; }
  nft -f "$1" >/dev/null || { echo "aegir: the ruleset does not load next to the host'"'"'s other tables" >&2; exit 6; }
  nft -s -j list ruleset
  printf "\036"
  if command -v python3 >/dev/null; then python3 -c "$7" "$3" "$4" "$5" "$6"; else echo "no python3"; fi
' sh "$1" "$rest" "$2" "$3" "$4" "$5" "$6"
"""


def prove_cmd(path: str, port: int = 22, admins: Sequence[str] = (), sources: Sequence[str] = ()) -> Cmd:
    """In a scratch network namespace (nothing live changes): load PATH alone and refuse any table but
    aegir's, then load the host's other tables and PATH, as they would be live; print the whole
    ruleset as nft's JSON, then ``\\x1e`` and the answer of real SSH connections from `sources` to
    `admins` (`knock.SCRIPT`), or ``no python3``."""
    return shell(_PROVE, path, str(port), " ".join(admins), " ".join(sources),
                 " ".join(map(str, knock.SOURCE_PORTS)), knock.SCRIPT)


_APPLY = rf"""exec 9>>"$2/{LOCK}" && flock 9 || exit
nft -f "$1" || exit
{_TERSE} | sha256sum
"""


def apply_cmd(path: str, state_dir: str) -> Cmd:
    """``nft -f PATH`` (one transaction, all or nothing) under the state folder's lock; prints the
    live table's terse hash right after (what `keep_cmd` compares)."""
    return shell(_APPLY, path, state_dir)


_KEEP = rf"""exec 9>>"$2/{LOCK}" && flock 9 || exit
t=$({_TERSE} | sha256sum) || exit
if [ "${{t%% *}}" != "$3" ]; then echo "the live table changed since this apply (another fw.apply or fw.watch?)" >&2; exit 3; fi
h=$({_LIST} | sha256sum) || exit
h=${{h%% *}}
mv -f -- "$1" "$2/last-good.nft" && printf '%s\n' "$h" > "$2/live.sha256" && printf '%s\n' "$4" > "$2/{VERIFIED}" && printf '%s\n' "$h"
"""


def keep_cmd(candidate: str, state_dir: str, live_hash: str, verified: str) -> Cmd:
    """After the checks passed: promote the candidate to last good, record the live hash and the SSH
    settings it was verified with; refuse if the live table is not the one this apply loaded."""
    return shell(_KEEP, candidate, state_dir, live_hash, verified)


_RESTORE = rf"""exec 9>>"$2/{LOCK}" && flock 9 || exit
if [ -n "$1" ]; then nft -f "$1" || exit; else nft delete table inet aegir || exit; fi
h=$({_LIST} 2>/dev/null | sha256sum) && h=${{h%% *}}
if [ -n "$1" ]; then printf '%s\n' "$h" > "$2/live.sha256"; rm -f -- "$1"
else rm -f -- "$2/last-good.nft" "$2/live.sha256" "$2/{VERIFIED}"; fi
"""


def restore_cmd(path: str | None, state_dir: str) -> Cmd:
    """Load PATH (the last good ruleset) again, or delete aegir's table when there is none; the exit
    code says whether nft did it."""
    return shell(_RESTORE, path or "", state_dir)


# --------------------------------------------------------------------------- state


@dataclass(frozen=True)
class State:
    """What the host holds: its template override, the last good ruleset, the live table's hash,
    the SSH settings last verified, the TCP ports listened on (None: unknown) and by whom."""

    template: str | None
    last_good: str | None
    kept_hash: str | None
    live_hash: str
    verified: str | None = None
    listeners: Mapping[int, frozenset[str]] | None = None

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


def parse_listeners(text: str) -> dict[int, frozenset[str]] | None:
    """``ss -Hltnp`` -> {port: process names}; None when ss could not answer."""
    if text.strip() == "?":
        return None
    found: dict[int, set[str]] = {}
    for line in text.splitlines():
        cols = line.split()
        if len(cols) < 4:
            continue
        port = cols[3].rpartition(":")[2]
        if not port.isascii() or not port.isdigit():
            continue
        names = found.setdefault(int(port), set())
        names.update(re.findall(r'\(\("([^"]+)"', line))
        names.update(re.findall(r'\),\("([^"]+)"', line))
    return {p: frozenset(n) for p, n in found.items()}


def parse_probe(stdout: str) -> State:
    """Read `probe_cmd` output."""
    parts = stdout.split(_RS)[1:]
    if len(parts) != 6:
        raise AegirError(f"unexpected firewall state probe output: {stdout[:200]!r}")

    def body(part: str) -> str | None:
        head, _, rest = part.partition("\n")
        return rest if head == "present" else None

    tpl, last, kept, verified = (body(p) for p in parts[:4])
    words = parts[4].partition("\n")[2].split()
    live_hash = words[0] if words else ABSENT
    return State(tpl, last, kept.strip() if kept else None, live_hash,
                 verified.strip() if verified else None, parse_listeners(parts[5].partition("\n")[2]))


def parse_ruleset_json(stdout: str) -> dict:
    """nft's JSON listing (`prove_cmd`), decoded."""
    try:
        return json.loads(stdout)
    except json.JSONDecodeError as exc:
        raise AegirError(f"cannot read nft's JSON listing: {exc}") from None


#: Statements a template may not write: they reach beyond ``table inet aegir`` (or load other files).
_FOREIGN = re.compile(r"^\s*(?:(?P<flush>flush\s+ruleset)|(?P<include>include)\b|(?P<destroy>destroy)\b"
                      r"|(?P<other>(?:add|create|delete|flush|insert|replace|reset|rename|list)\s+"
                      r"(?:table|chain|rule|set|map|element|flowtable|counter|quota|limit|ct|synproxy|secmark)"
                      r"\s+(?!inet\s+aegir\b)\S+)"
                      r"|(?P<table>table\s+(?!inet\s+aegir\b)\S+))", re.M)


def foreign_statements(text: str) -> list[str]:
    """The lines of a ruleset that touch something else than ``table inet aegir`` (``file:line: text``
    is up to the caller); comments are ignored."""
    found = []
    for n, line in enumerate(text.splitlines(), 1):
        code = line.split("#", 1)[0]
        for part in code.split(";"):
            if _FOREIGN.match(part):
                found.append(f"line {n}: {part.strip()}")
    return found


def ssh_fingerprint(port: int, admin: Mapping[int, Sequence[Any]], sources: Mapping[int, Sequence[Any]]) -> str:
    """What fw.apply's fresh login verified: the SSH port, admin addresses and sources, hashed."""
    doc = json.dumps({"port": port, "admin": {v: sorted(map(str, admin.get(v) or ())) for v in (4, 6)},
                      "sources": {v: sorted(map(str, sources.get(v) or ())) for v in (4, 6)}}, sort_keys=True)
    return hashlib.sha256(doc.encode()).hexdigest()


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


def apply(hc: "HostContext", text: str, state: State, state_dir: str, ssh: Sequence[safety.Packet],
          verified: str, fresh_login: Callable[[], None] | None = None) -> Applied:
    """Apply `text` on the host unless it is already live; raise and change nothing on any error.

    Steps: refuse statements reaching beyond aegir's table; write this apply's
    own candidate, ``nft -c -f``; load it in a scratch network namespace next
    to the host's other tables and prove every `ssh` packet is accepted by the
    whole ruleset, refusing otherwise; ``nft -f`` (atomic, under the state
    folder's lock); `fresh_login` (a new SSH connection: on failure the last
    good ruleset is put back); only then keep it as the last good ruleset, with
    the live hash and the SSH settings (`verified`) the login proved.
    """
    start = time.monotonic()
    if text == state.last_good and not state.drifted and state.verified == verified:
        return Applied(False, reason="nothing to do")
    foreign = foreign_statements(text)
    if foreign:
        raise RefusedError("refused: the ruleset touches more than table inet aegir (" + "; ".join(foreign[:3])
                           + "); nothing changed", host=hc.name)
    candidate = candidate_path(state_dir)
    hc.run(write_cmd(candidate, text))
    _nft(hc, check_cmd(candidate), candidate)
    port = ssh[0].dport if ssh and ssh[0].dport else 22
    admins = sorted({str(p.daddr) for p in ssh if not p.outbound and not isinstance(p.daddr, safety.Peer)})
    peers = {p.saddr.version: p.saddr.nets for p in ssh if isinstance(p.saddr, safety.Peer)}
    tried = knock.sources(peers, {})
    listing_text, _, answer = _nft(hc, prove_cmd(candidate, port, admins, tried), candidate).partition(_RS)
    listing = parse_ruleset_json(listing_text)
    # the kernel's answer first (real packets), then the evaluator's, which also sees runtime sets and
    # sessions older than the ruleset
    problems = [] if answer.strip() == "no python3" else knock.problems(answer, port)
    problems += safety.ssh_problems(safety.Ruleset.from_json(listing), ssh)
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise RefusedError("refused: this ruleset could lock SSH out: " + "; ".join(problems[:3]) + more
                           + f"; nothing changed (rejected ruleset: {candidate})", host=hc.name)
    out = _nft(hc, apply_cmd(candidate, state_dir), candidate).split()
    loaded = out[0] if out else ABSENT
    if fresh_login is not None:
        try:
            fresh_login()
        except AegirError as exc:
            undone = rollback(hc, state, state_dir)
            hc.run(Cmd.of("rm", "-f", "--", candidate), check=False)
            raise RefusedError(f"rolled back: after the apply a new SSH connection failed ({exc.message}); {undone}",
                               host=hc.name) from None
    try:
        live_hash = hc.run(keep_cmd(candidate, state_dir, loaded, verified)).stdout.strip()
    except CommandError as exc:
        raise AegirError(f"applied, but not recorded as the last good ruleset: {exc.message}",
                         host=hc.name) from None
    added, removed = changed_lines(state.last_good, text)
    why = "drifted" if text == state.last_good and state.drifted else \
        "changed" if text != state.last_good else "SSH settings verified"
    return Applied(True, added, removed, time.monotonic() - start, reason=why, live_hash=live_hash)


def rollback(hc: "HostContext", state: State, state_dir: str) -> str:
    """Undo an apply: load the last good ruleset again, or drop aegir's table when there was none.

    `state` is what the host held before the apply. Returns what was done, for
    messages; raises `AegirError` saying the live ruleset is the unverified one
    when nft could not undo it.
    """
    path = None
    if state.last_good is not None:
        path = f"{state_dir}/rollback-{uuid.uuid4().hex[:12]}.nft"
        hc.run(write_cmd(path, state.last_good))
    try:
        hc.run(restore_cmd(path, state_dir))
    except CommandError as exc:
        undo = "loading the last good ruleset" if path else "deleting table inet aegir"
        raise AegirError(f"the apply failed its check and {undo} failed too ({exc.message}): THE LIVE RULESET "
                         "IS THE NEW, UNVERIFIED ONE; fix it through the running session", host=hc.name) from None
    if path is None:
        return "aegir's table is removed (there was no earlier ruleset)"
    return "the last good ruleset is live again"


def _nft(hc: "HostContext", cmd: Cmd, candidate: str) -> str:
    try:
        return hc.run(cmd).stdout
    except CommandError as exc:
        raise NftError(f"{exc.message}\n  (nothing changed: the live ruleset is the previous one; "
                       f"the rejected ruleset is {candidate})", host=hc.name) from None
