"""TEST DOUBLE support code: where the on-machine lab keeps its files (not product code).

Defaults: lab state in /var/lib/provisioner-lab/<name>/, base images in /var/cache/provisioner-lab/,
and the machine-wide address registry + lock in /run/provisioner-lab/ (br-lab is machine-wide, so
labs with different state roots still share it). ``PROVISIONER_LAB_DIR=/x`` (or ``root=``) moves
state to /x/labs/<name>/ and the cache to /x/cache/; ``PROVISIONER_LAB_CACHE_DIR`` moves only the
cache (handy to reuse one base image from tests with a temporary state root).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

DEFAULT_STATE_ROOT = Path("/var/lib/provisioner-lab")
DEFAULT_CACHE_ROOT = Path("/var/cache/provisioner-lab")
DEFAULT_RUN_ROOT = Path("/run/provisioner-lab")

_NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,19}$|^[a-z][a-z0-9-]{0,18}[a-z0-9]$")


def check_lab_name(name: str) -> str:
    """Return ``name`` if it can prefix host names (lowercase letters, digits, '-'; at most 20 chars)."""
    if not _NAME_RE.match(name):
        raise ValueError(f"lab name {name!r}: use 1-20 lowercase letters, digits or '-', starting with a letter")
    return name


@dataclass(frozen=True)
class LabPaths:
    """The three roots the lab uses on this machine."""

    state_root: Path
    cache_root: Path
    run_root: Path

    @classmethod
    def resolve(cls, root: Path | str | None = None) -> LabPaths:
        """Roots from ``root`` if given, else from the environment, else the defaults."""
        base = root if root is not None else os.environ.get("PROVISIONER_LAB_DIR") or None
        if base is not None:
            b = Path(base).absolute()
            state, cache = b / "labs", b / "cache"
        else:
            state, cache = DEFAULT_STATE_ROOT, DEFAULT_CACHE_ROOT
        cache_env = os.environ.get("PROVISIONER_LAB_CACHE_DIR")
        if cache_env:
            cache = Path(cache_env).absolute()
        run_env = os.environ.get("PROVISIONER_LAB_RUN_DIR")
        run_root = Path(run_env).absolute() if run_env else DEFAULT_RUN_ROOT
        return cls(state_root=state, cache_root=cache, run_root=run_root)

    def lab_dir(self, name: str) -> Path:
        """State directory of lab ``name``."""
        return self.state_root / name

    def lab_lock(self, name: str) -> Path:
        """Lock file serialising up/down of lab ``name`` (kept when the lab goes down)."""
        return self.state_root / ".locks" / f"{name}.lock"

    @property
    def machine_lock(self) -> Path:
        """Machine-wide lock for address allocation and the bridge."""
        return self.run_root / "lock"

    @property
    def address_dir(self) -> Path:
        """Machine-wide registry: one file per claimed lab address."""
        return self.run_root / "addresses"
