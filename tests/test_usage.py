"""Usage errors: every bad flag value, unknown task or flag, missing argument and mistyped target exits 2
with one line ``aegir: ...`` naming the task or the flag and what would do, never a traceback.

No lab: the inventory's live host is this machine (``local``, its /srv a test folder); the other hosts are
never reached, since a usage error stops the program before it connects.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import run_inv, usage_error, write_inventory

INVENTORY = """\
defaults:
  dns:
    service_domain: tedomum.in
    cname_domain: tedomum.net
    rest_domain: tedomum.org
    nameservers: [ns.example.com]
hosts:
  local:
    connection: local
    srv: {srv}
    srv_mount: false
"""
#: Hosts nothing answers at (a documentation address, a name that does not resolve): never contacted.
ELSEWHERE = """\
  hyp1:
    address: 192.0.2.254
    groups: [prod]
  hyp2:
    address: hyp2.tedomum.org
    groups: [prod]
"""


@pytest.fixture(scope="module")
def inventories(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the local host alone, the local host and two hosts nothing answers at)."""
    root = tmp_path_factory.mktemp("usage")
    (root / "srv/apps/cloud").mkdir(parents=True)
    (root / "srv/apps/cloud/docker-compose.yml").write_text("services:\n  web:\n    image: busybox\n")
    (root / "fleet").mkdir()
    local = write_inventory(root, INVENTORY.format(srv=root / "srv"))
    return local, write_inventory(root / "fleet", INVENTORY.format(srv=root / "srv") + ELSEWHERE)


#: (argv, what the one line must say): the task or flag, and what is accepted or meant.
BAD = [
    # values a flag's kind refuses when the command line is parsed
    (["disk.report", "--warn", "abc"], "aegir: disk.report --warn: expected a percentage from 0 to 100 (90 or 90%)"),
    (["disk.report", "--warn", "101%"], "aegir: disk.report --warn: expected a percentage"),
    (["disk.report", "--top", "x"], "aegir: disk.report --top: expected a whole number (0 or more), not 'x'"),
    (["disk.report", "-f", "yaml"], "aegir: disk.report --format: expected table, json or prometheus, not 'yaml'"),
    (["net.plan", "--format", "prometheus"], "aegir: net.plan --format: expected table or json, not 'prometheus'"),
    (["dns.zone", "--serial", "abc"], f"aegir: dns.zone --serial: expected a SOA serial from 1 to {2**32 - 1}"),
    (["dns.zone", "--serial", str(2**32)], "aegir: dns.zone --serial: expected a SOA serial"),
    (["dns.check", "--timeout", "0"], "aegir: dns.check --timeout: expected a number of seconds above 0"),
    (["dns.check", "--server", "not an address"], "aegir: dns.check --server: "),
    (["mysql.wal", "--over", "12Q"], "aegir: mysql.wal --over: expected a size such as 500M or 2G"),
    (["mysql.checkpoint", "cloud", "--mode", "warm"], "aegir: mysql.checkpoint --mode: expected cold or hot"),
    (["mysql.checkpoint", "cloud", "--keep", "-1"], "aegir: mysql.checkpoint --keep: expected a whole number"),
    (["apps.up", "cloud", "-s", "0"], "aegir: apps.up --serial: expected a number of hosts (1 or more)"),
    (["update.apply", "--serial", "150%"], "aegir: update.apply --serial: expected a number of hosts"),
    (["apps.up", "cloud", "--parallel", "0"], "aegir: apps.up --parallel: expected a whole number (1 or more)"),
    (["apps.logs", "cloud", "--tail", "ten"], "aegir: apps.logs --tail: expected a whole number (0 or more)"),
    (["boot.guard", "--root", "relative/dir"], "aegir: boot.guard --root: expected an absolute path"),
    (["-t", "soon", "disk.report"], "aegir: --connect-timeout: expected a whole number (1 or more), not 'soon'"),
    (["fw.render", "--from-json", "/nonexistent/inspect.json"],
     "aegir: fw.render --from-json: cannot read /nonexistent/inspect.json: No such file or directory"),
    (["fw.diff", "--template", "/nonexistent/nftables.nft.j2"], "aegir: fw.diff --template: cannot read "),
    # names
    (["apps.new", "a b", "--template", "static"], "aegir: apps.new --names: expected a folder name (letters, "),
    (["apps.up", "cloud;reboot"], "aegir: apps.up --names: invalid project name 'cloud;reboot'"),
    (["apps.logs", "cloud,wiki"], "aegir: apps.logs --names: expected one project"),
    (["update.apply", "--hold", "BADNAME"], "aegir: update.apply --hold: invalid package name 'BADNAME': "),
    (["update.apply", "--hold", "ok", "--hold", "docker-ce,Bad"], "aegir: update.apply --hold: invalid package "
                                                                   "name 'Bad': "),
    (["mysql.checkpoint", "cloud", "--service", "db;reboot"], "aegir: mysql.checkpoint --service: expected one "
                                                              "Compose service name"),
    (["mysql.restore", "cloud", "--at", "x y", "--into", "/srv/scratch"], "aegir: mysql.restore --at: expected a "
                                                                          "checkpoint's id"),
    # disk.clean of a missing app ("did you mean"): tests/test_disk.py, on a mounted /srv (this one is a plain
    # folder: a host whose /srv is not mounted fails disk.clean before any name is looked for)
    (["apps.logs", "clowd"], "aegir: no project 'clowd' on any target host (did you mean cloud?)"),
    (["dns.zone", "--domain", "tedomum.nt"], "aegir: dns.zone --domain: no zone 'tedomum.nt' "
                                             "(did you mean 'tedomum.net'?)"),
    # missing arguments and values
    (["apps.up"], "aegir: apps.up: name the projects (NAMES: cloud or cloud,users/wiki) or give --all"),
    (["mysql.restore", "cloud"], "aegir: mysql.restore needs --at and --into: inv mysql.restore NAME AT INTO"),
    (["update.announce"], "aegir: update.announce: --message is required"),
    (["disk.report", "--format"], "aegir: disk.report --format needs a value: table, json or prometheus"),
    (["disk.report", "-H"], "aegir: --hosts needs a value"),
    # unknown tasks and flags
    (["disk.reprot"], "aegir: no task 'disk.reprot' (did you mean 'disk.report'?)"),
    (["--help", "disk.reprot"], "aegir: no task 'disk.reprot' (did you mean 'disk.report'?)"),
    (["disk"], "aegir: 'disk' is a namespace, not a task: disk.clean, disk.prune, disk.report"),
    (["disk.report", "--frmat", "json"], "aegir: disk.report has no flag --frmat (did you mean '--format'?)"),
    (["apps.up", "cloud", "wiki"], "aegir: apps.up: unexpected argument 'wiki' (give several names "
                                   "comma-separated: cloud,wiki)"),
    (["-f", "json", "disk.report"], "aegir: -f is a flag of disk.report, not of the program: put it after the task"),
    (["--list", "dsk"], "aegir: --list: no namespace 'dsk' (did you mean 'disk'?)"),
]

#: Targets: typos in -H and --exclude (the inventory with hosts nothing answers at).
BAD_TARGETS = [
    (["-H", "hyp3", "disk.report"], "aegir: unknown host or group 'hyp3' (did you mean 'hyp2'?)"),
    (["-H", "all,!hyp3.tedomum.rog", "disk.report"],
     "aegir: unknown host or group 'hyp3.tedomum.rog' to leave out (did you mean 'hyp2.tedomum.org'?)"),
    (["-H", "!hpy2:22", "disk.report"], "aegir: unknown host or group 'hpy2:22' to leave out (did you mean 'hyp2'?)"),
    (["--exclude", "192.0.2.33", "disk.report"], "aegir: unknown host or group '192.0.2.33' to leave out in "),
    (["--exclude", "prd", "disk.report"], "aegir: unknown host or group 'prd' to leave out (did you mean 'prod'?)"),
]


@pytest.mark.parametrize("argv, said", BAD + BAD_TARGETS, ids=[" ".join(a) for a, _ in BAD + BAD_TARGETS])
def test_a_usage_error_exits_2_with_one_line_naming_the_task_or_flag(inventories, argv, said):
    local, fleet = inventories
    line = usage_error(*argv, inventory=fleet if (argv, said) in BAD_TARGETS else local)
    assert "\n" not in line, line
    assert line.startswith(said), line


def test_a_percentage_is_taken_with_or_without_its_sign_as_the_help_says(inventories):
    local, _ = inventories
    for warn in ("90", "90%"):
        done = run_inv("disk.report", "--fast", "--warn", warn, "--format", "json", inventory=local, timeout=60)
        assert done.returncode in (0, 1) and "Traceback" not in done.stderr, done.stderr


def test_d_is_dry_before_and_after_the_task_name(inventories):
    """``inv -d apps.up cloud`` was Invoke's --debug (a real run); ``-d`` is --dry on both sides now."""
    local, _ = inventories
    for argv in (["-d", "apps.up", "cloud", "--force"], ["apps.up", "cloud", "--force", "-d"],
                 ["-R", "apps.up", "cloud", "--force"]):
        done = run_inv(*argv, "--format", "json", inventory=local, timeout=60)
        assert '"dry": true' in done.stdout, (argv, done.stdout, done.stderr)
