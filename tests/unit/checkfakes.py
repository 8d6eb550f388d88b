"""Test double for ``check``: what a running cluster and its hosts answer to the check's commands.

``FakeCheckedCluster`` wraps a ``FakeK3sCluster`` or ``FakeKubeadmCluster`` (tests/unit/fakes.py)
and adds, on the same strict FakeRemotes, answers to the health script (clock, df, meminfo), to
``kubectl get pods -n kube-system`` and the Flannel DaemonSet, node changes (cordoned, other
version), and a small model of the workload check (apply → scale → get deployment/pods → delete
namespace). Not a model of Kubernetes beyond what these tests ask.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from provisioner.inventory import Host, Inventory
from provisioner.testing import FakeRemote
from tests.unit.fakes import FakeK3sCluster, FakeKubeadmCluster

GIB_KIB = 1024 * 1024


@dataclass
class HostState:
    """Clock offset from this machine (s), disks (path -> (size KiB, available KiB, mount)), memory."""

    clock_offset: float = 0.0
    disks: dict[str, tuple[int, int, str]] = field(
        default_factory=lambda: {"/": (100 * GIB_KIB, 60 * GIB_KIB, "/"), "/var/lib": (100 * GIB_KIB, 60 * GIB_KIB, "/")}
    )
    mem_total_kib: int = 8 * GIB_KIB
    mem_available_kib: int = 6 * GIB_KIB
    clock_readable: bool = True


@dataclass
class Workload:
    """The workload check as the fake API sees it."""

    namespace: str | None = None
    image: str | None = None
    replicas: int = 0
    manifest: dict[str, Any] | None = None
    polls: int = 0
    #: available replicas never exceed this (None: all, after ``polls_to_available`` polls)
    stuck_at: int | None = None
    polls_to_available: int = 2
    #: node names the pods land on, round-robin (None: the schedulable nodes)
    placement: list[str] | None = None
    apply_error: str | None = None
    interrupt_on_poll: bool = False
    deleted: list[str] = field(default_factory=list)
    detached_deletes: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)


@dataclass
class FakeCheckedCluster:
    cluster: FakeK3sCluster | FakeKubeadmCluster
    hosts: dict[str, HostState] = field(default_factory=dict)
    system_pods: list[dict[str, Any]] = field(default_factory=list)
    flannel_status: dict[str, int] | None = None  # None: as the wrapped cluster answers
    cordoned: set[str] = field(default_factory=set)
    tainted: dict[str, str] = field(default_factory=dict)  # node -> taint effect
    versions: dict[str, str] = field(default_factory=dict)  # node -> kubelet version shown
    workload: Workload = field(default_factory=Workload)

    @property
    def inventory(self) -> Inventory:
        return self.cluster.inventory

    @property
    def remotes(self) -> dict[str, FakeRemote]:
        return self.cluster.remotes

    def connector(self, inventory: Inventory, host: Host) -> FakeRemote:
        remote = self.cluster.connector(inventory, host)
        state = self.hosts.setdefault(host.name, HostState())
        remote.on(r"clock=\$\(date \+%s\.%N\)", handler=lambda r, c: (0, self._health(host, state), ""))
        sample = (
            "kubectl --kubeconfig /etc/kubernetes/admin.conf get nodes -o json"
            if isinstance(self.cluster, FakeKubeadmCluster)
            else "k3s kubectl get nodes -o json"
        )
        list_nodes = next(rule.handler for rule in reversed(remote._rules) if rule.pattern.search(sample))
        remote.on(r"kubectl .*get nodes -o json", handler=lambda r, c: self._nodes(list_nodes(r, c)))
        remote.on(
            r"kubectl .*get pods -n kube-system -o json",
            handler=lambda r, c: (0, json.dumps({"kind": "PodList", "items": self.system_pods}), ""),
        )
        if self.flannel_status is not None:
            remote.on(
                r"kubectl .*get daemonset kube-flannel-ds -n kube-flannel -o json",
                handler=lambda r, c: (0, json.dumps({"status": self.flannel_status}), ""),
            )
        remote.on(r"kubectl .*apply -f /tmp/provisioner-check-", handler=self._apply)
        remote.on(r"kubectl .*scale deployment nginx", handler=self._scale)
        remote.on(r"kubectl .*get deployment nginx", handler=self._deployment)
        remote.on(r"kubectl .*get pods -n provisioner-check-\S+ -l", handler=self._pods)
        remote.on(r"kubectl .*delete namespace provisioner-check-", handler=self._delete)
        remote.on(r"^setsid -f sh -c .*delete namespace provisioner-check-", handler=self._delete_detached)
        return remote

    # --- hosts ------------------------------------------------------------------------------
    def _health(self, host: Host, state: HostState) -> str:
        lines = [f"clock={time.time() + state.clock_offset:.9f}"] if state.clock_readable else []
        lines += [f"disk.{path}={size} {avail} {mount}" for path, (size, avail, mount) in state.disks.items()]
        lines += [f"mem.total_kib={state.mem_total_kib}", f"mem.available_kib={state.mem_available_kib}"]
        if host.role == "server":
            lines.append("admin_kubeconfig=yes")
        return "\n".join(lines) + "\n"

    # --- nodes --------------------------------------------------------------------------------
    def _nodes(self, answer: tuple[int, str, str]) -> tuple[int, str, str]:
        code, out, err = answer
        if code != 0:
            return answer
        data = json.loads(out)
        for item in data["items"]:
            name = item["metadata"]["name"]
            spec = item.setdefault("spec", {})
            if name in self.cordoned:
                spec["unschedulable"] = True
                spec.setdefault("taints", []).append({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"})
            if name in self.tainted:
                spec.setdefault("taints", []).append({"key": "node-role.kubernetes.io/control-plane", "effect": self.tainted[name]})
            if name in self.versions:
                item["status"]["nodeInfo"]["kubeletVersion"] = self.versions[name]
        return code, json.dumps(data), err

    def schedulable_nodes(self) -> list[str]:
        names = sorted(self.cluster.nodes)
        return [n for n in names if n not in self.cordoned and n not in self.tainted]

    # --- the workload ---------------------------------------------------------------------------
    def _apply(self, remote: FakeRemote, command: str) -> tuple[int, str, str]:
        w = self.workload
        path = re.search(r"apply -f (\S+?);", command).group(1)  # type: ignore[union-attr]
        assert re.search(rf"rm -f {re.escape(path)}", command), "the manifest is removed after apply"
        data = json.loads(remote.files.pop(path))
        w.events.append("apply")
        if w.apply_error:
            return 1, "", w.apply_error
        w.manifest = data
        namespace, deployment = data["items"]
        w.namespace = namespace["metadata"]["name"]
        w.replicas = deployment["spec"]["replicas"]
        w.image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        return 0, f"namespace/{w.namespace} created\ndeployment.apps/nginx created\n", ""

    def _scale(self, remote: FakeRemote, command: str) -> tuple[int, str, str]:
        w = self.workload
        assert w.namespace and f"-n {w.namespace}" in command
        w.replicas = int(re.search(r"--replicas=(\d+)", command).group(1))  # type: ignore[union-attr]
        w.events.append(f"scale {w.replicas}")
        return 0, "deployment.apps/nginx scaled\n", ""

    def _available(self) -> int:
        w = self.workload
        available = w.replicas if w.polls >= w.polls_to_available else min(w.replicas, 2)
        return available if w.stuck_at is None else min(available, w.stuck_at)

    def _deployment(self, remote: FakeRemote, command: str) -> tuple[int, str, str]:
        w = self.workload
        assert w.namespace and f"-n {w.namespace}" in command
        w.polls += 1
        w.events.append("get deployment")
        if w.interrupt_on_poll:
            raise KeyboardInterrupt
        available = self._available()
        status = {"replicas": w.replicas, "updatedReplicas": w.replicas, "readyReplicas": available, "availableReplicas": available}
        return 0, json.dumps({"kind": "Deployment", "spec": {"replicas": w.replicas}, "status": status}), ""

    def _pods(self, remote: FakeRemote, command: str) -> tuple[int, str, str]:
        w = self.workload
        assert w.namespace and f"-n {w.namespace}" in command and "app=nginx" in command
        w.events.append("get pods")
        nodes = w.placement if w.placement is not None else self.schedulable_nodes()
        items = [
            {"metadata": {"name": f"nginx-{i}"}, "spec": {"nodeName": nodes[i % len(nodes)]}, "status": {"phase": "Running"}}
            for i in range(self._available())
        ]
        return 0, json.dumps({"kind": "PodList", "items": items}), ""

    def _delete(self, remote: FakeRemote, command: str) -> tuple[int, str, str]:
        name = re.search(r"delete namespace (provisioner-check-[0-9a-f]+)", command).group(1)  # type: ignore[union-attr]
        self.workload.deleted.append(name)
        self.workload.events.append("delete namespace")
        return 0, f'namespace "{name}" deleted\n', ""

    def _delete_detached(self, remote: FakeRemote, command: str) -> tuple[int, str, str]:
        name = re.search(r"delete namespace (provisioner-check-[0-9a-f]+)", command).group(1)  # type: ignore[union-attr]
        self.workload.detached_deletes.append(name)
        return 0, "", ""


def running_k3s(inventory: Inventory) -> FakeK3sCluster:
    """A FakeK3sCluster whose hosts already run k3s at the inventory's version, all nodes Ready."""
    cluster = FakeK3sCluster(inventory)
    version = inventory.cluster.version or "v1.31.4+k3s1"
    for name, sim in cluster.hosts.items():
        sim.role, sim.version, sim.active, sim.config_node_name = sim.host.role, version, True, name
        cluster.nodes[name] = {"ready": True, "ip": sim.host.address, "role": sim.host.role, "version": version}
    return cluster


def running_kubeadm(inventory: Inventory) -> FakeKubeadmCluster:
    """A FakeKubeadmCluster with every host joined and Flannel applied."""
    cluster = FakeKubeadmCluster(inventory)
    cluster.flannel = "0" * 64
    for host in inventory.hosts:
        cluster.nodes[host.name] = True
    return cluster
