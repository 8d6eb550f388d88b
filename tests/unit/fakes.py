"""A simulated k3s cluster on FakeRemotes, for unit tests of whole actions.

It answers the commands the k3s distribution sends (fact script, install script, systemctl,
node-token, kubectl) from a small in-memory model, so tests can assert which commands a run sends
to which host, and what the hosts look like afterwards. Not a model of k3s beyond that.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field

from provisioner.distros import k3s
from provisioner.inventory import Host, Inventory
from provisioner.testing import FakeRemote

TOKEN = "K10" + "ab" * 32 + "::server:" + "f00dfeedcafe" * 3
ADMIN_KUBECONFIG = """apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: Q0EK
    server: https://127.0.0.1:6443
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
preferences: {}
users:
- name: default
  user:
    client-certificate-data: Q0VSVAo=
    client-key-data: S0VZCg==
"""


@dataclass
class SimHost:
    """What k3s looks like on one simulated host."""

    host: Host
    hostname: str = ""
    machine_id: str = ""
    role: str | None = None
    version: str | None = None
    active: bool = False
    config_node_name: str | None = None
    restarts: int = 0
    installs: int = 0
    systemd: bool = True
    arch: str = "x86_64"
    sudo_user: str = "root"


@dataclass
class FakeK3sCluster:
    """Several simulated hosts sharing one simulated API."""

    inventory: Inventory
    nodes: dict[str, dict] = field(default_factory=dict)  # name -> {"ready": bool, "ip": str, "roles": [...]}
    hosts: dict[str, SimHost] = field(default_factory=dict)
    remotes: dict[str, FakeRemote] = field(default_factory=dict)
    never_ready: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        for index, host in enumerate(self.inventory.hosts):
            self.hosts[host.name] = SimHost(host, hostname=host.name, machine_id=f"{index:032x}")

    # --- building remotes ----------------------------------------------------------------
    def connector(self, inventory: Inventory, host: Host) -> FakeRemote:
        """Stands in for ``ssh_connector``: a fresh FakeRemote bound to the simulated host."""
        remote = FakeRemote(host.name, host.address)
        sim = self.hosts[host.name]
        previous = self.remotes.get(host.name)
        if previous is not None:
            remote.files = previous.files
            remote.modes = previous.modes
        remote.on(r"os\.id=", handler=lambda r, c: (0, self._facts(sim, r), ""))
        remote.on(r"k3s-install\.sh", handler=lambda r, c: self._install(sim, r, c))
        remote.on(r"systemctl .*restart k3s", handler=lambda r, c: self._restart(sim))
        remote.on(r"cat /var/lib/rancher/k3s/server/node-token", handler=lambda r, c: self._token(sim))
        remote.on(r"kubectl get nodes -o json", handler=lambda r, c: self._list(sim))
        remote.on(r"kubectl get --raw=/readyz", handler=lambda r, c: (0, "ok", "") if sim.active else (1, "", "refused"))
        remote.on(r"kubectl delete node (\S+)", handler=lambda r, c: self._delete(c))
        remote.on(r"journalctl", stdout="k3s[1]: something went wrong\n")
        self.remotes[host.name] = remote
        return remote

    # --- simulated behaviour ---------------------------------------------------------------
    def _facts(self, sim: SimHost, remote: FakeRemote) -> str:
        lines = [
            "os.id=debian",
            "os.id_like=",
            "os.version_id=12",
            "os.pretty_name=Debian GNU/Linux 12 (bookworm)",
            f"arch={sim.arch}",
            "kernel=6.1.0",
            "mem_kib=4000000",
            "cpus=2",
            f"systemd={'yes' if sim.systemd else 'no'}",
            f"hostname={sim.hostname}",
            f"machine_id={sim.machine_id}",
            f"user={sim.sudo_user}",
            "tool.curl=yes",
        ]
        if sim.role:
            unit = k3s.UNITS[sim.role]
            lines.append(f"k3s.version={sim.version}")
            lines.append(f"k3s.unit.{unit}={'active' if sim.active else 'inactive'}")
        config = remote.files.get(k3s.CONFIG)
        if config is not None:
            lines.append(f"k3s.config_sha256={hashlib.sha256(config).hexdigest()}")
        return "\n".join(lines) + "\n"

    def _install(self, sim: SimHost, remote: FakeRemote, command: str) -> tuple[int, str, str]:
        role = re.search(r"INSTALL_K3S_EXEC=(\w+)", command).group(1)  # type: ignore[union-attr]
        version = re.search(r"INSTALL_K3S_VERSION=(\S+)", command)
        config = remote.files.get(k3s.CONFIG, b"").decode()
        if role == "agent" and TOKEN not in config:
            return 1, "", "[ERROR] no token"
        sim.role = role
        sim.version = version.group(1) if version else "v1.31.0+k3s1"
        sim.installs += 1
        sim.active = True
        name = re.search(r'node-name: "([^"]+)"', config).group(1)  # type: ignore[union-attr]
        sim.config_node_name = name
        if role == "server":
            remote.files[k3s.ADMIN_KUBECONFIG] = ADMIN_KUBECONFIG.encode()
        self.nodes[name] = {"ready": name not in self.never_ready, "ip": sim.host.node_ip or sim.host.address, "role": role,
                            "version": sim.version}
        return 0, "[INFO] installed\n", ""

    def _restart(self, sim: SimHost) -> tuple[int, str, str]:
        sim.restarts += 1
        sim.active = True
        if sim.config_node_name in self.nodes:
            self.nodes[sim.config_node_name]["ready"] = sim.config_node_name not in self.never_ready
        return 0, "", ""

    def _token(self, sim: SimHost) -> tuple[int, str, str]:
        if sim.role == "server":
            return 0, TOKEN + "\n", ""
        return 1, "", "cat: /var/lib/rancher/k3s/server/node-token: No such file or directory"

    def _list(self, sim: SimHost) -> tuple[int, str, str]:
        if not (sim.role == "server" and sim.active):
            return 1, "", "The connection to the server 127.0.0.1:6443 was refused"
        items = []
        for name, node in self.nodes.items():
            labels = {"kubernetes.io/hostname": name}
            if node["role"] == "server":
                labels["node-role.kubernetes.io/control-plane"] = "true"
            items.append(
                {
                    "metadata": {"name": name, "labels": labels},
                    "spec": {},
                    "status": {
                        "conditions": [
                            {"type": "Ready", "status": "True" if node["ready"] else "Unknown",
                             "reason": "KubeletReady" if node["ready"] else "NodeStatusUnknown",
                             "message": "" if node["ready"] else "Kubelet stopped posting node status."}
                        ],
                        "addresses": [{"type": "InternalIP", "address": node["ip"]}],
                        "nodeInfo": {"kubeletVersion": node["version"]},
                    },
                }
            )
        return 0, json.dumps({"kind": "NodeList", "items": items}), ""

    def _delete(self, command: str) -> tuple[int, str, str]:
        name = re.search(r"delete node (\S+)", command).group(1)  # type: ignore[union-attr]
        if self.nodes.pop(name, None) is None:
            return 1, "", f'Error from server (NotFound): nodes "{name}" not found'
        return 0, f'node "{name}" deleted\n', ""

    # --- helpers for tests ------------------------------------------------------------------
    def stop(self, name: str) -> None:
        """The service stopped on a host; its node goes NotReady."""
        sim = self.hosts[name]
        sim.active = False
        if sim.config_node_name in self.nodes:
            self.nodes[sim.config_node_name]["ready"] = False

    def all_commands(self) -> list[str]:
        return [c for r in self.remotes.values() for _, c in r.commands]
