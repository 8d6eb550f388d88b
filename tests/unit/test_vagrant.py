"""The Vagrant lab: the Vagrantfile validates, and inventories are built from recorded
`vagrant ssh-config` output and recorded interface facts (VMs cannot boot on this machine)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from provisioner import vagrant
from provisioner.inventory import load_inventory
from provisioner.testing import FakeRemote

REPO = Path(__file__).resolve().parents[2]

SSH_CONFIG_VIRTUALBOX = """Host controller
  HostName 127.0.0.1
  User vagrant
  Port 2222
  UserKnownHostsFile /dev/null
  StrictHostKeyChecking no
  PasswordAuthentication no
  IdentityFile "/home/me/my lab/.vagrant/machines/controller/virtualbox/private_key"
  IdentitiesOnly yes
  LogLevel FATAL
  PubkeyAcceptedKeyTypes +ssh-rsa
  HostKeyAlgorithms +ssh-rsa

Host worker1
  HostName 127.0.0.1
  User vagrant
  Port 2200
  UserKnownHostsFile /dev/null
  StrictHostKeyChecking no
  PasswordAuthentication no
  IdentityFile "/home/me/my lab/.vagrant/machines/worker1/virtualbox/private_key"
  IdentitiesOnly yes
  LogLevel FATAL

Host worker2
  HostName 127.0.0.1
  User vagrant
  Port 2201
  IdentityFile "/home/me/my lab/.vagrant/machines/worker2/virtualbox/private_key"
"""

SSH_CONFIG_LIBVIRT = """Host controller
  HostName 192.168.121.37
  User vagrant
  Port 22
  IdentityFile /srv/lab/.vagrant/machines/controller/libvirt/private_key

Host worker1
  HostName 192.168.121.82
  User vagrant
  Port 22
  IdentityFile /srv/lab/.vagrant/machines/worker1/libvirt/private_key
"""

# `ip -o -4 addr show` on the debian/bookworm64 box under VirtualBox: NAT eth0, private eth1.
DEBIAN_VBOX = """1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
2: eth0    inet 10.0.2.15/24 brd 10.0.2.255 scope global dynamic eth0\\       valid_lft 86120sec preferred_lft 86120sec
3: eth1    inet {ip}/24 brd 192.168.56.255 scope global eth1\\       valid_lft forever preferred_lft forever
--- host keys
ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{key} root@{name}
ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAI{key} root@{name}
"""

# Ubuntu 24.04 (bento box) names its interfaces differently.
UBUNTU_VBOX = DEBIAN_VBOX.replace("eth0", "enp0s3").replace("eth1", "enp0s8")

# Under libvirt the management network is 192.168.121.0/24 and the private one eth1.
DEBIAN_LIBVIRT = DEBIAN_VBOX.replace("10.0.2.15/24 brd 10.0.2.255", "{mgmt}/24 brd 192.168.121.255")


def fake_vms(outputs: dict[str, str]):  # type: ignore[no-untyped-def]
    """A connector that answers the discovery command from recorded output per machine."""
    seen: list[vagrant.Machine] = []

    def connector(machine: vagrant.Machine) -> FakeRemote:
        seen.append(machine)
        remote = FakeRemote(machine.name, machine.hostname, user=machine.user)
        remote.on(r"ip -o -4 addr show", stdout=outputs[machine.name])
        return remote

    connector.seen = seen  # type: ignore[attr-defined]
    return connector


def test_ssh_config_is_parsed_including_quoted_paths_with_spaces() -> None:
    machines = vagrant.parse_ssh_config(SSH_CONFIG_VIRTUALBOX)
    assert [(m.name, m.hostname, m.port, m.user) for m in machines] == [
        ("controller", "127.0.0.1", 2222, "vagrant"),
        ("worker1", "127.0.0.1", 2200, "vagrant"),
        ("worker2", "127.0.0.1", 2201, "vagrant"),
    ]
    assert machines[0].identity_file == "/home/me/my lab/.vagrant/machines/controller/virtualbox/private_key"


def test_workers_are_sorted_naturally() -> None:
    text = "".join(f"Host worker{i}\n  HostName 127.0.0.1\n  Port {2200 + i}\n  IdentityFile /k{i}\n" for i in (10, 2, 1))
    assert [m.name for m in vagrant.parse_ssh_config(text)] == ["worker1", "worker2", "worker10"]


@pytest.mark.parametrize("recorded,iface", [(DEBIAN_VBOX, "eth1"), (UBUNTU_VBOX, "enp0s8")], ids=["debian-box", "ubuntu-box"])
def test_inventory_uses_the_private_interface_never_the_nat_one(tmp_path: Path, recorded: str, iface: str) -> None:
    outputs = {
        n: recorded.format(ip=f"192.168.56.{10 + i}", key=f"KEY{i}", name=n) for i, n in enumerate(("controller", "worker1", "worker2"))
    }
    out = tmp_path / "inventories" / "vagrant.yaml"
    inventory, known_hosts, _ = vagrant.write_inventory(
        tmp_path,
        out,
        network="192.168.56",
        cluster_name="vlab",
        distribution="k3s",
        version=None,
        connector=fake_vms(outputs),
        ssh_config=SSH_CONFIG_VIRTUALBOX,
    )
    loaded = load_inventory(inventory, check_files=False)
    assert [(h.name, h.address, h.role, h.node_ip, h.flannel_iface) for h in loaded.hosts] == [
        ("controller", "192.168.56.10", "server", "192.168.56.10", iface),
        ("worker1", "192.168.56.11", "agent", "192.168.56.11", iface),
        ("worker2", "192.168.56.12", "agent", "192.168.56.12", iface),
    ]
    assert "10.0.2.15" not in inventory.read_text()
    assert loaded.ssh.host_key_policy == "strict" and loaded.ssh.user == "vagrant"
    assert loaded.ssh_for(loaded.hosts[1]).private_key == Path("/home/me/my lab/.vagrant/machines/worker1/virtualbox/private_key")
    assert loaded.ssh.known_hosts == known_hosts.resolve()
    assert known_hosts.read_text().splitlines()[:2] == [
        "192.168.56.10 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKEY0",
        "192.168.56.10 ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIKEY0",
    ]
    assert loaded.cluster.name == "vlab" and loaded.cluster.version is None


def test_libvirt_vms_are_discovered_through_their_management_address(tmp_path: Path) -> None:
    outputs = {
        "controller": DEBIAN_LIBVIRT.format(mgmt="192.168.121.37", ip="192.168.56.10", key="A", name="controller"),
        "worker1": DEBIAN_LIBVIRT.format(mgmt="192.168.121.82", ip="192.168.56.11", key="B", name="worker1"),
    }
    connector = fake_vms(outputs)
    inventory, _, machines = vagrant.write_inventory(
        tmp_path,
        tmp_path / "v.yaml",
        network="192.168.56.0/24",
        cluster_name="v",
        distribution="kubeadm",
        version="1.31",
        connector=connector,
        ssh_config=SSH_CONFIG_LIBVIRT,
    )
    assert [m.hostname for m in connector.seen] == ["192.168.121.37", "192.168.121.82"]  # type: ignore[attr-defined]
    loaded = load_inventory(inventory, check_files=False)
    assert loaded.cluster.distribution == "kubeadm" and loaded.cluster.version == "1.31"
    assert [h.address for h in loaded.hosts] == ["192.168.56.10", "192.168.56.11"]
    assert "192.168.121" not in inventory.read_text()


def test_a_vm_without_an_address_on_the_private_network_is_a_clear_error(tmp_path: Path) -> None:
    outputs = {
        "controller": DEBIAN_VBOX.format(ip="192.168.56.10", key="A", name="c"),
        "worker1": DEBIAN_VBOX.format(ip="192.168.57.11", key="B", name="w"),
        "worker2": DEBIAN_VBOX.format(ip="192.168.56.12", key="C", name="w2"),
    }
    with pytest.raises(
        vagrant.VagrantError,
        match=r"worker1 has no address in 192.168.56.0/24 \(its addresses: lo 127.0.0.1/8, eth0 10.0.2.15/24, eth1 192.168.57.11/24\)",
    ):
        vagrant.write_inventory(
            tmp_path,
            tmp_path / "v.yaml",
            network="192.168.56",
            cluster_name="v",
            distribution="k3s",
            version=None,
            connector=fake_vms(outputs),
            ssh_config=SSH_CONFIG_VIRTUALBOX,
        )
    assert not (tmp_path / "v.yaml").exists()


def test_growing_the_lab_and_regenerating_adds_the_new_worker_and_keeps_the_others(tmp_path: Path) -> None:
    three = SSH_CONFIG_VIRTUALBOX + "\nHost worker3\n  HostName 127.0.0.1\n  User vagrant\n  Port 2202\n  IdentityFile /k3\n"
    outputs = {
        n: DEBIAN_VBOX.format(ip=f"192.168.56.{10 + i}", key=f"K{i}", name=n)
        for i, n in enumerate(("controller", "worker1", "worker2", "worker3"))
    }
    out = tmp_path / "v.yaml"
    vagrant.write_inventory(
        tmp_path,
        out,
        network="192.168.56",
        cluster_name="v",
        distribution="k3s",
        version=None,
        connector=fake_vms(outputs),
        ssh_config=SSH_CONFIG_VIRTUALBOX,
    )
    before = load_inventory(out, check_files=False).hosts
    vagrant.write_inventory(
        tmp_path,
        out,
        network="192.168.56",
        cluster_name="v",
        distribution="k3s",
        version=None,
        connector=fake_vms(outputs),
        ssh_config=three,
    )
    after = load_inventory(out, check_files=False).hosts
    assert after[:3] == before and after[3].name == "worker3" and after[3].address == "192.168.56.13"


def test_vagrant_inventory_command_reports_a_missing_lab_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from provisioner.cli import main

    monkeypatch.setattr(
        vagrant,
        "vagrant_ssh_config",
        lambda folder: (_ for _ in ()).throw(
            vagrant.VagrantError("`vagrant ssh-config` failed in .: The VM is not created. Run `vagrant up` first.")
        ),
    )
    result = CliRunner().invoke(main, ["vagrant-inventory", "--dir", str(tmp_path), "--out", str(tmp_path / "v.yaml")])
    assert result.exit_code == 1
    assert "error: `vagrant ssh-config` failed in .: The VM is not created." in result.stderr


@pytest.mark.parametrize("workers", ["2", "3"])
def test_vagrantfile_validates(tmp_path: Path, workers: str) -> None:
    if shutil.which("vagrant") is None:
        if os.environ.get("CI"):
            pytest.fail("vagrant is not installed; scripts/test installs Debian's vagrant")
        pytest.skip("vagrant is not installed (apt-get install --no-install-recommends vagrant)")
    shutil.copy(REPO / "Vagrantfile", tmp_path / "Vagrantfile")
    env = dict(os.environ, VAGRANT_HOME=str(tmp_path / "home"), WORKERS=workers)
    result = subprocess.run(
        ["vagrant", "validate", "--ignore-provider"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Vagrantfile validated successfully." in result.stdout


def test_vagrantfile_refuses_a_bad_worker_count(tmp_path: Path) -> None:
    if shutil.which("vagrant") is None:
        pytest.skip("vagrant is not installed")
    shutil.copy(REPO / "Vagrantfile", tmp_path / "Vagrantfile")
    env = dict(os.environ, VAGRANT_HOME=str(tmp_path / "home"), WORKERS="many")
    result = subprocess.run(
        ["vagrant", "validate", "--ignore-provider"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0 and 'invalid value for Integer(): "many"' in result.stdout + result.stderr


def test_vagrantfile_refuses_an_unknown_libvirt_driver(tmp_path: Path) -> None:
    if shutil.which("vagrant") is None:
        pytest.skip("vagrant is not installed")
    shutil.copy(REPO / "Vagrantfile", tmp_path / "Vagrantfile")
    env = dict(os.environ, VAGRANT_HOME=str(tmp_path / "home"), LIBVIRT_DRIVER="xen")
    result = subprocess.run(
        ["vagrant", "validate", "--ignore-provider"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0 and "LIBVIRT_DRIVER must be kvm or qemu, not xen" in result.stdout + result.stderr


def test_discovery_connects_the_way_vagrant_does_with_its_port_and_key(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = {}

    def fake_connect(inventory, host, ssh_config_path=None):  # type: ignore[no-untyped-def]
        seen.update(
            name=host.name,
            address=host.address,
            port=inventory.ssh.port,
            key=str(inventory.ssh.private_key),
            policy=str(inventory.ssh.host_key_policy),
        )
        return FakeRemote(host.name)

    monkeypatch.setattr("provisioner.remote.connect", fake_connect)
    machine = vagrant.Machine("worker1", "192.168.121.57", 22, "vagrant", "/v/.vagrant/machines/worker1/libvirt/private_key")
    vagrant.connect_through_vagrant(machine)
    assert seen["name"] == "worker1" and seen["address"] == "192.168.121.57" and seen["port"] == 22
    assert seen["key"] == "/v/.vagrant/machines/worker1/libvirt/private_key"


def test_vagrantfile_keeps_workers_created_earlier_when_workers_is_not_set(tmp_path: Path) -> None:
    if shutil.which("vagrant") is None:
        pytest.skip("vagrant is not installed")
    shutil.copy(REPO / "Vagrantfile", tmp_path / "Vagrantfile")
    (tmp_path / ".vagrant/machines/worker3/libvirt").mkdir(parents=True)
    (tmp_path / ".vagrant/machines/worker3/libvirt/id").write_text("made by an earlier WORKERS=3 vagrant up")

    def machines(**extra: str) -> list[str]:
        env = {k: v for k, v in os.environ.items() if k != "WORKERS"} | {"VAGRANT_HOME": str(tmp_path / "home"), **extra}
        result = subprocess.run(
            ["vagrant", "validate", "--ignore-provider"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return [line.split(":")[0].removeprefix("==> ") for line in result.stdout.splitlines() if line.startswith("==> ")]

    assert machines() == ["controller", "worker1", "worker2", "worker3"]
    assert machines(WORKERS="2") == ["controller", "worker1", "worker2"]
