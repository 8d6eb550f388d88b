"""Day 2 on a real lab (1 server + 3 agents, k3s stand-in): remove and rejoin, PDB-guarded
remove (once the stand-in serves workloads), a rolling upgrade from one stand-in version to
another, and reset then up. The tests run in order on the same lab."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner_lab import zipapps
from tests.lab.conftest import LabEnv, apply_nginx, cluster_nodes, node_ready, start_lab

LAB_NAME = "t-day2"
SERVER = "t-day2-server1"
AGENTS = ("t-day2-agent1", "t-day2-agent2", "t-day2-agent3")
NEW_VERSION = "v1.31.5+k3s1"
KUBECTL = "k3s kubectl"
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def day2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabEnv]:
    env = start_lab(LAB_NAME, tmp_path_factory.mktemp(LAB_NAME), servers=1, agents=3)
    try:
        yield env
    finally:
        env.lab.down()
        if TIMINGS:
            print("\nday-2 wall times:", json.dumps(TIMINGS))


def run(env: LabEnv, *args: str, inventory: Path | None = None, timeout: float = 600) -> tuple[int, str, str]:
    """`provisioner <command> -i <inventory> ...` with the kubeconfig files inside the lab folder."""
    result = env.provisioner(*args, inventory=inventory, timeout=timeout)
    return result.code, result.stdout, result.stderr


def nodes(env: LabEnv) -> dict[str, dict]:  # type: ignore[type-arg]
    return cluster_nodes(env, SERVER, KUBECTL)


def test_up_builds_the_one_plus_three_cluster(day2: LabEnv) -> None:
    code, out, err = run(day2, "up", "--timeout", "180")
    assert code == 0, out + err
    assert all(node_ready(n) for n in nodes(day2).values()) and len(nodes(day2)) == 4


def test_remove_of_an_agent_deletes_its_node_uninstalls_k3s_and_up_joins_it_again_under_its_name(day2: LabEnv) -> None:
    agent = AGENTS[0]
    started = time.monotonic()
    code, out, err = run(day2, "remove", agent, "--drain-timeout", "60")
    TIMINGS["remove one agent"] = round(time.monotonic() - started, 1)
    assert code == 0, out + err
    assert agent not in nodes(day2)
    assert (
        day2.ssh(
            agent,
            "test -e /usr/local/bin/k3s || test -e /etc/systemd/system/k3s-agent.service "
            "|| test -e /etc/rancher/k3s/config.yaml && echo left || echo gone",
        ).strip()
        == "gone"
    )
    assert "delete" in out and agent in out
    code, out, err = run(day2, "up", "--timeout", "180", "-o", "json")
    assert code == 0, out + err
    actions = {h["name"]: h["action"] for h in json.loads(out)["hosts"]}
    assert actions[agent] == "join" and {a for n, a in actions.items() if n != agent} == {"nothing"}
    assert node_ready(nodes(day2)[agent])


def workload_api(env: LabEnv) -> bool:
    listed = env.lab.ssh(SERVER, "k3s kubectl api-resources -o name", check=False).stdout.split()
    return "poddisruptionbudgets.policy" in listed and "deployments.apps" in listed


def test_remove_blocked_by_a_pdb_exits_1_names_it_and_leaves_the_node_cordoned_and_installed(day2: LabEnv) -> None:
    if not workload_api(day2):
        pytest.skip("the stand-in API does not serve Deployments/PodDisruptionBudgets yet (branch standin-workloads)")
    apply_nginx(day2, SERVER, KUBECTL, 4)
    agent = AGENTS[1]
    code, out, err = run(day2, "remove", agent, "--drain-timeout", "20")
    assert code == 1, out + err
    assert "nginx" in out and "Drain blocked by PodDisruptionBudgets" in out
    node = nodes(day2)[agent]
    assert node["spec"].get("unschedulable") is True
    assert day2.ssh(agent, "systemctl is-active k3s-agent", check=False).strip() == "active"
    day2.ssh(SERVER, f"k3s kubectl uncordon {agent}")


def test_remove_with_a_pdb_that_allows_one_moves_the_pods_and_removes_the_node(day2: LabEnv) -> None:
    if not workload_api(day2):
        pytest.skip("the stand-in API does not serve Deployments/PodDisruptionBudgets yet (branch standin-workloads)")
    apply_nginx(day2, SERVER, KUBECTL, 3)
    agent = AGENTS[1]
    code, out, err = run(day2, "remove", agent, "--drain-timeout", "120")
    assert code == 0, out + err
    assert agent not in nodes(day2)
    pods = json.loads(day2.ssh(SERVER, "k3s kubectl get pods -l app=nginx -o json"))["items"]
    assert all(p["spec"].get("nodeName") != agent for p in pods)
    code, out, err = run(day2, "up", "--timeout", "180")
    assert code == 0, out + err


def test_a_rolling_upgrade_of_one_plus_three_keeps_at_most_one_node_cordoned_and_ends_ready_on_the_new_version(day2: LabEnv) -> None:
    binary = zipapps.build_cached("k3s", day2.workdir / "standin", NEW_VERSION)

    def change(data: dict) -> None:  # type: ignore[type-arg]
        data["cluster"]["version"] = NEW_VERSION
        data["cluster"]["airgap"]["k3s_binary"] = str(binary)

    inventory = day2.edit_inventory(change, day2.workdir / "upgraded.yaml")
    code, out, err = run(day2, "plan", inventory=inventory)
    assert code == 0, out + err
    assert re.search(rf"1\. {SERVER}\s.*2\. {AGENTS[0]}\s.*3\. {AGENTS[1]}\s.*4\. {AGENTS[2]}", out, re.S), out

    started = time.monotonic()
    try:
        with day2.sampling_cordoned(SERVER, KUBECTL) as cordoned:
            code, out, err = run(day2, "up", "--timeout", "180", "-o", "json", inventory=inventory, timeout=1200)
    finally:
        TIMINGS["rolling upgrade 1+3"] = round(time.monotonic() - started, 1)
    assert code == 0, out + err
    assert json.loads(out)["upgraded"] == [SERVER, *AGENTS]
    assert len(cordoned) > 10 and max(cordoned) == 1, cordoned
    final = nodes(day2)
    assert {n["status"]["nodeInfo"]["kubeletVersion"] for n in final.values()} == {NEW_VERSION}
    assert all(node_ready(n) and not n["spec"].get("unschedulable") for n in final.values())
    code, out, err = run(day2, "up", "-o", "json", inventory=inventory)
    assert code == 0, out + err
    assert {h["result"] for h in json.loads(out)["hosts"]} == {"unchanged"} and json.loads(out)["upgraded"] == []


def test_reset_then_up_builds_a_fresh_cluster_with_a_new_ca_on_the_same_hosts(day2: LabEnv) -> None:
    inventory = day2.workdir / "upgraded.yaml"
    before = day2.ssh(SERVER, "cat /var/lib/rancher/k3s/server/node-token").strip()
    refused = subprocess.run(
        [*_cli(day2), "reset", "-i", str(inventory)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        cwd=day2.workdir,
        timeout=120,
    )
    assert refused.returncode == 2 and "--yes" in refused.stderr
    code, out, err = run(day2, "reset", "--yes", inventory=inventory)
    assert code == 0, out + err
    for host in (SERVER, *AGENTS):
        assert day2.ssh(host, "test -e /usr/local/bin/k3s || test -d /var/lib/rancher/k3s && echo left || echo gone").strip() == "gone", (
            host
        )
    written = day2.workdir / f"{LAB_NAME}.kubeconfig"
    assert json.dumps(json.loads(json.dumps(_yaml(written)))).count(LAB_NAME) == 0
    code, out, err = run(day2, "up", "--timeout", "180", inventory=inventory)
    assert code == 0, out + err
    after = day2.ssh(SERVER, "cat /var/lib/rancher/k3s/server/node-token").strip()
    assert after[:67] != before[:67]  # K10<sha256 of the CA>: a new CA
    assert all(node_ready(n) for n in nodes(day2).values()) and len(nodes(day2)) == 4


def _cli(env: LabEnv) -> list[str]:
    import sys

    return [sys.executable, "-m", "provisioner"]


def _yaml(path: Path) -> object:
    from ruamel.yaml import YAML

    return YAML(typ="safe").load(path.read_text())
