"""mysql: which binary logs are archived, purged and replayed (by name, in the index's order), and what the cold
snapshot copies."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from aegir.mysql import onhost
from aegir.mysql.onhost import CheckpointError

#: A server whose log-bin basename changed from mysql-bin to db1-bin, one index for both.
RENAMED = ["mysql-bin.000002", "mysql-bin.000003", "mysql-bin.000004", "db1-bin.000001", "db1-bin.000002"]


def test_the_logs_to_archive_are_those_before_the_current_one_in_the_index_whatever_their_numbers():
    assert onhost.to_archive(RENAMED, "db1-bin.000002") == tuple(RENAMED[:4])
    with pytest.raises(CheckpointError, match="the current binary log db1-bin.000009 is not in the server's index"):
        onhost.to_archive(RENAMED, "db1-bin.000009")


def test_purge_waits_until_the_archive_holds_every_log_it_would_remove():
    assert onhost.unarchived(RENAMED, "db1-bin.000002", RENAMED[:4]) == ()
    assert onhost.unarchived(RENAMED, "db1-bin.000002", ["mysql-bin.000002", "db1-bin.000001"]) == (
        "mysql-bin.000003", "mysql-bin.000004")


def test_show_binary_logs_and_the_index_file_are_read_in_order():
    assert onhost.parse_binary_logs("mysql-bin.000003\t408\ndb1-bin.000001\t340\tNo\n") == [
        ("mysql-bin.000003", 408), ("db1-bin.000001", 340)]
    assert onhost.parse_index("./mysql-bin.000001\n/wal/db1-bin.000001\n\nsub/x-bin.000002\n", "/var/lib/mysql/") == [
        "/var/lib/mysql/mysql-bin.000001", "/wal/db1-bin.000001", "/var/lib/mysql/sub/x-bin.000002"]
    assert onhost.binlog_base("db1-bin.000002") == "db1-bin" and onhost.binlog_number("db1-bin.000002") == 2


def test_the_restore_starts_at_the_first_log_the_restarted_server_wrote():
    at_stop = {"mysql-bin.000007", "mysql-bin.000008"}
    after = ["mysql-bin.000007", "mysql-bin.000008", "mysql-bin.000009", "mysql-bin.000010"]  # it rotated since
    assert onhost.first_new_log(after, at_stop) == "mysql-bin.000009"
    with pytest.raises(CheckpointError, match="the restarted server started no new binary log"):
        onhost.first_new_log(["mysql-bin.000008"], at_stop)


def test_a_restore_chain_follows_the_servers_order_across_a_basename_change():
    sequence = onhost.log_sequence([RENAMED[:2], RENAMED[1:4], ["db1-bin.000002", "db1-bin.000003"]])
    assert sequence == (*RENAMED, "db1-bin.000003")
    assert onhost.replay_chain(("mysql-bin.000004", 4), sequence) == (
        "mysql-bin.000004", "db1-bin.000001", "db1-bin.000002", "db1-bin.000003")
    with pytest.raises(CheckpointError, match="missing between db1-bin.000001 and db1-bin.000003"):
        onhost.replay_chain(("db1-bin.000001", 4), ["db1-bin.000001", "db1-bin.000003"])
    assert onhost.entry_logs({"binlogs": {"b.000010": "x", "b.000009": "y"}}) == ["b.000009", "b.000010"]
    assert onhost.entry_logs({"binlogs": {}, "order": ["m.000003", "d.000001"]}) == ["m.000003", "d.000001"]


def test_the_snapshot_leaves_out_the_binary_logs_kept_in_the_datadir(tmp_path: Path):
    db = tmp_path / "db"
    (db / "shop").mkdir(parents=True)
    for name in ("ibdata1", "shop/rows.ibd", "mysql-bin.000001", "mysql-bin.index", "mysql-bin.state"):
        (db / name).write_text(name)
    logs = {str(db / "mysql-bin.000001"), str(db / "mysql-bin.index"), "/srv/apps/shop/wal/x-bin.000001"}
    assert onhost.binlog_files_in(str(db), logs) == {"mysql-bin.000001", "mysql-bin.index"}
    assert onhost.walk_db(db, onhost.binlog_files_in(str(db), logs)) == (
        ["shop"], ["ibdata1", "mysql-bin.state", "shop/rows.ibd"])


@pytest.mark.parametrize("kind", ["symlink", "fifo", "socket"])
def test_the_snapshot_refuses_anything_but_regular_files_and_folders(tmp_path: Path, kind: str):
    db = tmp_path / "db"
    (db / "shop").mkdir(parents=True)
    (db / "ibdata1").write_text("x")
    odd = db / "shop" / "odd"
    if kind == "symlink":
        odd.symlink_to("/etc/passwd")
    elif kind == "fifo":
        os.mkfifo(odd)
    else:
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(odd))
        sock.close()
    what = {"symlink": "a symbolic link", "fifo": "a FIFO", "socket": "a socket"}[kind]
    with pytest.raises(CheckpointError) as exc:
        onhost.walk_db(db)
    assert str(exc.value) == (f"{odd} is {what}: the cold snapshot copies regular files and folders only; "
                              f"move it out of {db}")
