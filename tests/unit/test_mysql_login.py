"""mysql: where the on-host program finds the password the database service is given, and which tools it uses."""

from __future__ import annotations

import pytest

from aegir.mysql import onhost
from aegir.mysql.onhost import CheckpointError, LoginError, Secret, Tools

#: ``docker compose config --format json`` of an app set up like the official images (Compose 2.40).
CONFIG = {
    "services": {
        "mariadb": {
            "environment": {"MARIADB_DATABASE": "shop", "MARIADB_ROOT_PASSWORD": "s3cret", "EMPTY": ""},
            "secrets": [{"source": "root", "target": "/run/secrets/root"},
                        {"source": "other", "target": "/etc/other"}],
            "volumes": [{"type": "bind", "source": "/srv/apps/shop/db", "target": "/var/lib/mysql"},
                        {"type": "bind", "source": "/srv/apps/shop/conf", "target": "/etc/mysql", "read_only": True}],
        },
    },
    "secrets": {"root": {"name": "shop_root", "file": "/srv/apps/shop/secrets/root"},
                "other": {"name": "shop_other", "environment": "DB_ROOT"}},
}


def with_env(env: dict[str, str], **mysql: object) -> dict[str, object]:
    svc = {**CONFIG["services"]["mariadb"], "environment": env}
    return {**CONFIG, "services": {"mariadb": svc}, **({"x-aegir": {"mysql": mysql}} if mysql else {})}


ROOT_VARS = ("MARIADB_ROOT_PASSWORD", "MARIADB_ROOT_PASSWORD_FILE")


def test_the_root_password_comes_from_the_services_environment_as_compose_resolves_it():
    secret = onhost.password_source(CONFIG, "mariadb")
    assert secret == Secret("root", ROOT_VARS, "MARIADB_ROOT_PASSWORD", "s3cret")
    assert "s3cret" not in repr(secret)  # a secret never reaches a log line through repr
    assert secret.where("mariadb") == "MARIADB_ROOT_PASSWORD of service 'mariadb'"


def test_mysql_root_password_is_looked_for_after_mariadbs_and_an_empty_value_counts_as_unset():
    secret = onhost.password_source(with_env({"MARIADB_ROOT_PASSWORD": "", "MYSQL_ROOT_PASSWORD": "m"}), "mariadb")
    assert (secret.var, secret.value) == ("MYSQL_ROOT_PASSWORD", "m")
    assert secret.looked_for == (*ROOT_VARS, "MYSQL_ROOT_PASSWORD", "MYSQL_ROOT_PASSWORD_FILE")


def test_a_file_variable_is_mapped_to_the_host_through_the_secret_or_a_bind_mount():
    secret = onhost.password_source(with_env({"MARIADB_ROOT_PASSWORD_FILE": "/run/secrets/root"}), "mariadb")
    assert (secret.var, secret.value, secret.file) == ("MARIADB_ROOT_PASSWORD_FILE", None,
                                                       "/srv/apps/shop/secrets/root")
    assert secret.where("mariadb") == "MARIADB_ROOT_PASSWORD_FILE (/srv/apps/shop/secrets/root) of service 'mariadb'"
    mounted = onhost.password_source(with_env({"MYSQL_ROOT_PASSWORD_FILE": "/etc/mysql/pw/../root.pw"}), "mariadb")
    assert mounted.file == "/srv/apps/shop/conf/root.pw"
    short = {**CONFIG, "services": {"mariadb": {**CONFIG["services"]["mariadb"], "secrets": ["root"],
                                                "environment": {"MARIADB_ROOT_PASSWORD_FILE": "/run/secrets/root"}}}}
    assert onhost.password_source(short, "mariadb").file == "/srv/apps/shop/secrets/root"


def test_a_file_aegir_cannot_read_on_the_host_is_one_clear_line():
    with pytest.raises(LoginError) as exc:
        onhost.password_source(with_env({"MARIADB_ROOT_PASSWORD_FILE": "/etc/other"}), "mariadb")
    assert str(exc.value) == ("MARIADB_ROOT_PASSWORD_FILE=/etc/other is the secret 'other' (Compose takes it from the "
                              "variable DB_ROOT): aegir cannot read it; name a variable with x-aegir.mysql.password_var")
    with pytest.raises(LoginError) as exc:
        onhost.password_source(with_env({"MARIADB_ROOT_PASSWORD_FILE": "/root/pw"}), "mariadb")
    assert str(exc.value) == ("MARIADB_ROOT_PASSWORD_FILE=/root/pw: that file is neither a secret of service "
                              "'mariadb' nor on one of its bind mounts, so aegir cannot read it on the host")


def test_x_aegir_names_another_user_and_variable():
    config = with_env({"MARIADB_USER": "backup", "BACKUP_PW": "b"}, user="backup", password_var="BACKUP_PW")
    assert onhost.password_source(config, "mariadb") == Secret("backup", ("BACKUP_PW", "BACKUP_PW_FILE"),
                                                               "BACKUP_PW", "b")
    with pytest.raises(CheckpointError, match="name the variable holding its password with x-aegir.mysql.password_var"):
        onhost.settings(with_env({}, user="backup"))
    with pytest.raises(CheckpointError, match="password_var must be the name of a variable"):
        onhost.settings(with_env({}, password_var="A B"))


def test_no_password_anywhere_is_one_line_naming_every_variable_looked_for():
    secret = onhost.password_source(with_env({"MARIADB_RANDOM_ROOT_PASSWORD": "1"}), "mariadb")
    assert secret.var is None
    assert onhost.no_password_line(secret, "mariadb") == (
        "root cannot log in to service 'mariadb' through its socket and no password was found: looked for "
        "MARIADB_ROOT_PASSWORD, MARIADB_ROOT_PASSWORD_FILE, MYSQL_ROOT_PASSWORD, MYSQL_ROOT_PASSWORD_FILE in its "
        "environment (compose config, with .env and env_file); name another variable with x-aegir.mysql.password_var")


def test_a_dollar_is_read_as_the_container_gets_it_not_as_compose_config_escapes_it():
    # .env: ROOT_PASSWORD='p$q$$r' (single quotes: literal) -> `compose config` prints p$$q$$$$r
    config = with_env({"MARIADB_ROOT_PASSWORD": "p$$q$$$$r"})
    assert onhost.password_source(config, "mariadb").value == "p$q$$r"


def test_a_raw_list_environment_is_read_too():
    assert onhost.environment({"environment": ["A=1", "B", "C=x=y"]}) == {"A": "1", "C": "x=y"}
    assert onhost.environment({"environment": {"A": "1", "B": None}}) == {"A": "1"}


def test_the_tools_are_those_the_image_has_and_hot_mode_refuses_without_mariadb_backup():
    mariadb = onhost.pick_tools("mariadb mysql mariadb-binlog mysqlbinlog mariadb-backup mbstream mariadbd".split())
    assert mariadb == Tools("mariadb", "mariadb-binlog", "mariadbd", "mariadb-backup", "mbstream")
    mysql = onhost.pick_tools(["mysql", "mysqlbinlog", "mysqld"])
    assert mysql == Tools("mysql", "mysqlbinlog", "mysqld", None, None)
    assert onhost.refuse_hot(mariadb, "db") is None
    assert onhost.refuse_hot(mysql, "mysql") == (
        "hot mode needs mariadb-backup, and the image of service 'mysql' has none (mariadb-backup is MariaDB's; "
        "MySQL's images have no such tool; client: mysql): use --mode cold")


def test_a_password_login_passes_the_password_by_name_only():
    login = onhost.Login(onhost.pick_tools(["mysql"]), "root", "s3cret", "the password from MYSQL_ROOT_PASSWORD")
    assert login.sql_argv("SELECT 1") == ["mysql", "-uroot", "-N", "-B", "-e", "SELECT 1"]
    assert login.exec_flags() == ["-e", "MYSQL_PWD"]
    assert (login.env() or {})["MYSQL_PWD"] == "s3cret" and "s3cret" not in repr(login)
    assert onhost.Login().exec_flags() == [] and onhost.Login().env() is None
    steps = onhost.plan(onhost.target("shop", srv="/srv"), mode="cold", compose=["dc"], service="mariadb", deps=(),
                        entry="/e", keep=None, login=login)
    commands = [c for s in steps for c in s.commands]
    assert "dc exec -T -e MYSQL_PWD mariadb mysql -uroot -N -B -e 'SELECT 1'" in commands
    assert not any("s3cret" in c for c in commands)


def test_a_refused_login_is_told_from_a_server_that_is_not_up():
    assert onhost.denied("ERROR 1045 (28000): Access denied for user 'root'@'localhost' (using password: NO)")
    assert onhost.denied("ERROR 1698 (28000): Access denied for user 'root'@'localhost'")
    assert not onhost.denied("ERROR 2002 (HY000): Can't connect to local server through socket")


def test_the_plan_says_how_it_logs_in_and_what_it_does_when_the_database_is_down():
    from aegir.mysql.report import plan_text

    plan = {"mode": "cold", "service": "mariadb", "dependents": [], "target": {"path": "/srv/apps/ledger"},
            "login": {"user": "root", "how": "the password from MARIADB_ROOT_PASSWORD", "client": "mysql",
                      "note": None}, "steps": []}
    assert plan_text("hyp1", plan).splitlines()[2] == (
        "  log in as root using the password from MARIADB_ROOT_PASSWORD, client mysql")
    down = {**plan, "login": {"user": "root", "how": "the socket", "client": "mariadb",
                              "note": "the database does not answer now (\x1b[31m); the run starts it first"}}
    assert plan_text("hyp1", down).splitlines()[2] == (
        "  log in as root using the socket, client mariadb (the database does not answer now (\\x1b[31m); "
        "the run starts it first)")
