"""One small interface to a host: ``run``, ``sudo``, ``put``, ``get``.

``Remote`` holds what every transport shares (logging with secrets masked, exit-code checks,
typed errors, a history of commands); ``SSHRemote`` is the Fabric/paramiko implementation, and
``provisioner.testing.FakeRemote`` the in-memory one for unit tests.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import logging
import os
import re
import shlex
import socket
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from provisioner.errors import (
    ConnectError,
    HostKeyError,
    RemoteCommandError,
    SudoError,
)
from provisioner.secrets import REDACTOR, Secret

if TYPE_CHECKING:
    import paramiko
    from fabric import Connection

    from provisioner.inventory import Host, Inventory

log = logging.getLogger("provisioner.remote")

SUDO_PROMPT = "[provisioner-sudo-password]"
DEFAULT_KNOWN_HOSTS = Path("~/.ssh/known_hosts")


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

    # --- primitives ---------------------------------------------------------------------
    @abstractmethod
    def _execute(
        self, command: str, *, as_root: bool, timeout: float | None
    ) -> tuple[int | None, str, str]:
        """Run ``command`` with ``sh``; return (exit code or None on timeout, stdout, stderr)."""

    @abstractmethod
    def _upload(self, data: bytes, path: str, *, mode: int) -> None:
        """Write ``data`` to ``path`` owned by root with ``mode``, atomically."""

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
        return self._run(
            command, as_root=True, check=check, timeout=timeout, secret_output=secret_output, hint=hint
        )

    def put(self, data: bytes | str, path: str, *, mode: int = 0o644) -> None:
        """Write a file on the host, owned by root, with ``mode``; atomic (temp file + rename).

        Secrets travel only this way: over SFTP into a root-owned file, never in a command line.
        """
        payload = data.encode() if isinstance(data, str) else data
        started = time.monotonic()
        self._upload(payload, path, mode=mode)
        elapsed = time.monotonic() - started
        self.history.append(HistoryEntry("put", path, 0, elapsed))
        log.debug("%s: put %s (%d bytes, mode %04o) in %.2fs", self.name, path, len(payload), mode, elapsed)

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
        started = time.monotonic()
        code, out, err = self._execute(command, as_root=as_root, timeout=timeout)
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
            raise RemoteCommandError(self.name, shown, None, REDACTOR.redact(_tail(err)), hint or f"no answer within {timeout:.0f}s")
        result = CommandResult(shown, code, out, err, elapsed)
        if check and code != 0:
            raise RemoteCommandError(self.name, shown, code, REDACTOR.redact(_tail(err or out)), hint)
        return result


def _tail(text: str, limit: int = 600) -> str:
    text = text.strip()
    return text if len(text) <= limit else "…" + text[-limit:]


# --- the SSH implementation ---------------------------------------------------------------


class SSHRemote(Remote):
    """A host reached with Fabric (paramiko underneath)."""

    def __init__(
        self,
        name: str,
        address: str,
        connection: Connection,
        *,
        sudo_password: Secret | None = None,
    ) -> None:
        super().__init__(name=name, address=address, user=connection.user)
        self._conn = connection
        self._sudo_password = sudo_password
        self._sftp_lock = threading.Lock()

    @property
    def is_root(self) -> bool:
        return self.user == "root"

    def _execute(
        self, command: str, *, as_root: bool, timeout: float | None
    ) -> tuple[int | None, str, str]:
        from invoke.exceptions import CommandTimedOut, Failure, UnexpectedExit
        from invoke.watchers import FailingResponder

        wrapped = f"sh -c {shlex.quote(command)}"
        kwargs: dict[str, object] = {"hide": True, "warn": True, "in_stream": False, "timeout": timeout}
        if as_root and not self.is_root:
            if self._sudo_password is None:
                wrapped = f"sudo -n -- {wrapped}"
            else:
                wrapped = f"sudo -S -p {shlex.quote(SUDO_PROMPT)} -- {wrapped}"
                kwargs["watchers"] = [
                    FailingResponder(
                        pattern=re.escape(SUDO_PROMPT),
                        response=self._sudo_password.reveal() + "\n",
                        sentinel="Sorry, try again.\n",
                    )
                ]
        try:
            result = self._conn.run(wrapped, **kwargs)
        except CommandTimedOut as error:
            return None, error.result.stdout, error.result.stderr
        except UnexpectedExit as error:  # only raised with warn=False; kept for safety
            result = error.result
        except Failure as error:
            if type(error.reason).__name__ == "ResponseNotAccepted":
                raise SudoError(self.name, "sudo refused the password (from ssh.sudo_password_env)") from None
            raise
        stderr = result.stderr.replace(SUDO_PROMPT, "")
        if as_root and not self.is_root and result.exited != 0:
            _raise_for_sudo(self.name, stderr, self._sudo_password is not None)
        return result.exited, result.stdout, stderr

    def _sftp(self) -> paramiko.SFTPClient:
        return self._conn.sftp()

    def _upload(self, data: bytes, path: str, *, mode: int) -> None:
        directory = os.path.dirname(path) or "/"
        temp_name = f".{os.path.basename(path)}.provisioner-{uuid.uuid4().hex[:12]}"
        if self.is_root:
            # SFTP only: no command channel, and the rename makes the new file appear whole.
            with self._sftp_lock:
                sftp = self._sftp()
                _sftp_makedirs(sftp, directory)
            temp = f"{directory}/{temp_name}"
            self._sftp_write(temp, data, mode)
            with self._sftp_lock:
                sftp.posix_rename(temp, path)
            return
        staging = self.run("umask 077 && mktemp -d /tmp/provisioner.XXXXXXXX").stdout.strip()
        temp = f"{staging}/upload"
        self._sftp_write(temp, data, 0o600)
        final_temp = f"{directory}/{temp_name}"
        self.sudo(
            f"mkdir -p {shlex.quote(directory)} && "
            f"install -m {mode:04o} -o root -g root {shlex.quote(temp)} {shlex.quote(final_temp)} && "
            f"mv -f {shlex.quote(final_temp)} {shlex.quote(path)}; rc=$?; rm -rf {shlex.quote(staging)}; exit $rc"
        )

    def _sftp_write(self, path: str, data: bytes, mode: int) -> None:
        """Create ``path`` with ``mode`` before any byte is written, then write ``data``."""
        with self._sftp_lock:
            sftp = self._sftp()
            with sftp.open(path, "wb") as handle:
                handle.chmod(mode)
                handle.set_pipelined(True)
                handle.write(data)

    def _download(self, path: str) -> str:
        result = self.sudo(f"cat {shlex.quote(path)}", secret_output=True)
        return result.stdout

    def hold(self, command: str, *, ready: str, timeout: float) -> HeldCommand:
        """An exec channel of its own whose stdin stays open: when this process dies, the TCP
        connection closes, sshd closes the channel and the command sees end-of-file."""
        wrapped = f"sh -c {shlex.quote(command)}"
        password = None
        if not self.is_root:
            if self._sudo_password is None:
                wrapped = f"sudo -n -- {wrapped}"
            else:  # the password is the first line on stdin; the command ignores its stdin
                wrapped = f"sudo -S -p '' -- {wrapped}"
                password = self._sudo_password.reveal()
        transport = self._conn.transport
        if transport is None or not transport.is_active():
            raise ConnectError(self.name, "the SSH connection is closed")
        started = time.monotonic()
        channel = transport.open_session(timeout=timeout)
        channel.settimeout(1.0)
        channel.exec_command(wrapped)
        if password is not None:
            channel.sendall((password + "\n").encode())
        output = ""
        is_ready = False
        while time.monotonic() - started < timeout:
            try:
                chunk = channel.recv(4096)
            except socket.timeout:
                continue
            if not chunk:
                break
            output += chunk.decode(errors="replace")
            if any(line.startswith(ready) for line in output.splitlines()):
                is_ready = True
                break
        if not is_ready and channel.exit_status_ready():
            try:
                output += channel.makefile_stderr("r").read().decode(errors="replace")
            except (OSError, EOFError):
                pass

        def release() -> None:
            try:
                channel.shutdown_write()
                channel.close()
            except (OSError, EOFError):
                pass

        if not is_ready:
            release()
        self.history.append(HistoryEntry("hold", REDACTOR.redact(command.splitlines()[0]), 0 if is_ready else 1,
                                         time.monotonic() - started))
        return HeldCommand(is_ready, REDACTOR.redact(output), release)

    def close(self) -> None:
        try:
            self._conn.close()
        except Exception:  # noqa: BLE001 - closing must never fail a run
            log.debug("%s: error while closing", self.name, exc_info=True)


def _sftp_makedirs(sftp: paramiko.SFTPClient, directory: str) -> None:
    """Create ``directory`` and its missing parents (mode 0755) over SFTP."""
    try:
        sftp.stat(directory)
        return
    except FileNotFoundError:
        pass
    parent = os.path.dirname(directory.rstrip("/"))
    if parent and parent != directory:
        _sftp_makedirs(sftp, parent)
    try:
        sftp.mkdir(directory, 0o755)
    except OSError:
        sftp.stat(directory)  # created meanwhile by someone else: fine; otherwise raise


def _raise_for_sudo(host: str, stderr: str, had_password: bool) -> None:
    if "a password is required" in stderr or "a terminal is required" in stderr:
        raise SudoError(
            host,
            "sudo needs a password; set ssh.sudo_password_env to the name of an environment "
            "variable that holds it",
        )
    if "is not in the sudoers file" in stderr or "not allowed to execute" in stderr:
        raise SudoError(host, "the SSH user may not use sudo on this host")
    if "sudo: command not found" in stderr or "sudo: not found" in stderr:
        raise SudoError(host, "sudo is not installed; connect as root or install sudo")
    if had_password and "incorrect password" in stderr:
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
    """Replace Fabric's AutoAddPolicy on ``conn`` and every gateway hop, and load known_hosts."""
    hop: object = conn
    while hop is not None and hasattr(hop, "client"):
        client = hop.client  # type: ignore[attr-defined]
        if known_hosts.exists():
            client.get_host_keys().load(str(known_hosts))
        client.set_missing_host_key_policy(_host_key_policy(policy, known_hosts, host))
        hop = getattr(hop, "gateway", None)


# --- connecting ---------------------------------------------------------------------------


def connect(
    inventory: Inventory,
    host: Host,
    *,
    ssh_config_path: str | None = None,
    sudo_password: Secret | None = None,
) -> SSHRemote:
    """Open an SSH session to ``host`` with the inventory's settings, or raise ``ConnectError``.

    Inventory values win over ``~/.ssh/config`` (Host aliases, User, Port, IdentityFile and
    ProxyJump are honoured when the inventory leaves them unset). An explicit private key is the
    only key offered (like IdentitiesOnly), so a wrong key fails instead of falling back.
    """
    import paramiko
    from fabric import Config, Connection

    options = inventory.ssh_for(host)
    overrides: dict[str, object] = {"load_ssh_configs": True, "sudo": {"prompt": SUDO_PROMPT}}
    if ssh_config_path is not None:
        overrides["ssh_config_path"] = ssh_config_path
    config = Config(overrides=overrides)
    connect_kwargs: dict[str, object] = {}
    if options.private_key is not None:
        connect_kwargs.update(pkey=_load_key(host.name, options.private_key), look_for_keys=False, allow_agent=False)
    gateway = None
    if options.proxy_jump:
        gateway = Connection(options.proxy_jump, config=config.clone(), connect_timeout=options.connect_timeout or 10)
    conn = Connection(
        host.address,
        user=options.user,
        port=options.port,
        config=config,
        gateway=gateway,
        connect_timeout=options.connect_timeout or 10,
        connect_kwargs=connect_kwargs,
    )
    known_hosts = Path(os.path.expanduser(str(options.known_hosts or DEFAULT_KNOWN_HOSTS)))
    policy = options.host_key_policy or "accept-new"
    _apply_host_keys(conn, policy, known_hosts, host.name)
    target = f"{conn.user}@{conn.host}:{conn.port}"
    try:
        conn.open()
        conn.transport.set_keepalive(15)  # type: ignore[union-attr]
    except HostKeyError:
        raise
    except paramiko.BadHostKeyException as error:
        raise HostKeyError(
            host.name,
            f"the host key of {error.hostname} CHANGED: known_hosts has {fingerprint(error.expected_key)}, "
            f"the host offers {fingerprint(error.key)}. If the host was reinstalled, remove the old "
            f"entry (ssh-keygen -R {error.hostname} -f {known_hosts}) and run again; otherwise "
            "someone may be intercepting the connection",
        ) from None
    except paramiko.PasswordRequiredException:
        raise ConnectError(
            host.name, f"the private key {options.private_key} is encrypted; load it into ssh-agent instead"
        ) from None
    except paramiko.AuthenticationException as error:
        key = f" with key {options.private_key}" if options.private_key else ""
        raise ConnectError(host.name, f"authentication failed for {target}{key}: {error}") from None
    except (socket.timeout, TimeoutError):
        raise ConnectError(host.name, f"unreachable: no answer from {target} within {options.connect_timeout or 10}s") from None
    except paramiko.ssh_exception.NoValidConnectionsError as error:
        reasons = "; ".join(sorted({e.strerror or str(e) for e in error.errors.values()}))
        raise ConnectError(host.name, f"unreachable: {target}: {reasons}") from None
    except socket.gaierror as error:
        raise ConnectError(host.name, f"cannot resolve {conn.host}: {error.strerror}") from None
    except OSError as error:
        raise ConnectError(host.name, f"unreachable: {target}: {error.strerror or error}") from None
    except paramiko.SSHException as error:
        raise ConnectError(host.name, f"SSH error with {target}: {error}") from None
    log.debug("%s: connected to %s", host.name, target)
    return SSHRemote(host.name, host.address, conn, sudo_password=sudo_password)


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
