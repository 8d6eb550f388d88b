"""The Vagrant path for real: `vagrant up` → `provisioner vagrant-inventory` → `provisioner up`,
on VMs booted from the project's Vagrantfile (vagrant-libvirt, QEMU TCG, the locally built box).

The VMs have no internet, so the generated inventory gets the k3s stand-in as its air-gap files —
the same ones `provisioner lab up` writes into its lab.yaml.
"""

from __future__ import annotations

import ipaddress
import json
import time

from ruamel.yaml import YAML

from provisioner_lab.vagrantlab.labref import standin_airgap
from tests.vagrant.conftest import VagrantLab

PRIVATE = ipaddress.IPv4Network("192.168.56.0/24")
MANAGEMENT = ipaddress.IPv4Network("192.168.121.0/24")  # vagrant-libvirt's management network


def _inventory_with_standin(lab: VagrantLab) -> dict:
    """Regenerate the inventory from the running VMs and put the k3s stand-in in its air-gap section."""
    run = lab.provisioner("vagrant-inventory", "--dir", str(lab.folder), "--out", str(lab.inventory))
    assert run.code == 0, run.stdout + run.stderr
    yaml = YAML()
    data = yaml.load(lab.inventory.read_text())
    airgap = standin_airgap()
    data["cluster"]["version"] = airgap.version
    data["cluster"]["airgap"] = airgap.as_inventory()
    with lab.inventory.open("w") as f:
        yaml.dump(data, f)
    return data


def _up(lab: VagrantLab, name: str) -> dict:
    started = time.monotonic()
    run = lab.provisioner("up", "-i", str(lab.inventory), "-o", "json", "--timeout", "600")
    lab.timed(name, started)
    assert run.code == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run.json()


def _nodes(lab: VagrantLab) -> dict[str, tuple[str, str]]:
    """name → (Ready status, InternalIP), read here with a real kubectl through the kubeconfig."""
    listed = lab.kubectl("get", "nodes", "-o", "json")
    assert listed.code == 0, listed.stderr
    nodes = {}
    for node in json.loads(listed.stdout)["items"]:
        ready = next(c["status"] for c in node["status"]["conditions"] if c["type"] == "Ready")
        internal = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
        nodes[node["metadata"]["name"]] = (ready, internal)
    return nodes


def test_vagrant_up_then_provisioner_up_gives_three_ready_nodes_on_the_private_network_and_a_fourth_vm_changes_only_worker3(
    vagrant_lab: VagrantLab,
) -> None:
    lab = vagrant_lab
    started = time.monotonic()
    up = lab.vagrant("up", "--provider=libvirt", workers=2)
    lab.timed("vagrant up (1+2 VMs)", started)
    assert up.code == 0, up.stdout[-3000:] + up.stderr[-3000:]

    inventory = _inventory_with_standin(lab)
    hosts = {h["name"]: h for h in inventory["hosts"]}
    assert sorted(hosts) == ["controller", "worker1", "worker2"]
    assert {n: h["address"] for n, h in hosts.items()} == {
        "controller": "192.168.56.10",
        "worker1": "192.168.56.11",
        "worker2": "192.168.56.12",
    }
    assert all(h["node_ip"] == h["address"] for h in hosts.values())

    result = _up(lab, "provisioner up (1+2 VMs)")
    assert sorted(h["name"] for h in result["hosts"]) == ["controller", "worker1", "worker2"]

    # The kubeconfig: a real client here, TLS verified against the cluster's CA.
    view = json.loads(lab.kubectl("config", "view", "--raw", "-o", "json").stdout)
    assert view["clusters"][0]["cluster"]["server"] == "https://192.168.56.10:6443"
    assert view["clusters"][0]["cluster"].get("certificate-authority-data")
    assert "insecure-skip-tls-verify" not in json.dumps(view)
    nodes = _nodes(lab)
    assert nodes == {"controller": ("True", "192.168.56.10"), "worker1": ("True", "192.168.56.11"), "worker2": ("True", "192.168.56.12")}
    assert not any(ipaddress.IPv4Address(ip) in MANAGEMENT for _, ip in nodes.values())

    # One more VM: only it is touched.
    started = time.monotonic()
    up = lab.vagrant("up", "--provider=libvirt", workers=3)
    lab.timed("vagrant up (+worker3)", started)
    assert up.code == 0, up.stdout[-3000:] + up.stderr[-3000:]
    inventory = _inventory_with_standin(lab)
    assert [h["name"] for h in inventory["hosts"]] == ["controller", "worker1", "worker2", "worker3"]

    result = _up(lab, "provisioner up (+worker3)")
    results = {h["name"]: (h["action"], h["result"]) for h in result["hosts"]}
    assert results == {
        "controller": ("nothing", "unchanged"),
        "worker1": ("nothing", "unchanged"),
        "worker2": ("nothing", "unchanged"),
        "worker3": ("join", "changed"),
    }
    nodes = _nodes(lab)
    assert nodes == {
        "controller": ("True", "192.168.56.10"),
        "worker1": ("True", "192.168.56.11"),
        "worker2": ("True", "192.168.56.12"),
        "worker3": ("True", "192.168.56.13"),
    }
    assert all(ipaddress.IPv4Address(ip) in PRIVATE for _, ip in nodes.values())
