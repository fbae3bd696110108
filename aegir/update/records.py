"""What `update` remembers on each host, under /var/lib/aegir, and the checks `apply` makes.

- ``update-review.json``: the last review (when, by whom, upgrade or
  dist-upgrade, every package with its old and new version and kind, and
  the packages a dist-upgrade removes). `update.apply` refuses without one
  made in the last hour for the very same package set, removals included
  (`check_review`).
- ``update-announce.json``: the last announcement (message, when, and the
  digest of the package set it announced). A risky upgrade needs one for the
  reviewed set, or ``--force``.
- ``update-apply.json``: the last apply (log path, what was upgraded); the
  review it used is renamed ``update-review.applied.json``.

Times are the controller's clock (epoch seconds), written and compared by the
same side. Transcripts go to /var/log/aegir/update-<time>.log.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from aegir.errors import AegirError, RefusedError
from aegir.report import age
from aegir.sh import Cmd, shell

STATE_DIR = "/var/lib/aegir"
REVIEW_PATH = f"{STATE_DIR}/update-review.json"
ANNOUNCE_PATH = f"{STATE_DIR}/update-announce.json"
APPLY_PATH = f"{STATE_DIR}/update-apply.json"
LOG_DIR = "/var/log/aegir"
MAX_AGE = 3600.0  # a review older than this is stale
MAX_SKEW = 300.0  # a review dated further ahead than this was written by a clock that is wrong

Versions = Mapping[str, tuple[str | None, str]]


def read_cmd(path: str) -> Cmd:
    """Print the file at `path`, nothing (exit 0) when it does not exist."""
    return shell('[ ! -e "$1" ] || cat -- "$1"', path)


def retire_review_cmd() -> Cmd:
    """Rename the review an apply used, so that it cannot be applied twice."""
    return shell('[ ! -e "$1" ] || mv -f -- "$1" "${1%.json}.applied.json"', REVIEW_PATH)


def digest(versions: Versions, dist: bool, removals: Sequence[str] = ()) -> str:
    """A short fingerprint of a package set (name, old, new), its mode and what it removes."""
    data: list[Any] = [dist, sorted((k, list(v)) for k, v in versions.items())]
    if removals:  # only then: the digests of sets without removals stay what they were
        data.append(sorted(removals))
    text = json.dumps(data)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ReviewRecord:
    """A review as stored on the host."""

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

    @property
    def digest(self) -> str:
        return digest(self.versions, self.dist, self.removals)

    def to_json(self) -> str:
        data = asdict(self)
        data["versions"] = {k: list(v) for k, v in self.versions.items()}
        data["digest"] = self.digest
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, host: str) -> "ReviewRecord | None":
        """The record in `text`; None for an empty text; `AegirError` if unreadable."""
        if not text.strip():
            return None
        try:
            d = json.loads(text)
            return cls(
                time=float(d["time"]), dist=bool(d["dist"]),
                versions={str(k): (v[0], str(v[1])) for k, v in d["versions"].items()},
                kinds=dict(d.get("kinds", {})), risky=tuple(d.get("risky", ())),
                effects=tuple(d.get("effects", ())),
                reasons={k: tuple(v) for k, v in d.get("reasons", {}).items()},
                held=tuple(d.get("held", ())), by=str(d.get("by", "")),
                removals=tuple(str(r) for r in d.get("removals", ())),
            )
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            raise AegirError(f"{REVIEW_PATH} is unreadable ({exc}); run update.review again", host=host) from None


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


def version_changes(reviewed: Versions, current: Versions) -> list[str]:
    """What differs between two package sets, one line per package."""
    lines = []
    for name in sorted(set(reviewed) | set(current)):
        before, now = reviewed.get(name), current.get(name)
        if before == now:
            continue
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


def check_review(record: ReviewRecord | None, current: Versions, *, host: str, removals: Sequence[str] = (),
                 now: float | None = None, max_age: float = MAX_AGE) -> ReviewRecord:
    """The review `apply` may use, or `RefusedError` saying why not and what to run.

    `current` and `removals` are what apt would do now (``apt-get -s``).
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
    changes = version_changes(record.versions, current) + removal_changes(record.removals, removals)
    if changes:
        raise RefusedError("the package set changed since the review: " + "; ".join(changes)
                           + "; run `inv update.review` again", host=host)
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
