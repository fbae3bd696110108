"""What update.apply checks before it upgrades: a fresh review of the same package set, an announcement."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from aegir.errors import AegirError, RefusedError
from aegir.sh import write_file_cmd
from aegir.update.plan import Interruption, compose_text, interruptions
from aegir.update.records import (
    AnnounceRecord,
    ReviewRecord,
    _fingerprint,  # noqa: PLC2701 - the checksum, recomputed for edited records
    check_announced,
    check_review,
    log_path,
    read_cmd,
    removal_changes,
    version_changes,
)

NOW = 1_800_000_000.0
VERSIONS = {"containerd": ("1.6.20~ds1-1", "1.6.20~ds1-2"), "libfoo1": ("1.0-1", "1.0-2")}
RECORD = ReviewRecord(time=NOW - 600, dist=False, versions=VERSIONS, kinds={"containerd": "docker", "libfoo1": "other"},
                      risky=("containerd",), effects=("would restart docker via containerd",))


def test_a_record_survives_its_json():
    again = ReviewRecord.from_json(RECORD.to_json(), "hyp1")
    assert again == RECORD and again.digest == RECORD.digest
    assert ReviewRecord.from_json("", "hyp1") is None
    with pytest.raises(AegirError, match="update-review.json: 'time' is missing; run `inv update.review` again"):
        ReviewRecord.from_json("{}", "hyp1")


def test_the_digest_depends_on_versions_and_mode():
    other = ReviewRecord(NOW, False, {**VERSIONS, "libfoo1": ("1.0-1", "1.0-3")})
    assert other.digest != RECORD.digest
    assert ReviewRecord(NOW, True, VERSIONS).digest != ReviewRecord(NOW, False, VERSIONS).digest


def test_apply_goes_on_with_a_fresh_review_of_the_same_set():
    assert check_review(RECORD, host="hyp1", now=NOW) is RECORD


def test_apply_refuses_without_a_review():
    with pytest.raises(RefusedError, match="no review of this upgrade on the host: run `inv update.review` first"):
        check_review(None, host="hyp1", now=NOW)


def test_apply_refuses_a_review_older_than_an_hour():
    with pytest.raises(RefusedError, match="the review is 1h old"):
        check_review(ReviewRecord(NOW - 3660, False, VERSIONS), host="hyp1", now=NOW)


def test_apply_refuses_a_review_dated_in_the_future_by_a_clock_running_ahead():
    ahead = ReviewRecord(NOW + 86400, False, VERSIONS, by="alice@laptop")
    with pytest.raises(RefusedError, match=r"the review is dated 1d in the future \(written by alice@laptop"):
        check_review(ahead, host="hyp1", now=NOW)
    assert check_review(ReviewRecord(NOW + 60, False, VERSIONS), host="hyp1", now=NOW)  # small skew


def test_what_changed_since_the_review_is_said_package_by_package():
    now = {"containerd": VERSIONS["containerd"], "libfoo1": ("1.0-1", "1.0-3"), "newpkg": ("1", "2")}
    assert version_changes(VERSIONS, now) == ["libfoo1: reviewed 1.0-1 -> 1.0-2, now 1.0-1 -> 1.0-3",
                                              "newpkg 2 is new since the review"]
    assert version_changes(VERSIONS, {}) == ["containerd 1.6.20~ds1-2 is no longer to be upgraded",
                                             "libfoo1 1.0-2 is no longer to be upgraded"]
    assert removal_changes(["oldtool"], ["docker.io"]) == ["docker.io would now be removed",
                                                            "oldtool is no longer to be removed"]


def test_a_risky_upgrade_needs_an_announcement_of_the_same_set_or_force():
    with pytest.raises(RefusedError, match=r"risky \(would restart docker via containerd\) and was not announced"):
        check_announced(RECORD, None, VERSIONS, force=False, host="hyp1")
    stale = AnnounceRecord(NOW, "0123456789abcdef", "old news")
    with pytest.raises(RefusedError, match="--hold containerd"):
        check_announced(RECORD, stale, VERSIONS, force=False, host="hyp1")
    assert check_announced(RECORD, AnnounceRecord(NOW, RECORD.digest, "tonight"), VERSIONS, force=False,
                           host="hyp1") is None
    assert check_announced(RECORD, None, VERSIONS, force=True, host="hyp1").endswith("because of --force")


def test_holding_the_risky_packages_makes_an_announcement_unnecessary():
    assert check_announced(RECORD, None, {"libfoo1": VERSIONS["libfoo1"]}, force=False, host="hyp1") is None


def test_records_are_read_and_written_without_interpolating_anything():
    assert read_cmd("/var/lib/aegir/update-review.json").line == \
        "sh -c '[ ! -e \"$1\" ] || cat -- \"$1\"' sh /var/lib/aegir/update-review.json"
    cmd = write_file_cmd("/var/lib/aegir/update-review.json", '{"x": 1}')
    assert cmd.stdin == '{"x": 1}' and '{"x": 1}' not in cmd.line


def test_the_transcript_of_an_apply_is_named_after_its_time():
    assert log_path(NOW) == "/var/log/aegir/update-20270115T080000Z.log"


def test_the_announcement_names_each_service_and_its_interruption():
    cuts = interruptions(RECORD, ["apps/cloud", "core/front"], live_restore=False)
    assert cuts == (Interruption("apps/cloud", "stops and restarts with Docker (containerd): about a minute"),
                    Interruption("core/front", "stops and restarts with Docker (containerd): about a minute"))
    text = compose_text("hyp1", "Security updates tonight.", "22:00 UTC", RECORD, cuts)
    assert text == ("Security updates tonight.\nWhen: 22:00 UTC\n"
                    "hyp1: 2 packages upgraded; would restart docker via containerd\n"
                    "  - apps/cloud: stops and restarts with Docker (containerd): about a minute\n"
                    "  - core/front: stops and restarts with Docker (containerd): about a minute\n")
    kept = interruptions(RECORD, ["apps/cloud"], live_restore=True)
    assert kept[0].expected.startswith("keeps running (live-restore)")


def test_a_dist_upgrade_removal_is_part_of_the_reviewed_set():
    """apt-get dist-upgrade removes what its Remv lines say: that is part of the reviewed set too."""
    record = ReviewRecord(NOW - 600, True, VERSIONS, removals=("oldtool",))
    assert ReviewRecord.from_json(record.to_json(), "hyp1") == record
    assert record.digest != ReviewRecord(NOW - 600, True, VERSIONS).digest
    assert replace(RECORD, time=NOW - 10, by="bob@laptop").digest == RECORD.digest  # a new review, the same set
    assert replace(RECORD, time=NOW - 10).checksum != RECORD.checksum


def test_a_risky_removal_needs_an_announcement_too():
    record = ReviewRecord(NOW - 600, True, VERSIONS, risky=("docker.io",), removals=("docker.io",),
                          effects=("would stop docker: removes docker.io",))
    with pytest.raises(RefusedError, match=r"risky \(would stop docker: removes docker.io\) and was not announced"):
        check_announced(record, None, {*VERSIONS, "docker.io"}, force=False, host="hyp1")


def _edited(change, *, resum: bool = True) -> str:
    """RECORD's JSON after `change(data)`; with `resum`, its checksum made to match again."""
    data = json.loads(RECORD.to_json())
    change(data)
    if resum:
        data.pop("checksum")
        data.pop("digest")
        data["checksum"] = _checksum_of(data)
    return json.dumps(data)


def _checksum_of(data: dict) -> str:
    """What `ReviewRecord.checksum` computes: the fingerprint of every field."""
    return _fingerprint(data)


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d.update(risky="containerd"), "'risky' must be list, not str 'containerd'"),
    (lambda d: d.update(risky=True), "'risky' must be list, not bool 'True'"),
    (lambda d: d.update(risky=[{"containerd": 1}]), "'risky' must be a list of strings, holds dict"),
    (lambda d: d.update(risky=["runc"]), "'risky' names runc, neither upgraded nor removed"),
    (lambda d: d.update(risky=["Containerd;id"]), "'risky' holds an invalid package name"),
    (lambda d: d.update(dist="no"), "'dist' must be bool, not str 'no'"),
    (lambda d: d.update(time="1800000000"), "'time' must be int or float, not str"),
    (lambda d: d.update(time=True), "'time' must be int or float, not bool"),
    (lambda d: d.update(time=float("inf")), "'time' must be a finite number"),
    (lambda d: d.update(versions=[]), "'versions' must be dict, not list"),
    (lambda d: d["versions"].update(libfoo1="1.0-2"), "'versions' of 'libfoo1' must be \\[old, new\\]"),
    (lambda d: d["versions"].update(libfoo1=["1.0-1", 2]), "'versions' of 'libfoo1' invalid version 2"),
    (lambda d: d["versions"].update(libfoo1=["1.0-1", "1.0-2 && id"]), "invalid version '1.0-2 && id'"),
    (lambda d: d["versions"].update({"bad name": ["1", "2"]}), "invalid package name 'bad name'"),
    (lambda d: d.update(kinds={"containerd": "harmless"}), "'kinds' holds 'containerd': 'harmless'"),
    (lambda d: d.update(kinds={"containerd": ["docker"]}), "'kinds' holds 'containerd'"),
    (lambda d: d.update(effects="would restart docker"), "'effects' must be list, not str"),
    (lambda d: d.update(removals=["docker.io", None]), "'removals' must be a list of strings, holds NoneType"),
    (lambda d: d.update(held={"a": 1}), "'held' must be list, not dict"),
    (lambda d: d.update(by=["x"]), "'by' must be str, not list"),
    (lambda d: d.update(reasons={"containerd": "x"}), "'containerd' must be list, not str"),
])
def test_a_record_of_the_wrong_shape_is_refused_naming_the_field(change, message):
    """Even with a checksum that matches: the types are checked one by one."""
    with pytest.raises(AegirError, match=message):
        ReviewRecord.from_json(_edited(change), "hyp1")


@pytest.mark.parametrize("change", [
    lambda d: d.update(risky=[]),  # the announcement requirement would be off
    lambda d: d.update(time=NOW),  # a stale review made fresh
    lambda d: d["versions"].update(libfoo1=["1.0-1", "1.0-3"]),
    lambda d: d.update(effects=[]),
    lambda d: d.update(kinds={"containerd": "other", "libfoo1": "other"}),
    lambda d: d.update(removals=["oldtool"]),
    lambda d: d.update(dist=True),
    lambda d: d.pop("risky"),
])
def test_a_record_edited_without_its_checksum_is_refused(change):
    with pytest.raises(AegirError, match="checksum '[0-9a-f]+' does not match its content .*edited or damaged"):
        ReviewRecord.from_json(_edited(change, resum=False), "hyp1")


@pytest.mark.parametrize("text", ["[]", "null", "1", '"x"', "{", '{"time": 1'])
def test_a_record_that_is_not_a_json_object_is_refused(text):
    with pytest.raises(AegirError, match="update-review.json: is not"):
        ReviewRecord.from_json(text, "hyp1")


def test_the_announcement_digest_covers_what_the_gate_reads():
    for other in (replace(RECORD, risky=()), replace(RECORD, effects=()), replace(RECORD, kinds={}),
                  replace(RECORD, removals=("x",)), replace(RECORD, dist=True)):
        assert other.digest != RECORD.digest
