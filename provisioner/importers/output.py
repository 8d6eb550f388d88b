"""Where an imported or exported inventory goes: a file written atomically, never over another one
unless asked."""

from __future__ import annotations

from pathlib import Path

from provisioner.errors import UsageError
from provisioner.kubeconfig import write_atomic


def write_inventory(path: Path, text: str, *, force: bool) -> None:
    """Write ``text`` to ``path`` (0644) through a temporary file and a rename.

    Refuses (exit 2) when ``path`` exists and ``force`` is not set: nothing is overwritten by surprise.
    """
    if path.exists() and not force:
        raise UsageError(f"{path} exists; pass --force to overwrite it")
    if path.exists() and not path.is_file():
        raise UsageError(f"{path} is not a regular file")
    write_atomic(path, text, 0o644)
