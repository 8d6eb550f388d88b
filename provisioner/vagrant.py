"""Inventories for the Vagrant lab, built from `vagrant ssh-config` and the VMs themselves.

Each VM has two networks: Vagrant's NAT (10.0.2.15 on every VirtualBox VM, which breaks Flannel
when a tool picks it) and the private network the Vagrantfile defines. The builder asks each VM
which interface holds its private address and writes that address as ``address`` and ``node_ip``
and that interface as ``flannel_iface``. It also records each VM's SSH host keys for its private
address in a known_hosts file next to the inventory, so ``up`` checks them (``strict``).
"""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import paramiko

from provisioner import templates
from provisioner.errors import ProvisionerError
from provisioner.kubeconfig import write_atomic
from provisioner.remote import Remote

DISCOVERY_COMMAND = "ip -o -4 addr show; echo '--- host keys'; cat /etc/ssh/ssh_host_*_key.pub 2>/dev/null"


class VagrantError(ProvisionerError):
    """Vagrant is missing, the VMs are not up, or a VM has no address on the private network."""


@dataclass(frozen=True)
class Machine:
    """One VM as `vagrant ssh-config` describes it (how Vagrant itself reaches it)."""

    name: str
    hostname: str
    port: int
    user: str
    identity_file: str


@dataclass(frozen=True)
class Interface:
    name: str
    address: ipaddress.IPv4Interface


@dataclass(frozen=True)
class Discovered:
    """What a VM told about itself: its IPv4 interfaces and its SSH host keys."""

    interfaces: tuple[Interface, ...]
    host_keys: tuple[str, ...]  # "ssh-ed25519 AAAA..." lines


def parse_ssh_config(text: str) -> list[Machine]:
    """Machines from `vagrant ssh-config` output (parsed with paramiko's OpenSSH config parser)."""
    config = paramiko.SSHConfig.from_text(text)
    machines = []
    for name in sorted(config.get_hostnames() - {"*"}, key=_natural):
        entry = config.lookup(name)
        found: str | list[str] = entry.get("identityfile") or []
        files = [found] if isinstance(found, str) else list(found)
        if "hostname" not in entry or not files:
            raise VagrantError(f"`vagrant ssh-config` gave no HostName or IdentityFile for {name}")
        machines.append(Machine(name, entry["hostname"], int(entry.get("port", 22)), entry.get("user", "vagrant"), files[0]))
    if not machines:
        raise VagrantError("`vagrant ssh-config` listed no machines; run `vagrant up` first")
    return machines


def parse_discovery(text: str) -> Discovered:
    """Interfaces from `ip -o -4 addr show`, then host keys after the marker line."""
    addresses, _, keys = text.partition("--- host keys")
    interfaces = []
    for line in addresses.splitlines():
        match = re.match(r"^\d+:\s+(\S+)\s+inet\s+(\S+)", line)
        if match:
            interfaces.append(Interface(match.group(1).split("@")[0], ipaddress.IPv4Interface(match.group(2))))
    host_keys = tuple(" ".join(line.split()[:2]) for line in keys.splitlines() if line.startswith(("ssh-", "ecdsa-")))
    return Discovered(tuple(interfaces), host_keys)


def private_interface(machine: str, discovered: Discovered, network: ipaddress.IPv4Network) -> Interface:
    """The one interface whose address is in the private network."""
    matches = [i for i in discovered.interfaces if i.address.ip in network]
    if len(matches) == 1:
        return matches[0]
    seen = ", ".join(f"{i.name} {i.address}" for i in discovered.interfaces) or "none"
    if not matches:
        raise VagrantError(
            f"{machine} has no address in {network} (its addresses: {seen}); is the private network up, "
            "and does --network match the Vagrantfile's NETWORK?"
        )
    raise VagrantError(f"{machine} has several addresses in {network} ({seen}); cannot tell which is the private one")


def role_of(name: str, servers: tuple[str, ...]) -> str:
    """``server`` for the named servers (default: machines called controller*), else ``agent``."""
    if servers:
        return "server" if name in servers else "agent"
    return "server" if name.startswith(("controller", "server")) else "agent"


def render_inventory(
    machines: list[Machine],
    discovered: dict[str, Discovered],
    *,
    network: ipaddress.IPv4Network,
    cluster_name: str,
    distribution: str,
    version: str | None,
    known_hosts: Path,
    servers: tuple[str, ...] = (),
) -> tuple[str, str]:
    """The inventory YAML and the known_hosts text for these machines."""
    hosts = []
    known: list[str] = []
    for machine in machines:
        interface = private_interface(machine.name, discovered[machine.name], network)
        address = str(interface.address.ip)
        hosts.append(
            {
                "name": machine.name,
                "address": address,
                "role": role_of(machine.name, servers),
                "node_ip": address,
                "flannel_iface": interface.name,
                "private_key": machine.identity_file,
            }
        )
        known += [f"{address} {key}" for key in discovered[machine.name].host_keys]
    if not any(h["role"] == "server" for h in hosts):
        raise VagrantError("no machine is a server: name one controller* or pass --server NAME")
    users = {m.user for m in machines}
    inventory = templates.render(
        "vagrant/inventory.yaml.j2",
        cluster_name=cluster_name,
        distribution=distribution,
        version=version,
        user=users.pop() if len(users) == 1 else "vagrant",
        known_hosts=str(known_hosts),
        network=str(network),
        hosts=hosts,
    )
    return inventory, "".join(line + "\n" for line in known)


# --- talking to Vagrant and the VMs ---------------------------------------------------------------


def vagrant_ssh_config(folder: Path) -> str:
    """`vagrant ssh-config` for every machine of the Vagrantfile in ``folder``."""
    try:
        result = subprocess.run(["vagrant", "ssh-config"], cwd=folder, capture_output=True, text=True, timeout=300)
    except FileNotFoundError:
        raise VagrantError("vagrant is not installed (https://developer.hashicorp.com/vagrant/install)") from None
    if result.returncode != 0:
        detail = " ".join(result.stderr.split()) or "no output"
        if len(detail) > 300:
            detail = detail[:299] + "…"
        raise VagrantError(f"`vagrant ssh-config` failed in {folder}: {detail}")
    return result.stdout


def discover(remotes: dict[str, Remote]) -> dict[str, Discovered]:
    """Ask every VM, in parallel, for its interfaces and host keys."""

    def ask(item: tuple[str, Remote]) -> tuple[str, Discovered]:
        name, remote = item
        return name, parse_discovery(remote.run(DISCOVERY_COMMAND, timeout=60).stdout)

    with ThreadPoolExecutor(max_workers=max(1, min(16, len(remotes)))) as pool:
        return dict(pool.map(ask, remotes.items()))


def connect_through_vagrant(machine: Machine) -> Remote:
    """A session over the path Vagrant itself uses (its forwarded port and key). Vagrant made the VM
    and does not check this key either; the keys read over it are then pinned for the private address."""
    from provisioner.inventory import parse_inventory
    from provisioner.remote import connect

    inventory = parse_inventory(
        templates.render(
            "vagrant/discovery.yaml.j2",
            machine=machine.name,
            hostname=machine.hostname,
            port=machine.port,
            user=machine.user,
            key=machine.identity_file,
        ),
        "<vagrant ssh-config>",
        check_files=False,
    )
    return connect(inventory, inventory.hosts[0], ssh_config_path=os.devnull)


def write_inventory(
    folder: Path,
    out: Path,
    *,
    network: str,
    cluster_name: str,
    distribution: str,
    version: str | None,
    servers: tuple[str, ...] = (),
    connector: Callable[[Machine], Remote] = connect_through_vagrant,
    ssh_config: str | None = None,
) -> tuple[Path, Path, list[Machine]]:
    """Build the inventory and known_hosts for the running Vagrant lab; return their paths."""
    net = ipaddress.IPv4Network(network if "/" in network else f"{network}.0/24", strict=False)
    machines = parse_ssh_config(ssh_config if ssh_config is not None else vagrant_ssh_config(folder))
    remotes = {m.name: connector(m) for m in machines}
    try:
        found = discover(remotes)
    finally:
        for remote in remotes.values():
            remote.close()
    known_hosts = out.with_suffix(".known_hosts")
    inventory, known = render_inventory(
        machines,
        found,
        network=net,
        cluster_name=cluster_name,
        distribution=distribution,
        version=version,
        known_hosts=known_hosts.resolve(),
        servers=servers,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(known_hosts, known, 0o644)
    write_atomic(out, inventory, 0o644)
    return out, known_hosts, machines


def _natural(name: str) -> tuple[object, ...]:
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))
