"""kubeadm with a stacked control plane of three and one worker on real lab hosts (the apt path
of test_lab_kubeadm.py, stand-in kubeadm/kubelet): init --upload-certs, control planes joined
one at a time with the certificate key kept out of argv and output, every node Ready; the
cluster keeps answering with one control plane stopped, and says that etcd lost its quorum with
two stopped.

The lab has no virtual IP or load balancer: ``cluster.api_endpoint`` is server1's own address,
so the control plane that is stopped is server3 (stopping server1 would take the endpoint
itself away, which only a real VIP/LB in front of the three can survive). Tests run in order on
one lab."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from provisioner_lab import Lab
from tests.lab.conftest import LabEnv

NAME = "t-kha"
CP1, CP2, CP3, W1 = (f"{NAME}-server1", f"{NAME}-server2", f"{NAME}-server3", f"{NAME}-agent1")
ALL = (CP1, CP2, CP3, W1)


@pytest.fixture(scope="module")
def kha(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabEnv]:
    lab = Lab(NAME)
    lab.down()
    workdir = tmp_path_factory.mktemp(NAME)
    lab.up(servers=3, agents=1, inventory=workdir / f"{NAME}.yaml", distribution="kubeadm")
    env = LabEnv(lab, workdir)
    address = next(h.address for h in lab.hosts() if h.name == CP1)

    def endpoint(data: dict) -> None:
        data["cluster"]["api_endpoint"] = address  # no VIP in the lab: server1's own address

    env.edit_inventory(endpoint, env.inventory)
    try:
        yield env
    finally:
        lab.down()


def nodes(kha: LabEnv) -> dict[str, bool]:
    run = kha.provisioner("status", "-o", "json")
    assert run.stdout, run.stderr
    return {n["name"]: n["ready"] for n in run.json()["nodes"]}


def wait_ready(kha: LabEnv, host: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = kha.ssh(CP1, f"kubectl --kubeconfig /etc/kubernetes/admin.conf get node {host} -o json", check=False)
        if out and any(c["type"] == "Ready" and c["status"] == "True" for c in json.loads(out)["status"]["conditions"]):
            return
        time.sleep(2)
    raise AssertionError(f"{host} did not turn Ready within {timeout}s")


def test_up_inits_with_upload_certs_joins_two_control_planes_and_a_worker_all_ready(kha: LabEnv) -> None:
    with kha.sampling_argv((CP1, CP2, CP3)) as samples:
        run = kha.provisioner("up", "-o", "json", "--timeout", "240", timeout=900)
    assert run.code == 0, run.stdout + run.stderr
    data = run.json()
    assert {h["name"]: h["action"] for h in data["hosts"]} == {CP1: "install", CP2: "join", CP3: "join", W1: "join"}
    assert {n["name"]: n["ready"] for n in data["nodes"]} == dict.fromkeys(ALL, True)
    # the certificate key sits only in server1's 0600 init config: never in argv, output or the log
    init = kha.ssh(
        CP1, "stat -c %a /etc/kubernetes/provisioner/kubeadm-init.yaml; grep certificateKey /etc/kubernetes/provisioner/kubeadm-init.yaml"
    )
    mode, line = init.splitlines()
    key = line.split('"')[1]
    assert mode == "600" and len(key) == 64
    seen = "\n".join(samples)
    assert "kubeadm join --config" in seen, "the sampler must have seen the joins"
    assert key not in seen and key not in run.stdout + run.stderr and key not in open(data["log"]).read()
    for host in (CP2, CP3, W1):
        assert kha.ssh(host, "test -e /etc/kubernetes/provisioner/kubeadm-join.yaml && echo left || echo removed").strip() == "removed"
    for host in (CP2, CP3):  # each control plane serves the API itself, with the cluster's CA
        assert kha.ssh(host, "sha256sum < /etc/kubernetes/pki/ca.crt") == kha.ssh(CP1, "sha256sum < /etc/kubernetes/pki/ca.crt")
        listed = kha.ssh(
            host, f"kubectl --kubeconfig /etc/kubernetes/admin.conf --server https://{kha_address(kha, host)}:6443 get nodes -o name"
        )
        assert set(listed.split()) == {f"node/{n}" for n in ALL}
    members = json.loads(kha.ssh(CP1, "cat /var/lib/etcd/standin/member/member.json"))["members"]
    assert set(members) == {CP1, CP2, CP3}


def kha_address(kha: LabEnv, host: str) -> str:
    return next(h.address for h in kha.lab.hosts() if h.name == host)


def test_with_one_control_plane_stopped_status_and_kubectl_still_answer_and_a_restart_leaves_up_nothing_to_do(kha: LabEnv) -> None:
    kha.ssh(CP3, "systemctl stop kubelet")
    try:
        listed = nodes(kha)
        assert set(listed) == set(ALL) and all(listed[n] for n in (CP1, CP2, W1))
        kubeconfig = kha.workdir / f"{NAME}.kubeconfig"
        got = kha.kubectl(kubeconfig, "get", "nodes", "-o", "name")
        assert got.returncode == 0, got.stderr
        assert set(got.stdout.split()) == {f"node/{n}" for n in ALL}
        made = kha.kubectl(kubeconfig, "create", "namespace", "written-with-two-of-three")
        assert made.returncode == 0, made.stderr  # etcd still has its quorum: writes work
    finally:
        kha.ssh(CP3, "systemctl start kubelet")
    wait_ready(kha, CP3)
    run = kha.provisioner("up", "-o", "json")
    assert run.code == 0, run.stdout + run.stderr
    data = run.json()
    assert {h["name"]: h["result"] for h in data["hosts"]} == dict.fromkeys(ALL, "unchanged")
    assert data["cluster_steps"] == [] and all(h["uploads"] == 0 for h in data["hosts"])


def test_with_two_of_three_control_planes_stopped_status_says_etcd_lost_quorum_quickly(kha: LabEnv) -> None:
    kha.ssh(CP2, "systemctl stop kubelet")
    kha.ssh(CP3, "systemctl stop kubelet")
    try:
        # etcd notices its peers are gone within a few heartbeats; then status fails at once
        deadline = time.monotonic() + 30
        while True:
            started = time.monotonic()
            run = kha.provisioner("status")
            took = time.monotonic() - started
            if run.code != 0 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert run.code == 1, run.stdout + run.stderr
        text = " ".join((run.stdout + run.stderr).split())  # the error line may be wrapped
        assert f"etcd has lost quorum: 1 of 3 servers run the API ({CP1})" in text, text
        assert f"Start kubelet on {CP2}, {CP3}" in text and "etcdserver: request timed out" in text
        assert took < 60, f"status took {took:.0f}s"
    finally:
        kha.ssh(CP2, "systemctl start kubelet")
        kha.ssh(CP3, "systemctl start kubelet")
    wait_ready(kha, CP2)
    wait_ready(kha, CP3)
    assert all(nodes(kha).values())
