"""Day 2 for kubeadm on a real lab (1 control plane + 2 workers): a rolling upgrade from the
stand-ins' minor to the next one, both served by the lab's local apt repositories (one
pkgs.k8s.io-like repository per minor); then `remove` of a worker refused by a
PodDisruptionBudget, `remove` under a budget that allows one disruption and the worker joining
again, and `reset` then `up`. The tests run in order on the same lab."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import pytest
from ruamel.yaml import YAML

from provisioner_lab import Lab, aptrepo, debs
from tests.lab.conftest import LabEnv, apply_nginx, cluster_nodes, node_ready

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
    return cluster_nodes(env, CP, KUBECTL)


def test_up_builds_the_cluster_on_the_stand_ins_minor(kup: LabEnv) -> None:
    run = kup.provisioner("up", "-o", "json", "--timeout", "240", timeout=600)
    assert run.code == 0, run.stdout + run.stderr
    found = nodes(kup)
    assert sorted(found) == sorted(HOSTS) and all(node_ready(n) for n in found.values())
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

    started = time.monotonic()
    try:
        with kup.sampling_cordoned(CP, KUBECTL) as cordoned:
            run = kup.provisioner("up", "-o", "json", "--timeout", "240", inventory=inventory, timeout=1500)
    finally:
        TIMINGS["rolling upgrade 1+2"] = round(time.monotonic() - started, 1)
    assert run.code == 0, run.stdout + run.stderr
    assert run.json()["upgraded"] == [CP, W1, W2]
    assert len(cordoned) > 10 and max(cordoned) == 1, cordoned

    final = nodes(kup)
    assert {n["status"]["nodeInfo"]["kubeletVersion"] for n in final.values()} == {f"v{NEW}"}
    assert all(node_ready(n) and not n["spec"].get("unschedulable") for n in final.values())
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


#: What a cluster leaves on a host, each a shell test that succeeds while it is there: kubeadm's
#: files, the kubelet running, what `kubeadm reset` leaves for the user to clean by hand (CNI config
#: and interfaces, kube-proxy's and Flannel's iptables chains) and what this tool adds (the kubelet
#: flags file, its folder, the package hold).
TRACES = {
    "admin.conf": "test -e /etc/kubernetes/admin.conf",
    "kubelet.conf": "test -e /etc/kubernetes/kubelet.conf",
    "cluster CA": "test -e /etc/kubernetes/pki/ca.crt",
    "static pod manifests": "ls -A /etc/kubernetes/manifests | grep -q .",
    "etcd data": "ls -A /var/lib/etcd | grep -q .",
    "kubelet config": "test -e /var/lib/kubelet/config.yaml",
    "kubeadm flags": "test -e /var/lib/kubelet/kubeadm-flags.env",
    "kubelet running": "systemctl is-active --quiet kubelet",
    "CNI config": "test -e /etc/cni/net.d",
    "CNI plugin state": "test -e /var/lib/cni",
    "Flannel subnet lease": "test -e /run/flannel",
    "cni0": "ip link show cni0",
    "flannel.1": "ip link show flannel.1",
    "kube-proxy/Flannel iptables": "iptables-save | grep -q -E 'KUBE-|FLANNEL'",
    "kubelet flags file": "test -e /etc/default/kubelet",
    "provisioner files": "test -e /etc/kubernetes/provisioner",
    "packages held": "apt-mark showhold | grep -q .",
}
JOINED = {"kubelet.conf", "cluster CA", "kubelet config", "kubeadm flags", "kubelet running", "kubelet flags file", "packages held"}
PLANTED = {"CNI config", "CNI plugin state", "Flannel subnet lease", "cni0", "flannel.1", "kube-proxy/Flannel iptables"}
#: The stand-ins run no containers, so no Flannel or kube-proxy makes these; they are made by hand
#: as those would (Flannel's conflist, a host-local IPAM reservation, flanneld's subnet lease, the
#: CNI bridge, the VXLAN device, a nat and a filter chain of each) next to a rule of the host's
#: own that must survive.
FLANNEL_AND_KUBE_PROXY = (
    'mkdir -p /etc/cni/net.d && echo \'{"name": "cbr0", "plugins": [{"type": "flannel"}]}\' > /etc/cni/net.d/10-flannel.conflist\n'
    "mkdir -p /var/lib/cni/networks/cbr0 /run/flannel && echo pod > /var/lib/cni/networks/cbr0/10.244.1.5\n"
    "echo FLANNEL_SUBNET=10.244.1.1/24 > /run/flannel/subnet.env\n"
    "ip link add cni0 type bridge\n"
    "ip link add flannel.1 type vxlan id 1 dstport 8472 dev host0\n"
    "iptables -t nat -N KUBE-SERVICES && iptables -t nat -A PREROUTING -j KUBE-SERVICES\n"
    "iptables -t nat -N FLANNEL-POSTRTG && iptables -t nat -A POSTROUTING -j FLANNEL-POSTRTG\n"
    "iptables -N KUBE-FORWARD && iptables -A FORWARD -j KUBE-FORWARD\n"
    "iptables -A INPUT -s 192.0.2.7/32 -j ACCEPT\n"
)
HOST_RULE = "-A INPUT -s 192.0.2.7/32 -j ACCEPT"


def traces(env: LabEnv, host: str) -> set[str]:
    script = "".join(f"if {test} >/dev/null 2>&1; then echo '{name}'; fi\n" for name, test in TRACES.items())
    return set(env.ssh(host, script).splitlines())


def nginx_pods(env: LabEnv) -> dict[str, int]:
    """How many nginx pods each node runs."""
    items = json.loads(env.ssh(CP, f"{KUBECTL} get pods -l app=nginx -o json"))["items"]
    spread: dict[str, int] = {}
    for pod in items:
        node = pod["spec"].get("nodeName") or ""
        spread[node] = spread.get(node, 0) + 1
    return spread


def pods_on(env: LabEnv, node: str) -> list[str]:
    listed = env.ssh(CP, f"{KUBECTL} get pods -l app=nginx --field-selector spec.nodeName={node} -o name")
    return [line.split("/", 1)[1] for line in listed.split()]


def test_remove_blocked_by_a_pdb_exits_1_names_it_and_leaves_the_worker_cordoned_and_installed(kup: LabEnv) -> None:
    apply_nginx(kup, CP, KUBECTL, 4)
    assert nginx_pods(kup) == {W1: 2, W2: 2}  # the control plane's taint keeps them on the workers
    before = traces(kup, W1)
    assert before >= JOINED
    started = time.monotonic()
    run = kup.provisioner("remove", W1, "--drain-timeout", "15", timeout=300)
    TIMINGS["remove blocked by a PDB (--drain-timeout 15)"] = round(time.monotonic() - started, 1)
    assert run.code == 1, run.stdout + run.stderr
    assert "Drain blocked by PodDisruptionBudgets" in run.stdout, run.stdout
    assert re.search(r"\bnginx\W+default\W+0\W+4\W", run.stdout), run.stdout  # PDB, namespace, disruptionsAllowed, minAvailable
    assert all(pod in run.stdout for pod in pods_on(kup, W1)), run.stdout  # the pods it covers
    node = nodes(kup)[W1]
    assert node["spec"].get("unschedulable") is True and node_ready(node)
    assert traces(kup, W1) == before
    assert nginx_pods(kup) == {W1: 2, W2: 2}
    kup.ssh(CP, f"{KUBECTL} uncordon {W1}")


def test_remove_of_a_worker_under_a_pdb_moves_its_pods_resets_the_host_and_up_joins_it_again_under_its_name(kup: LabEnv) -> None:
    apply_nginx(kup, CP, KUBECTL, 3)
    assert nginx_pods(kup) == {W1: 2, W2: 2}
    kup.ssh(W1, FLANNEL_AND_KUBE_PROXY)
    assert traces(kup, W1) >= JOINED | PLANTED  # the probes see what they look for

    started = time.monotonic()
    run = kup.provisioner("remove", W1, "--drain-timeout", "120", timeout=300)
    TIMINGS["remove one worker with 2 nginx pods (PDB minAvailable 3)"] = round(time.monotonic() - started, 1)
    assert run.code == 0, run.stdout + run.stderr
    assert W1 not in nodes(kup)
    assert nginx_pods(kup) == {W2: 4}
    deploy = json.loads(kup.ssh(CP, f"{KUBECTL} get deploy nginx -o json"))
    assert deploy["status"]["availableReplicas"] == 4
    assert traces(kup, W1) == set()
    assert HOST_RULE in kup.ssh(W1, "iptables-save")
    installed = kup.ssh(W1, "dpkg-query -W -f='${Package}\\n' kubelet kubeadm kubectl").split()
    assert sorted(installed) == ["kubeadm", "kubectl", "kubelet"]  # released, not purged

    run = kup.provisioner("up", "-o", "json", "--timeout", "240", timeout=600)
    assert run.code == 0, run.stdout + run.stderr
    assert {h["name"]: h["action"] for h in run.json()["hosts"]} == {CP: "nothing", W1: "join", W2: "nothing"}
    assert node_ready(nodes(kup)[W1])
    assert set(kup.ssh(W1, "apt-mark showhold").split()) == {"kubelet", "kubeadm", "kubectl"}


def ca_hash(env: LabEnv) -> str:
    """The CA hash a join pins, from a short-lived join command made on the control plane."""
    printed = env.ssh(CP, "kubeadm token create --ttl 10m0s --print-join-command")
    match = re.search(r"--discovery-token-ca-cert-hash (sha256:[0-9a-f]{64})", printed)
    assert match, printed
    return match.group(1)


def test_reset_then_up_builds_a_fresh_cluster_with_a_new_ca_on_the_same_hosts(kup: LabEnv) -> None:
    before = ca_hash(kup)
    written = kup.workdir / f"{NAME}.kubeconfig"
    assert kup.kubectl(written, "config", "get-contexts", "-o", "name").stdout.split() == [NAME]

    run = kup.provisioner("reset", "--yes", "-o", "json", timeout=600)
    assert run.code == 0, run.stdout + run.stderr
    assert {h["name"]: h["result"] for h in run.json()["hosts"]} == dict.fromkeys(HOSTS, "changed")
    for host in HOSTS:
        assert traces(kup, host) == set(), host
    cleaned = run.json()["kubeconfig_cleaned"]
    assert [(kup.workdir / c["path"]).resolve() for c in cleaned] == [written.resolve()], cleaned
    assert NAME in (kup.workdir / cleaned[0]["backup"]).read_text()  # backed up first
    config = YAML(typ="safe").load(written.read_text()) or {}
    assert [config.get(kind) for kind in ("contexts", "clusters", "users")] == [[], [], []], config  # it held this cluster only

    run = kup.provisioner("up", "-o", "json", "--timeout", "240", timeout=600)
    assert run.code == 0, run.stdout + run.stderr
    assert {h["name"]: h["action"] for h in run.json()["hosts"]} == {CP: "install", W1: "join", W2: "join"}
    assert ca_hash(kup) != before
    found = nodes(kup)
    assert sorted(found) == sorted(HOSTS) and all(node_ready(n) for n in found.values())
    listed = kup.kubectl(written, "get", "nodes", "-o", "name")
    assert listed.returncode == 0, listed.stderr  # the new kubeconfig trusts the new CA
