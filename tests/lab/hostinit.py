"""The init of one lab host (stdlib only; run as a script, not imported).

Started by the lab as::

    nsenter --net=/run/netns/<prefix>-<host> \\
      unshare --mount --uts --propagation private \\
      python -I -S hostinit.py <host>/spec.json <ready-fd>

so it already sits in the host's network namespace and in fresh, private
mount and UTS namespaces. It then makes the host:

1. becomes a child subreaper, so daemons that detach stay in its process tree;
2. sets the hostname;
3. mounts a sysfs of this netns on /sys (keeping the cgroup mounts Docker needs);
4. mounts a private tmpfs on /run: /run/docker.sock, /run/sshd, Docker's
   containerd are this host's own, at their stock paths;
5. bind-mounts the host's /etc/hostname and /etc/fstab, and an empty file over
   /root/.bashrc: a hypervisor does not run this machine's ~/.bashrc (here:
   `pyenv init`, ~0.06 s of CPU) in every SSH session (the rest of /root stays:
   the venv's python links into /root/.pyenv);
6. bind-mounts /srv (variant "bind"; variant "loop" leaves it to ``mount /srv``);
7. runs the start scripts (sshd, then dockerd unless told not to);
8. says ``ready`` (or ``error: …``) on the ready fd, then reaps orphans until
   SIGTERM.

``rootfs`` in the spec makes a host whose ``/`` is a Debian root of its own
(tests/lab/debian_root.py): after step 4, an overlay of that (read-only)
tree, writes kept in ``<host>/rootfs.upper``, becomes the namespace's ``/``
by ``pivot_root``, with /proc, /sys, /dev, /run, the lab's workdir and the
Compose CLI plugin bound in at the same paths, so steps 5-8 run unchanged.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time

PR_SET_CHILD_SUBREAPER = 36


def sh(*argv: str) -> None:
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {(done.stderr or done.stdout).strip()[-400:]}")


def setup(spec: dict) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    os.chdir("/")
    socket.sethostname(spec["name"])
    keep = os.path.join(spec["dir"], ".cgroup")
    os.makedirs(keep, exist_ok=True)
    sh("mount", "--rbind", "/sys/fs/cgroup", keep)
    sh("mount", "-t", "sysfs", "sysfs", "/sys")
    sh("mount", "--move", keep, "/sys/fs/cgroup")
    sh("mount", "-t", "tmpfs", "-o", "mode=755,nosuid,nodev", "tmpfs", "/run")
    for d in ("/run/sshd", "/run/lock"):
        os.makedirs(d, exist_ok=True)
    if spec.get("rootfs"):
        enter_rootfs(spec)
    elif os.path.isfile("/root/.bashrc"):
        empty = os.path.join(spec["dir"], "bashrc")
        open(empty, "w").close()
        sh("mount", "--bind", empty, "/root/.bashrc")
    for target, source in spec["etc"].items():
        sh("mount", "--bind", source, target)
    if spec.get("srv_bind"):
        os.makedirs("/srv", exist_ok=True)
        sh("mount", "--bind", spec["srv_bind"], "/srv")
    for script in spec["start"]:
        sh(script)


def enter_rootfs(spec: dict) -> None:
    """Pivot into an overlay of ``spec["rootfs"]``; the lab's paths stay where they were."""
    new = os.path.join(spec["dir"], "rootfs")
    upper, work = new + ".upper", new + ".work"
    for d in (new, upper, work):
        os.makedirs(d, exist_ok=True)
    sh("mount", "-t", "overlay", "overlay", "-o", f"lowerdir={spec['rootfs']},upperdir={upper},workdir={work}", new)
    binds = [("--rbind", d) for d in ("/proc", "/sys", "/dev", "/run")] + [("--bind", os.path.dirname(spec["dir"]))]
    binds += [("--bind", d) for d in ("/usr/local/lib/docker/cli-plugins",) if os.path.isdir(d)]
    for how, path in binds:
        os.makedirs(new + path, exist_ok=True)
        sh("mount", how, path, new + path)
    for target in spec["etc"]:
        if not os.path.exists(new + target):
            open(new + target, "a").close()
    os.makedirs(os.path.join(new, ".oldroot"), exist_ok=True)
    os.chdir(new)
    sh("pivot_root", ".", ".oldroot")
    os.chdir("/")
    sh("umount", "-l", "/.oldroot")
    os.rmdir("/.oldroot")


def reap_forever() -> None:
    def reap(*_: object) -> None:
        while True:
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return

    signal.signal(signal.SIGCHLD, reap)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    reap()
    while True:
        signal.pause()


def main() -> None:
    spec_path, ready_fd = sys.argv[1], int(sys.argv[2])
    started = time.monotonic()
    try:
        with open(spec_path, encoding="utf-8") as f:
            spec = json.load(f)
        setup(spec)
    except Exception as exc:  # reported to the lab, which raises it
        os.write(ready_fd, f"error: {exc}\n".encode())
        sys.exit(1)
    os.write(ready_fd, f"ready {time.monotonic() - started:.2f}\n".encode())
    os.close(ready_fd)
    print(f"{spec['name']}: ready", flush=True)
    reap_forever()


if __name__ == "__main__":
    main()
