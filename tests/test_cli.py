"""The `inv` program: Invoke's CLI with Fabric's flags, reading tasks.py, -H handed to tasks."""

from __future__ import annotations

import json

from tests.helpers import REPO, run_inv, usage_error, write_inventory


def test_list_shows_the_namespaces_tasks_with_their_first_docstring_line():
    out = run_inv("--list").stdout
    assert "disk.report" in out
    assert "Show disk usage per host" in out


def test_help_of_a_task_shows_every_flag_with_its_help():
    out = run_inv("--help", "disk.report").stdout
    assert "Usage: inv [--core-opts] disk.report [--options]" in out
    assert "-f FORMAT, --format=FORMAT" in out and "Output format: 'table' (default) or 'json'." in out
    assert "--top=N" in out and "--warn=PCT" in out


def test_core_help_has_fabric_connection_flags_and_the_inventory_flag():
    out = run_inv("--help").stdout
    for flag in ("-H STRING, --hosts=STRING", "-i VALUE, --identity=VALUE", "-S STRING, --ssh-config=STRING",
                 "-t SECONDS, --connect-timeout=SECONDS", "--prompt-for-login-password", "--inventory=STRING",
                 "-d, -R, --dry"):
        assert flag in out, flag


def test_bash_completion_script_names_both_programs():
    out = run_inv("--print-completion-script", "bash")
    assert out.returncode == 0
    assert "complete -F _complete_inv -o default inv aegir" in out.stdout


def test_an_unknown_host_is_refused_with_the_known_names_and_exit_code_2():
    message = usage_error("-H", "hyp1", "disk.report", inventory=REPO / "hosts.yml")
    assert "aegir: unknown host or group 'hyp1'" in message
    assert "hosts: local" in message


def test_a_broken_inventory_is_one_line_with_file_and_line(tmp_path):
    bad = write_inventory(tmp_path, "hosts:\n  local:\n    conection: local\n")
    assert usage_error("disk.report", inventory=bad) == (f"aegir: {bad}:3: local: unknown key 'conection' "
                                                         "(did you mean 'connection'?)")


def test_a_mistake_in_one_host_entry_blocks_only_the_commands_that_target_that_host(tmp_path):
    inventory = write_inventory(tmp_path, "hosts:\n  local:\n    connection: local\n  hyp9:\n    groups: [prod]\n"
                                          "    admin_ipv4: 192.0.2.300\n")
    refusal = f"aegir: {inventory}:6: hyp9: admin_ipv4: '192.0.2.300' is not an IPv4 address"
    for args in (["-H", "local"], ["--exclude", "hyp9"], ["-H", "!prod"]):
        res = run_inv(*args, "disk.report", "--fast", "--format", "json", inventory=inventory)
        assert res.returncode == 0, (args, res.stderr)
        assert [h["host"] for h in json.loads(res.stdout)["hosts"]] == ["local"]
    for args in (["-H", "hyp9"], ["-H", "prod"], ["-H", "local,hyp9"], []):
        assert usage_error(*args, "disk.report", "--fast", inventory=inventory) == refusal, args


def test_disk_report_runs_on_the_local_host_of_the_shipped_inventory():
    res = run_inv("disk.report", "--format", "json", inventory=REPO / "hosts.yml")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    [local] = data["hosts"]
    assert local["host"] == "local" and local["status"] == "ok"
    assert local["root"]["target"] == "/" and local["root"]["size"] > 0
    assert local["srv_state"] in ("mounted", "not mounted", "missing")


def test_the_program_finds_tasks_py_from_a_subdirectory_like_stock_inv():
    res = run_inv("--list", cwd=REPO / "tests" / "unit")
    assert "disk.report" in res.stdout


def test_aegir_works_from_any_folder_and_a_local_tasks_py_still_wins(tmp_path):
    """Outside a clone there is no tasks.py: the program takes its own tasks (it said "Can't find any
    collection named 'tasks'!" and exited 1); a tasks.py found from the current directory up wins, as with inv."""
    anywhere = run_inv("--list", cwd=tmp_path)
    assert anywhere.returncode == 0 and "disk.report" in anywhere.stdout, anywhere.stderr
    (tmp_path / "mine").mkdir()
    (tmp_path / "tasks.py").write_text("from invoke import task\n\n\n@task\ndef hello(c):\n    \"\"\"Say hello.\"\"\"\n")
    local = run_inv("--list", cwd=tmp_path / "mine")
    assert "hello" in local.stdout and "disk.report" not in local.stdout, local.stdout + local.stderr
    missing = run_inv("-c", "nosuch", "--list", cwd=tmp_path)
    assert missing.returncode == 2 and missing.stderr.startswith("aegir: no collection 'nosuch' found from ")


def test_a_command_failing_through_invokes_own_run_is_one_line_and_exit_1_never_its_own_code(tmp_path):
    (tmp_path / "tasks.py").write_text("from invoke import task\n\n\n@task\ndef boom(c):\n    c.run('exit 2', hide=True)\n")
    done = run_inv("boom", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (1, "aegir: exit 2 exited 2\n")


def test_stock_invoke_would_not_know_h_but_ours_does():
    res = run_inv("-H", "local", "--list")
    assert res.returncode == 0 and "No idea what '-H' is" not in res.stderr


def test_connect_timeout_flag_reaches_ssh_and_a_dead_raw_target_is_an_unreachable_row():
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = run_inv("-t", "3", "-H", f"root@127.0.0.1:{port}", "disk.report", "--format", "json",
                  inventory=REPO / "hosts.yml")
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    [row] = json.loads(res.stdout)["hosts"]
    assert row["status"] == "unreachable"
    assert row["error"] == f"cannot connect to root@127.0.0.1:{port}: Connection refused"


def test_core_help_shows_aegirs_own_text_for_h():
    out = " ".join(run_inv("--help").stdout.split())
    assert "Comma-separated inventory hosts, groups, or user@host:port" in out
    assert "Comma-separated host name(s) to execute tasks against" not in out  # Fabric's stock line


def test_every_task_with_a_format_takes_it_as_f():
    from aegir.tasks import namespace

    with_format = []
    for name in namespace.task_names:
        args = {a.name: a for a in namespace[name].get_arguments()}
        if "format" in args:
            with_format.append(name)
            assert args["format"].names == ("format", "f"), (name, args["format"].names)
    assert len(with_format) >= 20, with_format  # every report, every action


def test_shell_completion_offers_inventory_hosts_and_groups_after_h_and_exclude(tmp_path):
    inv = tmp_path / "hosts.yml"
    inv.write_text("hosts:\n  hyp1: {groups: [prod]}\n  hyp2: {groups: [prod]}\n  web1: {}\n")
    after_h = run_inv("--complete", "--", "inv", "-H", inventory=inv)
    assert after_h.stdout.split() == ["hyp1", "hyp2", "web1", "prod", "all"]
    partial = run_inv("--complete", "--", "inv", "-H", "prod,!hy", inventory=inv)
    assert partial.stdout.split() == ["prod,!hyp1", "prod,!hyp2"]
    exclude = run_inv("--complete", "--", "inv", "--exclude", "=", "w", inventory=inv)
    assert exclude.stdout.split() == ["web1"]
    tasks = run_inv("--complete", "--", "inv", "-H", "hyp1", "disk.", inventory=inv)
    assert "disk.report" in tasks.stdout.split() and "hyp1" not in tasks.stdout.split()
    broken = run_inv("--complete", "--", "inv", "-H", inventory=tmp_path / "missing.yml")
    assert broken.returncode == 0 and broken.stdout == "" and "Traceback" not in broken.stderr


def test_tables_fit_80_columns_on_a_pipe_or_columns_and_wrap_the_reason_and_the_dry_command_whole(tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    target = f"root@127.0.0.1:{port}"
    reason = f"UNREACHABLE: cannot connect to {target}: Connection refused"
    project = tmp_path / "srv-of-a-collective-with-a-long-name" / "apps" / "nextcloud-office"
    project.mkdir(parents=True)
    (project / "compose.yaml").write_text("services: {}\n")
    inventory = write_inventory(tmp_path, f"hosts:\n  local:\n    connection: local\n    srv: {project.parent.parent}\n"
                                          "    srv_mount: false\n")
    dry = run_inv("-H", f"local,{target}", "apps.up", "nextcloud-office", "--force", "--dry", inventory=inventory,
                  env={"COLUMNS": ""}, timeout=60)  # a pipe, no $COLUMNS: 80
    assert dry.returncode == 1, dry.stderr
    lines = dry.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, dry.stdout
    at, rule = lines[0].index("COMMAND"), next(i for i, line in enumerate(lines) if line.startswith("---"))
    column = "".join(line[at:] for line in lines[rule + 1:])  # the COMMAND column, nothing cut: its words in order
    whole = f"--project-directory {project} -f {project}/compose.yaml -p nextcloud-office up -d {reason}"
    assert "".join(whole.split()) in "".join(column.split())
    report = run_inv("-H", target, "disk.report", inventory=REPO / "hosts.yml", env={"COLUMNS": "100"})
    table = report.stdout.partition("\n\n")[0]
    assert max(len(line) for line in table.splitlines()) <= 100 and "…" not in table
    lines = table.splitlines()
    at, rule = lines[0].index("STATUS"), next(i for i, line in enumerate(lines) if line.startswith("---"))
    assert "".join(reason.split()) == "".join("".join(line[at:] for line in lines[rule + 1:]).split())
    data = json.loads(run_inv("-H", target, "disk.report", "--format", "json", inventory=REPO / "hosts.yml",
                              env={"COLUMNS": "40"}).stdout)
    assert data["hosts"][0]["error"] == reason.removeprefix("UNREACHABLE: ")


def test_listing_tasks_and_a_task_that_does_not_connect_import_no_ssh_docker_or_jinja2(tmp_path):
    """`inv --list`, `--help` and completion never pay for Fabric, paramiko, the Docker SDK or Jinja2,
    nor for the runbook areas, the fleet and the inventory (the task modules import them in their bodies);
    a task on the local host (no SSH) never pays for Fabric."""
    heavy = {"fabric", "paramiko", "docker", "jinja2"}
    areas = {"tabulate", "aegir.fleet", "aegir.host", "aegir.inventory", "aegir.compose", "aegir.tasks.projects",
             "aegir.boot.steps", "aegir.update.apt", "aegir.fw.nft", "aegir.mysql.steps", "aegir.disk.facts"}

    def imported(*args: str) -> set[str]:
        res = run_inv(*args, env={"PYTHONPROFILEIMPORTTIME": "1"}, inventory=REPO / "hosts.yml")
        assert res.returncode == 0, res.stderr[-2000:]
        return {line.split("|")[-1].strip() for line in res.stderr.splitlines() if line.startswith("import time:")}

    assert not (heavy | areas) & imported("--list")
    assert not (heavy | areas) & imported("--help", "update.apply")
    assert not heavy & imported("-H", "local", "--complete", "--", "inv", "-H")  # reads the inventory
    on_local = imported("-H", "local", "disk.report", "--format", "json")
    assert "fabric" not in on_local  # no SSH (the Docker SDK, which imports paramiko itself, only if a dockerd runs)


def test_names_may_be_left_out_only_with_all_and_words_after_a_lone_dashdash_reach_the_task(tmp_path):
    """Invoke has neither optional positional arguments nor a task-level ``--``: the program adds both."""
    (tmp_path / "apps/site").mkdir(parents=True)
    (tmp_path / "apps/site/compose.yaml").write_text("services: {}\n")
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(f"hosts:\n  local:\n    connection: local\n    srv: {tmp_path}\n    srv_mount: false\n")
    bare = usage_error("apps.up", inventory=inventory)
    assert bare == "aegir: apps.up: name the projects (NAMES: cloud or cloud,users/wiki) or give --all"
    every = run_inv("apps.up", "--all", "--dry", "--format", "json", inventory=inventory, timeout=60)
    assert every.returncode == 0, every.stdout + every.stderr
    [host] = json.loads(every.stdout)["hosts"]
    assert [(s["project"], s["action"], s["result"]) for s in host["steps"]] == [("apps/site", "up", "would")]
    both = run_inv("apps.up", "site", "--all", inventory=inventory, timeout=60)
    assert both.returncode == 2 and "apps.up: --all or names, not both" in both.stderr
    missing = run_inv("apps.compose", "site", inventory=inventory, timeout=60)
    assert missing.returncode == 2 and "put the Compose subcommand after '--'" in missing.stderr
    typo = run_inv("apps.compose", "sight", "--", "config", "--services", inventory=inventory, timeout=60)
    assert typo.returncode == 2 and "no project 'sight' on any target host (did you mean site?)" in typo.stderr
