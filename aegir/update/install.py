"""Installing exactly the reviewed versions: the on-host script, its gate, and the check of dpkg's state.

`update.apply` does not run ``apt-get upgrade``: package lists that change
between the review and the apply (a timer's ``apt-get update``) would make it
upgrade what nobody reviewed. It runs one script (`install_cmd`) that:

1. asks apt for exactly ``name=version`` of each reviewed upgrade and
   ``name-`` for each reviewed removal (``apt-get install``, no recommends,
   no purge, existing conffiles kept, waiting up to `LOCK_WAIT` seconds for
   another apt or dpkg to finish: ``DPkg::Lock::Timeout``);
2. gates it: apt calls the gate (a ``DPkg::Pre-Install-Pkgs`` hook, fed
   apt's own action list, protocol version 3) after it resolved and
   downloaded everything and before it runs dpkg, while it holds dpkg's
   frontend lock. The gate compares apt's actions with the review
   (`expected_actions`) and makes apt stop, before dpkg changes anything,
   when they differ (a new dependency, a removal nobody reviewed, another
   version). It also records dpkg's state at that moment: the *before*;
3. restores the auto-installed marks ``apt-get install`` takes away;
4. prints dpkg's state afterwards, and the gate's view, between marks
   (`parse_install`), for `differences` to compare with the review.

Locks: apt and dpkg lock ``/var/lib/dpkg/lock-frontend`` and
``/var/lib/dpkg/lock`` with ``fcntl`` (POSIX record locks), which ``flock(1)``
does not take part in on Linux; so the script does not wrap apt in
``flock``: apt takes its own lock, waits for it (``DPkg::Lock::Timeout``),
and holds it while the gate runs and while dpkg works.

Tests: tests/unit/test_update_install.py (builders and parsers),
tests/test_update.py (the gate in front of real apt, in the lab).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from aegir.sh import Cmd, shell
from aegir.update.apt import APT_ENV, SIMULATE_LIMIT, bounded, check_package, check_version

#: No prompt from apt, dpkg, debconf, needrestart or apt-listchanges.
UPGRADE_ENV = {**APT_ENV, "NEEDRESTART_MODE": "l", "APT_LISTCHANGES_FRONTEND": "none"}
#: How long apt waits for another apt or dpkg (a timer's unattended-upgrades) to release its lock.
LOCK_WAIT = 120
MARK = "@@aegir@@"

#: dpkg's state, one ``name<TAB>version<TAB>status`` line per package (``name:arch`` for a foreign arch).
_STATE_SCRIPT = r"""dpkg-query -W -f='${Package}\t${Architecture}\t${Version}\t${db:Status-Abbrev}\n' |
  awk -F '\t' -v native="$1" '{ n = ($2 == native || $2 == "all") ? $1 : $1 ":" $2; print n "\t" $3 "\t" $4 }' |
  LC_ALL=C sort
"""

#: The Pre-Install-Pkgs hook: apt's actions (protocol 3, after the configuration and a blank line) -> the
#: review's words ("install NAME OLD NEW", "remove NAME"); refuses (exit 1) when they differ from the review.
_GATE_SCRIPT = r"""dir=$1 native=$2
sed '1,/^$/d' | awk -v native="$native" '
  function key(n, a) { return (a == native || a == "all" || a == "-") ? n : n ":" a }
  $NF == "**CONFIGURE**" { next }
  NF == 9 && $NF == "**REMOVE**" { print "remove " key($1, $3); next }
  NF == 9 { print "install " key($1, $7) " " $2 " " $6; next }
  { print "unknown " $0 }' | LC_ALL=C sort -u > "$dir/actions"
sh "$dir/state" "$native" > "$dir/before"
cmp -s "$dir/expected" "$dir/actions" && exit 0
echo "aegir: apt's actions are not the reviewed ones; stopping before dpkg runs" >&2
exit 1
"""

_INSTALL_SCRIPT = r"""set -f
log=$1 specs=$2 expected=$3 new=$4 wait=$5
mkdir -p -- "${log%/*}" || exit 1
dir=$(mktemp -d) || exit 1
trap 'rm -rf "$dir"' EXIT
native=$(dpkg --print-architecture) || exit 1
printf '%s\n' "$6" > "$dir/state"
printf '%s\n' "$7" > "$dir/gate"
printf '%s\n' "$expected" | LC_ALL=C sort -u > "$dir/expected"
sh "$dir/state" "$native" > "$dir/before"
apt-mark showauto 2>/dev/null | LC_ALL=C sort > "$dir/auto"
{
  echo "# aegir update.apply $(date -u +%Y-%m-%dT%H:%M:%SZ): apt-get install $specs"
  apt-get install -y -q --no-install-recommends -o APT::Get::Purge=false -o "DPkg::Lock::Timeout=$wait" \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    -o "DPkg::Pre-Install-Pkgs::=/bin/sh $dir/gate $dir $native" -o DPkg::Tools::Options::/bin/sh::Version=3 \
    $specs </dev/null
  rc=$?
  echo "# exit $rc"
} >> "$log" 2>&1
if [ "$rc" = 0 ]; then  # apt-get install marks what it names as installed by hand: put back what was automatic
  marks=$({ for s in $specs; do
              case $s in *=*) grep -qxF -- "${s%%=*}" "$dir/auto" && echo "${s%%=*}";; esac
            done
            printf '%s\n' $new; } | LC_ALL=C sort -u | grep .)
  [ -z "$marks" ] || apt-mark auto $marks >> "$log" 2>&1 || echo "@@aegir@@ marks-failed"
fi
echo "@@aegir@@ exit $rc"
if [ -e "$dir/actions" ]; then echo "@@aegir@@ gate"; cat "$dir/actions"; fi
echo "@@aegir@@ before"; cat "$dir/before"
echo "@@aegir@@ after"; sh "$dir/state" "$native"
echo "@@aegir@@ tail"; tail -n 12 "$log"
exit 0
"""


def expected_actions(upgrading: Mapping[str, tuple[str | None, str]], removals: Sequence[str]) -> tuple[str, ...]:
    """The review in the gate's words, sorted: ``install NAME OLD NEW`` (OLD ``-`` when new), ``remove NAME``."""
    lines = [f"install {check_package(n)} {check_version(old, n) if old else '-'} {check_version(new, n)}"
             for n, (old, new) in upgrading.items()]
    lines += [f"remove {check_package(n)}" for n in removals]
    return tuple(sorted(set(lines)))


def install_specs(upgrading: Mapping[str, tuple[str | None, str]], removals: Sequence[str]) -> tuple[str, ...]:
    """``apt-get install`` arguments: ``name=version`` per upgrade, ``name-`` per removal (validated)."""
    return (*(f"{check_package(n)}={check_version(new, n)}" for n, (_, new) in upgrading.items()),
            *(f"{check_package(n)}-" for n in removals))


def exact_simulate_cmd(upgrading: Mapping[str, tuple[str | None, str]], removals: Sequence[str]) -> Cmd:
    """What ``apt-get install`` of exactly the reviewed versions would do (simulated: nothing changes)."""
    return Cmd(bounded(("apt-get", "-s", "install", "--no-install-recommends", "-o", "APT::Get::Purge=false",
                        *install_specs(upgrading, removals)), SIMULATE_LIMIT), env=APT_ENV)


def install_cmd(log: str, upgrading: Mapping[str, tuple[str | None, str]], removals: Sequence[str], *,
                wait: int = LOCK_WAIT) -> Cmd:
    """The one script that installs exactly the reviewed versions, gated, its transcript in `log` on the host."""
    new = [n for n, (old, _) in upgrading.items() if old is None]
    return Cmd(shell(_INSTALL_SCRIPT, log, " ".join(install_specs(upgrading, removals)),
                     "\n".join(expected_actions(upgrading, removals)), " ".join(new), str(wait),
                     _STATE_SCRIPT, _GATE_SCRIPT).argv, env=UPGRADE_ENV, timeout=3600 + wait)


@dataclass(frozen=True)
class InstallRun:
    """What `install_cmd` printed: apt's exit code, the gate's view, dpkg's state before and after."""

    exit: int | None
    actions: tuple[str, ...] | None = None  # apt's actions as the gate saw them; None: the gate did not run
    before: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # name -> (version, status)
    after: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    tail: tuple[str, ...] = ()  # the end of the transcript
    marks_failed: bool = False

    def refused(self, expected: Sequence[str]) -> tuple[str, ...]:
        """What apt wanted to do differently from the review, one line each (empty: the gate let it pass)."""
        if self.actions is None or tuple(sorted(expected)) == self.actions:
            return ()
        extra = [f"apt would {_words(a)}" for a in self.actions if a not in expected]
        missing = [f"apt would not {_words(e)}" for e in expected if e not in self.actions]
        return tuple(extra + missing)


def _words(action: str) -> str:
    """``install n 1 2`` -> ``install n 2 (over 1)``: a gate line as a sentence."""
    verb, _, rest = action.partition(" ")
    parts = rest.split()
    if verb == "install" and len(parts) == 3:
        return f"install {parts[0]} {parts[2]}" + (f" (over {parts[1]})" if parts[1] != "-" else " (new)")
    return f"{verb} {rest}" if verb in ("remove", "install") else f"do: {rest}"


def _state(lines: Sequence[str]) -> dict[str, tuple[str, str]]:
    out: dict[str, tuple[str, str]] = {}
    for line in lines:
        parts = line.split("\t")
        if len(parts) == 3 and parts[0]:
            out[parts[0]] = (parts[1], parts[2].strip())
    return out


def parse_install(stdout: str) -> InstallRun:
    """Read `install_cmd`'s output (sections between ``@@aegir@@`` marks)."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    code: int | None = None
    marks_failed = False
    for line in stdout.splitlines():
        if line.startswith(MARK + " "):
            word = line[len(MARK) + 1:]
            if word.startswith("exit "):
                code = int(word[5:]) if word[5:].strip().isdigit() else None
                current = None
            elif word == "marks-failed":
                marks_failed = True
            else:
                current = sections.setdefault(word, [])
            continue
        if current is not None:
            current.append(line)
    actions = tuple(a for a in sections["gate"] if a.strip()) if "gate" in sections else None
    return InstallRun(code, actions, _state(sections.get("before", [])), _state(sections.get("after", [])),
                      tuple(sections.get("tail", [])), marks_failed)


def installed(status: str) -> bool:
    """dpkg's abbreviated status: the second letter is the package's state (n: not installed, c: config files)."""
    return len(status) >= 2 and status[1] not in ("n", "c")


def differences(run: InstallRun, upgrading: Mapping[str, tuple[str | None, str]],
                removals: Sequence[str]) -> tuple[str, ...]:
    """Where dpkg's state after the install differs from the review, one sentence each.

    Each reviewed upgrade must be installed at its new version and fully
    configured; each reviewed removal gone; every other package as it was
    (version and installed or not: trigger processing may change a status).
    """
    out: list[str] = []
    for name, (old, new) in sorted(upgrading.items()):
        version, status = run.after.get(name, ("", "un"))
        if not installed(status):
            out.append(f"{name} is not installed (reviewed: {old or 'new'} -> {new})")
        elif version != new:
            out.append(f"{name} is at {version} (reviewed: {old or 'new'} -> {new})")
        elif status != "ii":
            out.append(f"{name} {new} is not fully installed (dpkg status {status!r})")
    for name in sorted(removals):
        version, status = run.after.get(name, ("", "un"))
        if installed(status):
            out.append(f"{name} {version} is still installed (reviewed for removal)")
    for name in sorted(set(run.before) | set(run.after)):
        if name in upgrading or name in removals:
            continue
        before, after = run.before.get(name, ("", "un")), run.after.get(name, ("", "un"))
        if (before[0], installed(before[1])) != (after[0], installed(after[1])):
            was = before[0] if installed(before[1]) else "not installed"
            now = after[0] if installed(after[1]) else "not installed"
            out.append(f"{name} changed without a review: {was} -> {now}")
    if run.marks_failed:
        out.append("apt-mark auto failed: the upgraded packages are marked as installed by hand (see the log)")
    return tuple(out)
