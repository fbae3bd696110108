"""apps.compose's pure parts: which subcommands change things, the question, the table (exact strings)."""

from __future__ import annotations

import pytest

from aegir.action import HostRun, Ran
from aegir.compose import commands as compose
from aegir.compose.discovery import Project
from aegir.compose.passthrough import CHANGE, READ, RUN_THROUGH, PassPlan, PassResult, check_args, classify
from aegir.compose.report import passthrough_report
from aegir.compose.steps import Passthrough
from aegir.errors import UsageError
from aegir.fleet import Outcome
from aegir.inventory import Host

V2 = compose.Flavour(("docker", "compose"), "2.40.3")
FRONT = Project("core", "front", "/srv/core/front", "compose.yaml")
WIKI = Project("apps", "wiki", "/srv/apps/wiki", "compose.yaml")


@pytest.mark.parametrize(("args", "kind"), [
    (["ps"], READ), (["logs", "--tail", "5"], READ), (["config", "--volumes"], READ), (["images"], READ),
    (["top"], READ), (["ls"], READ), (["version"], READ), (["port", "web", "80"], READ), (["events"], READ),
    (["exec", "-T", "web", "rm", "-rf", "/tmp/x"], RUN_THROUGH), (["exec", "-T", "db", "ls", "-v"], RUN_THROUGH),
    (["down"], CHANGE), (["down", "-v"], CHANGE), (["rm", "-f"], CHANGE), (["stop"], CHANGE), (["kill"], CHANGE),
    (["up", "-d"], CHANGE), (["start"], CHANGE), (["restart"], CHANGE), (["pull"], CHANGE), (["create"], CHANGE),
    (["pause"], CHANGE), (["unpause"], CHANGE), (["build"], CHANGE), (["push"], CHANGE), (["cp", "a", "web:/b"], CHANGE),
    (["run", "--rm", "web", "true"], CHANGE), (["watch"], CHANGE), (["frobnicate"], CHANGE),
    (["ps", "-v"], CHANGE), (["logs", "--volumes"], CHANGE),
])
def test_reads_and_exec_run_through_and_everything_else_is_a_change(args, kind):
    assert classify(args) == kind


def test_the_words_after_dashdash_must_start_with_a_subcommand():
    assert check_args(["ps", "-a"]) == ("ps", "-a")
    with pytest.raises(UsageError) as err:
        check_args(["--volumes", "down"])
    assert str(err.value) == ("apps.compose: a Compose subcommand must come first after '--' (exec, top, images...), "
                              "not '--volumes'")
    with pytest.raises(UsageError, match="put the Compose subcommand after '--'"):
        check_args([])


def plans(*runs: tuple[str, Project]) -> list[Outcome[PassPlan]]:
    by_host: dict[str, list[Project]] = {}
    for host, p in runs:
        by_host.setdefault(host, []).append(p)
    return [Outcome(Host(h), PassPlan(h, tuple((p.path, p.kind, compose.passthrough(V2, p, ["down", "-v"]))
                                               for p in ps), tuple(ps)))
            for h, ps in by_host.items()]


def test_a_change_asks_naming_each_host_and_project_and_says_core_is_core():
    action = Passthrough("front", ["down", "-v"])
    assert action.question(plans(("hyp1", FRONT), ("hyp2", FRONT))) == (
        "Run `compose down -v` for hyp1:core/front, hyp2:core/front (core/front: a core project, every app goes "
        "through it; whatever this stops stays stopped until core.up)?")
    assert Passthrough("wiki", ["down", "-v"]).question(plans(("hyp1", WIKI))) == (
        "Run `compose down -v` for hyp1:apps/wiki?")
    assert Passthrough("wiki", ["ps"]).question(plans(("hyp1", WIKI))) is None
    assert Passthrough("wiki", ["exec", "-T", "wiki", "rm", "x"]).question(plans(("hyp1", WIKI))) is None


def test_a_name_no_host_that_answered_has_is_refused_with_did_you_mean():
    with pytest.raises(UsageError) as err:
        Passthrough("wikki", ["ps"]).refuse(plans(("hyp1", WIKI)))
    assert str(err.value) == "no project 'wikki' on any target host (did you mean wiki?)"
    Passthrough("wikki", ["ps"]).refuse([Outcome(Host("hyp1"), None, "unreachable", "unreachable")])  # nobody said


def test_the_plan_is_each_hosts_exact_command_and_a_quiet_run_prints_only_failures():
    planned = plans(("hyp1", WIKI))
    dry = Ran(tuple(Outcome(o.host, HostRun(o.value)) for o in planned), dry=True, acted=False)
    line = ("docker compose --project-directory /srv/apps/wiki -f /srv/apps/wiki/compose.yaml -p wiki down -v")
    report = passthrough_report(dry, quiet=False)
    assert report.data["hosts"] == [{"host": "hyp1", "status": "ok", "error": None,
                                     "runs": [{"project": "apps/wiki", "command": line, "result": "would"}]}]
    assert (report.data["task"], report.data["dry"]) == ("apps.compose", True)
    assert "would" in report.text and "apps/wiki" in report.text
    ok = Ran((Outcome(Host("hyp1"), HostRun(planned[0].value, PassResult((("apps/wiki", line, 0),)))),),
             dry=False, acted=True)
    assert passthrough_report(ok, quiet=True).text == ""
    bad = Ran((Outcome(Host("hyp1"), HostRun(planned[0].value, PassResult((("apps/wiki", line, 1),))),
                       f"{line} exited 1", "failed"),), dry=False, acted=True)
    assert "failed: exited 1" in passthrough_report(bad, quiet=True).text
