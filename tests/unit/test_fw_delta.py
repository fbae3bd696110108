"""The incremental path: which ruleset changes are container-set elements only, and the keys they add, checked."""

from __future__ import annotations

import dataclasses

import pytest

from aegir.errors import RefusedError
from aegir.fw import delta, nft
from aegir.fw import plan as fwplan
from aegir.fw.model import parse_container
from aegir.fw.render import Template, packaged
from bench.fw import synthetic_inspect
from tests.unit.test_fw_render import HOST, SETTINGS

ADMIN4 = "198.51.100.11"


def containers(n: int, **changes: str) -> list:
    """`n` synthetic containers; `changes` re-address one (``app1="10.9.9.9"``)."""
    data = synthetic_inspect(n)
    for d in data:
        if d["Name"].lstrip("/") in changes:
            d["NetworkSettings"]["Networks"]["bridge"]["IPAddress"] = changes[d["Name"].lstrip("/")]
    return [parse_container(d) for d in data]


def live(n: int, host=HOST, settings=SETTINGS, template: Template | None = None, **changes: str) -> nft.State:
    """A host whose live, verified, proved ruleset is the one of `n` containers."""
    old = fwplan.firewall(host, settings, containers(n, **changes), None, template, bridges=("docker0",))
    return nft.State(None, old.text, "h", "h", old.fingerprint)


def planned(n: int, state: nft.State, host=HOST, settings=SETTINGS, template: Template | None = None,
            bridges: tuple[str, ...] = ("docker0",), **changes: str) -> fwplan.Firewall:
    return fwplan.firewall(host, settings, containers(n, **changes), state, template, bridges)


def test_a_container_started_is_its_elements_added_in_one_transaction():
    change = fwplan.elements_only(planned(2, live(1)))
    assert isinstance(change, delta.Delta)
    assert change.script() == (
        "add element inet aegir dnat4 { 198.51.100.101 . tcp . 10003 : 10.128.0.3 . 80, "
        "198.51.100.101 . tcp . 10004 : 10.128.0.3 . 81, 198.51.100.101 . tcp . 10005 : 10.128.0.3 . 82 }\n"
        "add element inet aegir dnat6 { 2001:db8:0:100::11 . tcp . 10003 : 2001:db8:0:1ff::3 . 80, "
        "2001:db8:0:100::11 . tcp . 10004 : 2001:db8:0:1ff::3 . 81, "
        "2001:db8:0:100::11 . tcp . 10005 : 2001:db8:0:1ff::3 . 82 }\n"
        "add element inet aegir exposed6 { 2001:db8:0:1ff::3 . tcp . 80, 2001:db8:0:1ff::3 . tcp . 81, "
        "2001:db8:0:1ff::3 . tcp . 82 }\n")


def test_the_last_container_stopped_and_one_re_addressed_are_deletes_then_adds():
    gone = fwplan.elements_only(planned(0, live(1)))
    assert isinstance(gone, delta.Delta) and gone.count() == (0, 9)
    assert gone.script().splitlines()[0] == ("delete element inet aegir dnat4 { 198.51.100.101 . tcp . 10000, "
                                             "198.51.100.101 . tcp . 10001, 198.51.100.101 . tcp . 10002 }")
    moved = fwplan.elements_only(planned(2, live(2), app1="10.9.9.9"))
    assert isinstance(moved, delta.Delta)
    lines = moved.script().splitlines()
    assert lines == [
        "delete element inet aegir dnat4 { 198.51.100.101 . tcp . 10003, 198.51.100.101 . tcp . 10004, "
        "198.51.100.101 . tcp . 10005 }",
        "add element inet aegir dnat4 { 198.51.100.101 . tcp . 10003 : 10.9.9.9 . 80, "
        "198.51.100.101 . tcp . 10004 : 10.9.9.9 . 81, 198.51.100.101 . tcp . 10005 : 10.9.9.9 . 82 }"]


def test_admin_addresses_allow_lists_and_interfaces_take_the_full_proof():
    state = live(1)
    admin = dataclasses.replace(HOST, admin_ipv4=__import__("ipaddress").ip_address("198.51.100.13"))
    # an admin address: the SSH settings a fresh login verified are not these
    assert fwplan.elements_only(planned(2, state, host=admin)) == "SSH settings a fresh login did not verify"
    # an allow-list: not a container set, even with the SSH settings unchanged
    more = dataclasses.replace(SETTINGS, input=SETTINGS.input * 2 + SETTINGS.output[:1])
    assert fwplan.elements_only(planned(2, state, settings=more)) == "the elements of in4 changed (not a container set)"
    # a new Docker network: the chains name its bridge
    assert fwplan.elements_only(planned(2, state, bridges=("docker0", "br-0123456789ab"))) == \
        "the structure changed (chains, rules, set definitions or interfaces)"


def test_the_live_table_must_be_the_last_good_verified_one():
    state = live(1)
    assert fwplan.elements_only(planned(2, dataclasses.replace(state, live_hash="other"))) == \
        "the live table is changed since last apply"
    assert fwplan.elements_only(planned(2, dataclasses.replace(state, last_good=None))) == "no last good ruleset"
    assert fwplan.elements_only(planned(2, dataclasses.replace(state, verified="x"))) == \
        "SSH settings a fresh login did not verify"


def test_a_template_writing_a_rule_of_the_containers_takes_the_full_proof():
    tpl = packaged().source.replace("\t\tct status dnat accept\n",
                                    "\t\tct status dnat accept\n{% for d in dnat[4] %}\t\tcounter\n{% endfor %}")
    template = Template(tpl, "host.j2")
    assert fwplan.elements_only(planned(2, live(1, template=template), template=template)) == \
        "the structure changed (chains, rules, set definitions or interfaces)"


BAD = f"{{% set extra = [\"{ADMIN4} . tcp . 22 : 10.128.0.99 . 22\"] if dnat[4] else [] %}}"


def test_a_key_that_would_dnat_the_ssh_port_of_an_admin_address_is_refused():
    template = Template(BAD + packaged().source.replace("{{- dnat[v] | elements(dnat_notes[v]) }}",
                                                        "{{- (dnat[v] + (extra if v == 4 else [])) | elements }}"),
                        "host.j2")
    fw = planned(1, live(0, template=template), template=template)
    change = fwplan.elements_only(fw)
    assert isinstance(change, delta.Delta)
    with pytest.raises(RefusedError) as exc:
        fwplan.elements_refusal(fw, change)
    assert exc.value.message == (f"refused: dnat4: tcp/{ADMIN4}:22 would DNAT the SSH port of the admin address "
                                 f"{ADMIN4}; nothing changed")


@pytest.mark.parametrize(("element", "why"), [
    ("198.51.100.11 . udp . 53 : 10.0.0.1 . 53",
     "udp/198.51.100.11:53: 198.51.100.11 is an admin address; containers are published on service addresses only"),
    ("192.0.2.7 . tcp . 80 : 10.0.0.1 . 80", "tcp/192.0.2.7:80: 192.0.2.7 is not a service address of this host"),
    ("2001:db8:0:100::1 . tcp . 22 : 2001:db8::5 . 22",
     "tcp/[2001:db8:0:100::1]:22 would DNAT the SSH port of the admin address 2001:db8:0:100::1"),
])
def test_every_added_dnat_key_gets_the_models_check(element: str, why: str):
    from aegir.fw.model import guard

    refused, unknown = delta.problems(delta.Delta({}, {"dnat4": (element,)}), guard(HOST, SETTINGS.ssh_port))
    assert (refused, unknown) == ([f"dnat4: {why}"], [])


def test_an_element_of_another_shape_is_left_to_the_full_proof():
    from aegir.fw.model import guard

    odd = delta.Delta({}, {"dnat4": ("198.51.100.101 . tcp . 80-90 : 10.0.0.1 . 80",)})
    assert delta.problems(odd, guard(HOST, SETTINGS.ssh_port)) == ([], ["dnat4: " + odd.add["dnat4"][0]])


def test_a_line_of_an_elements_block_that_is_not_one_element_is_structure():
    text = "table inet aegir {\n\tset s {\n\t\ttype ipv4_addr\n\t\telements = {\n\t\t\t192.0.2.1, 192.0.2.2\n" \
           "\t\t\t192.0.2.3,  # note\n\t\t}\n\t}\n}\n"
    found = delta.shape(text)
    assert found.sets == {"s": ("192.0.2.3",)}
    assert "\t\t\t192.0.2.1, 192.0.2.2" in found.structure


def test_the_element_apply_checks_the_host_under_the_lock_and_sends_the_elements_on_stdin():
    cmd = nft.elements_cmd("/srv/conf/aegir-fw/candidate-1.nft", "/srv/conf/aegir-fw", "add element x\n",
                           "table inet aegir {\n}\n")
    boundary = cmd.argv[-1]
    assert cmd.argv[3:] == ("sh", "/srv/conf/aegir-fw/candidate-1.nft", "/srv/conf/aegir-fw", boundary)
    assert boundary.startswith("\x1e") and len(boundary) == 25  # a fresh nonce: no ruleset line is it
    assert cmd.stdin == nft.packed(f"add element x\n{boundary}\ntable inet aegir {{\n}}\n")
    script = cmd.argv[2]
    assert script.index("flock 9") < script.index('[ -e "$2/unverified" ] && no') \
        < script.index('"$(cat -- "$2/live.sha256" 2>/dev/null)" ] || no') \
        < script.index("nft -t -s list ruleset | sha256sum") \
        < script.index('"$(cat -- "$2/structure.sha256" 2>/dev/null)" ] || no') < script.index('nft -f "$e" || exit')
    assert 'mv -f -- "$1" "$2/last-good.nft" && put "$2/live.sha256" "$h" || exit' in script
    assert f"exit {nft.NOT_ELEMENTS}" in script


def test_the_element_apply_splits_its_stdin_into_the_elements_and_the_ruleset(tmp_path):
    """The script's first step, run for real (awk): the elements to a temporary file, the ruleset's text,
    byte for byte, to the candidate."""
    import subprocess

    text = "table inet aegir {\n\tset s {  # note\n\t}\n}\n"
    cmd = nft.elements_cmd(str(tmp_path / "candidate-1.nft"), str(tmp_path), "add element inet aegir s { 1 }\n", text)
    split = cmd.argv[2].split("exec 9>>", 1)[0].replace("trap 'rm -f -- \"$e\" \"$1\"' EXIT", "") \
        + 'cat "$e"\nrm -f -- "$e"\n'
    done = subprocess.run(["sh", "-c", split, *cmd.argv[3:]], input=cmd.stdin, capture_output=True, text=True,
                          timeout=10)
    assert (done.returncode, done.stdout, done.stderr) == (0, "add element inet aegir s { 1 }\n", "")
    assert (tmp_path / "candidate-1.nft").read_text() == text


# --------------------------------------------------------------------------- delta.accepted, against its old definition


def _canonical(text: str):
    """The old `delta.accepted`'s address reader: an `ipaddress` object of what ``inet_ntop`` prints back only
    (a NUL or a lone surrogate: not an address; the old one raised ValueError, a traceback)."""
    import ipaddress
    import socket

    family = socket.AF_INET6 if ":" in text else socket.AF_INET
    try:
        packed = socket.inet_pton(family, text)
    except (OSError, ValueError):
        return None
    if socket.inet_ntop(family, packed) != text:
        return None
    return ipaddress.IPv6Address(packed) if family == socket.AF_INET6 else ipaddress.IPv4Address(packed)


def _canonical_port(text: str) -> int | None:
    port = delta._port(text)
    return port if port is not None and str(port) == text else None


def old_accepted(sets, guard) -> dict[str, tuple[str, ...]]:
    """`delta.accepted` as it was: every element through `delta._check` with canonical addresses and ports."""
    own = guard.admin | guard.service
    return {name: tuple(e for e in items if delta._check(e, guard, own, _canonical, _canonical_port) == (True, None))
            for name, items in sets.items()}


_ADDRESSES = [
    # the guard's own: service, admin (both families)
    "198.51.100.101", "198.51.100.11", "2001:db8:0:100::11", "2001:db8:0:100::1",
    # containers', other hosts'
    "10.128.0.3", "2001:db8:0:1ff::3", "192.0.2.7", "::1", "0.0.0.0", "::", "255.255.255.255",
    # written otherwise than inet_ntop does: leading zeros, upper case, uncompressed, mapped, embedded
    "010.0.0.1", "198.51.100.011", "2001:DB8:0:100::11", "2001:db8:0:100:0:0:0:11", "2001:0db8:0:100::11",
    "::ffff:1.2.3.4", "::ffff:102:304", "::ffff:198.51.100.101", "::1.2.3.4", "::102:304", "1::1:0:0:1",
    # not addresses
    "", " ", "198.51.100.101 ", " 198.51.100.101", "1.2.3", "1.2.3.4.5", "256.0.0.1", "fe80::1%eth0",
    "10.0.0.0/8", "١.٢.٣.٤", "1.2.3.4\0", "\udc80", "tcp", "198.51.100.101 . tcp",
]
_PORTS = ["22", "80", "8080", "10003", "65535", "1", "0", "65536", "010", "022", "00", "-1", "+80", " 80", "80 ",
          "٨", "²", "8_0", "1e3", "", "99999", "80-90", "6553", "65530", "70000"]
_PROTOS = ["tcp", "udp", "sctp", "icmp", "TCP", " tcp", "", "tcp "]


def _elements():
    """Element texts of the shapes `render` writes, on the guard's addresses (so that many pass), with none,
    one or two parts hostile: the other family, another or a non-canonical address, port or protocol, other
    separators, a part missing or one more."""
    from hypothesis import strategies as st

    fields = ("key", "proto", "port", "colon", "target", "target port", "dot", "shape")
    good = {"key": st.sampled_from(_ADDRESSES[:4]), "proto": st.sampled_from(_PROTOS[:3]),
            "port": st.integers(1, 65535).map(str) | st.sampled_from(_PORTS[:5]), "colon": st.just(" : "),
            "dot": st.just(" . "), "shape": st.just("")}
    hostile = {"key": st.sampled_from(_ADDRESSES) | st.ip_addresses().map(str) | st.text(max_size=8),
               "proto": st.sampled_from(_PROTOS) | st.text(max_size=4),
               "port": st.sampled_from(_PORTS) | st.sampled_from(["0", "65536", "65539", "65540", "099"])
               | st.integers(-2, 70000).map(str) | st.text("0123456789٨ ", max_size=6),
               "colon": st.sampled_from([":", " :  ", " . ", "  : "]),
               "dot": st.sampled_from([".", " .  ", "  . ", " : ", " , "]),
               "shape": st.sampled_from([" . 80", " . tcp", " : 10.128.0.3 . 80", ",", " ", "\t"])}
    same = {4: st.sampled_from(["10.128.0.3", "172.30.0.2", "198.51.100.101"]) | st.ip_addresses(v=4).map(str),
            6: st.sampled_from(["2001:db8:0:1ff::3", "2001:db8:0:100::11"]) | st.ip_addresses(v=6).map(str)}

    @st.composite
    def element(draw) -> str:
        bad = draw(st.sets(st.sampled_from(fields), max_size=2) | st.just(frozenset()))

        def part(name: str, of: str | None = None) -> str:
            return draw(hostile[name] if name in bad else good[name]) if of is None else of

        k = part("key")
        dot = part("dot")
        text = f"{k}{dot}{part('proto')}{part('dot')}{part('port')}"
        if draw(st.booleans()):  # a map's element
            family = 6 if ":" in k else 4
            to = draw(hostile["key"] | same[10 - family]) if "target" in bad else draw(same[family])
            port = part("port") if "target port" not in bad else draw(hostile["port"])
            text += f"{part('colon')}{to}{part('dot')}{port}"
        if "shape" in bad and draw(st.booleans()):  # a part missing
            pieces = text.split(" . ")
            del pieces[draw(st.integers(0, len(pieces) - 1))]
            return " . ".join(pieces)
        return text + part("shape")

    return element()


def _guards():
    from hypothesis import strategies as st

    from aegir.fw.model import Guard, guard

    g = guard(HOST, SETTINGS.ssh_port)
    return st.sampled_from([g, dataclasses.replace(g, ssh_port=None), dataclasses.replace(g, ssh_port=80),
                            dataclasses.replace(g, ssh_anywhere=True), dataclasses.replace(g, admin=frozenset()),
                            Guard(frozenset(), frozenset(), 22, True)])


def test_accepted_is_its_old_definition_on_hostile_elements():
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    @settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(_elements(), min_size=5, max_size=40), st.lists(_elements(), max_size=8), _guards())
    def agree(dnat: list[str], exposed: list[str], guard) -> None:
        sets = {"dnat4": tuple(dnat), "exposed6": tuple(exposed), "none": ()}
        assert delta.accepted(sets, guard) == old_accepted(sets, guard)

    agree()


def test_accepted_is_its_old_definition_on_a_rendered_ruleset():
    from aegir.fw.model import guard

    fw = fwplan.firewall(HOST, SETTINGS, containers(300), None, None, bridges=("docker0",))
    sets = delta.shape(fw.text).sets
    g = guard(HOST, SETTINGS.ssh_port)
    found = delta.accepted(sets, g)
    assert found == old_accepted(sets, g) and sum(map(len, found.values())) >= 300 * 3 * 3


# --------------------------------------------------------------------------- delta.shape and delta.blanked, read once


def old_shape(text: str) -> delta.Shape:
    """`delta.shape` as it was (its own reading of every line)."""
    structure: list[str] = []
    sets: dict[str, tuple[str, ...]] = {}
    name: str | None = None
    block: list[str] | None = None
    for line in text.split("\n"):
        code = line.partition("#")[0].strip()
        if block is not None:
            if code == "}":
                assert name is not None
                sets[name] = (*sets.get(name, ()), *block)
                block = None
                continue
            item = code.removesuffix(",").strip()
            if delta._ELEMENT.fullmatch(item):
                block.append(" ".join(item.split()))
                continue
            structure.append(line)
            continue
        if not code:
            continue
        opened = delta._OPEN.match(code)
        if opened:
            name = opened.group(1)
            sets.setdefault(name, ())
        elif code == "elements = {" and name is not None:
            block = []
            continue
        structure.append(line.rstrip())
    return delta.Shape(tuple(structure), sets)


def old_blanked(text: str, drop) -> str:
    """`delta.blanked` as it was (its own reading of every line)."""
    lines = text.split("\n")
    name: str | None = None
    start: int | None = None
    kept = 0
    wanted = {n: frozenset(items) for n, items in drop.items()}
    for i, line in enumerate(lines):
        code = line.partition("#")[0].strip()
        if start is not None:
            if code == "}":
                if not kept:
                    lines[start] = lines[i] = ""
                start = None
                continue
            item = code.removesuffix(",").strip()
            if name is not None and delta._ELEMENT.fullmatch(item) and " ".join(item.split()) in wanted.get(name, ()):
                lines[i] = ""
            elif code:
                kept += 1
            continue
        opened = delta._OPEN.match(code)
        if opened:
            name = opened.group(1)
        elif code == "elements = {" and name is not None:
            start, kept = i, 0
    return "\n".join(lines)


def _ruleset_texts():
    """Ruleset texts of the lines `render` writes and of lines it never writes: sets and maps opened, blocks
    opened, closed or left open, elements with notes, odd spacing, several on a line, quotes, comments."""
    from hypothesis import strategies as st

    element = st.sampled_from(["10.0.0.1", "198.51.100.101 . tcp . 80 : 10.128.0.3 . 80", "2001:db8::3 . tcp . 81",
                               "10.0.0.1  .  tcp . 80", "a\tb", "x"])
    line = st.one_of(
        st.sampled_from(["table inet aegir {", "\tset in4 {", "\tmap dnat4 {", "\tset exposed6 {", "set  s2{",
                         "\t\ttype ipv4_addr", "\t\telements = {", "elements = {", "\t\t}", "\t}", "}", "", "  ",
                         "# a warning", "\t\t# a note", "\tchain input {", "\t\tct state established accept",
                         "\t\t\t}  # closed", "\t\telements = { 10.0.0.1 }", "\t\t\t\"quoted\",", "\t\t\t{ x },"]),
        st.tuples(st.sampled_from(["\t\t\t", "", "  ", "\t"]), element, st.sampled_from([",", "", ",,", " ,"]),
                  st.sampled_from(["", "  # app1", "# x", " #"])).map("".join),
        st.tuples(element, element).map(lambda ab: f"\t\t\t{ab[0]}, {ab[1]}"),
        st.text(alphabet="{};,# \t.a1", max_size=8))
    block = st.tuples(st.sampled_from(["\tset in4 {", "\tmap dnat4 {", ""]), st.lists(line, max_size=6)).map(
        lambda b: "\n".join([b[0], "\t\telements = {", *b[1], "\t\t}"]))
    return st.lists(line | block, max_size=40).map("\n".join)


def test_shape_and_blanked_read_a_ruleset_once_as_they_did_each():
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    @settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(_ruleset_texts(), st.data())
    def same(text: str, data) -> None:
        before = old_shape(text)
        assert delta.shape(text) == before
        drop = {n: data.draw(st.just(items) | st.lists(st.sampled_from([*items, "10.0.0.1", "x"]), unique=True))
                for n, items in before.sets.items()}
        drop["absent"] = ["10.0.0.1"]
        assert delta.blanked(text, drop) == old_blanked(text, drop)
        assert delta.shape(text) == before  # read from the cache: the same answer

    same()


def test_shape_and_blanked_of_a_rendered_ruleset_are_as_they_were():
    fw = fwplan.firewall(HOST, SETTINGS, containers(300), None, None, bridges=("docker0",))
    before = old_shape(fw.text)
    assert delta.shape(fw.text) == before and sum(map(len, before.sets.values())) >= 300 * 3 * 3
    some = {n: items[::2] for n, items in before.sets.items()}
    every = dict(before.sets)
    for drop in (some, every, {}):
        assert delta.blanked(fw.text, drop) == old_blanked(fw.text, drop)
