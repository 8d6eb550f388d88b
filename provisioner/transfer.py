"""All-or-nothing uploads: a file on a host is either the old one or the whole new one.

The protocol (``upload_all``) is the same for every transport; a transport supplies the file
operations (``FileOps``) on one host. For a batch of files, in order:

1. create the targets' directories;
2. write each file's bytes to a temporary file *in its target's directory*, created with its
   final mode and owner before the first byte (secrets are 0600 from the start);
3. ``install``: flush the temporary files to disk, then for each file check the bytes the host
   has are the bytes sent (size and sha256, computed on the host) and rename it over its target
   (one rename(2): readers see the old file or the new one), stopping at the first file that
   fails. A transport does all of step 3 in one round trip.

On any error the temporary files not yet renamed are removed, the failed target and those after
it are left as they were (those before it are whole new files, as if uploaded one by one), and
an ``UploadError`` names the host, the path and the cause — "no space left on device" when the
filesystem is full. A ``ConnectionLost`` passes through as is: nothing more can be done on that
host.
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from provisioner.errors import ConnectionLost, ProvisionerError, UploadError

log = logging.getLogger("provisioner.transfer")

TEMP_MARK = ".provisioner-"


@dataclass(frozen=True)
class FileItem:
    """One file to write: its bytes, its path on the host and its mode."""

    data: bytes
    path: str
    mode: int = 0o644


@dataclass(frozen=True)
class Pending:
    """A temporary file written on the host, waiting to be checked and renamed over ``path``."""

    temp: str
    path: str
    size: int
    sha256: str


class Mismatch(Exception):
    """The host holds other bytes than the ones sent."""

    @classmethod
    def short(cls, pending: Pending, size: int) -> Mismatch:
        return cls(f"short write: {size} of {pending.size} bytes reached the host")

    @classmethod
    def differs(cls) -> Mismatch:
        return cls("the file on the host differs from the bytes sent (sha256 mismatch)")


class InstallStopped(Exception):
    """``FileOps.install`` stopped at ``pending[index]``; the ones before it are renamed."""

    def __init__(self, index: int, error: BaseException) -> None:
        super().__init__(str(error))
        self.index = index
        self.error = error


class FileOps(ABC):
    """File operations on one host, as root. Each raises (``ProvisionerError`` or ``OSError``)
    on failure; none retries."""

    host: str

    @abstractmethod
    def make_directory(self, directory: str) -> None:
        """Create ``directory`` and its parents (0755) if missing."""

    @abstractmethod
    def write_temp(self, data: bytes, temp: str, mode: int) -> None:
        """Create ``temp`` owned by root with ``mode`` (before any byte), and write ``data`` to it."""

    @abstractmethod
    def install(self, pending: Sequence[Pending]) -> None:
        """Sync the temporary files, then in order check each one's size and sha256 as the host
        reads it back and rename it over its path. Raises ``InstallStopped`` naming the first
        one that failed (a ``Mismatch``, ``ProvisionerError`` or ``OSError`` inside) — or
        ``ConnectionLost``."""

    @abstractmethod
    def remove(self, temp: str) -> None:
        """Delete ``temp`` if it exists."""

    @abstractmethod
    def free_bytes(self, directory: str) -> int | None:
        """Bytes free for root in ``directory``'s filesystem, None if unknown."""


def temp_path(path: str) -> str:
    """A temporary name next to ``path`` (hidden, recognisable, unique per upload)."""
    directory, name = os.path.split(path)
    return f"{directory or '/'}/.{name}{TEMP_MARK}{uuid.uuid4().hex[:12]}".replace("//", "/")


def upload(ops: FileOps, data: bytes, path: str, *, mode: int) -> None:
    """Write ``data`` to ``path`` on the host all-or-nothing (see the module docstring)."""
    upload_all(ops, [FileItem(data, path, mode)])


def upload_all(ops: FileOps, items: Sequence[FileItem]) -> None:
    """Write ``items`` to the host in order, each all-or-nothing, with the outcome of writing
    them one by one: when file k fails, files before it are in place, k and those after it are
    unchanged (see the module docstring)."""
    temps = [temp_path(item.path) for item in items]
    written = 0  # temporary files created (or being created)
    failed = len(items)  # the first file that failed
    error: BaseException | None = None
    made: set[str] = set()
    try:
        for index, item in enumerate(items):
            failed = index
            directory = os.path.dirname(item.path) or "/"
            if directory not in made:
                ops.make_directory(directory)
                made.add(directory)
            written = index + 1
            ops.write_temp(item.data, temps[index], item.mode)
        failed = len(items)
    except ConnectionLost:
        raise
    except (ProvisionerError, OSError) as caught:
        error = caught
    if failed > 0:  # the files written before a failure are installed, as one by one would
        pending = [Pending(temps[i], items[i].path, len(items[i].data), hashlib.sha256(items[i].data).hexdigest()) for i in range(failed)]
        try:
            ops.install(pending)
        except InstallStopped as stopped:
            if isinstance(stopped.error, ConnectionLost):
                raise stopped.error from None
            failed, error = stopped.index, stopped.error
        except ConnectionLost:
            raise
        except (ProvisionerError, OSError) as caught:
            failed, error = 0, caught
    if error is None:
        return
    leftovers = [temp for temp in temps[failed:written] if _remove(ops, temp) is not None]
    item = items[failed]
    directory = os.path.dirname(item.path) or "/"
    cause = _cause(ops, error, directory, len(item.data))
    raise UploadError(ops.host, item.path, cause, ", ".join(leftovers) or None) from None


def _remove(ops: FileOps, temp: str) -> str | None:
    """Remove the temporary file; its name if that failed too."""
    try:
        ops.remove(temp)
    except (ProvisionerError, OSError) as error:
        log.warning("%s: could not remove %s: %s", ops.host, temp, error)
        return temp
    return None


def _cause(ops: FileOps, error: BaseException, directory: str, needed: int) -> str:
    """What went wrong, in one line; a full filesystem is named as such."""
    text = _describe(error)
    log.debug("%s: upload into %s failed: %s", ops.host, directory, text)
    try:
        free = ops.free_bytes(directory)
    except (ProvisionerError, OSError):
        free = None
    if free is not None and free < needed:
        return f"no space left on device in {directory} ({_size(free)} free, the file needs {_size(needed)})"
    if "no space left on device" in text.lower():
        return f"no space left on device in {directory}"
    return text


def _describe(error: BaseException) -> str:
    if isinstance(error, ProvisionerError):
        return getattr(error, "message", str(error))
    if isinstance(error, OSError):
        parts = [error.strerror or str(error) or type(error).__name__]
        if error.filename:
            parts.append(str(error.filename))
        return ": ".join(parts)
    return str(error)


def _size(count: int) -> str:
    if count < 1024:
        return f"{count} bytes"
    if count < 1 << 20:
        return f"{count / 1024:.1f} KiB"
    return f"{count / (1 << 20):.1f} MiB"
