"""nft commands as exact lines, the host state probe, and ruleset diffs."""

from __future__ import annotations

import time

import pytest

from aegir.errors import AegirError
from aegir.fw import nft

STATE = "/srv/conf/aegir-fw"
HASH = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def test_check_and_apply_read_the_candidate_file():
    assert nft.check_cmd(f"{STATE}/candidate.nft").line == "nft -c -f /srv/conf/aegir-fw/candidate.nft"
    assert nft.apply_cmd(f"{STATE}/candidate.nft").line == "nft -f /srv/conf/aegir-fw/candidate.nft"


def test_the_ruleset_travels_on_stdin_never_in_the_command_line():
    cmd = nft.write_cmd(STATE, "candidate.nft", "table inet aegir {}\n")
    assert cmd.line == ("sh -c 'umask 077; mkdir -p -- \"$1\" && cat > \"$1/$2\"' sh /srv/conf/aegir-fw candidate.nft")
    assert cmd.stdin == "table inet aegir {}\n"


def test_a_host_template_is_proven_in_a_scratch_network_namespace():
    assert nft.prove_cmd(f"{STATE}/candidate.nft").argv[2:] == (
        "unshare -n sh -c 'nft -f \"$1\" >/dev/null && nft -s -j list table inet aegir' sh \"$1\"\n",
        "sh", "/srv/conf/aegir-fw/candidate.nft")


def test_keep_promotes_the_candidate_and_records_the_live_hash():
    cmd = nft.keep_cmd(STATE)
    assert cmd.argv[-1] == STATE
    assert 'mv -f -- "$1/candidate.nft" "$1/last-good.nft"' in cmd.argv[2]
    assert "nft -a -t -s list table inet aegir | sha256sum" in cmd.argv[2]


def test_the_probe_reads_template_last_good_hash_and_live_hash_in_one_command():
    cmd = nft.probe_cmd("/srv/templates/nftables.nft.j2", STATE)
    assert cmd.argv[-2:] == ("/srv/templates/nftables.nft.j2", STATE)
    assert "nft -a -t -s list table inet aegir 2>/dev/null | sha256sum" in cmd.argv[2]


def test_a_fresh_host_has_nothing_loaded_and_nothing_kept():
    state = nft.parse_probe(f"\x1eabsent\n\x1eabsent\n\x1eabsent\n\x1elive\n{nft.ABSENT}  -\n")
    assert state == nft.State(None, None, None, nft.ABSENT)
    assert (state.live, state.drifted, state.status) == (False, False, "not loaded")


def test_a_host_in_sync_has_the_kept_hash_live():
    out = (f"\x1eabsent\n\x1epresent\ntable inet aegir {{}}\n\x1epresent\n{HASH}\n"
           f"\x1elive\n{HASH}  -\n")
    state = nft.parse_probe(out)
    assert state.last_good == "table inet aegir {}\n" and state.kept_hash == HASH
    assert (state.drifted, state.status) == (False, "in sync")


def test_a_table_changed_by_hand_or_flushed_by_a_reboot_is_drift():
    changed = nft.parse_probe(f"\x1eabsent\n\x1epresent\nx\n\x1epresent\n{HASH}\n\x1elive\n{'0' * 64}  -\n")
    assert (changed.drifted, changed.status) == (True, "changed since last apply")
    rebooted = nft.parse_probe(f"\x1eabsent\n\x1epresent\nx\n\x1epresent\n{HASH}\n\x1elive\n{nft.ABSENT}  -\n")
    assert (rebooted.drifted, rebooted.status) == (True, "not loaded")


def test_a_table_loaded_by_someone_else_is_said_so():
    state = nft.parse_probe(f"\x1eabsent\n\x1eabsent\n\x1eabsent\n\x1elive\n{HASH}  -\n")
    assert state.status == "loaded (not by aegir)" and state.drifted


def test_the_host_template_is_read_verbatim():
    state = nft.parse_probe(f"\x1epresent\n{{{{ host }}}}\n\n\x1eabsent\n\x1eabsent\n\x1elive\n{nft.ABSENT}  -\n")
    assert state.template == "{{ host }}\n\n"


def test_a_garbled_probe_is_an_error():
    with pytest.raises(AegirError, match="unexpected firewall state probe output"):
        nft.parse_probe("sh: 1: nft: not found\n")


def test_the_listing_is_nfts_json():
    assert nft.parse_listing('{"nftables": []}\n') == {"nftables": []}
    with pytest.raises(AegirError, match="cannot read nft's JSON listing"):
        nft.parse_listing("")


def test_changed_lines_say_what_was_added_and_removed():
    old = "a {\n\t1.2.3.4 . tcp . 80,  # web\n}\n"
    new = "a {\n\t1.2.3.4 . tcp . 443,  # web\n\t1.2.3.4 . udp . 53,  # dns\n}\n"
    assert nft.changed_lines(old, new) == (("1.2.3.4 . tcp . 443,  # web", "1.2.3.4 . udp . 53,  # dns"),
                                           ("1.2.3.4 . tcp . 80,  # web",))
    assert nft.changed_lines(None, "x\n") == (("x",), ())


def test_the_diff_is_unified_and_empty_when_nothing_changed():
    assert nft.diff("a\n", "a\n") == ""
    assert nft.diff("a\nb\n", "a\nc\n", name="hyp1").splitlines() == [
        "--- hyp1 (last good)", "+++ hyp1 (new)", "@@ -1,2 +1,2 @@", " a", "-b", "+c"]


def test_a_large_ruleset_goes_through_stdin_at_once():
    """Invoke feeds a non-terminal stdin one character per 10 ms; `sh.run` hands it 64 KiB at a time."""
    from invoke import Context

    from aegir.sh import Cmd, run

    start = time.monotonic()
    assert run(Context(), Cmd(("wc", "-c"), stdin="x" * 300_000), host="local").stdout.strip() == "300000"
    assert time.monotonic() - start < 5  # one character per 10 ms would be 50 minutes
