"""Day 2 for kubeadm on a real lab (1 control plane + 2 workers): a rolling upgrade from the
stand-ins' minor to the next one, both served by the lab's local apt repositories (one
pkgs.k8s.io-like repository per minor). The tests run in order on the same lab."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator

import pytest

from provisioner_lab import Lab, aptrepo, debs
from tests.lab.conftest import LabEnv

NAME = "t-kupg"
CP, W1, W2 = (f"{NAME}-server1", f"{NAME}-agent1", f"{NAME}-agent2")
HOSTS = (CP, W1, W2)
OLD = debs.kubernetes_version()  # 1.31.4
NEW = debs.next_minor_version(OLD)  # 1.32.0
KUBECTL = "kubectl --kubeconfig /etc/kubernetes/admin.conf"
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def kup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabEnv]:
    lab = Lab(NAME)
    lab.down()
    workdir = tmp_path_factory.mktemp(NAME)
    lab.up(servers=1, agents=2, inventory=workdir / f"{NAME}.yaml", distribution="kubeadm")
    try:
        yield LabEnv(lab, workdir)
    finally:
        lab.down()
        if TIMINGS:
            print("\nkubeadm day-2 wall times:", json.dumps(TIMINGS))


def nodes(env: LabEnv) -> dict[str, dict]:  # type: ignore[type-arg]
    items = json.loads(env.ssh(CP, f"{KUBECTL} get nodes -o json"))["items"]
    return {n["metadata"]["name"]: n for n in items}


def ready(node: dict) -> bool:  # type: ignore[type-arg]
    return next(c["status"] for c in node["status"]["conditions"] if c["type"] == "Ready") == "True"


def test_up_builds_the_cluster_on_the_stand_ins_minor(kup: LabEnv) -> None:
    run = kup.provisioner("up", "-o", "json", "--timeout", "240", timeout=600)
    assert run.code == 0, run.stdout + run.stderr
    found = nodes(kup)
    assert sorted(found) == sorted(HOSTS) and all(ready(n) for n in found.values())
    assert {n["status"]["nodeInfo"]["kubeletVersion"] for n in found.values()} == {f"v{OLD}"}
    for host in HOSTS:
        assert f"/v{debs.minor_series(OLD)}/deb/" in kup.ssh(host, "cat /etc/apt/sources.list.d/kubernetes.list")


def test_a_rolling_upgrade_to_the_next_minor_keeps_at_most_one_node_cordoned_and_ends_ready_on_it(kup: LabEnv) -> None:
    old_path, new_path = aptrepo.kubernetes_repo_path(OLD), aptrepo.kubernetes_repo_path(NEW)

    def change(data: dict) -> None:  # type: ignore[type-arg]
        data["cluster"]["version"] = debs.minor_series(NEW)
        assert data["cluster"]["package_repo"].endswith(old_path)
        data["cluster"]["package_repo"] = data["cluster"]["package_repo"].replace(old_path, new_path)

    inventory = kup.edit_inventory(change, kup.workdir / "upgraded.yaml")
    plan = kup.provisioner("plan", inventory=inventory)
    assert plan.code == 0, plan.stdout + plan.stderr
    assert re.search(rf"1\. {CP}\s.*2\. {W1}\s.*3\. {W2}\s", plan.stdout, re.S), plan.stdout

    cordoned: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            listed = kup.lab.ssh(CP, f"{KUBECTL} get nodes -o json", check=False)
            if listed.returncode == 0:
                try:
                    items = json.loads(listed.stdout)["items"]
                except ValueError:
                    continue
                cordoned.append(sum(1 for n in items if (n.get("spec") or {}).get("unschedulable")))
            time.sleep(0.3)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    try:
        run = kup.provisioner("up", "-o", "json", "--timeout", "240", inventory=inventory, timeout=1500)
    finally:
        TIMINGS["rolling upgrade 1+2"] = round(time.monotonic() - started, 1)
        stop.set()
        sampler.join(timeout=30)
    assert run.code == 0, run.stdout + run.stderr
    assert run.json()["upgraded"] == [CP, W1, W2]
    assert len(cordoned) > 10 and max(cordoned) == 1, cordoned

    final = nodes(kup)
    assert {n["status"]["nodeInfo"]["kubeletVersion"] for n in final.values()} == {f"v{NEW}"}
    assert all(ready(n) and not n["spec"].get("unschedulable") for n in final.values())
    config = json.loads(kup.ssh(CP, f"{KUBECTL} -n kube-system get configmap kubeadm-config -o json"))
    assert f"kubernetesVersion: v{NEW}" in config["data"]["ClusterConfiguration"]
    for host in HOSTS:
        sources = kup.ssh(host, "cat /etc/apt/sources.list.d/kubernetes.list")
        assert new_path in sources and old_path not in sources, (host, sources)
        assert set(kup.ssh(host, "apt-mark showhold").split()) == {"kubelet", "kubeadm", "kubectl"}, host
        versions = kup.ssh(host, "dpkg-query -W -f='${Package}=${Version}\\n' kubelet kubeadm kubectl").split()
        assert sorted(versions) == [f"{p}={NEW}-{debs.DEB_REVISION}" for p in ("kubeadm", "kubectl", "kubelet")], (host, versions)
        assert kup.ssh(host, "kubeadm version -o short").strip() == f"v{NEW}"
    kup.inventory.write_text(inventory.read_text())  # the next test starts from this inventory


def test_a_rerun_after_the_upgrade_does_nothing(kup: LabEnv) -> None:
    run = kup.provisioner("up", "-o", "json", timeout=600)
    assert run.code == 0, run.stdout + run.stderr
    data = run.json()
    assert {h["name"]: h["result"] for h in data["hosts"]} == dict.fromkeys(HOSTS, "unchanged")
    assert data["upgraded"] == [] and data["cluster_steps"] == []
