"""A simulated k3s cluster on FakeRemotes, for unit tests of whole actions.

It answers the commands the k3s distribution sends (fact script, install script, systemctl,
node-token, kubectl) from a small in-memory model, so tests can assert which commands a run sends
to which host, and what the hosts look like afterwards. Not a model of k3s beyond that.
``FakeKubeadmCluster`` does the same for kubeadm on hosts already prepared (packages, containerd,
sysctls). Their remotes are strict: a command no rule answers fails the test.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from provisioner import hostos, templates
from provisioner.distros import k3s
from provisioner.distros.kubeadm import (
    ADMIN_CONF,
    CONTAINERD_CONFIG,
    PREFLIGHT_COMMANDS,
    Kubeadm,
    KubeadmFacts,
)
from provisioner.facts import HostFacts, parse_host_facts, parse_key_values
from provisioner.inventory import Host, Inventory
from provisioner.lock import LOCKED_MARK
from provisioner.testing import FakeRemote, Link, SimulatedRemote
from tests.unit.conftest import make_inventory

TOKEN = "K10" + "ab" * 32 + "::server:" + "f00dfeedcafe" * 3
#: The agent token k3s writes from the servers' ``agent-token`` (the fake keeps its secret part).
AGENT_TOKEN_PREFIX = "K10" + "ab" * 32 + "::node:"
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
    #: What the fact script's df reports: measured directory -> (mount point, free KiB).
    disks: dict[str, tuple[str, int]] = field(default_factory=dict)
    uninstalls: int = 0


@dataclass
class FakeK3sCluster:
    """Several simulated hosts sharing one simulated API."""

    inventory: Inventory
    nodes: dict[str, dict] = field(default_factory=dict)  # name -> {"ready": bool, "ip": str, "roles": [...]}
    hosts: dict[str, SimHost] = field(default_factory=dict)
    remotes: dict[str, FakeRemote] = field(default_factory=dict)
    never_ready: set[str] = field(default_factory=set)
    #: Day-2 simulation: API events in order, PDBs and pods (API JSON), nodes whose drain is
    #: refused, hosts whose uninstall fails, and how many nodes were cordoned after each change.
    events: list[str] = field(default_factory=list)
    pdbs: list[dict] = field(default_factory=list)
    pods: list[dict] = field(default_factory=list)
    drain_blocked: set[str] = field(default_factory=set)
    uninstall_fails: set[str] = field(default_factory=set)
    install_fails: set[str] = field(default_factory=set)
    cordoned_counts: list[int] = field(default_factory=list)
    #: The servers' etcd has no quorum: a running API answers every request with etcd's timeout.
    quorum_lost: bool = False

    def __post_init__(self) -> None:
        for index, host in enumerate(self.inventory.hosts):
            self.hosts[host.name] = SimHost(host, hostname=host.name, machine_id=f"{index:032x}")

    # --- building remotes ----------------------------------------------------------------
    def connector(self, inventory: Inventory, host: Host) -> FakeRemote:
        """Stands in for ``ssh_connector``: a fresh FakeRemote bound to the simulated host."""
        remote = self.new_remote(host)
        sim = self.hosts[host.name]
        previous = self.remotes.get(host.name)
        if previous is not None:
            remote.files = previous.files
            remote.modes = previous.modes
        remote.on(r"os\.id=", handler=lambda r, c: (0, self._facts(sim, r), ""))
        remote.on(r"k3s-install\.sh", handler=lambda r, c: self._install(sim, r, c))
        remote.on(r"systemctl .*restart k3s", handler=lambda r, c: self._restart(sim))
        remote.on(
            r"cat /var/lib/rancher/k3s/server/node-token /var/lib/rancher/k3s/server/agent-token", handler=lambda r, c: self._tokens(sim, r)
        )
        remote.on(r"cat /var/lib/rancher/k3s/server/node-token$", handler=lambda r, c: self._token(sim))
        remote.on(r"cat /var/lib/rancher/k3s/server/agent-token$", handler=lambda r, c: self._agent_token(sim, r))
        remote.on(r"kubectl get nodes -o json", handler=lambda r, c: self._list(sim))
        remote.on(r"kubectl get --raw=/readyz", handler=lambda r, c: (0, "ok", "") if sim.active else (1, "", "refused"))
        remote.on(r"kubectl delete node (\S+)", handler=lambda r, c: self._delete(c))
        remote.on(r"journalctl", stdout="k3s[1]: something went wrong\n")
        remote.on(r"kubectl (cordon|uncordon) (\S+)$", handler=lambda r, c: self._cordon(c))
        remote.on(r"kubectl drain (\S+) ", handler=lambda r, c: self._drain(c))
        remote.on(r"kubectl get pdb -A -o json", handler=lambda r, c: (0, json.dumps({"items": self.pdbs}), ""))
        remote.on(r"kubectl get pods -A --field-selector spec\.nodeName=(\S+) -o json", handler=lambda r, c: self._pods_on(c))
        remote.on(r"kubectl get node (\S+) -o jsonpath=", handler=lambda r, c: self._node_version(c))
        remote.on(r"^/usr/local/bin/k3s(-agent)?-uninstall\.sh$", handler=lambda r, c: self._uninstall(sim, r, c))
        remote.on(r"^rm -f /etc/rancher/k3s/config\.yaml", handler=lambda r, c: self._rm_config(r, sim))
        remote.on(LOCKED_MARK, stdout=f"{LOCKED_MARK}\n")  # the cluster lock is free
        self.remotes[host.name] = remote
        return remote

    def new_remote(self, host: Host) -> FakeRemote:
        """The remote of one session to ``host`` (strict: a command no rule answers fails)."""
        return FakeRemote(host.name, host.address, strict=True)

    # --- node operations (cordon, drain, uninstall) ----------------------------------------------
    def _cordon(self, command: str) -> tuple[int, str, str]:
        verb, name = re.search(r"kubectl (cordon|uncordon) (\S+)$", command).groups()  # type: ignore[union-attr]
        if name not in self.nodes:
            return 1, "", f'Error from server (NotFound): nodes "{name}" not found'
        self.nodes[name]["unschedulable"] = verb == "cordon"
        self.events.append(f"{verb} {name}")
        self.cordoned_counts.append(sum(1 for n in self.nodes.values() if n.get("unschedulable")))
        return 0, f"node/{name} {verb}ed\n", ""

    def _drain(self, command: str) -> tuple[int, str, str]:
        name = re.search(r"kubectl drain (\S+) ", command).group(1)  # type: ignore[union-attr]
        self.events.append(f"drain {name}")
        if name in self.drain_blocked:
            return (
                1,
                "",
                (
                    'error when evicting pods/"web-1" -n "default" (will retry after 5s): Cannot evict pod as it '
                    "would violate the pod's disruption budget.\nerror: timed out waiting for the condition"
                ),
            )
        self.pods = [p for p in self.pods if p["spec"]["nodeName"] != name]
        return 0, f"node/{name} drained\n", ""

    def _pods_on(self, command: str) -> tuple[int, str, str]:
        name = re.search(r"spec\.nodeName=(\S+)", command).group(1)  # type: ignore[union-attr]
        return 0, json.dumps({"items": [p for p in self.pods if p["spec"]["nodeName"] == name]}), ""

    def _node_version(self, command: str) -> tuple[int, str, str]:
        name = re.search(r"get node (\S+) -o", command).group(1)  # type: ignore[union-attr]
        node = self.nodes.get(name)
        if node is None:
            return 0, "", ""
        # the command is a shell `case` on "<version> <ready>"; answer as the shell would
        text = f"{node['version']} {'True' if node['ready'] else 'Unknown'}"
        match = re.search(r"case \"\$v\" in '?([^'*\"]*)'?(\*?)\" True\"\)", command)
        wanted = match.group(1) if match else ""
        if match and (text == f"{wanted} True" or (match.group(2) and text.startswith(wanted) and text.endswith(" True"))):
            return 0, "ready\n", ""
        if not match and text.endswith(" True"):
            return 0, "ready\n", ""
        return 0, text + "\n", ""

    def _uninstall(self, sim: SimHost, remote: FakeRemote, command: str) -> tuple[int, str, str]:
        if sim.host.name in self.uninstall_fails:
            return 1, "", "rm: cannot remove '/var/lib/rancher': Device or resource busy"
        self.events.append(f"uninstall {sim.host.name}")
        sim.role = None
        sim.version = None
        sim.active = False
        sim.uninstalls += 1
        remote.files.pop(k3s.ADMIN_KUBECONFIG, None)
        return 0, "stand-in k3s uninstalled\n", ""

    def _rm_config(self, remote: FakeRemote, sim: SimHost) -> tuple[int, str, str]:
        remote.files.pop(k3s.CONFIG, None)
        return 0, "", ""

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
            if sim.role == "server" and re.search(rb"^(cluster-init: true|server: )", config, re.M):
                lines.append("k3s.etcd=yes")
        lines += [f"disk.{directory}={free} {mount}" for directory, (mount, free) in sim.disks.items()]
        return "\n".join(lines) + "\n"

    def _install(self, sim: SimHost, remote: FakeRemote, command: str) -> tuple[int, str, str]:
        role = re.search(r"INSTALL_K3S_EXEC=(\w+)", command).group(1)  # type: ignore[union-attr]
        version = re.search(r"INSTALL_K3S_VERSION=(\S+)", command)
        config = remote.files.get(k3s.CONFIG, b"").decode()
        if sim.host.name in self.install_fails:
            return 1, "", "[ERROR] the install script failed"
        if role == "agent" and AGENT_TOKEN_PREFIX not in config:
            return 1, "", "[ERROR] no agent token"
        if role == "agent" and TOKEN in config:
            return 1, "", "[ERROR] an agent was given the server token"
        sim.role = role
        sim.version = version.group(1) if version else "v1.31.0+k3s1"
        sim.installs += 1
        sim.active = True
        name = re.search(r'node-name: "([^"]+)"', config).group(1)  # type: ignore[union-attr]
        sim.config_node_name = name
        if role == "server":
            remote.files[k3s.ADMIN_KUBECONFIG] = ADMIN_KUBECONFIG.encode()
        previous = self.nodes.get(name, {})
        self.nodes[name] = {
            "ready": name not in self.never_ready,
            "ip": sim.host.node_ip or sim.host.address,
            "role": role,
            "version": sim.version,
            "unschedulable": previous.get("unschedulable", False),
        }
        self.events.append(f"install {name} {sim.version}")
        return 0, "[INFO] installed\n", ""

    def _restart(self, sim: SimHost) -> tuple[int, str, str]:
        sim.restarts += 1
        sim.active = True
        name = sim.config_node_name
        if name is not None and sim.role is not None:  # the node (re-)registers when its service starts
            node = self.nodes.setdefault(name, {"ip": sim.host.node_ip or sim.host.address, "role": sim.role, "version": sim.version})
            node["ready"] = name not in self.never_ready
        return 0, "", ""

    def _token(self, sim: SimHost) -> tuple[int, str, str]:
        if sim.role == "server":
            return 0, TOKEN + "\n", ""
        return 1, "", "cat: /var/lib/rancher/k3s/server/node-token: No such file or directory"

    def agent_secret(self, remote: FakeRemote) -> str | None:
        """The ``agent-token`` of a server's config.yaml (k3s writes the agent token from it)."""
        match = re.search(r'^agent-token: "([^"]+)"', remote.files.get(k3s.CONFIG, b"").decode(), re.M)
        return match.group(1) if match else None

    def _agent_token(self, sim: SimHost, remote: FakeRemote) -> tuple[int, str, str]:
        secret = self.agent_secret(remote)
        if sim.role == "server" and sim.active and secret:
            return 0, AGENT_TOKEN_PREFIX + secret + "\n", ""
        return 1, "", "cat: /var/lib/rancher/k3s/server/agent-token: No such file or directory"

    def _tokens(self, sim: SimHost, remote: FakeRemote) -> tuple[int, str, str]:
        code, out, err = self._token(sim)
        code2, out2, err2 = self._agent_token(sim, remote)
        return max(code, code2), out + out2, err + err2

    def _list(self, sim: SimHost) -> tuple[int, str, str]:
        if not (sim.role == "server" and sim.active):
            return 1, "", "The connection to the server 127.0.0.1:6443 was refused"
        if self.quorum_lost:
            return 1, "", "Error from server: etcdserver: request timed out"
        items = []
        for name, node in sorted(self.nodes.items()):  # the API lists nodes by name
            labels = {"kubernetes.io/hostname": name}
            if node["role"] == "server":
                labels["node-role.kubernetes.io/control-plane"] = "true"
            items.append(
                {
                    "metadata": {"name": name, "labels": labels},
                    "spec": {"unschedulable": True} if node.get("unschedulable") else {},
                    "status": {
                        "conditions": [
                            {
                                "type": "Ready",
                                "status": "True" if node["ready"] else "Unknown",
                                "reason": "KubeletReady" if node["ready"] else "NodeStatusUnknown",
                                "message": "" if node["ready"] else "Kubelet stopped posting node status.",
                            }
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


@dataclass
class SimulatedK3sFleet(FakeK3sCluster):
    """A ``FakeK3sCluster`` behind a simulated network (``provisioner.testing.Link``): each
    connect pays the handshake (or fails for a dead host), each command and upload the latency.
    For scale tests and ``bench/bench_fleet.py``."""

    link: Link = field(default_factory=Link)

    def new_remote(self, host: Host) -> FakeRemote:
        self.link.connect(host.name)
        remote = SimulatedRemote(host.name, host.address, self.link, strict=True)
        remote.command_timeout = float(self.inventory.ssh_for(host).command_timeout or remote.command_timeout)
        return remote

    def commands_per_host(self) -> dict[str, int]:
        """Commands the last session to each host ran."""
        return {name: len(remote.commands) for name, remote in self.remotes.items()}


def fleet_inventory(agents: int, *, servers: int = 1, name: str = "fleet", ssh: dict[str, object] | None = None) -> Inventory:
    """An inventory of ``servers`` servers and ``agents`` agents on documentation-range-like
    addresses (validated by the model directly: parsing 5000 hosts of YAML is not the subject)."""
    hosts = [{"name": f"server{i}", "address": f"10.200.{i // 250}.{i % 250 + 1}", "role": "server"} for i in range(servers)]
    hosts += [
        {"name": f"agent{i}", "address": f"10.{i // 62500 + 1}.{i // 250 % 250}.{i % 250 + 1}", "role": "agent"} for i in range(agents)
    ]
    return Inventory.model_validate(
        {"cluster": {"name": name}, "ssh": ssh or {"user": "root"}, "hosts": hosts}, context={"base_dir": Path.cwd()}
    )


# --- kubeadm ------------------------------------------------------------------------------------

KUBEADM_INVENTORY = """
cluster:
  name: kube
  distribution: kubeadm
  version: "1.31"
  api_endpoint: 192.0.2.100
hosts:
  - {name: cp1, address: 192.0.2.10, role: server}
  - {name: w1, address: 192.0.2.11, role: agent, node_ip: 192.0.2.11, flannel_iface: eth1}
"""

DEBIAN_FRESH = """os.id=debian
os.id_like=
os.version_id=12
os.pretty_name=Debian GNU/Linux 12 (bookworm)
arch=x86_64
mem_kib=4000000
cpus=2
systemd=yes
hostname=cp1
machine_id=aa
user=root
tool.curl=yes
module.overlay=yes
sysctl.net.bridge.bridge-nf-call-iptables=
sysctl.net.bridge.bridge-nf-call-ip6tables=
sysctl.net.ipv4.ip_forward=0
swap.devices=1
swap.fstab=1
service.containerd=inactive
service.kubelet=inactive
held=
"""


def kubeadm(text: str = KUBEADM_INVENTORY) -> Kubeadm:
    return Kubeadm(make_inventory(text))


def facts_from(dist: Kubeadm, name: str, recorded: str) -> HostFacts:
    values = parse_key_values(recorded)
    return replace(parse_host_facts(name, values), dist=dist.parse_facts(values))


def prepared(dist: Kubeadm, name: str, *, joined: bool = True, **changes: object) -> HostFacts:
    """Facts of a host on which every preparation step is already done."""
    host = dist.inventory.host(name)
    base = facts_from(dist, name, DEBIAN_FRESH)
    os_ = hostos.for_facts(base)
    assert os_ is not None

    def sha(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    repo = os_.kubernetes_repo(dist.package_repo(os_))
    files = {
        "/etc/modules-load.d/k8s.conf": sha(templates.render("kubeadm/modules-k8s.conf.j2")),
        "/etc/sysctl.d/99-kubernetes.conf": sha(templates.render("kubeadm/sysctl-k8s.conf.j2")),
        CONTAINERD_CONFIG: sha(dist.containerd_config(1)),
        os_.kubelet_defaults: sha(dist.kubelet_defaults(host)),
        **{p: sha(t) for p, t in repo.files.items()},
    }
    k = KubeadmFacts(
        packages={"kubelet": "1.31.4-1.1", "kubeadm": "1.31.4-1.1", "kubectl": "1.31.4-1.1", "containerd": "1.6.20~ds1-1"},
        held=frozenset({"kubelet", "kubeadm", "kubectl"}),
        containerd_version="1.6.20~ds1",
        services={"containerd": "active", "kubelet": "active"},
        files=files,
        repo_key=True,
        admin_conf=joined and host.role == "server",
        kubelet_conf=joined,
        modules=frozenset({"overlay", "br_netfilter"}),
        commands=frozenset(PREFLIGHT_COMMANDS),
        sysctls={"net.bridge.bridge-nf-call-iptables": "1", "net.bridge.bridge-nf-call-ip6tables": "1", "net.ipv4.ip_forward": "1"},
    )
    return replace(base, dist=replace(k, **changes))  # type: ignore[arg-type]


KUBEADM_TOKEN = "q1w2e3.a1b2c3d4e5f6a7b8"
KUBEADM_CERT_KEY = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"


def facts_text(k: KubeadmFacts, host: Host) -> str:
    """The fact script's output for a Debian host in state ``k``."""
    lines = [
        "os.id=debian",
        "os.pretty_name=Debian GNU/Linux 12 (bookworm)",
        "arch=x86_64",
        "mem_kib=4000000",
        "cpus=2",
        "systemd=yes",
        f"hostname={host.name}",
        f"machine_id={host.name}",
        "user=root",
        "tool.curl=yes",
    ]
    lines += [f"module.{m}=yes" for m in k.modules]
    lines += [f"sysctl.{key}={value}" for key, value in k.sysctls.items()]
    lines += [f"file:{path}={sha}" for path, sha in k.files.items()]
    lines += [f"pkg.{name}={version}" for name, version in k.packages.items()]
    lines += [f"held={' '.join(sorted(k.held))}", f"containerd.version={k.containerd_version}", "key.kubernetes=yes"]
    lines.append(f"commands={' '.join(sorted(k.commands))}")
    lines += [f"service.{name}={state}" for name, state in k.services.items()]
    if k.admin_conf:
        lines.append("kubeadm.admin_conf=yes")
    if k.kubelet_conf:
        lines.append("kubeadm.kubelet_conf=yes")
    return "\n".join(lines) + "\n"


@dataclass
class FakeKubeadmCluster:
    inventory: Inventory
    state: dict[str, KubeadmFacts] = field(default_factory=dict)
    nodes: dict[str, bool] = field(default_factory=dict)  # name -> registered
    flannel: str | None = None
    events: list[str] = field(default_factory=list)
    remotes: dict[str, FakeRemote] = field(default_factory=dict)
    kubelet_versions: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        dist = kubeadm(KUBEADM_INVENTORY)
        known = {h.name for h in dist.inventory.hosts}
        for host in self.inventory.hosts:
            # hosts beyond cp1 and w1 (more control planes) are prepared for this inventory
            prepared_by = dist if host.name in known else Kubeadm(self.inventory)
            self.state[host.name] = prepared(prepared_by, host.name, joined=False).dist

    def connector(self, inventory: Inventory, host: Host) -> FakeRemote:
        remote = FakeRemote(host.name, host.address, strict=True)
        name = host.name
        if name in self.remotes:  # the host keeps its files from one run to the next
            remote.files, remote.modes = self.remotes[name].files, self.remotes[name].modes
        remote.on(r"os\.id=", handler=lambda r, c: (0, facts_text(self.state[name], host), ""))
        remote.on(r"^kubeadm version", stdout="v1.31.4\n")
        remote.on(r"^kubeadm config images pull --config ", handler=lambda r, c: self._event(f"pull images {name}"))
        remote.on(r"^kubeadm init", handler=lambda r, c: self._init(name, r, c))
        remote.on(r"^kubeadm certs certificate-key$", handler=lambda r, c: self._certificate_key(name))
        remote.on(r"^kubeadm init phase upload-certs ", handler=lambda r, c: self._upload_certs(name, r))
        remote.on(r"^kubeadm config images pull --kubernetes-version ", handler=lambda r, c: self._event(f"pull images {name}"))
        remote.on(r"^kubeadm token create", handler=lambda r, c: self._token())
        remote.on(r"^kubeadm join", handler=lambda r, c: self._join(name, r))
        remote.on(r"kubectl .* apply -f", handler=lambda r, c: self._apply(r))
        remote.on(r"kubectl .* get --raw=/readyz", stdout="ok")
        remote.on(r"kubectl .* get nodes -o json", handler=lambda r, c: (0, self._nodes(), ""))
        remote.on(r"kubectl .* get daemonset kube-flannel-ds", handler=lambda r, c: self._daemonset())
        remote.on(r"^systemctl restart kubelet$", handler=lambda r, c: self._restart_kubelet(name))
        remote.on(
            r"^install -d -m 0755 /etc/apt/keyrings && curl -fsSL \S+Release.key",
            handler=lambda r, c: self._event(f"repository key {name}"),
        )
        remote.on(LOCKED_MARK, stdout=f"{LOCKED_MARK}\n")  # the cluster lock is free
        # the rolling upgrade: packages, kubeadm upgrade, and the node operations on the API
        remote.on(r"^apt-mark unhold kubeadm ", handler=lambda r, c: self._packages(name, ("kubeadm",), c))
        remote.on(r"^apt-mark unhold kubelet kubectl ", handler=lambda r, c: self._packages(name, ("kubelet", "kubectl"), c))
        remote.on(r"^kubeadm upgrade (plan|apply|node)", handler=lambda r, c: self._upgrade(name, c))
        remote.on(r"kubectl .* (cordon|uncordon|drain) (\S+)", handler=lambda r, c: self._node_op(c))
        remote.on(r"kubectl .* get node (\S+) -o jsonpath=", handler=lambda r, c: self._node_version(c))
        # remove / reset: the Node deletion and the uninstall steps
        remote.on(r"kubectl .* delete node (\S+) ", handler=lambda r, c: self._delete_node(c))
        remote.on(r"kubectl .* get (pdb|pods) -A", stdout='{"items": []}')
        remote.on(r"^kubeadm reset -f$", handler=lambda r, c: self._reset(name))
        remote.on(r"^rm -rf /etc/cni/net\.d /var/lib/cni /run/flannel && ", handler=lambda r, c: self._event(f"cni cleanup {name}"))
        remote.on(r"^for tool in iptables ip6tables", handler=lambda r, c: self._event(f"iptables cleanup {name}"))
        remote.on(r"^rm -f /etc/default/kubelet && rm -rf /etc/kubernetes/provisioner$", handler=lambda r, c: self._flags_removed(name))
        remote.on(
            r"install -y --no-install-recommends kubelet kubeadm kubectl && apt-mark hold kubelet kubeadm kubectl",
            handler=lambda r, c: self._held(name),
        )
        remote.on(r"^apt-mark unhold kubelet kubeadm kubectl ", handler=lambda r, c: self._unhold(name))
        self.remotes[name] = remote
        return remote

    def _delete_node(self, command: str) -> tuple[int, str, str]:
        node = re.search(r"delete node (\S+) ", command).group(1)  # type: ignore[union-attr]
        self.nodes.pop(node, None)
        self.events.append(f"delete node {node}")
        return 0, f'node "{node}" deleted\n', ""

    def _reset(self, name: str) -> tuple[int, str, str]:
        self.state[name] = replace(
            self.state[name], admin_conf=False, kubelet_conf=False, services={**self.state[name].services, "kubelet": "inactive"}
        )
        self.events.append(f"kubeadm reset {name}")
        return 0, "[reset] Stopping the kubelet service\n", ""

    def _flags_removed(self, name: str) -> tuple[int, str, str]:
        state = self.state[name]
        self.state[name] = replace(state, files={p: h for p, h in state.files.items() if p != "/etc/default/kubelet"})
        self.events.append(f"flags removed {name}")
        return 0, "", ""

    def _held(self, name: str) -> tuple[int, str, str]:
        self.state[name] = replace(self.state[name], held=frozenset({"kubelet", "kubeadm", "kubectl"}))
        self.events.append(f"packages held {name}")
        return 0, "", ""

    def _unhold(self, name: str) -> tuple[int, str, str]:
        self.state[name] = replace(self.state[name], held=frozenset())
        self.events.append(f"unhold {name}")
        return 0, "", ""

    def _packages(self, name: str, packages: tuple[str, ...], command: str) -> tuple[int, str, str]:
        """apt installs the pinned version, or the newest of the repository's minor."""
        pinned = re.search(r"kube\w+=([0-9.]+)-\*", command)
        repo = re.search(r"v(\d+\.\d+)/deb/", self.inventory_repo())
        version = f"{pinned.group(1)}-1.1" if pinned else f"{repo.group(1) if repo else '1.31'}.0-1.1"
        state = self.state[name]
        self.state[name] = replace(state, packages={**state.packages, **dict.fromkeys(packages, version)})
        self.events.append(f"{' '.join(packages)} {version} {name}")
        if "kubelet" in packages:
            self.kubelet_versions[name] = "v" + version.split("-")[0]
        return 0, "", ""

    def inventory_repo(self) -> str:
        return Kubeadm(self.inventory).package_repo(hostos.DebianFamily())

    def _upgrade(self, name: str, command: str) -> tuple[int, str, str]:
        self.events.append(f"kubeadm upgrade {command.split()[2]} {name}")
        return 0, "[upgrade/successful] SUCCESS!\n", ""

    def _node_op(self, command: str) -> tuple[int, str, str]:
        verb, node = re.search(r"kubectl .* (cordon|uncordon|drain) (\S+)", command).groups()  # type: ignore[union-attr]
        self.events.append(f"{verb} {node}")
        return 0, "", ""

    def _node_version(self, command: str) -> tuple[int, str, str]:
        node = re.search(r"get node (\S+) -o", command).group(1)  # type: ignore[union-attr]
        version = self.kubelet_versions.get(node, "v1.31.4")
        wanted = re.search(r"case \"\$v\" in '?([^'*\"]*)'?(\*?)\" True\"\)", command)
        assert wanted is not None
        ok = version == wanted.group(1) or (wanted.group(2) == "*" and version.startswith(wanted.group(1)))
        return 0, "ready\n" if ok else f"{version} True\n", ""

    def _certificate_key(self, name: str) -> tuple[int, str, str]:
        self.events.append(f"certificate key {name}")
        return 0, KUBEADM_CERT_KEY + "\n", ""

    def _upload_certs(self, name: str, remote: FakeRemote) -> tuple[int, str, str]:
        config = remote.files["/etc/kubernetes/provisioner/kubeadm-upload-certs.yaml"].decode()
        assert f'certificateKey: "{KUBEADM_CERT_KEY}"' in config
        assert remote.modes["/etc/kubernetes/provisioner/kubeadm-upload-certs.yaml"] == 0o600
        self.events.append(f"upload certs {name}")
        return 0, '[upload-certs] Storing the certificates in Secret "kubeadm-certs" in the "kube-system" Namespace\n', ""

    def _init(self, name: str, remote: FakeRemote, command: str) -> tuple[int, str, str]:
        assert "kubeadm-init.yaml" in "".join(remote.uploads)
        if "--upload-certs" in command:
            config = remote.files["/etc/kubernetes/provisioner/kubeadm-init.yaml"].decode()
            assert f'certificateKey: "{KUBEADM_CERT_KEY}"' in config
            self.events.append(f"init {name} --upload-certs")
        else:
            self.events.append(f"init {name}")
        self.state[name] = KubeadmFacts(**{**self.state[name].__dict__, "admin_conf": True, "kubelet_conf": True})
        remote.files[ADMIN_CONF] = ADMIN_KUBECONFIG.replace("default", "kubernetes").encode()
        self.nodes[name] = True
        return (
            0,
            f"Your Kubernetes control-plane has initialized successfully!\nkubeadm join x:6443 --token {KUBEADM_TOKEN} --discovery-token-ca-cert-hash sha256:{'c' * 64}\n",
            "",
        )

    def _restart_kubelet(self, name: str) -> tuple[int, str, str]:
        self.events.append(f"restart kubelet {name}")
        self.state[name] = replace(self.state[name], services={**self.state[name].services, "kubelet": "active"})
        return 0, "", ""

    def _event(self, what: str) -> tuple[int, str, str]:
        self.events.append(what)
        return 0, "", ""

    def _token(self) -> tuple[int, str, str]:
        self.events.append("token")
        return 0, f"kubeadm join 192.0.2.100:6443 --token {KUBEADM_TOKEN} --discovery-token-ca-cert-hash sha256:{'c' * 64} \n", ""

    def _join(self, name: str, remote: FakeRemote) -> tuple[int, str, str]:
        config = remote.files["/etc/kubernetes/provisioner/kubeadm-join.yaml"].decode()
        assert KUBEADM_TOKEN in config and "sha256:" + "c" * 64 in config
        control_plane = "controlPlane:" in config
        if control_plane:
            assert f'certificateKey: "{KUBEADM_CERT_KEY}"' in config
        self.events.append(f"join {'control plane ' if control_plane else ''}{name}")
        self.state[name] = KubeadmFacts(**{**self.state[name].__dict__, "kubelet_conf": True, "admin_conf": control_plane})
        if control_plane:
            remote.files[ADMIN_CONF] = ADMIN_KUBECONFIG.replace("default", "kubernetes").encode()
        self.nodes[name] = True
        return 0, "This node has joined the cluster\n", ""

    def _apply(self, remote: FakeRemote) -> tuple[int, str, str]:
        manifest = remote.files["/etc/kubernetes/provisioner/kube-flannel.yaml"].decode()
        self.flannel = re.search(r'provisioner.io/manifest-sha256: "([0-9a-f]+)"', manifest).group(1)  # type: ignore[union-attr]
        self.events.append("flannel")
        return 0, "daemonset.apps/kube-flannel-ds created\n", ""

    def _daemonset(self) -> tuple[int, str, str]:
        if self.flannel is None:
            return 1, "", 'Error from server (NotFound): daemonsets.apps "kube-flannel-ds" not found'
        return 0, json.dumps({"metadata": {"annotations": {"provisioner.io/manifest-sha256": self.flannel}}}), ""

    def _nodes(self) -> str:
        items = [
            {
                "metadata": {"name": n, "labels": {}},
                "status": {
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True" if self.flannel else "False",
                            "reason": "KubeletReady" if self.flannel else "KubeletNotReady",
                        }
                    ],
                    "addresses": [],
                    "nodeInfo": {"kubeletVersion": self.kubelet_versions.get(n, "v1.31.4")},
                },
            }
            for n in self.nodes
        ]
        return json.dumps({"items": items})
