"""The all-or-nothing upload protocol against in-memory file operations that fail at each step:
the old file survives whole, no temporary file remains, and the error names host, path and cause."""

from __future__ import annotations

import hashlib

import pytest

from provisioner.errors import ConnectionLost, RemoteCommandError, UploadError
from provisioner.transfer import TEMP_MARK, FileOps, upload

PATH = "/etc/rancher/k3s/config.yaml"
OLD = b"node-name: old\n"
NEW = b"node-name: new\ntoken: secret\n" * 10


class MemoryFiles(FileOps):
    """A host's files in a dict; ``fail`` names the step that goes wrong."""

    def __init__(self, fail: str = "", free: int | None = 1 << 30) -> None:
        self.host = "agent1"
        self.files: dict[str, bytes] = {PATH: OLD}
        self.modes: dict[str, int] = {PATH: 0o600}
        self.modes_at_first_byte: dict[str, int] = {}
        self.synced: set[str] = set()
        self.fail = fail
        self.free = free
        self.steps: list[str] = []

    def _step(self, name: str) -> None:
        self.steps.append(name)
        if self.fail == name:
            raise OSError(5, "Input/output error")

    def make_directory(self, directory: str) -> None:
        self._step("mkdir")

    def write_temp(self, data: bytes, temp: str, mode: int) -> None:
        self._step("open")
        self.files[temp] = b""
        self.modes[temp] = mode
        self.modes_at_first_byte[temp] = mode
        if self.fail == "write":
            self.files[temp] = data[: len(data) // 2]
            raise OSError(28, "No space left on device")
        if self.fail == "short write":  # replies lost: the write "succeeds" but the file is short
            self.files[temp] = data[: len(data) // 3]
            return
        if self.fail == "checksum":  # same length, other bytes
            self.files[temp] = bytes(len(data))
            return
        self.files[temp] = data

    def digest(self, temp: str) -> tuple[int, str]:
        self._step("digest")
        data = self.files[temp]
        return len(data), hashlib.sha256(data).hexdigest()

    def fsync(self, temp: str) -> None:
        self._step("fsync")
        self.synced.add(temp)

    def rename(self, temp: str, path: str) -> None:
        if self.fail == "rename":
            self.steps.append("rename")
            raise RemoteCommandError(self.host, f"mv -fT {temp} {path}", 1, "mv: cannot move: Read-only file system")
        self._step("rename")
        self.files[path] = self.files.pop(temp)
        self.modes[path] = self.modes.pop(temp)

    def remove(self, temp: str) -> None:
        self.steps.append("remove")
        self.files.pop(temp, None)
        self.modes.pop(temp, None)

    def free_bytes(self, directory: str) -> int | None:
        return self.free

    def temps(self) -> list[str]:
        return [p for p in self.files if TEMP_MARK in p]


def test_a_good_upload_writes_checks_syncs_then_renames_over_the_old_file() -> None:
    files = MemoryFiles()
    upload(files, NEW, PATH, mode=0o600)
    assert files.files[PATH] == NEW
    assert files.modes[PATH] == 0o600
    assert files.steps == ["mkdir", "open", "digest", "fsync", "rename"]
    assert files.temps() == []


def test_the_temporary_file_is_in_the_target_directory_and_has_its_mode_from_the_first_byte() -> None:
    files = MemoryFiles()
    upload(files, NEW, PATH, mode=0o600)
    (temp,) = files.modes_at_first_byte
    assert temp.startswith("/etc/rancher/k3s/.config.yaml" + TEMP_MARK)
    assert files.modes_at_first_byte[temp] == 0o600


@pytest.mark.parametrize(
    ("fail", "cause"),
    [
        ("mkdir", "Input/output error"),
        ("open", "Input/output error"),
        ("write", "no space left on device in /etc/rancher/k3s"),
        ("short write", f"short write: {len(NEW) // 3} of {len(NEW)} bytes reached the host"),
        ("checksum", "differs from the bytes sent (sha256 mismatch)"),
        ("fsync", "Input/output error"),
        ("rename", "Read-only file system"),
    ],
)
def test_a_failure_at_any_step_keeps_the_old_file_removes_the_temporary_one_and_names_the_cause(fail: str, cause: str) -> None:
    files = MemoryFiles(fail=fail)
    with pytest.raises(UploadError) as caught:
        upload(files, NEW, PATH, mode=0o600)
    assert files.files[PATH] == OLD
    assert files.modes[PATH] == 0o600
    assert files.temps() == []
    assert caught.value.host == "agent1"
    assert caught.value.path == PATH
    assert cause in str(caught.value)
    assert f"{PATH} is unchanged" in str(caught.value)
    assert "rename" not in files.steps or fail == "rename"
    assert "\n" not in str(caught.value)


def test_a_short_write_on_a_full_filesystem_is_named_as_a_full_disk() -> None:
    files = MemoryFiles(fail="short write", free=100)
    with pytest.raises(UploadError, match=r"no space left on device in /etc/rancher/k3s \(100 bytes free, the file needs 290 bytes\); "):
        upload(files, NEW, PATH, mode=0o600)
    assert files.files[PATH] == OLD


def test_a_lost_connection_is_not_hidden_behind_an_upload_error() -> None:
    class Cut(MemoryFiles):
        def fsync(self, temp: str) -> None:
            raise ConnectionLost(self.host, "no answer for 20s")

    files = Cut()
    with pytest.raises(ConnectionLost):
        upload(files, NEW, PATH, mode=0o600)
    assert files.files[PATH] == OLD


def test_a_temporary_file_that_cannot_be_removed_is_named() -> None:
    class Stuck(MemoryFiles):
        def remove(self, temp: str) -> None:
            raise OSError(30, "Read-only file system")

    files = Stuck(fail="fsync")
    with pytest.raises(UploadError, match=r"could not remove the temporary /etc/rancher/k3s/\.config\.yaml\.provisioner-"):
        upload(files, NEW, PATH, mode=0o600)
    assert files.files[PATH] == OLD
