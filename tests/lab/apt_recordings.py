"""Record the apt/dpkg outputs the unit tests parse, from real Debian 12 and 13 roots.

    python -m tests.lab.apt_recordings [WORKDIR]     # default /var/cache/aegir-lab/recordings

For each of bookworm and trixie: a ``debootstrap --variant=minbase`` root
(kept in WORKDIR), its Debian sources *and* the matching ``-security`` suite,
the lab's stage-1 fake packages installed with ``dpkg -i`` (one of them held
with ``apt-mark hold``), and a local flat repository holding their stage-2
versions; on trixie, where minbase is already current, ``libeot0`` is
installed at its trixie version so that the trixie-security update shows.
Then, inside the root (``chroot``, in a private mount namespace with its own
/proc), with ``LC_ALL=C``:

- ``apt-get -s upgrade`` and ``apt-get -s dist-upgrade``
- ``apt-mark showhold``
- ``dpkg -S`` on unit paths in both their /lib and /usr/lib spellings

Each output is written to ``tests/unit/data/apt_<suite>_<what>.txt`` with the
command's stderr after a ``--- stderr`` line and its exit code after
``--- exit``, so the parsers see exactly what the host printed.

Nothing touches this machine's own dpkg database: every dpkg/apt command runs
chrooted into the recording root.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.lab import aptrepo, lab_packages
from tests.lab.debian_root import chroot_run, debian_mirror

DATA = Path(__file__).resolve().parent.parent / "unit" / "data"
SUITES = {
    "bookworm": {"extra": []},
    "trixie": {"extra": ["libeot0=0.01-5+b2"]},
}
REPO_IN_ROOT = "/opt/aegir-lab-repo"


def prepare(workdir: Path, suite: str) -> Path:
    root = workdir / suite
    if not (root / ".aegir-recording").exists():
        mirror = debian_mirror()
        subprocess.run(["debootstrap", "--variant=minbase", "--include=init-system-helpers", suite, str(root),
                        mirror], check=True, capture_output=True)
        security = mirror.rstrip("/") + "-security"
        (root / "etc/apt/sources.list").write_text(
            f"deb {mirror} {suite} main\ndeb {security} {suite}-security main\n"
            + aptrepo.sources_line(REPO_IN_ROOT))
        (root / ".aegir-recording").write_text("stage 0\n")
    debs = workdir / f"{suite}-debs"
    stage1 = [aptrepo.build(p, debs / "1") for p in lab_packages.packages(1)]
    stage2 = [aptrepo.build(p, debs / "2") for p in lab_packages.packages(2)]
    repo = root / REPO_IN_ROOT.lstrip("/")
    aptrepo.write_repo(repo, stage2)
    inbox = root / "tmp" / "aegir-stage1"
    inbox.mkdir(parents=True, exist_ok=True)
    for deb in stage1:
        (inbox / deb.name).write_bytes(deb.read_bytes())
    chroot_run(root, ["apt-get", "update", "-q"])
    chroot_run(root, ["sh", "-c", "dpkg -i /tmp/aegir-stage1/*.deb"])
    chroot_run(root, ["apt-mark", "hold", *lab_packages.HELD])
    if SUITES[suite]["extra"]:
        chroot_run(root, ["apt-get", "install", "-y", "-q", "--no-install-recommends", *SUITES[suite]["extra"]])
    return root


def record(root: Path, suite: str) -> list[Path]:
    paths = ["/lib/systemd/system/aegir-lab-beacon.service", "/usr/lib/systemd/system/aegir-lab-beacon.service",
             "/bin/sh", "/usr/bin/sh", "/lib/systemd/system/no-such.service"]
    commands = {
        "upgrade": ["apt-get", "-s", "upgrade"],
        "dist_upgrade": ["apt-get", "-s", "dist-upgrade"],
        "showhold": ["apt-mark", "showhold"],
        "dpkg_S": ["dpkg", "-S", *paths],
    }
    written = []
    for what, argv in commands.items():
        done = chroot_run(root, argv, check=False)
        out = DATA / f"apt_{suite}_{what}.txt"
        out.write_text(done.stdout + "--- stderr\n" + done.stderr + f"--- exit {done.returncode}\n")
        written.append(out)
    return written


def main(argv: list[str]) -> int:
    workdir = Path(argv[0]) if argv else Path("/var/cache/aegir-lab/recordings")
    workdir.mkdir(parents=True, exist_ok=True)
    for suite in SUITES:
        root = prepare(workdir, suite)
        for path in record(root, suite):
            print(path.relative_to(DATA.parent.parent.parent))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
