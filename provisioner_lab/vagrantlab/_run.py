"""Running commands for the Vagrant lab tooling: one error type, output captured."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence


class VagrantLabError(Exception):
    """A step of the Vagrant lab tooling failed; the message is one line for the person running it."""


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    timeout: float | None = None,
    env: dict[str, str] | None = None,
    cwd: os.PathLike[str] | str | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run a command with stdin closed; with check, raise VagrantLabError naming it and its last line."""
    args = [os.fspath(a) for a in argv]
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd, stdin=subprocess.DEVNULL)
    except FileNotFoundError as exc:
        raise VagrantLabError(f"command not found: {args[0]}") from exc
    if check and proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        raise VagrantLabError(f"`{' '.join(args[:4])}…` failed with exit {proc.returncode}: {lines[-1] if lines else ''}")
    return proc
