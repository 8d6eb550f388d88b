"""`provisioner import kubespray`: roles from kube_control_plane/kube_node, ip/access_ip, group_vars
folders, the kubeadm fields, the bastion, and every warning path."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from provisioner.cli import main
from provisioner.errors import InventoryError
from provisioner.importers.kubespray import import_kubespray
from provisioner.inventory import Inventory, load_inventory, parse_inventory

SAMPLE = Path(__file__).parent / "data" / "import" / "kubespray" / "mycluster" / "inventory.ini"


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def imported(path: Path, **kwargs: str) -> tuple[Inventory, str, list[str]]:
    result = import_kubespray(path, **kwargs)
    return parse_inventory(result.text, "out.yaml", check_files=False), result.text, [str(n) for n in result.notes]


@pytest.fixture(autouse=True)
def _sudo_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVISIONER_SUDO_PASSWORD", "x")


def test_sample_inventory_maps_to_a_kubeadm_inventory_that_loads(tmp_path: Path) -> None:
    result = import_kubespray(SAMPLE)
    inventory = load_inventory(write(tmp_path, "native.yaml", result.text))
    cluster = inventory.cluster
    assert (cluster.name, cluster.distribution, cluster.version) == ("mycluster", "kubeadm", "1.31.4")
    assert (cluster.pod_network_cidr, cluster.service_cidr) == ("10.233.64.0/18", "10.233.0.0/18")
    assert [(h.name, h.address, h.role, h.node_ip) for h in inventory.hosts] == [
        ("node1", "203.0.113.11", "server", "10.3.0.1"),
        ("node2", "203.0.113.12", "agent", "10.3.0.2"),
        ("node3", "203.0.113.13", "agent", "10.3.0.3"),
        ("node4", "203.0.113.14", "agent", "10.3.0.4"),  # no ansible_host: access_ip
    ]
    assert inventory.ssh.user == "ubuntu"
    host_ssh = inventory.host("node3").ssh
    assert host_ssh is not None and host_ssh.user == "ops.user"
    assert inventory.ssh.sudo_password_env == "PROVISIONER_SUDO_PASSWORD"
    assert "version: 1.31.4  # from group_vars/k8s_cluster/k8s-cluster.yml:2: kube_version" in result.text


def test_sample_warnings_name_each_variable_and_its_place() -> None:
    _, text, notes = imported(SAMPLE)
    assert "hunter2-not-real" not in text and "hunter2-not-real" not in "".join(notes)
    expected_starts = [
        "node1 (inventory.ini:4, group all): in kube_control_plane and kube_node: imported as a server",
        "etcd (inventory.ini): group noted only",
        "kube_network_plugin (group_vars/k8s_cluster/k8s-cluster.yml:3, group k8s_cluster): the provisioner installs Flannel, not calico",
        "ansible_become_password (group_vars/all/all.yml:3, group all): the password is never written",
        "upstream_dns_servers (group_vars/all/all.yml:4, group all): not understood",
        "kube_proxy_mode (group_vars/k8s_cluster/k8s-cluster.yml:6, group k8s_cluster): ",
        "cluster_name (group_vars/k8s_cluster/k8s-cluster.yml:7, group k8s_cluster): ",
        "etcd_member_name (inventory.ini:4, host node1): ",
    ]
    assert len(notes) == len(expected_starts)
    for start in expected_starts:
        assert any(n.startswith(start) for n in notes), start


def test_yaml_form_of_the_sample_gives_the_same_inventory(tmp_path: Path) -> None:
    folder = tmp_path / "mycluster"
    for file in (SAMPLE.parent / "group_vars").rglob("*.yml"):
        write(folder, str(file.relative_to(SAMPLE.parent)), file.read_text())
    path = write(
        folder,
        "hosts.yaml",
        """\
        all:
          hosts:
            node1: {ansible_host: 203.0.113.11, ip: 10.3.0.1, etcd_member_name: etcd1}
            node2: {ansible_host: 203.0.113.12, ip: 10.3.0.2}
            node3: {ansible_host: 203.0.113.13, ip: 10.3.0.3, ansible_user: ops.user}
            node4: {access_ip: 203.0.113.14, ip: 10.3.0.4}
          children:
            kube_control_plane: {hosts: {node1: }}
            etcd: {hosts: {node1: }}
            kube_node: {hosts: {node1: , node2: , node3: , node4: }}
            calico_rr: {hosts: {}}
            k8s_cluster:
              children: {kube_control_plane: , kube_node: , calico_rr: }
        """,
    )
    assert imported(path)[0] == imported(SAMPLE)[0]


def test_old_group_names_bastion_and_load_balancer(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "inventory.ini",
        """\
        [bastion]
        bastion ansible_host=198.51.100.5 ansible_user=jump

        [kube-master]
        cp1 ansible_host=10.0.0.1
        cp2 ansible_host=10.0.0.2

        [kube-node]
        w1 ansible_host=10.0.0.3 flannel_interface=eth1

        [all:vars]
        kube_version=1.30.2
        kube_network_plugin=flannel
        apiserver_loadbalancer_domain_name=k8s.example.net
        """,
    )
    inventory, _, notes = imported(path, name="prod")
    assert inventory.cluster.name == "prod"
    assert inventory.cluster.api_endpoint == "k8s.example.net"
    assert inventory.ssh.proxy_jump == "jump@198.51.100.5"
    assert [(h.name, h.role) for h in inventory.hosts] == [("cp1", "server"), ("cp2", "server"), ("w1", "agent")]
    assert inventory.host("w1").flannel_iface == "eth1"
    assert any(n.startswith("kube-master (inventory.ini): 2 control-plane hosts") for n in notes)
    assert not any(n.startswith("kube_network_plugin") for n in notes)


def test_missing_kube_version_exits_2_unless_given(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts", "[kube_control_plane]\ncp1\n")
    with pytest.raises(InventoryError, match="kube_version is not set"):
        import_kubespray(path)
    assert imported(path, version="v1.31.4")[0].cluster.version == "1.31.4"


def test_access_ip_beside_ansible_host_and_bad_ip_are_noted(tmp_path: Path) -> None:
    path = write(
        tmp_path, "hosts", "[kube_control_plane]\ncp1 ansible_host=10.0.0.1 access_ip=10.9.9.9 ip=not-ip\n[all:vars]\nkube_version=1.31.4\n"
    )
    inventory, _, notes = imported(path)
    assert inventory.hosts[0].address == "10.0.0.1" and inventory.hosts[0].node_ip is None
    assert any(n.startswith("access_ip (hosts:2, host cp1): not used") for n in notes)
    assert any(n.startswith("ip (hosts:2, host cp1)") and "not an IP address" in n for n in notes)


def test_hosts_only_in_etcd_are_noted_not_imported(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts", "[kube_control_plane]\ncp1\n[etcd]\ncp1\ne2\n[all:vars]\nkube_version=1.31.4\n")
    _, text, notes = imported(path)
    assert "e2" not in text
    assert any(n.startswith("e2 (hosts:5, group etcd): in neither") for n in notes)


def test_a_k3s_ansible_inventory_is_refused_with_a_hint() -> None:
    result = CliRunner().invoke(main, ["import", "kubespray", str(SAMPLE.parents[2] / "k3s" / "hosts.ini")])
    assert result.exit_code == 2
    assert "not a kubespray inventory" in result.stderr and "provisioner import k3s-ansible" in result.stderr
