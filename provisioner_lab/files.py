"""TEST DOUBLE: the files `provisioner lab up` writes for its users (not product code).

Pure functions building the inventory YAML, the known_hosts file and the ssh_config of a lab.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

from provisioner_lab.state import HostRecord

#: Environment variable the provisioner reads the sudo password from when ``ssh.user`` is not root.
SUDO_PASSWORD_ENV = "PROVISIONER_SUDO_PASSWORD"
_PLAIN_RE = re.compile(r"^(?:[/A-Za-z][A-Za-z0-9_./+-]*|\d{1,3}(?:\.\d{1,3}){3})$")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "y", "n", "null", "~"}


def yaml_scalar(value: str | int) -> str:
    """``value`` as a YAML scalar: plain when unambiguous as a string, else double-quoted."""
    if isinstance(value, int):
        return str(value)
    if _PLAIN_RE.match(value) and value.lower() not in _YAML_WORDS:
        return value
    return json.dumps(value)  # a JSON string is a valid YAML double-quoted scalar


#: What kubeadm lab inventories ask for (the stand-in packages are 1.31.x).
KUBEADM_FLANNEL_VERSION = "v0.26.1"
KUBEADM_POD_NETWORK_CIDR = "10.244.0.0/16"


def inventory_text(
    *,
    lab: str,
    hosts: Sequence[HostRecord],
    version: str,
    k3s_binary: Path | None,
    install_script: Path | None,
    user: str,
    private_key: Path,
    known_hosts: Path,
    distribution: str = "k3s",
    package_repo: str | None = None,
    proxy_jump: str | None = None,
) -> str:
    """Inventory YAML for the lab: cluster (k3s stand-in air-gapped, or kubeadm from the lab's
    local package repository), ssh settings, hosts. For kubeadm, ``version`` is the minor
    series ("1.31") and ``package_repo`` the flat repository URL (ends with "/"). With
    ``proxy_jump`` every host is reached through that jump host (``ssh.proxy_jump``)."""
    q = yaml_scalar
    lines = [f'# Written by `provisioner lab up` for the on-machine test lab "{lab}" (systemd-nspawn hosts).']
    if distribution == "kubeadm":
        if not package_repo:
            raise ValueError("a kubeadm inventory needs package_repo")
        lines += [
            "# kubeadm, kubelet and kubectl here are STAND-INs for testing (provisioner_lab/standin),",
            "# served by the lab's local apt repository; containerd and runc are Debian's real packages.",
            "cluster:",
            f"  name: {q(lab)}",
            "  distribution: kubeadm",
            f"  version: {q(version)}",
            f"  package_repo: {q(package_repo)}",
            f"  flannel_version: {q(KUBEADM_FLANNEL_VERSION)}",
            f"  pod_network_cidr: {q(KUBEADM_POD_NETWORK_CIDR)}",
        ]
    else:
        lines += [
            "# k3s here is a STAND-IN for testing (provisioner_lab/standin), not real k3s.",
            "cluster:",
            f"  name: {q(lab)}",
            "  distribution: k3s",
            f"  version: {q(version)}",
            "  airgap:",
            f"    k3s_binary: {q(str(k3s_binary))}",
            f"    install_script: {q(str(install_script))}",
        ]
    lines += [
        "ssh:",
        f"  user: {q(user)}",
    ]
    if user != "root":
        lines.append(f"  sudo_password_env: {SUDO_PASSWORD_ENV}")
    lines += [
        f"  private_key: {q(str(private_key))}",
        f"  known_hosts: {q(str(known_hosts))}",
        "  host_key_policy: strict",
    ]
    if proxy_jump is not None:
        lines.append(f"  proxy_jump: {q(proxy_jump)}")
    lines += ["hosts:"]
    lines += [f"  - {{name: {q(h.name)}, address: {q(h.address)}, role: {q(h.role)}}}" for h in hosts]
    return "\n".join(lines) + "\n"


def known_hosts_text(lab: str, entries: Sequence[tuple[str, str]]) -> str:
    """known_hosts lines ``<address> <keytype> <base64>`` from (address, public key line) pairs."""
    out = [f"# Written by `provisioner lab up` for lab {lab!r}: host keys made on this machine."]
    for address, pubkey in entries:
        keytype, blob = pubkey.split()[:2]
        out.append(f"{address} {keytype} {blob}")
    return "\n".join(out) + "\n"


def ssh_config_text(lab: str, hosts: Sequence[HostRecord], *, user: str, private_key: Path, known_hosts: Path) -> str:
    """ssh_config for ``ssh -F``: one block per host, reachable by name or address."""
    out = [f"# Written by `provisioner lab up` for lab {lab!r}. Use: ssh -F <this file> <host name>", ""]
    for h in hosts:
        out += [
            f"Host {h.name} {h.address}",
            f"  HostName {h.address}",
            f"  User {user}",
            f'  IdentityFile "{private_key}"',
            "  IdentitiesOnly yes",
            f'  UserKnownHostsFile "{known_hosts}"',
            "  GlobalKnownHostsFile /dev/null",
            "  StrictHostKeyChecking yes",
            "  ConnectTimeout 5",
            "  LogLevel ERROR",
            "",
        ]
    return "\n".join(out)
