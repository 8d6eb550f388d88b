"""Lab (test double) output files: inventory YAML, known_hosts, ssh_config, base image name."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from provisioner_lab import base_image, files
from provisioner_lab.nspawn import hosts_file, network_file
from provisioner_lab.state import HostRecord

HOSTS = [
    HostRecord("lab-server1", "server", "10.231.0.11"),
    HostRecord("lab-agent1", "agent", "10.231.0.12"),
    HostRecord("lab-agent2", "agent", "10.231.0.13"),
]


def _inventory(user: str = "root", key: str = "/var/lib/provisioner-lab/lab/id_ed25519") -> str:
    return files.inventory_text(
        lab="lab",
        hosts=HOSTS,
        version="v1.31.4+k3s1",
        k3s_binary=Path("/pkg/provisioner/lab/standin/k3s"),
        install_script=Path("/pkg/provisioner/lab/standin/k3s-install.sh"),
        user=user,
        private_key=Path(key),
        known_hosts=Path("/work/lab.known_hosts"),
    )


def _load(text: str) -> dict:
    return YAML(typ="safe").load(io.StringIO(text))


def test_inventory_content_root() -> None:
    text = _inventory()
    assert text.startswith('# Written by `provisioner lab up` for the on-machine test lab "lab"')
    assert "STAND-IN" in text.splitlines()[1]
    data = _load(text)
    assert data == {
        "cluster": {
            "name": "lab",
            "distribution": "k3s",
            "version": "v1.31.4+k3s1",
            "airgap": {
                "k3s_binary": "/pkg/provisioner/lab/standin/k3s",
                "install_script": "/pkg/provisioner/lab/standin/k3s-install.sh",
            },
        },
        "ssh": {
            "user": "root",
            "private_key": "/var/lib/provisioner-lab/lab/id_ed25519",
            "known_hosts": "/work/lab.known_hosts",
            "host_key_policy": "strict",
        },
        "hosts": [
            {"name": "lab-server1", "address": "10.231.0.11", "role": "server"},
            {"name": "lab-agent1", "address": "10.231.0.12", "role": "agent"},
            {"name": "lab-agent2", "address": "10.231.0.13", "role": "agent"},
        ],
    }
    assert "  - {name: lab-server1, address: 10.231.0.11, role: server}" in text


def test_inventory_lab_user_names_sudo_password_env() -> None:
    data = _load(_inventory(user="lab"))
    assert data["ssh"]["user"] == "lab"
    assert data["ssh"]["sudo_password_env"] == "PROVISIONER_SUDO_PASSWORD"


def test_inventory_quotes_odd_paths() -> None:
    data = _load(_inventory(key="/tmp/my lab: #1/id_ed25519"))
    assert data["ssh"]["private_key"] == "/tmp/my lab: #1/id_ed25519"


@pytest.mark.parametrize("value", ["yes", "no", "on", "null", "1.5", "123", "a: b", "#x", "", "~"])
def test_yaml_scalar_stays_a_string(value: str) -> None:
    assert _load(f"k: {files.yaml_scalar(value)}\n") == {"k": value}


def test_known_hosts_lines() -> None:
    text = files.known_hosts_text(
        "lab",
        [("10.231.0.11", "ssh-ed25519 AAAAC3Nza1 root@lab-server1"), ("10.231.0.12", "ssh-ed25519 AAAAC3Nza2 root@lab-agent1")],
    )
    lines = [ln for ln in text.splitlines() if not ln.startswith("#")]
    assert lines == ["10.231.0.11 ssh-ed25519 AAAAC3Nza1", "10.231.0.12 ssh-ed25519 AAAAC3Nza2"]


def test_ssh_config_blocks() -> None:
    text = files.ssh_config_text("lab", HOSTS, user="lab", private_key=Path("/k/id"), known_hosts=Path("/w/lab.known_hosts"))
    assert "Host lab-server1 10.231.0.11\n  HostName 10.231.0.11\n  User lab\n" in text
    assert text.count("StrictHostKeyChecking yes") == 3
    assert '  UserKnownHostsFile "/w/lab.known_hosts"' in text
    assert '  IdentityFile "/k/id"' in text
    assert "StrictHostKeyChecking no" not in text and "/dev/null\n  StrictHostKeyChecking yes" in text


def test_guest_network_and_hosts_files() -> None:
    net = network_file("10.231.0.12")
    assert "Name=host0" in net and "Address=10.231.0.12/24" in net
    assert "LinkLocalAddressing=no" in net and "IPv6AcceptRA=no" in net
    assert "Gateway" not in net
    hosts = hosts_file("lab-agent1", "10.231.0.12")
    assert "127.0.0.1\tlocalhost" in hosts and "10.231.0.12\tlab-agent1" in hosts


def test_base_image_name_changes_with_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    name = base_image.image_name()
    assert name.startswith("debian-bookworm-")
    assert base_image.image_name() == name
    monkeypatch.setattr(base_image, "PACKAGES", (*base_image.PACKAGES, "jq"))
    assert base_image.image_name() != name
    for pkg in ("systemd", "openssh-server", "python3-cryptography", "kubernetes-client", "sudo", "kmod"):
        assert pkg in base_image.image_spec()["packages"]  # type: ignore[operator]


def test_is_ready_needs_marker(tmp_path: Path) -> None:
    img = tmp_path / "debian-bookworm-x"
    (img / "rootfs/usr").mkdir(parents=True)
    assert not base_image.is_ready(img)
    (img / "ready.json").write_text("{}")
    assert base_image.is_ready(img)
