"""The real SSH transport against an SSH server on loopback (paramiko in server mode).

Proves host-key policies (accept-new records, strict refuses, a changed key is refused), clear
errors for a wrong key or an unreachable port, and that a sudo password travels on stdin,
never in the command line.
"""

from __future__ import annotations

import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from provisioner.errors import ConnectError, HostKeyError, SudoError
from provisioner.remote import SUDO_PROMPT, JumpHosts, SSHRemote, connect
from provisioner.secrets import Secret
from tests.unit.conftest import make_inventory
from tests.unit.sshserver import SUDO_PASSWORD, FakeSSHServer


@pytest.fixture
def keys(tmp_path: Path) -> tuple[paramiko.PKey, paramiko.PKey, Path]:
    host_key = paramiko.ECDSAKey.generate()
    client_key = paramiko.ECDSAKey.generate()
    key_file = tmp_path / "id_ecdsa"
    client_key.write_private_key_file(str(key_file))
    return host_key, client_key, key_file


@pytest.fixture
def server(keys: tuple[paramiko.PKey, paramiko.PKey, Path]) -> Iterator[FakeSSHServer]:
    srv = FakeSSHServer(keys[0], keys[1])
    srv.start()
    yield srv
    srv.stop()


def remote_for(
    server: FakeSSHServer,
    tmp_path: Path,
    key_file: Path,
    *,
    policy: str = "accept-new",
    user: str = "root",
    sudo_password: Secret | None = None,
    extra: str = "",
) -> SSHRemote:
    empty_ssh_config = tmp_path / "ssh_config"
    empty_ssh_config.touch()
    inventory = make_inventory(
        f"cluster: {{name: t}}\n"
        f"ssh: {{user: {user}, port: {server.port}, private_key: {key_file}, host_key_policy: {policy}, known_hosts: {tmp_path}/known_hosts{extra}}}\n"
        "hosts:\n  - {name: h1, address: 127.0.0.1, role: server}\n"
    )
    return connect(inventory, inventory.hosts[0], ssh_config_path=str(empty_ssh_config), sudo_password=sudo_password)


def test_accept_new_records_an_unknown_host_key_and_then_trusts_it(server: FakeSSHServer, tmp_path: Path, keys) -> None:  # type: ignore[no-untyped-def]
    remote = remote_for(server, tmp_path, keys[2])
    assert remote.run("echo hello").stdout == "hello\n"
    remote.close()
    known = tmp_path / "known_hosts"
    assert stat.S_IMODE(known.stat().st_mode) == 0o600
    lines = known.read_text().splitlines()
    assert lines == [f"[127.0.0.1]:{server.port} ecdsa-sha2-nistp256 {keys[0].get_base64()}"]
    remote_for(server, tmp_path, keys[2]).close()
    assert known.read_text().splitlines() == lines  # recorded once


def test_a_changed_host_key_is_refused_with_a_clear_message(server: FakeSSHServer, tmp_path: Path, keys) -> None:  # type: ignore[no-untyped-def]
    other = paramiko.ECDSAKey.generate()
    (tmp_path / "known_hosts").write_text(f"[127.0.0.1]:{server.port} ecdsa-sha2-nistp256 {other.get_base64()}\n")
    with pytest.raises(HostKeyError, match="CHANGED") as caught:
        remote_for(server, tmp_path, keys[2])
    assert "ssh-keygen -R" in str(caught.value)
    assert server.commands == []


def test_strict_refuses_an_unknown_host_key_and_records_nothing(server: FakeSSHServer, tmp_path: Path, keys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(HostKeyError, match="not in .*known_hosts and ssh.host_key_policy is strict"):
        remote_for(server, tmp_path, keys[2], policy="strict")
    assert not (tmp_path / "known_hosts").exists()
    assert server.commands == []


def test_strict_accepts_a_key_that_is_in_known_hosts(server: FakeSSHServer, tmp_path: Path, keys) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "known_hosts").write_text(f"[127.0.0.1]:{server.port} ecdsa-sha2-nistp256 {keys[0].get_base64()}\n")
    remote = remote_for(server, tmp_path, keys[2], policy="strict")
    assert remote.run("true").ok


def test_policy_off_connects_without_recording(server: FakeSSHServer, tmp_path: Path, keys) -> None:  # type: ignore[no-untyped-def]
    remote_for(server, tmp_path, keys[2], policy="off").close()
    assert not (tmp_path / "known_hosts").exists()


def test_a_wrong_private_key_names_the_host_and_the_key(server: FakeSSHServer, tmp_path: Path, keys) -> None:  # type: ignore[no-untyped-def]
    wrong = tmp_path / "wrong_key"
    paramiko.ECDSAKey.generate().write_private_key_file(str(wrong))
    with pytest.raises(ConnectError) as caught:
        remote_for(server, tmp_path, wrong)
    assert caught.value.host == "h1"
    assert f"authentication failed for root@127.0.0.1:{server.port} with key {wrong}" in str(caught.value)


def test_an_unreachable_port_is_a_clear_connect_error(tmp_path: Path, keys) -> None:  # type: ignore[no-untyped-def]
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    dead = FakeSSHServer(keys[0], keys[1], port=port)
    with pytest.raises(ConnectError, match="unreachable"):
        remote_for(dead, tmp_path, keys[2])


def test_sudo_password_goes_to_stdin_and_never_into_the_command(server: FakeSSHServer, tmp_path: Path, keys) -> None:  # type: ignore[no-untyped-def]
    remote = remote_for(server, tmp_path, keys[2], user="admin", sudo_password=Secret(SUDO_PASSWORD))
    result = remote.sudo("id -un")
    assert result.stdout == "root\n"
    assert server.stdin_seen == [SUDO_PASSWORD]
    assert all(SUDO_PASSWORD not in command for command in server.commands)
    assert server.commands[-1] == f"sudo -S -p '{SUDO_PROMPT}' -- sh -c 'id -un'"
    assert SUDO_PROMPT not in result.stderr


def test_a_wrong_sudo_password_is_a_sudo_error(server: FakeSSHServer, tmp_path: Path, keys) -> None:  # type: ignore[no-untyped-def]
    remote = remote_for(server, tmp_path, keys[2], user="admin", sudo_password=Secret("wrong"))
    with pytest.raises(SudoError, match="sudo refused the password"):
        remote.sudo("id -un")


def test_sudo_that_needs_a_password_we_do_not_have_says_how_to_give_it(server: FakeSSHServer, tmp_path: Path, keys) -> None:  # type: ignore[no-untyped-def]
    remote = remote_for(server, tmp_path, keys[2], user="admin")
    with pytest.raises(SudoError, match="ssh.sudo_password_env"):
        remote.sudo("id -un")
    assert server.commands[-1].startswith("sudo -n -- ")


def test_root_runs_root_commands_without_sudo(server: FakeSSHServer, tmp_path: Path, keys) -> None:  # type: ignore[no-untyped-def]
    remote = remote_for(server, tmp_path, keys[2])
    remote.sudo("systemctl is-active k3s")
    assert server.commands[-1] == "sh -c 'systemctl is-active k3s'"


def test_ssh_config_host_alias_port_user_and_identity_file_are_honoured(server: FakeSSHServer, tmp_path: Path, keys) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "ssh_config"
    config.write_text(f"Host rack-node\n  HostName 127.0.0.1\n  Port {server.port}\n  User root\n  IdentityFile {keys[2]}\n")
    inventory = make_inventory(
        f"cluster: {{name: t}}\nssh: {{known_hosts: {tmp_path}/known_hosts}}\nhosts:\n  - {{name: h1, address: rack-node, role: server}}\n"
    )
    remote = connect(inventory, inventory.hosts[0], ssh_config_path=str(config))
    assert remote.run("echo hello").stdout == "hello\n"
    assert remote.user == "root"
    assert (tmp_path / "known_hosts").read_text().startswith(f"[127.0.0.1]:{server.port} ")


def jump_inventory(
    jump: FakeSSHServer, target: FakeSSHServer, tmp_path: Path, key_file: Path, hosts: int, policy: str = "strict"
) -> object:
    lines = "".join(f"  - {{name: h{i}, address: 127.0.0.{i}, role: {'server' if i == 1 else 'agent'}}}\n" for i in range(1, hosts + 1))
    return make_inventory(
        f"cluster: {{name: t}}\n"
        f"ssh: {{user: root, port: {target.port}, private_key: {key_file}, host_key_policy: {policy}, "
        f"known_hosts: {tmp_path}/known_hosts, proxy_jump: 'jumper@127.0.0.1:{jump.port}'}}\n"
        "hosts:\n" + lines
    )


@pytest.fixture
def jump(keys: tuple[paramiko.PKey, paramiko.PKey, Path]) -> Iterator[FakeSSHServer]:
    srv = FakeSSHServer(paramiko.ECDSAKey.generate(), keys[1], forward=True)
    srv.start()
    yield srv
    srv.stop()


def test_hosts_behind_one_jump_host_share_one_connection_to_it(server: FakeSSHServer, jump: FakeSSHServer, tmp_path: Path, keys) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "known_hosts").write_text(
        "".join(f"[127.0.0.{i}]:{server.port} ecdsa-sha2-nistp256 {keys[0].get_base64()}\n" for i in range(1, 6))
        + f"[127.0.0.1]:{jump.port} ecdsa-sha2-nistp256 {jump.host_key.get_base64()}\n"
    )
    (tmp_path / "ssh_config").touch()
    inventory = jump_inventory(jump, server, tmp_path, keys[2], hosts=5)
    jumps = JumpHosts()
    remotes = [connect(inventory, h, ssh_config_path=str(tmp_path / "ssh_config"), jump_hosts=jumps) for h in inventory.hosts]  # type: ignore[attr-defined]
    assert [r.run("echo hi").stdout for r in remotes] == ["hello\n"] * 5
    assert jump.connections == 1  # one login on the jump host for the five hosts
    assert sorted(jump.forwarded) == [(f"127.0.0.{i}", server.port) for i in range(1, 6)]
    assert server.connections == 5
    for remote in remotes:
        remote.close()
    jumps.close()


def test_a_changed_jump_host_key_is_refused_once_and_no_host_is_reached(
    server: FakeSSHServer, jump: FakeSSHServer, tmp_path: Path, keys
) -> None:  # type: ignore[no-untyped-def]
    forged = paramiko.ECDSAKey.generate()
    (tmp_path / "known_hosts").write_text(
        "".join(f"[127.0.0.{i}]:{server.port} ecdsa-sha2-nistp256 {keys[0].get_base64()}\n" for i in range(1, 4))
        + f"[127.0.0.1]:{jump.port} ecdsa-sha2-nistp256 {forged.get_base64()}\n"
    )
    (tmp_path / "ssh_config").touch()
    inventory = jump_inventory(jump, server, tmp_path, keys[2], hosts=3)
    jumps = JumpHosts()
    for host in inventory.hosts:  # type: ignore[attr-defined]
        with pytest.raises(HostKeyError, match=r"host key of jump host 127.0.0.1 CHANGED") as caught:
            connect(inventory, host, ssh_config_path=str(tmp_path / "ssh_config"), jump_hosts=jumps)  # type: ignore[arg-type]
        assert caught.value.host == host.name  # each host fails under its own name
    assert jump.connections == 1  # tried once for the run, not once per host
    assert jump.forwarded == [] and server.connections == 0
    jumps.close()


def test_an_unknown_jump_host_key_is_refused_under_the_strict_policy(
    server: FakeSSHServer, jump: FakeSSHServer, tmp_path: Path, keys
) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "known_hosts").write_text(f"[127.0.0.1]:{server.port} ecdsa-sha2-nistp256 {keys[0].get_base64()}\n")
    (tmp_path / "ssh_config").touch()
    inventory = jump_inventory(jump, server, tmp_path, keys[2], hosts=1)
    with pytest.raises(HostKeyError, match=rf"of \[127.0.0.1\]:{jump.port} is not in .*strict"):
        connect(inventory, inventory.hosts[0], ssh_config_path=str(tmp_path / "ssh_config"), jump_hosts=JumpHosts())  # type: ignore[attr-defined]
    assert server.connections == 0


@pytest.mark.parametrize("stderr", ["Sorry, try again.\n", "Sorry, try again.\nsudo: 1 incorrect password attempt\n"])
def test_a_refused_password_is_named_however_much_of_sudos_answer_came_before_the_exit(stderr: str) -> None:
    from provisioner.remote import _raise_for_sudo

    with pytest.raises(SudoError, match="sudo refused the password"):
        _raise_for_sudo("h1", stderr, had_password=True)
    _raise_for_sudo("h1", "Sorry, try again.\n", had_password=False)  # not our password: not ours to name
