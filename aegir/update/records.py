"""What `update` remembers on each host, under /var/lib/aegir, and the checks `apply` makes.

- ``update-review.json``: the last review (when, by whom, upgrade or
  dist-upgrade, every package with its old and new version and kind, and
  the packages a dist-upgrade removes), with a checksum over all of it.
  `update.apply` refuses without one made in the last hour (`check_review`),
  and installs exactly its versions.
- ``update-announce.json``: the last announcement (message, when, and the
  digest of the package set it announced). A risky upgrade needs one for the
  reviewed set, or ``--force``.
- ``update-apply.json``: the last apply (log path, what was upgraded, the
  review's prediction of stale processes against what was found); the
  review it used is renamed ``update-review.applied.json``.

Times are the controller's clock (epoch seconds), written and compared by the
same side. Transcripts go to /var/log/aegir/update-<time>.log.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from aegir.errors import AegirError, RefusedError
from aegir.report import age
from aegir.sh import Cmd, shell
from aegir.update.apt import check_package, check_version
from aegir.update.classify import KINDS

STATE_DIR = "/var/lib/aegir"
REVIEW_PATH = f"{STATE_DIR}/update-review.json"
ANNOUNCE_PATH = f"{STATE_DIR}/update-announce.json"
APPLY_PATH = f"{STATE_DIR}/update-apply.json"
LOG_DIR = "/var/log/aegir"
MAX_AGE = 3600.0  # a review older than this is stale
MAX_SKEW = 300.0  # a review dated further ahead than this was written by a clock that is wrong

#: One package's upgrade: (installed version or None for a new package, version to install).
Upgrade = tuple[str | None, str]
Versions = Mapping[str, Upgrade]


def log_path(now: float) -> str:
    """Where the transcript of an apply started at `now` goes, on the host."""
    return f"{LOG_DIR}/update-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(now))}.log"


def read_cmd(path: str) -> Cmd:
    """Print the file at `path`, nothing (exit 0) when it does not exist."""
    return shell('[ ! -e "$1" ] || cat -- "$1"', path)


def retire_review_cmd() -> Cmd:
    """Rename the review an apply used, so that it cannot be applied twice."""
    return shell('[ ! -e "$1" ] || mv -f -- "$1" "${1%.json}.applied.json"', REVIEW_PATH)


def _fingerprint(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def digest(versions: Versions, dist: bool, removals: Sequence[str] = (), risky: Sequence[str] = (),
           kinds: Mapping[str, str] | None = None, effects: Sequence[str] = ()) -> str:
    """A short fingerprint of what a review says about a package set: its mode, every package
    (name, old, new) and what it removes, and what the announcement gate reads (which are
    risky, their kinds, their effects). An announcement is bound to it."""
    return _fingerprint([dist, sorted((k, list(v)) for k, v in versions.items()), sorted(removals),
                         sorted(risky), sorted((kinds or {}).items()), list(effects)])


def _fail(what: str, problem: str, host: str | None) -> AegirError:
    return AegirError(f"{REVIEW_PATH}: {what} {problem}; run `inv update.review` again", host=host)


def _typed(d: Mapping[str, Any], key: str, kind: type | tuple[type, ...], host: str | None,
           default: Any = None) -> Any:
    if key not in d:
        if default is None:
            raise _fail(f"'{key}'", "is missing", host)
        return default
    value = d[key]
    if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise _fail(f"'{key}'", f"must be {names}, not {type(value).__name__} {str(value)[:40]!r}", host)
    return value


def _strings(d: Mapping[str, Any], key: str, host: str | None,
             check: Callable[[str], str] | None = None) -> tuple[str, ...]:
    values = _typed(d, key, list, host, [])
    for v in values:
        if not isinstance(v, str):
            raise _fail(f"'{key}'", f"must be a list of strings, holds {type(v).__name__} {str(v)[:40]!r}", host)
        if check is not None:
            try:
                check(v)
            except AegirError as exc:
                raise _fail(f"'{key}'", f"holds an {exc.message}", host) from None
    return tuple(values)


def _rows(d: Mapping[str, Any], key: str, kinds: tuple[type, ...], host: str | None) -> tuple[Any, ...]:
    """A list of fixed-shape rows (``[pid, file, who, package]``), each checked; () when absent."""
    out = []
    for row in _typed(d, key, list, host, []):
        if (not isinstance(row, list) or len(row) != len(kinds)
                or not all(isinstance(v, k) and not isinstance(v, bool) for v, k in zip(row, kinds))):
            shape = ", ".join(k.__name__ for k in kinds)
            raise _fail(f"'{key}'", f"must hold [{shape}] rows, not {str(row)[:60]!r}", host)
        out.append(tuple(row))
    return tuple(out)


def _versions(d: Mapping[str, Any], host: str | None) -> dict[str, tuple[str | None, str]]:
    out: dict[str, tuple[str | None, str]] = {}
    for name, pair in _typed(d, "versions", dict, host).items():
        try:
            check_package(name)
            if not isinstance(pair, list) or len(pair) != 2:
                raise AegirError(f"must be [old, new], not {str(pair)[:60]!r}")
            old, new = pair
            out[name] = (None if old is None else check_version(old, name), check_version(new, name))
        except AegirError as exc:
            raise _fail(f"'versions' of {name[:60]!r}", exc.message, host) from None
    return out


@dataclass(frozen=True)
class ReviewRecord:
    """A review as stored on the host.

    Read back with `from_json`, which checks the type of every field and the
    ``checksum`` over all of them: a record edited or damaged on the host is
    refused, never read leniently (a ``risky`` that is not a list of packages
    would otherwise turn the announcement requirement off).
    """

    time: float
    dist: bool
    versions: Mapping[str, tuple[str | None, str]]
    kinds: Mapping[str, str] = field(default_factory=dict)
    risky: tuple[str, ...] = ()  # the risky packages
    effects: tuple[str, ...] = ()  # "would restart docker via containerd", ...
    reasons: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    held: tuple[str, ...] = ()
    by: str = ""
    removals: tuple[str, ...] = ()  # packages a dist-upgrade removes
    stale: tuple[tuple[int, str, str, str], ...] = ()  # (pid, file, who, package): left on old code by the upgrade
    stale_before: tuple[tuple[int, str], ...] = ()  # (pid, file): stale already at the review

    @property
    def digest(self) -> str:
        """The package set and what the gate reads of it (`digest`): what an announcement announced."""
        return digest(self.versions, self.dist, self.removals, self.risky, self.kinds, self.effects)

    def _data(self) -> dict[str, Any]:
        data = asdict(self)
        data["versions"] = {k: list(v) for k, v in self.versions.items()}
        data["reasons"] = {k: list(v) for k, v in self.reasons.items()}
        for key in ("risky", "effects", "held", "removals"):
            data[key] = list(data[key])
        for key in ("stale", "stale_before"):  # absent when empty: records written before they existed still check
            if data[key]:
                data[key] = [list(row) for row in data[key]]
            else:
                del data[key]
        return data

    @property
    def checksum(self) -> str:
        """A fingerprint of every field, time and author included."""
        return _fingerprint(self._data())

    def to_json(self) -> str:
        data = self._data()
        data["digest"], data["checksum"] = self.digest, self.checksum
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, host: str | None = None) -> "ReviewRecord | None":
        """The record in `text`; None for an empty text; `AegirError` naming the field otherwise (and `host`)."""
        if not text.strip():
            return None
        try:
            d = json.loads(text)
        except ValueError as exc:
            raise _fail("is not JSON", f"({exc})", host) from None
        if not isinstance(d, dict):
            raise _fail("is not a JSON object", "", host)
        when = _typed(d, "time", (int, float), host)
        if not math.isfinite(when):
            raise _fail("'time'", f"must be a finite number, not {when!r}", host)
        versions = _versions(d, host)
        removals = _strings(d, "removals", host, check_package)
        kinds = _typed(d, "kinds", dict, host, {})
        for name, kind in kinds.items():
            if name not in versions or kind not in KINDS:
                raise _fail("'kinds'", f"holds {name[:60]!r}: {str(kind)[:40]!r} (a package of 'versions': "
                            f"one of {', '.join(KINDS)})", host)
        risky = _strings(d, "risky", host, check_package)
        if stray := [p for p in risky if p not in versions and p not in removals]:
            raise _fail("'risky'", f"names {', '.join(stray)}, neither upgraded nor removed", host)
        reasons = _typed(d, "reasons", dict, host, {})
        record = cls(
            time=float(when), dist=_typed(d, "dist", bool, host), versions=versions, kinds=dict(kinds),
            risky=risky, effects=_strings(d, "effects", host),
            reasons={str(k): _strings(reasons, k, host) for k in reasons},
            held=_strings(d, "held", host, check_package), by=_typed(d, "by", str, host, ""), removals=removals,
            stale=_rows(d, "stale", (int, str, str, str), host), stale_before=_rows(d, "stale_before", (int, str), host),
        )
        stored = _typed(d, "checksum", str, host)
        if stored != record.checksum:
            raise _fail("checksum", f"{stored[:20]!r} does not match its content ({record.checksum}): "
                        "the record was edited or damaged", host)
        return record


@dataclass(frozen=True)
class AnnounceRecord:
    """An announcement as stored on the host."""

    time: float
    digest: str
    message: str
    when: str = ""
    notifier: str = ""
    text: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "AnnounceRecord | None":
        if not text.strip():
            return None
        try:
            d = json.loads(text)
            return cls(float(d["time"]), str(d["digest"]), str(d["message"]), str(d.get("when", "")),
                       str(d.get("notifier", "")), str(d.get("text", "")))
        except (ValueError, KeyError, TypeError):
            return None  # an unreadable announcement is no announcement


def apply_record(now: float, log: str, upgraded: Versions, removed: Sequence[str], held: Sequence[str],
                 problems: Sequence[str], review: str, prediction: Mapping[str, Any] | None = None) -> str:
    """The text of ``update-apply.json``: when, the transcript, what was upgraded and removed, what was held,
    the problems the checks found, the checksum of the review it applied, and how the review's prediction
    of stale processes compared with what was found (`aegir.update.mapped.Comparison`)."""
    return json.dumps({"time": now, "log": log, "upgraded": {k: list(v) for k, v in upgraded.items()},
                       "removed": list(removed), "held": list(held), "problems": list(problems), "review": review,
                       "prediction": dict(prediction or {})},
                      indent=2, sort_keys=True) + "\n"


def differing(a: Versions, b: Versions) -> Iterator[tuple[str, Upgrade | None, Upgrade | None]]:
    """``(name, in a, in b)`` for each package whose (from, to) differs between `a` and `b` (None: absent), by name."""
    for name in sorted(set(a) | set(b)):
        if a.get(name) != b.get(name):
            yield name, a.get(name), b.get(name)


def version_changes(reviewed: Versions, current: Versions) -> list[str]:
    """What differs between two package sets, one line per package."""
    lines = []
    for name, before, now in differing(reviewed, current):
        if before is None:
            lines.append(f"{name} {now[1]} is new since the review")  # type: ignore[index]
        elif now is None:
            lines.append(f"{name} {before[1]} is no longer to be upgraded")
        else:
            lines.append(f"{name}: reviewed {before[0]} -> {before[1]}, now {now[0]} -> {now[1]}")
    return lines


def removal_changes(reviewed: Sequence[str], current: Sequence[str]) -> list[str]:
    """What differs between two sets of removals, one line per package."""
    return ([f"{name} would now be removed" for name in sorted(set(current) - set(reviewed))]
            + [f"{name} is no longer to be removed" for name in sorted(set(reviewed) - set(current))])


def check_review(record: ReviewRecord | None, *, host: str, now: float | None = None,
                 max_age: float = MAX_AGE) -> ReviewRecord:
    """The review `apply` may use (there is one, and it is fresh), or `RefusedError` saying why not and what to run.

    Whether apt can still install its versions is `aegir.update.plan.plan_apply`'s check.
    """
    now = time.time() if now is None else now
    if record is None:
        raise RefusedError("no review of this upgrade on the host: run `inv update.review` first", host=host)
    elapsed = now - record.time
    if elapsed < -MAX_SKEW:  # else a clock running ahead would keep a review "fresh" for hours
        raise RefusedError(f"the review is dated {age(-elapsed)} in the future (written by "
                           f"{record.by or 'another machine'} with a clock ahead of this one's): "
                           "run `inv update.review` again", host=host)
    if elapsed > max_age:
        raise RefusedError(f"the review is {age(elapsed)} old (more than {age(max_age)}): "
                           "run `inv update.review` again", host=host)
    return record


def check_announced(record: ReviewRecord, announcement: AnnounceRecord | None, upgrading: Any, *,
                    force: bool, host: str) -> str | None:
    """None if `apply` may go on; raise `RefusedError` for a risky, unannounced upgrade.

    `upgrading` is the set of packages that will really be upgraded or
    removed (the review's minus ``--hold``). Returns a note when ``--force`` overrides.
    """
    risky = [p for p in record.risky if p in upgrading]
    if not risky:
        return None
    if announcement is not None and announcement.digest == record.digest:
        return None
    what = "; ".join(record.effects) or "risky packages: " + ", ".join(risky)
    if force:
        return f"not announced ({what}): going on because of --force"
    raise RefusedError(f"this upgrade is risky ({what}) and was not announced: run "
                       "`inv update.announce --message ...` first, hold the risky packages "
                       f"(--hold {' --hold '.join(risky)}), or pass --force", host=host)
