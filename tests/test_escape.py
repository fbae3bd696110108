"""No raw host text on the terminal (issue 22): a lab host full of hostile text, every task's output read back.

The host (`hostile_place`, the contract's host of tests/test_contract.py plus what a hostile host plants)
carries `HOSTILE` (a screen clear, an OSC 52 clipboard write ended by BEL, a C1 CSI, a bidi override) in:

- a project folder's name under /srv (`NAME`), and one whose name is not UTF-8 at all (`NOT_UTF8`);
- a Compose service name and a DNS name of that project (its lint and the DNS problem line);
- the labels of a container (its Compose project, service and folder: what apps.status and disk read);
- the log and the result of the mysql app's last checkpoint (what mysql.status follows and shows);
- a comment of the host's own firewall template (what fw.render and fw.diff show verbatim).

Every task of the collection (`tests.test_contract.TASKS`, so a new task is in) runs through the real ``inv``
as the contract runs it (its --dry, --yes), once with ``--format json`` (where it takes it) and once as a
table; the tasks that take a project run on the hostile one too (refused as a usage error that quotes the
name: project names are checked first); the confirmation questions are answered "n" at a real terminal.
Each output must be valid UTF-8 with no character a terminal acts on but newline and tab (`raw_controls`);
JSON keeps the host's text as data (json escapes it).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from aegir.compose.state import LABEL_PROJECT, LABEL_SERVICE, LABEL_WORKING_DIR
from aegir.fw.render import packaged
from tests.helpers import answered_at_a_terminal, remove_compose_containers, run_inv
from tests.lab import Lab
from tests.lab import mysql_app as shop
from tests.test_contract import IMAGE, PROJECTS, TASKS, command, flags, write_inventory, write_projects

#: What a hostile host writes where aegir reads: ESC [2J (clear the screen), an OSC 52 clipboard write ended
#: by BEL, a C1 CSI (U+009B: "\x9b31m" turns text red on terminals that take 8-bit controls), U+202E (right to
#: left override) and U+2066 (an isolate).
HOSTILE = "\x1b[2J\x1b]52;c;cHduZWQ=\x07\x9b31m\u202eexe.txt\u2066"
#: A project folder named with it (apps/NAME), and one whose name is not even UTF-8.
NAME = f"evil{HOSTILE}x"
NOT_UTF8 = b"bad\xff\xfe\x1b[2J"
#: Its compose file: a service and a DNS name carrying the same.
EVIL_COMPOSE = (f'services:\n  "web{json.dumps(HOSTILE)[1:-1]}":\n    image: {IMAGE}\n    pull_policy: never\n'
                '    command: ["sleep", "86400"]\n'
                f'x-aegir:\n  dns:\n    names: ["n{json.dumps(HOSTILE)[1:-1]}"]\n')
#: The mysql app's last checkpoint, as its state folder holds it (a failed run: the reason is the host's).
STATE = "conf/aegir/mysql/apps-shop"
LOG = f"copy started\nmariadb says: {HOSTILE}\n".encode() + b"a byte that is not UTF-8: \xff\xfe\n"
RESULT = {"run": "20260101-000000", "ok": False, "failed_step": "copy", "error": f"copy failed: {HOSTILE}"}


def raw_controls(text: str) -> list[str]:
    """The characters of `text` a terminal would act on rather than show (newline and tab apart)."""
    return sorted({repr(ch) for ch in text
                   if (ord(ch) < 0x20 and ch not in "\n\t") or 0x7f <= ord(ch) <= 0x9f
                   or 0x202a <= ord(ch) <= 0x202e or 0x2066 <= ord(ch) <= 0x2069 or 0xd800 <= ord(ch) <= 0xdfff})


def clean(res: subprocess.CompletedProcess[str], argv: list[str]) -> None:
    """`res` printed no raw control character on stdout or stderr (run_inv decodes them as strict UTF-8)."""
    for name, text in (("stdout", res.stdout), ("stderr", res.stderr)):
        bad = raw_controls(text)
        assert not bad, (f"inv {shlex.join(argv)} (exit {res.returncode}) wrote {', '.join(bad)} on {name}:\n"
                         f"{text[-4000:]!r}")


@pytest.fixture(scope="module")
def hostile(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """A lab host with the contract's projects (core/front, apps/cloud and users/blog up, the mysql app) and
    the hostile text planted (see the module's docstring); its inventory and an out folder."""
    with lab.extra_host() as host:
        srv = host.root("/srv")
        write_projects(srv)
        write_projects(srv, {f"apps/{NAME}/docker-compose.yml": EVIL_COMPOSE})
        os.makedirs(os.fsencode(srv / "apps") + b"/" + NOT_UTF8)
        (Path(os.fsdecode(os.fsencode(srv / "apps") + b"/" + NOT_UTF8)) / "docker-compose.yml").write_text(
            PROJECTS["users/blog/docker-compose.yml"])
        (srv / "templates/nftables.nft.j2").write_text(f"# the host's own: {HOSTILE}\n" + packaged().source)
        shop.deploy(host)
        state = srv / STATE
        state.mkdir(parents=True, exist_ok=True)
        (state / "log").write_bytes(LOG)
        (state / "result.json").write_text(json.dumps(RESULT))
        tmp = tmp_path_factory.mktemp("escape")
        inventory = write_inventory(tmp / "hosts.yml", lab.inventory_data([host]))
        for up in (["core.up"], ["apps.up", "cloud,blog"]):
            done = run_inv(*up, inventory=inventory)
            assert done.returncode == 0, done.stdout + done.stderr
        client = host.docker_client()
        try:
            client.containers.create(IMAGE, ["sleep", "86400"], name="planted", labels={
                LABEL_PROJECT: f"p{HOSTILE}", LABEL_SERVICE: f"s{HOSTILE}",
                LABEL_WORKING_DIR: f"/srv/apps/{NAME}"})
        finally:
            client.close()
        (tmp / "out").mkdir()
        try:
            yield inventory, tmp / "out"
        finally:
            remove_compose_containers(host)


#: (task, the run's variant): every task as the contract runs it, in JSON and as a table; on the hostile project
#: where the contract names apps/cloud.
CASES = [(task, variant) for task in TASKS for variant in ("json", "table", "hostile")
         if (variant != "json" or "format" in flags(task))
         and (variant != "hostile" or "cloud" in command(task, Path("/o")))]


def argv_of(task: str, variant: str, out: Path) -> list[str]:
    argv = command(task, out)
    if variant != "json" and "--format" in argv:
        at = argv.index("--format")
        del argv[at:at + 2]
    if variant == "hostile":
        argv = [NAME if a == "cloud" else a for a in argv]
    return argv


@pytest.mark.parametrize(("task", "variant"), CASES, ids=[f"{t}-{v}" for t, v in CASES])
def test_no_raw_control_byte_reaches_the_terminal(hostile, task, variant):
    inventory, out = hostile
    argv = argv_of(task, variant, out)
    res = run_inv(*argv, inventory=inventory, timeout=180)
    clean(res, argv)
    if variant == "json" and res.stdout.strip():
        json.loads(res.stdout)  # the host's text is data there, escaped by json


def test_the_hosts_text_is_there_escaped_not_lost(hostile):
    """The escaping shows the text (an operator can see what the host holds), it does not drop it."""
    inventory, out = hostile
    status = run_inv("mysql.status", "shop", inventory=inventory)
    clean(status, ["mysql.status", "shop"])
    shown = status.stdout + status.stderr
    assert "mariadb says: \\x1b[2J\\x1b]52;c;cHduZWQ=\\x07\\x9b31m\\u202eexe.txt\\u2066" in shown
    assert "copy failed: \\x1b[2J" in shown
    rendered = run_inv("fw.render", inventory=inventory)
    clean(rendered, ["fw.render"])
    assert rendered.stdout.startswith("# the host's own: \\x1b[2J")
    assert "\n\t" in rendered.stdout or "\n  " in rendered.stdout  # still a ruleset: its lines and indents
    data = json.loads(run_inv("mysql.status", "shop", "--format", "json", inventory=inventory).stdout)
    assert data["hosts"][0]["result"]["error"] == f"copy failed: {HOSTILE}"


@pytest.mark.parametrize(("argv", "answer"), [(["mysql.checkpoint", "shop"], "n"), (["apps.stop", "--all"], "n"),
                                               (["mysql.checkpoint", "shop"], "\x04")],
                         ids=["mysql.checkpoint", "apps.stop", "mysql.checkpoint-ctrl-d"])
def test_no_at_a_question_is_a_clean_not_confirmed_with_the_question_escaped(hostile, argv, answer):
    """The question (and the plan shown before it) names the host's projects; "n" (or Ctrl-D: the input
    ends) does nothing, says so in one line, exit 1 as every declined question: no traceback, no "internal
    error" row."""
    inventory, _ = hostile
    said_no = answered_at_a_terminal(inventory, answer, *argv)
    clean(said_no, argv)
    assert said_no.returncode == 1, said_no.stdout + said_no.stderr
    assert "[y/N]" in said_no.stdout
    assert "Traceback" not in said_no.stderr and "internal error" not in said_no.stdout + said_no.stderr
    assert said_no.stderr.strip().splitlines()[-1].startswith("aegir: nothing"), said_no.stderr

