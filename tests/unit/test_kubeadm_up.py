"""`up` with kubeadm through the real phases, on simulated hosts that are already prepared
(packages, containerd, sysctls): init, Flannel, a fresh join token, joins, Ready, and a rerun."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from provisioner import actions, kubeconfig
from provisioner.distros.kubeadm import ADMIN_CONF, KubeadmFacts
from provisioner.inventory import Host, Inventory
from provisioner.phases import Options
from provisioner.testing import FakeRemote
from tests.unit.conftest import make_inventory
from tests.unit.fakes import ADMIN_KUBECONFIG
from tests.unit.test_kubeadm import INVENTORY, kubeadm, prepared

TOKEN = "q1w2e3.a1b2c3d4e5f6a7b8"


def facts_text(k: KubeadmFacts, host: Host) -> str:
    """The fact script's output for a Debian host in state ``k``."""
    lines = ["os.id=debian", "os.pretty_name=Debian GNU/Linux 12 (bookworm)", "arch=x86_64", "mem_kib=4000000",
             "cpus=2", "systemd=yes", f"hostname={host.name}", f"machine_id={host.name}", "user=root", "tool.curl=yes"]
    lines += [f"module.{m}=yes" for m in k.modules]
    lines += [f"sysctl.{key}={value}" for key, value in k.sysctls.items()]
    lines += [f"file:{path}={sha}" for path, sha in k.files.items()]
    lines += [f"pkg.{name}={version}" for name, version in k.packages.items()]
    lines += [f"held={' '.join(sorted(k.held))}", f"containerd.version={k.containerd_version}", "key.kubernetes=yes"]
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

    def __post_init__(self) -> None:
        dist = kubeadm(INVENTORY)
        for host in self.inventory.hosts:
            self.state[host.name] = prepared(dist, host.name, joined=False).dist

    def connector(self, inventory: Inventory, host: Host) -> FakeRemote:
        remote = FakeRemote(host.name, host.address)
        name = host.name
        if name in self.remotes:  # the host keeps its files from one run to the next
            remote.files, remote.modes = self.remotes[name].files, self.remotes[name].modes
        remote.on(r"os\.id=", handler=lambda r, c: (0, facts_text(self.state[name], host), ""))
        remote.on(r"^kubeadm version", stdout="v1.31.4\n")
        remote.on(r"^kubeadm init", handler=lambda r, c: self._init(name, r))
        remote.on(r"^kubeadm token create", handler=lambda r, c: self._token())
        remote.on(r"^kubeadm join", handler=lambda r, c: self._join(name, r))
        remote.on(r"kubectl .* apply -f", handler=lambda r, c: self._apply(r))
        remote.on(r"kubectl .* get --raw=/readyz", stdout="ok")
        remote.on(r"kubectl .* get nodes -o json", handler=lambda r, c: (0, self._nodes(), ""))
        remote.on(r"kubectl .* get daemonset kube-flannel-ds", handler=lambda r, c: self._daemonset())
        self.remotes[name] = remote
        return remote

    def _init(self, name: str, remote: FakeRemote) -> tuple[int, str, str]:
        assert "kubeadm-init.yaml" in "".join(remote.uploads)
        self.events.append(f"init {name}")
        self.state[name] = KubeadmFacts(**{**self.state[name].__dict__, "admin_conf": True, "kubelet_conf": True})
        remote.files[ADMIN_CONF] = ADMIN_KUBECONFIG.replace("default", "kubernetes").encode()
        self.nodes[name] = True
        return 0, f"Your Kubernetes control-plane has initialized successfully!\nkubeadm join x:6443 --token {TOKEN} --discovery-token-ca-cert-hash sha256:{'c' * 64}\n", ""

    def _token(self) -> tuple[int, str, str]:
        self.events.append("token")
        return 0, f"kubeadm join 192.0.2.100:6443 --token {TOKEN} --discovery-token-ca-cert-hash sha256:{'c' * 64} \n", ""

    def _join(self, name: str, remote: FakeRemote) -> tuple[int, str, str]:
        config = remote.files["/etc/kubernetes/provisioner/kubeadm-join.yaml"].decode()
        assert TOKEN in config and "sha256:" + "c" * 64 in config
        self.events.append(f"join {name}")
        self.state[name] = KubeadmFacts(**{**self.state[name].__dict__, "kubelet_conf": True})
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
        items = [{"metadata": {"name": n, "labels": {}}, "status": {
            "conditions": [{"type": "Ready", "status": "True" if self.flannel else "False", "reason": "KubeletReady" if self.flannel else "KubeletNotReady"}],
            "addresses": [], "nodeInfo": {"kubeletVersion": "v1.31.4"}}} for n in self.nodes]
        return json.dumps({"items": items})


@pytest.fixture(autouse=True)
def _no_network_check(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(kubeconfig, "check", lambda config, timeout=10: kubeconfig.Check("ok", "simulated"))
    monkeypatch.chdir(tmp_path)


def test_kubeadm_up_inits_applies_flannel_makes_a_fresh_token_then_joins_and_a_rerun_does_nothing(tmp_path: Path) -> None:
    inventory = make_inventory(INVENTORY)
    cluster = FakeKubeadmCluster(inventory)
    outcome = actions.up(inventory, Options(timeout=3), connector=cluster.connector)
    assert outcome.ok, outcome.error
    assert cluster.events == ["init cp1", "flannel", "token", "join w1"]
    assert {n: o.action for n, o in outcome.context.outcomes.items()} == {"cp1": "install", "w1": "join"}
    assert outcome.context.applied_cluster_steps == ["Flannel v0.26.1"]
    config = kubeconfig.parse((tmp_path / "kube.kubeconfig").read_text())
    assert config["clusters"][0]["cluster"]["server"] == "https://192.0.2.100:6443"
    assert config["current-context"] == "kube"
    for remote in cluster.remotes.values():
        assert all(TOKEN not in command for _, command in remote.commands)

    cluster.events.clear()
    again = actions.up(inventory, Options(timeout=3), connector=cluster.connector)
    assert again.ok, again.error
    assert cluster.events == []
    assert {o.result for o in again.context.outcomes.values()} == {"unchanged"}
    assert all(not r.uploads for r in cluster.remotes.values())


def test_kubeadm_plan_lists_the_steps_and_the_flannel_add_on() -> None:
    from provisioner import report
    from rich.console import Console

    inventory = make_inventory(INVENTORY)
    cluster = FakeKubeadmCluster(inventory)
    outcome = actions.plan(inventory, connector=cluster.connector)
    assert outcome.ok
    console = Console(record=True, width=200)
    report.plan_text(console, outcome.context, None)
    text = console.export_text()
    assert "cp1 (server, 192.0.2.10): install" in text and "kubeadm init: not part of the cluster yet" in text
    assert "cluster: Flannel v0.26.1: not applied yet" in text and "1 cluster step(s)." in text
    assert cluster.events == []
