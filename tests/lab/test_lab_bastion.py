"""Through a jump host: 1 server + 2 agents, each reached only through a third lab host acting as
bastion (its real sshd forwards the connections; ``ssh.proxy_jump`` in the inventory).

The tests in this module run in order on the same lab.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab.conftest import LabEnv, start_lab

LAB_NAME = "t-jump"
SERVER, AGENT1, AGENT2, BASTION = "t-jump-server1", "t-jump-agent1", "t-jump-agent2", "t-jump-agent3"


@pytest.fixture(scope="module")
def lab_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabEnv]:
    """1 server + 3 agents; the third agent is the bastion, not part of the cluster."""
    env = start_lab(LAB_NAME, tmp_path_factory.mktemp(LAB_NAME), agents=3)
    try:
        yield env
    finally:
        env.lab.down()


def bastion_address(lab_env: LabEnv) -> str:
    return next(h.address for h in lab_env.lab.hosts() if h.name == BASTION)


def logins_from(lab_env: LabEnv, host: str, address: str) -> int:
    """sshd's accepted logins on ``host`` that came from ``address``."""
    log = lab_env.ssh(host, "journalctl -u ssh --no-pager -o cat")
    return sum(1 for line in log.splitlines() if line.startswith("Accepted publickey") and f" from {address} " in line)


def test_up_through_the_bastion_builds_the_cluster_with_one_login_on_the_bastion(lab_env: LabEnv) -> None:
    inventory = lab_env.lab.bastion_inventory(BASTION, lab_env.workdir / "bastion.yaml")
    bastion = bastion_address(lab_env)
    bastion_logins = logins_from(lab_env, BASTION, "10.231.0.1")
    run = lab_env.provisioner("up", "-o", "json", inventory=inventory)
    assert run.code == 0, run.stderr[-3000:]
    assert {h["name"] for h in run.json()["hosts"]} == {SERVER, AGENT1, AGENT2}
    # every host was logged into from the bastion, and the bastion was logged into once for the run
    for host in (SERVER, AGENT1, AGENT2):
        assert logins_from(lab_env, host, bastion) >= 1, host
    assert logins_from(lab_env, BASTION, "10.231.0.1") - bastion_logins == 2  # the run's one + the ssh reading the journal
    nodes = json.loads(lab_env.ssh(SERVER, "k3s kubectl get nodes -o json"))["items"]
    assert {n["metadata"]["name"] for n in nodes} == {SERVER, AGENT1, AGENT2}


def test_a_changed_host_key_on_the_bastion_is_refused_before_any_host_is_reached(lab_env: LabEnv) -> None:
    inventory = lab_env.lab.bastion_inventory(BASTION, lab_env.workdir / "bastion.yaml")
    bastion = bastion_address(lab_env)
    known = Path(lab_env.lab.known_hosts_path)
    forged = lab_env.workdir / "forged.known_hosts"
    other_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    forged.write_text(
        "".join(f"{bastion} {other_key}\n" if line.startswith(f"{bastion} ") else line + "\n" for line in known.read_text().splitlines())
    )
    edited = inventory.read_text().replace(str(known), str(forged))
    assert edited != inventory.read_text()
    (lab_env.workdir / "forged.yaml").write_text(edited)
    server_logins = logins_from(lab_env, SERVER, bastion)
    run = lab_env.provisioner("plan", "-o", "json", inventory=lab_env.workdir / "forged.yaml")
    assert run.code != 0
    assert f"host key of jump host {bastion} CHANGED" in run.stdout + run.stderr
    assert logins_from(lab_env, SERVER, bastion) == server_logins


def test_an_unknown_bastion_key_is_refused_under_the_strict_policy(lab_env: LabEnv) -> None:
    inventory = lab_env.lab.bastion_inventory(BASTION, lab_env.workdir / "bastion.yaml")
    bastion = bastion_address(lab_env)
    known = Path(lab_env.lab.known_hosts_path)
    without = lab_env.workdir / "without-bastion.known_hosts"
    without.write_text("".join(line + "\n" for line in known.read_text().splitlines() if not line.startswith(f"{bastion} ")))
    (lab_env.workdir / "unknown.yaml").write_text(inventory.read_text().replace(str(known), str(without)))
    run = lab_env.provisioner("plan", "-o", "json", inventory=lab_env.workdir / "unknown.yaml")
    assert run.code != 0
    assert f"of {bastion} is not in {without}" in run.stdout + run.stderr
    assert f"{bastion} " not in without.read_text()  # strict records nothing
