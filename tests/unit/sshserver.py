"""Test double: an SSH server on loopback (paramiko in server mode), not product code.

By default it answers exec requests with canned replies (and a sudo that asks for a password).
With ``execute=True`` it runs the commands on this machine (``sudo -n --`` stripped: the test runs
as the user it is) and serves SFTP from the local filesystem, so the real transport can be
driven end to end. Faults: ``hang_open`` / ``hang_exec`` leave channel and exec requests
unanswered, ``hang_sftp`` leaves SFTP writes unanswered, a command ``hang`` never ends, and
``drop()`` closes every connection (sshd gone). With ``forward=True`` it is also a jump host: it
forwards ``direct-tcpip`` channels to loopback ports (any 127.x address: 127.0.0.1) (``forwarded`` lists the destinations).
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import paramiko

from provisioner.remote import SUDO_PROMPT

SUDO_PASSWORD = "correct horse battery"


@dataclass
class FakeSSHServer:
    """A loopback SSH server that accepts one client key."""

    host_key: paramiko.PKey
    client_key: paramiko.PKey
    port: int = 0
    execute: bool = False
    hang_open: bool = False
    hang_exec: bool = False
    hang_sftp: bool = False
    forward: bool = False
    forwarded: list[tuple[str, int]] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    stdin_seen: list[str] = field(default_factory=list)
    connections: int = 0
    _transports: list[paramiko.Transport] = field(default_factory=list)
    _sock: socket.socket | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(8)
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        if self._sock:
            self._sock.close()
        self.drop()

    def drop(self) -> None:
        """Close every open connection, as a killed sshd would."""
        for transport in self._transports:
            transport.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._sock.accept()  # type: ignore[union-attr]
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            transport = paramiko.Transport(client)
            transport.add_server_key(self.host_key)
            transport.set_subsystem_handler("sftp", paramiko.SFTPServer, _LocalSFTP, self)
            self._transports.append(transport)
            try:
                transport.start_server(server=_Handler(self, transport))
            except (paramiko.SSHException, EOFError, OSError):
                continue


class _Handler(paramiko.ServerInterface):
    def __init__(self, server: FakeSSHServer, transport: paramiko.Transport) -> None:
        self.server = server
        self.transport = transport

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        if key.asbytes() == self.server.client_key.asbytes():
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if self.server.hang_open:
            self.server._stop.wait()  # paramiko asks from its transport thread: nothing is answered
        if kind == "session" or (kind == "direct-tcpip" and self.server.forward):
            return paramiko.OPEN_SUCCEEDED
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_direct_tcpip_request(self, chanid: int, origin: tuple[str, int], destination: tuple[str, int]) -> int:
        if not self.server.forward or not destination[0].startswith("127."):
            return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
        self.server.forwarded.append(destination)
        threading.Thread(target=self._relay, args=(chanid, destination), daemon=True).start()
        return paramiko.OPEN_SUCCEEDED

    def _relay(self, chanid: int, destination: tuple[str, int]) -> None:
        """Copy bytes both ways between the forwarded channel and a connection to ``destination``."""
        channel = None
        for _ in range(200):  # the channel object exists once paramiko has answered the open request
            channel = self.transport._channels.get(chanid)  # test double: paramiko keeps no public handle
            if channel is not None:
                break
            self.server._stop.wait(0.01)
        if channel is None:
            return
        upstream = socket.create_connection(("127.0.0.1", destination[1]))  # every 127.x is this server

        def pump(read: Callable[[int], bytes], write: Callable[[bytes], object], done: Callable[[], object]) -> None:
            try:
                while data := read(65536):
                    write(data)
            except OSError:
                pass
            finally:
                done()

        threading.Thread(target=pump, args=(upstream.recv, channel.sendall, channel.close), daemon=True).start()
        pump(channel.recv, upstream.sendall, lambda: upstream.shutdown(socket.SHUT_WR))

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        text = command.decode()
        self.server.commands.append(text)
        if self.server.hang_exec:
            self.server._stop.wait()
        target = self._execute if self.server.execute else self._answer
        threading.Thread(target=target, args=(channel, text), daemon=True).start()
        return True

    def _execute(self, channel: paramiko.Channel, command: str) -> None:
        """Run the command here, streaming its output back."""
        command = command.removeprefix("sudo -n -- ")
        try:
            if command.split()[-1] in ("hang", "'hang'"):
                self.server._stop.wait()
                return
            process = subprocess.run(["sh", "-c", command], capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
            channel.sendall(process.stdout)
            channel.sendall_stderr(process.stderr)
            channel.send_exit_status(process.returncode)
        finally:
            channel.shutdown_write()

    def _answer(self, channel: paramiko.Channel, command: str) -> None:
        try:
            if command.split()[-1] in ("hang", "'hang'"):
                self.server._stop.wait()
            elif command.startswith("sudo -S"):
                channel.sendall_stderr(SUDO_PROMPT.encode())
                line = b""
                while not line.endswith(b"\n"):
                    chunk = channel.recv(1)
                    if not chunk:
                        break
                    line += chunk
                self.server.stdin_seen.append(line.decode().rstrip("\n"))
                if line.decode().rstrip("\n") != SUDO_PASSWORD:
                    channel.sendall_stderr(b"Sorry, try again.\n" + SUDO_PROMPT.encode())
                    channel.send_exit_status(1)
                    return
                channel.sendall(b"root\n")
                channel.send_exit_status(0)
            elif command.startswith("sudo -n"):
                channel.sendall_stderr(b"sudo: a password is required\n")
                channel.send_exit_status(1)
            else:
                channel.sendall(b"hello\n")
                channel.send_exit_status(0)
        finally:
            # Closing here could overtake paramiko's reply to the exec request ("Channel closed"
            # on the client); end the output instead and let the client close the channel.
            channel.shutdown_write()


class _LocalHandle(paramiko.SFTPHandle):
    def __init__(self, path: str, flags: int, server: FakeSSHServer) -> None:
        super().__init__(flags)
        self.path = path
        self.server = server

    def write(self, offset: int, data: bytes) -> int:
        if self.server.hang_sftp:
            self.server._stop.wait()
        return super().write(offset, data)  # type: ignore[no-any-return]

    def stat(self) -> paramiko.SFTPAttributes:
        return paramiko.SFTPAttributes.from_stat(os.stat(self.path))

    def chattr(self, attr: paramiko.SFTPAttributes) -> int:
        try:
            paramiko.SFTPServer.set_file_attr(self.path, attr)
        except OSError as error:
            return paramiko.SFTPServer.convert_errno(error.errno)  # type: ignore[no-any-return]
        return paramiko.SFTP_OK


class _LocalSFTP(paramiko.SFTPServerInterface):
    """SFTP on this machine's filesystem: just what uploads use."""

    def __init__(self, server: object, fake: FakeSSHServer, *args: object, **kwargs: object) -> None:
        super().__init__(server)
        self.fake = fake

    def open(self, path: str, flags: int, attr: paramiko.SFTPAttributes) -> paramiko.SFTPHandle | int:
        try:
            fd = os.open(path, flags, 0o644)
        except OSError as error:
            return paramiko.SFTPServer.convert_errno(error.errno)  # type: ignore[no-any-return]
        handle = _LocalHandle(path, flags, self.fake)
        mode = "wb" if flags & os.O_WRONLY else "r+b" if flags & os.O_RDWR else "rb"
        stream = os.fdopen(fd, mode)
        handle.readfile = stream  # type: ignore[attr-defined]
        handle.writefile = stream  # type: ignore[attr-defined]
        return handle

    def stat(self, path: str) -> paramiko.SFTPAttributes | int:
        try:
            return paramiko.SFTPAttributes.from_stat(os.stat(path))
        except OSError as error:
            return paramiko.SFTPServer.convert_errno(error.errno)  # type: ignore[no-any-return]

    lstat = stat

    def mkdir(self, path: str, attr: paramiko.SFTPAttributes) -> int:
        try:
            os.mkdir(path, attr.st_mode if attr.st_mode is not None else 0o777)
        except OSError as error:
            return paramiko.SFTPServer.convert_errno(error.errno)  # type: ignore[no-any-return]
        return paramiko.SFTP_OK
