"""Every parser of what a host answers, fuzzed: a bad answer is that parser's designated error, never a traceback.

Inputs are real answers (recorded from the lab's dockerd, the checkpoint program's result) mutated by
hypothesis (a value replaced by any JSON, a key dropped, a value wrapped in a list or a mapping, a key
added), and arbitrary JSON. Each parser must return, or raise an `AegirError` (`aegir.fields.ShapeError`
for Docker's JSON): anything else is a traceback on the operator's terminal. Seeded: the same examples
on every run. ``python -m tests.unit.test_fuzz_parsers`` counts the failing examples per parser instead
of stopping at the first.
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aegir import docker
from aegir.compose import state as compose_state
from aegir.disk import facts as disk_facts
from aegir.disk.recipe import apply_override, parse_override, parse_recipe, render, shipped_text
from aegir.errors import AegirError
from aegir.fw import model as fw_model
from aegir.mysql import facts as mysql_facts
from aegir.mysql import report as mysql_report
from aegir.mysql.plan import RestorePlan
from aegir.mysql.steps import Restored
from aegir.net import facts as net_facts
from aegir.sh import Reply

DATA = Path(__file__).parent / "data"
EXAMPLES = 300
FUZZ = settings(derandomize=True, max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

NETWORKS = [
    {"Name": "bridge", "Id": "a" * 64, "Driver": "bridge", "Scope": "local", "EnableIPv6": False,
     "IPAM": {"Driver": "default", "Options": None, "Config": [{"Subnet": "172.17.0.0/16", "Gateway": "172.17.0.1"}]},
     "Options": {"com.docker.network.bridge.name": "docker0"}, "Labels": {}},
    {"Name": "shop_default", "Id": "b" * 64, "Driver": "bridge", "Scope": "local", "EnableIPv6": True,
     "IPAM": {"Driver": "default", "Config": [{"Subnet": "172.18.0.0/16"}, {"Subnet": "fd00:18::/64"}]},
     "Labels": {"com.docker.compose.network": "default", "com.docker.compose.project": "shop"}},
]
ADDRESSES = [
    {"ifindex": 1, "ifname": "lo", "flags": ["LOOPBACK", "UP"], "mtu": 65536,
     "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8, "scope": "host"},
                   {"family": "inet6", "local": "::1", "prefixlen": 128, "scope": "host"}]},
    {"ifindex": 2, "ifname": "eth0", "mtu": 1500,
     "addr_info": [{"family": "inet", "local": "192.0.2.10", "prefixlen": 24, "scope": "global"}]},
]
CONTAINERS = json.loads((DATA / "compose_containers_api.json").read_text())
DF = json.loads((DATA / "docker_df_20.10.json").read_text())
INSPECT = json.loads((DATA / "fw_inspect_lab.json").read_text())[0]
IMAGES = json.loads((DATA / "compose_images_api.json").read_text())
RESULT = {"run": "20261201T101010Z", "ok": True, "mode": "cold", "entry": "20261201T101010Z",
          "wal_before": 4096, "wal_after": 1024, "downtime": 1.25, "current": "mysql-bin.000042",
          "archived": ["mysql-bin.000040", "mysql-bin.000041"], "removed": ["20261101T000000Z"],
          "steps": [{"step": "stop", "seconds": 0.5}, {"step": "copy", "seconds": 3.25}]}
FAILED_RESULT = {"run": "20261201T101010Z", "ok": False, "failed_step": "copy", "error": "disk full",
                 "recovered": {"did": ["started mysql again"]}}
RESTORE_PLAN = {"at": "20261201T101010Z", "mode": "cold", "into": "/srv/scratch", "base": "/srv/archive/x",
                "chain": ["mysql-bin.000041", "mysql-bin.000042"], "start": ["mysql-bin.000041", 4],
                "image": "mariadb:11", "service": "db"}
RESTORED = {"at": "20261201T101010Z", "into": "/srv/scratch", "replayed": ["mysql-bin.000041"]}

# --------------------------------------------------------------------------- strategies

scalars = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.just(-10**400) | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(max_size=12) | st.sampled_from(["", "/", "running", "172.17.0.0/16", "::1", "1e400", "12"]))
any_json = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


@st.composite
def mutation(draw: st.DrawFn, value: Any, depth: int = 0) -> Any:
    """`value` changed at one place: descend into a child, or replace, drop, wrap or add there."""
    children = list(value) if isinstance(value, dict) else list(range(len(value))) if isinstance(value, list) else []
    if children and depth < 8 and draw(st.integers(0, 3)) > 0:
        key = draw(st.sampled_from(children))
        out = copy.copy(value)
        out[key] = draw(mutation(value[key], depth + 1))
        return out
    how = draw(st.sampled_from(["replace", "drop", "wrap_list", "wrap_map", "add", "string"]))
    if how == "drop" and children:
        out = copy.copy(value)
        del out[draw(st.sampled_from(children))]
        return out
    if how == "wrap_list":
        return [value]
    if how == "wrap_map":
        return {draw(st.text(max_size=4)): value}
    if how == "add" and isinstance(value, dict):
        return {**value, draw(st.text(max_size=6)): draw(any_json)}
    if how == "string":
        return json.dumps(value)
    return draw(any_json)


def answers(real: Any) -> st.SearchStrategy[Any]:
    """A real answer mutated one to three times, or any JSON at all."""
    def more(v: Any) -> st.SearchStrategy[Any]:
        return mutation(v)
    once = mutation(real)
    return st.one_of(once, once.flatmap(more), once.flatmap(more).flatmap(more), any_json)


def survives(parse: Callable[[Any], Any], value: Any, designated: type[BaseException] = AegirError) -> None:
    """`parse(value)` returns, or raises `designated`; any other exception fails (it would be a traceback)."""
    try:
        parse(value)
    except designated:
        pass


# --------------------------------------------------------------------------- the parsers, as the code calls them


def _state(stdout_result: Any, stdout_state: Any = None) -> str:
    """`run_state_cmd` output with these JSON files (a non-string: written as JSON)."""
    def text(v: Any) -> str:
        return v if isinstance(v, str) else json.dumps(v)
    return f"\035state.json\n{text(stdout_state or {})}\035result.json\n{text(stdout_result)}\035lock\nfree\035log\n"


def checkpoint_status(result: Any) -> str:
    """mysql.status from a result.json: parsed, then shown."""
    st_ = mysql_facts.parse_run_state(_state(result))
    return mysql_report.result_text("hyp1", st_.result)


def restore_plan(program: Any) -> str:
    value = mysql_facts.parse_program(Reply(json.dumps(program) + "\n", "", 0), "restore-plan")
    return mysql_report.restore_plan_text("hyp1", RestorePlan("/srv/apps/shop", None, value))


def restored(program: Any) -> str:
    value = mysql_facts.parse_program(Reply(json.dumps(program) + "\n", "", 0), "restore")
    return mysql_report.restored_text("hyp1", Restored(value, None))


def checkpoint_plan(program: Any) -> str:
    value = mysql_facts.parse_program(Reply(json.dumps(program) + "\n", "", 0), "plan")
    return mysql_report.plan_text("hyp1", value)


CHECKPOINT_PLAN = {"mode": "cold", "service": "db", "dependents": ["web"], "run": "r1",
                   "target": {"path": "apps/shop", "db": "/srv/apps/shop/db", "wal": "/srv/apps/shop/wal",
                              "archive": "/srv/archive/mysql/apps/shop", "state": "/srv/conf/aegir/mysql/apps-shop"},
                   "login": {"user": "root", "how": "MYSQL_ROOT_PASSWORD", "client": "mariadb"},
                   "steps": [{"name": "stop", "what": "stop the app", "commands": ["docker compose stop web"]}]}

PARSERS: dict[str, tuple[Callable[[Any], Any], st.SearchStrategy[Any]]] = {
    "docker.parse_networks": (docker.parse_networks, answers(NETWORKS)),
    "net.parse_containers": (net_facts.parse_containers, answers(CONTAINERS)),
    "net.parse_addresses": (lambda v: net_facts.parse_addresses(json.dumps(v)), answers(ADDRESSES)),
    "disk.parse_docker_df": (disk_facts.parse_docker_df, answers(DF)),
    "disk.parse_docker_state": (lambda v: disk_facts.parse_docker_state(*v),  # three answers, each mutated
                                st.tuples(answers(DF), answers(CONTAINERS), answers(NETWORKS))),
    "compose.parse_containers": (compose_state.parse_containers, answers(CONTAINERS)),
    "compose.image_created": (compose_state.image_created, answers(IMAGES)),
    "fw.parse_container": (fw_model.parse_container, answers(INSPECT)),
    "mysql.result.json": (checkpoint_status, answers(RESULT)),
    "mysql.result.json failed": (checkpoint_status, answers(FAILED_RESULT)),
    "mysql.plan": (checkpoint_plan, answers(CHECKPOINT_PLAN)),
    "mysql.restore-plan": (restore_plan, answers(RESTORE_PLAN)),
    "mysql.restore": (restored, answers(RESTORED)),
}


def _fuzz(name: str) -> Callable[[], None]:
    parse, strategy = PARSERS[name]

    @FUZZ
    @given(strategy)
    def test(value: Any) -> None:
        survives(parse, value)

    test.__name__ = f"test_fuzz_{name}"
    return test


test_docker_networks = _fuzz("docker.parse_networks")
test_net_containers = _fuzz("net.parse_containers")
test_net_addresses = _fuzz("net.parse_addresses")
test_disk_docker_df = _fuzz("disk.parse_docker_df")
test_disk_docker_state = _fuzz("disk.parse_docker_state")
test_compose_containers = _fuzz("compose.parse_containers")
test_compose_image_created = _fuzz("compose.image_created")
test_fw_inspect = _fuzz("fw.parse_container")
test_mysql_result = _fuzz("mysql.result.json")
test_mysql_failed_result = _fuzz("mysql.result.json failed")
test_mysql_plan = _fuzz("mysql.plan")
test_mysql_restore_plan = _fuzz("mysql.restore-plan")
test_mysql_restored = _fuzz("mysql.restore")


# --------------------------------------------------------------------------- x-aegir.clean.vars

SYNAPSE = "services:\n  synapse:\n    image: x\nx-aegir:\n  clean:\n    vars:\n      media_days: {}\n"
var_values = (st.sampled_from(["inf", "-inf", "nan", ".inf", ".nan", "-.inf", "1e400", "1e308", "-1", "0", "3",
                               "'inf'", "'1e999'", "0x10", "1_000", "[1]", "{a: 1}", "~", "''", "3.5"])
              | st.floats(allow_nan=True, allow_infinity=True).map(repr) | st.integers(-2**80, 2**80).map(str))


def clean_with_vars(value: str) -> None:
    """disk.clean's plan of a synapse app whose compose file sets ``media_days`` (its purge's
    ``{days_ago_ms:media_days}``) to `value` (YAML text)."""
    file, text = shipped_text("synapse")
    recipe = apply_override(parse_recipe(text, file, "synapse"), parse_override(SYNAPSE.format(value), "c.yml"))
    render(recipe, {"SYNAPSE_ADMIN_TOKEN": "t", "POSTGRES_USER": "u", "POSTGRES_PASSWORD": "p", "POSTGRES_DB": "d"},
           1_800_000_000.0)


@FUZZ
@given(var_values)
def test_fuzz_clean_vars(value: str) -> None:
    survives(clean_with_vars, value)


def test_clean_vars_inf_and_nan_are_refused_with_file_and_line() -> None:
    for value in ("inf", "nan", ".inf", "1e400"):
        try:
            clean_with_vars(value)
        except AegirError as exc:
            assert "media_days" in str(exc) and "not a number" in str(exc), str(exc)
        else:
            raise AssertionError(f"media_days: {value} was taken")


# --------------------------------------------------------------------------- the designated errors, named


def test_a_bad_docker_answer_says_which_answer_and_where() -> None:
    from aegir.fields import ShapeError
    try:
        disk_facts.parse_docker_df({**DF, "Images": [{"Size": "12"}]})
    except ShapeError as exc:
        assert str(exc) == "docker /system/df: Images[0].Size: expected a number, got a string"
    else:
        raise AssertionError("a string size was taken")


def test_a_downtime_that_is_a_string_is_a_failed_row_not_a_traceback() -> None:
    try:
        checkpoint_status({**RESULT, "downtime": "1.25"})
    except AegirError as exc:
        assert str(exc) == "checkpoint result.json: downtime: expected a number, got a string"
    else:
        raise AssertionError("a string downtime was taken")


def test_a_real_answer_still_reads() -> None:
    assert [n.name for n in docker.parse_networks(NETWORKS)] == ["bridge", "shop_default"]
    assert disk_facts.parse_docker_df(DF).images.count == len(DF["Images"])
    assert "database down 1.25s" in checkpoint_status(RESULT)
    assert "replay 2 binary logs from mysql-bin.000041:4" in restore_plan(RESTORE_PLAN)
    assert "replaying 1 binary logs (mysql-bin.000041)" in restored(RESTORED)


# --------------------------------------------------------------------------- counting (for reports)


def count() -> dict[str, int]:
    """How many of the seeded examples of each parser raise something else than its designated error."""
    out: dict[str, int] = {}
    cases = {**PARSERS, "disk.clean vars": (clean_with_vars, var_values)}
    for name, (parse, strategy) in cases.items():
        out[name] = _count(parse, strategy)
    return out


def _count(parse: Callable[[Any], Any], strategy: st.SearchStrategy[Any]) -> int:
    failures = 0

    @FUZZ
    @given(strategy)
    def run(value: Any) -> None:
        nonlocal failures
        try:
            parse(value)
        except AegirError:
            pass
        except Exception:
            failures += 1

    run()
    return failures


if __name__ == "__main__":
    counts = count()
    for name, n in counts.items():
        print(f"{name:28} {n:4} of {EXAMPLES}")
    print(f"{'total':28} {sum(counts.values()):4} of {EXAMPLES * len(counts)}")
    sys.exit(0 if not any(counts.values()) else 1)
