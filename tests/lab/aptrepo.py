"""Fake Debian packages and a local apt repository, for the apt tests (stdlib + dpkg-dev).

The update tests need real ``apt-get -s`` output and real ``dpkg -S`` answers
on a host whose dpkg database is its own (a debootstrap root, see
`tests.lab.debian_root`). This module makes what that host upgrades to:

- `FakePackage` -> a ``.deb`` built by ``dpkg-deb`` from a small spec: files,
  systemd units, and the maintainer scripts debhelper 13 would write for them
  (enable the unit; restart it after an upgrade with ``_dh_action=restart``);
- `repack` -> an existing ``.deb`` (a real ``containerd``, say) with a new
  version number and otherwise the same contents and scripts;
- `write_repo` -> a flat repository (``deb [trusted=yes] file:/dir ./``): the
  packages, ``Packages`` by ``apt-ftparchive``, and a ``Release`` whose
  Origin/Label/Suite are what ``apt-get -s`` prints as the origin.

Nothing here touches this machine's dpkg database: ``dpkg-deb`` only reads and
writes files.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

#: The debhelper 13 snippets, as dh_installsystemd writes them in bookworm.
_ENABLE = """\
# Automatically added by dh_installsystemd/13.11.4
if [ "$1" = "configure" ] || [ "$1" = "abort-upgrade" ] || [ "$1" = "abort-deconfigure" ] || [ "$1" = "abort-remove" ] ; then
	# was-enabled defaults to true, so new installations run enable.
	if deb-systemd-helper --quiet was-enabled {units}; then
		# Enables the unit on first installation, creates new
		# symlinks on upgrades if the unit file has changed.
		deb-systemd-helper enable {units} >/dev/null || true
	else
		# Update the statefile to add new symlinks (if any), which need to be
		# cleaned up on purge. Also remove old symlinks.
		deb-systemd-helper update-state {units} >/dev/null || true
	fi
fi
# End automatically added section
"""
_RESTART = """\
# Automatically added by dh_installsystemd/13.11.4
if [ "$1" = "configure" ] || [ "$1" = "abort-upgrade" ] || [ "$1" = "abort-deconfigure" ] || [ "$1" = "abort-remove" ] ; then
	if [ -d /run/systemd/system ]; then
		systemctl --system daemon-reload >/dev/null || true
		if [ -n "$2" ]; then
			_dh_action=restart
		else
			_dh_action=start
		fi
		deb-systemd-invoke $_dh_action {units} >/dev/null || true
	fi
fi
# End automatically added section
"""
_START_ONLY = """\
# Automatically added by dh_installsystemd/13.11.4
if [ "$1" = "configure" ] || [ "$1" = "abort-upgrade" ] || [ "$1" = "abort-deconfigure" ] || [ "$1" = "abort-remove" ] ; then
	if [ -d /run/systemd/system ]; then
		systemctl --system daemon-reload >/dev/null || true
		deb-systemd-invoke start {units} >/dev/null || true
	fi
fi
# End automatically added section
"""
_PRERM_STOP_ON_REMOVE = """\
# Automatically added by dh_installsystemd/13.11.4
if [ -z "${{DPKG_ROOT:-}}" ] && [ "$1" = remove ] && [ -d /run/systemd/system ] ; then
	deb-systemd-invoke stop {units} >/dev/null || true
fi
# End automatically added section
"""


@dataclass(frozen=True)
class FakePackage:
    """A package to build: its control fields, files, units and scripts.

    `units` maps a unit name to its text (installed in ``/lib/systemd/system``).
    `restart_on_upgrade` says what the postinst does with the units after an
    upgrade, as debhelper writes it: restart them (the default,
    ``_dh_action=restart``) or only start them (``--no-restart-after-upgrade``).
    """

    name: str
    version: str
    description: str = "aegir lab package"
    depends: tuple[str, ...] = ()
    architecture: str = "all"
    section: str = "misc"
    files: Mapping[str, str | bytes] = field(default_factory=dict)
    units: Mapping[str, str] = field(default_factory=dict)
    restart_on_upgrade: bool = True
    postinst: str | None = None  # a postinst of its own (e.g. one that fails), instead of debhelper's

    def control(self) -> str:
        lines = [
            f"Package: {self.name}",
            f"Version: {self.version}",
            f"Architecture: {self.architecture}",
            "Maintainer: aegir lab <lab@aegir.invalid>",
            f"Section: {self.section}",
            "Priority: optional",
        ]
        if self.depends:
            lines.append("Depends: " + ", ".join(self.depends))
        lines.append(f"Description: {self.description}")
        return "\n".join(lines) + "\n"

    def scripts(self) -> dict[str, str]:
        """Maintainer scripts (``postinst``, ``prerm``), empty when there are no units and no own postinst."""
        if self.postinst is not None:
            return {"postinst": self.postinst}
        if not self.units:
            return {}
        units = " ".join(f"'{u}'" for u in sorted(self.units))
        after = _RESTART if self.restart_on_upgrade else _START_ONLY
        return {
            "postinst": "#!/bin/sh\nset -e\n" + _ENABLE.format(units=units) + after.format(units=units),
            "prerm": "#!/bin/sh\nset -e\n" + _PRERM_STOP_ON_REMOVE.format(units=units),
        }


def build(pkg: FakePackage, outdir: Path) -> Path:
    """Build `pkg` with ``dpkg-deb`` into `outdir`; returns the ``.deb``."""
    outdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="aegir-deb-") as tmp:
        root = Path(tmp) / "root"
        (root / "DEBIAN").mkdir(parents=True)
        (root / "DEBIAN" / "control").write_text(pkg.control())
        for name, text in pkg.scripts().items():
            script = root / "DEBIAN" / name
            script.write_text(text)
            script.chmod(0o755)
        files = {**pkg.files, **{f"/lib/systemd/system/{u}": t for u, t in pkg.units.items()}}
        for path, content in files.items():
            target = root / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content.encode() if isinstance(content, str) else content)
            executable = "/bin/" in path or "/sbin/" in path
            target.chmod(0o755 if executable else 0o644)
        out = outdir / f"{pkg.name}_{pkg.version.replace(':', '%3a')}_{pkg.architecture}.deb"
        _dpkg_deb_build(root, out)
    return out


def repack(deb: Path, version: str, outdir: Path) -> Path:
    """`deb` with its Version set to `version` (same files, same scripts)."""
    outdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="aegir-repack-") as tmp:
        root = Path(tmp) / "root"
        subprocess.run(["dpkg-deb", "-R", str(deb), str(root)], check=True, capture_output=True)
        control = root / "DEBIAN" / "control"
        fields = control.read_text().splitlines()
        control.write_text("".join(
            (f"Version: {version}" if line.startswith("Version:") else line) + "\n" for line in fields))
        arch = next(line.split(":", 1)[1].strip() for line in fields if line.startswith("Architecture:"))
        name = next(line.split(":", 1)[1].strip() for line in fields if line.startswith("Package:"))
        out = outdir / f"{name}_{version.replace(':', '%3a')}_{arch}.deb"
        _dpkg_deb_build(root, out)
    return out


def _dpkg_deb_build(root: Path, out: Path) -> None:
    # gzip -1: these packages live for one test run; speed over size.
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "-z1", "--build", str(root), str(out)],
                   check=True, capture_output=True)


@dataclass(frozen=True)
class Release:
    """What a repository's Release file says about it (apt prints ``Label:Version/Suite``)."""

    origin: str = "aegir-lab"
    label: str = "aegir-lab"
    suite: str = "lab"
    codename: str = "lab"
    version: str = "1"


def write_repo(repo: Path, debs: list[Path], release: Release = Release()) -> Path:
    """A flat repository in `repo` holding `debs` (copied), indexed by apt-ftparchive.

    Returns `repo`; its sources line is ``deb [trusted=yes] file:<repo> ./``.
    Packages already in `repo` stay (add a newer version, re-index).
    """
    repo.mkdir(parents=True, exist_ok=True)
    for deb in debs:
        if deb.parent.resolve() != repo.resolve():
            shutil.copy2(deb, repo / deb.name)
    packages = subprocess.run(["apt-ftparchive", "packages", "."], cwd=repo, check=True,
                              capture_output=True, text=True).stdout
    (repo / "Packages").write_text(packages)
    opts = [f"-oAPT::FTPArchive::Release::{k}={v}" for k, v in (
        ("Origin", release.origin), ("Label", release.label), ("Suite", release.suite),
        ("Codename", release.codename), ("Version", release.version))]
    (repo / "Release").unlink(missing_ok=True)
    text = subprocess.run(["apt-ftparchive", *opts, "release", "."], cwd=repo, check=True,
                          capture_output=True, text=True).stdout
    (repo / "Release").write_text(text)
    return repo


def sources_line(repo_in_host: str) -> str:
    """The one-line apt source of a flat repo at `repo_in_host` (a path on the host)."""
    return f"deb [trusted=yes] file:{repo_in_host} ./\n"
