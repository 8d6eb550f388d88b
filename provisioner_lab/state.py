"""TEST DOUBLE: the on-machine lab's record of itself (not product code).

``<state>/<name>/lab.json`` lists the lab's hosts (name, role, address), the base image they run
on and where the inventory files were written. Also here: the pure planning of host names for a
requested size.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from provisioner_lab.system import LabError, write_file

ROLES = ("server", "agent")


@dataclass(frozen=True)
class HostRecord:
    """One lab host as recorded: its name (= hostname), role and static address."""

    name: str
    role: str
    address: str


@dataclass
class LabState:
    """Everything ``lab.json`` holds about one lab."""

    name: str
    base_rootfs: str
    hosts: list[HostRecord] = field(default_factory=list)
    user: str = "root"
    distribution: str = "k3s"
    inventory: str | None = None
    known_hosts: str | None = None
    ssh_config: str | None = None
    package_repo: str | None = None  # kubeadm labs: the Kubernetes repository URL in the inventory
    repo_url: str | None = None  # kubeadm labs: root URL of the local apt repositories

    @classmethod
    def load(cls, path: Path) -> LabState:
        """Read a state file written by :meth:`save`."""
        data = json.loads(path.read_text())
        hosts = [HostRecord(**h) for h in data.pop("hosts", [])]
        known = {f for f in cls.__dataclass_fields__}
        return cls(hosts=hosts, **{k: v for k, v in data.items() if k in known})

    def save(self, path: Path) -> None:
        """Write the state atomically, 0600."""
        write_file(path, json.dumps(asdict(self), indent=2) + "\n", mode=0o600)

    def count(self, role: str) -> int:
        """How many hosts of ``role`` the lab has."""
        return sum(1 for h in self.hosts if h.role == role)


def _index(name: str, lab: str, role: str) -> int:
    m = re.fullmatch(rf"{re.escape(lab)}-{role}(\d+)", name)
    return int(m.group(1)) if m else 0


def plan_new_hosts(lab: str, existing: list[HostRecord], servers: int, agents: int) -> list[tuple[str, str]]:
    """(name, role) of the hosts to add so the lab has ``servers`` servers and ``agents`` agents.

    Servers first, numbered after the highest existing index of their role. Refuses to shrink.
    """
    if servers < 0 or agents < 0:
        raise LabError("host counts must not be negative")
    out: list[tuple[str, str]] = []
    for role, wanted in (("server", servers), ("agent", agents)):
        have = [h for h in existing if h.role == role]
        if wanted < len(have):
            raise LabError(
                f"lab {lab!r} already has {len(have)} {role}(s); it cannot shrink to {wanted} "
                f"(run `provisioner lab down --name {lab}` first)"
            )
        top = max((_index(h.name, lab, role) for h in have), default=0)
        out += [(f"{lab}-{role}{top + i}", role) for i in range(1, wanted - len(have) + 1)]
    return out
