"""Lab test: a k3s-ansible inventory written for the lab hosts, imported, and `up` from the result."""

from __future__ import annotations

from pathlib import Path

from ruamel.yaml import YAML

from tests.lab.conftest import start_lab


def k3s_ansible_inventory(lab_inventory: Path, target: Path) -> Path:
    """The lab's own inventory values written the way a k3s-ansible user writes them."""
    native = YAML(typ="safe").load(lab_inventory.read_text())
    cluster, ssh = native["cluster"], native["ssh"]
    # k3s-ansible's airgap_dir: one folder holding k3s and k3s-install.sh (the lab's stand-in ones)
    airgap_dir = target.parent / "airgap"
    airgap_dir.mkdir(exist_ok=True)
    for name, key in (("k3s", "k3s_binary"), ("k3s-install.sh", "install_script")):
        (airgap_dir / name).write_bytes(Path(cluster["airgap"][key]).read_bytes())
        (airgap_dir / name).chmod(0o755)
    groups = {"server": {"hosts": {}}, "agent": {"hosts": {}}}
    for host in native["hosts"]:
        groups[host["role"]]["hosts"][host["name"]] = {"ansible_host": host["address"]}
    data = {
        "k3s_cluster": {
            "children": groups,
            "vars": {
                "ansible_user": ssh["user"],
                "ansible_port": 22,
                "ansible_ssh_private_key_file": ssh["private_key"],
                "ansible_ssh_common_args": f"-o StrictHostKeyChecking=yes -o UserKnownHostsFile={ssh['known_hosts']}",
                "k3s_version": cluster["version"],
                "token": "changeme!",
                "api_endpoint": "{{ hostvars[groups['server'][0]]['ansible_host'] | default(groups['server'][0]) }}",
                "airgap_dir": str(airgap_dir),
                "cluster_context": cluster["name"],
            },
        }
    }
    with target.open("w") as handle:
        YAML().dump(data, handle)
    return target


def test_a_k3s_ansible_inventory_for_the_lab_imports_and_up_brings_every_node_ready(tmp_path: Path) -> None:
    env = start_lab("t-import", tmp_path, agents=1)
    try:
        source = k3s_ansible_inventory(env.inventory, tmp_path / "k3s-ansible.yml")
        imported = tmp_path / "imported.yaml"
        run = env.provisioner("import", "k3s-ansible", str(source), "--out", str(imported))
        assert run.code == 0, run.stderr
        warnings = [line for line in run.stderr.splitlines() if line.startswith("warning:")]
        assert len(warnings) == 2, warnings  # the token and the first-server api_endpoint, nothing else
        assert any(w.startswith("warning: token (k3s-ansible.yml:") for w in warnings)
        assert "changeme!" not in imported.read_text()

        up = env.provisioner("up", "-o", "json", "--timeout", "180", inventory=imported)
        assert up.code == 0, up.stdout + up.stderr
        ready = sorted(n["name"] for n in up.json()["nodes"] if n["ready"])
        assert ready == sorted(env.hosts())
        assert env.provisioner("status", inventory=imported).code == 0
    finally:
        env.lab.down()
