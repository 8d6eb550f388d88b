"""Test doubles shipped with the package (like ``fabric.testing``): an in-memory ``Remote``.

``FakeRemote`` records every command and file operation and answers commands from rules, so
unit tests can drive phases and actions without SSH:

    host = FakeRemote("worker1", "10.0.0.2")
    host.on(r"systemctl is-active", stdout="active")
    host.sudo("systemctl is-active k3s").stdout  # -> "active"
    host.commands  # -> [("sudo", "systemctl is-active k3s")]

``Link`` and ``SimulatedRemote`` add a network to it, for scale tests and benchmarks of whole
actions: a cost per command and upload, a handshake at connect, and hosts that are dead (their
connect times out) or hang (every command runs into its timeout). Time is real: the costs are
sleeps, so hundreds of hosts in parallel behave as they would over SSH, minus the crypto.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from provisioner.errors import ConnectError, RemoteCommandError
from provisioner.remote import HeldCommand, Remote

Answer = tuple[int, str, str]
Handler = Callable[["FakeRemote", str], Answer]


@dataclass
class _Rule:
    pattern: re.Pattern[str]
    handler: Handler


class UnexpectedCommand(AssertionError):
    """A strict ``FakeRemote`` got a command no rule answers."""


class FakeRemote(Remote):
    """An in-memory host: files in a dict, commands answered by the newest matching rule.

    Commands with no matching rule succeed with empty output. With ``strict=True`` such a
    command raises ``UnexpectedCommand`` instead (and is kept in ``unexpected``), so a test of a
    whole action fails on any command it did not foresee.
    """

    def __init__(self, name: str, address: str = "192.0.2.1", *, user: str = "root", strict: bool = False) -> None:
        super().__init__(name=name, address=address, user=user)
        self.files: dict[str, bytes] = {}
        self.modes: dict[str, int] = {}
        self.commands: list[tuple[str, str]] = []  # (run|sudo, command as sent)
        self.uploads: list[str] = []
        self.strict = strict
        self.unexpected: list[str] = []
        self.closed = False
        self.held: list[str] = []
        self.released: list[str] = []
        self._rules: list[_Rule] = []

    def on(
        self,
        pattern: str,
        stdout: str = "",
        *,
        exit_code: int = 0,
        stderr: str = "",
        handler: Handler | None = None,
    ) -> FakeRemote:
        """Answer commands matching ``pattern`` (a regex searched in the command)."""
        if handler is None:

            def handler(_remote: FakeRemote, _command: str) -> Answer:
                return exit_code, stdout, stderr

        self._rules.append(_Rule(re.compile(pattern, re.DOTALL), handler))
        return self

    def ran(self, pattern: str) -> list[str]:
        """Commands sent so far that match ``pattern``."""
        regex = re.compile(pattern, re.DOTALL)
        return [command for _, command in self.commands if regex.search(command)]

    def _execute(self, command: str, *, as_root: bool, timeout: float | None) -> tuple[int | None, str, str]:
        self.commands.append(("sudo" if as_root else "run", command))
        for rule in reversed(self._rules):
            if rule.pattern.search(command):
                return rule.handler(self, command)
        if self.strict:
            self.unexpected.append(command)
            raise UnexpectedCommand(f"fake host {self.name}: no rule for {command!r}")
        return 0, "", ""

    def _upload(self, data: bytes, path: str, *, mode: int) -> None:
        self.files[path] = data
        self.modes[path] = mode
        self.uploads.append(path)

    def _download(self, path: str) -> str:
        if path not in self.files:
            raise RemoteCommandError(self.name, f"cat {path}", 1, f"cat: {path}: No such file or directory")
        return self.files[path].decode()

    def hold(self, command: str, *, ready: str, timeout: float) -> HeldCommand:
        """Answered by the rules like a command; ``released`` lists what was released."""
        code, out, err = self._execute(command, as_root=True, timeout=timeout)
        is_ready = code == 0 and any(line.startswith(ready) for line in out.splitlines())
        self.held.append(command)
        return HeldCommand(is_ready, out + err, lambda: self.released.append(command))

    def close(self) -> None:
        self.closed = True


@dataclass(frozen=True)
class Link:
    """A simulated network between this machine and its hosts; all times in seconds.

    ``latency``: what each command and each upload takes; ``handshake``: what opening a session
    takes; ``dead``: hosts that never answer a connect (``ConnectError`` after
    ``connect_timeout``); ``hanging``: hosts whose commands never end, so each runs into its
    timeout; ``slow``: extra seconds per command and upload on some hosts.
    """

    latency: float = 0.0
    handshake: float = 0.0
    connect_timeout: float = 10.0
    dead: frozenset[str] = frozenset()
    hanging: frozenset[str] = frozenset()
    slow: Mapping[str, float] = field(default_factory=dict, hash=False)

    def connect(self, name: str) -> None:
        """Wait out the handshake to ``name``, or raise ``ConnectError`` if it is dead."""
        if name in self.dead:
            time.sleep(self.connect_timeout)
            raise ConnectError(name, f"unreachable: no answer within {self.connect_timeout:g}s (simulated)")
        if self.handshake:
            time.sleep(self.handshake)

    def delay(self, name: str) -> float:
        return self.latency + self.slow.get(name, 0.0)


class SimulatedRemote(FakeRemote):
    """A ``FakeRemote`` behind a ``Link``: commands and uploads take their time, a hanging
    host's commands end only at their timeout (exit code None, as ``SSHRemote`` reports it)."""

    def __init__(self, name: str, address: str, link: Link, **kwargs: bool | str) -> None:
        super().__init__(name, address, **kwargs)  # type: ignore[arg-type]
        self.link = link

    def _execute(self, command: str, *, as_root: bool, timeout: float | None) -> tuple[int | None, str, str]:
        if self.name in self.link.hanging:
            self.commands.append(("sudo" if as_root else "run", command))
            time.sleep(self.command_timeout if timeout is None else timeout)
            return None, "", ""
        delay = self.link.delay(self.name)
        if delay:
            time.sleep(delay)
        return super()._execute(command, as_root=as_root, timeout=timeout)

    def _upload(self, data: bytes, path: str, *, mode: int) -> None:
        delay = self.link.delay(self.name)
        if delay:
            time.sleep(delay)
        super()._upload(data, path, mode=mode)
