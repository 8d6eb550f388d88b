"""One run at a time: the local lock (flock on this machine), the cluster lock's shell script run
by a real ``sh`` with a real ``flock``, and ``ClusterLock`` over the fake remote."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from provisioner.errors import ProvisionerError
from provisioner.lock import (
    HELD_EXIT,
    HELD_MARK,
    LOCKED_MARK,
    ClusterLock,
    Holder,
    LocalLock,
    LockHeld,
    local_lock_path,
    remote_lock_script,
)
from provisioner.testing import FakeRemote

ME = Holder("alice", "laptop", 4242, "2026-12-02T10:00:00+0000", "provisioner up")
OTHER = Holder("bob", "desk", 777, "2026-12-02T09:00:00+0000", "provisioner remove")


def test_local_lock_refuses_a_second_holder_and_names_the_first(tmp_path: Path) -> None:
    path = local_lock_path(tmp_path, tmp_path / "homelab.yaml", "homelab")
    first = LocalLock(path, OTHER)
    first.acquire()
    try:
        with pytest.raises(LockHeld) as raised:
            LocalLock(path, ME).acquire()
        message = str(raised.value)
        assert "bob@desk, pid 777, since 2026-12-02T09:00:00+0000" in message
        assert "--wait-lock" in message
    finally:
        first.release()
    second = LocalLock(path, ME)
    second.acquire()  # free again once released
    second.release()
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_local_lock_waits_for_the_holder_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "locks" / "c.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import fcntl, os, time
            os.makedirs({str(path.parent)!r}, exist_ok=True)
            fd = os.open({str(path)!r}, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            print("locked", flush=True)
            time.sleep(1.0)
        """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    lock = LocalLock(path, ME)
    with pytest.raises(LockHeld):
        lock.acquire(wait=0)
    started = time.monotonic()
    lock.acquire(wait=20)  # the holder exits after a second
    assert time.monotonic() - started < 15
    lock.release()
    holder.wait(timeout=10)


def test_local_lock_of_a_killed_run_is_not_stale(tmp_path: Path) -> None:
    path = tmp_path / "locks" / "c.lock"
    code = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(Path.cwd())!r})
        from pathlib import Path
        from provisioner.lock import Holder, LocalLock
        LocalLock(Path({str(path)!r}), Holder.me("provisioner up")).acquire()
        print("locked", flush=True)
        import time; time.sleep(60)
    """)
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    with pytest.raises(LockHeld) as raised:
        LocalLock(path, ME).acquire()
    assert f"pid {holder.pid}" in str(raised.value)
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    lock = LocalLock(path, ME)
    lock.acquire()  # the kernel dropped the dead process's flock
    lock.release()


def test_local_lock_path_differs_per_inventory_file(tmp_path: Path) -> None:
    a = local_lock_path(tmp_path, tmp_path / "a.yaml", "homelab")
    b = local_lock_path(tmp_path, tmp_path / "b.yaml", "homelab")
    assert a != b and a.parent == b.parent == tmp_path / "locks"


def _start_script(directory: Path, holder: Holder, wait: float = 0) -> subprocess.Popen[str]:
    script = remote_lock_script(holder, wait=wait, directory=str(directory))
    return subprocess.Popen(["sh", "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)


def test_cluster_lock_script_holds_while_stdin_is_open(tmp_path: Path) -> None:
    directory = tmp_path / "var-lib-provisioner"
    first = _start_script(directory, OTHER)
    assert first.stdout is not None and first.stdout.readline().strip() == LOCKED_MARK
    assert os.stat(directory).st_mode & 0o777 == 0o700

    second = _start_script(directory, ME)
    out, _ = second.communicate(timeout=10)
    assert second.returncode == HELD_EXIT
    recorded = Holder.parse(out.split(HELD_MARK, 1)[1].strip())
    assert recorded == OTHER

    first.stdin.close()  # type: ignore[union-attr]  # the run's SSH session ends
    first.wait(timeout=10)
    third = _start_script(directory, ME)
    assert third.stdout is not None and third.stdout.readline().strip() == LOCKED_MARK
    assert json.loads((directory / "run.holder").read_text()) == json.loads(ME.to_json())
    third.kill()
    third.wait(timeout=10)


def test_cluster_lock_script_is_released_when_its_holder_is_killed(tmp_path: Path) -> None:
    directory = tmp_path / "lockdir"
    first = _start_script(directory, OTHER)
    assert first.stdout is not None and first.stdout.readline().strip() == LOCKED_MARK
    os.killpg(first.pid, signal.SIGKILL)  # the shell and its `cat`, as when sshd ends the session
    first.wait(timeout=10)
    second = _start_script(directory, ME)
    assert second.stdout is not None and second.stdout.readline().strip() == LOCKED_MARK
    second.stdin.close()  # type: ignore[union-attr]
    second.wait(timeout=10)


def test_cluster_lock_script_waits_when_asked(tmp_path: Path) -> None:
    directory = tmp_path / "lockdir"
    first = _start_script(directory, OTHER)
    assert first.stdout is not None and first.stdout.readline().strip() == LOCKED_MARK
    waiting = _start_script(directory, ME, wait=30)
    time.sleep(0.5)
    assert waiting.poll() is None  # still waiting for the lock
    first.stdin.close()  # type: ignore[union-attr]
    first.wait(timeout=10)
    assert waiting.stdout is not None and waiting.stdout.readline().strip() == LOCKED_MARK
    waiting.stdin.close()  # type: ignore[union-attr]
    waiting.wait(timeout=10)


def test_cluster_lock_names_the_holder_from_the_server() -> None:
    server = FakeRemote("server1", strict=True)
    server.on(r"flock -n 9", f"{HELD_MARK} {OTHER.to_json()}\n", exit_code=HELD_EXIT)
    with pytest.raises(LockHeld) as raised:
        ClusterLock(server, ME).acquire()
    assert "another run (bob@desk, pid 777" in str(raised.value)
    assert "server1 (/var/lib/provisioner/run.lock)" in str(raised.value)
    assert server.released == server.held  # the refused command was ended


def test_cluster_lock_is_held_until_released() -> None:
    server = FakeRemote("server1", strict=True)
    server.on(r"flock -w 30 9", f"{LOCKED_MARK}\n")
    lock = ClusterLock(server, ME)
    lock.acquire(wait=30)
    assert server.held and not server.released
    lock.release()
    assert server.released == server.held


def test_cluster_lock_reports_an_unexpected_failure() -> None:
    server = FakeRemote("server1", strict=True)
    server.on(r"flock", "", exit_code=1, stderr="mkdir: cannot create directory: Read-only file system")
    with pytest.raises(ProvisionerError, match="cannot take the cluster lock.*Read-only file system"):
        ClusterLock(server, ME).acquire()


def test_holder_line_masks_control_characters() -> None:
    evil = Holder("eve\x1b[2J", "box\nnext", 1, "now", "up")
    assert "\x1b" not in evil.line() and "\n" not in evil.line()
