"""kubeadm + Flannel on real lab hosts: the provisioner's real apt path (a local signed repository
on 10.231.0.1 with Debian's real containerd/runc and stand-in kubeadm/kubelet/kubectl packages),
kubeadm init and join, Flannel, and reruns. Tests run in order on one lab."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner_lab import Lab
from tests.lab.conftest import LabEnv

NAME = "t-kadm"
CP, W1, W2, W3 = (f"{NAME}-server1", f"{NAME}-agent1", f"{NAME}-agent2", f"{NAME}-agent3")


@pytest.fixture(scope="module")
def kadm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabEnv]:
    lab = Lab(NAME)
    lab.down()
    workdir = tmp_path_factory.mktemp(NAME)
    lab.up(servers=1, agents=2, inventory=workdir / f"{NAME}.yaml", distribution="kubeadm")
    try:
        yield LabEnv(lab, workdir)
    finally:
        lab.down()


def kubelet_state(env: LabEnv, host: str) -> tuple[str, str]:
    out = env.ssh(host, "systemctl show -p MainPID -p ActiveEnterTimestamp kubelet")
    values = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return values["MainPID"], values["ActiveEnterTimestamp"]


def test_plan_on_a_fresh_kubeadm_lab_lists_preparation_init_join_and_flannel(kadm: LabEnv) -> None:
    run = kadm.provisioner("plan", "-o", "json")
    assert run.code == 0, run.stderr
    data = run.json()
    hosts = {h["host"]: h for h in data["hosts"]}
    assert {n: h["action"] for n, h in hosts.items()} == {CP: "install", W1: "join", W2: "join"}
    assert hosts[CP]["steps"][-2:] == ["kubeadm init", "wait for the Kubernetes API"] and hosts[W1]["steps"][-1] == "kubeadm join"
    assert {"install containerd", "configure containerd", "Kubernetes package repository", "kubelet, kubeadm, kubectl"} <= set(
        hosts[W1]["steps"]
    )
    assert [s["title"] for s in data["cluster_steps"]] == ["Flannel v0.26.1"]
    assert kadm.ssh(W1, "command -v kubeadm containerd || true").strip() == ""  # nothing installed by plan


def test_up_installs_through_apt_inits_applies_flannel_and_joins_with_a_token_kept_out_of_argv(kadm: LabEnv) -> None:
    with kadm.sampling_argv((CP, W1, W2)) as samples:
        run = kadm.provisioner("up", "-o", "json", "--timeout", "240", timeout=600)
    assert run.code == 0, run.stdout + run.stderr
    data = run.json()
    assert {h["name"]: h["action"] for h in data["hosts"]} == {CP: "install", W1: "join", W2: "join"}
    assert data["cluster_steps"] == ["Flannel v0.26.1"]
    addresses = {h.name: h.address for h in kadm.lab.hosts()}
    assert {n["name"]: (n["ready"], n["address"]) for n in data["nodes"]} == {n: (True, a) for n, a in addresses.items()}

    seen = "\n".join(samples)
    assert "kubeadm join --config" in seen, "the sampler must have seen the joins"
    tokens = kadm.ssh(CP, "kubectl --kubeconfig /etc/kubernetes/admin.conf -n kube-system get secrets -o json")
    secrets = [s for s in json.loads(tokens)["items"] if s["metadata"]["name"].startswith("bootstrap-token-")]
    assert secrets, "the run must have made a bootstrap token"
    import base64

    for secret in secrets:
        token = base64.b64decode(secret["data"]["token-secret"]).decode()
        assert token not in seen and token not in run.stdout + run.stderr
        assert token not in Path(data["log"]).read_text()
    for worker in (W1, W2):
        assert kadm.ssh(worker, "test -e /etc/kubernetes/provisioner/kubeadm-join.yaml && echo left || echo removed").strip() == "removed"


def test_hosts_are_prepared_as_the_kubeadm_guides_say(kadm: LabEnv) -> None:
    for host in (CP, W1):
        assert "SystemdCgroup = true" in kadm.ssh(host, "cat /etc/containerd/config.toml")
        assert kadm.ssh(host, "systemctl is-active containerd kubelet").split() == ["active", "active"]
        assert set(kadm.ssh(host, "apt-mark showhold").split()) == {"kubelet", "kubeadm", "kubectl"}
        assert kadm.ssh(host, "sysctl -n net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables").split() == ["1", "1"]
        sources = kadm.ssh(host, "cat /etc/apt/sources.list.d/kubernetes.list")
        assert "signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.asc" in sources and "10.231.0.1" in sources
        assert kadm.ssh(host, "dpkg-query -W -f='${Version}' containerd").startswith("1.6.")  # Debian's real containerd


def test_the_kubeconfig_is_renamed_and_a_real_client_here_lists_the_nodes(kadm: LabEnv) -> None:
    path = kadm.workdir / f"{NAME}.kubeconfig"
    assert kadm.kubectl(path, "config", "current-context").stdout.strip() == NAME
    listed = kadm.kubectl(path, "get", "nodes", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    assert sorted(n["metadata"]["name"] for n in json.loads(listed.stdout)["items"]) == [W1, W2, CP]
    flannel = kadm.kubectl(path, "get", "daemonset", "kube-flannel-ds", "-n", "kube-flannel", "-o", "json")
    assert json.loads(flannel.stdout)["metadata"]["annotations"]["provisioner.io/manifest-sha256"]


def test_unchanged_kubeadm_rerun_touches_nothing(kadm: LabEnv) -> None:
    before = {h: kubelet_state(kadm, h) for h in (CP, W1, W2)}
    run = kadm.provisioner("up", "-o", "json")
    assert run.code == 0, run.stderr
    data = run.json()
    assert {h["name"]: h["result"] for h in data["hosts"]} == dict.fromkeys(before, "unchanged")
    assert data["cluster_steps"] == []
    assert all(h["uploads"] == 0 for h in data["hosts"])
    assert {h: kubelet_state(kadm, h) for h in before} == before


def test_a_changed_kubelet_flag_reconfigures_only_that_host(kadm: LabEnv) -> None:
    address = next(h.address for h in kadm.lab.hosts() if h.name == W2)

    def set_node_ip(data: dict) -> None:
        for host in data["hosts"]:
            if host["name"] == W2:
                host["node_ip"] = address

    inventory = kadm.edit_inventory(set_node_ip, kadm.workdir / "node-ip.yaml")
    others = {h: kubelet_state(kadm, h) for h in (CP, W1)}
    run = kadm.provisioner("up", "-o", "json", "--timeout", "120", inventory=inventory)
    assert run.code == 0, run.stderr
    assert {h["name"]: h["action"] for h in run.json()["hosts"]} == {CP: "nothing", W1: "nothing", W2: "reconfigure"}
    assert kadm.ssh(W2, "cat /etc/default/kubelet").splitlines()[-1] == f"KUBELET_EXTRA_ARGS=--node-ip={address}"
    assert {h: kubelet_state(kadm, h) for h in others} == others
    kadm.inventory.write_text(inventory.read_text())  # later tests start from this inventory


def test_a_new_worker_joins_by_rerun_and_only_it_changes(kadm: LabEnv) -> None:
    before = {h: kubelet_state(kadm, h) for h in (CP, W1, W2)}
    kadm.lab.up(servers=1, agents=3, inventory=kadm.inventory)
    inventory_text = kadm.inventory.read_text()
    if "node_ip" not in inventory_text:  # lab up rewrote the inventory: put the flag back
        address = next(h.address for h in kadm.lab.hosts() if h.name == W2)
        kadm.edit_inventory(lambda d: [h.__setitem__("node_ip", address) for h in d["hosts"] if h["name"] == W2], kadm.inventory)
    run = kadm.provisioner("up", "-o", "json", "--timeout", "240", timeout=600)
    assert run.code == 0, run.stdout + run.stderr
    results = {h["name"]: (h["action"], h["result"]) for h in run.json()["hosts"]}
    assert results == {CP: ("nothing", "unchanged"), W1: ("nothing", "unchanged"), W2: ("nothing", "unchanged"), W3: ("join", "changed")}
    assert {h: kubelet_state(kadm, h) for h in before} == before
    assert sorted(n["name"] for n in run.json()["nodes"] if n["ready"]) == sorted([CP, W1, W2, W3])
