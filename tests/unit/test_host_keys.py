"""SSH trust in aegir.host: known_hosts as OpenSSH reads it, every hop guarded, prompted secrets kept, quoted advice."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import paramiko
import pytest
from fabric import Config, Connection

from aegir.errors import HostKeyError
from aegir.host import _RefuseUnknown, connection_for, keyscan_command, read_known_hosts
from aegir.inventory import Host


def new_key(tmp_path: Path, name: str) -> tuple[str, paramiko.PKey]:
    """A fresh ed25519 key made by ssh-keygen: its ``type base64`` text and paramiko's object."""
    path = tmp_path / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    text = " ".join(Path(f"{path}.pub").read_text().split()[:2])
    return text, paramiko.Ed25519Key.from_private_key_file(str(path))


@pytest.fixture
def keys(tmp_path):
    return {n: new_key(tmp_path, n) for n in ("good", "bad", "ca")}


def test_revoked_and_cert_authority_lines_are_read_not_a_traceback(tmp_path, keys):
    good, bad, ca = (keys[n][0] for n in ("good", "bad", "ca"))
    kh = tmp_path / "known_hosts"
    kh.write_text(f"# a comment\n@revoked * {bad}\n@cert-authority *.example.org {ca}\n"
                  f"hyp1 {good}\nhyp2 {bad}\nnot a key line\n|1|garbage|hash ssh-ed25519 AAAA\n\n")
    known = read_known_hosts(str(kh))
    assert [(e.hostnames, e.key.get_base64()) for e in known.entries] == [(["hyp1"], good.split()[1])]
    assert known.revoked == {tuple(bad.split())}
    assert read_known_hosts(str(tmp_path / "missing")).entries == ()


def test_a_revoked_key_is_refused_even_when_a_line_lists_it(tmp_path, keys):
    kh = tmp_path / "known_hosts"
    kh.write_text(f"@revoked * {keys['bad'][0]}\nhyp2 {keys['bad'][0]}\n")
    policy = _RefuseUnknown(Host("hyp2", address="hyp2"), read_known_hosts(str(kh)), "hyp2", 22)
    with pytest.raises(HostKeyError, match=r"^hyp2: SSH host key ssh-ed25519 \S+ of hyp2 is marked @revoked in "):
        policy.missing_host_key(None, "hyp2", keys["bad"][1])
    with pytest.raises(HostKeyError, match="unknown SSH host key ssh-ed25519 .* for hyp2, not in "):
        policy.missing_host_key(None, "hyp2", keys["good"][1])


@pytest.mark.parametrize("address, port, known_hosts, expected", [
    ("192.0.2.1", 22, "/root/.ssh/known_hosts", "ssh-keyscan 192.0.2.1 >> /root/.ssh/known_hosts"),
    ("2001:db8::1", 2222, "/tmp/my hosts", "ssh-keyscan -p 2222 2001:db8::1 >> '/tmp/my hosts'"),
    ("h;id", 22, "/k$(id)", "ssh-keyscan 'h;id' >> '/k$(id)'"),
])
def test_the_suggested_keyscan_is_quoted_for_a_shell(address, port, known_hosts, expected):
    command = keyscan_command(address, port, known_hosts)
    assert command == expected
    argv, _, target = command.partition(" >> ")
    assert shlex.split(argv)[-1] == address and shlex.split(target) == [known_hosts]


def config(tmp_path: Path, ssh_config: str = "", **connect_kwargs: object) -> Config:
    path = tmp_path / "ssh_config"
    path.write_text(ssh_config)
    cfg = Config(runtime_ssh_path=str(path), overrides={"connect_kwargs": dict(connect_kwargs)})
    cfg.load_ssh_config()
    return cfg


class Ctx:
    def __init__(self, cfg: Config) -> None:
        self.config = cfg


def test_a_host_with_identity_keeps_the_prompted_passphrase_and_password(tmp_path):
    cfg = config(tmp_path, passphrase="pp", password="pw", key_filename=["/cli/key"])
    conn = connection_for(Ctx(cfg), Host("hyp1", address="192.0.2.1", identity="/keys/hyp1",
                                         known_hosts=str(tmp_path / "kh")))
    assert conn.connect_kwargs["passphrase"] == "pp" and conn.connect_kwargs["password"] == "pw"
    assert conn.connect_kwargs["key_filename"] == ["/cli/key", "/keys/hyp1"]
    plain = connection_for(Ctx(cfg), Host("hyp2", address="192.0.2.2", known_hosts=str(tmp_path / "kh")))
    assert plain.connect_kwargs["passphrase"] == "pp"


def test_every_proxyjump_hop_checks_its_host_key_against_known_hosts(tmp_path, keys):
    kh = tmp_path / "known_hosts"
    kh.write_text(f"192.0.2.1 {keys['good'][0]}\n")
    cfg = config(tmp_path, "Host 192.0.2.1\n  ProxyJump jump1.example.org,root@jump2.example.org:2200\n")
    conn = connection_for(Ctx(cfg), Host("hyp1", address="192.0.2.1", known_hosts=str(kh)))
    hops = []
    while isinstance(conn, Connection):
        policy = conn.client._policy
        assert isinstance(policy, _RefuseUnknown), type(policy)
        assert conn.client.get_host_keys().lookup("192.0.2.1") is not None
        hops.append((policy.address, policy.port, policy.hop))
        conn = conn.gateway
    # Fabric chains the hops as it does (the first hop named is the target's own gateway): each one is guarded.
    assert hops == [("192.0.2.1", 22, ""), ("jump1.example.org", 22, "gateway "), ("jump2.example.org", 2200, "gateway ")]


def test_making_a_connection_never_writes_into_the_config_other_hosts_read(tmp_path):
    """Fabric's Connection() writes a key into its config, and Invoke rebuilds a config from empty on each
    write: a config shared by hosts connecting at once was seen empty ("No attribute ... 'gateway'")."""
    cfg = config(tmp_path)
    shared = cfg._config  # the dict Invoke replaces on every write (merge)
    first = connection_for(Ctx(cfg), Host("hyp1", address="192.0.2.1", known_hosts=str(tmp_path / "kh")))
    second = connection_for(Ctx(cfg), Host("hyp2", address="192.0.2.2", known_hosts=str(tmp_path / "kh")))
    assert cfg._config is shared
    assert first.config is not second.config and first.config is not cfg
    assert first.config.timeouts.connect == cfg.timeouts.connect


def test_a_run_reads_the_ssh_config_files_once_however_many_hosts_it_connects_to(tmp_path):
    """Fabric's clone() parses the ssh_config files again into the config it clones, appending: a clone per
    host made each lookup longer than the last (200 hosts: 400 copies of the system's Host blocks)."""
    from invoke import Config as InvokeConfig

    from aegir.host import fabric_config

    path = tmp_path / "ssh_config"
    path.write_text("Host 192.0.2.*\n  User ops\n")
    twin = fabric_config(InvokeConfig(overrides={"ssh_config_path": str(path)}))
    before = len(twin.base_ssh_config._config)
    for _ in range(5):
        twin.clone()
    assert len(twin.base_ssh_config._config) == before
    conn = connection_for(Ctx(twin), Host("hyp1", address="192.0.2.1", known_hosts=str(tmp_path / "kh")))
    assert conn.user == "ops"


def test_a_server_that_hangs_up_after_its_banner_is_unreachable_with_a_reason_not_an_empty_one(tmp_path):
    """paramiko raises a bare EOFError() there: its str() is empty, so the reason is the error's name."""
    import socket
    import threading

    from aegir.errors import UnreachableError
    from aegir.host import _connect

    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]

    def serve() -> None:
        s, _ = srv.accept()
        s.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
        # Read all the client sent (its banner and KEXINIT, then it waits for ours) before hanging up: a
        # close with unread data sends a reset, not an end of stream (ECONNRESET instead of EOFError).
        s.settimeout(0.3)
        try:
            while s.recv(65536):
                pass
        except TimeoutError:
            pass
        s.close()

    threading.Thread(target=serve, daemon=True).start()
    host = Host("hyp1", address="127.0.0.1", port=port, known_hosts=str(tmp_path / "kh"))
    with pytest.raises(UnreachableError) as err:
        _connect(connection_for(Ctx(config(tmp_path)), host), host)
    srv.close()
    assert err.value.message == f"cannot connect to 127.0.0.1:{port}: EOFError"
