"""Free space: is there room on a host for what its plan writes? Pure functions of plan and facts.

What a plan needs, per filesystem, is the sum of:

- its uploads, each counted in full at its path (an upload writes a whole temporary copy next to
  the old file before the rename);
- the estimates its commands declare (``Command.space``: packages, a downloaded binary);
- for an SSH user other than root, its largest upload once more in /tmp (uploads are staged
  there before they are installed as root);

plus ``MARGIN`` per filesystem. Each path counts against the nearest directory the fact script
measured above it (``provisioner.facts.SPACE_DIRECTORIES``); directories on one filesystem
(same mount point) add up. A host whose free space was not measured is not checked.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from provisioner.facts import HostFacts, disk_for
from provisioner.steps import Command, HostPlan, Upload

MIB = 1 << 20
#: Room left over on every filesystem a plan writes to (logs, journals, the service's own files).
MARGIN = 32 * MIB
STAGING_DIR = "/tmp"


@dataclass(frozen=True)
class Shortage:
    """Too little free space on one filesystem of one host for what the plan writes there."""

    host: str
    directories: tuple[str, ...]  # the measured directories the plan writes below
    mount: str
    needed: int  # bytes, margin included
    free: int

    def line(self) -> str:
        where = ", ".join(self.directories)
        return (
            f"{self.host}: not enough free space for {where} (filesystem {self.mount}): "
            f"needs {size(self.needed)} (what the plan writes there + {size(MARGIN)} margin), "
            f"{size(self.free)} free; free up space there and rerun (nothing was changed)"
        )


def size(count: int) -> str:
    """Bytes for people: 512 B, 1.5 MiB, 2.0 GiB."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def upload_size(upload: Upload) -> int:
    """Bytes an upload writes (a local file's size on this machine; 0 if it is not readable)."""
    if upload.local_file is not None:
        try:
            return upload.local_file.stat().st_size
        except OSError:
            return 0
    content = upload.content
    return len(content.encode() if isinstance(content, str) else content)


def writes(plan: HostPlan, *, staged: bool = False) -> list[tuple[str, int]]:
    """(path, bytes) for everything the plan writes on its host, in plan order."""
    out: list[tuple[str, int]] = []
    largest = 0
    for step in plan.steps:
        for op in step.operations:
            if isinstance(op, Upload):
                count = upload_size(op)
                out.append((op.path, count))
                largest = max(largest, count)
            elif isinstance(op, Command):
                out += list(op.space)
    if staged and largest:
        out.append((STAGING_DIR, largest))
    return out


def shortages(facts: HostFacts, plan: HostPlan, *, staged: bool = False) -> list[Shortage]:
    """Filesystems of the host with less free space than the plan needs there (none when the
    plan writes nothing or free space was not measured)."""
    needed: dict[str, int] = defaultdict(int)
    directories: dict[str, set[str]] = defaultdict(set)
    free: dict[str, int] = {}
    for path, count in writes(plan, staged=staged):
        disk = disk_for(facts.disks, path)
        if disk is None:
            continue
        needed[disk.mount] += count
        directories[disk.mount].add(disk.directory)
        free[disk.mount] = disk.free_bytes
    return [
        Shortage(plan.host.name, tuple(sorted(directories[mount])), mount, total + MARGIN, free[mount])
        for mount, total in needed.items()
        if total + MARGIN > free[mount]
    ]
