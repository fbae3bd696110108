"""Passphrase prompting on a real pseudo-terminal: no echo, once per host, three tries.

Each test opens a pty pair; aegir reads from the slave side (as it reads
/dev/tty) while the test plays the operator on the master side: it waits for
the prompt, types, and reads back what the terminal showed.
"""

from __future__ import annotations

import io
import os
import select
import termios
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from aegir.boot.secrets import NoPassphrase, Prompter, read_secret, retry
from aegir.errors import AegirError, RefusedError


@pytest.fixture
def tty() -> Iterator[tuple[int, str, int]]:
    """(master fd, slave path, slave fd): a terminal the test types into."""
    master, slave = os.openpty()
    yield master, os.ttyname(slave), slave
    os.close(master)
    os.close(slave)


def operate(master: int, fn: Callable[[], object], typed: list[str], timeout: float = 5) -> tuple[object, str]:
    """Run `fn` in a thread; type each of `typed` after each prompt; return its result and the screen."""
    screen = b""
    left = list(typed)
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(fn)
        deadline = time.monotonic() + timeout
        seen = 0
        while not future.done() and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                screen += os.read(master, 4096)
            if left and screen.rstrip(b" ").endswith(b":") and len(screen) > seen:
                seen = len(screen)
                os.write(master, left.pop(0).encode())
        while select.select([master], [], [], 0.05)[0]:
            screen += os.read(master, 4096)
        return future.result(timeout=1), screen.decode()


def test_the_passphrase_is_read_with_echo_off_and_the_terminal_restored(tty):
    master, path, slave = tty
    value, screen = operate(master, lambda: read_secret("hyp1: LUKS passphrase for /dev/md2: ", path),
                            ["s3cret pass\n"])
    assert value == "s3cret pass"
    assert "s3cret" not in screen
    assert screen.replace("\r", "") == "hyp1: LUKS passphrase for /dev/md2: \n"
    assert termios.tcgetattr(slave)[3] & termios.ECHO  # echo is back on


def test_end_of_input_at_the_prompt_is_a_refusal(tty):
    master, path, _ = tty
    with pytest.raises(NoPassphrase, match=r"no passphrase typed \(end of input\)"):
        operate(master, lambda: read_secret("pw: ", path), ["\x04"])


def test_without_a_terminal_it_refuses_and_says_how_to_proceed(tmp_path):
    with pytest.raises(NoPassphrase, match=r"no terminal to read the passphrase from \(.*/none: No such file or "
                                           r"directory\): run it from a terminal, or pipe the passphrase with "
                                           r"--passphrase-stdin"):
        read_secret("pw: ", str(tmp_path / "none"))
    (tmp_path / "file").write_text("")
    with pytest.raises(NoPassphrase, match="is not a terminal: cannot turn echo off"):
        read_secret("pw: ", str(tmp_path / "file"))


def test_each_host_is_asked_its_own_passphrase_by_default(tty):
    master, path, _ = tty
    p = Prompter(tty=path)

    def two_hosts() -> list[str]:
        got = [p.ask("hyp1", "/dev/md2", 1)]
        p.accepted(got[0])
        got.append(p.ask("hyp2", "/dev/md2", 1))
        return got

    value, screen = operate(master, two_hosts, ["one\n", "two\n"])
    assert value == ["one", "two"]
    assert screen.replace("\r", "").splitlines() == ["hyp1: LUKS passphrase for /dev/md2: ",
                                                     "hyp2: LUKS passphrase for /dev/md2: "]


def test_same_passphrase_asks_once_for_every_host(tty):
    master, path, _ = tty
    p = Prompter(tty=path, same=True)

    def three_hosts() -> list[str]:
        got = []
        for host in ("hyp1", "hyp2", "hyp3"):
            got.append(p.ask(host, "/dev/md2", 1))
            p.accepted(got[-1])
        return got

    value, screen = operate(master, three_hosts, ["shared\n"])
    assert value == ["shared"] * 3
    assert screen.replace("\r", "").splitlines() == [
        "hyp1: LUKS passphrase for /dev/md2 (and the next hosts: --same-passphrase): "]


def test_retries_prompt_with_the_try_number(tty):
    master, path, _ = tty
    p = Prompter(tty=path)
    value, screen = operate(master, lambda: retry(p, "hyp1", "/dev/md2", lambda pw: pw == "right"),
                            ["bad\n", "right\n"])
    assert value == 2
    assert screen.replace("\r", "").splitlines() == ["hyp1: LUKS passphrase for /dev/md2: ",
                                                     "hyp1: wrong passphrase, try 2 of 3: "]


def test_three_wrong_passphrases_are_refused_and_a_fourth_is_never_asked():
    stream = io.StringIO("a\nb\nc\nright\n")
    tried: list[str] = []

    def attempt(pw: str) -> bool:
        tried.append(pw)
        return pw == "right"

    with pytest.raises(RefusedError) as err:
        retry(Prompter(stream=stream, notes=io.StringIO()), "hyp1", "/dev/md2", attempt)
    assert str(err.value) == "hyp1: wrong passphrase 3 times for /dev/md2: refused, nothing unlocked"
    assert tried == ["a", "b", "c"]
    assert stream.readline() == "right\n"


def test_a_failure_other_than_a_wrong_passphrase_stops_at_once():
    stream = io.StringIO("a\nb\n")

    def attempt(pw: str) -> bool:
        raise AegirError("cryptsetup exited 5: device busy")

    with pytest.raises(AegirError, match="device busy"):
        retry(Prompter(stream=stream), "hyp1", "/dev/md2", attempt)
    assert stream.readline() == "b\n"


def test_passphrases_from_stdin_are_lines_and_running_out_is_a_refusal():
    notes = io.StringIO()
    p = Prompter(stream=io.StringIO("pass phrase\r\n"), notes=notes)
    assert p.ask("hyp1", "/dev/md2", 1) == "pass phrase"
    with pytest.raises(NoPassphrase, match=r"no passphrase left on standard input \(--passphrase-stdin\)"):
        p.ask("hyp1", "/dev/md2", 2)
    assert notes.getvalue() == "hyp1: wrong passphrase, reading try 2 of 3 from standard input\n"


def test_an_empty_passphrase_is_not_tried():
    with pytest.raises(NoPassphrase, match="empty passphrase: nothing tried"):
        Prompter(stream=io.StringIO("\n")).ask("hyp1", "/dev/md2", 1)


def test_passphrase_stdin_on_a_terminal_is_still_read_without_echo(tty):
    """--passphrase-stdin typed at a prompt by habit: the terminal must not show the passphrase."""
    master, path, _ = tty
    got: list[str] = []
    with open(path) as stdin:
        p = Prompter(stream=stdin, tty=path)
        reader = threading.Thread(target=lambda: got.append(p.ask("hyp1", "/dev/md2", 1)), daemon=True)
        reader.start()
        screen, deadline = b"", time.monotonic() + 2
        while not screen.rstrip(b" ").endswith(b":") and time.monotonic() < deadline:
            if select.select([master], [], [], 0.05)[0]:
                screen += os.read(master, 4096)
        os.write(master, b"s3cret pass\n")  # typed, prompt or not
        reader.join(2)
        while select.select([master], [], [], 0.1)[0]:
            screen += os.read(master, 4096)
    assert got == ["s3cret pass"]
    assert b"s3cret" not in screen
    assert screen.decode().replace("\r", "") == "hyp1: LUKS passphrase for /dev/md2: \n"
