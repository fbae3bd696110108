"""nft commands as exact lines, the host state probe, and ruleset diffs."""

from __future__ import annotations

import base64
import gzip
import re
import subprocess
import time

import pytest

from aegir.errors import AegirError
from aegir.fw import knock, nft
from aegir.sh import Boundary, write_file_cmd

STATE = "/srv/conf/aegir-fw"
HASH = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
#: The probe's boundary in these tests; recorded outputs below write it as \x1d (`parse` puts it back).
B = Boundary("b0" * 12)


def test_check_and_apply_read_the_candidate_file_and_apply_holds_the_lock():
    assert nft.check_cmd(f"{STATE}/candidate.nft").line == "nft -c -f /srv/conf/aegir-fw/candidate.nft"
    cmd = nft.apply_cmd(f"{STATE}/candidate-1.nft", STATE, HASH)
    assert cmd.argv[3:] == ("sh", f"{STATE}/candidate-1.nft", STATE, HASH)
    script = cmd.argv[2]
    assert script.startswith("trap '' HUP PIPE\n" 'exec 9>>"$2/lock" && flock 9 || exit\n')
    # the marker is written before the load and again after it, with the hash of what nft loaded
    marked, loaded, remarked = (script.index('put "$m" "candidate $1\nbefore $3" || exit'), script.index('nft -f "$1"'),
                                script.index('put "$m" "candidate $1\nbefore $3\nloaded $h"'))
    assert marked < loaded < remarked < script.index("printf '%s %s %s\\n'")  # printed last: the session may be gone
    assert 'then put "$m" "$was"; else rm -f -- "$m"; fi; exit $rc; }' in script  # nft refused: marker as it was
    # the terse hash keep_cmd compares, cut from the whole ruleset's (which fetches no set element)
    assert "nft -a -t -s list ruleset | awk '/^table inet aegir /,/^}/' | sha256sum" in script


def test_apply_deletes_old_leftovers_of_its_own_kinds_and_the_candidate_its_marker_replaced():
    script = nft.apply_cmd(f"{STATE}/candidate-1.nft", STATE, HASH).argv[2]
    assert ("find \"$1\" -maxdepth 1 -type f \\( -name 'candidate-*.nft' -o -name 'candidate-*.nft.aegir-new' "
            "-o -name 'rollback-*.nft' -o -name 'rollback-*.nft.aegir-new' -o -name 'unverified.aegir-new' \\) "
            "-mmin +10 ! -name \"${keep##*/}\" -print -delete") in script
    assert 'case "${old##*/}" in candidate-*.nft) rm -f -- "$old" && n=1;; esac' in script
    assert '[ "$old" = "$2/${old##*/}" ]' in script  # only a file of the state folder itself
    sweep = nft.sweep_cmd(STATE)
    assert sweep.argv[3:] == ("sh", STATE) and sweep.argv[2].startswith('exec 9>>"$1/lock" && flock 9 || exit\n')
    assert sweep.argv[2].endswith('-print -delete; }\nsweep "$1" | wc -l\n')


def test_each_apply_writes_a_candidate_of_its_own_atomically_and_on_stdin():
    first, second = nft.candidate_path(STATE), nft.candidate_path(STATE)
    assert first != second and re.fullmatch(rf"{STATE}/candidate-[0-9a-f]{{12}}\.nft", first)
    cmd = nft.write_cmd(first, "table inet aegir {}\n")
    assert cmd.argv[2] == write_file_cmd(first, "").argv[2].replace("cat >", "base64 -d | gzip -dc >")
    assert cmd.stdin == nft.packed("table inet aegir {}\n") and "table" not in cmd.line
    assert gzip.decompress(base64.b64decode(cmd.stdin)) == b"table inet aegir {}\n"


def test_a_ruleset_written_packed_lands_byte_for_byte(tmp_path):
    text = "".join(f"\t\t198.51.100.1 . tcp . {p} : 10.0.0.{p % 250} . 80,  # caf\u00e9 {p}\n" for p in range(1, 20000))
    cmd = nft.write_cmd(str(tmp_path / "sub" / "candidate-1.nft"), text)
    assert len(cmd.stdin or "") < len(text) / 5
    done = subprocess.run(["sh", "-c", *cmd.argv[2:]], input=cmd.stdin, capture_output=True, text=True, timeout=10)
    assert (done.returncode, done.stderr) == (0, "")
    assert (tmp_path / "sub" / "candidate-1.nft").read_text(encoding="utf-8") == text
    assert oct((tmp_path / "sub" / "candidate-1.nft").stat().st_mode & 0o777) == "0o644"


def test_the_proof_loads_the_candidate_next_to_the_hosts_other_tables_which_it_may_not_change():
    script = nft.prove_cmd(f"{STATE}/candidate.nft", "").argv[2]
    cmd = nft.prove_cmd(f"{STATE}/candidate.nft", "x\n", 2222, ["192.0.2.1", "2001:db8::1"], ["203.0.113.1"])
    assert cmd.argv[3:] == ("sh", f"{STATE}/candidate.nft", "2222", "192.0.2.1 2001:db8::1", "203.0.113.1",
                            "0 1022 61000", knock.SCRIPT, nft._RENAME)
    assert f'  {nft._PYTHON}\n  if command -v "$py" >/dev/null; then k=$("$py" -I -S -c "$7" "$3" "$4" "$5" "$6")' \
        in script  # the kernel's answer, through the whole ruleset the proof loaded
    assert script.index('k=$("$py" -I -S -c "$7"') < script.index("nft -s -j list ruleset") \
        < script.index('printf "\\036%s\\n" "$k"')
    # the text proved (`fwplan.proof_text`) comes on stdin; nft's words about it name the candidate ($1)
    assert script.startswith('rest=$(mktemp) || exit\nproved=$(mktemp) || exit\n'
                             'trap \'rm -f -- "$rest" "$proved" "$proved.err"\' EXIT\n'
                             'base64 -d | gzip -dc > "$proved" || exit\n')
    assert cmd.stdin == nft.packed("x\n")
    assert script.endswith('\n\' sh "$1" "$rest" "$2" "$3" "$4" "$5" "$6" "$proved" "$7"\n')
    # every table but aegir's (the candidate replaces it: listing and loading its elements would be waste)
    assert '[ "$f $n" = "inet aegir" ] || nft -s list table "$f" "$n" || exit 1; done; }\nothers > "$rest"' in script
    # the tables' names from the terse listing: ``nft list tables`` fetches every set element
    assert 'others() { nft -t -s list ruleset | sed -n "s/^table \\(.*\\) {\\$/\\1/p" | while read -r f n; do' in script
    assert "nft list tables" not in script
    # no `nft -c` before it: the proof's own load refuses what nft refuses, and says so by its exit code
    assert ('nft -f "$8" >/dev/null 2>"$8.err" || { p="$8" c="$1" awk "$9" "$8.err" >&2\n    echo "aegir: the ruleset '
            f'does not load next to the host\'"\'"\'s other tables" >&2; exit {nft.NOT_LOADED}; }}') in script
    assert script.index('nft -f "$2"') < script.index("was=$(others | sha256sum)") \
        < script.index('nft -f "$8" >/dev/null 2>') < script.index("now=$(others | sha256sum)") \
        < script.index('if [ "$now" != "$was" ]') < script.index("nft -s -j list ruleset")
    assert "unshare -n sh -c" in script


def test_keep_promotes_the_candidate_only_if_the_live_table_is_the_one_this_apply_loaded():
    cmd = nft.keep_cmd(f"{STATE}/candidate-1.nft", STATE, HASH, "fp", "full")
    assert cmd.argv[3:] == ("sh", f"{STATE}/candidate-1.nft", STATE, HASH, "fp", "full")
    assert 'if [ "${t%% *}" != "$3" ]' in cmd.argv[2]  # the terse hash apply_cmd printed
    assert "\nh=$5\n" in cmd.argv[2]  # recorded: the full hash (set elements too) apply_cmd printed
    # the live hash last (it is what makes the table "in sync"), then the marker goes
    assert ('s=$(nft -t -s list ruleset | sha256sum) || exit\n'
            'mv -f -- "$1" "$2/last-good.nft" && put "$2/ssh.verified" "$4" && put "$2/structure.sha256" "${s%% *}" \\\n'
            '  && put "$2/live.sha256" "$h" || exit\n'
            'rm -f -- "$2/unverified"\n') in cmd.argv[2]
    assert cmd.argv[2].index("flock 9") < cmd.argv[2].index("mv -f")


def test_restore_reports_nfts_failure_in_its_exit_code():
    again = nft.restore_cmd(f"{STATE}/rollback-1.nft", STATE)
    gone = nft.restore_cmd(None, STATE)
    assert again.argv[3:] == ("sh", f"{STATE}/rollback-1.nft", STATE) and gone.argv[3:] == ("sh", "", STATE)
    assert 'nft -f "$1" || exit; else nft delete table inet aegir || exit; fi' in again.argv[2]
    # put back: nothing unverified is live; no structure counts as proved, so the next apply proves again
    assert again.argv[2].endswith('rm -f -- "$2/unverified" "$2/structure.sha256"\n')


def test_the_live_hash_is_the_terse_listing_and_every_sets_elements_read_over_netlink():
    assert nft._LIVE == ("live() { nft -a -t -s list ruleset | awk '/^table inet aegir /,/^}/'; "
                         "py=python3; [ -x /usr/bin/python3 ] && py=/usr/bin/python3; "
                         f""""$py" -I -S -c '{nft.ELEMENTS_HASH}' 2>/dev/null || nft -s list table inet aegir 2>/dev/null; }}""")
    assert "'" not in nft.ELEMENTS_HASH  # quoted in single quotes
    compile(nft.ELEMENTS_HASH, "elements", "exec")
    # the sets of table inet aegir (NFT_MSG_GETSET: 10, family inet: 1), then each one's elements (GETSETELEM:
    # 13), without expiration (5) and expressions (7, 11): state, not the ruleset
    assert 'table = b"aegir\\0"' in nft.ELEMENTS_HASH and 'b"\\1\\0\\0\\0"' in nft.ELEMENTS_HASH
    assert "dump(10, attr(1, table))" in nft.ELEMENTS_HASH and "dump(13, attr(1, table), attr(2, name))" in nft.ELEMENTS_HASH
    assert "if t not in (5, 7, 11)" in nft.ELEMENTS_HASH
    # every hash of the live table is that one: the probe's, the apply's, the rollback's, the element-only path's
    scripts = [nft.probe_cmd("", STATE, B).argv[2], nft.apply_cmd("c", STATE).argv[2], nft.restore_cmd("r", STATE).argv[2],
               nft.elements_cmd("c", STATE, "x\n", "y\n").argv[2]]
    for script in scripts:
        assert nft._LIVE in script and "nft -a -s list table" not in script
        assert script.count("live | sha256sum") + script.count("live 2>/dev/null | sha256sum") in (1, 2)


def test_the_probe_reads_template_last_good_hashes_and_listeners_in_one_command():
    cmd = nft.probe_cmd("/srv/templates/nftables.nft.j2", STATE, B)
    assert cmd.argv[-3:] == ("/srv/templates/nftables.nft.j2", STATE, B.arg)
    assert """printf '%blisten\\n' "$3"; ss -Hltnp""" in cmd.argv[2]  # each part after the boundary
    assert cmd.argv[2].startswith(nft._LIVE + "\n")
    assert """printf '%blive\\n' "$3"; live 2>/dev/null | sha256sum""" in cmd.argv[2]  # with set elements
    assert '"$2/ssh.verified" "$2/unverified"; do' in cmd.argv[2] and "-printf '%f\\n'" in cmd.argv[2]
    assert "flock" not in cmd.argv[2]  # fw.status never waits
    settled = nft.probe_cmd("", STATE, B, settled=True)
    assert settled.argv[2] == 'exec 9>>"$2/lock" && flock -s -w 30 9 || exit\n' + cmd.argv[2]
    assert (cmd.timeout, settled.timeout) == (None, nft.SETTLED_TIMEOUT)  # a silent host cannot hang the row


LISTEN = ("\x1dlisten\nLISTEN 0 128 0.0.0.0:22 0.0.0.0:* users:((\"sshd\",pid=1,fd=3))\n"
          "LISTEN 0 128 [::]:22 [::]:* users:((\"sshd\",pid=1,fd=4))\nLISTEN 0 4096 127.0.0.1:8080 0.0.0.0:*\n")


def parse(text: str) -> nft.State:
    """`nft.parse_probe` of a recorded output written with \x1d for the boundary."""
    return nft.parse_probe(text.replace("\x1d", B.text), B)


def probe(tpl: str = "\x1dabsent\n", last: str = "\x1dabsent\n", kept: str = "\x1dabsent\n",
          verified: str = "\x1dabsent\n", live: str = nft.ABSENT, listen: str = LISTEN,
          marker: str = "\x1dabsent\n", leftovers: str = "") -> str:
    return f"{tpl}{last}{kept}{verified}{marker}\x1dlive\n{live}  -\n{listen}\x1dleftovers\n{leftovers}"


def test_a_fresh_host_has_nothing_loaded_and_nothing_kept():
    state = parse(probe())
    assert state == nft.State(None, None, None, nft.ABSENT, None,
                              {22: frozenset({"sshd"}), 8080: frozenset()})
    assert (state.live, state.drifted, state.status) == (False, False, "not loaded")
    assert parse(probe(listen="\x1dlisten\n?\n")).listeners is None  # no ss: unknown


def test_a_host_in_sync_has_the_kept_hash_live():
    state = parse(probe(last="\x1dpresent\ntable inet aegir {}\n", kept=f"\x1dpresent\n{HASH}\n",
                                  verified="\x1dpresent\nfp\n", live=HASH))
    assert state.last_good == "table inet aegir {}\n" and state.kept_hash == HASH and state.verified == "fp"
    assert (state.drifted, state.status) == (False, "in sync")


def test_a_table_changed_by_hand_or_flushed_by_a_reboot_is_drift():
    changed = parse(probe(last="\x1dpresent\nx\n", kept=f"\x1dpresent\n{HASH}\n", live="0" * 64))
    assert (changed.drifted, changed.status) == (True, "changed since last apply")
    rebooted = parse(probe(last="\x1dpresent\nx\n", kept=f"\x1dpresent\n{HASH}\n"))
    assert (rebooted.drifted, rebooted.status) == (True, "not loaded")


def test_a_table_loaded_by_someone_else_is_said_so():
    state = parse(probe(live=HASH))
    assert state.status == "loaded (not by aegir)" and state.drifted


NEW = "1" * 64
OLD = "2" * 64


def test_a_table_an_apply_loaded_and_never_recorded_is_new_and_unverified():
    marker = f"\x1dpresent\ncandidate {STATE}/candidate-1.nft\nbefore {OLD}\nloaded {NEW}\n"
    kept = f"\x1dpresent\n{OLD}\n"
    state = parse(probe(last="\x1dpresent\nx\n", kept=kept, live=NEW, marker=marker))
    assert state.marker == nft.Marker(f"{STATE}/candidate-1.nft", OLD, NEW)
    assert (state.unverified, state.drifted, state.status) == (True, True, "new ruleset live and unverified")
    first = parse(probe(live=NEW, marker=marker))  # the very first apply: nothing kept yet
    assert first.status == "new ruleset live and unverified"
    # the load was cut off before the marker got its hash: the live table is no longer the one before it
    cut = f"\x1dpresent\ncandidate {STATE}/candidate-1.nft\nbefore {OLD}\n"
    assert parse(probe(last="\x1dpresent\nx\n", kept=kept, live=NEW, marker=cut)).unverified
    assert parse(probe(last="\x1dpresent\nx\n", kept=kept, live=OLD, marker=cut)).status == "in sync"


def test_a_marker_that_no_longer_names_the_live_table_says_nothing():
    marker = f"\x1dpresent\ncandidate {STATE}/candidate-1.nft\nbefore {OLD}\nloaded {NEW}\n"
    kept = f"\x1dpresent\n{NEW}\n"  # recorded, the marker not removed yet
    assert parse(probe(last="\x1dpresent\nx\n", kept=kept, live=NEW, marker=marker)).status == "in sync"
    edited = parse(probe(last="\x1dpresent\nx\n", kept=f"\x1dpresent\n{OLD}\n", live="3" * 64,
                                   marker=marker))
    assert (edited.unverified, edited.status) == (False, "changed since last apply")
    assert not parse(probe(marker=marker)).unverified  # flushed by a reboot: not loaded at all


def test_the_probe_lists_the_leftovers_of_interrupted_runs():
    state = parse(probe(leftovers="candidate-1.nft\nrollback-2.nft.aegir-new\n"))
    assert state.leftovers == ("candidate-1.nft", "rollback-2.nft.aegir-new")
    assert parse(probe()).leftovers == ()


def test_the_host_template_is_read_verbatim():
    state = parse(probe(tpl="\x1dpresent\n{{ host }}\n\n"))
    assert state.template == "{{ host }}\n\n"


def test_host_data_cannot_forge_a_part_of_the_probe():
    """A process name in ``ss -p`` (any user's listening process), a file's text: the old fixed separator
    (\\x1d) or another nonce's boundary in them is data, not a part."""
    other = Boundary("f" * 24).text
    name = f"x\x1dabsent\x1e{other}leftovers"  # (comm: 15 bytes in truth; the parser does not care)
    listen = f"LISTEN 0 128 0.0.0.0:22 0.0.0.0:* users:((\"{name}\",pid=9,fd=3))\n"
    g = B.text
    out = (f"{g}present\n# \x1dabsent{other}absent\n" + f"{g}absent\n" * 4
           + f"{g}live\n{nft.ABSENT}  -\n{g}listen\n{listen}{g}leftovers\n")
    state = nft.parse_probe(out, B)
    assert state.template == f"# \x1dabsent{other}absent\n"
    assert state.listeners == {22: frozenset({name})} and state.leftovers == ()


def test_a_garbled_probe_is_an_error():
    with pytest.raises(AegirError, match="unexpected firewall state probe output"):
        parse("sh: 1: nft: not found\n")
    with pytest.raises(AegirError, match="unexpected firewall state probe output"):
        nft.parse_probe(probe(), B)  # the old fixed separator is no boundary


def test_the_listing_is_nfts_json():
    assert nft.parse_ruleset_json('{"nftables": []}\n') == {"nftables": []}
    with pytest.raises(AegirError, match="cannot read nft's JSON listing"):
        nft.parse_ruleset_json("")


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


@pytest.mark.parametrize("line", [
    "flush ruleset", "include \"/etc/nftables.conf\"", "table ip other {", "table aegir {",
    "add rule ip filter input tcp dport 22 drop", "delete table ip other", "destroy table inet aegir",
    "table inet aegir {}; flush ruleset", "add table ip6 x",
])
def test_statements_reaching_beyond_aegirs_table_are_found(line):
    assert nft.foreign_statements(f"# x\n{line}\n") == [f"line 2: {line.split('; ')[-1]}"]


def test_aegirs_own_table_statements_and_comments_are_not_foreign():
    text = nft.foreign_statements.__doc__ or ""
    from aegir.fw.render import packaged

    assert nft.foreign_statements(packaged().source) == []
    assert nft.foreign_statements("table inet aegir {}\ndelete table inet aegir\n# flush ruleset\n") == []
    assert text


def test_the_ssh_fingerprint_changes_with_port_admin_or_sources_only():
    import ipaddress as ip

    base = nft.ssh_fingerprint(22, {4: [ip.ip_address("192.0.2.1")]}, {4: []})
    assert base == nft.ssh_fingerprint(22, {4: [ip.ip_address("192.0.2.1")], 6: []}, {})
    assert base != nft.ssh_fingerprint(2222, {4: [ip.ip_address("192.0.2.1")]}, {4: []})
    assert base != nft.ssh_fingerprint(22, {4: [ip.ip_address("192.0.2.2")]}, {4: []})
    assert base != nft.ssh_fingerprint(22, {4: [ip.ip_address("192.0.2.1")]}, {4: [ip.ip_network("10.0.0.0/8")]})


def test_a_failed_step_past_the_check_says_how_it_ended_in_one_line():
    from aegir.errors import CommandError, UnreachableError
    from aegir.fw.steps import cause

    what = f"`nft -f {STATE}/candidate-1.nft`"
    cut = CommandError("hyp1", "sh -c '...long script...'", -1)
    assert cause(cut, what) == f"the session ended during {what} (no exit status)"
    late = CommandError("hyp1", "sh -c '...'", -1, "timed out after 40s")
    assert cause(late, what) == f"no exit status from {what} (timed out after 40s)"
    refused = CommandError("hyp1", "sh -c '...'", 1, "/x.nft:3:1-4: Error: syntax error\nfoo\n")
    assert cause(refused, what) == f"{what} exited 1: /x.nft:3:1-4: Error: syntax error / foo"
    lost = UnreachableError("SSH connection lost while running `sh -c '...'`: EOF", host="hyp1")
    assert cause(lost, what) == f"the SSH connection was lost during {what}"


def test_a_connection_lost_mid_step_says_silence_or_close_naming_the_step_not_its_script():
    """The host's own words for a lost connection (silence: no answer for timeouts.silent), with the step's
    script (dozens of lines for the proof) named by the step: before, a silent host's row was the proof's
    whole script, twice, or a bare "the SSH connection was lost" without saying it went silent."""
    from aegir.errors import ConnectionLost
    from aegir.fw.steps import cause, named
    from aegir.sh import shell

    what = "the proof in a scratch network namespace"
    proof = shell("rest=$(mktemp) || exit\nnft -s list ruleset > \"$rest\"\n", f"{STATE}/candidate-1.nft")
    silent = ConnectionLost(f"no answer for 5 s while running `{proof.line}`: the connection is lost", host="hyp2")
    assert cause(silent, what, proof) == f"no answer for 5 s during {what}: the connection is lost"
    closed = ConnectionLost(f"connection lost while running `{proof.line}`: EOF from the server", host="hyp2")
    assert cause(closed, what, proof) == f"connection lost during {what}: EOF from the server"
    assert named("connection lost while running `true`: EOF", proof, what) == "connection lost while running `true`: EOF"
    assert named(silent.message, None, what) == silent.message


def test_a_state_file_that_cannot_be_written_says_why(tmp_path):
    """`put` (the apply's marker, the record): a full /srv says "No space left on device" (before: dash's
    printf said "I/O error", as for a failing disk). /dev/full is a device every write to fails with ENOSPC."""
    import subprocess

    (tmp_path / "marker.aegir-new").symlink_to("/dev/full")
    done = subprocess.run(["sh", "-c", nft._PUT + '\nput "$1" "candidate x"', "sh", str(tmp_path / "marker")],
                          capture_output=True, text=True, timeout=10)
    assert done.returncode != 0
    assert "No space left on device" in done.stderr, done.stderr
    assert not (tmp_path / "marker").exists()


def test_the_probe_sends_the_last_good_ruleset_packed_and_reads_it_back_byte_for_byte(tmp_path):
    """The probe run here for real (its nft and ss reads change nothing): the last good ruleset travels
    gzipped in base64, a seventh of its bytes; the other files as they are."""
    text = "".join(f"\t\t198.51.100.1 . tcp . {p} : 10.0.0.{p % 250} . 80,  # caf\u00e9 {p}\n" for p in range(1, 5000))
    (tmp_path / "last-good.nft").write_text(text, encoding="utf-8")
    (tmp_path / "ssh.verified").write_text("fp\n")
    b = Boundary()
    cmd = nft.probe_cmd(str(tmp_path / "none.j2"), str(tmp_path), b)
    done = subprocess.run(cmd.argv, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout) < len(text) / 5 and f"{b.text}packed\n" in done.stdout
    state = nft.parse_probe(done.stdout, b)
    assert (state.template, state.last_good, state.verified) == (None, text, "fp")
    with pytest.raises(AegirError, match="unexpected firewall state probe output: the last good ruleset"):
        nft.parse_probe(done.stdout.replace(f"{b.text}packed\nH4sI", f"{b.text}packed\nH5sI"), b)


def test_the_word_filter_before_the_foreign_statement_check_skips_no_line_that_matches():
    from hypothesis import given
    from hypothesis import strategies as st

    words = st.sampled_from(["flush", "ruleset", "include", "destroy", "add", "create", "delete", "insert", "replace",
                             "reset", "rename", "list", "table", "chain", "rule", "set", "map", "element", "inet",
                             "aegir", "ip", "other", "{", "}", ";", "#", "\t", "1.2.3.4", ".", "tcp", ",", "Table"])

    def unfiltered(text: str) -> list[str]:  # foreign_statements as it was, every line split and matched
        return [f"line {n}: {part.strip()}" for n, line in enumerate(text.splitlines(), 1)
                for part in line.split("#", 1)[0].split(";") if nft._FOREIGN.match(part)]

    @given(st.lists(st.lists(words, max_size=8).map(" ".join), max_size=6).map("\n".join))
    def same(text: str) -> None:
        assert nft.foreign_statements(text) == unfiltered(text)

    same()


def test_the_line_diff_walk_gives_what_difflib_gives():
    import difflib
    from collections import Counter

    from hypothesis import example, given, settings
    from hypothesis import strategies as st

    def reference(old: str, new: str) -> tuple[tuple[str, ...], tuple[str, ...]]:  # changed_lines before the walk
        before, after = nft._trimmed(old.splitlines(), new.splitlines())  # the same lines as changed_lines
        added: list[str] = []
        removed: list[str] = []
        for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=before, b=after, autojunk=False).get_opcodes():
            if tag in ("delete", "replace"):
                removed += [ln.strip() for ln in before[i1:i2] if ln.strip()]
            if tag in ("insert", "replace"):
                added += [ln.strip() for ln in after[j1:j2] if ln.strip()]
        return tuple(added), tuple(removed)

    lines = st.lists(st.sampled_from(["a", "b", "c", "}", "", " d", "e ", "\tf", "g # x"]), max_size=12)

    @settings(max_examples=1000)
    @given(lines, lines, st.lists(st.tuples(st.integers(0, 12), st.booleans(), st.integers(0, 99)), max_size=6))
    @example(["b", "b", "a", "b", "a"], [], [(4, False, 0), (3, True, 0), (0, False, 0)])  # the shared start
    def same(old: list[str], new: list[str], edits: list[tuple[int, bool, int]]) -> None:
        # random pairs, and a text with lines only inserted or deleted (the element-only shape)
        edited = list(old)
        for at, insert, n in edits:
            if insert:
                edited.insert(min(at, len(edited)), f"new{n}")
            elif edited:
                del edited[min(at, len(edited) - 1)]
        for a, b in ((old, new), (old, edited), (edited, old)):
            added, removed = nft.changed_lines("\n".join(a), "\n".join(b))
            want = reference("\n".join(a), "\n".join(b))
            # a diff: what it adds and removes turns the one into the other (as multisets of lines) ...
            kept = Counter(ln.strip() for ln in a if ln.strip())
            assert kept - Counter(removed) + Counter(added) == Counter(ln.strip() for ln in b if ln.strip())
            assert not Counter(removed) - kept
            # ... never longer than difflib's; the same where no line repeats (which repeat is kept may differ)
            assert len(added) + len(removed) <= len(want[0]) + len(want[1]), (a, b)
            if len(set(a)) == len(a) and len(set(b)) == len(b):
                assert (added, removed) == want, (a, b)

    same()
