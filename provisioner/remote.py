"""One small interface to a host: ``run``, ``sudo``, ``put``, ``get``.

``Remote`` holds what every transport shares (logging with secrets masked, exit-code checks,
typed errors, a history of commands); ``SSHRemote`` is the Fabric/paramiko implementation, and
``provisioner.testing.FakeRemote`` the in-memory one for unit tests.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import itertools
import logging
import os
import select
import shlex
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

from provisioner import transfer
from provisioner.errors import (
    ConnectError,
    ConnectionLost,
    HostKeyError,
    ProvisionerError,
    RemoteCommandError,
    SudoError,
    TransportError,
    UploadError,
)
from provisioner.secrets import REDACTOR, Secret

if TYPE_CHECKING:
    import paramiko
    from fabric import Connection

    from provisioner.inventory import Host, Inventory

log = logging.getLogger("provisioner.remote")

SUDO_PROMPT = "[provisioner-sudo-password]"
DEFAULT_KNOWN_HOSTS = Path("~/.ssh/known_hosts")
#: The limit of a command whose caller gives none (a fact, a file read, a systemctl call);
#: installs and waits pass their own, longer limits.
DEFAULT_COMMAND_TIMEOUT = 60.0


@dataclass
class CommandResult:
    """What a command did on a host."""

    command: str
    exit_code: int
    stdout: str
    stderr: str
    duration: float

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass
class HistoryEntry:
    """One operation on a host, as recorded for logs, benchmarks and tests."""

    kind: str  # "run" | "sudo" | "put" | "get"
    target: str  # command (redacted) or remote path
    exit_code: int | None = None
    duration: float = 0.0


class HeldCommand:
    """A command left running on a host (e.g. one holding a lock) until ``release``.

    ``ready`` says whether it printed its ready marker; ``output`` is what it printed until then
    (or until it ended).
    """

    def __init__(self, ready: bool, output: str, release: Callable[[], None]) -> None:
        self.ready = ready
        self.output = output
        self._release = release

    def release(self) -> None:
        """End the command (its stdin closes); safe to call twice."""
        release, self._release = self._release, lambda: None
        release()


@dataclass
class Remote(ABC):
    """A host we can run commands on. Subclasses provide the four primitives below."""

    name: str
    address: str
    user: str = "root"
    history: list[HistoryEntry] = field(default_factory=list)
    #: Seconds a command may take when its caller gives no ``timeout``.
    command_timeout: float = DEFAULT_COMMAND_TIMEOUT

    # --- primitives ---------------------------------------------------------------------
    @abstractmethod
    def _execute(self, command: str, *, as_root: bool, timeout: float | None) -> tuple[int | None, str, str]:
        """Run ``command`` with ``sh``, all of it within ``timeout`` seconds (the default when
        None); return (exit code or None on timeout, stdout, stderr)."""

    @abstractmethod
    def _upload(self, data: bytes, path: str, *, mode: int) -> None:
        """Write ``data`` to ``path`` owned by root with ``mode``, atomically."""

    def _upload_all(self, items: Sequence[transfer.FileItem]) -> None:
        """Write ``items`` in order, each as ``_upload`` does; a transport may batch them."""
        for item in items:
            self._upload(item.data, item.path, mode=item.mode)

    @abstractmethod
    def _download(self, path: str) -> str:
        """The content of ``path`` read as root."""

    def close(self) -> None:
        """Release the connection."""

    def hold(self, command: str, *, ready: str, timeout: float) -> HeldCommand:
        """Start ``command`` as root and leave it running with its stdin open until released.

        Returns once it prints a line starting with ``ready`` (``HeldCommand.ready``), or ends,
        or ``timeout`` seconds pass (then it is ended). The command ends at the latest when this
        connection does.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot hold a command")

    # --- the interface ------------------------------------------------------------------
    def run(
        self,
        command: str,
        *,
        check: bool = True,
        timeout: float | None = None,
        secret_output: bool = False,
    ) -> CommandResult:
        """Run ``command`` as the SSH user."""
        return self._run(command, as_root=False, check=check, timeout=timeout, secret_output=secret_output)

    def sudo(
        self,
        command: str,
        *,
        check: bool = True,
        timeout: float | None = None,
        secret_output: bool = False,
        hint: str = "",
    ) -> CommandResult:
        """Run ``command`` as root (directly when the SSH user is root, else through sudo)."""
        return self._run(command, as_root=True, check=check, timeout=timeout, secret_output=secret_output, hint=hint)

    def put(self, data: bytes | str, path: str, *, mode: int = 0o644) -> None:
        """Write a file on the host, owned by root, with ``mode``; atomic (temp file + rename).

        Secrets travel only this way: over SFTP into a root-owned file, never in a command line.
        """
        self.put_all([transfer.FileItem(data.encode() if isinstance(data, str) else data, path, mode)])

    def put_all(self, items: Sequence[transfer.FileItem]) -> None:
        """Write several files as ``put`` does, in order, in as few round trips as the transport
        allows; the first that fails raises (those before it are written, the rest untouched)."""
        started = time.monotonic()
        written = list(items)
        try:
            self._upload_all(items)
        except UploadError as error:
            failed = error.path
            written = list(itertools.takewhile(lambda item: item.path != failed, items))
            raise
        except BaseException:
            written = []  # unknown (a lost connection): none is counted
            raise
        finally:
            elapsed = time.monotonic() - started
            for item in written:
                self.history.append(HistoryEntry("put", item.path, 0, elapsed / len(items)))
                log.debug("%s: put %s (%d bytes, mode %04o)", self.name, item.path, len(item.data), item.mode)
            log.debug("%s: %d of %d file(s) written in %.2fs", self.name, len(written), len(items), elapsed)

    def get(self, path: str) -> str:
        """Read a file as root. The content is never logged (it may hold credentials)."""
        started = time.monotonic()
        content = self._download(path)
        elapsed = time.monotonic() - started
        self.history.append(HistoryEntry("get", path, 0, elapsed))
        log.debug("%s: get %s (%d bytes) in %.2fs", self.name, path, len(content), elapsed)
        return content

    @property
    def command_count(self) -> int:
        """Number of commands run on the host so far (each one an SSH exec channel)."""
        return sum(1 for entry in self.history if entry.kind in ("run", "sudo"))

    @property
    def upload_count(self) -> int:
        """Number of files written to the host so far (over SFTP)."""
        return sum(1 for entry in self.history if entry.kind == "put")

    def _run(
        self,
        command: str,
        *,
        as_root: bool,
        check: bool,
        timeout: float | None,
        secret_output: bool,
        hint: str = "",
    ) -> CommandResult:
        shown = REDACTOR.redact(command)
        limit = self.command_timeout if timeout is None else timeout
        started = time.monotonic()
        code, out, err = self._execute(command, as_root=as_root, timeout=limit)
        elapsed = time.monotonic() - started
        kind = "sudo" if as_root else "run"
        self.history.append(HistoryEntry(kind, shown, code, elapsed))
        log.debug("%s: %s `%s` -> %s in %.2fs", self.name, kind, shown, "timeout" if code is None else code, elapsed)
        if secret_output:
            log.debug("%s: output hidden (%d bytes; it holds a secret)", self.name, len(out))
        else:
            if out.strip():
                log.debug("%s: stdout: %s", self.name, _tail(out, 4000))
        if err.strip():
            log.debug("%s: stderr: %s", self.name, _tail(err, 4000))
        if code is None:
            waited = f"did not finish within {limit:.0f}s"
            raise RemoteCommandError(self.name, shown, None, REDACTOR.redact(_tail(err)), f"{waited}; {hint}" if hint else waited)
        result = CommandResult(shown, code, out, err, elapsed)
        if check and code != 0:
            raise RemoteCommandError(self.name, shown, code, REDACTOR.redact(_tail(err or out)), hint)
        return result


def _tail(text: str, limit: int = 600) -> str:
    text = text.strip()
    return text if len(text) <= limit else "…" + text[-limit:]


# --- the SSH implementation ---------------------------------------------------------------

DEFAULT_DEAD_PEER_TIMEOUT = 20.0
#: After a command's exit status, how long to wait for the end of its output (a background
#: child may hold stdout open forever).
EOF_GRACE = 2.0


@dataclass(frozen=True)
class Bounds:
    """How long the SSH transport waits on a host before giving up.

    ``dead_peer``: a connection that answers nothing for this long is lost — data unacknowledged
    by the host's TCP (``TCP_USER_TIMEOUT``), or an SSH request unanswered (opening a channel,
    starting a command or SFTP, each SFTP reply). ``command``: the limit of a command whose
    caller gives none; the whole command (channel, start, output) ends within it.
    """

    dead_peer: float = DEFAULT_DEAD_PEER_TIMEOUT
    command: float = DEFAULT_COMMAND_TIMEOUT

    @property
    def keepalive(self) -> float:
        """Seconds between keepalive packets: several per ``dead_peer``, so a cut shows up as
        unacknowledged data even while a command prints nothing."""
        return max(1.0, self.dead_peer / 4)


class SSHRemote(Remote):
    """A host reached with Fabric (paramiko underneath).

    Every operation is bounded (see ``Bounds``). Once the connection is known dead, every
    operation raises ``ConnectionLost`` at once: nothing is tried over a dead connection.
    """

    def __init__(
        self,
        name: str,
        address: str,
        connection: Connection,
        *,
        sudo_password: Secret | None = None,
        bounds: Bounds = Bounds(),
    ) -> None:
        super().__init__(name=name, address=address, user=connection.user, command_timeout=bounds.command)
        self._conn = connection
        self._sudo_password = sudo_password
        self.bounds = bounds
        self._sftp_lock = threading.Lock()
        self._sftp_client: paramiko.SFTPClient | None = None
        self._lost: str | None = None
        self._lost_lock = threading.Lock()

    @property
    def is_root(self) -> bool:
        return self.user == "root"

    @property
    def target(self) -> str:
        return f"{self._conn.user}@{self._conn.host}:{self._conn.port}"

    # --- liveness ---------------------------------------------------------------------------
    def _transport(self) -> paramiko.Transport:
        """The live transport; ``ConnectionLost`` if the connection is (known) dead."""
        if self._lost is not None:
            raise ConnectionLost(self.name, self._lost)
        transport = self._conn.transport
        if transport is None or not transport.is_active():
            raise self._lose(self._reason(transport))
        return cast("paramiko.Transport", transport)

    def _alive(self) -> bool:
        transport = self._conn.transport
        return self._lost is None and transport is not None and transport.is_active()

    def _lose(self, reason: str) -> ConnectionLost:
        """Declare the connection dead and close it; every later operation fails at once."""
        with self._lost_lock:
            if self._lost is None:
                self._lost = reason
                log.warning("%s: SSH connection lost: %s", self.name, reason)
                transport = self._conn.transport
                if transport is not None:
                    _quietly(transport.close)
        return ConnectionLost(self.name, self._lost)

    def _reason(self, transport: paramiko.Transport | None) -> str:
        """Why the transport died, from the error its reader thread saw."""
        error = transport.get_exception() if transport is not None else None
        if isinstance(error, TimeoutError):
            return f"no answer from {self.target} for {self.bounds.dead_peer:.0f}s (network cut or host down)"
        if isinstance(error, OSError) and error.strerror:
            return f"{self.target}: {error.strerror.lower()}"
        if error is None or isinstance(error, EOFError):
            # paramiko reports the kernel's ETIMEDOUT (TCP_USER_TIMEOUT) as an end of stream too
            return f"the connection to {self.target} ended (closed by the host, or no answer for {self.bounds.dead_peer:.0f}s)"
        return f"{self.target}: {error}"

    def _unanswered(self, doing: str) -> ConnectionLost:
        return self._lose(f"{self.target} did not answer within {self.bounds.dead_peer:.0f}s ({doing})")

    @contextmanager
    def _guard(self, doing: str) -> Iterator[None]:
        """Turn what paramiko and the socket raise into the tool's errors."""
        import paramiko

        try:
            yield
        except ProvisionerError:
            raise
        except (OSError, EOFError, paramiko.SSHException) as error:
            transport = self._conn.transport
            if self._lost is not None or transport is None or not transport.is_active():
                raise self._lose(f"{self._reason(transport)} ({doing})") from None
            if isinstance(error, TimeoutError) or str(error).startswith("Timeout"):
                raise self._unanswered(doing) from None
            raise TransportError(self.name, f"SSH error ({doing}): {_describe(error)}") from None

    def _open_channel(self, doing: str) -> paramiko.Channel:
        """A new session channel, opened within ``dead_peer``."""
        import paramiko

        transport = self._transport()
        with self._guard(doing):
            try:
                channel = transport.open_session(timeout=self.bounds.dead_peer)
            except paramiko.ChannelException as error:
                raise TransportError(self.name, f"the SSH server refused a session ({doing}): {error.text}") from None
            channel.settimeout(self.bounds.dead_peer)
        return channel

    def _request(self, channel: paramiko.Channel, doing: str, send: Callable[[], None]) -> None:
        """Make a channel request (exec, subsystem) and wait for its answer, at most ``dead_peer``.
        (paramiko itself would wait forever.)"""
        import paramiko

        expired = threading.Event()

        def expire() -> None:
            expired.set()
            _quietly(channel.close)

        timer = threading.Timer(self.bounds.dead_peer, expire)
        timer.daemon = True
        timer.start()
        try:
            with self._guard(doing):
                try:
                    send()
                except paramiko.SSHException:
                    if expired.is_set():
                        raise self._unanswered(doing) from None
                    raise
        finally:
            timer.cancel()

    # --- commands ---------------------------------------------------------------------------
    def _wrap(self, command: str, *, as_root: bool, prompt: str) -> tuple[str, Secret | None]:
        """``command`` for ``sh``, through sudo when root is wanted and the SSH user is not:
        ``sudo -n`` without a password, else ``sudo -S`` with ``prompt`` and the password to send."""
        wrapped = f"sh -c {shlex.quote(command)}"
        if not as_root or self.is_root:
            return wrapped, None
        if self._sudo_password is None:
            return f"sudo -n -- {wrapped}", None
        return f"sudo -S -p {shlex.quote(prompt)} -- {wrapped}", self._sudo_password

    def _execute(self, command: str, *, as_root: bool, timeout: float | None) -> tuple[int | None, str, str]:
        limit = self.command_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        wrapped, password = self._wrap(command, as_root=as_root, prompt=SUDO_PROMPT)
        doing = f"`{_short(REDACTOR.redact(command), 60)}`"
        channel = self._open_channel(doing)
        try:
            self._request(channel, doing, lambda: channel.exec_command(wrapped))
            with self._guard(doing):
                if password is None:
                    channel.shutdown_write()  # nothing comes on stdin: a command reading it ends
                code, out, err = self._collect(channel, deadline, password, doing)
        finally:
            _quietly(channel.close)
        stderr = err.replace(SUDO_PROMPT, "")
        if code is not None and as_root and not self.is_root and code != 0:
            _raise_for_sudo(self.name, stderr, password is not None)
        return code, out, stderr

    def _collect(self, channel: paramiko.Channel, deadline: float, password: Secret | None, doing: str) -> tuple[int | None, str, str]:
        """Read the command's output until it ends (exit code), the deadline passes (None), or
        the connection dies (``ConnectionLost``). Answers sudo's prompt once with the password."""
        out, err = bytearray(), bytearray()
        prompt = SUDO_PROMPT.encode()
        answered_at = -1
        status_at: float | None = None
        wake = channel.fileno()
        while True:
            while channel.recv_ready():
                out += channel.recv(1 << 16)
            while channel.recv_stderr_ready():
                err += channel.recv_stderr(1 << 16)
            if password is not None:
                if answered_at < 0 and prompt in err:
                    channel.sendall((password.reveal() + "\n").encode())
                    channel.shutdown_write()
                    answered_at = len(err)
                elif answered_at >= 0 and b"Sorry, try again." in err[answered_at:]:
                    raise SudoError(self.name, "sudo refused the password (from ssh.sudo_password_env)")
            code: int | None = channel.exit_status
            if code == -1 and not self._alive():
                raise self._lose(f"{self._reason(self._conn.transport)} ({doing})")
            now = time.monotonic()
            if code != -1:
                status_at = status_at or now
                if channel.eof_received or channel.closed or now - status_at > EOF_GRACE:
                    break
            elif channel.closed:
                break  # ended without a status (killed by a signal): -1, like OpenSSH reports it
            if now >= deadline:
                code = None
                break
            wait = min(0.5, deadline - now)
            if channel.eof_received:
                channel.status_event.wait(wait)  # output ended; only the exit status is to come
            else:
                select.select([wake], [], [], wait)
        while channel.recv_ready():
            out += channel.recv(1 << 16)
        while channel.recv_stderr_ready():
            err += channel.recv_stderr(1 << 16)
        return code, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")

    # --- files ------------------------------------------------------------------------------
    def _sftp(self) -> paramiko.SFTPClient:
        """The SFTP session, opened on first use; each of its requests is answered within
        ``dead_peer`` or fails. Call with ``_sftp_lock`` held."""
        import paramiko

        if self._sftp_client is not None and not self._sftp_client.get_channel().closed:  # type: ignore[union-attr]
            return self._sftp_client
        doing = "starting SFTP"
        channel = self._open_channel(doing)
        self._request(channel, doing, lambda: channel.invoke_subsystem("sftp"))
        with self._guard(doing):
            self._sftp_client = paramiko.SFTPClient(channel)
        return self._sftp_client

    def _drop_sftp(self) -> None:
        client, self._sftp_client = self._sftp_client, None
        if client is not None:
            _quietly(client.close)

    def _sftp_write(self, path: str, data: bytes, mode: int) -> None:
        """Create ``path`` with ``mode`` before any byte is written, then write ``data``.
        Replies to pipelined writes are not all read back: the caller checks the result."""
        import paramiko

        doing = f"writing {path} over SFTP"
        with self._sftp_lock:
            sftp = self._sftp()
            try:
                with sftp.open(path, "wb") as handle:
                    handle.chmod(mode)
                    handle.set_pipelined(True)
                    handle.write(data)
                    handle.flush()
                    # A request answered after the writes: waits for them (close() would swallow a timeout)
                    handle.stat()
            except (TimeoutError, EOFError, paramiko.SSHException) as error:
                self._drop_sftp()
                if not self._alive():
                    raise self._lose(f"{self._reason(self._conn.transport)} ({doing})") from None
                if isinstance(error, TimeoutError):
                    raise TransportError(
                        self.name, f"the SFTP server did not answer within {self.bounds.dead_peer:.0f}s ({doing})"
                    ) from None
                raise TransportError(self.name, f"SFTP error ({doing}): {_describe(error)}") from None
            except OSError:
                self._drop_sftp()  # its pending replies are of no use now
                raise

    def _upload(self, data: bytes, path: str, *, mode: int) -> None:
        self._upload_all([transfer.FileItem(data, path, mode)])

    def _upload_all(self, items: Sequence[transfer.FileItem]) -> None:
        transfer.upload_all(_SSHFiles(self, sum(len(item.data) for item in items)), items)

    def _download(self, path: str) -> str:
        result = self.sudo(f"cat {shlex.quote(path)}", secret_output=True)
        return result.stdout

    def hold(self, command: str, *, ready: str, timeout: float) -> HeldCommand:
        """An exec channel of its own whose stdin stays open: when this process dies, the TCP
        connection closes, sshd closes the channel and the command sees end-of-file."""
        # with a password, it is the first line on stdin (no prompt); the command ignores its stdin
        wrapped, password = self._wrap(command, as_root=True, prompt="")
        doing = f"`{_short(REDACTOR.redact(command.splitlines()[0]), 60)}`"
        started = time.monotonic()
        channel = self._open_channel(doing)
        self._request(channel, doing, lambda: channel.exec_command(wrapped))
        output = bytearray()
        is_ready = False
        with self._guard(doing):
            if password is not None:
                channel.sendall((password.reveal() + "\n").encode())
            channel.settimeout(0.5)
            while time.monotonic() - started < timeout:
                try:
                    chunk = channel.recv(4096)
                except TimeoutError:
                    if not self._alive():
                        raise self._lose(f"{self._reason(self._conn.transport)} ({doing})") from None
                    continue
                if not chunk:
                    break
                output += chunk
                if any(line.startswith(ready) for line in output.decode(errors="replace").splitlines()):
                    is_ready = True
                    break
            while not is_ready and channel.recv_stderr_ready():
                output += channel.recv_stderr(4096)

        def release() -> None:
            _quietly(channel.shutdown_write)
            _quietly(channel.close)

        if not is_ready:
            release()
        shown = REDACTOR.redact(command.splitlines()[0])
        self.history.append(HistoryEntry("hold", shown, 0 if is_ready else 1, time.monotonic() - started))
        return HeldCommand(is_ready, REDACTOR.redact(output.decode(errors="replace")), release)

    def close(self) -> None:
        with self._sftp_lock:
            self._drop_sftp()
        _quietly(self._conn.close)


class _SSHFiles(transfer.FileOps):
    """File operations for ``transfer.upload`` over one SSH session: the bytes over SFTP (as
    root, or staged in a private directory and installed with sudo), the rest as root commands."""

    def __init__(self, remote: SSHRemote, size: int) -> None:
        self.remote = remote
        self.host = remote.name
        # Reading back, syncing or copying a large file takes longer than a short command.
        self.timeout = remote.command_timeout + size / (1 << 20)

    def _root(self, command: str) -> str:
        code, out, err = self.remote._execute(command, as_root=True, timeout=self.timeout)
        if code != 0:
            raise RemoteCommandError(self.host, command, code, _tail(err or out))
        return out

    def make_directory(self, directory: str) -> None:
        """As root over SFTP (requests on the open session, no command); otherwise with sudo."""
        if not self.remote.is_root:
            self._root(f"mkdir -p {shlex.quote(directory)}")
            return
        with self.remote._sftp_lock:
            sftp = self.remote._sftp()
            missing: list[str] = []
            current = directory.rstrip("/") or "/"
            while True:
                try:
                    sftp.stat(current)
                    break
                except FileNotFoundError:
                    missing.append(current)
                    current = os.path.dirname(current) or "/"
            for folder in reversed(missing):
                sftp.mkdir(folder, 0o755)

    def write_temp(self, data: bytes, temp: str, mode: int) -> None:
        if self.remote.is_root:
            self.remote._sftp_write(temp, data, mode)
            return
        code, out, err = self.remote._execute("umask 077 && mktemp -d /tmp/provisioner.XXXXXXXX", as_root=False, timeout=self.timeout)
        if code != 0:
            raise RemoteCommandError(self.host, "mktemp -d", code, _tail(err or out))
        staging = out.strip()
        staged = f"{staging}/upload"
        try:
            self.remote._sftp_write(staged, data, 0o600)
            self._root(f"umask 077 && install -m {mode:04o} -o root -g root {shlex.quote(staged)} {shlex.quote(temp)}")
        finally:
            try:
                self.remote._execute(f"rm -rf {shlex.quote(staging)}", as_root=False, timeout=self.timeout)
            except ProvisionerError as error:
                log.warning("%s: could not remove %s: %s", self.host, staging, error)

    def install(self, pending: Sequence[transfer.Pending]) -> None:
        """One command for the whole batch: sync the temporary files, then per file check size
        and sha256 on the host and rename it over its target (``mv -T``: one rename(2), never
        "into" a directory), stopping at the first failure; then sync the directories so the
        renames are durable. ``at N`` lines tell which file a failure belongs to."""
        q = shlex.quote
        lines = ["sync -- " + " ".join(q(p.temp) for p in pending) + " || exit 9"]
        for index, p in enumerate(pending):
            t = q(p.temp)
            lines.append(
                f'echo at {index}; s=$(stat -c %s -- {t}) || exit 9; [ "$s" = {p.size} ] || {{ echo "size $s"; exit 3; }}; '
                f'h=$(sha256sum -- {t}) || exit 9; [ "${{h%% *}}" = {p.sha256} ] || exit 4; mv -fT -- {t} {q(p.path)} || exit 9'
            )
        directories = sorted({os.path.dirname(p.path) or "/" for p in pending})
        lines.append("echo at done; sync -- " + " ".join(q(d) for d in directories) + " 2>/dev/null || true")
        code, out, err = self.remote._execute("\n".join(lines), as_root=True, timeout=self.timeout)
        if code == 0:
            return
        index = 0
        size = ""
        for line in out.splitlines():
            if line.startswith("at ") and line[3:].isdigit():
                index = int(line[3:])
            elif line.startswith("size "):
                size = line[5:].strip()
        error: BaseException
        if code == 3:
            error = transfer.Mismatch.short(pending[index], int(size) if size.isdigit() else 0)
        elif code == 4:
            error = transfer.Mismatch.differs()
        else:
            error = RemoteCommandError(self.host, f"install {pending[index].path}", code, _tail(err or out))
        raise transfer.InstallStopped(index, error)

    def remove(self, temp: str) -> None:
        self._root(f"rm -f {shlex.quote(temp)}")

    def free_bytes(self, directory: str) -> int | None:
        out = self._root(f"df -Pk {shlex.quote(directory)} | awk 'NR==2 {{print $4}}'").strip()
        return int(out) * 1024 if out.isdigit() else None


def _quietly(close: Callable[[], object]) -> None:
    """Run a closing call; it must never fail a run (the error is only logged)."""
    try:
        close()
    except Exception:
        log.debug("error while closing", exc_info=True)


def _describe(error: BaseException) -> str:
    """One line for an exception from paramiko or the socket (never a repr)."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


def _short(command: str, limit: int) -> str:
    one_line = " ".join(command.split())
    return one_line if len(one_line) <= limit else one_line[: limit - 1] + "…"


def _raise_for_sudo(host: str, stderr: str, had_password: bool) -> None:
    if "a password is required" in stderr or "a terminal is required" in stderr:
        raise SudoError(
            host,
            "sudo needs a password; set ssh.sudo_password_env to the name of an environment variable that holds it",
        )
    if "is not in the sudoers file" in stderr or "not allowed to execute" in stderr:
        raise SudoError(host, "the SSH user may not use sudo on this host")
    if "sudo: command not found" in stderr or "sudo: not found" in stderr:
        raise SudoError(host, "sudo is not installed; connect as root or install sudo")
    # sudo's first answer to a wrong password is "Sorry, try again." (then, at the end of its input,
    # "N incorrect password attempt(s)"); the command may end before the reading loop saw it
    if had_password and ("incorrect password" in stderr or stderr.lstrip().startswith("Sorry, try again.")):
        raise SudoError(host, "sudo refused the password (from ssh.sudo_password_env)")


# --- host keys ----------------------------------------------------------------------------

_known_hosts_lock = threading.Lock()


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH-style SHA256 fingerprint of a host key."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _host_key_policy(policy: str, known_hosts: Path, host: str) -> paramiko.MissingHostKeyPolicy:
    import paramiko

    class AcceptNew(paramiko.MissingHostKeyPolicy):
        """Record an unknown key in known_hosts (a changed key is refused by paramiko itself)."""

        def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
            client.get_host_keys().add(hostname, key.get_name(), key)
            append_known_host(known_hosts, hostname, key)
            log.info("%s: recorded new host key %s %s in %s", host, key.get_name(), fingerprint(key), known_hosts)

    class Strict(paramiko.MissingHostKeyPolicy):
        """Refuse a host whose key is not in known_hosts."""

        def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
            raise HostKeyError(
                host,
                f"host key {key.get_name()} {fingerprint(key)} of {hostname} is not in {known_hosts} "
                "and ssh.host_key_policy is strict; add it (ssh-keyscan, after checking the "
                "fingerprint) or use accept-new",
            )

    class Off(paramiko.MissingHostKeyPolicy):
        """Accept any key without recording it (only when the inventory asks for it)."""

        def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
            log.warning("%s: host key checking is off; accepted %s %s", host, key.get_name(), fingerprint(key))

    return {"accept-new": AcceptNew, "strict": Strict, "off": Off}[policy]()


def append_known_host(known_hosts: Path, hostname: str, key: paramiko.PKey) -> None:
    """Append ``hostname key`` to known_hosts, creating it 0600 (dir 0700); safe across threads."""
    line = f"{hostname} {key.get_name()} {key.get_base64()}\n"
    with _known_hosts_lock:
        known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(known_hosts, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.write(line)


def _apply_host_keys(conn: Connection, policy: str, known_hosts: Path, host: str) -> None:
    """Replace Fabric's AutoAddPolicy on ``conn`` (one hop) and load known_hosts into it."""
    client = conn.client
    if known_hosts.exists():
        client.get_host_keys().load(str(known_hosts))
    client.set_missing_host_key_policy(_host_key_policy(policy, known_hosts, host))


# --- connecting ---------------------------------------------------------------------------


class JumpHosts:
    """The jump hosts of a run: one SSH connection to each, opened once and shared by every host
    behind it (a host is then one forwarded channel through the jump host, not one more login on
    it; OpenSSH's MaxStartups would refuse many logins at once). A jump host that could not be
    opened is not tried again in the same run: every host behind it fails with the same reason.
    Thread-safe; ``close`` ends them (after the hosts' own connections)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[tuple[str, str, str, str], Connection | ConnectError] = {}

    def gateway(self, key: tuple[str, str, str, str], open_jump: Callable[[], Connection], host: str) -> Connection:
        """The open connection for ``key`` (made with ``open_jump`` the first time), or the
        ``ConnectError`` that opening it raised, for ``host``."""
        with self._lock:
            known = self._open.get(key)
            if known is None or (not isinstance(known, ConnectError) and not known.is_connected):
                try:
                    known = open_jump()
                except ConnectError as error:
                    known = error
                self._open[key] = known
        if isinstance(known, ConnectError):
            raise type(known)(host, known.message)
        return known

    def close(self) -> None:
        """Close every jump connection. Already done: none open."""
        with self._lock:
            opened, self._open = list(self._open.values()), {}
        for conn in opened:
            if not isinstance(conn, ConnectError):
                _quietly(conn.close)


#: The jump hosts of the current run when the caller passes none (``actions.execute`` closes them).
RUN_JUMP_HOSTS = JumpHosts()


def connect(
    inventory: Inventory,
    host: Host,
    *,
    ssh_config_path: str | None = None,
    sudo_password: Secret | None = None,
    jump_hosts: JumpHosts | None = None,
) -> SSHRemote:
    """Open an SSH session to ``host`` with the inventory's settings, or raise ``ConnectError``.

    Inventory values win over ``~/.ssh/config`` (Host aliases, User, Port, IdentityFile and
    ProxyJump are honoured when the inventory leaves them unset). An explicit private key is the
    only key offered (like IdentitiesOnly), so a wrong key fails instead of falling back. Behind
    ``ssh.proxy_jump`` the jump host is checked against the same known_hosts and policy, offered
    the same key first (then what ssh_config, the agent and ~/.ssh offer), and its connection
    is shared by the hosts behind it (``jump_hosts``, default: the run's ``RUN_JUMP_HOSTS``).
    """
    from fabric import Config, Connection

    options = inventory.ssh_for(host)
    overrides: dict[str, object] = {"load_ssh_configs": True, "sudo": {"prompt": SUDO_PROMPT}}
    if ssh_config_path is not None:
        overrides["ssh_config_path"] = ssh_config_path
    config = Config(overrides=overrides)
    bounds = Bounds(
        dead_peer=float(options.dead_peer_timeout or DEFAULT_DEAD_PEER_TIMEOUT),
        command=float(options.command_timeout or DEFAULT_COMMAND_TIMEOUT),
    )
    known_hosts = Path(os.path.expanduser(str(options.known_hosts or DEFAULT_KNOWN_HOSTS)))
    policy = options.host_key_policy or "accept-new"
    connect_timeout = options.connect_timeout or 10
    # channel_timeout bounds opening the tunnel through a jump host (paramiko's default: an hour)
    connect_kwargs: dict[str, object] = {"channel_timeout": bounds.dead_peer}
    pkey = _load_key(host.name, options.private_key) if options.private_key is not None else None
    if pkey is not None:
        connect_kwargs.update(pkey=pkey, look_for_keys=False, allow_agent=False)

    def establish(conn: Connection, what: str) -> None:
        """Check its host key as the inventory says, log in, watch for a dead peer."""
        target = f"{what}{conn.user}@{conn.host}:{conn.port}"
        _apply_host_keys(conn, policy, known_hosts, host.name)
        _open(conn, host.name, target, options.private_key, connect_timeout, known_hosts)
        _detect_dead_peer(conn, bounds)
        log.debug("%s: connected to %s", host.name, target)

    gateway = None
    if options.proxy_jump:
        jump = options.proxy_jump

        def open_jump() -> Connection:
            kwargs: dict[str, object] = {"channel_timeout": bounds.dead_peer}
            if pkey is not None:
                kwargs["pkey"] = pkey
            conn = Connection(jump, config=config.clone(), connect_timeout=connect_timeout, connect_kwargs=kwargs)
            establish(conn, "jump host ")
            return conn

        key = (jump, str(options.private_key), str(known_hosts), policy)
        gateway = (jump_hosts or RUN_JUMP_HOSTS).gateway(key, open_jump, host.name)
    conn = Connection(
        host.address,
        user=options.user,
        port=options.port,
        config=config,
        gateway=gateway,
        connect_timeout=connect_timeout,
        connect_kwargs=connect_kwargs,
    )
    establish(conn, "")
    return SSHRemote(host.name, host.address, conn, sudo_password=sudo_password, bounds=bounds)


def _open(conn: Connection, host: str, target: str, private_key: Path | None, connect_timeout: int, known_hosts: Path) -> None:
    """Open ``conn`` (the SSH handshake, host key check and login), or raise ``ConnectError``
    for ``host`` naming ``target``."""
    import paramiko

    try:
        conn.open()
    except ConnectError:
        raise
    except paramiko.BadHostKeyException as error:
        raise HostKeyError(
            host,
            f"the host key of {'jump host ' if target.startswith('jump host') else ''}{error.hostname} CHANGED: known_hosts has {fingerprint(error.expected_key)}, "
            f"the host offers {fingerprint(error.key)}. If the host was reinstalled, remove the old "
            f"entry (ssh-keygen -R {error.hostname} -f {known_hosts}) and run again; otherwise "
            "someone may be intercepting the connection",
        ) from None
    except paramiko.PasswordRequiredException:
        raise ConnectError(host, f"the private key {private_key} is encrypted; load it into ssh-agent instead") from None
    except paramiko.AuthenticationException as error:
        key = f" with key {private_key}" if private_key else ""
        raise ConnectError(host, f"authentication failed for {target}{key}: {error}") from None
    except TimeoutError:
        raise ConnectError(host, f"unreachable: no answer from {target} within {connect_timeout}s") from None
    except paramiko.ssh_exception.NoValidConnectionsError as error:
        reasons = "; ".join(sorted({getattr(e, "strerror", None) or str(e) for e in error.errors.values()}))
        raise ConnectError(host, f"unreachable: {target}: {reasons}") from None
    except socket.gaierror as error:
        raise ConnectError(host, f"cannot resolve {conn.host}: {error.strerror}") from None
    except OSError as error:
        raise ConnectError(host, f"unreachable: {target}: {error.strerror or error}") from None
    except paramiko.SSHException as error:
        raise ConnectError(host, f"SSH error with {target}: {error}") from None
    except EOFError:
        raise ConnectError(host, f"{target} closed the connection during the SSH handshake") from None


def _detect_dead_peer(conn: Connection, bounds: Bounds) -> None:
    """Make a dead host show within ``bounds.dead_peer`` on ``conn`` (a jump host is one
    connection of its own and gets this when it is opened).

    SSH keepalives are sent every ``bounds.keepalive`` seconds of silence, so there is always
    data in flight; TCP_USER_TIMEOUT makes the kernel drop the connection when data stays
    unacknowledged that long (network cut, host off), which ends the transport and wakes every
    waiting channel. TCP keepalive probes cover a socket with nothing to send.
    """
    transport = conn.transport
    transport.set_keepalive(int(bounds.keepalive))
    sock = transport.sock
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        interval = max(1, int(bounds.keepalive))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in (
            ("TCP_KEEPIDLE", interval),
            ("TCP_KEEPINTVL", interval),
            ("TCP_KEEPCNT", max(1, int(bounds.dead_peer // interval))),
            ("TCP_USER_TIMEOUT", int(bounds.dead_peer * 1000)),
        ):
            if hasattr(socket, name):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


def _load_key(host: str, path: Path) -> paramiko.PKey:
    """The private key at ``path`` (OpenSSH or PEM, any type paramiko knows)."""
    import paramiko

    try:
        return paramiko.PKey.from_path(str(path))
    except paramiko.PasswordRequiredException:
        raise ConnectError(host, f"the private key {path} is encrypted; load it into ssh-agent instead") from None
    except (paramiko.SSHException, OSError, ValueError) as error:
        raise ConnectError(host, f"cannot load the private key {path}: {error}") from None


def sudo_password_for(inventory: Inventory, host: Host) -> Secret | None:
    """The sudo password from the environment variable the inventory names, if any."""
    name = inventory.ssh_for(host).sudo_password_env
    if not name:
        return None
    value = os.environ.get(name)
    return Secret(value) if value else None
