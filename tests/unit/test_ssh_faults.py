"""The real SSH transport when things go wrong, against the loopback SSH server: every operation
ends within its bound, a dead connection is refused at once with ``ConnectionLost``, and an
upload is all-or-nothing (also on a full filesystem).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from provisioner.errors import ConnectionLost, RemoteCommandError, UploadError
from provisioner.remote import SSHRemote, connect
from provisioner.transfer import TEMP_MARK, FileItem
from tests.unit.conftest import make_inventory
from tests.unit.sshserver import FakeSSHServer

REPO = Path(__file__).resolve().parents[2]
DEAD_PEER = 3  # seconds (the smallest ssh.dead_peer_timeout allowed)


@pytest.fixture
def key_pair(tmp_path: Path) -> tuple[paramiko.PKey, paramiko.PKey, Path]:
    client_key = paramiko.ECDSAKey.generate()
    key_file = tmp_path / "id_ecdsa"
    client_key.write_private_key_file(str(key_file))
    return paramiko.ECDSAKey.generate(), client_key, key_file


@pytest.fixture
def host(key_pair: tuple[paramiko.PKey, paramiko.PKey, Path]) -> Iterator[FakeSSHServer]:
    """A loopback server that really runs commands and serves SFTP."""
    server = FakeSSHServer(key_pair[0], key_pair[1], execute=True)
    server.start()
    yield server
    server.stop()


def open_remote(server: FakeSSHServer, tmp_path: Path, key_file: Path, *, user: str = "root", ssh: str = "") -> SSHRemote:
    (tmp_path / "ssh_config").touch()
    inventory = make_inventory(
        "cluster: {name: t}\n"
        f"ssh: {{user: {user}, port: {server.port}, private_key: {key_file}, known_hosts: {tmp_path}/known_hosts,"
        f" dead_peer_timeout: {DEAD_PEER}{ssh}}}\n"
        "hosts:\n  - {name: h1, address: 127.0.0.1, role: server}\n"
    )
    return connect(inventory, inventory.hosts[0], ssh_config_path=str(tmp_path / "ssh_config"))


def temps(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if TEMP_MARK in p.name]


# --- bounds --------------------------------------------------------------------------------


def test_a_command_that_never_ends_is_stopped_at_its_timeout(host: FakeSSHServer, tmp_path: Path, key_pair) -> None:  # type: ignore[no-untyped-def]
    remote = open_remote(host, tmp_path, key_pair[2])
    started = time.monotonic()
    with pytest.raises(RemoteCommandError, match=r"timed out \(did not finish within 1s\)"):
        remote.run("hang", timeout=1)
    assert time.monotonic() - started < 3
    assert remote.run("echo still here").stdout == "still here\n"  # a timeout leaves the connection usable


def test_a_command_given_no_timeout_gets_the_configured_default(host: FakeSSHServer, tmp_path: Path, key_pair) -> None:  # type: ignore[no-untyped-def]
    remote = open_remote(host, tmp_path, key_pair[2], ssh=", command_timeout: 1")
    started = time.monotonic()
    with pytest.raises(RemoteCommandError, match="did not finish within 1s"):
        remote.sudo("hang")
    assert time.monotonic() - started < 3


def test_an_unanswered_exec_request_loses_the_connection_within_the_dead_peer_time(host: FakeSSHServer, tmp_path: Path, key_pair) -> None:  # type: ignore[no-untyped-def]
    remote = open_remote(host, tmp_path, key_pair[2])
    host.hang_exec = True
    started = time.monotonic()
    with pytest.raises(ConnectionLost, match=f"did not answer within {DEAD_PEER}s"):
        remote.run("true", timeout=600)
    assert time.monotonic() - started < DEAD_PEER + 2


def test_an_unanswered_channel_open_loses_the_connection_within_the_dead_peer_time(host: FakeSSHServer, tmp_path: Path, key_pair) -> None:  # type: ignore[no-untyped-def]
    remote = open_remote(host, tmp_path, key_pair[2])
    host.hang_open = True
    started = time.monotonic()
    with pytest.raises(ConnectionLost, match=f"did not answer within {DEAD_PEER}s"):
        remote.sudo("true", timeout=600)
    assert time.monotonic() - started < DEAD_PEER + 2


def test_once_sshd_is_gone_every_operation_fails_at_once_with_connection_lost(host: FakeSSHServer, tmp_path: Path, key_pair) -> None:  # type: ignore[no-untyped-def]
    remote = open_remote(host, tmp_path, key_pair[2])
    assert remote.run("echo up").ok
    host.drop()
    time.sleep(0.3)
    # a dropped socket reads as an end of stream or, depending on timing, as a reset
    with pytest.raises(ConnectionLost, match="ended \\(closed by the host|connection reset by peer") as caught:
        remote.sudo("journalctl -u k3s-agent -n 20")
    assert str(caught.value).startswith("h1: SSH connection lost: ")
    assert "root@127.0.0.1:" in str(caught.value)
    started = time.monotonic()
    for operation in (lambda: remote.run("true"), lambda: remote.put("x", str(tmp_path / "f")), lambda: remote.get("/etc/hostname")):
        with pytest.raises(ConnectionLost):
            operation()
    assert time.monotonic() - started < 0.5
    assert host.connections == 1  # never reconnected behind the run's back
    assert not (tmp_path / "f").exists()


def test_a_command_cut_off_mid_run_raises_connection_lost_not_a_timeout(host: FakeSSHServer, tmp_path: Path, key_pair) -> None:  # type: ignore[no-untyped-def]
    remote = open_remote(host, tmp_path, key_pair[2])
    threading.Timer(0.5, host.drop).start()
    started = time.monotonic()
    with pytest.raises(ConnectionLost):
        remote.sudo("hang", timeout=600)
    assert time.monotonic() - started < 2


def _network_cut_probe() -> None:
    """Run inside `unshare -n`: connect over lo, start a silent command, take lo down; print
    what the command raised and when."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    work = Path(os.environ["PROBE_DIR"])
    client_key = paramiko.ECDSAKey.generate()
    client_key.write_private_key_file(str(work / "id"))
    server = FakeSSHServer(paramiko.ECDSAKey.generate(), client_key, execute=True)
    server.start()
    remote = open_remote(server, work, work / "id")
    threading.Timer(1.0, lambda: subprocess.run(["ip", "link", "set", "lo", "down"], check=True)).start()
    started = time.monotonic()
    try:
        remote.sudo("hang", timeout=600)
        outcome = {"error": None}
    except Exception as error:
        outcome = {"error": type(error).__name__, "message": str(error)}
    outcome["seconds"] = time.monotonic() - started - 1.0
    try:
        remote.run("true")
    except Exception as error:
        outcome["next"] = type(error).__name__
    print(json.dumps(outcome))
    os._exit(0)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare for a network namespace")
def test_a_network_cut_mid_command_is_detected_within_the_dead_peer_time(tmp_path: Path) -> None:
    result = subprocess.run(
        ["unshare", "--net", sys.executable, "-c", "from tests.unit.test_ssh_faults import _network_cut_probe; _network_cut_probe()"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, PROBE_DIR=str(tmp_path)),
    )
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["error"] == "ConnectionLost", outcome
    assert outcome["seconds"] < DEAD_PEER + 3, outcome
    assert outcome["next"] == "ConnectionLost"


# --- uploads -------------------------------------------------------------------------------


@pytest.mark.parametrize("user", ["root", "admin"])
def test_an_upload_replaces_the_file_whole_with_its_mode_and_leaves_nothing_behind(
    host: FakeSSHServer, tmp_path: Path, key_pair, user: str
) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "etc" / "config.yaml"
    target.parent.mkdir()
    target.write_text("old\n")
    remote = open_remote(host, tmp_path, key_pair[2], user=user)
    remote.put("token: secret\n" * 1000, str(target), mode=0o600)
    assert target.read_text() == "token: secret\n" * 1000
    assert target.stat().st_mode & 0o777 == 0o600
    assert temps(target.parent) == []
    assert remote.upload_count == 1 and remote.command_count == 0  # the protocol's own commands are not the plan's


def test_a_batch_of_uploads_is_checked_and_renamed_in_one_command(host: FakeSSHServer, tmp_path: Path, key_pair) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "etc" / "config.yaml"
    binary = tmp_path / "bin" / "k3s"
    remote = open_remote(host, tmp_path, key_pair[2])
    before = len(host.commands)
    remote.put_all([FileItem(b"token: t\n", str(config), 0o600), FileItem(b"\x7fELF", str(binary), 0o755)])
    assert config.read_bytes() == b"token: t\n" and config.stat().st_mode & 0o777 == 0o600
    assert binary.read_bytes() == b"\x7fELF" and binary.stat().st_mode & 0o777 == 0o755
    assert len(host.commands) - before == 1
    assert temps(config.parent) == [] and temps(binary.parent) == []
    assert remote.upload_count == 2


def test_a_batch_stops_at_the_file_that_cannot_be_renamed_and_keeps_the_ones_before(host: FakeSSHServer, tmp_path: Path, key_pair) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "etc" / "config.yaml"
    blocked = tmp_path / "bin" / "k3s"
    blocked.mkdir(parents=True)  # a directory where the file should go: mv -T refuses
    after = tmp_path / "bin" / "after"
    remote = open_remote(host, tmp_path, key_pair[2])
    with pytest.raises(UploadError) as caught:
        remote.put_all([FileItem(b"new\n", str(config), 0o600), FileItem(b"x", str(blocked), 0o755), FileItem(b"y", str(after), 0o644)])
    assert caught.value.path == str(blocked)
    assert config.read_bytes() == b"new\n"
    assert blocked.is_dir() and not after.exists()
    assert temps(config.parent) == [] and temps(blocked.parent) == []
    assert remote.upload_count == 1


def test_an_upload_creates_missing_directories(host: FakeSSHServer, tmp_path: Path, key_pair) -> None:  # type: ignore[no-untyped-def]
    remote = open_remote(host, tmp_path, key_pair[2])
    remote.put(b"\x7fELF", str(tmp_path / "usr/local/bin/k3s"), mode=0o755)
    assert (tmp_path / "usr/local/bin/k3s").read_bytes() == b"\x7fELF"
    assert (tmp_path / "usr/local/bin/k3s").stat().st_mode & 0o777 == 0o755


def test_an_upload_over_an_sftp_server_that_stops_answering_ends_within_the_dead_peer_time(
    host: FakeSSHServer, tmp_path: Path, key_pair
) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "config.yaml"
    target.write_text("old\n")
    remote = open_remote(host, tmp_path, key_pair[2])
    host.hang_sftp = True
    started = time.monotonic()
    with pytest.raises(UploadError, match=f"the SFTP server did not answer within {DEAD_PEER}s"):
        remote.put("new\n", str(target))
    assert time.monotonic() - started < 2 * DEAD_PEER + 2
    assert target.read_text() == "old\n"
    assert temps(tmp_path) == []


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs holding an old config, filled up to the last block."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "k3s"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], check=True)
    try:
        (mount / "config.yaml").write_text("node-ip: 10.0.0.1\n")
        (mount / "config.yaml").chmod(0o600)
        subprocess.run(["dd", "if=/dev/zero", f"of={mount}/filler", "bs=4k"], capture_output=True)
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.parametrize("user", ["root", "admin"])
def test_an_upload_to_a_full_filesystem_keeps_the_old_file_and_names_the_full_disk(
    host: FakeSSHServer, tmp_path: Path, key_pair, full_disk: Path, user: str
) -> None:  # type: ignore[no-untyped-def]
    remote = open_remote(host, tmp_path, key_pair[2], user=user)
    with pytest.raises(UploadError) as caught:
        remote.put("node-ip: 10.0.0.2\n" * 500, str(full_disk / "config.yaml"), mode=0o600)
    message = str(caught.value)
    assert message.startswith(f"h1: cannot write {full_disk}/config.yaml: no space left on device in {full_disk}")
    assert "\n" not in message
    assert (full_disk / "config.yaml").read_text() == "node-ip: 10.0.0.1\n"
    assert temps(full_disk) == []
