"""dns.zone --out: the zone files on the operator's machine, planned, written, read back.

The only change dns makes is local, fleet-wide and done once (every host's
names make every zone), so it is not an `aegir.action.Action` (whose act runs
on each host): `plan_files` reads the folder and says, per zone, whether its
file would be written or already holds that text; the task then stops for
``--dry`` at `aegir.action.dry_stop`, the one dry stop; `write_files` writes
the files that differ, each one atomically (a server reloading meanwhile never
reads half a zone), and reads each back through dnspython to check that it
holds the zone's records.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aegir.dns.plan import Zone, next_serial, serial_of, with_serial
from aegir.dns.zonefile import canonical, file_name, parse, render
from aegir.errors import AegirError, UsageError
from aegir.report import Result

#: The mode of a new zone file: servers (knotd, named, nsd) read it as their own user.
MODE = 0o644


@dataclass(frozen=True)
class ZoneFile:
    """One zone's file: its text and `result`: ``would`` (to write), ``ok`` (holds it already), ``done``."""

    zone: Zone
    path: str
    text: str
    result: str


def plan_files(out: str, zones: Sequence[Zone], day: str | None = None) -> tuple[ZoneFile, ...]:
    """Each zone's file in folder `out` and whether it needs writing (reads only; the folder may not exist).

    With `day` (``YYYYMMDD``), each zone's serial is chosen against its file
    (`aegir.dns.plan.next_serial`): the file's own while the zone text but its serial is the same,
    else the next one; without, the zones keep the serial they have (``--serial``).
    """
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--out {out}: not a directory")
    files = []
    for z in zones:
        path = folder / file_name(z.origin)
        old = _read(path)
        if day is not None:
            before = serial_of(old)
            same = before is not None and render(with_serial(z, before)) == old
            try:
                z = with_serial(z, next_serial(day, before, not same))
            except ValueError as exc:
                raise AegirError(f"{path}: {exc}") from None
        text = render(z)
        files.append(ZoneFile(z, str(path), text, Result.OK if old == text else Result.WOULD))
    return tuple(files)


def write_files(files: Sequence[ZoneFile]) -> tuple[ZoneFile, ...]:
    """Write the files `plan_files` said would change (creating the folder), then check each; all of them, done."""
    todo = [f for f in files if f.result == Result.WOULD]
    if todo:
        folder = Path(todo[0].path).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AegirError(f"cannot create {folder}: {exc.strerror or exc}") from None
    for f in todo:
        _write(Path(f.path), f.text)
        verify(f)
    return tuple(dataclasses.replace(f, result=Result.DONE) if f in todo else f for f in files)


def verify(f: ZoneFile) -> None:
    """`f`'s file holds its text, and dnspython reads from it exactly the zone's records."""
    text = _read(Path(f.path))
    if text != f.text:
        raise AegirError(f"{f.path} does not hold the zone {f.zone.origin} after writing it")
    if parse(text, f.zone.origin) != canonical(f.zone.records):
        raise AegirError(f"{f.path}: dnspython reads other records than the zone {f.zone.origin} holds")


def _read(path: Path) -> str | None:
    """`path`'s text, None when there is no such file."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise AegirError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None


def _write(path: Path, text: str) -> None:
    """Replace `path` by `text` in one rename, keeping the mode of the file it replaces (else `MODE`)."""
    tmp = path.with_name(f".{path.name}.aegir-new")
    try:
        mode = path.stat().st_mode & 0o7777 if path.exists() else MODE
        tmp.write_text(text, encoding="utf-8")
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise AegirError(f"cannot write {path}: {exc.strerror or exc}") from None
