"""The fake packages a Debian-root lab host has installed (stage 1) and upgrades to (stage 2).

Each one stands for a kind of upgrade `update.review` must classify:

========================  ==========================================================
``containerd``            a Docker engine package (a real one, repacked, version +1)
``aegir-lab-dockdep``     ships ``aegir-lab-dockdep.service``, which docker.service
                          Requires (a drop-in the host's admin wrote)
``aegir-lab-beacon``      ships an active daemon its postinst restarts
                          (debhelper ``_dh_action=restart``); crucial in the lab
``linux-image-aegir-lab`` a kernel: needs a reboot
``libaegirlab-sec1``      a library from a repository labelled ``Debian-Security``
``libaegirlab1``          a plain library: other
``aegir-lab-held``        held (``apt-mark hold``): not upgraded, listed as held
``aegir-lab-newdep``      its new version needs a new package: kept back by
                          ``upgrade``, upgraded by ``dist-upgrade``
========================  ==========================================================
"""

from __future__ import annotations

from tests.lab.aptrepo import FakePackage, Release

#: The repositories the host's sources.list names, as paths on the host.
REPO_DIR = "/var/local/aegir-lab/repo"
SECURITY_DIR = "/var/local/aegir-lab/security"
SECURITY_RELEASE = Release(origin="Debian", label="Debian-Security", suite="lab-security",
                           codename="lab-security", version="12")
LAB_RELEASE = Release()

BEACON_UNIT = """\
[Unit]
Description=aegir lab beacon: a daemon its package restarts on upgrade

[Service]
ExecStart=/usr/sbin/aegir-lab-beacon

[Install]
WantedBy=multi-user.target
"""

DOCKDEP_UNIT = """\
[Unit]
Description=aegir lab: something docker.service requires (think: the /srv unlock)

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/true

[Install]
WantedBy=multi-user.target
"""

#: What the host's admin wrote: docker.service needs aegir-lab-dockdep.service.
DOCKER_DROPIN = ("/etc/systemd/system/docker.service.d/aegir-lab.conf", """\
[Unit]
Requires=aegir-lab-dockdep.service
After=aegir-lab-dockdep.service
""")


def _beacon_script(version: str) -> str:
    return f"#!/bin/sh\n# aegir lab beacon {version}\nwhile :; do sleep 3600; done\n"


def packages(stage: int) -> list[FakePackage]:
    """Stage 1: installed when the root is built. Stage 2: the upgrades, in the lab repo."""
    v = {1: {"beacon": "1.0-1", "dockdep": "1.0-1", "kernel": "6.1.0-1", "lib": "1.0-1", "sec": "2.0-1",
             "held": "1.0-1", "newdep": "1.0-1"},
         2: {"beacon": "1.1-1", "dockdep": "1.0-2", "kernel": "6.1.0-2", "lib": "1.0-2", "sec": "2.0-1+deb12u1",
             "held": "2.0-1", "newdep": "1.1-1"}}[stage]
    pkgs = [
        FakePackage("aegir-lab-beacon", v["beacon"], "aegir lab: a daemon restarted on upgrade",
                    files={"/usr/sbin/aegir-lab-beacon": _beacon_script(v["beacon"])},
                    units={"aegir-lab-beacon.service": BEACON_UNIT}),
        FakePackage("aegir-lab-dockdep", v["dockdep"], "aegir lab: a unit docker.service requires",
                    units={"aegir-lab-dockdep.service": DOCKDEP_UNIT}),
        FakePackage("linux-image-aegir-lab", v["kernel"], "aegir lab: a kernel (needs a reboot)",
                    files={"/boot/aegir-lab-kernel": f"kernel {v['kernel']}\n"}),
        FakePackage("libaegirlab1", v["lib"], "aegir lab: a plain library",
                    files={"/usr/lib/aegir-lab/libaegirlab.so.1": f"library {v['lib']}\n"}),
        FakePackage("libaegirlab-sec1", v["sec"], "aegir lab: a library with a security update",
                    files={"/usr/lib/aegir-lab/libaegirlab-sec.so.1": f"library {v['sec']}\n"}),
        FakePackage("aegir-lab-held", v["held"], "aegir lab: a package the admin holds",
                    files={"/usr/share/aegir-lab/held": f"held {v['held']}\n"}),
        FakePackage("aegir-lab-newdep", v["newdep"], "aegir lab: its upgrade needs a new package",
                    depends=("aegir-lab-extra",) if stage == 2 else (),
                    files={"/usr/share/aegir-lab/newdep": f"newdep {v['newdep']}\n"}),
    ]
    if stage == 2:
        pkgs.append(FakePackage("aegir-lab-extra", "1.0-1", "aegir lab: a new dependency",
                                files={"/usr/share/aegir-lab/extra": "extra\n"}))
    return pkgs


def security_names() -> set[str]:
    """Stage-2 packages published in the Debian-Security-labelled repository."""
    return {"libaegirlab-sec1"}


HELD = ("aegir-lab-held",)
