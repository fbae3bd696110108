"""A lab host whose ``/`` is a Debian 12 root of its own: real apt, real dpkg, its own database.

The update tests upgrade packages for real. They cannot do it on this
machine's dpkg database (its real containerd runs the lab), so this host gets
its own root:

- `build_root` makes it once with ``debootstrap --variant=minbase bookworm``
  plus ``openssh-server docker.io systemd``, installs the lab's stage-1
  packages (`tests.lab.lab_packages`) with ``dpkg -i``, holds one, adds the
  admin's docker.service drop-in, points apt at two local ``file:``
  repositories only (no network at test time), and caches the result under
  ``/var/cache/aegir-lab/debian-root/bookworm-<key>/root`` (``<key>`` hashes
  everything that goes into it). About 40 s cold; nothing when cached.
- the lab's init (``tests/lab/hostinit.py``, spec key ``rootfs``) mounts an
  overlay of that cached root (read-only lower layer, writes in the host's own
  directory) and pivots into it, so each lab run starts from the same root
  and never changes the cache.
- `publish_upgrades` fills the host's repositories with the stage-2 versions
  (and a repacked real ``containerd``) at test time.

systemd is installed but not running (the host is a process tree, not a
booted system). Its ``systemctl show`` is answered by
``tests/lab/systemctl-lab.pl``, installed as ``/usr/local/sbin/systemctl``:
the unit graph comes from systemd's own loader run offline
(``systemd --test``), and a service is active when one of the host's
processes runs its ``ExecStart`` program (sshd, dockerd, containerd and the
lab's beacon daemon are). Other verbs go to the real systemctl.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from tests.lab import aptrepo, lab_packages

CACHE_DIR = Path(os.environ.get("AEGIR_LAB_CACHE", "/var/cache/aegir-lab")) / "debian-root"
SUITE = "bookworm"
INCLUDE = ("openssh-server", "docker.io", "systemd")
SHIM = Path(__file__).with_name("systemctl-lab.pl")
#: Bumped when the way the root is made changes in a way the key cannot see.
RECIPE = 1
DEFAULT_MIRROR = "http://deb.debian.org/debian"
CONTAINERD_DEB = "containerd.deb"
BEACON = "/usr/sbin/aegir-lab-beacon"


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (``$AEGIR_LAB_MIRROR`` overrides it)."""
    if os.environ.get("AEGIR_LAB_MIRROR"):
        return os.environ["AEGIR_LAB_MIRROR"]
    files = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for f in files:
        try:
            text = f.read_text()
        except OSError:
            continue
        for uri in re.findall(r"(?m)^(?:URIs:\s*|deb\s+(?:\[[^\]]*\]\s+)?)(\S+)", text):
            if uri.rstrip("/").endswith("/debian"):
                return uri
    return DEFAULT_MIRROR


def recipe_key() -> str:
    """A hash of everything the cached root is made from."""
    data = {
        "recipe": RECIPE, "suite": SUITE, "include": INCLUDE,
        "packages": [(p.control(), sorted(p.files.items()), sorted(p.units.items()), p.scripts())
                     for p in lab_packages.packages(1)],
        "dropin": lab_packages.DOCKER_DROPIN, "shim": SHIM.read_text(), "held": lab_packages.HELD,
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:12]


def cached_root(cache: Path = CACHE_DIR) -> Path:
    return cache / f"{SUITE}-{recipe_key()}"


def chroot_run(root: Path, argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `argv` chrooted in `root` (private mount namespace, /proc and /sys mounted)."""
    script = ('mount -t proc proc "$1/proc" && mount --rbind /sys "$1/sys" && '
              'root=$1 && shift && exec chroot "$root" "$@"')
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                           str(root), "env", "LC_ALL=C", "DEBIAN_FRONTEND=noninteractive",
                           "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", *argv],
                          capture_output=True, text=True)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} in {root} exited {done.returncode}: "
                           f"{(done.stderr or done.stdout)[-800:]}")
    return done


def debootstrap(root: Path, packages: tuple[str, ...]) -> None:
    """A minbase Debian `SUITE` in `root` with `packages`, from the machine's mirror (RuntimeError on failure)."""
    done = subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(packages)}", SUITE,
                           str(root), debian_mirror()], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"debootstrap {SUITE} failed ({done.returncode}): {(done.stderr or done.stdout)[-800:]}")


def build_root(cache: Path = CACHE_DIR, *, log=print) -> Path:
    """The cached Debian root (its ``root/`` folder), built first if needed.

    Safe to call from several processes: one builds under a lock, the others wait.
    """
    target = cached_root(cache)
    if (target / "complete").exists():
        return target / "root"
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "complete").exists():
            return target / "root"
        started = time.monotonic()
        work = cache / f".build-{target.name}-{os.getpid()}"
        if work.exists():
            shutil.rmtree(work)
        work.mkdir()
        root = work / "root"
        log(f"aegir lab: building the Debian root {target.name} (debootstrap {SUITE}, about a minute)")
        debootstrap(root, INCLUDE)
        _configure(root, work)
        for stale in cache.glob(f"{SUITE}-*"):
            if stale != target:
                shutil.rmtree(stale, ignore_errors=True)
        if target.exists():
            shutil.rmtree(target)
        work.rename(target)
        (target / "complete").write_text(f"built in {time.monotonic() - started:.0f} s\n")
        log(f"aegir lab: Debian root ready in {time.monotonic() - started:.0f} s: {target}")
    return target / "root"


def _configure(root: Path, work: Path) -> None:
    """Stage-1 packages, hold, drop-in, systemctl shim, local-only apt sources."""
    archives = root / "var/cache/apt/archives"
    containerd = sorted(archives.glob("containerd_*.deb"))
    if not containerd:
        raise RuntimeError(f"debootstrap left no containerd .deb in {archives}")
    shutil.copy2(containerd[-1], work / CONTAINERD_DEB)
    inbox = root / "tmp/aegir-stage1"
    for pkg in lab_packages.packages(1):
        aptrepo.build(pkg, inbox)
    chroot_run(root, ["sh", "-c", "dpkg -i /tmp/aegir-stage1/*.deb"])
    shutil.rmtree(inbox)
    chroot_run(root, ["apt-mark", "hold", *lab_packages.HELD])
    path, text = lab_packages.DOCKER_DROPIN
    (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
    (root / path.lstrip("/")).write_text(text)
    shim = root / "usr/local/sbin/systemctl"
    shutil.copy2(SHIM, shim)
    shim.chmod(0o755)
    (root / "etc/apt/sources.list").write_text(
        "# aegir lab: local repositories only (tests/lab/debian_root.py)\n"
        + aptrepo.sources_line(lab_packages.REPO_DIR) + aptrepo.sources_line(lab_packages.SECURITY_DIR))
    for d in (lab_packages.REPO_DIR, lab_packages.SECURITY_DIR):
        aptrepo.write_repo(root / d.lstrip("/"), [], lab_packages.LAB_RELEASE)
    chroot_run(root, ["apt-get", "clean"])
    for lists in (root / "var/lib/apt/lists").glob("*_*"):
        lists.unlink()
    # sshd host keys made by the package are not used: the lab gives each host its own.
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()


def publish_upgrades(host_root: Path, containerd_deb: Path, scratch: Path) -> list[Path]:
    """Put the stage-2 packages in the host's repositories (paths seen from outside).

    `host_root` is the host's ``/`` as seen from here (``/proc/<pid>/root``).
    Returns the ``.deb`` files published.
    """
    debs = [aptrepo.build(p, scratch) for p in lab_packages.packages(2)]
    version = _deb_field(containerd_deb, "Version") + "+aegirlab1"
    containerd = aptrepo.repack(containerd_deb, version, scratch)
    security = [d for d in debs if d.name.split("_")[0] in lab_packages.security_names()]
    plain = [d for d in debs if d not in security] + [containerd]
    for where, debs_in, release in ((lab_packages.REPO_DIR, plain, lab_packages.LAB_RELEASE),
                                    (lab_packages.SECURITY_DIR, security, lab_packages.SECURITY_RELEASE)):
        # indexed here (apt-ftparchive cannot work in /proc/<pid>/root), then copied in
        built = aptrepo.write_repo(scratch / "repos" / where.strip("/").replace("/", "_"), debs_in, release)
        shutil.copytree(built, host_root / where.lstrip("/"), dirs_exist_ok=True)
    return [*plain, *security]


def publish(host, debs: list[Path], scratch: Path) -> None:
    """`debs` added to the host's repository, and the host's package lists refreshed (a timer's job)."""
    repo = host.root(lab_packages.REPO_DIR)
    built = aptrepo.write_repo(scratch / "repo", [*repo.glob("*.deb"), *debs], lab_packages.LAB_RELEASE)
    subprocess.run(["cp", "-a", f"{built}/.", str(repo)], check=True)  # apt-ftparchive cannot index in /proc/<pid>/root
    host.run(["apt-get", "update", "-q"], timeout=120)


def _deb_field(deb: Path, name: str) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), name], check=True, capture_output=True,
                          text=True).stdout.strip()


def start_services(host) -> None:
    """Start what systemd would start at boot and the lab does not: the beacon daemon."""
    host.run(["sh", "-c", 'setsid -f "$0" >/dev/null 2>&1 </dev/null', BEACON])


def add_debian_host(lab, name: str | None = None, *, upgrades: bool = True, log=print):
    """A Debian-root host in `lab` (its beacon running) with the stage-2 upgrades published or not."""
    root = build_root(log=log)
    host = lab.add_host(name, rootfs=str(root))
    start_services(host)
    if upgrades:
        publish_upgrades(host.root(), root.parent / CONTAINERD_DEB, host.paths.dir / "debs")
    return host
