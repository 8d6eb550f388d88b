"""TEST DOUBLE: the lab network, bridge br-lab on 10.231.0.0/24 (not product code).

This machine is 10.231.0.1 on br-lab; hosts get static addresses from .11 upward. No NAT, no
forwarding and no default route in guests: lab traffic stays between this machine and the hosts.
Several labs share the bridge, so addresses are claimed in a machine-wide registry (one file per
address, naming the lab state that owns it) under the machine lock.
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Iterable
from pathlib import Path

from provisioner_lab.system import LabError, run

BRIDGE = "br-lab"
NETWORK = ipaddress.IPv4Network("10.231.0.0/24")
HOST_SIDE_ADDRESS = "10.231.0.1"
FIRST_HOST_OCTET = 11
LAST_HOST_OCTET = 254


def allocate(count: int, used: Iterable[str], first: int = FIRST_HOST_OCTET, last: int = LAST_HOST_OCTET) -> list[str]:
    """The ``count`` lowest free addresses of 10.231.0.<first..last>, skipping ``used``."""
    taken = {ipaddress.IPv4Address(a) for a in used}
    out: list[str] = []
    for octet in range(first, last + 1):
        if len(out) == count:
            break
        addr = NETWORK.network_address + octet
        if addr not in taken:
            out.append(str(addr))
    if len(out) < count:
        raise LabError(f"no free lab address left in {NETWORK} for {count} more host(s)")
    return out


# ---- bridge --------------------------------------------------------------------------------


def bridge_exists(bridge: str = BRIDGE) -> bool:
    """True when the bridge interface exists on this machine."""
    return Path(f"/sys/class/net/{bridge}/bridge").is_dir()


def bridge_ports(bridge: str = BRIDGE) -> list[str]:
    """Interfaces attached to the bridge (host sides of running lab hosts, whoever started them)."""
    try:
        return sorted(os.listdir(f"/sys/class/net/{bridge}/brif"))
    except OSError:
        return []


def ensure_bridge(bridge: str = BRIDGE) -> bool:
    """Create the bridge with 10.231.0.1/24 and bring it up. Already done: exists with that
    address and up. Returns True if it had to be created."""
    created = False
    if not bridge_exists(bridge):
        if Path(f"/sys/class/net/{bridge}").exists():
            raise LabError(f"{bridge} exists but is not a bridge")
        run(["ip", "link", "add", bridge, "type", "bridge"])
        created = True
    addrs = run(["ip", "-o", "-4", "addr", "show", "dev", bridge]).stdout
    if f" {HOST_SIDE_ADDRESS}/{NETWORK.prefixlen} " not in addrs:
        run(["ip", "addr", "add", f"{HOST_SIDE_ADDRESS}/{NETWORK.prefixlen}", "dev", bridge])
    run(["ip", "link", "set", bridge, "up"])
    return created


def delete_bridge_if_unused(bridge: str = BRIDGE) -> bool:
    """Delete the bridge when nothing is attached to it any more. True if deleted."""
    if not bridge_exists(bridge) or bridge_ports(bridge):
        return False
    run(["ip", "link", "del", bridge])
    return True


# ---- machine-wide address registry --------------------------------------------------------


class AddressRegistry:
    """Claimed lab addresses on this machine: ``<dir>/<address>`` holds JSON naming its owner.

    Use only while holding the machine lock. An entry is stale (and dropped) when the lab state
    file it names is gone or no longer lists that address.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _entries(self) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        if not self.directory.is_dir():
            return out
        for f in self.directory.iterdir():
            try:
                ipaddress.IPv4Address(f.name)
                out[f.name] = json.loads(f.read_text())
            except (ValueError, OSError):
                continue
        return out

    @staticmethod
    def _owner_lists(entry: dict[str, str], address: str) -> bool:
        try:
            state = json.loads(Path(entry["state"]).read_text())
        except (OSError, ValueError, KeyError):
            return False
        return any(h.get("address") == address for h in state.get("hosts", []))

    def claimed(self) -> dict[str, dict[str, str]]:
        """Live claims {address: {"state", "lab", "host"}}, after dropping stale ones."""
        live = {}
        for addr, entry in self._entries().items():
            if self._owner_lists(entry, addr):
                live[addr] = entry
            else:
                (self.directory / addr).unlink(missing_ok=True)
        return live

    def claim(self, address: str, state_file: Path, lab: str, host: str) -> None:
        """Record ``address`` as owned by ``host`` of the lab whose state is ``state_file``."""
        self.directory.mkdir(parents=True, exist_ok=True)
        data = json.dumps({"state": os.fspath(state_file), "lab": lab, "host": host})
        try:
            fd = os.open(self.directory / address, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError as exc:
            raise LabError(f"address {address} is already claimed by another lab") from exc
        with os.fdopen(fd, "w") as f:
            f.write(data + "\n")

    def release(self, address: str, state_file: Path) -> None:
        """Drop the claim on ``address`` if ``state_file``'s lab owns it."""
        f = self.directory / address
        try:
            entry = json.loads(f.read_text())
        except (OSError, ValueError):
            return
        if entry.get("state") == os.fspath(state_file):
            f.unlink(missing_ok=True)

    def owned_by_others(self, state_file: Path) -> dict[str, dict[str, str]]:
        """Live claims of labs other than the one whose state is ``state_file``."""
        return {a: e for a, e in self.claimed().items() if e.get("state") != os.fspath(state_file)}
