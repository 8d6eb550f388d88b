"""Secrets (join token, sudo password) and the redaction that keeps them out of logs and output.

A ``Secret`` never prints itself. Every secret created is registered with the process-wide
redactor, which logging handlers and the console use to mask it wherever it would appear.
"""

from __future__ import annotations

import logging
import re
import threading

MASK = "***"

# k3s join tokens have a recognisable shape; mask it even if it was never wrapped in a Secret.
_K3S_TOKEN = re.compile(r"K10[0-9a-f]{64}::[A-Za-z0-9_.-]+:[A-Za-z0-9_.\-]+")
# kubeadm bootstrap tokens: 6.16 characters.
_BOOTSTRAP_TOKEN = re.compile(r"\b[a-z0-9]{6}\.[a-z0-9]{16}\b")


class Redactor:
    """Knows every secret value of this process and masks them in text."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._longest_first: tuple[str, ...] = ()  # sorted once per new value, not per call
        self._lock = threading.Lock()

    def add(self, value: str) -> None:
        """Remember a secret value (and the secret part of a k3s token) for masking."""
        if not value or len(value) < 4:
            return
        with self._lock:
            known = len(self._values)
            self._values.add(value)
            if "::" in value and ":" in value.split("::", 1)[1]:
                self._values.add(value.split("::", 1)[1].split(":", 1)[1])
            if len(self._values) != known:
                self._longest_first = tuple(sorted(self._values, key=len, reverse=True))

    def redact(self, text: str) -> str:
        """Return ``text`` with every known secret and every token-shaped string masked."""
        if not text:
            return text
        for value in self._longest_first:
            if value in text:
                text = text.replace(value, MASK)
        text = _K3S_TOKEN.sub(MASK, text)
        return _BOOTSTRAP_TOKEN.sub(MASK, text)


REDACTOR = Redactor()


class Secret:
    """A secret string. ``str()``/``repr()`` show ``***``; ``reveal()`` returns the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        REDACTOR.add(value)

    def reveal(self) -> str:
        """The real value. Use only to hand it to a file on a host or to a process's stdin."""
        return self._value

    def __str__(self) -> str:
        return MASK

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets in the formatted message of every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = REDACTOR.redact(message)
        if redacted != message or record.args:
            record.msg = redacted
            record.args = None
        return True
