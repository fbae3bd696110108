"""disk.clean recipes: the shipped files, validation errors with file and line, rendering, overrides."""

from __future__ import annotations

import json

import pytest

from aegir.compose import commands as compose
from aegir.compose.discovery import Project
from aegir.disk.facts import env_files_fact, folder_size_cmd, parse_folder_size
from aegir.disk.plan import env_file_paths, plan_clean
from aegir.disk.recipe import (
    RecipeError,
    apply_override,
    parse_override,
    parse_recipe,
    render,
    shipped,
    shipped_text,
)
from aegir.sh import Reply, mask_values

NOW = 1_700_000_000.0


def recipe(name):
    file, text = shipped_text(name)
    return parse_recipe(text, file, name)


def test_aegir_ships_mastodon_synapse_and_peertube_and_each_one_parses():
    assert shipped() == ("mastodon", "peertube", "synapse")
    assert [len(recipe(n).steps) for n in shipped()] == [3, 2, 2]


def test_mastodon_runs_tootctl_in_web_as_mastodon_with_its_days():
    cmds = render(recipe("mastodon"), {}, NOW)
    assert [(c.service, c.user, c.argv) for c in cmds] == [
        ("web", "mastodon", ("tootctl", "media", "remove", "--days", "7")),
        ("web", "mastodon", ("tootctl", "preview_cards", "remove", "--days", "30")),
        ("web", "mastodon", ("tootctl", "media", "remove-orphans")),
    ]


def test_synapse_sends_its_admin_token_on_stdin_and_purges_before_a_time_in_milliseconds():
    env = {"SYNAPSE_ADMIN_TOKEN": "tok", "POSTGRES_USER": "u", "POSTGRES_PASSWORD": "pw", "POSTGRES_DB": "d"}
    purge, compressor = render(recipe("synapse"), env, NOW)
    assert purge.argv[-1] == ("http://localhost:8008/_synapse/admin/v1/purge_media_cache?before_ts="
                              f"{int((NOW - 30 * 86400) * 1000)}")
    assert purge.stdin == "Authorization: Bearer tok\n"
    assert purge.shown_stdin == "Authorization: Bearer <.env SYNAPSE_ADMIN_TOKEN>\n"
    assert not any("tok" in a or "pw" in a for c in (purge, compressor) for a in c.argv)
    assert compressor.if_missing == "skip" and compressor.stdin == "postgresql://u:pw@db/d\n"
    # The URL stays on stdin inside the container too: the compressor's Python module is handed it, where the
    # synapse_auto_compressor program would take it in its own argv (-p URL), readable by every process.
    assert compressor.argv[:2] == ("python3", "-c") and compressor.argv[3:] == ("500", "100")
    assert "run_compression(sys.stdin.readline().strip()" in compressor.argv[2] and "-p" not in compressor.argv


def test_peertube_answers_prune_storages_question_on_stdin():
    prune, house = render(recipe("peertube"), {}, NOW)
    assert (prune.user, prune.argv, prune.stdin) == ("peertube", ("npm", "run", "prune-storage"), "y\n")
    assert house.argv == ("npm", "run", "house-keeping") and house.stdin is None


@pytest.mark.parametrize(("text", "line", "problem"), [
    ("steps:\n  - run: [a]\n    bogus: 1\n", 3, "steps[0]: unknown key 'bogus' (known: name, run, service, user, stdin, if_missing, timeout)"),
    ("service: web\nsteps: []\n", 2, "steps: must be a non-empty list"),
    ("service: web\nsteps:\n  - run: a b\n", 3, "steps[0].run: must be a non-empty list of words (argv, no shell)"),
    ("service: web\nsteps:\n  - run: [a, '{days}']\n", 3, "steps[0].run: unknown field {days} (vars: none)"),
    ("service: web\nvars: {x: 1}\nsteps:\n  - run: [a, '{env:TOKEN}']\n", 4,
     "steps[0].run: {env:TOKEN}: .env values go on stdin only, never in a command line"),
    ("steps:\n  - name: x\n    run: [a]\n", 2, "step 'x': no service (set 'service' in the step or the recipe)"),
    ("service: web\nsteps:\n  - run: [a]\n    user: 'ro ot'\n", 4, "steps[0].user: invalid user name 'ro ot'"),
    ("service: web\nsteps:\n  - run: [a]\n    if_missing: ignore\n", 4, "steps[0].if_missing: must be 'fail' or 'skip', not 'ignore'"),
    ("service: web\nsteps:\n  - run: [a\n", 4, "invalid YAML"),
])
def test_a_mistake_in_a_recipe_names_the_file_and_line(text, line, problem):
    with pytest.raises(RecipeError) as err:
        parse_recipe(text, "/srv/apps/x/aegir-clean.yml", "x")
    assert str(err.value).startswith(f"/srv/apps/x/aegir-clean.yml:{line}: {problem}")


def test_x_aegir_picks_the_recipe_and_overrides_service_user_and_vars():
    text = ("services:\n  app: {image: m}\nx-aegir:\n  clean:\n    recipe: mastodon\n    service: app\n"
            "    vars:\n      media_days: 2\n")
    ov = parse_override(text, "/srv/apps/social/docker-compose.yml")
    assert ov.recipe == "mastodon"
    first = render(apply_override(recipe("mastodon"), ov), {}, NOW)[0]
    assert (first.service, first.user, first.argv[-1]) == ("app", "mastodon", "2")


def test_an_override_of_a_var_the_recipe_lacks_names_the_compose_file_and_line():
    text = "services: {}\nx-aegir:\n  clean:\n    vars:\n      dayz: 2\n"
    ov = parse_override(text, "/srv/apps/social/docker-compose.yml")
    with pytest.raises(RecipeError, match=r"^/srv/apps/social/docker-compose.yml:5: x-aegir.clean.vars: "
                                          r"mastodon has no var 'dayz'"):
        apply_override(recipe("mastodon"), ov)
    with pytest.raises(RecipeError, match=r"^/f.yml:3: x-aegir.clean: unknown key 'recipes' \(did you mean 'recipe'\?\)$"):
        parse_override("x-aegir:\n  clean:\n    recipes: x\n", "/f.yml")


def test_a_missing_env_value_is_an_error_at_the_step():
    with pytest.raises(RecipeError, match=r"synapse.yml:\d+: \{env:SYNAPSE_ADMIN_TOKEN\}: the app's .env does not set"):
        render(recipe("synapse"), {}, NOW)


def test_exec_and_config_are_compose_commands_of_the_project():
    fl = compose.Flavour(("docker", "compose"), "2.40.3")
    p = Project("apps", "toot", "/srv/apps/toot", "docker-compose.yml")
    base = "docker compose --project-directory /srv/apps/toot -f /srv/apps/toot/docker-compose.yml -p toot"
    cmd = compose.exec_(fl, p, "web", ["tootctl", "media", "remove"], user="mastodon", stdin="y\n")
    assert cmd.line == f"{base} exec -T --user mastodon web tootctl media remove" and cmd.stdin == "y\n"
    assert compose.config(fl, p).line == f"{base} config"


def test_a_folder_size_is_one_du():
    assert folder_size_cmd("/srv/apps/toot").line == "du -sxB1 -- /srv/apps/toot"
    assert parse_folder_size("1048576\t/srv/apps/toot\n") == 1048576 and parse_folder_size("") is None


def test_clean_secrets_are_the_stdins_secret_keys_and_env_values_the_plan_does_not_show_by_itself():
    fl = compose.Flavour(("docker", "compose"), "2.40.3")
    p = Project("apps", "matrix", "/srv/apps/matrix", "docker-compose.yml",
                compose_text="services:\n  synapse:\n    image: x\n")
    env_text = ("SYNAPSE_ADMIN_TOKEN=tok-1\nPOSTGRES_USER=synapse\nPOSTGRES_PASSWORD=synapse\n"
                "POSTGRES_DB=matrix\nGREETING=hello ${POSTGRES_DB}\n")
    plan = plan_clean(p, fl, own=None, recipe_name="synapse", env_text=env_text, now=NOW)
    assert plan.secrets == (
        "Authorization: Bearer tok-1\n",
        "hello ${POSTGRES_DB}",  # as written, and as Compose interpolates it
        "hello matrix",
        "postgresql://synapse:synapse@db/matrix\n",
        "synapse",  # a user name the plan shows (the service), but also the value of POSTGRES_PASSWORD
        "tok-1",
    )  # not "matrix": the plan shows it by itself (the project's path)
    assert mask_values("connecting to postgresql://synapse:synapse@db/matrix failed", plan.secrets) == \
        "connecting to **** failed"


def test_clean_report_masks_every_secret_in_text_and_json():
    from aegir.action import HostRun, Ran
    from aegir.disk.plan import CleanResult, CleanStep, HostClean
    from aegir.disk.report import clean_report
    from aegir.fleet import Outcome
    from aegir.inventory import Host

    fl = compose.Flavour(("docker", "compose"), "2.40.3")
    p = Project("apps", "matrix", "/srv/apps/matrix", "docker-compose.yml", compose_text="services: {}\n")
    plan = plan_clean(p, fl, own=None, recipe_name="synapse", now=NOW,
                      env_text="SYNAPSE_ADMIN_TOKEN=tok-1\nPOSTGRES_USER=u\nPOSTGRES_PASSWORD=pw-22\nPOSTGRES_DB=d\n")
    step = CleanStep("state compressor", "synapse", None, "python3 -c ... pw-22", 1, 0.5, "failed",
                     "RuntimeError: cannot connect as u with pw-22")
    result = CleanResult("apps/matrix", "synapse", (step,), 10, 10)
    ran = Ran((Outcome(Host("hyp1"), value=HostRun(HostClean(plan), result)),), dry=False, acted=True)
    rep = clean_report(ran)
    assert "pw-22" not in rep.text and "pw-22" not in json.dumps(rep.data)
    assert "failed: RuntimeError: cannot connect as u with ****" in rep.text  # u: too plain to hide
    assert rep.data["hosts"][0]["result"]["steps"][0]["line"] == "python3 -c ... ****"


def test_env_file_values_are_secrets_too_and_the_env_files_are_read_in_one_command():
    fl = compose.Flavour(("docker", "compose"), "2.40.3")
    text = "services:\n  synapse:\n    env_file: [.env, signing.env, {path: ./more.env, required: false}]\n"
    p = Project("apps", "matrix", "/srv/apps/matrix", "docker-compose.yml", compose_text=text)
    assert env_file_paths(p) == ["signing.env", "./more.env"]
    env = "SYNAPSE_ADMIN_TOKEN=t1\nPOSTGRES_USER=u\nPOSTGRES_PASSWORD=p1\nPOSTGRES_DB=d\n"
    plan = plan_clean(p, fl, own=None, recipe_name="synapse", env_text=env, now=NOW,
                      env_file_texts=["SIGNING_KEY=ed25519 a_bcd xyz\nCOLOUR=matrix\n"])
    assert "ed25519 a_bcd xyz" in plan.secrets and "matrix" not in plan.secrets  # shown: the project's path
    assert env_files_fact("/srv/apps/matrix", ["signing.env"]).cmd.line.endswith("sh /srv/apps/matrix signing.env")
    assert env_files_fact("/srv/apps/matrix", ["a.env"]).parse(Reply("\035a.env\nK=v\n", "", 0)) == {"a.env": "K=v\n"}


def test_plain_values_of_keys_that_do_not_look_secret_stay_readable_in_the_report():
    fl = compose.Flavour(("docker", "compose"), "2.40.3")
    p = Project("apps", "matrix", "/srv/apps/matrix", "docker-compose.yml", compose_text="services: {}\n")
    env = ("SYNAPSE_ADMIN_TOKEN=1234\nPOSTGRES_USER=u\nPOSTGRES_PASSWORD=pw\nPOSTGRES_DB=d\nDEBUG=1\n"
           "PORT=8008\nFLAG=true\nNAME=wiki-one\n")
    plan = plan_clean(p, fl, own=None, recipe_name="synapse", env_text=env, now=NOW)
    # 1234 and pw: values of secret keys, however plain; wiki-one: a value the plan does not show
    assert {"1234", "pw", "wiki-one"} <= set(plan.secrets) and not {"1", "8008", "true", "d", "u"} & set(plan.secrets)
    assert mask_values("exit 1 after 8008 ms, 1.5M freed; pw wrong", plan.secrets) == \
        "exit 1 after 8008 ms, 1.5M freed; **** wrong"
