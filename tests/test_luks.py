"""boot.unlock against real cryptsetup, a real LUKS volume and a real terminal.

What is real here: `cryptsetup` 2.6 on a LUKS2 volume that the test formats
in a file (``luksFormat``), the `inv` program run as an operator runs it, and a
pseudo-terminal as its controlling terminal (/dev/tty), into which the test
types the passphrase after each prompt. While it runs, a thread scans every
process's command line and environment (/proc/*/cmdline, /proc/*/environ)
for the passphrase; captured stdout, stderr (with Invoke's ``--debug``
logging on) and the terminal are searched too.

What cannot be tested on this machine, and why: its kernel has no
device-mapper, so ``cryptsetup luksOpen`` cannot activate a mapping
("Cannot initialize device-mapper"), and ``cryptsetup status`` cannot read
one. So the unlock is tested up to activation with ``boot.unlock
--test-passphrase`` (``cryptsetup open --test-passphrase --key-file=-``, the
same key path and exit codes: 0 accepted, 2 wrong passphrase); the exact
``luksOpen`` command is tested as a string (tests/unit/test_boot_facts.py);
and a plain ``boot.unlock`` here is shown to stop with a clear
device-mapper message before asking anything.

The volume uses PBKDF2 with 1,000,000 iterations (about 0.35 s per try) rather
than the 1,000 that would be quickest: each cryptsetup process then lives
long enough for the /proc scan to catch it, which the tests assert, so a
clean scan cannot be a scan that looked at the wrong moment.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.helpers import ProcScan, run_inv_on_tty

# A passphrase the dry and device-mapper tests never send: unique, so another process on this machine
# (a test named "..._never_...") cannot hold it in its environment.
NEVER = "never-" + secrets.token_hex(8)

# Slow enough (~0.35 s a try) that the /proc scan reliably sees every cryptsetup it vouches for.
ITERATIONS = "1000000"


@pytest.fixture(scope="module")
def volume(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A 16 MiB LUKS2 file and its passphrase (random, so it can appear nowhere by chance)."""
    path = tmp_path_factory.mktemp("luks") / "md2.img"
    with path.open("wb") as f:
        f.truncate(16 << 20)
    passphrase = "aegir-" + secrets.token_hex(12)
    subprocess.run(["cryptsetup", "luksFormat", "--batch-mode", "--type", "luks2", "--pbkdf", "pbkdf2",
                    "--pbkdf-force-iterations", ITERATIONS, "--key-file=-", str(path)],
                   input=passphrase.encode(), check=True, capture_output=True)
    assert subprocess.run(["cryptsetup", "isLuks", str(path)]).returncode == 0
    return path, passphrase


@pytest.fixture(scope="module")
def inventory(volume: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This machine as host `vault`, its luks.device being the LUKS file."""
    path = tmp_path_factory.mktemp("inv") / "hosts.yml"
    srv = tmp_path_factory.mktemp("srv")
    path.write_text(yaml.safe_dump({"hosts": {"vault": {
        "connection": "local", "srv": str(srv), "luks": {"device": str(volume[0]), "name": "aegirtest"}}}}))
    return path


def unlock(inventory: Path, *flags: str, typed: list[str], terminal: bool = True, secrets_: list[str]):
    """Run boot.unlock on a terminal while scanning /proc; return the run and the scan."""
    with ProcScan(*secrets_, watch="cryptsetup") as scan:
        run = run_inv_on_tty("--debug", "boot.unlock", "--format", "json", *flags, inventory=inventory,
                             typed=typed, terminal=terminal)
    for text in (run.stdout, run.stderr, run.screen):
        for s in secrets_:
            assert s not in text
    assert scan.hits == [], f"a secret was visible in /proc: {scan.hits}"
    assert "invoke.executor.execute" in run.stderr  # Invoke's --debug logging was on, and held no secret either
    return run, scan


def tries(scan: ProcScan) -> list[str]:
    """The passphrase checks the scan caught (the bash -c wrapper and cryptsetup itself show the same line)."""
    return [c for c in scan.watched.values() if c.startswith("cryptsetup open --test-passphrase")]


def result(run) -> dict:
    return json.loads(run.stdout)["hosts"][0]


def test_the_right_passphrase_typed_at_the_terminal_opens_the_volume_without_echo(inventory, volume):
    device, passphrase = volume
    run, scan = unlock(inventory, "--test-passphrase", typed=[passphrase], secrets_=[passphrase])
    assert run.returncode == 0, run.stderr
    assert run.screen == f"vault: LUKS passphrase for {device}: \n"
    assert result(run)["result"]["detail"] == f"the passphrase opens {device} (try 1 of 3); nothing activated"
    assert tries(scan) == [f"cryptsetup open --test-passphrase --key-file=- {device}"]


def test_a_wrong_passphrase_is_asked_again_and_the_right_one_then_accepted(inventory, volume):
    device, passphrase = volume
    wrong = "wrong-" + secrets.token_hex(8)
    run, scan = unlock(inventory, "--test-passphrase", typed=[wrong, passphrase], secrets_=[passphrase, wrong])
    assert run.returncode == 0, run.stderr
    assert run.screen.splitlines() == [f"vault: LUKS passphrase for {device}: ", "vault: wrong passphrase, try 2 of 3: "]
    assert result(run)["result"]["detail"] == f"the passphrase opens {device} (try 2 of 3); nothing activated"
    assert len(scan.watched) >= 2  # two cryptsetup runs (each seen as bash -c and as cryptsetup)


def test_three_wrong_passphrases_are_refused(inventory, volume):
    device, passphrase = volume
    wrong = ["wrong-" + secrets.token_hex(8) for _ in range(3)]
    run, scan = unlock(inventory, "--test-passphrase", typed=[*wrong, passphrase], secrets_=[passphrase, *wrong])
    assert run.returncode == 1
    assert run.prompts == 3  # the fourth string was never asked for
    assert run.screen.splitlines() == [f"vault: LUKS passphrase for {device}: ", "vault: wrong passphrase, try 2 of 3: ",
                                       "vault: wrong passphrase, try 3 of 3: "]
    assert result(run)["error"] == f"wrong passphrase 3 times for {device}: refused, nothing unlocked"
    assert len({pid for pid, line in scan.watched.items() if line.startswith("cryptsetup open")}) >= 3


def test_passphrases_can_be_piped_for_scripts(inventory, volume):
    device, passphrase = volume
    with ProcScan(passphrase, watch="cryptsetup") as scan:
        run = run_inv_on_tty("boot.unlock", "--test-passphrase", "--passphrase-stdin", inventory=inventory,
                             terminal=False, input=f"nope\n{passphrase}\n")
    assert run.returncode == 0, run.stderr
    assert passphrase not in run.stdout + run.stderr and scan.hits == []
    assert "the passphrase opens" in run.stdout and "(try 2 of 3)" in run.stdout


def test_without_a_terminal_and_without_a_passphrase_it_refuses_clearly(inventory, volume):
    run, scan = unlock(inventory, "--test-passphrase", typed=[], terminal=False, secrets_=[volume[1]])
    assert run.returncode == 1
    assert result(run)["error"] == ("no terminal to read the passphrase from (/dev/tty: No such device or address): "
                                    "run it from a terminal, or pipe the passphrase with --passphrase-stdin")
    assert tries(scan) == []  # isLuks ran, no passphrase check did


def test_dry_shows_the_command_and_asks_nothing(inventory, volume):
    device, _ = volume
    run, scan = unlock(inventory, "--test-passphrase", "--dry", typed=[NEVER], secrets_=[NEVER])
    assert run.returncode == 0
    assert (run.prompts, run.screen) == (0, "")
    assert result(run)["result"]["state"] == "would"
    assert result(run)["result"]["commands"] == [f"cryptsetup open --test-passphrase --key-file=- {device}"]
    assert tries(scan) == []


def test_a_real_unlock_on_this_kernel_stops_at_device_mapper_before_asking(inventory, volume):
    run, scan = unlock(inventory, typed=[NEVER], secrets_=[NEVER])
    assert run.returncode == 1
    assert run.prompts == 0
    assert result(run)["error"].startswith("cannot read the state of mapping 'aegirtest': device-mapper is not "
                                           "available on this host")
    assert not [c for c in scan.watched.values() if "luksOpen" in c]


def test_a_file_that_is_not_luks_is_refused_before_any_prompt(tmp_path):
    plain = tmp_path / "plain.img"
    plain.write_bytes(b"\0" * 4096)
    inv = tmp_path / "hosts.yml"
    inv.write_text(yaml.safe_dump({"hosts": {"vault": {"connection": "local", "luks": {"device": str(plain)}}}}))
    run = run_inv_on_tty("boot.unlock", "--test-passphrase", inventory=inv, typed=["never"])
    assert (run.returncode, run.prompts) == (1, 0)
    assert f"{plain} is not a LUKS device (cryptsetup isLuks says no)" in run.stdout
