"""Which units an upgrade restarts, read from real Debian 12 maintainer scripts (tests/unit/data/apt_scripts_bookworm)."""

from __future__ import annotations

from pathlib import Path

from aegir.update.scripts import Restart, restarts

SCRIPTS = Path(__file__).parent / "data" / "apt_scripts_bookworm"


def scripts_of(package: str) -> dict[str, str]:
    """The package's scripts as an upgrade runs them (same version as old and new)."""
    out = {}
    for kind in ("preinst", "postinst", "prerm", "postrm"):
        f = SCRIPTS / f"{package}.{kind}"
        if f.exists():
            out[f"new-{kind}"] = out[f"old-{kind}"] = f.read_text()
    return out


def test_containerd_restarts_its_service_through_debhelpers_dh_action():
    assert restarts(scripts_of("containerd")) == (
        Restart("containerd.service", "new-postinst", "deb-systemd-invoke restart (debhelper's $_dh_action on upgrade)"),
    )


def test_openssh_server_restarts_ssh_but_not_through_invoke_rc_d_for_sysvinit():
    units = [r.unit for r in restarts(scripts_of("openssh-server"))]
    assert units == ["rescue-ssh.target", "ssh.service", "ssh.socket"]


def test_docker_io_only_starts_docker_and_stops_it_on_remove():
    assert restarts(scripts_of("docker.io")) == ()


def test_dbus_is_not_restarted_on_upgrade():
    assert restarts(scripts_of("dbus")) == ()


def test_nftables_try_restarts_after_an_upgrade():
    assert restarts(scripts_of("nftables")) == (
        Restart("nftables.service", "new-postinst", "deb-systemd-invoke try-restart"),)


def test_a_stop_in_prerm_on_upgrade_then_a_start_is_a_restart():
    prerm = """#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
	deb-systemd-invoke stop 'foo.service' >/dev/null
fi
"""
    postinst = """#!/bin/sh
if [ "$1" = "configure" ]; then
	deb-systemd-invoke start 'foo.service' >/dev/null || true
fi
"""
    assert restarts({"old-prerm": prerm, "new-postinst": postinst}) == (
        Restart("foo.service", "old-prerm+new-postinst", "stop, then start"),)


def test_a_case_branch_for_remove_does_not_run_on_upgrade():
    prerm = """#!/bin/sh
case "$1" in
    remove|deconfigure)
        invoke-rc.d foo stop
        ;;
    upgrade)
        systemctl restart bar.service
        ;;
esac
"""
    assert restarts({"old-prerm": prerm}) == (Restart("bar.service", "old-prerm", "systemctl restart"),)


def test_a_start_on_first_install_only_is_no_restart():
    postinst = """#!/bin/sh
if [ -z "$2" ]; then
	deb-systemd-invoke restart foo.service
fi
"""
    assert restarts({"new-postinst": postinst}) == ()
