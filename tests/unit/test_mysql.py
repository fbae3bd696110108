"""mysql: the pure parts -- argument resolution, compose config reading, log ordering, commands, parsers."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from aegir.disk.facts import Archive, archive_cmd, parse_archives
from aegir.disk.report import ARCHIVE_METRICS, archive_cells, archive_samples, metrics_text
from aegir.errors import AegirError, UnreachableError
from aegir.fleet import Outcome
from aegir.inventory import Host
from aegir.mysql import onhost, steps
from aegir.mysql.commands import Options, app_path, plan_cmd, restore_cmd, restore_plan_cmd, start_cmd, streamed_cmd
from aegir.mysql.facts import RunState, parse_program, parse_run_state, parse_wal, program_text, run_state_cmd, wal_cmd
from aegir.mysql.onhost import CheckpointError
from aegir.mysql.plan import (
    Checkpointed,
    CheckpointPlan,
    CheckpointStatus,
    archive_over_limit,
    checkpoint_question,
    entry_problem,
    over_limit,
    parse_size,
)
from aegir.mysql.report import status_report
from aegir.sh import Reply

CONFIG = {
    "services": {
        "db": {"volumes": [{"type": "bind", "source": "/srv/apps/shop/db", "target": "/var/lib/mysql"},
                           {"type": "bind", "source": "/srv/apps/shop/wal", "target": "/wal"}]},
        "web": {"depends_on": {"db": {"condition": "service_started"}}},
        "worker": {},
        "cache": {"depends_on": {"redis": {}}},
    },
    "x-aegir": {"mysql": {"dependents": ["worker"], "keep": 3}},
}


def test_the_script_arguments_resolve_as_the_runbook_script_did():
    t = onhost.target("shop", srv="/srv")
    assert (t.path, t.db, t.wal, t.key) == ("/srv/apps/shop", "/srv/apps/shop/db", "/srv/apps/shop/wal", "apps-shop")
    assert t.archive == "/srv/archive/mysql/apps/shop" and t.state == "/srv/conf/aegir/mysql/apps-shop"
    t = onhost.target("/srv/users/blog", srv="/srv", basedir="data", db="mysql")
    assert (t.basedir, t.db, t.wal, t.key) == ("/srv/users/blog/data", "/srv/users/blog/data/mysql",
                                               "/srv/users/blog/data/wal", "users-blog")


def test_the_database_service_is_the_one_mounting_db_and_its_dependents_come_from_depends_on_and_x_aegir():
    assert onhost.db_service(CONFIG, "/srv/apps/shop/db") == ("db", "/var/lib/mysql")
    assert onhost.dependents(CONFIG, "db") == ("web", "worker")
    assert onhost.host_path(CONFIG, "db", "/wal") == "/srv/apps/shop/wal"
    assert onhost.host_path(CONFIG, "db", "/var/lib/mysql/binlogs") == "/srv/apps/shop/db/binlogs"
    assert onhost.host_path(CONFIG, "db", "/var/log") is None
    with pytest.raises(CheckpointError, match="cannot tell the database service: .* none"):
        onhost.db_service(CONFIG, "/srv/apps/other/db")
    with pytest.raises(CheckpointError, match="does not mount"):
        onhost.db_service(CONFIG, "/srv/apps/shop/db", "web")


def test_x_aegir_is_validated():
    with pytest.raises(CheckpointError, match="unknown keys colour"):
        onhost.settings({"x-aegir": {"mysql": {"colour": "red"}}})
    with pytest.raises(CheckpointError, match="not a service"):
        onhost.dependents({"services": {"db": {}}, "x-aegir": {"mysql": {"dependents": ["ghost"]}}}, "db")
    with pytest.raises(CheckpointError, match="keep"):
        onhost.settings({"x-aegir": {"mysql": {"keep": 0}}})


def test_only_the_logs_before_the_current_one_are_archived_and_a_restore_chain_has_no_gap():
    logs = ["mysql-bin.000009", "mysql-bin.000010", "mysql-bin.000011"]
    assert onhost.to_archive(logs, "mysql-bin.000011") == ("mysql-bin.000009", "mysql-bin.000010")
    assert onhost.replay_chain(("mysql-bin.000010", 4), logs) == ("mysql-bin.000010", "mysql-bin.000011")
    with pytest.raises(CheckpointError, match="missing between mysql-bin.000009 and mysql-bin.000011"):
        onhost.replay_chain(("mysql-bin.000009", 4), ["mysql-bin.000009", "mysql-bin.000011"])
    with pytest.raises(CheckpointError, match="neither archived nor in the server.s index"):
        onhost.replay_chain(("mysql-bin.000008", 4), logs)


def test_retention_drops_the_oldest_complete_entries():
    ids = ["20261201T010000Z", "20261130T010000Z", "20261202T010000Z"]
    assert onhost.expired(ids, 2) == ("20261130T010000Z",)
    assert onhost.expired(ids, None) == () and onhost.expired(ids, 3) == ()


def test_binlog_positions_are_read_from_the_server_and_from_mariadb_backup():
    assert onhost.parse_master_status("mysql-bin.000004\t342\t\t\n") == ("mysql-bin.000004", 342)
    assert onhost.parse_binlog_info("mysql-bin.000007\t1290\t0-1-33\n") == ("mysql-bin.000007", 1290)
    with pytest.raises(CheckpointError, match="binary logging is off"):
        onhost.parse_master_status("")


def test_the_cold_plan_names_its_exact_commands_and_never_resets_the_master():
    steps = onhost.plan(onhost.target("shop", srv="/srv"), mode="cold", compose=["docker", "compose", "-p", "shop"],
                        service="db", deps=("web", "worker"), entry="/srv/archive/mysql/apps/shop/X", keep=2)
    assert [s.name for s in steps] == list(onhost.COLD_STEPS)
    commands = [c for s in steps for c in s.commands]
    assert "docker compose -p shop stop db" in commands
    assert "docker compose -p shop restart web worker" in commands
    assert "docker compose -p shop exec -T db mariadb -uroot -N -B -e 'PURGE BINARY LOGS TO '\"'\"'CURRENT'\"'\"''" \
        in commands
    assert not any("RESET MASTER" in c or " rm " in c for c in commands)
    hot = onhost.plan(onhost.target("shop", srv="/srv"), mode="hot", compose=["dc"], service="db", deps=(),
                      entry="/e", keep=None)
    assert [s.name for s in hot] == list(onhost.HOT_STEPS)
    assert not any("stop" in c.split() for s in hot for c in s.commands)


def test_aegir_resolves_the_app_path_and_builds_the_program_commands():
    assert app_path("/srv", "shop") == "/srv/apps/shop"
    assert app_path("/srv", "users/blog") == "/srv/users/blog"
    assert app_path("/srv", "/srv/core/front/") == "/srv/core/front"
    with pytest.raises(AegirError):
        app_path("/srv", "etc/passwd")
    with pytest.raises(AegirError):
        app_path("/srv", "/srv/apps/../../etc")
    opts = Options(mode="hot", keep=3)
    assert start_cmd("/srv", "/srv/apps/shop", opts, "20261201T010000Z", key="apps-shop").argv[4:] == (
        "aegir-mysql-checkpoint-apps-shop-20261201T010000Z", "python3", "/srv/conf/aegir/mysql-checkpoint", "--srv",
        "/srv", "checkpoint", "/srv/apps/shop", "--mode", "hot", "--keep", "3", "--run", "20261201T010000Z",
        "--quiet")
    assert restore_cmd("/srv", "/srv/apps/shop", "latest", "/srv/scratch/r", "2026-12-01T04:00", None).line == (
        "python3 /srv/conf/aegir/mysql-checkpoint --srv /srv restore /srv/apps/shop --at latest "
        "--into /srv/scratch/r --until '2026-12-01 04:00'")
    with pytest.raises(AegirError, match="--mode"):
        Options(mode="warm")
    with pytest.raises(AegirError, match="--until"):
        restore_cmd("/srv", "/srv/apps/shop", "latest", "/srv/r", "yesterday; rm -rf /", None)


WAL_OUTPUT = """\
A\tapps/shop
S\tapps/shop\twal\t3000
S\tapps/shop\tdb\t120000
F\tapps/shop/wal\t1000\t1764550000.5\tmysql-bin.000002
F\tapps/shop/wal\t2000\t1764560000.0\tmysql-bin.000003
A\tusers/blog
S\tusers/blog\tdb\t500
A\tapps/ledger
S\tapps/ledger\twal\t4096
S\tapps/ledger\tdb\t90000
F\tapps/ledger/db\t700\t1764550000.0\tmysql-bin.000007
F\tapps/ledger/db\t300\t1764550001.0\tmysql-bin.000008
"""

ARCHIVE_OUTPUT = """\
R\tapps/shop\t52000
E\tarchive/mysql/apps/shop/20261202T010000Z\t1764552000.0
E\tarchive/mysql/apps/shop/20261201T010000Z\t1764551000.0
K\tapps/shop\t"keep": 3
R\tapps/gone\t800
E\tarchive/mysql/apps/gone/20261101T010000Z\t1761958800.0
K\tapps/gone\t"keep": null
R\tusers/old\t4096
"""


def test_wal_facts_are_parsed_per_app_with_their_archives():
    archives = parse_archives(ARCHIVE_OUTPUT)
    assert archives[1] == Archive("apps/shop", 52000, 2, "20261201T010000Z", "20261202T010000Z", 1764551000.0,
                                  1764552000.0, 3, True)
    assert [(a.path, a.retention) for a in archives] == [("apps/gone", "keep all"), ("apps/shop", "keep 3"),
                                                         ("users/old", "unknown")]
    shop, blog, ledger, gone, old = parse_wal(WAL_OUTPUT, archives)
    assert (shop.path, shop.wal_bytes, shop.db_bytes, shop.files) == ("apps/shop", 3000, 120000, 2)
    assert (shop.oldest, shop.newest, shop.checkpoints, shop.last_checkpoint) == (
        "mysql-bin.000002", "mysql-bin.000003", 2, 1764552000.0)
    assert (blog.wal_bytes, blog.files, blog.last_checkpoint, blog.archive) == (None, 0, None, None)
    # binary logs kept in the datadir: counted as WAL, not as database
    assert (ledger.wal_bytes, ledger.db_bytes, ledger.files, ledger.newest) == (1000, 89000, 2, "mysql-bin.000008")
    assert (gone.path, gone.db_bytes, gone.checkpoints) == ("apps/gone", None, 1)  # its folder is gone, not its archive
    assert parse_wal("X\n") == ()
    assert wal_cmd("/srv").argv[-1] == "/srv" and archive_cmd("/srv").argv[-1] == "/srv"
    assert over_limit((shop, blog), parse_size("2K")) == (shop,)
    assert archive_over_limit((shop, blog, old), parse_size("4K")) == (shop,)
    assert parse_size("1.5G") == 1536 * 1024 * 1024 and over_limit((shop,), None) == ()
    with pytest.raises(AegirError, match="--archive-over 'lots': give a size"):
        parse_size("lots", "--archive-over")


def test_the_archive_gauges_are_the_same_in_mysql_wal_and_disk_report():
    [shop] = [a for a in parse_archives(ARCHIVE_OUTPUT) if a.path == "apps/shop"]
    assert metrics_text(ARCHIVE_METRICS, archive_samples("hyp1", [shop])).splitlines() == [
        "# HELP aegir_mysql_archive_bytes Bytes of an app's checkpoint archive (<srv>/archive/mysql/<kind>/<app>).",
        "# TYPE aegir_mysql_archive_bytes gauge",
        'aegir_mysql_archive_bytes{host="hyp1",app="apps/shop"} 52000',
        "# HELP aegir_mysql_archive_checkpoints Complete checkpoints in an app's archive.",
        "# TYPE aegir_mysql_archive_checkpoints gauge",
        'aegir_mysql_archive_checkpoints{host="hyp1",app="apps/shop"} 2',
        "# HELP aegir_mysql_archive_oldest_timestamp_seconds When the oldest complete checkpoint was written "
        "(Unix time).",
        "# TYPE aegir_mysql_archive_oldest_timestamp_seconds gauge",
        'aegir_mysql_archive_oldest_timestamp_seconds{host="hyp1",app="apps/shop"} 1764551000.0',
        "# HELP aegir_mysql_archive_newest_timestamp_seconds When the newest complete checkpoint was written "
        "(Unix time).",
        "# TYPE aegir_mysql_archive_newest_timestamp_seconds gauge",
        'aegir_mysql_archive_newest_timestamp_seconds{host="hyp1",app="apps/shop"} 1764552000.0',
        "# HELP aegir_mysql_archive_keep The newest checkpoint's retention: checkpoints kept (absent: every one).",
        "# TYPE aegir_mysql_archive_keep gauge",
        'aegir_mysql_archive_keep{host="hyp1",app="apps/shop"} 3',
    ]
    assert archive_cells(shop, 1764552060.0) == ["51K", "2", "20261201T010000Z (17m ago)",
                                                 "20261202T010000Z (1m ago)", "keep 3"]


def test_a_run_state_says_whether_the_run_finished():
    st = parse_run_state('\035state.json\n{"run": "R2", "step": "snapshot"}\n\035result.json\n{"run": "R1", "ok": true}'
                         "\n\035lock\nheld\035log\nline one\nline two\n")
    assert st.lock_held and st.log == "line one\nline two\n"
    assert not st.finished("R2") and st.finished("R1") and not st.finished(None)
    assert parse_run_state("NONE\n").state is None
    # the log is the host's text, taken whole: a \035 or \036 in it is data (a batch's boundary is not \036)
    assert parse_run_state("\035state.json\n\035result.json\n\035lock\nfree\035log\na\035log\nb\036c\n").log == \
        "a\035log\nb\036c\n"
    assert "tr " not in run_state_cmd("/srv/conf/aegir/mysql/apps-shop").argv[2]
    assert run_state_cmd("/srv/conf/aegir/mysql/apps-shop", 120).argv[-2:] == ("/srv/conf/aegir/mysql/apps-shop",
                                                                                 "120")


def test_a_run_that_ends_while_its_state_is_read_is_seen_finished_not_dead(tmp_path: Path):
    # The run's guardian writes its result and exits between the reader's looks: simulated by a `flock`
    # that finishes the run while it probes the lock. The reader must then see the result (read after the
    # lock), not "no result, lock free": that read order made a killed run look dead with no result (CI).
    state, bin_ = tmp_path / "state", tmp_path / "bin"
    state.mkdir(), bin_.mkdir()
    (state / "state.json").write_text('{"run": "R2", "step": "dependents"}')
    (state / "lock").write_text("")
    (state / "log").write_text("run R2: the worker died (signal 9)\n")
    flock = bin_ / "flock"
    flock.write_text('#!/bin/sh\nprintf \'{"run": "R2", "ok": false}\' > result.json\nrm -f state.json\nexit 0\n')
    flock.chmod(0o755)
    cmd = run_state_cmd(str(state))
    done = subprocess.run(cmd.argv, capture_output=True, text=True, check=True,
                          env={"PATH": f"{bin_}:/usr/bin:/bin"})
    st = parse_run_state(done.stdout)
    assert not st.lock_held and st.state == {"run": "R2", "step": "dependents"}
    assert st.finished("R2"), done.stdout


# --------------------------------------------------------------------------- planning reads only


def test_a_plan_asks_the_program_on_stdin_and_only_its_read_only_verbs():
    opts = Options(mode="cold")
    cmd = plan_cmd("/srv", "/srv/apps/shop", opts, "20261201T010000Z", program="PROGRAM")
    assert cmd.line == ("python3 - --srv /srv plan /srv/apps/shop --mode cold --run 20261201T010000Z")
    assert cmd.stdin == "PROGRAM"  # sent on stdin, never written to the host
    assert restore_plan_cmd("/srv", "/srv/apps/shop", "latest", "/srv/scratch/r", "db", program="P").line == (
        "python3 - --srv /srv restore-plan /srv/apps/shop --at latest --into /srv/scratch/r --service db")
    with pytest.raises(ValueError, match="changes the host"):
        streamed_cmd("/srv", "checkpoint", "/srv/apps/shop", program="P")
    with pytest.raises(AegirError, match="invalid run name"):
        plan_cmd("/srv", "/srv/apps/shop", opts, "x; rm -rf /", program="P")


def test_the_programs_answer_is_its_json_or_its_own_line():
    assert parse_program(Reply('log line\n{"mode": "cold"}\n', "", 0), "plan") == {"mode": "cold"}
    with pytest.raises(AegirError, match=r"^mysql-checkpoint: /srv/apps/x: no compose file$"):
        parse_program(Reply("", "mysql-checkpoint: /srv/apps/x: no compose file\n", 1), "plan")
    with pytest.raises(AegirError, match=r"^mysql-checkpoint restore-plan exited 2: .*error: the following"):
        parse_program(Reply("", "usage: x\nmysql-checkpoint restore-plan: error: the following ...\n", 2),
                      "restore-plan")
    with pytest.raises(AegirError, match="printed no JSON"):
        parse_program(Reply("Traceback\n", "", 0), "plan")


def test_the_program_streamed_on_stdin_plans_without_writing_anything(tmp_path):
    """`python3 -` as aegir runs it while planning (no __file__ to find /srv from): an app without a compose
    file is refused in one line, and the /srv it was given is left exactly as it was."""
    srv = tmp_path / "srv"
    (srv / "apps" / "shop").mkdir(parents=True)
    for verb, extra in (("plan", []), ("restore-plan", ["--at", "latest", "--into", str(tmp_path / "into")])):
        done = subprocess.run([sys.executable, "-", "--srv", str(srv), verb, "apps/shop", *extra],
                              input=program_text(), capture_output=True, text=True, timeout=60)
        assert done.returncode == 1, done.stderr
        assert done.stderr.startswith("mysql-checkpoint: ") and "Traceback" not in done.stderr
        assert sorted(p.relative_to(srv) for p in srv.rglob("*")) == [Path("apps"), Path("apps/shop")]
    missing = subprocess.run([sys.executable, "-", "plan", "apps/shop"], input=program_text(),
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "--srv is required" in missing.stderr


def entry(archive: Path, name: str, start: str = "mysql-bin.000002") -> None:
    (archive / name / "base").mkdir(parents=True)
    (archive / name / "MANIFEST.json").write_text(json.dumps({"mode": "cold", "start": {"file": start,
                                                                                         "position": 4}}))


def test_a_restore_plan_checks_the_checkpoint_and_the_scratch_folder_before_anything(tmp_path):
    t = onhost.target("shop", srv=str(tmp_path))
    archive = Path(t.archive)
    entry(archive, "20261201T010000Z")
    (archive / "20261202T010000Z").mkdir()  # unfinished: no manifest
    with pytest.raises(CheckpointError, match=r"no complete checkpoint '20261202T010000Z' .*have: 20261201T010000Z"):
        onhost.restore_plan(t, "20261202T010000Z", tmp_path / "into", None)
    (tmp_path / "into").mkdir()
    (tmp_path / "into" / "left-over").write_text("x")
    with pytest.raises(CheckpointError, match="into is not empty: restore goes into a scratch folder"):
        onhost.restore_plan(t, "latest", tmp_path / "into", None)
    with pytest.raises(CheckpointError, match="left-over is not a folder"):
        onhost.restore_plan(t, "latest", tmp_path / "into" / "left-over", None)


# --------------------------------------------------------------------------- plans, results, reports


PROGRAM_PLAN = {"mode": "cold", "service": "db", "dependents": ["web"],
                "target": {"path": "/srv/apps/shop", "archive": "/srv/archive/mysql/apps/shop",
                           "state": "/srv/conf/aegir/mysql/apps-shop", "key": "apps-shop"}, "steps": []}


def test_the_question_and_the_check_after_a_checkpoint_come_from_the_plan():
    plan = CheckpointPlan("/srv/apps/shop", "20261201T010000Z", PROGRAM_PLAN)
    assert plan.entry == "/srv/archive/mysql/apps/shop/20261201T010000Z"
    assert checkpoint_question("hyp1", plan) == ("Stop db of /srv/apps/shop on hyp1 and purge its archived binary "
                                                 "logs?")
    hot = CheckpointPlan("/srv/apps/shop", "R", {**PROGRAM_PLAN, "mode": "hot"})
    assert checkpoint_question("hyp1", hot).startswith("Back up db of /srv/apps/shop on hyp1")
    ok = {"run": "R", "ok": True}
    assert entry_problem(ok, plan.entry, complete=True) is None
    assert entry_problem(ok, plan.entry, complete=False) == (
        "the run says ok but /srv/archive/mysql/apps/shop/20261201T010000Z has no MANIFEST.json: the checkpoint "
        "is not complete")
    assert entry_problem({"run": "R", "ok": False}, plan.entry, complete=False) is None  # failed: said as such
    assert Checkpointed("told", ok).why_failed is None
    assert Checkpointed("told", {"run": "R", "ok": False, "failed_step": "stop", "error": "boom"}).why_failed == (
        "checkpoint run R failed at step stop: boom")
    assert Checkpointed("told", None).why_failed == "checkpoint run None failed: None"


def test_status_says_when_no_checkpoint_ran_and_its_json_is_the_envelope():
    host = Host("hyp1")
    shown = status_report([Outcome(host, CheckpointStatus("/srv/apps/shop", None, None))])
    assert shown.text == "hyp1: no checkpoint ran for /srv/apps/shop" and not shown.problems
    assert shown.data == {"task": "mysql.status", "dry": None, "hosts": [
        {"host": "hyp1", "status": "ok", "error": None, "path": "/srv/apps/shop", "run": None, "running": False,
         "result": None}], "summary": {"hosts": 1, "runs": 0, "failed_runs": 0}}
    failed = status_report([Outcome(host, CheckpointStatus("/srv/apps/shop", "R", {"run": "R", "ok": False,
                                                                                     "error": "died"}))])
    assert failed.problems and failed.text == "hyp1: checkpoint run R FAILED: died"
    down = status_report([Outcome(host, error="/srv is not mounted: run boot.mount", kind="failed")])
    assert down.text.splitlines()[-1] == "hyp1  FAILED: /srv is not mounted: run boot.mount"
    assert down.data["hosts"] == [{"host": "hyp1", "status": "failed", "error": "/srv is not mounted: run boot.mount"}]


class Following:
    """What `steps.follow` sees of a host: its run state, read as facts, one answer per read (or an error)."""

    name = "hyp1"

    def __init__(self, *answers: RunState | Exception) -> None:
        self.answers = list(answers)
        self.asked: list[str] = []

    def fact(self, fact):
        self.asked.append(fact.cmd.line)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_following_a_run_prints_its_log_escaped_and_a_dropped_session_says_how_to_reattach(monkeypatch):
    monkeypatch.setattr(steps, "POLL", 0)
    out = io.StringIO()
    hc = Following(RunState({"run": "R"}, None, "step stop ...\n\x1b[2Jdone\n", lock_held=True),
                   RunState(None, {"run": "R", "ok": True}, "run R: done\n"))
    st = steps.follow(hc, "/srv/conf/aegir/mysql/apps-shop", "R", out=out, offset=10)  # type: ignore[arg-type]
    assert st.finished("R") and out.getvalue() == "hyp1: step stop ...\nhyp1: \\x1b[2Jdone\nhyp1: run R: done\n"
    assert hc.asked[0].endswith("/srv/conf/aegir/mysql/apps-shop 10") and hc.asked[1].endswith(" 33")  # 10 + 23 bytes read
    dropped = Following(UnreachableError("SSH connection lost", host="hyp1"))
    with pytest.raises(UnreachableError) as err:
        steps.follow(dropped, "/srv/conf/aegir/mysql/apps-shop", "R", app="/srv/apps/shop")  # type: ignore[arg-type]
    assert err.value.message == ("SSH connection lost; the checkpoint goes on on the host: reattach with "
                                 "`inv -H hyp1 mysql.status /srv/apps/shop`")


def test_a_run_waits_out_a_readers_probe_of_its_lock_but_not_another_run(tmp_path: Path):
    lock = tmp_path / "lock"
    lock.write_text("")
    hold = "import fcntl, sys, time; f = open(sys.argv[1]); fcntl.flock(f, fcntl.LOCK_EX); print(1, flush=True); " \
           "time.sleep(float(sys.argv[2]))"
    for held, taken in ((0.3, True), (30.0, False)):  # a probe lets go within a second; a run does not
        other = subprocess.Popen([sys.executable, "-c", hold, str(lock), str(held)], stdout=subprocess.PIPE, text=True)
        try:
            assert other.stdout is not None and other.stdout.readline() == "1\n"
            with open(lock, "w") as f:
                assert onhost._take(f) is taken
        finally:
            other.kill()
            other.wait()
