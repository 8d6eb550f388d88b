"""An air-gap upgrade on real hosts: the inventory names a k3s binary of a newer version, `up`
replaces it and restarts k3s on every host, and the nodes then *run* the new version (their
kubeletVersion), not only carry it on disk. A rerun changes nothing.

The real install script does not restart k3s when the binary was replaced before it ran (it
hashes the binary when it starts); the stand-in installer behaves the same, so this fails if the
provisioner does not force the restart.
"""

from __future__ import annotations

import json

from provisioner_lab.standin.k3s.version import STANDIN_VERSION as OLD
from tests.lab.conftest import LabEnv

LAB_NAME = "t-airgap"
SERVER, AGENT1, AGENT2 = "t-airgap-server1", "t-airgap-agent1", "t-airgap-agent2"
HOSTS = (SERVER, AGENT1, AGENT2)
NEW = "v1.32.0+k3s1"


def running_versions(lab_env: LabEnv) -> dict[str, str]:
    nodes = json.loads(lab_env.ssh(SERVER, "k3s kubectl get nodes -o json"))["items"]
    return {n["metadata"]["name"]: n["status"]["nodeInfo"]["kubeletVersion"] for n in nodes}


def upgrade_inventory(lab_env: LabEnv):  # type: ignore[no-untyped-def]
    binary = lab_env.lab.standin_k3s(NEW)

    def change(data) -> None:  # type: ignore[no-untyped-def]
        data["cluster"]["version"] = NEW
        data["cluster"]["airgap"]["k3s_binary"] = str(binary)

    return lab_env.edit_inventory(change, lab_env.workdir / "upgrade.yaml")


def test_up_builds_the_cluster_at_the_first_version(lab_env: LabEnv) -> None:
    run = lab_env.provisioner("up", "--timeout", "120")
    assert run.code == 0, run.stdout + run.stderr
    assert running_versions(lab_env) == {h: OLD for h in HOSTS}


def test_an_airgap_upgrade_restarts_every_host_into_the_new_version(lab_env: LabEnv) -> None:
    before = {h: lab_env.unit_state(h) for h in HOSTS}
    inventory = upgrade_inventory(lab_env)
    plan = lab_env.provisioner("plan", "-o", "json", inventory=inventory)
    assert plan.code == 0, plan.stderr
    assert {h["host"]: h["action"] for h in plan.json()["hosts"]} == {h: "upgrade" for h in HOSTS}

    run = lab_env.provisioner("up", "--timeout", "120", inventory=inventory)
    assert run.code == 0, run.stdout + run.stderr
    for host in HOSTS:
        assert lab_env.ssh(host, "/usr/local/bin/k3s --version").split()[2] == NEW
        assert lab_env.unit_state(host) != before[host], f"k3s on {host} was not restarted"
    assert running_versions(lab_env) == {h: NEW for h in HOSTS}


def test_a_rerun_after_the_upgrade_does_nothing(lab_env: LabEnv) -> None:
    inventory = lab_env.workdir / "upgrade.yaml"
    before = {h: lab_env.unit_state(h) for h in HOSTS}
    plan = lab_env.provisioner("plan", "-o", "json", inventory=inventory)
    assert plan.code == 0, plan.stderr
    assert {h["host"]: h["action"] for h in plan.json()["hosts"]} == {h: "nothing" for h in HOSTS}
    run = lab_env.provisioner("up", "--timeout", "120", inventory=inventory)
    assert run.code == 0, run.stdout + run.stderr
    assert {h: lab_env.unit_state(h) for h in HOSTS} == before
    assert running_versions(lab_env) == {h: NEW for h in HOSTS}
