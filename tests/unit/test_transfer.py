"""The all-or-nothing upload protocol against in-memory file operations that fail at each step:
the old file survives whole, no temporary file remains, and the error names host, path and cause."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pytest

from provisioner.errors import ConnectionLost, RemoteCommandError, UploadError
from provisioner.transfer import TEMP_MARK, FileItem, FileOps, InstallStopped, Mismatch, Pending, upload, upload_all

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

    def install(self, pending: Sequence[Pending]) -> None:
        self._step("install")
        for index, p in enumerate(pending):
            try:
                if self.fail == "fsync":
                    raise OSError(5, "Input/output error")
                data = self.files[p.temp]
                if len(data) != p.size:
                    raise Mismatch.short(p, len(data))
                if hashlib.sha256(data).hexdigest() != p.sha256:
                    raise Mismatch.differs()
                self.synced.add(p.temp)
                if self.fail == "rename" or self.fail == f"rename {p.path}":
                    self.steps.append("rename")
                    raise RemoteCommandError(self.host, f"mv -fT {p.temp} {p.path}", 1, "mv: cannot move: Read-only file system")
                self.steps.append("rename")
                self.files[p.path] = self.files.pop(p.temp)
                self.modes[p.path] = self.modes.pop(p.temp)
            except (OSError, Mismatch, RemoteCommandError) as error:
                raise InstallStopped(index, error) from None

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
    assert files.steps == ["mkdir", "open", "install", "rename"]
    assert files.synced
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
        def install(self, pending: Sequence[Pending]) -> None:
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


OTHER = "/usr/local/bin/k3s"


def test_a_batch_writes_every_file_and_checks_and_renames_them_in_one_install() -> None:
    files = MemoryFiles()
    upload_all(files, [FileItem(NEW, PATH, 0o600), FileItem(b"binary", OTHER, 0o755)])
    assert files.files[PATH] == NEW
    assert files.files[OTHER] == b"binary"
    assert files.modes[OTHER] == 0o755
    assert files.steps == ["mkdir", "open", "mkdir", "open", "install", "rename", "rename"]
    assert files.temps() == []


@pytest.mark.parametrize("fail", ["write", "rename /usr/local/bin/k3s"])
def test_when_the_second_file_of_a_batch_fails_the_first_is_in_place_and_the_second_unchanged(fail: str) -> None:
    files = MemoryFiles(fail=fail)
    files.files[OTHER] = b"old binary"
    first = PATH if fail != "write" else "/etc/first.yaml"
    items = [FileItem(NEW, first, 0o600), FileItem(b"binary", OTHER, 0o755)]
    if fail == "write":  # the write fails on the second file only
        calls = iter([False, True])
        original = files.write_temp

        def write_temp(data: bytes, temp: str, mode: int) -> None:
            files.fail = "write" if next(calls) else ""
            original(data, temp, mode)

        files.write_temp = write_temp  # type: ignore[method-assign]
    with pytest.raises(UploadError) as caught:
        upload_all(files, items)
    assert caught.value.path == OTHER
    assert files.files[first] == NEW
    assert files.files[OTHER] == b"old binary"
    assert files.temps() == []
