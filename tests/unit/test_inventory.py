"""Inventory validation: good files load; each bad one is refused with a line naming the problem."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from provisioner.errors import InventoryError
from provisioner.inventory import load_inventory, parse_inventory
from tests.unit.conftest import make_inventory

REPO = Path(__file__).resolve().parents[2]


def problems_of(text: str, *, check_files: bool = False, base_dir: Path | None = None) -> list[str]:
    with pytest.raises(InventoryError) as caught:
        parse_inventory(textwrap.dedent(text), "inv.yaml", base_dir=base_dir, check_files=check_files)
    return caught.value.lines()


HOSTS = """
hosts:
  - {name: controller, address: 192.0.2.10, role: server}
  - {name: worker1, address: 192.0.2.11, role: agent}
"""

BAD = [
    # (what is wrong, inventory text, expected fragment of the one line reported)
    ("unknown top-level key", "cluster: {name: a}\nhostz: []\n" + HOSTS, "inv.yaml:2: hostz: unknown key"),
    (
        "typo gets a suggestion",
        "cluster: {name: a}\nssh: {prvate_key: k}\n" + HOSTS,
        "ssh.prvate_key: unknown key (did you mean 'private_key'?)",
    ),
    ("missing cluster name", "cluster: {distribution: k3s}\n" + HOSTS, "inv.yaml:1: cluster.name: missing required field"),
    ("missing hosts", "cluster: {name: a}\n", "hosts: missing required field"),
    ("empty hosts", "cluster: {name: a}\nhosts: []\n", "hosts: at least one host is needed"),
    (
        "bad role",
        "cluster: {name: a}\nhosts:\n  - {name: c, address: 192.0.2.1, role: server}\n  - {name: w, address: 192.0.2.2, role: boss}\n",
        "inv.yaml:4: hosts[1].role: must be one of 'server' or 'agent', not 'boss'",
    ),
    (
        "bad address",
        "cluster: {name: a}\nhosts:\n  - {name: c, address: 300.1.2.3, role: server}\n",
        "hosts[0].address: '300.1.2.3' is not an IP address or DNS name",
    ),
    (
        "address with spaces",
        "cluster: {name: a}\nhosts:\n  - {name: c, address: 'my host', role: server}\n",
        "hosts[0].address: 'my host' is not an IP address or DNS name",
    ),
    (
        "uppercase node name",
        "cluster: {name: a}\nhosts:\n  - {name: Ctrl, address: 192.0.2.1, role: server}\n",
        "hosts[0].name: 'Ctrl' is not a valid node name",
    ),
    (
        "duplicate names",
        "cluster: {name: a}\nhosts:\n  - {name: c, address: 192.0.2.1, role: server}\n  - {name: c, address: 192.0.2.2, role: agent}\n",
        "inv.yaml:4: hosts[1].name: duplicate name 'c' (also hosts[0])",
    ),
    (
        "duplicate addresses",
        "cluster: {name: a}\nhosts:\n  - {name: c, address: 192.0.2.1, role: server}\n  - {name: d, address: 192.0.2.1, role: agent}\n",
        "hosts[1].address: duplicate address '192.0.2.1' (also hosts[0])",
    ),
    ("no server", "cluster: {name: a}\nhosts:\n  - {name: w, address: 192.0.2.1, role: agent}\n", "hosts: no host has role server"),
    (
        "version and channel",
        "cluster: {name: a, version: v1.31.4+k3s1, channel: stable}\n" + HOSTS,
        "cluster.channel: set either cluster.version or cluster.channel, not both",
    ),
    (
        "bad k3s version",
        "cluster: {name: a, version: v1.31.4}\n" + HOSTS,
        "cluster.version: 'v1.31.4' is not a k3s version like v1.31.4+k3s1",
    ),
    (
        "version as a YAML number",
        "cluster: {name: a, distribution: kubeadm, version: 1.30}\n" + HOSTS,
        "cluster.version: write it as a quoted string",
    ),
    ("bad channel", "cluster: {name: a, channel: newest}\n" + HOSTS, "cluster.channel: 'newest' is not a k3s channel"),
    (
        "bad distribution",
        "cluster: {name: a, distribution: rke2}\n" + HOSTS,
        "cluster.distribution: must be one of 'k3s' or 'kubeadm', not 'rke2'",
    ),
    ("bad cluster name", "cluster: {name: 'My Cluster'}\n" + HOSTS, "cluster.name: must be lowercase letters"),
    (
        "flag without dashes",
        "cluster: {name: a, server_args: [disable=traefik]}\n" + HOSTS,
        "cluster.server_args[0]: 'disable=traefik' is not a flag",
    ),
    (
        "managed flag",
        "cluster: {name: a, agent_args: ['--node-ip=1.2.3.4']}\n" + HOSTS,
        "cluster.agent_args[0]: --node-ip cannot be set here: set hosts[].node_ip instead",
    ),
    ("bad port", "cluster: {name: a}\nssh: {port: 70000}\n" + HOSTS, "ssh.port: input should be less than or equal to 65535"),
    (
        "bad host key policy",
        "cluster: {name: a}\nssh: {host_key_policy: yolo}\n" + HOSTS,
        "ssh.host_key_policy: must be one of 'accept-new', 'strict' or 'off'",
    ),
    (
        "bad node_ip",
        "cluster: {name: a}\nhosts:\n  - {name: c, address: 192.0.2.1, role: server, node_ip: eth0}\n",
        "hosts[0].node_ip: 'eth0' is not an IP address",
    ),
    (
        "unknown per-host ssh key",
        "cluster: {name: a}\nhosts:\n  - {name: c, address: 192.0.2.1, role: server, ssh: {usr: x}}\n",
        "hosts[0].ssh.usr: unknown key (did you mean 'user'?)",
    ),
    (
        "airgap without version",
        "cluster: {name: a, airgap: {k3s_binary: k3s, install_script: i.sh}}\n" + HOSTS,
        "cluster.version: airgap installs need cluster.version",
    ),
    (
        "bad proxy_jump",
        "cluster: {name: a}\nssh: {proxy_jump: 'admin@bad host'}\n" + HOSTS,
        "ssh.proxy_jump: 'admin@bad host' is not [user@]host[:port]",
    ),
    (
        "sudo password variable unset",
        "cluster: {name: a}\nssh: {user: u, sudo_password_env: PROVISIONER_TEST_UNSET_VAR}\n" + HOSTS,
        "ssh.sudo_password_env: environment variable PROVISIONER_TEST_UNSET_VAR is not set",
    ),
    ("not a mapping", "- just\n- a list\n", "inv.yaml:1: the inventory must be a YAML mapping"),
    ("YAML syntax", "cluster: {name: a\nhosts: []\n", "YAML syntax error"),
    ("duplicate YAML key", "cluster: {name: a}\ncluster: {name: b}\n" + HOSTS, "YAML syntax error"),
]


@pytest.mark.parametrize("what,text,expected", BAD, ids=[b[0] for b in BAD])
def test_bad_inventory_is_refused_with_a_line_naming_the_problem(what: str, text: str, expected: str) -> None:
    lines = problems_of(text)
    assert any(expected in line for line in lines), lines


def test_every_problem_is_reported_not_only_the_first() -> None:
    lines = problems_of("cluster: {name: a}\nhosts:\n  - {name: C, address: 300.0.0.1, role: boss}\n")
    assert len(lines) == 3
    assert sorted(line.split(": ")[1] for line in lines) == ["hosts[0].address", "hosts[0].name", "hosts[0].role"]


def test_missing_key_file_and_airgap_files_are_reported(tmp_path: Path) -> None:
    (tmp_path / "id_pub").write_text("ssh-ed25519 AAAAC3 user@host\n")
    lines = problems_of(
        """
        cluster:
          name: a
          version: v1.31.4+k3s1
          airgap: {k3s_binary: ./artifacts/k3s, install_script: ./artifacts/install.sh}
        ssh: {private_key: ./id_pub}
        hosts:
          - {name: c, address: 192.0.2.1, role: server, ssh: {private_key: ./nope}}
        """,
        check_files=True,
        base_dir=tmp_path,
    )
    text = "\n".join(lines)
    assert f"ssh.private_key: {tmp_path}/id_pub: this is a public key" in text
    assert f"hosts[0].ssh.private_key: {tmp_path}/nope: no such file" in text
    assert f"cluster.airgap.k3s_binary: {tmp_path}/artifacts/k3s: no such file" in text
    assert f"cluster.airgap.install_script: {tmp_path}/artifacts/install.sh: no such file" in text


def test_unreadable_inventory_file_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(InventoryError) as caught:
        load_inventory(tmp_path / "missing.yaml")
    assert caught.value.lines() == [f"{tmp_path}/missing.yaml: cannot read inventory: No such file or directory"]
    assert caught.value.exit_code == 2


def test_basic_inventory_loads_with_defaults() -> None:
    inv = make_inventory()
    assert inv.cluster.name == "homelab"
    assert inv.cluster.distribution == "k3s"
    assert [h.name for h in inv.servers] == ["controller"]
    assert [h.name for h in inv.agents] == ["worker1", "worker2"]
    assert inv.api_address == "192.0.2.10"
    assert inv.ssh.host_key_policy is None  # accept-new is applied when connecting


def test_role_aliases_from_the_guides_are_accepted() -> None:
    inv = make_inventory(
        "cluster: {name: a}\nhosts:\n  - {name: c, address: 192.0.2.1, role: controller}\n  - {name: w, address: 192.0.2.2, role: worker}\n"
    )
    assert [h.role for h in inv.hosts] == ["server", "agent"]


def test_relative_paths_are_relative_to_the_inventory_file(tmp_path: Path) -> None:
    inv = make_inventory(
        "cluster: {name: a}\nssh: {private_key: keys/id, known_hosts: ~/kh}\nhosts:\n  - {name: c, address: 192.0.2.1, role: server}\n",
        base_dir=tmp_path,
    )
    assert inv.ssh.private_key == tmp_path / "keys/id"
    assert inv.ssh.known_hosts == Path("~/kh").expanduser()


def test_per_host_ssh_settings_override_the_file_wide_ones() -> None:
    inv = make_inventory(
        "cluster: {name: a}\nssh: {user: root, port: 2222}\nhosts:\n"
        "  - {name: c, address: 192.0.2.1, role: server}\n"
        "  - {name: w, address: 192.0.2.2, role: agent, ssh: {user: ubuntu}}\n"
    )
    assert inv.ssh_for(inv.host("c")).user == "root"
    worker = inv.ssh_for(inv.host("w"))
    assert (worker.user, worker.port) == ("ubuntu", 2222)


def test_same_address_on_different_ports_is_allowed() -> None:
    inv = make_inventory(
        "cluster: {name: a}\nhosts:\n"
        "  - {name: c, address: 127.0.0.1, role: server, ssh: {port: 2201}}\n"
        "  - {name: w, address: 127.0.0.1, role: agent, ssh: {port: 2202}}\n"
    )
    assert len(inv.hosts) == 2


@pytest.mark.parametrize("example", sorted((REPO / "inventories").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_example_inventories_are_valid(example: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVISIONER_SUDO_PASSWORD", "example")
    inventory = load_inventory(example, check_files=False)
    assert inventory.hosts
