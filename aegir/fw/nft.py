"""The nft commands of an atomic apply, as data, and the firewall state they keep on the host, parsed.

The host keeps its firewall state under ``FwSettings.state_dir``
(``<srv>/conf/aegir-fw`` by default):

- ``candidate-<token>.nft``: the ruleset one apply is loading (each apply its
  own; left there when nft rejects it);
- ``last-good.nft``: the last ruleset applied and verified (a fresh SSH login
  got in after it);
- ``live.sha256``: the hash of the live table (`_LIVE`: its terse listing with
  handles and every set's elements, read over netlink) right after that apply,
  which tells whether the live table was changed since: gone, recreated,
  edited, an element added by hand;
- ``ssh.verified``: the SSH settings (port, admin addresses and sources) that
  fresh login proved; `fw.watch` refuses to apply other ones;
- ``unverified``: written (atomically, under the lock) before ``nft -f`` and
  again right after it with the hash of the table it loaded; removed once a
  fresh login verified that table and it is recorded (or it was rolled back).
  While the live hash is the one it names, the live ruleset is new and
  unverified, whatever happened to the session that loaded it;
- ``lock``: taken (flock) by every nft load, every record of the state and
  every clean-up of the files interrupted runs leave (`LEFTOVERS`).

Pure: the commands as data (`aegir.sh.Cmd`, tested as exact lines), the state
they read parsed (`parse_probe`), what a failure left live (`after_failure`),
the ruleset diffs. The apply that runs them in order (write the candidate,
the proof in a scratch network namespace, ``nft -f`` under the
lock between two writes of the marker, the fresh login, the record) is
`aegir.fw.steps.apply`.
"""

from __future__ import annotations

import base64
import dataclasses
import difflib
import gzip
import hashlib
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aegir.errors import AegirError
from aegir.fw import knock
from aegir.sh import Boundary, Cmd, shell

TABLE = "inet aegir"
CANDIDATE = "candidate.nft"  # prefix: each apply writes its own candidate-<token>.nft
LAST_GOOD = "last-good.nft"
VERIFIED = "ssh.verified"
STRUCTURE = "structure.sha256"
UNVERIFIED = "unverified"
LOCK = "lock"
#: Minutes after which a file of an apply's own kinds (`LEFTOVERS`) is left over from an interrupted run: a
#: running apply writes its candidate, checks and loads it within seconds (or its own deadlines).
LEFTOVER_MINUTES = 10
#: ``find`` tests naming those kinds: candidates, rollback files, and the temporary files of their atomic writes.
LEFTOVERS = (r"\( -name 'candidate-*.nft' -o -name 'candidate-*.nft.aegir-new' -o -name 'rollback-*.nft' "
             r"-o -name 'rollback-*.nft.aegir-new' -o -name 'unverified.aegir-new' \)")
#: sha256 of an empty listing: the table is not there.
ABSENT = hashlib.sha256(b"").hexdigest()
#: Between the proof's two answers: nft's JSON escapes every control character, so its listing holds none.
_RS = "\x1e"
#: The terse listing (no elements): enough to tell that another load replaced the table (its handle
#: changes) between an apply and its record. Cut from the terse listing of the whole ruleset, which
#: fetches no set element at all (``list table -t`` still does: 0.4 s of CPU at 40,000 elements).
_TERSE = "nft -a -t -s list ruleset | awk '/^table inet aegir /,/^}/'"
#: The hash of every set's elements in ``table inet aegir`` (anonymous ones too), read from the kernel over
#: netlink (``NFT_MSG_GETSETELEM`` dumps) by the host's ``python3``: each set's name, then its elements' own
#: attributes (key, key end, data, flags, timeout, comment, object), sorted; without the expiration and the
#: per-element expressions (counters: state, as ``nft -s`` leaves out). nft's listing of the same elements
#: costs 1 s of CPU at 45,000 elements, printing each; this, 0.1 s. Prints one line or nothing (exit 1: no
#: such table, no python3, an error; a dump torn by a concurrent change is asked again). An element with none
#: of those left out and no flag in its attributes' types is hashed as the kernel sent it (``own``: the same
#: bytes its attributes written again would be, twice as fast). No single quote: it is quoted in `_LIVE`.
ELEMENTS_HASH = r"""
import hashlib, socket, struct, sys
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)
s.bind((0, 0))
table = b"aegir\0"
unpack = struct.unpack_from
def attr(t, v):
    return struct.pack("=HH", 4 + len(v), t) + v + bytes(-len(v) % 4)
def attrs(b):
    o, n = 0, len(b)
    while o + 4 <= n:
        ln, t = unpack("=HH", b, o)
        yield t & 0x3fff, b[o + 4:o + ln]
        o += (ln + 3) & ~3
def dump(msg, *a):
    for _ in range(5):
        body = b"\1\0\0\0" + b"".join(a)
        s.send(struct.pack("=IHHII", 16 + len(body), 2560 | msg, 0x301, msg, 0) + body)
        out, done, torn = [], False, False
        while not done:
            d = s.recv(1 << 20)
            o = 0
            while o < len(d):
                ln, ty, fl = unpack("=IHH", d, o)
                if ty == 2 and unpack("=i", d, o + 16)[0]:
                    sys.exit(1)
                if ty in (2, 3):
                    done = True
                    break
                torn = torn or bool(fl & 16)
                out.append(d[o + 20:o + ln])
                o += (ln + 3) & ~3
        if not torn:
            return out
    sys.exit(1)
def own(e):
    o, n = 0, len(e)
    while o + 4 <= n:
        ln, t = unpack("=HH", e, o)
        if ln < 4 or t & 0xc000 or t in (5, 7, 11):
            break
        o += (ln + 3) & ~3
    else:
        if o == n:
            return e
    return b"".join(attr(t, v) for t, v in attrs(e) if t not in (5, 7, 11))
def elements(b):
    out, o, n = [], 0, len(b)
    while o + 4 <= n:
        ln = unpack("=H", b, o)[0]
        out.append(own(b[o + 4:o + ln]))
        o += (ln + 3) & ~3
    return out
h = hashlib.sha256()
for name in sorted(v for m in dump(10, attr(1, table)) for t, v in attrs(m) if t == 2):
    elems = sorted(e for m in dump(13, attr(1, table), attr(2, name)) for t, v in attrs(m) if t == 3
                   for e in elements(v))
    h.update(attr(1, name) + struct.pack("=I", len(elems)) + b"".join(attr(2, e) for e in elems))
print("elements", h.hexdigest())
"""
#: Shell: the host's own ``python3`` (Debian's), else the first on the PATH; run ``-I -S`` (no user site, no
#: environment, no site module: 10 ms to start, not 20 to 90 with a pyenv shim on the PATH).
_PYTHON = 'py=python3; [ -x /usr/bin/python3 ] && py=/usr/bin/python3'
#: Shell: ``live``, what the live hash hashes: the table's stateless terse listing with handles (`_TERSE`:
#: its chains, rules and set definitions; the same ruleset loaded again by hand is another table) and its
#: elements (`ELEMENTS_HASH`; nft's own listing of the table where the host has no python3). Nothing when
#: the table is absent (`ABSENT`). A hand-edited element is drift too.
_LIVE = (f"""live() {{ {_TERSE}; {_PYTHON}; """
         f""""$py" -I -S -c '{ELEMENTS_HASH}' 2>/dev/null || nft -s list table inet aegir 2>/dev/null; }}""")
#: The structure of the whole ruleset (every table, chain, rule and set definition; no named set's elements,
#: no handles): what the proof proved, unchanged by an element-only change (`elements_cmd`).
_STRUCTURE = "nft -t -s list ruleset"


# --------------------------------------------------------------------------- commands


def check_cmd(path: str) -> Cmd:
    """``nft -c -f PATH``: parse and validate against the kernel, change nothing."""
    return Cmd.of("nft", "-c", "-f", path)


def candidate_path(state_dir: str) -> str:
    """A candidate file of this apply's own: fw.apply and fw.watch never share one."""
    return f"{state_dir}/candidate-{uuid.uuid4().hex[:12]}.nft"


def packed(text: str) -> str:
    """`text` gzipped (level 1) in base64, as `write_cmd`, `elements_cmd` and `prove_cmd` send it: a seventh of
    a ruleset's size (2.6 MB at 5,000 containers x 3 ports: 0.38 MB, 20 ms to pack). Over SSH that is the
    bytes sent; locally, Invoke feeds stdin 64 KiB per 10 ms (0.43 s for the whole ruleset, 0.06 s packed)."""
    return base64.b64encode(gzip.compress(text.encode(), 1, mtime=0)).decode("ascii")


#: Shell: `packed` stdin, unpacked. ``base64`` (coreutils) and ``gzip`` are on every Debian host (required).
_UNPACK = "base64 -d | gzip -dc"

_WRITE = f"""set -e
mkdir -p -- "$(dirname -- "$1")"
{_UNPACK} > "$1.aegir-new"
chmod 0644 "$1.aegir-new"
mv -f -- "$1.aegir-new" "$1"
"""


def write_cmd(path: str, text: str) -> Cmd:
    """Write `text` (sent `packed` on stdin) to `path` atomically, mode 0644, creating its folder (as
    `sh.write_file_cmd` does)."""
    return Cmd(shell(_WRITE, path).argv, stdin=packed(text))


#: Shell: the files interrupted runs left in the state folder $1 (`LEFTOVERS`, older than
#: `LEFTOVER_MINUTES`), but never the candidate the ``unverified`` marker names: it is the text of a ruleset
#: that may be live. Followed by the action (``-printf``, ``-delete``).
_FIND_LEFTOVERS = (rf"""keep=$(sed -n 's/^candidate //p' "$1/{UNVERIFIED}" 2>/dev/null)
find "$1" -maxdepth 1 -type f {LEFTOVERS} -mmin +{LEFTOVER_MINUTES} ! -name "${{keep##*/}}" """)

_PROBE = rf"""{_LIVE}
for f in "$1" "$2/last-good.nft" "$2/live.sha256" "$2/{VERIFIED}" "$2/{UNVERIFIED}"; do
  if [ ! -f "$f" ]; then printf '%babsent\n' "$3"
  elif [ "$f" = "$2/last-good.nft" ]; then printf '%bpacked\n' "$3"; gzip -1 -c -- "$f" | base64
  else printf '%bpresent\n' "$3"; cat -- "$f"; fi
done
printf '%blive\n' "$3"; live 2>/dev/null | sha256sum
printf '%blisten\n' "$3"; ss -Hltnp 2>/dev/null || echo '?'
printf '%bleftovers\n' "$3"; leftovers() {{ {_FIND_LEFTOVERS}-printf '%f\n' 2>/dev/null; }}; leftovers "$2" || :
"""


#: Waits (a shared lock, 30 s at most) for a load or record under way to end, so that what it reads is
#: what that load left: the truth after a failure.
_SETTLED = f'exec 9>>"$2/{LOCK}" && flock -s -w 30 9 || exit\n'
#: Seconds the settled probe may take in all (the wait for the lock included): a host that went silent
#: must not hang the row that says so.
SETTLED_TIMEOUT = 40


def probe_cmd(template_path: str, state_dir: str, boundary: Boundary, *, settled: bool = False) -> Cmd:
    """One round trip: the template override, last good ruleset (gzipped in base64: at 5,000 containers
    Invoke reads its 2.6 MB in 0.8 s, packed in 0.03 s), its hash, the SSH settings last
    verified by a fresh login, the ``unverified`` marker, the live hash, the listening TCP sockets, the
    files interrupted runs left, each part after `boundary` (the files and ``ss``'s process names are
    the host's data: any fixed separator could be among them). `settled`: first wait until no load or
    record is under way (at most `SETTLED_TIMEOUT` seconds in all)."""
    if settled:
        return dataclasses.replace(shell(_SETTLED + _PROBE, template_path, state_dir, boundary.arg),
                                   timeout=SETTLED_TIMEOUT)
    return shell(_PROBE, template_path, state_dir, boundary.arg)


_SWEEP = rf"""exec 9>>"$1/{LOCK}" && flock 9 || exit
sweep() {{ {_FIND_LEFTOVERS}-print -delete; }}
sweep "$1" | wc -l
"""


def sweep_cmd(state_dir: str) -> Cmd:
    """Under the lock: delete the files interrupted runs left (see `probe_cmd`); prints how many."""
    return shell(_SWEEP, state_dir)


#: The proof's ``others``: each table but aegir's, listed (stateless). Their names come from the terse listing of
#: the whole ruleset, which fetches no set element (``nft list tables`` fetches them all: 0.35 s of CPU at
#: 45,000 elements, twice per proof). nft's errors about the proof's text name the candidate ($1): its lines
#: are the candidate's (`aegir.fw.plan.proof_text` blanks lines, it moves none).
_PROVE = r"""rest=$(mktemp) || exit
proved=$(mktemp) || exit
trap 'rm -f -- "$rest" "$proved" "$proved.err"' EXIT
base64 -d | gzip -dc > "$proved" || exit
others() { nft -t -s list ruleset | sed -n "s/^table \(.*\) {\$/\1/p" | while read -r f n; do
  [ "$f $n" = "inet aegir" ] || nft -s list table "$f" "$n" || exit 1; done; }
others > "$rest" || exit
unshare -n sh -c '
  others() { nft -t -s list ruleset | sed -n "s/^table \(.*\) {\$/\1/p" | while read -r f n; do
    [ "$f $n" = "inet aegir" ] || nft -s list table "$f" "$n" || exit 1; done; }
  nft -f "$2" >/dev/null || { echo "aegir: the host'"'"'s other tables do not load in a scratch namespace: the whole ruleset cannot be proved" >&2; exit 5; }
  was=$(others | sha256sum) || exit 5
  nft -f "$8" >/dev/null 2>"$8.err" || { p="$8" c="$1" awk "$9" "$8.err" >&2
    echo "aegir: the ruleset does not load next to the host'"'"'s other tables" >&2; exit 65; }
  now=$(others | sha256sum) || exit 6
  if [ "$now" != "$was" ]; then
    t=$(nft -t -s list ruleset | sed -n "s/^table \(.*\) {\$/table \1/p" | tr "\n" " ")
    echo "aegir: refused: the ruleset creates or changes tables other than inet aegir: $t" >&2; exit 4
  fi
  py=python3; [ -x /usr/bin/python3 ] && py=/usr/bin/python3
  if command -v "$py" >/dev/null; then k=$("$py" -I -S -c "$7" "$3" "$4" "$5" "$6") || exit; else k="no python3"; fi
  nft -s -j list ruleset
  printf "\036%s\n" "$k"
' sh "$1" "$rest" "$2" "$3" "$4" "$5" "$6" "$proved" "$7"
"""
#: awk: nft's words about the proof's text ($p), about the candidate ($c) instead: each line that starts with
#: ``$p:`` starts with ``$c:`` (paths from the environment: awk reads no escape in them, unlike ``sed s||``).
_RENAME = 'index($0, ENVIRON["p"] ":") == 1 { $0 = ENVIRON["c"] substr($0, length(ENVIRON["p"]) + 1) } { print }'


#: Exit code of `prove_cmd` when nft refuses to load the candidate (nft's own words on stderr): nothing live
#: changed, the proof runs in a scratch namespace.
NOT_LOADED = 65


def prove_cmd(path: str, text: str, port: int = 22, admins: Sequence[str] = (), sources: Sequence[str] = ()) -> Cmd:
    """In a scratch network namespace (nothing live changes): load the host's other tables (every table
    but aegir's, which the candidate PATH replaces), then `text` (sent `packed` on stdin; nft's errors name
    PATH), as they would be live, and refuse it if the other tables are not the same after it (a table of
    its own, or a change to theirs); knock with real SSH connections from `sources` to `admins`
    (`knock.SCRIPT`; ``no python3`` without it); print the whole ruleset as nft's JSON, ``\\x1e`` and the
    knock's answer.

    `text` is `aegir.fw.plan.proof_text`: the candidate without the container-set elements the model's check
    accepts. What it leaves out changes no answer: each element passed the check the element-only path
    applies to the elements it adds, which no SSH packet to an admin address can match (a DNAT key on a
    service address, a container's address); and it spares what makes a big ruleset slow (at 45,000
    elements: 0.4 s of nft's CPU to load them here, 1.1 s to list them, as long again in the evaluator).
    nft loads them live with the rest (`apply_cmd`: one transaction; what it refuses there changes nothing)."""
    return dataclasses.replace(shell(_PROVE, path, str(port), " ".join(admins), " ".join(sources),
                                     " ".join(map(str, knock.SOURCE_PORTS)), knock.SCRIPT, _RENAME),
                               stdin=packed(text))


#: Shell: write $2 (text) to the file $1 atomically (a rename). Through cat: dash's printf says "I/O error"
#: for any failed write, cat says why (a full /srv: "No space left on device").
_PUT = """put() { printf '%s\\n' "$2" | cat > "$1.aegir-new" && mv -f -- "$1.aegir-new" "$1"; }"""

#: From the lock on, the session may die at any time: hang-ups and broken pipes are ignored until the
#: marker says what nft did; only then is anything printed.
_APPLY = rf"""trap '' HUP PIPE
exec 9>>"$2/{LOCK}" && flock 9 || exit
{_PUT}
{_LIVE}
m="$2/{UNVERIFIED}"
was=$(cat -- "$m" 2>/dev/null)
old=$(printf '%s\n' "$was" | sed -n 's/^candidate //p')
put "$m" "candidate $1
before $3" || exit
nft -f "$1" || {{ rc=$?; if [ -n "$was" ]; then put "$m" "$was"; else rm -f -- "$m"; fi; exit $rc; }}
h=$(live | sha256sum) && h=${{h%% *}} && put "$m" "candidate $1
before $3
loaded $h" || exit
t=$({_TERSE} | sha256sum) || exit
n=0
if [ -n "$old" ] && [ "$old" != "$1" ] && [ "$old" = "$2/${{old##*/}}" ] && [ -f "$old" ]; then
  case "${{old##*/}}" in candidate-*.nft) rm -f -- "$old" && n=1;; esac
fi
sweep() {{ {_FIND_LEFTOVERS}-print -delete; }}
n=$((n + $(sweep "$2" | wc -l)))
printf '%s %s %s\n' "${{t%% *}}" "$h" "$n"
"""


def apply_cmd(path: str, state_dir: str, before: str = ABSENT) -> Cmd:
    """``nft -f PATH`` (one transaction, all or nothing) under the state folder's lock, between two
    writes of the ``unverified`` marker (before: PATH and the live hash `before` it; after: the hash of
    the table loaded); then deletes the files interrupted runs left (the candidate of an earlier
    cut-off apply, now replaced, too). Prints the live table's terse hash (what `keep_cmd` compares),
    its full hash and how many files were deleted."""
    return shell(_APPLY, path, state_dir, before)


_KEEP = rf"""exec 9>>"$2/{LOCK}" && flock 9 || exit
{_PUT}
t=$({_TERSE} | sha256sum) || exit
if [ "${{t%% *}}" != "$3" ]; then echo "the live table changed since this apply (another fw.apply or fw.watch?)" >&2; exit 3; fi
h=$5
s=$({_STRUCTURE} | sha256sum) || exit
mv -f -- "$1" "$2/last-good.nft" && put "$2/{VERIFIED}" "$4" && put "$2/{STRUCTURE}" "${{s%% *}}" \
  && put "$2/live.sha256" "$h" || exit
rm -f -- "$2/{UNVERIFIED}"
printf '%s\n' "$h"
"""


def keep_cmd(candidate: str, state_dir: str, live_hash: str, verified: str, loaded: str) -> Cmd:
    """After the checks passed: promote the candidate to last good, record the SSH settings it was
    verified with, the structure of the whole ruleset it was proved in (`STRUCTURE`) and `loaded`, the
    full hash `apply_cmd` printed, as the live hash (last: that is what makes it recorded; not listed
    again: an element added by hand since shows as drift), drop the ``unverified`` marker; refuse if the
    live table is not the one this apply loaded (its terse hash is not `live_hash`)."""
    return shell(_KEEP, candidate, state_dir, live_hash, verified, loaded)


_RESTORE = rf"""exec 9>>"$2/{LOCK}" && flock 9 || exit
{_PUT}
{_LIVE}
if [ -n "$1" ]; then nft -f "$1" || exit; else nft delete table inet aegir || exit; fi
h=$(live 2>/dev/null | sha256sum) && h=${{h%% *}}
if [ -n "$1" ]; then put "$2/live.sha256" "$h"; rm -f -- "$1"
else rm -f -- "$2/last-good.nft" "$2/live.sha256" "$2/{VERIFIED}"; fi
rm -f -- "$2/{UNVERIFIED}" "$2/{STRUCTURE}"
"""


def restore_cmd(path: str | None, state_dir: str) -> Cmd:
    """Load PATH (the last good ruleset) again, or delete aegir's table when there is none; the exit
    code says whether nft did it."""
    return shell(_RESTORE, path or "", state_dir)


#: Exit code of `elements_cmd` when the host is not the one the change was planned against: nothing changed,
#: the full path decides.
NOT_ELEMENTS = 75

_ELEMENTS = rf"""trap '' HUP PIPE
e=$(mktemp) || exit
trap 'rm -f -- "$e" "$1"' EXIT
{_UNPACK} | awk -v b="$3" -v e="$e" -v c="$1" 'f {{ print > c; next }} $0 == b {{ f = 1; next }} {{ print > e }}' || exit
exec 9>>"$2/{LOCK}" && flock 9 || exit
{_PUT}
{_LIVE}
no() {{ echo "aegir: not element-only: $1" >&2; exit {NOT_ELEMENTS}; }}
[ -e "$2/{UNVERIFIED}" ] && no "an unverified load is live"
h=$(live | sha256sum) || exit
[ "${{h%% *}}" = "$(cat -- "$2/live.sha256" 2>/dev/null)" ] || no "the live table changed since the last apply"
s=$({_STRUCTURE} | sha256sum) || exit
[ "${{s%% *}}" = "$(cat -- "$2/{STRUCTURE}" 2>/dev/null)" ] || no "the ruleset's structure (chains, sets, the host's other tables) is not the one last proved"
nft -f "$e" || exit
h=$(live | sha256sum) && h=${{h%% *}} && mv -f -- "$1" "$2/last-good.nft" && put "$2/live.sha256" "$h" || exit
printf '%s
' "$h"
"""


def elements_cmd(candidate: str, state_dir: str, script: str, text: str) -> Cmd:
    """The element-only apply, in one round trip: `script` (element adds and deletes) and `text` (the
    new ruleset, ending in a newline) arrive on stdin (`packed`), split at a line no rendered ruleset holds (a
    fresh `Boundary`), `text` as `candidate`. Then, under the lock: if no unverified load is live, the
    live table is the one last recorded and the whole ruleset's structure the one last proved (else
    exit `NOT_ELEMENTS`, nothing changed), ``nft -f`` `script` (one transaction), then record
    `candidate` as the last good ruleset and the live hash; prints that hash. The SSH settings
    verified and the structure stay: an element of a container set changes neither."""
    assert text.endswith("\n") and script.endswith("\n"), "awk writes whole lines"
    b = Boundary().text
    return dataclasses.replace(shell(_ELEMENTS, candidate, state_dir, b), stdin=packed(f"{script}{b}\n{text}"))


# --------------------------------------------------------------------------- state


#: What fw.status, fw.diff and an apply's row say of a ruleset loaded by an apply that no fresh login checked.
UNVERIFIED_LIVE = "new ruleset live and unverified"


@dataclass(frozen=True)
class Marker:
    """The ``unverified`` marker of a load: its candidate file, the live hash before it, and the hash of the
    table it loaded (None: the load had not returned when the marker was last written)."""

    candidate: str
    before: str
    loaded: str | None = None


def parse_marker(text: str | None) -> Marker | None:
    """The marker's ``key value`` lines (None: no marker)."""
    if text is None:
        return None
    fields = {k: v.strip() for k, _, v in (ln.partition(" ") for ln in text.splitlines()) if k}
    return Marker(fields.get("candidate", ""), fields.get("before", ""), fields.get("loaded") or None)


@dataclass(frozen=True)
class State:
    """What the host holds: its template override, the last good ruleset, the live table's hash,
    the SSH settings last verified, the TCP ports listened on (None: unknown) and by whom, the
    ``unverified`` marker of a load no fresh login checked, the files interrupted runs left."""

    template: str | None
    last_good: str | None
    kept_hash: str | None
    live_hash: str
    verified: str | None = None
    listeners: Mapping[int, frozenset[str]] | None = None
    marker: Marker | None = None
    leftovers: tuple[str, ...] = ()

    @property
    def live(self) -> bool:
        """Is ``table inet aegir`` loaded at all?"""
        return self.live_hash != ABSENT

    @property
    def drifted(self) -> bool:
        """Was the live table changed since aegir's last apply (or is it missing)?"""
        return self.live_hash != (self.kept_hash or ABSENT)

    @property
    def unverified(self) -> bool:
        """Is the live table one an apply loaded and never recorded (no fresh login checked it)?

        So when the marker's loaded hash is live; or, when the load was cut off before the marker got
        that hash, when the live table is no longer the one before it.
        """
        m = self.marker
        if m is None or not self.live or not self.drifted:
            return False
        return self.live_hash == m.loaded if m.loaded else self.live_hash != m.before

    @property
    def status(self) -> str:
        if self.unverified:
            return UNVERIFIED_LIVE
        if not self.live:
            return "not loaded"
        if self.kept_hash is None:
            return "loaded (not by aegir)"
        return "changed since last apply" if self.drifted else "in sync"


def after_failure(now: State, before: State, text: str, candidate: str) -> tuple[str, bool | None]:
    """What the host holds after a step failed once nft loaded `candidate` (holding `text`) in the scratch
    namespace: `now` is its state read again once no load is under way, `before` what it held before the
    apply. A sentence for the operator, and whether this apply's ruleset is live (None: neither it nor the
    previous one)."""
    if now.unverified and now.marker is not None and now.marker.candidate == candidate:
        return (f"{UNVERIFIED_LIVE} (no fresh login checked it and it is not the last good one); run fw.apply "
                "again to check and record it"), True
    if now.live_hash == before.live_hash:
        return "nothing changed: the live ruleset is the previous one", False
    if not now.drifted and now.last_good == text:
        return "it was recorded all the same: the new ruleset is live and the last good one", True
    if not now.drifted:
        return "the last good ruleset is live", False
    return (f"the live table changed, but not to this apply's ruleset (another fw.apply or fw.watch?): "
            f"it is {now.status}"), None


def parse_listeners(text: str) -> dict[int, frozenset[str]] | None:
    """``ss -Hltnp`` -> {port: process names}; None when ss could not answer."""
    if text.strip() == "?":
        return None
    found: dict[int, set[str]] = {}
    for line in text.split("\n"):  # not splitlines(): it also cuts at \x1c-\x1e, which a process name may hold
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


def parse_probe(stdout: str, boundary: Boundary) -> State:
    """Read the output of `probe_cmd` given `boundary`."""
    parts = boundary.split(stdout)[1:]
    if len(parts) != 8:
        raise AegirError(f"unexpected firewall state probe output: {stdout[:200]!r}")

    def body(part: str) -> str | None:
        head, _, rest = part.partition("\n")
        if head == "packed":  # the last good ruleset, gzipped in base64: a seventh of the bytes to read
            try:
                return gzip.decompress(base64.b64decode(rest)).decode("utf-8", "replace")
            except (ValueError, OSError, EOFError) as exc:
                raise AegirError(f"unexpected firewall state probe output: the last good ruleset: {exc}") from None
        return rest if head == "present" else None

    tpl, last, kept, verified, marker = (body(p) for p in parts[:5])
    words = parts[5].partition("\n")[2].split()
    live_hash = words[0] if words else ABSENT
    return State(tpl, last, kept.strip() if kept else None, live_hash,
                 verified.strip() if verified else None, parse_listeners(parts[6].partition("\n")[2]),
                 parse_marker(marker), tuple(ln for ln in parts[7].partition("\n")[2].splitlines() if ln))


def parse_ruleset_json(stdout: str) -> dict:
    """nft's JSON listing (`prove_cmd`), decoded."""
    try:
        return json.loads(stdout)
    except json.JSONDecodeError as exc:
        raise AegirError(f"cannot read nft's JSON listing: {exc}") from None


def parse_proof(stdout: str) -> tuple[dict, str]:
    """`prove_cmd`'s output: the whole ruleset as nft's JSON, decoded, and the knock's answer."""
    listing, _, answer = stdout.partition(_RS)
    return parse_ruleset_json(listing), answer


#: Statements a template may not write: they reach beyond ``table inet aegir`` (or load other files).
_FOREIGN = re.compile(r"^\s*(?:(?P<flush>flush\s+ruleset)|(?P<include>include)\b|(?P<destroy>destroy)\b"
                      r"|(?P<other>(?:add|create|delete|flush|insert|replace|reset|rename|list)\s+"
                      r"(?:table|chain|rule|set|map|element|flowtable|counter|quota|limit|ct|synproxy|secmark)"
                      r"\s+(?!inet\s+aegir\b)\S+)"
                      r"|(?P<table>table\s+(?!inet\s+aegir\b)\S+))", re.M)


#: A word every `_FOREIGN` match holds (its first): a line without any cannot match.
_VERBS = re.compile(r"flush|include|destroy|add|create|delete|insert|replace|reset|rename|list|table")


def foreign_statements(text: str) -> list[str]:
    """The lines of a ruleset that touch something else than ``table inet aegir`` (``file:line: text``
    is up to the caller); comments are ignored."""
    found = []
    for n, line in enumerate(text.splitlines(), 1):
        if not _VERBS.search(line):
            continue  # no word a foreign statement starts with (an element line): no need to split it
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


# --------------------------------------------------------------------------- diffs


def diff(old: str | None, new: str, *, name: str = "ruleset") -> str:
    """A unified diff of the last good ruleset against `new` ('' when identical)."""
    return "".join(difflib.unified_diff((old or "").splitlines(True), new.splitlines(True),
                                        f"{name} (last good)", f"{name} (new)", n=2))


def _walked(before: list[str], after: list[str]) -> tuple[list[str], list[str]] | None:
    """The lines added and removed between two line lists where no line moved, in one walk: a line missing
    from the other side is added or removed, equal lines are kept. None at the first pair of unequal lines
    that both occur on the other side: a move, or a repeated line, where only a real diff can tell.
    Elements only (a container started at 5,000: 30,000 lines between the first change and the last):
    0.02 s, where `difflib` took 0.2 s."""
    old, new = set(before), set(after)
    added: list[str] = []
    removed: list[str] = []
    i = j = 0
    while i < len(before) and j < len(after):
        if before[i] == after[j]:
            i, j = i + 1, j + 1
        elif before[i] not in new:
            removed.append(before[i])
            i += 1
        elif after[j] not in old:
            added.append(after[j])
            j += 1
        else:
            return None
    return added + after[j:], removed + before[i:]


def _trimmed(before: list[str], after: list[str]) -> tuple[list[str], list[str]]:
    """`before` and `after` without the lines both share at the start and at the end: no change, so only what
    lies between is matched (45,000 lines, a few of them changed: 0.12 s less)."""
    head, most = 0, min(len(before), len(after))
    while head < most and before[head] == after[head]:
        head += 1
    tail = 0
    while tail < most - head and before[-1 - tail] == after[-1 - tail]:
        tail += 1
    return before[head:len(before) - tail], after[head:len(after) - tail]


def changed_lines(old: str | None, new: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The lines added and removed between two rulesets, stripped (comments kept)."""
    before, after = _trimmed((old or "").splitlines(), new.splitlines())
    if not before or not after:  # only added, or only removed (the first apply: 60,000 lines, no index of them)
        added, removed = after, before
    else:
        walked = _walked(before, after)
        if walked is None:
            added, removed = [], []
            for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=before, b=after, autojunk=False).get_opcodes():
                if tag in ("delete", "replace"):
                    removed += before[i1:i2]
                if tag in ("insert", "replace"):
                    added += after[j1:j2]
        else:
            added, removed = walked
    return tuple(ln.strip() for ln in added if ln.strip()), tuple(ln.strip() for ln in removed if ln.strip())
    sm = difflib.SequenceMatcher(a=before, b=after, autojunk=False)
    added, removed = [], []
    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        if tag in ("delete", "replace"):
            removed += [ln.strip() for ln in before[i1:i2] if ln.strip()]
        if tag in ("insert", "replace"):
            added += [ln.strip() for ln in after[j1:j2] if ln.strip()]
    return tuple(added), tuple(removed)
