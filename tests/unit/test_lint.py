"""Publishability lint: a table of compose/.env pairs, each with the exact findings (file, line, rule).

The last tests run the whole lint on real files with the real Compose binary
(``compose config`` needs no Docker daemon), through a local host context.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from invoke import Context

from aegir.cli import AegirConfig
from aegir.compose.lint import (
    Finding,
    Ref,
    config_finding,
    lint_host,
    lint_texts,
    looks_secret,
    parse_env,
    refs,
)
from aegir.host import open_context
from aegir.inventory import Host
from aegir.sh import mask_values
from tests.helpers import run_inv

C = "/srv/apps/x/docker-compose.yml"
E = "/srv/apps/x/.env"

CASES = [
    # (id, compose text, .env text (None: no .env), .env mode, [(file, line, rule)])
    ("clean: site data only through variables", """\
services:
  web:
    image: ghcr.io/acme/web:1.2.3
    environment:
      DOMAIN: ${DOMAIN}
      DB_PASSWORD: ${DB_PASSWORD}
      SSL_KEY_FILE: /run/secrets/tls.key
    volumes:
      - ./conf/nginx.conf:/etc/nginx/nginx.conf:ro
    ports:
      - "127.0.0.1:8080:80"
    command: ["sh", "-c", "echo $$HOME ${GREETING:-hello}"]
""", "DOMAIN=cloud.example.org\nDB_PASSWORD=s3cret\n", 0o600, []),

    ("a literal domain in a Traefik rule", """\
services:
  web:
    image: aegir-lab/busybox:latest
    labels:
      - traefik.enable=true
      - traefik.http.routers.web.rule=Host(`cloud.example.org`)
""", None, None, [(C, 6, "domain")]),

    ("a literal e-mail address", """\
services:
  web:
    image: aegir-lab/busybox:latest
    environment:
      - ADMIN_EMAIL=admin@tedomum.net
""", None, None, [(C, 5, "email")]),

    ("a public IPv4 address in ports; private ones are fine", """\
services:
  web:
    image: aegir-lab/busybox:latest
    ports:
      - "127.0.0.1:8080:80"
      - "192.0.2.111:443:443"
networks:
  back:
    ipam:
      config:
        - subnet: 10.20.0.0/16
""", None, None, [(C, 6, "public-ip")]),

    ("a bracketed IPv6 service address", """\
services:
  web:
    image: aegir-lab/busybox:latest
    ports:
      - "[2001:db8:0:100::11]:443:443"
""", None, None, [(C, 5, "public-ip")]),

    ("a literal password in a mapping; a reference and a key file are fine", """\
services:
  db:
    image: mariadb:11
    environment:
      MARIADB_PASSWORD: hunter2
      MARIADB_ROOT_PASSWORD: ${DB_ROOT_PASSWORD}
      MARIADB_PASSWORD_FILE: /run/secrets/db
""", "DB_ROOT_PASSWORD=x\n", 0o600, [(C, 5, "secret")]),

    ("a literal secret in a K=V list", """\
services:
  app:
    image: aegir-lab/busybox:latest
    environment:
      - RAILS_ENV=production
      - SECRET_KEY_BASE=0123456789abcdef
      - apiToken=abc
""", None, None, [(C, 6, "secret"), (C, 7, "secret")]),

    ("a variable without default missing from .env", """\
services:
  app:
    image: aegir-lab/busybox:latest
    environment:
      SMTP_HOST: ${SMTP_HOST}
      PORT: ${PORT:-25}
      OPTIONAL: ${OPTIONAL:+set}
""", "", 0o600, [(C, 5, "undefined-var")]),

    ("a required variable missing, and a bare $VAR", """\
services:
  app:
    image: aegir-lab/busybox:latest
    command: ["run", "--token", "${API_TOKEN:?set API_TOKEN in .env}"]
    working_dir: $APP_HOME
""", None, None, [(C, 4, "undefined-var"), (C, 5, "undefined-var")]),

    (".env keys nothing uses; COMPOSE_* are Compose's own", """\
services:
  app:
    image: aegir-lab/busybox:latest
    environment:
      DOMAIN: ${DOMAIN}
""", "COMPOSE_PROJECT_NAME=x\nDOMAIN=a.example.org\n\n# old\nLEGACY_URL=http://old.example.org\n", 0o600,
     [(E, 5, "unused-env")]),

    ("env_file: .env uses every key", """\
services:
  app:
    image: aegir-lab/busybox:latest
    env_file: .env
""", "LOCAL_DOMAIN=a.example.org\nOTP_SECRET=x\n", 0o600, []),

    ("a world-readable .env", """\
services:
  app:
    image: aegir-lab/busybox:latest
    environment:
      DOMAIN: ${DOMAIN}
""", "DOMAIN=a.example.org\n", 0o644, [(E, None, "env-mode")]),

    ("a compose file that is not YAML", """\
services:
  app:
    image: aegir-lab/busybox:latest
    environment: [
""", None, None, [(C, 5, "yaml")]),

    ("a .env line python-dotenv cannot parse", """\
services:
  app:
    image: ${IMAGE}
""", "IMAGE=aegir-lab/busybox:latest\nthis is not a binding\n", 0o600, [(E, 2, "env-syntax")]),

    ("image names, file names and paths are not domains", """\
services:
  app:
    image: registry.example.org/team/app:2.1
    volumes:
      - ./conf/app.conf:/etc/app/app.conf
      - ./data:/var/lib/app
    command: ["python3.11", "manage.py", "--config", "settings.yml", "--version", "1.2.3.4b"]
""", None, None, []),

    ("a domain on the third line of a block scalar", """\
services:
  app:
    image: aegir-lab/busybox:latest
    entrypoint:
      - sh
      - -c
      - |
        set -e
        echo starting
        wget -q https://updates.tedomum.net/feed
""", None, None, [(C, 10, "domain")]),

    ("a literal domain in a default value is still literal", """\
services:
  app:
    image: aegir-lab/busybox:latest
    environment:
      SMTP: ${SMTP_HOST:-smtp.tedomum.net}
""", None, None, [(C, 5, "domain")]),

    ("a literal domain after a reference, a wildcard or a leading dot", """\
services:
  app:
    image: aegir-lab/busybox:latest
    environment:
      PUBLIC_URL: https://${APP}.tedomum.net/
      CORS: https://${SUB:-www}.tedomum.net
      COOKIE_DOMAIN: .tedomum.net
      ALLOWED_HOSTS: "*.tedomum.net"
      CONFIG: ./conf/.app.conf
""", "APP=cloud\nSUB=www\n", 0o600, [(C, 5, "domain"), (C, 6, "domain"), (C, 7, "domain"), (C, 8, "domain")]),

    ("a secret as a default, half literal, or under a compound key", """\
services:
  app:
    image: aegir-lab/busybox:latest
    environment:
      DB_PASSWORD: ${DB_PASSWORD:-changeme}
      REDIS_PASSWORD: hunter2${SUFFIX}
      BORG_PASSPHRASE: correct horse
      DBPASSWORD: hunter2
      SMTP_PASSWORD: ${SMTP_PASSWORD:?set it in .env}
      API_TOKEN: ${API_TOKEN:-}
""", "DB_PASSWORD=a\nSUFFIX=b\nSMTP_PASSWORD=c\n", 0o600,
     [(C, 5, "secret"), (C, 6, "secret"), (C, 7, "secret"), (C, 8, "secret")]),

    ("an anchor reused by an alias is reported once", """\
x-env: &env
  CONTACT: postmaster@tedomum.net
services:
  a:
    image: aegir-lab/busybox:latest
    environment: *env
  b:
    image: aegir-lab/busybox:latest
    environment: *env
""", None, None, [(C, 2, "email")]),

    ("secrets in command arguments: flag=value, flag value, assignments, inside sh -c", """services:
  db:
    image: aegir-lab/busybox:latest
    command: mysqld --root-password hunter2 --user=mysql
  app:
    image: aegir-lab/busybox:latest
    command: ["serve", "--api-token=abc123", "--db-pass", "hunter2"]
    entrypoint: ["sh", "-c", "ADMIN_PASSWORD=x exec app --secret-key s3"]
    healthcheck:
      test: ["CMD", "check", "--password", "hunter2"]
""", None, None, [(C, 4, "secret"), (C, 7, "secret"), (C, 7, "secret"), (C, 8, "secret"), (C, 8, "secret"),
                  (C, 10, "secret")]),

    ("command arguments that only name a secret are fine", """services:
  app:
    image: aegir-lab/busybox:latest
    command: ["serve", "--password-file", "/run/secrets/db", "--token", "${TOKEN}", "--secret=$$SECRET"]
    entrypoint: app --password ${PW:?set PW} --key-file /k --verbose
    healthcheck:
      test: check --password --quiet
""", "TOKEN=a\nPW=b\n", 0o600, []),

    ("site domains used as mapping keys, not label names", """services:
  app:
    image: aegir-lab/busybox:latest
    extra_hosts:
      cloud.example.org: 10.0.0.2
    labels:
      www.tedomum.fr: "yes"
      traefik.http.routers.app.rule: Host(`${DOMAIN}`)
      org.opencontainers.image.source: x
      com.example.site.eu: x
""", "DOMAIN=a\n", 0o600, [(C, 5, "domain"), (C, 7, "domain")]),
]


@pytest.mark.parametrize("compose_text, env_text, mode, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_lint_finds_exactly_what_the_table_says(compose_text, env_text, mode, expected):
    found = lint_texts(C, compose_text, E, env_text, mode)
    assert [(f.file, f.line, f.rule) for f in found] == expected


def test_a_key_of_x_aegir_no_area_reads_is_a_finding_with_did_you_mean():
    text = "services:\n  web: {image: x}\nx-aegir:\n  dsn: {names: [cloud]}\n  clean: {recipe: mastodon}\n"
    assert lint_texts(C, text, E, None, None) == [
        Finding(C, 4, "x-aegir", "x-aegir: unknown key 'dsn' (did you mean 'dns'?)")]
    assert lint_texts(C, "services:\n  web: {image: x}\nx-aegir: [dns]\n", E, None, None) == [
        Finding(C, 3, "x-aegir", "x-aegir: must be a mapping")]
    assert lint_texts(C, "services:\n  web: {image: x}\nx-aegir:\n", E, None, None) == []


def test_the_table_has_at_least_twelve_pairs_clean_and_dirty():
    assert len(CASES) >= 12
    assert any(not c[4] for c in CASES) and sum(1 for c in CASES if c[4]) >= 12


def test_messages_say_what_and_how_to_fix_without_repeating_a_secret():
    found = lint_texts(C, CASES[5][1], E, CASES[5][2], 0o600)
    assert found == [Finding(C, 5, "secret", "MARIADB_PASSWORD has a literal value: take it from .env (${MARIADB_PASSWORD})")]
    assert "hunter2" not in str(found)
    found = lint_texts(C, CASES[8][1], E, None, None)
    assert found[0].message == "${API_TOKEN} is required and missing from .env"
    assert lint_texts(C, CASES[11][1], E, CASES[11][2], 0o644)[0].message == f"world-readable (mode 0644): chmod 600 {E}"
    assert lint_texts(C, CASES[1][1], E, None, None)[0].message == "literal domain name 'cloud.example.org': take it from .env"


def test_references_follow_compose_interpolation():
    assert refs("$$HOME ${A} $B ${C:-x} ${D-y} ${E:?no} ${F:+z} ${G:-${H}}") == [
        Ref("A"), Ref("B"), Ref("C", ":-"), Ref("D", "-"), Ref("E", ":?"), Ref("F", ":+"), Ref("G", ":-"), Ref("H")]


@pytest.mark.parametrize("key, secret", [("DB_PASSWORD", True), ("secretKey", True), ("api-token", True),
                                         ("AWS_SECRET_ACCESS_KEY", True), ("BORG_PASSPHRASE", True),
                                         ("MYSQLPASSWORD", True), ("SSL_KEY_FILE", False),
                                         ("monkey", False), ("KEYCLOAK_URL", False), ("PASSWORD_LENGTH", False)])
def test_secret_looking_keys(key, secret):
    assert looks_secret(key) is secret


def test_compose_config_errors_become_findings_with_their_line():
    f = config_finding(C, 15, "yaml: line 7: mapping values are not allowed in this context\n")
    assert f == Finding(C, 7, "compose-config", "compose config: yaml: line 7: mapping values are not allowed in this context")
    assert config_finding(C, 0, "") is None


# --------------------------------------------------------------------------- real files, real Compose


@pytest.fixture
def local(tmp_path, monkeypatch):
    """A local host whose /srv is a temporary folder; Compose from this venv if the plugin is absent."""
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    srv = tmp_path / "srv"
    hc = open_context(Context(config=AegirConfig(lazy=True)), Host("local", connection="local", srv=str(srv), srv_mount=False))
    yield srv, hc
    hc.close()


def write(path: Path, text: str, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def test_lint_reads_the_host_files_and_asks_compose_config(local):
    srv, hc = local
    write(srv / "apps/good/docker-compose.yml", "services:\n  web:\n    image: ${IMAGE}\n")
    write(srv / "apps/good/.env", "IMAGE=aegir-lab/busybox:latest\n")
    write(srv / "apps/bad/docker-compose.yml", "services:\n  web:\n    image: x\n    bogus: 1\n")
    write(srv / "core/front/docker-compose.yml", "services:\n  proxy:\n    image: x\n    labels: [a=b]\n"
          "    environment:\n      - ACME_EMAIL=admin@tedomum.net\n")
    write(srv / "core/front/.env", "UNUSED=1\n", 0o644)
    result = lint_host(hc)
    by_name = {p.name: p.findings for p in result.projects}
    assert by_name["good"] == ()
    assert [(f.file, f.line, f.rule) for f in by_name["bad"]] == [(f"{srv}/apps/bad/docker-compose.yml", None, "compose-config")]
    assert by_name["bad"][0].message == (f"compose config: validating {srv}/apps/bad/docker-compose.yml: "
                                         "services.web additional properties 'bogus' not allowed")
    assert [(f.file, f.line, f.rule) for f in by_name["front"]] == [
        (f"{srv}/core/front/docker-compose.yml", 6, "email"),
        (f"{srv}/core/front/.env", None, "env-mode"),
        (f"{srv}/core/front/.env", 1, "unused-env"),
    ]


def test_lint_of_named_projects_only(local):
    srv, hc = local
    write(srv / "apps/a/docker-compose.yml", "services:\n  web:\n    image: x\n    hostname: a.tedomum.net\n")
    write(srv / "apps/b/docker-compose.yml", "services:\n  web:\n    image: x\n")
    result = lint_host(hc, ("b", "nope"))
    assert [p.name for p in result.projects] == ["b"] and result.missing == ("nope",)


# --------------------------------------------------------------------------- .env values never printed


def test_env_values_are_masked_longest_first_short_ones_only_as_words():
    assert mask_values("invalid hostPort: hunter2x, line 180", ["hunter2", "hunter2x", "80"]) == \
        "invalid hostPort: ****, line 180"
    assert mask_values("port 80: bad; 8080 ok", ["80"]) == "port ****: bad; 8080 ok"
    assert mask_values('parsing "a\\"b": bad', ['a"b']) == 'parsing "****": bad'


def test_parse_env_keeps_raw_interpolated_and_unparsable_values_to_mask():
    env = parse_env("A=abcd\nB=\"${A}-xyz\"\nC='quoted value'\nthis line is broken=oops\n")
    assert {"abcd", "abcd-xyz", "quoted value"} <= set(env.values)
    assert env.mask("got abcd-xyz and quoted value") == "got **** and ****"


LEAKS = {  # project -> (compose text, .env text, the value Compose would echo)
    "port": ('services:\n  web:\n    image: x\n    ports: ["${PORT}:80"]\n', "PORT=Tr0ub4dor&3\n", "Tr0ub4dor&3"),
    "nested": ('services:\n  web:\n    image: x\n    ports: ["${B}:80"]\n', 'A=s3cr\nB="${A}et-xyz"\n',
               "s3cret-xyz"),
    "unit": ("services:\n  web:\n    image: x\n    mem_limit: ${MEM}\n", 'MEM="hunter\\"2q"\n', 'hunter\\"2'),
    "utf8": ("services:\n  web:\n    image: x\n    cpus: ${CPU}\n", "CPU='päss wörd'\n", "päss wörd"),
}


def test_lint_never_prints_a_value_of_env_even_in_composes_own_errors(tmp_path):
    """Through the real program and the real Compose: table and JSON, every project's finding is there, no value."""
    srv = tmp_path / "srv"
    for name, (compose_text, env_text, _) in LEAKS.items():
        write(srv / f"apps/{name}/docker-compose.yml", compose_text)
        write(srv / f"apps/{name}/.env", env_text)
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(f"hosts:\n  local:\n    connection: local\n    srv: {srv}\n    srv_mount: false\n")
    env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    table = run_inv("apps.lint", inventory=inventory, env=env, timeout=120)
    as_json = run_inv("apps.lint", "--format", "json", inventory=inventory, env=env, timeout=120)
    assert table.returncode == as_json.returncode == 1, table.stderr
    found = {p["name"]: p["findings"] for p in json.loads(as_json.stdout)["hosts"][0]["projects"]}
    for name, (_, env_text, echoed) in LEAKS.items():
        config = [f["message"] for f in found[name] if f["rule"] == "compose-config"]
        assert config and "****" in config[0], (name, found[name])
        for out in (table.stdout + table.stderr, as_json.stdout + as_json.stderr):
            for value in [echoed, *parse_env(env_text).values]:
                assert value not in out and json.dumps(value)[1:-1] not in out, (name, value)
