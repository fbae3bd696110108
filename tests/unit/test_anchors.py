"""Validators of names that come from hosts or hosts.yml end at the end of the text, not before a last newline.

Python's ``$`` also matches just before a trailing newline, so ``re.match(r"^x$", "x\\n")``
succeeds: a package, unit, interface or DNS label ending in a newline would have passed
into argv, an nft ruleset or a zone file line.
"""

from __future__ import annotations

import pytest

from aegir.compose import commands as compose
from aegir.disk import facts as disk_facts
from aegir.disk import recipe
from aegir.dns import check as dns_check
from aegir.dns import names, services
from aegir.errors import AegirError
from aegir.fw import settings as fw_settings
from aegir.mysql import facts as mysql_facts
from aegir.mysql import onhost
from aegir.update import apt

CHECKS = [
    (apt.check_package, "curl"),
    (apt.check_version, "1.2.3-1+deb12u1"),
    (apt.check_unit, "ssh.service"),
    (names.check_relative, "www"),
    (names.domain, "tedomum.in"),
]

PATTERNS = [
    (apt._UNIT_PATH_RE, "/lib/systemd/system/ssh.service"),
    (apt._INITD_RE, "/etc/init.d/ssh"),
    (fw_settings.IFNAME_RE, "br-*"),
    (compose._VERSION_RE, "2.40.3"),
    (mysql_facts._BINLOG_NAME, "binlog.000001"),
    (onhost._NAME_RE, "cloud"),
    (onhost._BINLOG_RE, "binlog.000001"),
    (recipe._VAR, "ADMIN_TOKEN"),
    (disk_facts._HEX64, "a" * 64),
    (dns_check.SERVER_RE, "[2001:db8::53]:53"),
    (names.LABEL_RE, "www"),
    (names.SERVICE_LABEL_RE, "_xmpp-client"),
    (services.SRV_RE, "_xmpp-client._tcp:5222 10"),
    (services.MX_RE, "mx 10"),
]


@pytest.mark.parametrize("check, good", CHECKS, ids=[c.__name__ for c, _ in CHECKS])
def test_a_checked_name_with_a_trailing_newline_is_refused(check, good):
    assert check(good)
    with pytest.raises((ValueError, AegirError)):
        check(good + "\n")


@pytest.mark.parametrize("pattern, good", PATTERNS, ids=[p.pattern[:30] for p, _ in PATTERNS])
def test_a_pattern_matches_the_whole_text_and_no_trailing_newline(pattern, good):
    assert pattern.match(good)
    assert pattern.match(good + "\n") is None
