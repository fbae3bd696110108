"""The one typed field reader: each parser's sentence, and a mistake located file:line through the YAML line map."""

from __future__ import annotations

import ipaddress

import pytest

from aegir import fields, yamldoc
from aegir.errors import InventoryError
from aegir.fields import FieldError, Fields, FieldsError


def refused(parse, value) -> str:
    with pytest.raises(FieldError) as err:
        parse(value)
    return str(err.value)


@pytest.mark.parametrize("value, text, got", [(1, False, 1), (65535, False, 65535), ("443", True, 443)])
def test_a_port_is_1_to_65535(value, text, got):
    assert fields.port(value, text=text) == got


@pytest.mark.parametrize("value, text, sentence", [
    (0, False, "0 is not a port number from 1 to 65535"),
    (65536, False, "65536 is not a port number from 1 to 65535"),
    (True, False, "True is not a port number from 1 to 65535"),
    ("22", False, "'22' is not a port number from 1 to 65535"),  # hosts.yml writes numbers as numbers
    ("٨٠", True, "'٨٠' is not a port number from 1 to 65535"),  # ASCII digits only
    ("100000", True, "'100000' is not a port number from 1 to 65535"),
])
def test_anything_else_is_not_a_port(value, text, sentence):
    assert refused(lambda v: fields.port(v, text=text), value) == sentence


def test_a_boolean_is_true_or_false_and_words_only_where_asked():
    assert fields.boolean(False) is False and fields.boolean(" TRUE ", text=True) is True
    assert refused(fields.boolean, "yes") == "must be true or false, not 'yes'"
    assert refused(fields.boolean, "true") == "must be true or false, not 'true'"
    assert refused(lambda v: fields.boolean(v, text=True), 1) == "must be true or false, not 1"


@pytest.mark.parametrize("value, seconds", [(10, 10.0), (0.5, 0.5), ("30s", 30.0), ("5m", 300.0), ("2h", 7200.0),
                                            ("1d", 86400.0), ("90", 90.0), (" 1.5m ", 90.0)])
def test_a_duration_is_seconds_or_a_number_with_a_unit(value, seconds):
    assert fields.duration(value) == seconds


def test_a_duration_is_above_0_and_within_its_bounds():
    assert refused(fields.duration, 0) == \
        "must be a number of seconds above 0 (or with a unit: 30s, 5m, 2h, 1d), not 0"
    assert refused(fields.duration, "5 minutes") == \
        "must be a number of seconds above 0 (or with a unit: 30s, 5m, 2h, 1d), not '5 minutes'"
    assert refused(lambda v: fields.duration(v, most=3600, whole_seconds=True), 1.5) == \
        "must be a whole number of seconds from 1 to 3600 (or with a unit: 30s, 5m, 2h, 1d), not 1.5"
    assert refused(lambda v: fields.duration(v, most=3600), "2h") == \
        "must be a number of seconds from 1 to 3600 (or with a unit: 30s, 5m, 2h, 1d), not '2h'"
    assert refused(fields.duration, True).endswith("not True")
    assert refused(fields.duration, "5M").endswith("not '5M'")  # M is a size
    assert refused(fields.duration, "9" * 400).startswith("must be a number of seconds above 0")
    assert refused(lambda v: fields.duration(v, most=3600), 10**400).startswith("must be a number of seconds from 1")


@pytest.mark.parametrize("value, size", [("500M", 500 * 1024**2), ("2G", 2 * 1024**3), ("1.5K", 1536), ("10", 10),
                                         (" 3 GiB ", 3 * 1024**3), ("1tb", 1024**4), (4096, 4096)])
def test_a_size_counts_powers_of_1024(value, size):
    assert fields.size(value) == size


@pytest.mark.parametrize("value", ["", "M", "2X", "-1G", True, -5, None, "9" * 400 + "G", "٨M"])
def test_anything_else_is_not_a_size(value):
    assert refused(fields.size, value) == f"must be a size such as 500M or 2G, not {value!r}"


def test_the_mysql_over_flag_reads_sizes_with_the_same_parser():
    from aegir.errors import AegirError
    from aegir.mysql.plan import parse_size

    assert parse_size("500M") == fields.size("500M")
    with pytest.raises(AegirError, match=r"^--over '2X': give a size such as 500M or 2G$"):
        parse_size("2X")


def test_names_choices_and_bounded_numbers():
    assert fields.name("service")("web-1") == "web-1"
    assert refused(fields.name("service"), "ro ot") == ("invalid service name 'ro ot': use letters, digits, '_', "
                                                        "'.', '-' (at most 63, not starting with a symbol)")
    assert refused(fields.choice("ssh", "local"), "telnet") == "must be 'ssh' or 'local', not 'telnet'"
    assert refused(fields.choice("a", "b", "c"), 1) == "must be 'a', 'b' or 'c', not 1"
    assert fields.whole("10", most=65535, text=True) == 10
    assert refused(lambda v: fields.whole(v, most=65535), 70000) == "must be a whole number from 0 to 65535, not 70000"
    assert refused(lambda v: fields.whole(v, least=1), 0) == "must be a whole number of 1 or more, not 0"


def test_addresses_and_networks():
    assert fields.ip("192.0.2.1", 4) == ipaddress.IPv4Address("192.0.2.1")
    assert refused(lambda v: fields.ip(v, 4), "2001:db8::1") == "'2001:db8::1' is not an IPv4 address"
    assert refused(fields.ip, "fe80::1%eth0") == "'fe80::1%eth0' has a zone id: give the address alone"
    assert refused(fields.ip, " 192.0.2.1") == "' 192.0.2.1' is not an IP address"
    assert fields.network("192.0.2.7/24") == ipaddress.ip_network("192.0.2.0/24")
    assert refused(fields.network, "nowhere") == "'nowhere' is not an address or network"
    assert fields.address("hyp1.example.org") == "hyp1.example.org"
    assert refused(fields.address, "-oProxyCommand=id").startswith("'-oProxyCommand=id' must be a host name or an IP")
    assert refused(fields.text, "a\nb") == ("must be a non-empty string without control characters "
                                            "(newlines, tabs), not 'a\\nb'")
    assert refused(fields.text, [1]) == "must be a string, not a list"


def test_a_list_of_says_which_item_is_wrong():
    ports = fields.list_of(fields.port, "ports")
    assert ports([22, 443]) == [22, 443] and ports(22) == [22]
    with pytest.raises(FieldError) as err:
        ports([22, 0])
    assert (err.value.sentence, err.value.at) == ("0 is not a port number from 1 to 65535", (1,))
    assert refused(ports, {"a": 1}) == "must be a list of ports"
    assert refused(fields.list_of(fields.port, "ports", single=False), 22) == "must be a list of ports"


def test_an_unknown_key_says_did_you_mean_or_lists_the_known_ones():
    assert fields.unknown_key("adress", ["address", "port"]) == "unknown key 'adress' (did you mean 'address'?)"
    assert fields.unknown_key("zzz", ["address", "port"]) == "unknown key 'zzz' (known: address, port)"
    assert fields.unknown_key("hostz", ["hosts"], "top-level key") == \
        "unknown top-level key 'hostz' (did you mean 'hosts'?)"


TEXT = """\
x-aegir:
  thing:
    port: 22
    ports:
      - 80
      - 0
    flag: 'yes'
    sub: {wait: 10s, size: 2Q}
    prot: 1
"""


def reader(error=FieldsError) -> Fields:
    doc = yamldoc.load(TEXT)
    return Fields(doc.data["x-aegir"]["thing"], "/srv/apps/x/docker-compose.yml",
                  lambda keys: doc.line("x-aegir", "thing", *keys), path=("x-aegir", "thing"), error=error)


def test_fields_read_each_key_and_locate_each_mistake_at_its_line():
    f = reader()
    assert f.get("port", fields.port) == 22 and f.get("absent", fields.port, 99) == 99
    assert f.below("sub").get("wait", fields.duration) == 10.0
    cases = [
        (lambda: f.get("ports", fields.list_of(fields.port)), 6, "x-aegir.thing.ports[1]: 0 is not a port number from 1 to 65535"),
        (lambda: f.get("flag", fields.boolean), 7, "x-aegir.thing.flag: must be true or false, not 'yes'"),
        (lambda: f.below("sub").get("size", fields.size), 8, "x-aegir.thing.sub.size: must be a size such as 500M or 2G, not '2Q'"),
        (lambda: f.check(("port", "ports", "flag", "sub")), 9, "x-aegir.thing: unknown key 'prot' (did you mean 'port'?)"),
        (lambda: f.below("port"), 3, "x-aegir.thing.port: must be a mapping"),
    ]
    for call, line, message in cases:
        with pytest.raises(FieldsError) as err:
            call()
        assert str(err.value) == f"/srv/apps/x/docker-compose.yml:{line}: {message}"


def test_fields_raise_the_callers_error_with_its_head():
    f = Fields({"port": 0}, "hosts.yml", lambda keys: 7, head="hyp1", path=("fw",), error=InventoryError)
    with pytest.raises(InventoryError) as err:
        f.get("port", fields.port)
    assert str(err.value) == "hosts.yml:7: hyp1: fw.port: 0 is not a port number from 1 to 65535"
    assert err.value.problem == "hyp1: fw.port: 0 is not a port number from 1 to 65535"


# --------------------------------------------------------------------------- Answer: a host's answer, by shape


def test_an_answer_reads_by_path_and_null_or_absent_reads_as_empty():
    rows = fields.Answer([{"Name": "x", "IPAM": {"Config": [{"Subnet": "10.0.0.0/8"}]}, "Size": 2.0}, {}], "docker")
    first, second = rows.items()
    assert first["Name"].text() == "x" and first["IPAM"]["Config"].items()[0]["Subnet"].text() == "10.0.0.0/8"
    assert first["Size"].number() == 2 and first["Missing"].number(7) == 7 and second["Name"].text("?") == "?"
    assert second["Labels"].pairs() == [] and second["Names"].texts() == [] and not second["InUse"].flag()


@pytest.mark.parametrize(("value", "read", "message"), [
    ("x", lambda a: a.items(), "docker /networks: expected a list, got a string"),
    ([{"IPAM": []}], lambda a: a.items()[0]["IPAM"]["Config"], "docker /networks: [0].IPAM: expected a mapping, got a list"),
    ([{"Size": "12"}], lambda a: a.items()[0]["Size"].number(), "docker /networks: [0].Size: expected a number, got a string"),
    ([{"Size": float("nan")}], lambda a: a.items()[0]["Size"].number(),
     "docker /networks: [0].Size: expected a finite number, got nan"),
    ([{"Size": 10**400}], lambda a: a.items()[0]["Size"].real(),
     "docker /networks: [0].Size: expected a finite number, got a number too large"),
    ([{"Names": ["a", None]}], lambda a: a.items()[0]["Names"].texts(),
     "docker /networks: [0].Names[1]: expected a string, got null"),
    ([{"InUse": "yes"}], lambda a: a.items()[0]["InUse"].flag(), "docker /networks: [0].InUse: expected true or false, got a string"),
    ([{}], lambda a: a.items()[0]["step"].present(), "docker /networks: [0].step: expected a value, got null"),
])
def test_an_answer_of_another_shape_is_a_shape_error_naming_the_answer_and_the_path(value, read, message):
    with pytest.raises(fields.ShapeError) as exc:
        read(fields.Answer(value, "docker /networks"))
    assert str(exc.value) == message


def test_read_json_refuses_text_and_nesting_too_deep_for_python():
    assert fields.read_json('{"a": [1]}', "x") == {"a": [1]}
    with pytest.raises(fields.ShapeError, match=r"^cannot read `ip -j addr`: Expecting value"):
        fields.read_json("nope", "`ip -j addr`")
    with pytest.raises(fields.ShapeError, match=r"^cannot read `ip -j addr`: nested too deeply$"):
        fields.read_json("[" * 100_000, "`ip -j addr`")
