"""update.review on a host that cannot fetch: every fetch bounded in time, one clear line."""

from __future__ import annotations

from aegir.update.apt import FETCH_LIMIT, fetch_failure, package_info_cmd, update_cmd


def test_every_fetch_is_bounded_on_the_host_and_by_apt_itself():
    assert FETCH_LIMIT + 10 <= 30  # the review fails within 30 s, with time to spare for the rest
    update = update_cmd()
    assert update.argv[:4] == ("timeout", "-k", "5", str(FETCH_LIMIT)) and "--error-on=any" in update.argv
    assert update.timeout is not None and update.timeout > FETCH_LIMIT + 5  # the host's bound acts first
    info = package_info_cmd({"aegir-lab-beacon": "1.1-1", "containerd": "1.6.20~ds1-1+deb12u3"})
    assert info.argv[:4] == ("timeout", "-k", "5", str(FETCH_LIMIT + 120)) and info.timeout is None  # batched
    script, args = info.argv[6], info.argv[8:]
    assert args == (str(FETCH_LIMIT), "aegir-lab-beacon=1.1-1", "containerd=1.6.20~ds1-1+deb12u3")
    assert script.count("apt-get download") == 1  # one run for every package: apt fetches them together
    assert 'timeout -k 5 "$limit" apt-get download -q -o Acquire::Retries=0' in script


def test_a_failed_fetch_is_one_line_naming_what_failed_and_why():
    stderr = ("Ign:1 http://127.0.0.1:8099 ./ InRelease\nErr:2 http://127.0.0.1:8099 ./ Release\n"
              "  Could not connect to 127.0.0.1:8099 (127.0.0.1). - connect (111: Connection refused)\n"
              "E: The repository 'http://127.0.0.1:8099 ./ Release' does not have a Release file.\n"
              "W: Some index files failed to download. They have been ignored, or old ones used instead.\n")
    assert fetch_failure("apt-get update", 100, stderr) == (
        "apt-get update failed (exit 100): Err:2 http://127.0.0.1:8099 ./ Release")
    assert fetch_failure("apt-get update", 100, "W: Failed to fetch http://x/  Temporary failure resolving 'x'\n"
                         "E: Some index files failed to download.\n") == (
        "apt-get update failed (exit 100): W: Failed to fetch http://x/  Temporary failure resolving 'x'")
    assert fetch_failure("apt-get update", 124, "") == (
        f"apt-get update: no answer within {FETCH_LIMIT} s (is the mirror reachable from the host?)")
    assert "\n" not in fetch_failure("x", 1, "a\nb\nc\n") and fetch_failure("x", 1, "") == "x failed (exit 1): no message"

