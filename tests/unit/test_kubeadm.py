"""kubeadm + Flannel from recorded facts: Debian, Ubuntu, Rocky and Alma hosts in, commands out.

The RHEL family cannot run on this machine; its hosts are described by recorded fact output and
the tests check the exact commands and files the provisioner would send.
"""

from __future__ import annotations

import subprocess
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from provisioner import hostos
from provisioner.distros import Action, ClusterState
from provisioner.distros.kubeadm import (
    CONTAINERD_CONFIG,
    Kubeadm,
    KubeadmPreflightError,
    version_matches,
)
from provisioner.executor import StepFailed, ValueStore
from provisioner.executor import run_steps as execute
from provisioner.facts import HostFacts, parse_key_values
from provisioner.testing import FakeRemote
from tests.unit.conftest import make_inventory
from tests.unit.fakes import DEBIAN_FRESH, facts_from, kubeadm, prepared
from tests.unit.fakes import KUBEADM_INVENTORY as INVENTORY

UBUNTU_FRESH = (
    DEBIAN_FRESH.replace("os.id=debian", "os.id=ubuntu")
    .replace("os.id_like=", "os.id_like=debian")
    .replace("Debian GNU/Linux 12 (bookworm)", "Ubuntu 24.04.1 LTS")
    .replace("os.version_id=12", "os.version_id=24.04")
)

ROCKY_FRESH = """os.id=rocky
os.id_like=rhel centos fedora
os.version_id=9.4
os.pretty_name=Rocky Linux 9.4 (Blue Onyx)
arch=x86_64
mem_kib=4000000
cpus=2
systemd=yes
hostname=cp1
machine_id=bb
user=root
tool.curl=yes
module.overlay=yes
module.br_netfilter=yes
sysctl.net.bridge.bridge-nf-call-iptables=0
sysctl.net.bridge.bridge-nf-call-ip6tables=0
sysctl.net.ipv4.ip_forward=0
swap.devices=0
swap.fstab=0
service.containerd=inactive
service.kubelet=inactive
held=
selinux=Enforcing
selinux.config=enforcing
firewalld=active
firewalld.ports=22/tcp
"""

ALMA_WITH_CONTAINERD_2 = (
    ROCKY_FRESH.replace("os.id=rocky", "os.id=almalinux")
    .replace("Rocky Linux 9.4 (Blue Onyx)", "AlmaLinux 9.4 (Seafoam Ocelot)")
    .replace("service.containerd=inactive", "service.containerd=active\npkg.containerd.io=2.0.0-1.el9\ncontainerd.version=v2.0.0")
    .replace("selinux=Enforcing\nselinux.config=enforcing", "selinux=Permissive\nselinux.config=permissive")
    .replace("firewalld=active\nfirewalld.ports=22/tcp", "firewalld=inactive")
)


def run_steps(dist: Kubeadm, name: str, recorded: str) -> tuple[FakeRemote, list[str]]:
    """Plan the host from recorded facts, run its steps on a fake host; return it and step names."""
    f = facts_from(dist, name, recorded)
    host = dist.inventory.host(name)
    steps = dist.host_steps(host, f)
    remote = FakeRemote(name)
    execute(remote, steps, ValueStore())
    return remote, [s.name for s in steps]


def pick_containerd_config(remote: FakeRemote, containerd_version_line: str, tmp_path: Path) -> dict:
    """Run the plan's "pick the config by containerd's version" command in a scratch folder
    standing in for /etc/containerd, with a ``containerd`` that prints ``containerd_version_line``."""
    etc = tmp_path / "etc-containerd"
    etc.mkdir(exist_ok=True)
    for path, data in remote.files.items():
        if path.startswith(CONTAINERD_CONFIG + ".provisioner-"):
            (etc / Path(path).name).write_bytes(data)
    binary = tmp_path / "bin" / "containerd"
    binary.parent.mkdir(exist_ok=True)
    binary.write_text(f"#!/bin/sh\necho '{containerd_version_line}'\n")
    binary.chmod(0o755)
    pick = next(c for c in sudo_commands(remote) if "containerd --version" in c)
    subprocess.run(["sh", "-c", pick.replace("/etc/containerd", str(etc))], check=True, env={"PATH": f"{binary.parent}:/usr/bin:/bin"})
    assert sorted(p.name for p in etc.iterdir()) == ["config.toml"]  # the candidates are removed
    return tomllib.loads((etc / "config.toml").read_text())


def sudo_commands(remote: FakeRemote) -> list[str]:
    return [c for kind, c in remote.commands if kind == "sudo"]


# --- fresh hosts of each family --------------------------------------------------------------------


@pytest.mark.parametrize("recorded", [DEBIAN_FRESH, UBUNTU_FRESH], ids=["debian-12", "ubuntu-24.04"])
def test_fresh_debian_family_host_gets_every_preparation_step_through_apt(recorded: str, tmp_path: Path) -> None:
    dist = kubeadm()
    remote, titles = run_steps(dist, "cp1", recorded)
    assert titles == [
        "kernel modules",
        "sysctls",
        "swap off",
        "install containerd",
        "configure containerd",
        "Kubernetes package repository",
        "networking tools for kubeadm",
        "kubelet, kubeadm, kubectl",
        "kubelet flags",
    ]
    commands = sudo_commands(remote)
    assert commands[0] == "modprobe br_netfilter"
    assert commands[1] == "sysctl -q -p /etc/sysctl.d/99-kubernetes.conf"
    assert commands[2].startswith("swapoff -a && ") and "/etc/fstab.provisioner-backup-" in commands[2]
    assert "apt-get -q -o Dpkg::Options::=--force-confold update && " in commands[3]
    assert commands[3].endswith("install -y --no-install-recommends containerd")
    assert commands[4].startswith('case "$(containerd --version')  # the config follows the installed generation
    assert "systemctl restart containerd" in commands[5]
    assert any(
        "curl -fsSL https://pkgs.k8s.io/core:/stable:/v1.31/deb/Release.key -o /etc/apt/keyrings/kubernetes-apt-keyring.asc" in c
        for c in commands
    )
    install = next(c for c in commands if "kubelet kubeadm kubectl" in c)
    assert install.endswith(
        "install -y --no-install-recommends kubelet kubeadm kubectl && apt-mark hold kubelet kubeadm kubectl >/dev/null && systemctl enable kubelet"
    )
    assert any(c.endswith("install -y --no-install-recommends conntrack iptables socat ethtool ebtables") for c in commands)
    assert remote.files["/etc/apt/sources.list.d/kubernetes.list"].decode().splitlines()[-1] == (
        "deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.asc] https://pkgs.k8s.io/core:/stable:/v1.31/deb/ /"
    )
    assert remote.files["/etc/default/kubelet"].decode().splitlines()[-1] == "KUBELET_EXTRA_ARGS="
    assert remote.files["/etc/modules-load.d/k8s.conf"].decode().split("\n")[1:3] == ["overlay", "br_netfilter"]
    containerd = pick_containerd_config(remote, "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1", tmp_path)
    assert containerd["version"] == 2
    assert containerd["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is True


def test_fresh_rocky_host_gets_selinux_permissive_firewalld_ports_docker_repo_and_dnf(tmp_path: Path) -> None:
    dist = kubeadm()
    remote, titles = run_steps(dist, "cp1", ROCKY_FRESH)
    assert titles == [
        "kernel modules",
        "sysctls",
        "SELinux permissive",
        "firewalld ports",
        "install containerd",
        "configure containerd",
        "Kubernetes package repository",
        "networking tools for kubeadm",
        "kubelet, kubeadm, kubectl",
        "kubelet flags",
    ]
    assert "/etc/modules-load.d/k8s.conf" in remote.files and not remote.ran("modprobe")  # both modules already loaded
    commands = sudo_commands(remote)
    assert "setenforce 0" in commands[1] and "SELINUX=permissive" in commands[1]
    assert commands[2] == (
        "firewall-cmd --permanent --add-port=6443/tcp --add-port=2379-2380/tcp --add-port=10250/tcp "
        "--add-port=10257/tcp --add-port=10259/tcp --add-port=8472/udp && firewall-cmd --reload"
    )
    assert commands[3] == (
        "test -f /etc/yum.repos.d/docker-ce.repo || curl -fsSL https://download.docker.com/linux/centos/docker-ce.repo "
        "-o /etc/yum.repos.d/docker-ce.repo && dnf install -y --disableexcludes=kubernetes containerd.io"
    )
    repo = remote.files["/etc/yum.repos.d/kubernetes.repo"].decode()
    assert "baseurl=https://pkgs.k8s.io/core:/stable:/v1.31/rpm/" in repo
    assert "gpgkey=https://pkgs.k8s.io/core:/stable:/v1.31/rpm/repodata/repomd.xml.key" in repo
    assert "exclude=kubelet kubeadm kubectl cri-tools kubernetes-cni" in repo
    assert "dnf install -y --disableexcludes=kubernetes conntrack-tools /usr/sbin/iptables socat ethtool" in commands
    install = next(c for c in commands if "kubelet kubeadm kubectl" in c)
    assert install.startswith("dnf install -y --disableexcludes=kubernetes kubelet kubeadm kubectl && ")
    assert "dnf versionlock add kubelet kubeadm kubectl" in install
    assert "/etc/sysconfig/kubelet" in remote.files
    assert pick_containerd_config(remote, "containerd containerd.io 1.7.22 7f7fdf5", tmp_path)["version"] == 2  # 1.7 is 1.x
    assert pick_containerd_config(remote, "containerd github.com/containerd/containerd/v2 v2.0.0 207ad71", tmp_path)["version"] == 3


def test_alma_host_with_containerd_2_gets_the_version_3_config_and_no_selinux_or_firewall_steps() -> None:
    dist = kubeadm()
    remote, titles = run_steps(dist, "w1", ALMA_WITH_CONTAINERD_2)
    assert "SELinux permissive" not in titles and "firewalld ports" not in titles and "install containerd" not in titles
    config = tomllib.loads(remote.files[CONTAINERD_CONFIG].decode())
    assert config["version"] == 3
    runtime = config["plugins"]["io.containerd.cri.v1.runtime"]["containerd"]["runtimes"]["runc"]
    assert runtime["options"]["SystemdCgroup"] is True
    assert config["plugins"]["io.containerd.cri.v1.images"]["pinned_images"]["sandbox"] == "registry.k8s.io/pause:3.10"
    assert remote.files["/etc/sysconfig/kubelet"].decode().splitlines()[-1] == "KUBELET_EXTRA_ARGS=--node-ip=192.0.2.11"


def test_firewalld_worker_ports_differ_from_control_plane_ports() -> None:
    steps = hostos.RhelFamily().prepare_steps(hostos.parse_rhel_facts(parse_key_values(ROCKY_FRESH)), "agent")
    assert (
        steps[1][2]
        == "firewall-cmd --permanent --add-port=10250/tcp --add-port=10256/tcp --add-port=30000-32767/tcp --add-port=8472/udp && firewall-cmd --reload"
    )


def test_a_full_version_pins_the_packages() -> None:
    dist = kubeadm(INVENTORY.replace('version: "1.31"', 'version: "1.31.4"'))
    remote, _ = run_steps(dist, "cp1", DEBIAN_FRESH)
    assert any(
        "install -y --no-install-recommends 'kubelet=1.31.4-*' 'kubeadm=1.31.4-*' 'kubectl=1.31.4-*'" in c for c in sudo_commands(remote)
    )
    remote, _ = run_steps(dist, "cp1", ROCKY_FRESH)
    assert any(
        c.startswith("dnf install -y --disableexcludes=kubernetes kubelet-1.31.4 kubeadm-1.31.4 kubectl-1.31.4")
        for c in sudo_commands(remote)
    )


def test_a_package_mirror_replaces_pkgs_k8s_io() -> None:
    dist = kubeadm(INVENTORY.replace("  api_endpoint", "  package_repo: https://mirror.example/k8s/v1.31/deb\n  api_endpoint"))
    remote, _ = run_steps(dist, "cp1", DEBIAN_FRESH)
    assert "https://mirror.example/k8s/v1.31/deb/ /" in remote.files["/etc/apt/sources.list.d/kubernetes.list"].decode()
    assert any("https://mirror.example/k8s/v1.31/deb/Release.key" in c for c in sudo_commands(remote))


# --- reruns ------------------------------------------------------------------------------------------


def plans(dist: Kubeadm, facts: dict[str, HostFacts], *, flannel: str | None = "auto") -> dict:
    state = ClusterState(dist.inventory.servers[0], None, None)
    state.addons["flannel"] = dist.flannel_manifest()[1] if flannel == "auto" else flannel
    return dist.plan(facts, state)


def test_a_converged_cluster_plans_nothing_anywhere() -> None:
    dist = kubeadm()
    result = plans(dist, {n: prepared(dist, n) for n in ("cp1", "w1")})
    assert {n: p.action for n, p in result.items()} == {"cp1": Action.NOTHING, "w1": Action.NOTHING}
    state = ClusterState(dist.inventory.servers[0], None, None, {"flannel": dist.flannel_manifest()[1]})
    assert dist.addon_steps(state) == []


def test_swap_turned_back_on_is_a_reconfigure_with_only_that_step() -> None:
    dist = kubeadm()
    result = plans(dist, {"cp1": prepared(dist, "cp1"), "w1": prepared(dist, "w1", swap_devices=1)})
    assert result["w1"].action is Action.RECONFIGURE
    assert [s.name for s in result["w1"].steps] == ["swap off"]
    assert result["cp1"].action is Action.NOTHING


def test_a_new_node_ip_rewrites_kubelet_flags_and_restarts_kubelet_only_there() -> None:
    dist = kubeadm()
    old = prepared(dist, "w1")
    changed = kubeadm(INVENTORY.replace("node_ip: 192.0.2.11", "node_ip: 192.0.2.111"))
    result = plans(changed, {"cp1": prepared(changed, "cp1"), "w1": old})
    assert result["w1"].action is Action.RECONFIGURE and [s.name for s in result["w1"].steps] == ["kubelet flags"]
    remote = FakeRemote("w1")
    execute(remote, result["w1"].steps, ValueStore())
    assert remote.files["/etc/default/kubelet"].decode().splitlines()[-1] == "KUBELET_EXTRA_ARGS=--node-ip=192.0.2.111"
    assert remote.ran("systemctl restart kubelet")


def test_a_stopped_kubelet_is_restarted() -> None:
    dist = kubeadm()
    result = plans(
        dist, {"cp1": prepared(dist, "cp1"), "w1": prepared(dist, "w1", services={"containerd": "active", "kubelet": "inactive"})}
    )
    assert result["w1"].action is Action.RESTART and list(result["w1"].reasons) == ["restart kubelet: kubelet is inactive"]


def test_fresh_hosts_plan_init_and_join_and_flannel() -> None:
    dist = kubeadm()
    result = plans(dist, {n: prepared(dist, n, joined=False) for n in ("cp1", "w1")}, flannel=None)
    assert result["cp1"].action is Action.INSTALL
    assert [s.name for s in result["cp1"].steps[-2:]] == ["kubeadm init", "wait for the Kubernetes API"]
    assert result["w1"].action is Action.JOIN and result["w1"].steps[-1].name == "kubeadm join"
    state = ClusterState(dist.inventory.servers[0], None, None, {"flannel": None})
    cluster = dist.cluster_plan(result, state)
    assert [(s.name, s.reason) for s in cluster.addons] == [("Flannel v0.26.1", "not applied yet")]
    assert cluster.join_secret is not None and cluster.join_secret.name == "create a bootstrap token on cp1"
    assert cluster.stale_nodes == ()


def test_installed_packages_of_another_minor_are_upgraded_with_kubeadm_upgrade_node_then_kubelet() -> None:
    """Was: left alone with a warning. The rolling upgrade (issue 12) upgrades such a host instead."""
    dist = kubeadm()
    old = prepared(dist, "w1", packages={"kubelet": "1.30.2-1.1", "kubeadm": "1.30.2-1.1", "kubectl": "1.30.2-1.1", "containerd": "1.6"})
    result = plans(dist, {"cp1": prepared(dist, "cp1"), "w1": old})
    assert result["w1"].action is Action.UPGRADE and result["cp1"].action is Action.NOTHING
    assert dist.host_warnings({"cp1": prepared(dist, "cp1"), "w1": old}) == []
    commands = [op.text for s in result["w1"].steps for op in s.operations if hasattr(op, "text")]
    assert commands == [
        "apt-mark unhold kubeadm >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get -q -o Dpkg::Options::=--force-confold "
        "update && DEBIAN_FRONTEND=noninteractive apt-get -q -o Dpkg::Options::=--force-confold install -y "
        "--no-install-recommends kubeadm && apt-mark hold kubeadm >/dev/null",
        "kubeadm upgrade node",
        "apt-mark unhold kubelet kubectl >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get -q -o "
        "Dpkg::Options::=--force-confold install -y --no-install-recommends kubelet kubectl && "
        "apt-mark hold kubelet kubectl >/dev/null && systemctl daemon-reload && systemctl restart kubelet",
    ]


def test_the_first_control_plane_switches_the_repository_then_runs_upgrade_plan_and_apply_at_the_exact_version() -> None:
    dist = kubeadm(INVENTORY.replace('version: "1.31"', 'version: "1.32.1"'))
    on_31 = {n: prepared(kubeadm(), n) for n in ("cp1", "w1")}
    result = plans(dist, on_31)
    assert {n: p.action for n, p in result.items()} == {"cp1": Action.UPGRADE, "w1": Action.UPGRADE}
    names = [s.name for s in result["cp1"].steps]
    assert names == [
        "Kubernetes package repository",
        "kubeadm 1.32.1",
        "kubeadm upgrade plan",
        "kubeadm upgrade apply",
        "kubelet and kubectl 1.32.1",
        "wait for the Kubernetes API",
    ]
    repo = result["cp1"].steps[0].operations[0]
    assert "https://pkgs.k8s.io/core:/stable:/v1.32/deb/" in repo.content  # type: ignore[union-attr]
    texts = [op.text for s in result["cp1"].steps for op in s.operations if hasattr(op, "text")]
    assert "kubeadm upgrade plan v1.32.1" in texts and "kubeadm upgrade apply v1.32.1 -y" in texts
    assert any("kubeadm=1.32.1-*" in t for t in texts) and any("kubelet=1.32.1-*" in t for t in texts)
    assert dist.upgraded_version() == "v1.32.1"
    assert kubeadm(INVENTORY.replace('version: "1.31"', 'version: "1.32"')).upgraded_version() == "v1.32."


def test_skipping_a_minor_is_refused_with_the_path_and_a_downgrade_is_refused() -> None:
    on_30 = {
        n: prepared(kubeadm(), n, packages={"kubelet": "1.30.2-1.1", "kubeadm": "1.30.2-1.1", "kubectl": "1.30.2-1.1", "containerd": "1.6"})
        for n in ("cp1", "w1")
    }
    skip = kubeadm(INVENTORY.replace('version: "1.31"', 'version: "1.32"'))
    problems = skip.upgrade_problems(on_30)
    assert problems[0] == (
        "cp1: runs Kubernetes 1.30.2; kubeadm upgrades one minor at a time: 1.30 → 1.31 → 1.32 "
        "(set version to 1.31 first, run up, then the next)"
    )
    assert problems[0] in skip.check_hosts(on_30)
    down = kubeadm(INVENTORY.replace('version: "1.31"', 'version: "1.29"'))
    assert "a downgrade, which kubeadm does not do" in down.upgrade_problems(on_30)[0]
    assert kubeadm(INVENTORY).upgrade_problems(on_30) == []  # 1.30 → 1.31 is one step
    assert kubeadm(INVENTORY.replace('version: "1.31"', 'version: "1.30.1"')).upgrade_problems(on_30)[0].count("downgrade") == 1


def test_kubeadm_uninstall_resets_cleans_cni_iptables_flags_and_releases_the_hold() -> None:
    dist = kubeadm()
    steps = dist.uninstall_steps(dist.inventory.host("w1"), prepared(dist, "w1"))
    assert [s.name for s in steps] == [
        "kubeadm reset -f",
        "CNI config, state and interfaces",
        "iptables chains of kube-proxy and Flannel",
        "kubelet flags and provisioner files",
        "release the package hold",
    ]
    texts = [op.text for s in steps for op in s.operations if hasattr(op, "text")]
    assert texts[0] == "kubeadm reset -f"
    assert "rm -rf /etc/cni/net.d /var/lib/cni /run/flannel " in texts[1] and "cni0 flannel.1" in texts[1]
    assert "grep -v -E 'KUBE-|FLANNEL|CNI-'" in texts[2] and "ip6tables" in texts[2]
    assert texts[3] == "rm -f /etc/default/kubelet && rm -rf /etc/kubernetes/provisioner"
    assert texts[4] == "apt-mark unhold kubelet kubeadm kubectl >/dev/null"


def test_the_iptables_cleanup_drops_only_kube_proxy_flannel_and_cni_rules() -> None:
    from provisioner.distros.kubeadm import IPTABLES_CLEANUP

    saved = (
        "*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n:FLANNEL-POSTRTG - [0:0]\n"
        '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES\n'
        "-A POSTROUTING -j FLANNEL-POSTRTG\n-A POSTROUTING -s 192.168.1.0/24 -j MASQUERADE\nCOMMIT\n"
    )
    script = IPTABLES_CLEANUP.replace('"$tool-save"', "cat saved").replace('| "$tool-restore"', "> restored")
    work = Path(subprocess.run(["mktemp", "-d"], capture_output=True, text=True).stdout.strip())
    (work / "saved").write_text(saved)
    subprocess.run(["sh", "-c", f"command() {{ return 0; }}; {script}"], cwd=work, check=True)
    assert (work / "restored").read_text() == "*nat\n:PREROUTING ACCEPT [0:0]\n-A POSTROUTING -s 192.168.1.0/24 -j MASQUERADE\nCOMMIT\n"


def test_the_cni_cleanup_removes_config_plugin_state_and_the_flannel_links_that_exist(tmp_path: Path) -> None:
    from provisioner.distros.kubeadm import CNI_CLEANUP

    for folder in ("etc/cni/net.d", "var/lib/cni/networks/cbr0", "run/flannel", "etc/keep"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "var/lib/cni/networks/cbr0/10.244.1.5").write_text("leaked")
    script = CNI_CLEANUP.replace(" /", f" {tmp_path}/")  # the paths under tmp_path
    stub = 'ip() { echo "$*" >> calls; [ "$1 $2" != "link show" ] || [ "$3" = cni0 ]; }'  # only cni0 exists
    subprocess.run(["sh", "-c", f"{stub}; {script}"], cwd=tmp_path, check=True)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_dir()) == [
        "etc",
        "etc/cni",
        "etc/keep",
        "run",
        "var",
        "var/lib",
    ]
    assert (tmp_path / "calls").read_text().splitlines() == ["link show cni0", "link delete cni0", "link show flannel.1"]


@pytest.mark.parametrize(
    "installed,wanted,ok",
    [
        ("1.31.4-1.1", "1.31", True),
        ("1.31.4-150500.1.1", "1.31.4", True),
        ("1.3.1-1.1", "1.31", False),
        ("1.310.0-1", "1.31", False),
        ("1.31.5-1.1", "1.31.4", False),
    ],
)
def test_version_matching(installed: str, wanted: str, ok: bool) -> None:
    assert version_matches(installed, wanted) is ok


# --- validation ----------------------------------------------------------------------------------------


def test_control_plane_below_kubeadm_minimums_is_refused_before_anything_changes() -> None:
    dist = kubeadm()
    small = replace(prepared(dist, "cp1", joined=False), cpus=1, memory_mib=1024)
    problems = dist.check_hosts({"cp1": small, "w1": prepared(dist, "w1", joined=False)})
    assert problems == ["cp1: a kubeadm control plane needs at least 2 CPUs and 1700 MB of memory; it has 1 CPU(s) and 1024 MB"]


def test_unsupported_os_is_refused_and_two_control_planes_only_for_the_quorum() -> None:
    dist = kubeadm(INVENTORY + "  - {name: cp2, address: 192.0.2.12, role: server}\n")
    arch = facts_from(
        dist, "cp2", DEBIAN_FRESH.replace("os.id=debian", "os.id=arch").replace("Debian GNU/Linux 12 (bookworm)", "Arch Linux")
    )
    problems = dist.check_hosts({"cp1": prepared(dist, "cp1"), "w1": prepared(dist, "w1"), "cp2": arch})
    assert problems == ["cp2: Arch Linux is not supported (Debian/Ubuntu or the RHEL family)"]
    assert dist.embedded_etcd(2)  # so ValidateHosts refuses the even count (provisioner.quorum)


def test_kubeadm_inventory_needs_a_version() -> None:
    from provisioner.errors import InventoryError

    with pytest.raises(InventoryError, match="kubeadm clusters need cluster.version"):
        make_inventory(INVENTORY.replace('  version: "1.31"\n', ""))


# --- rendered files ------------------------------------------------------------------------------------


def load_all(text: str) -> list[dict]:
    return [d for d in YAML(typ="safe").load_all(text) if d]


def test_init_config_v1beta4_has_endpoint_sans_pod_subnet_and_list_style_kubelet_args() -> None:
    dist = kubeadm(
        INVENTORY.replace(
            "{name: cp1, address: 192.0.2.10, role: server}", "{name: cp1, address: 192.0.2.10, role: server, node_ip: 10.0.0.10}"
        )
    )
    init, cluster, kubelet = load_all(dist.init_config(dist.inventory.host("cp1"), "v1.31.4"))
    assert init["apiVersion"] == "kubeadm.k8s.io/v1beta4" and init["kind"] == "InitConfiguration"
    assert init["nodeRegistration"]["name"] == "cp1"
    assert init["nodeRegistration"]["kubeletExtraArgs"] == [{"name": "node-ip", "value": "10.0.0.10"}]
    assert init["localAPIEndpoint"] == {"advertiseAddress": "10.0.0.10", "bindPort": 6443}
    assert cluster["controlPlaneEndpoint"] == "192.0.2.100:6443"
    assert cluster["kubernetesVersion"] == "v1.31.4"
    assert cluster["networking"] == {"podSubnet": "10.244.0.0/16"}
    assert cluster["apiServer"]["certSANs"] == ["192.0.2.100", "192.0.2.10", "10.0.0.10"]
    assert kubelet == {"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration", "cgroupDriver": "systemd"}


def test_join_config_v1beta3_for_older_minors_uses_map_style_kubelet_args() -> None:
    dist = kubeadm(INVENTORY.replace('version: "1.31"', 'version: "1.30"'))
    (join,) = load_all(
        dist.join_config(dist.inventory.host("w1"), dist.inventory.host("cp1"), "abcdef.0123456789abcdef", ("sha256:" + "a" * 64,))
    )
    assert join["apiVersion"] == "kubeadm.k8s.io/v1beta3" and join["kind"] == "JoinConfiguration"
    assert join["discovery"]["bootstrapToken"] == {
        "apiServerEndpoint": "192.0.2.100:6443",
        "token": "abcdef.0123456789abcdef",
        "caCertHashes": ["sha256:" + "a" * 64],
    }
    assert join["nodeRegistration"]["kubeletExtraArgs"] == {"node-ip": "192.0.2.11"}


def test_flannel_manifest_has_six_objects_pod_cidr_ifaces_and_a_stable_fingerprint() -> None:
    dist = kubeadm(INVENTORY.replace("  api_endpoint", "  pod_network_cidr: 10.50.0.0/16\n  api_endpoint"))
    manifest, fingerprint = dist.flannel_manifest()
    docs = load_all(manifest)
    assert [(d["kind"], d["metadata"]["name"]) for d in docs] == [
        ("Namespace", "kube-flannel"),
        ("ServiceAccount", "flannel"),
        ("ClusterRole", "flannel"),
        ("ClusterRoleBinding", "flannel"),
        ("ConfigMap", "kube-flannel-cfg"),
        ("DaemonSet", "kube-flannel-ds"),
    ]
    import json

    assert json.loads(docs[4]["data"]["net-conf.json"])["Network"] == "10.50.0.0/16"
    daemonset = docs[5]
    assert daemonset["metadata"]["annotations"]["provisioner.io/manifest-sha256"] == fingerprint
    container = daemonset["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "docker.io/flannel/flannel:v0.26.1"
    assert container["args"] == ["--ip-masq", "--kube-subnet-mgr", "--iface=eth1"]
    assert dist.flannel_manifest() == (manifest, fingerprint)


# --- init and join on a fake host ------------------------------------------------------------------------


def init_plan(dist: Kubeadm):  # type: ignore[no-untyped-def]
    return plans(dist, {n: prepared(dist, n, joined=False) for n in ("cp1", "w1")}, flannel=None)["cp1"]


def test_kubeadm_preflight_errors_are_reported_verbatim_under_one_line() -> None:
    dist = kubeadm()
    init = next(s for s in init_plan(dist).steps if s.name == "kubeadm init")
    remote = FakeRemote("cp1", strict=True)
    remote.on(r"^kubeadm version -o short$", stdout="v1.31.4\n")
    remote.on(
        r"^kubeadm init",
        exit_code=1,
        stderr=(
            "[init] Using Kubernetes version: v1.31.4\n[preflight] Running pre-flight checks\n"
            "error execution phase preflight: [preflight] Some fatal errors occurred:\n"
            "\t[ERROR NumCPU]: the number of available CPUs 1 is less than the required 2\n"
            "\t[ERROR Swap]: running with swap on is not supported. Please disable swap\n"
        ),
    )
    with pytest.raises(StepFailed) as caught:
        execute(remote, [init], ValueStore())
    assert isinstance(caught.value.cause, KubeadmPreflightError)
    assert caught.value.lines() == [
        "cp1: kubeadm init preflight found 2 error(s); nothing was changed by kubeadm",
        "  [ERROR NumCPU]: the number of available CPUs 1 is less than the required 2",
        "  [ERROR Swap]: running with swap on is not supported. Please disable swap",
    ]
    assert not remote.ran("kubeadm reset")
    assert remote.modes["/etc/kubernetes/provisioner/kubeadm-init.yaml"] == 0o600
    assert 'kubernetesVersion: "v1.31.4"' in remote.files["/etc/kubernetes/provisioner/kubeadm-init.yaml"].decode()


def test_a_failed_init_after_preflight_is_reset_so_a_rerun_starts_clean() -> None:
    from provisioner.errors import RemoteCommandError

    dist = kubeadm()
    init = next(s for s in init_plan(dist).steps if s.name == "kubeadm init")
    remote = FakeRemote("cp1", strict=True)
    remote.on(r"^kubeadm version -o short$", stdout="v1.31.4\n")
    remote.on(r"^kubeadm init", exit_code=1, stderr="[wait-control-plane] timed out waiting for the condition\n")
    remote.on(r"^kubeadm reset -f$")
    with pytest.raises(StepFailed) as caught:
        execute(remote, [init], ValueStore())
    assert isinstance(caught.value.cause, RemoteCommandError)
    assert "`kubeadm reset -f` was run" in str(caught.value.cause)
    assert remote.ran("kubeadm reset -f")


def test_join_uses_a_fresh_token_in_a_0600_file_that_is_removed_and_never_in_a_command() -> None:
    dist = kubeadm()
    token = "abcdef.0123456789abcdef"
    cp = FakeRemote("cp1", strict=True)
    cp.on(
        r"^kubeadm token create",
        stdout=f"kubeadm join 192.0.2.100:6443 --token {token} --discovery-token-ca-cert-hash sha256:{'b' * 64} \n",
    )
    result = plans(dist, {"cp1": prepared(dist, "cp1"), "w1": prepared(dist, "w1", joined=False)})
    cluster = dist.cluster_plan(result, ClusterState(dist.inventory.servers[0], None, []))
    assert cluster.join_secret is not None
    values = ValueStore()
    execute(cp, [cluster.join_secret], values)
    assert cp.ran(r"kubeadm token create --ttl 15m0s --print-join-command")
    plan = result["w1"]
    assert plan.action is Action.JOIN
    assert token not in str(plan.as_dict())  # the plan holds placeholders only
    worker = FakeRemote("w1", strict=True)
    worker.on(r"^kubeadm join")
    execute(worker, plan.steps, values)
    config = worker.files["/etc/kubernetes/provisioner/kubeadm-join.yaml"].decode()
    assert worker.modes["/etc/kubernetes/provisioner/kubeadm-join.yaml"] == 0o600
    assert token in config and "sha256:" + "b" * 64 in config
    assert worker.ran(
        r"^kubeadm join --config /etc/kubernetes/provisioner/kubeadm-join.yaml; rc=\$\?; rm -f /etc/kubernetes/provisioner/kubeadm-join.yaml; exit \$rc$"
    )
    assert all(token not in c for _, c in worker.commands + cp.commands)


def test_hosts_running_the_other_distribution_are_refused() -> None:
    from provisioner.distros.k3s import K3s, K3sFacts

    dist = kubeadm()
    with_k3s = replace(prepared(dist, "w1", joined=False), kubernetes=frozenset({"k3s"}))
    assert dist.check_hosts({"cp1": prepared(dist, "cp1", joined=False), "w1": with_k3s}) == [
        "w1: runs k3s; remove it (k3s-uninstall.sh or k3s-agent-uninstall.sh) before installing kubeadm"
    ]
    k3s = K3s(make_inventory("cluster: {name: a}\nhosts:\n  - {name: cp1, address: 192.0.2.10, role: server}\n"))
    kubeadm_node = replace(prepared(dist, "cp1"), dist=K3sFacts(), kubernetes=frozenset({"kubeadm"}))
    assert "cp1: is already a kubeadm node" in k3s.check_hosts({"cp1": kubeadm_node})[0]


@pytest.mark.parametrize("distribution,unit", [("kubeadm", "kubelet"), ("k3s", "k3s")])
def test_an_api_that_never_gets_ready_fails_with_the_last_line_of_its_service_journal(distribution: str, unit: str) -> None:
    from provisioner.distros import for_inventory
    from provisioner.errors import HostError

    inventory = make_inventory(
        INVENTORY if distribution == "kubeadm" else "cluster: {name: a}\nhosts:\n  - {name: cp1, address: 192.0.2.10, role: server}\n"
    )
    dist = for_inventory(inventory, timeout=0.1)
    remote = FakeRemote("cp1")
    remote.on(r"get --raw=/readyz", exit_code=1, stderr="connection refused")
    remote.on(rf"journalctl -u {unit} ", stdout="starting\nfailed to bind :6443: address already in use\n")
    with pytest.raises(StepFailed) as caught:
        execute(remote, [dist.wait_api_step(inventory.host("cp1"))], ValueStore())
    assert isinstance(caught.value.cause, HostError)
    assert str(caught.value.cause) == (
        f"cp1: the Kubernetes API ({distribution}) did not become ready within 0s; "
        "last log line: failed to bind :6443: address already in use"
    )


# --- the commands kubeadm's preflight looks for ------------------------------------------------------


def test_only_the_missing_preflight_commands_are_installed() -> None:
    dist = kubeadm()
    host = dist.inventory.host("w1")
    facts = prepared(dist, "w1", joined=False, commands=frozenset({"iptables", "ebtables", "ethtool"}))
    steps = {s.name: s for s in dist.host_steps(host, facts)}
    tools = steps["networking tools for kubeadm"]
    assert tools.reason == "conntrack, socat not found (kubeadm's preflight looks for them)"
    assert tools.operations[0].text.endswith("install -y --no-install-recommends conntrack socat")  # type: ignore[union-attr]


def test_hosts_with_every_preflight_command_get_no_tools_step() -> None:
    dist = kubeadm()
    facts = prepared(dist, "w1", joined=False)
    assert "networking tools for kubeadm" not in [s.name for s in dist.host_steps(dist.inventory.host("w1"), facts)]


def test_the_fact_line_lists_the_commands_found() -> None:
    dist = kubeadm()
    assert "command -v $c" in dist.fact_script() and "conntrack iptables socat ethtool ebtables" in dist.fact_script()
    assert dist.parse_facts({"commands": "iptables conntrack "}).commands == frozenset({"iptables", "conntrack"})


def test_flannel_daemonset_selector_is_upstreams_so_apply_works_over_a_hand_installed_flannel() -> None:
    """flannel-io/flannel Documentation/kube-flannel.yml (v0.25 on, generated from its chart):
    the DaemonSet selects app=flannel, k8s-app=flannel. A selector is immutable, so any other
    one makes `kubectl apply` fail on a cluster where that manifest was applied by hand."""
    from ruamel.yaml import YAML

    manifest, _ = kubeadm().flannel_manifest()
    daemonset = next(d for d in YAML(typ="safe").load_all(manifest) if d and d["kind"] == "DaemonSet")
    assert (daemonset["metadata"]["name"], daemonset["metadata"]["namespace"]) == ("kube-flannel-ds", "kube-flannel")
    assert daemonset["spec"]["selector"] == {"matchLabels": {"app": "flannel", "k8s-app": "flannel"}}
    assert daemonset["spec"]["template"]["metadata"]["labels"].items() >= {"app": "flannel", "k8s-app": "flannel"}.items()


def test_the_control_plane_images_are_pulled_before_init_with_their_own_timeout() -> None:
    from provisioner.steps import Command, Upload

    dist = kubeadm()
    steps = init_plan(dist).steps
    names = [s.name for s in steps]
    assert names.index("pull the control-plane images") == names.index("kubeadm init") - 1
    pull = steps[names.index("pull the control-plane images")]
    command = pull.operations[-1]
    assert isinstance(command, Command)
    assert command.text == "kubeadm config images pull --config /etc/kubernetes/provisioner/kubeadm-init.yaml"
    assert command.timeout == 900
    init = steps[names.index("kubeadm init")]
    uploads = [op for s in (pull, init) for op in s.operations if isinstance(op, Upload)]
    assert uploads[0].content == uploads[1].content and uploads[0].mode == 0o600
    assert init_plan(dist).preview.count("kind: InitConfiguration") == 1  # plan shows the config once
