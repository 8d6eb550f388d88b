"""`provisioner check` on lab clusters (k3s, then kubeadm): green on a fresh cluster, the workload
smoke test (nginx 2 → 4 over both agents; needs a stand-in that serves apps/v1 Deployments), and a
stopped agent makes it fail naming that node. In the lab, pods are simulated by the stand-in API
server (no container runs); the checks and kubectl calls are the real ones."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from provisioner_lab import Lab
from provisioner_lab.standin.k3s import store
from tests.lab.conftest import LabEnv, Run

K3S, KUBEADM = "t-chk", "t-chkadm"

#: The probe: whether the lab's stand-in API serves apps/v1 Deployments (the workload check needs them).
SERVES_DEPLOYMENTS = store.kind_by_kind("Deployment") is not None
needs_deployments = pytest.mark.skipif(not SERVES_DEPLOYMENTS, reason="the stand-in API does not serve apps/v1 Deployments yet")


def start(name: str, workdir_factory: pytest.TempPathFactory, distribution: str) -> LabEnv:
    lab = Lab(name)
    lab.down()
    workdir = workdir_factory.mktemp(name)
    lab.up(servers=1, agents=2, inventory=workdir / f"{name}.yaml", distribution=distribution)
    return LabEnv(lab, workdir)


@pytest.fixture(scope="class")
def k3s_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabEnv]:
    env = start(K3S, tmp_path_factory, "k3s")
    try:
        run = env.provisioner("up", "--timeout", "180")
        assert run.code == 0, run.stdout + run.stderr
        yield env
    finally:
        env.lab.down()


@pytest.fixture(scope="class")
def kubeadm_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabEnv]:
    env = start(KUBEADM, tmp_path_factory, "kubeadm")
    try:
        run = env.provisioner("up", "--timeout", "300", timeout=900)
        assert run.code == 0, run.stdout + run.stderr
        yield env
    finally:
        env.lab.down()


def check(env: LabEnv, *args: str) -> tuple[Run, dict[str, dict]]:
    run = env.provisioner("check", "-i", str(env.inventory), "-o", "json", *args, timeout=600)
    data = run.json()
    return run, {row["name"]: row for row in data["checks"]}


def wait_ready_state(env: LabEnv, server: str, node: str, ready: bool, seconds: float = 150) -> None:
    """Until the node's Ready condition is True (``ready``) or anything else (not ``ready``)."""
    deadline = time.monotonic() + seconds
    state = "?"
    while time.monotonic() < deadline:
        nodes = json.loads(env.ssh(server, "k3s kubectl get nodes -o json"))["items"]
        state = next(
            (c["status"] for n in nodes if n["metadata"]["name"] == node for c in n["status"]["conditions"] if c["type"] == "Ready"),
            "missing",
        )
        if (state == "True") == ready:
            return
        time.sleep(3)
    raise AssertionError(f"{node} is still Ready={state} after {seconds:.0f}s")


class TestK3s:
    SERVER, AGENT1, AGENT2 = (f"{K3S}-server1", f"{K3S}-agent1", f"{K3S}-agent2")

    def test_check_is_green_on_a_fresh_k3s_cluster(self, k3s_lab: LabEnv) -> None:
        run, rows = check(k3s_lab)
        assert run.code == 0, run.stdout + run.stderr
        assert all(row["ok"] for row in rows.values()), rows
        assert rows["nodes Ready"]["detail"] == "3/3 Ready"
        assert "TLS verified" in rows["API through the kubeconfig"]["detail"]
        assert {f"headroom {h}" for h in (self.SERVER, self.AGENT1, self.AGENT2)} <= set(rows)
        assert rows["clocks"]["detail"].startswith("within 2 s")

    @needs_deployments
    def test_check_workload_runs_nginx_2_to_4_over_both_agents_and_deletes_its_namespace(self, k3s_lab: LabEnv) -> None:
        run, rows = check(k3s_lab, "--workload", "--timeout", "180")
        assert run.code == 0, run.stdout + run.stderr
        assert rows["workload nginx 2 → 4"]["ok"]
        spread = rows["workload spread"]["detail"]
        assert self.AGENT1 in spread and self.AGENT2 in spread, spread
        namespaces = k3s_lab.ssh(self.SERVER, "k3s kubectl get namespaces -o name")
        assert "provisioner-check-" not in namespaces

    def test_a_stopped_agent_makes_check_fail_naming_that_node(self, k3s_lab: LabEnv) -> None:
        k3s_lab.ssh(self.AGENT2, "systemctl stop k3s-agent")
        try:
            wait_ready_state(k3s_lab, self.SERVER, self.AGENT2, False)
            run, rows = check(k3s_lab)
            assert run.code == 1, run.stdout + run.stderr
            assert not rows["nodes Ready"]["ok"]
            assert rows["nodes Ready"]["detail"].startswith(f"{self.AGENT2} NotReady")
            assert self.AGENT1 not in rows["nodes Ready"]["detail"]
            assert f"check failed: nodes Ready: {self.AGENT2} NotReady" in run.stderr
        finally:
            k3s_lab.ssh(self.AGENT2, "systemctl start k3s-agent")
        wait_ready_state(k3s_lab, self.SERVER, self.AGENT2, True)


class TestKubeadm:
    CP, AGENT1, AGENT2 = (f"{KUBEADM}-server1", f"{KUBEADM}-agent1", f"{KUBEADM}-agent2")

    def test_check_is_green_on_a_fresh_kubeadm_cluster_with_flannel_ready(self, kubeadm_lab: LabEnv) -> None:
        run, rows = check(kubeadm_lab)
        assert run.code == 0, run.stdout + run.stderr
        assert all(row["ok"] for row in rows.values()), rows
        assert rows["DaemonSet kube-flannel/kube-flannel-ds"]["ok"]
        assert rows["node versions"]["ok"] and rows["nodes Ready"]["detail"] == "3/3 Ready"

    @needs_deployments
    def test_check_workload_runs_nginx_2_to_4_over_both_agents_and_deletes_its_namespace(self, kubeadm_lab: LabEnv) -> None:
        run, rows = check(kubeadm_lab, "--workload", "--timeout", "180")
        assert run.code == 0, run.stdout + run.stderr
        spread = rows["workload spread"]["detail"]
        assert self.AGENT1 in spread and self.AGENT2 in spread and self.CP not in spread, spread
        namespaces = kubeadm_lab.ssh(self.CP, "kubectl --kubeconfig /etc/kubernetes/admin.conf get namespaces -o name")
        assert "provisioner-check-" not in namespaces
