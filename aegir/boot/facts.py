"""Boot facts: the LUKS volume, the /srv mount, its folders, Docker's data-root.

Each fact is a command builder and a pure parser (tested on recorded output in
tests/unit/test_boot_facts.py). The commands:

* ``cryptsetup isLuks DEVICE`` — is the device a LUKS volume (exit 0/1)?
* ``cryptsetup status NAME`` — is the mapping open, and on which device?
* ``findmnt --mountpoint /srv`` — what is mounted on /srv (kernel table),
  ``findmnt --fstab --mountpoint /srv`` — what ``mount /srv`` would mount;
* ``losetup --list`` — which file backs a loop device (a loop-mounted image);
* ``ls -A1p /srv`` — the runbook's ``ls /srv``: what /srv holds;
* ``cat /etc/docker/daemon.json`` — Docker's configured data-root, and
  Docker's own answer (``docker info``'s ``DockerRootDir``) once it runs;
* whether a ``dockerd`` process runs is asked of /proc (`aegir.docker.dockerd_cmd`) before
  Docker's socket is ever touched: a connection to the socket systemd's
  ``docker.socket`` listens on *starts* Docker (socket activation), on an
  unmounted /srv too.

The passphrase commands (`luks_open_cmd`, `luks_test_cmd`) carry the
passphrase in `Cmd.stdin` and read it with ``--key-file=-``: it never enters
argv, the environment, a log or an error message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aegir.errors import AegirError
from aegir.facts import Fact, cat_cmd, file_fact, parse_cat  # noqa: F401 (cat_cmd, file_fact, parse_cat: re-exported)
from aegir.fields import Answer
from aegir.layout import SRV_FOLDERS
from aegir.sh import Cmd, Reply, check_name

#: The folders the runbook keeps under /srv.
#: Where Docker reads its daemon configuration (data-root, …).
DAEMON_JSON = "/etc/docker/daemon.json"
#: ``cryptsetup`` exit code for "No key available with this passphrase".
EXIT_WRONG_PASSPHRASE = 2
#: ``cryptsetup status`` exit code for an inactive mapping.
EXIT_INACTIVE = 4

_C = {"LC_ALL": "C"}

# --------------------------------------------------------------------------- LUKS


def is_luks_cmd(device: str) -> Cmd:
    """``cryptsetup isLuks DEVICE``: exit 0 if it is LUKS, 1 if not, 4 if it does not exist."""
    return Cmd(("cryptsetup", "isLuks", device), env=_C)


def parse_is_luks(device: str, exited: int, stderr: str) -> bool:
    """True for a LUKS device, False for another one; raise when it cannot be read."""
    if exited == 0:
        return True
    if exited == 1 and not stderr.strip():
        return False
    reason = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit code {exited}"
    raise AegirError(f"cannot read LUKS device {device}: {reason}")


@dataclass(frozen=True)
class LuksMapping:
    """A device-mapper mapping as ``cryptsetup status`` shows it."""

    name: str
    active: bool
    device: str | None = None  # the underlying device (``device:`` line)
    type: str | None = None  # LUKS1, LUKS2, …
    in_use: bool = False  # "is active and is in use" (mounted or held)


def luks_status_cmd(name: str) -> Cmd:
    """``cryptsetup status NAME`` (exit 0 active, 4 inactive), in the C locale."""
    return Cmd(("cryptsetup", "status", check_name("mapping", name)), env=_C)


def parse_luks_status(name: str, stdout: str, stderr: str, exited: int) -> LuksMapping:
    """Read `luks_status_cmd` output; raise when cryptsetup cannot tell (no device-mapper…)."""
    first = stdout.strip().splitlines()[0] if stdout.strip() else ""
    if exited == EXIT_INACTIVE or first.endswith(" is inactive."):
        return LuksMapping(name, active=False)
    if exited != 0:
        detail = " ".join(ln.strip() for ln in stderr.strip().splitlines()[-2:]) or f"exit code {exited}"
        if "device-mapper" in stderr or "dm_mod" in stderr:
            detail = f"device-mapper is not available on this host ({detail})"
        raise AegirError(f"cannot read the state of mapping {name!r}: {detail}")
    fields: dict[str, str] = {}
    for line in stdout.splitlines()[1:]:
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return LuksMapping(name, active=True, device=fields.get("device"), type=fields.get("type"),
                    in_use="in use" in first)


def luks_open_cmd(device: str, name: str, passphrase: str | None = None) -> Cmd:
    """``cryptsetup luksOpen --key-file=- DEVICE NAME``, the passphrase on stdin only.

    ``--key-file=-`` takes stdin byte for byte: the passphrase is sent without
    a trailing newline, as cryptsetup's own prompt would have passed it.
    Without a passphrase, the command is only good for showing (``--dry``).
    """
    return Cmd(("cryptsetup", "luksOpen", "--key-file=-", device, check_name("mapping", name)),
               stdin=passphrase)


def luks_test_cmd(device: str, passphrase: str | None = None) -> Cmd:
    """``cryptsetup open --test-passphrase --key-file=- DEVICE``: check it, activate nothing."""
    return Cmd(("cryptsetup", "open", "--test-passphrase", "--key-file=-", device), stdin=passphrase)


# --------------------------------------------------------------------------- mounts


@dataclass(frozen=True)
class Mount:
    """One filesystem from ``findmnt`` (kernel table or fstab); sizes only for mounted ones."""

    target: str
    source: str
    fstype: str
    options: tuple[str, ...] = ()
    size: int | None = None
    avail: int | None = None
    uuid: str | None = None
    label: str | None = None

    @property
    def is_loop(self) -> bool:
        """An fstab entry mounting an image file through a loop device."""
        return "loop" in self.options or any(o.startswith("loop=") for o in self.options)


_MOUNT_COLUMNS = "TARGET,SOURCE,FSTYPE,OPTIONS,SIZE,AVAIL,UUID,LABEL"
_FSTAB_COLUMNS = "TARGET,SOURCE,FSTYPE,OPTIONS"


def findmnt_cmd(srv: str) -> Cmd:
    """What the kernel has mounted on `srv` (exit 1: nothing), as JSON, sizes in bytes."""
    return Cmd(("findmnt", "--json", "--bytes", "--output", _MOUNT_COLUMNS, "--mountpoint", srv))


def fstab_cmd(srv: str) -> Cmd:
    """The fstab entry for `srv` (exit 1: none): what ``mount /srv`` would mount."""
    return Cmd(("findmnt", "--fstab", "--json", "--output", _FSTAB_COLUMNS, "--mountpoint", srv))


def parse_findmnt(stdout: str, exited: int) -> Mount | None:
    """Read `findmnt_cmd`/`fstab_cmd` output; None when nothing matches (exit 1, no output).

    When several filesystems are stacked on the same point, the last one
    (the one on top, the one a process sees) wins.
    """
    if exited == 1 and not stdout.strip():
        return None
    try:
        rows = json.loads(stdout)["filesystems"]
    except (ValueError, KeyError, TypeError):
        raise AegirError(f"cannot read findmnt output: {stdout.strip()[:200]!r}") from None
    if not rows:
        return None
    row: Mapping[str, Any] = rows[-1]

    def num(key: str) -> int | None:
        v = row.get(key)
        return int(v) if v is not None and str(v).isdigit() else None

    return Mount(
        target=row.get("target") or "",
        source=row.get("source") or "",
        fstype=row.get("fstype") or "",
        options=tuple(o for o in (row.get("options") or "").split(",") if o),
        size=num("size"),
        avail=num("avail"),
        uuid=row.get("uuid") or None,
        label=row.get("label") or None,
    )


def losetup_cmd() -> Cmd:
    """Every loop device and the file behind it, as JSON."""
    return Cmd(("losetup", "--list", "--json", "--output", "NAME,BACK-FILE"))


def parse_losetup(stdout: str) -> dict[str, str]:
    """Read `losetup_cmd` output: loop device -> backing file (empty output: none)."""
    if not stdout.strip():
        return {}
    try:
        rows = json.loads(stdout)["loopdevices"]
    except (ValueError, KeyError, TypeError):
        raise AegirError(f"cannot read losetup output: {stdout.strip()[:200]!r}") from None
    # losetup appends " (deleted)" to a backing file removed while attached.
    return {r["name"]: (r.get("back-file") or "").removesuffix(" (deleted)") for r in rows if r.get("name")}


# --------------------------------------------------------------------------- /srv content


@dataclass(frozen=True)
class Listing:
    """What ``ls /srv`` shows: names, and which of them are folders."""

    exists: bool
    folders: frozenset[str] = frozenset()
    files: frozenset[str] = frozenset()

    @property
    def entries(self) -> int:
        return len(self.folders) + len(self.files)

    def missing(self, wanted: tuple[str, ...] = SRV_FOLDERS) -> tuple[str, ...]:
        """The wanted folders that are not there (in the order given)."""
        return tuple(w for w in wanted if w not in self.folders)


def listing_cmd(srv: str) -> Cmd:
    """The runbook's ``ls /srv``, one name per line, folders marked with a ``/``."""
    return Cmd(("ls", "-A1p", "--", srv), env=_C)


def parse_listing(stdout: str, exited: int) -> Listing:
    """Read `listing_cmd` output; a missing /srv (``ls`` exit 2, no output) is ``exists=False``."""
    if exited != 0 and not stdout.strip():
        return Listing(exists=False)
    names = [ln for ln in stdout.splitlines() if ln]
    return Listing(
        exists=True,
        folders=frozenset(n[:-1] for n in names if n.endswith("/")),
        files=frozenset(n for n in names if not n.endswith("/")),
    )


# --------------------------------------------------------------------------- Docker


@dataclass(frozen=True)
class DataRoot:
    """Where Docker keeps its data, and who said so."""

    path: str | None
    source: str  # "docker info" | DAEMON_JSON | "unknown"
    running: bool = False


def daemon_json_cmd() -> Cmd:
    """Docker's daemon configuration file (`parse_cat`, then `parse_daemon_json`)."""
    return cat_cmd(DAEMON_JSON)


def parse_daemon_json(text: str | None) -> DataRoot:
    """The data-root set in daemon.json (``graph`` is its old name); unknown if unset or absent."""
    if not text or not text.strip():
        return DataRoot(None, "unknown")
    try:
        conf = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise AegirError(f"{DAEMON_JSON} is not valid JSON: {exc or 'nested too deeply'}") from None
    path = (conf.get("data-root") or conf.get("graph")) if isinstance(conf, dict) else None
    return DataRoot(path, DAEMON_JSON) if isinstance(path, str) and path else DataRoot(None, "unknown")


def parse_docker_info(info: Mapping[str, Any]) -> DataRoot:
    """The data-root a running daemon reports (``docker info``: ``DockerRootDir``)."""
    return DataRoot(Answer(info, "docker info")["DockerRootDir"].text() or None, "docker info", running=True)


# --------------------------------------------------------------------------- as facts (aegir.facts)
# Boot changes what these answer (unlock, mount, start Docker): they are asked afresh every time.


def mounted_fact(srv: str) -> Fact[Mount | None]:
    """What is mounted at `srv` (None: nothing)."""
    return Fact("boot.mounted", findmnt_cmd(srv), lambda r: parse_findmnt(r.stdout, r.exited), (0, 1), cache=False)


def fstab_fact(srv: str) -> Fact[Mount | None]:
    """The fstab entry for `srv` (None: none)."""
    return Fact("boot.fstab", fstab_cmd(srv), lambda r: parse_findmnt(r.stdout, r.exited), (0, 1), cache=False)


def listing_fact(srv: str) -> Fact[Listing]:
    """What `srv` holds (``ls -A1p``)."""
    return Fact("boot.listing", listing_cmd(srv), lambda r: parse_listing(r.stdout, r.exited), (0, 1, 2),
                cache=False)


def losetup_fact() -> Fact[Reply]:
    """``losetup --list``, unparsed: it is read (and must have worked) only when /srv is loop-mounted."""
    return Fact("boot.losetup", losetup_cmd(), lambda r: r, None, cache=False)


def mapping_fact(name: str) -> Fact[LuksMapping]:
    """The state of the LUKS mapping `name`."""
    return Fact("boot.mapping", luks_status_cmd(name), lambda r: parse_luks_status(name, r.stdout, r.stderr, r.exited),
                None, cache=False)


def is_luks_fact(device: str) -> Fact[bool]:
    """Does `device` hold a LUKS header?"""
    return Fact("boot.is_luks", is_luks_cmd(device), lambda r: parse_is_luks(device, r.exited, r.stderr), None,
                cache=False)


def daemon_json_fact() -> Fact[str | None]:
    """daemon.json's text (None: absent); `parse_daemon_json` reads it only when Docker cannot be asked."""
    return Fact("boot.daemon_json", daemon_json_cmd(), lambda r: parse_cat(r.stdout, r.stderr, r.exited), None,
                cache=False)
