"""All-or-nothing uploads: a file on a host is either the old one or the whole new one.

The protocol (``upload``) is the same for every transport; a transport supplies the file
operations (``FileOps``) on one host:

1. create the target's directory;
2. write the bytes to a temporary file *in the same directory*, created with its final mode and
   owner before the first byte (secrets are 0600 from the start);
3. check the bytes the host has are the bytes sent: size and sha256, computed on the host;
4. fsync the temporary file;
5. rename it over the target (one rename(2): readers see the old file or the new one).

On any error the temporary file is removed, the target is left as it was, and an ``UploadError``
names the host, the path and the cause — "no space left on device" when the filesystem is full.
A ``ConnectionLost`` passes through as is: nothing more can be done on that host.
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from abc import ABC, abstractmethod

from provisioner.errors import ConnectionLost, ProvisionerError, UploadError

log = logging.getLogger("provisioner.transfer")

TEMP_MARK = ".provisioner-"


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
    def digest(self, temp: str) -> tuple[int, str]:
        """Size and sha256 (hex) of ``temp`` as the host reads it back."""

    @abstractmethod
    def fsync(self, temp: str) -> None:
        """Flush ``temp`` to disk."""

    @abstractmethod
    def rename(self, temp: str, path: str) -> None:
        """Replace ``path`` with ``temp`` in one rename."""

    @abstractmethod
    def remove(self, temp: str) -> None:
        """Delete ``temp`` if it exists."""

    @abstractmethod
    def free_bytes(self, directory: str) -> int | None:
        """Bytes free for root in ``directory``'s filesystem, None if unknown."""


class _Mismatch(Exception):
    """The host holds other bytes than the ones sent."""


def temp_path(path: str) -> str:
    """A temporary name next to ``path`` (hidden, recognisable, unique per upload)."""
    directory, name = os.path.split(path)
    return f"{directory or '/'}/.{name}{TEMP_MARK}{uuid.uuid4().hex[:12]}".replace("//", "/")


def upload(ops: FileOps, data: bytes, path: str, *, mode: int) -> None:
    """Write ``data`` to ``path`` on the host all-or-nothing (see the module docstring)."""
    directory = os.path.dirname(path) or "/"
    temp = temp_path(path)
    try:
        ops.make_directory(directory)
        ops.write_temp(data, temp, mode)
        size, sha256 = ops.digest(temp)
        if size != len(data):
            raise _Mismatch(f"short write: {size} of {len(data)} bytes reached the host")
        if sha256 != hashlib.sha256(data).hexdigest():
            raise _Mismatch("the file on the host differs from the bytes sent (sha256 mismatch)")
        ops.fsync(temp)
        ops.rename(temp, path)
    except ConnectionLost:
        raise
    except (ProvisionerError, OSError, _Mismatch) as error:
        leftover = _remove(ops, temp)
        cause = _cause(ops, error, directory, len(data))
        raise UploadError(ops.host, path, cause, leftover) from None


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
