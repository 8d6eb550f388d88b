"""One error hierarchy for the core. The CLI turns each into one clear line and an exit code."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

# Categories a terminal or a shell may act on: C0/C1 controls and DEL (Cc), invisible format
# characters such as bidi overrides (Cf), lone surrogates (Cs), line/paragraph separators.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def is_unsafe_char(char: str) -> bool:
    """True for a control or invisible formatting character that must not reach a host or a terminal."""
    return unicodedata.category(char) in _UNSAFE_CATEGORIES


def escape_unsafe(text: str) -> str:
    """``text`` with every unsafe character written as an escape (``\\x1b``, ``\\u202e``)."""
    if not any(is_unsafe_char(c) for c in text):
        return text
    out = []
    for char in text:
        if is_unsafe_char(char):
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(char)
    return "".join(out)


class ProvisionerError(Exception):
    """Base of every expected failure. ``exit_code`` is what the CLI returns."""

    exit_code = 1

    def lines(self) -> list[str]:
        """The message as the lines the CLI prints (one per problem)."""
        return [str(self)]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input: where (file, line, field path) and what."""

    field: str
    message: str
    file: str | None = None
    line: int | None = None

    MAX_LENGTH = 400  # a problem is one line; never a copy of the file

    def __str__(self) -> str:
        where = self.file or ""
        if self.file and self.line is not None:
            where += f":{self.line}"
        prefix = f"{where}: " if where else ""
        field = f"{self.field}: " if self.field else ""
        text = escape_unsafe(f"{prefix}{field}{self.message}")
        return text if len(text) <= self.MAX_LENGTH else text[: self.MAX_LENGTH - 1] + "…"


class InventoryError(ProvisionerError):
    """The inventory is unreadable or invalid; nothing was contacted."""

    exit_code = 2
    MAX_LINES = 50  # a hostile file with thousands of bad hosts gets a screenful, not a flood

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        shown = [str(p) for p in self.problems[: self.MAX_LINES]]
        hidden = len(self.problems) - len(shown)
        if hidden > 0:
            shown.append(f"… and {hidden} more problems")
        return shown


class UsageError(ProvisionerError):
    """A flag combination or argument that cannot work."""

    exit_code = 2


class HostError(ProvisionerError):
    """A failure tied to one host."""

    def __init__(self, host: str, message: str) -> None:
        self.host = host
        self.message = message
        super().__init__(f"{host}: {message}")


class ConnectError(HostError):
    """Could not open an SSH session (unreachable, auth refused, host key problem)."""


class HostKeyError(ConnectError):
    """The host's SSH key is unknown (strict) or differs from known_hosts."""


class SudoError(HostError):
    """sudo is missing, needs a password we do not have, or refused the one we gave."""


class TransportError(HostError):
    """The SSH session to a host failed during an operation (a request went unanswered, the
    server refused a channel)."""


class ConnectionLost(TransportError):
    """The SSH connection to a host died mid-run (network cut, host off, sshd gone). Nothing more
    is sent to that host; every later operation on it raises this at once."""

    def __init__(self, host: str, reason: str) -> None:
        self.reason = reason
        super().__init__(host, f"SSH connection lost: {reason}")


class UploadError(HostError):
    """A file could not be written whole; the old file (if any) is unchanged and no temporary
    file is left behind (unless ``leftover`` names one that could not be removed)."""

    def __init__(self, host: str, path: str, cause: str, leftover: str | None = None) -> None:
        self.path = path
        self.cause = cause
        self.leftover = leftover
        left = f"; could not remove the temporary {leftover}" if leftover else ""
        super().__init__(host, f"cannot write {path}: {cause}; {path} is unchanged{left}")


class RemoteCommandError(HostError):
    """A command on a host exited non-zero (or timed out)."""

    def __init__(
        self,
        host: str,
        command: str,
        exit_code: int | None,
        stderr_tail: str = "",
        hint: str = "",
    ) -> None:
        self.command = command
        self.exit_status = exit_code
        self.stderr_tail = stderr_tail
        self.hint = hint
        status = "timed out" if exit_code is None else f"exited {exit_code}"
        detail = f": {stderr_tail.strip().splitlines()[-1]}" if stderr_tail.strip() else ""
        message = f"`{_short(command)}` {status}{detail}"
        if hint:
            message += f" ({hint})"
        super().__init__(host, message)


class HostValidationError(ProvisionerError):
    """Facts gathered from the hosts rule out going ahead; nothing was changed."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))

    def lines(self) -> list[str]:
        return list(self.problems)


class HostsFailed(ProvisionerError):
    """One or more hosts failed during a run; the others finished their steps."""

    def __init__(self, failures: dict[str, ProvisionerError]) -> None:
        self.failures = failures
        super().__init__("; ".join(f"{h}: {_host_message(e)}" for h, e in failures.items()))

    def lines(self) -> list[str]:
        out: list[str] = []
        for host, error in self.failures.items():
            out += error.lines() if isinstance(error, HostError) else [f"{host}: {error}"]
        return out


class NotReadyError(ProvisionerError):
    """Nodes did not all become Ready before the deadline."""

    def __init__(self, message: str, not_ready: Sequence[object]) -> None:
        self.not_ready = not_ready
        super().__init__(message)


class KubeconfigError(ProvisionerError):
    """A kubeconfig could not be read, merged or verified."""


class KubeconfigConflict(KubeconfigError):
    """The merge target already has entries with this cluster's names that belong to something
    else; nothing was written (``--replace`` overwrites them)."""

    exit_code = 2

    def __init__(self, problems: list[str], hint: str) -> None:
        self.problems = problems
        self.hint = hint
        super().__init__("; ".join([*problems, hint]))

    def lines(self) -> list[str]:
        return [*self.problems, self.hint]


class LocalFileError(ProvisionerError):
    """A file on this machine could not be read or written (path and what is wrong)."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")


def _host_message(error: ProvisionerError) -> str:
    return error.message if isinstance(error, HostError) else str(error)


def _short(command: str, limit: int = 120) -> str:
    one_line = " ".join(command.split())
    return one_line if len(one_line) <= limit else one_line[: limit - 1] + "…"
