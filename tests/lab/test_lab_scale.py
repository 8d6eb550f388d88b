"""At scale on the lab: 1 server + 32 agents, fresh, rerun, then 4 agents added (slow: ~2 min).

The tests in this module run in order on the same lab. "Not restarted" is read from each host's
k3s unit: its MainPID and ActiveEnterTimestamp are the same before and after the run.
"""

from __future__ import annotations

import concurrent.futures
import json
from collections.abc import Iterator

import pytest

from tests.lab.conftest import LabEnv, start_lab

pytestmark = pytest.mark.slow

LAB_NAME = "t-s32"
AGENTS = 32
ADDED = 4


@pytest.fixture(scope="module")
def lab_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabEnv]:
    """A fresh lab of 1 server + 32 agents, torn down afterwards."""
    env = start_lab(LAB_NAME, tmp_path_factory.mktemp(LAB_NAME), agents=AGENTS)
    try:
        yield env
    finally:
        env.lab.down()


def unit_states(lab_env: LabEnv) -> dict[str, tuple[str, str]]:
    """Every host's k3s unit (MainPID, ActiveEnterTimestamp), read in parallel."""
    hosts = lab_env.hosts()
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        return dict(zip(hosts, pool.map(lab_env.unit_state, hosts)))


def test_fresh_up_of_1_plus_32_makes_every_node_ready(lab_env: LabEnv) -> None:
    run = lab_env.provisioner("up", "--concurrency", "32", "-o", "json", timeout=600)
    assert run.code == 0, run.stderr[-3000:]
    hosts = run.json()["hosts"]
    assert len(hosts) == 1 + AGENTS
    assert all(h["result"] == "changed" for h in hosts)
    nodes = json.loads(lab_env.ssh(f"{LAB_NAME}-server1", "k3s kubectl get nodes -o json"))["items"]
    ready = {n["metadata"]["name"] for n in nodes if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"])}
    assert ready == set(lab_env.hosts())


def test_unchanged_rerun_of_1_plus_32_changes_and_restarts_nothing_with_one_command_per_agent(lab_env: LabEnv) -> None:
    before = unit_states(lab_env)
    run = lab_env.provisioner("up", "-o", "json", timeout=300)
    assert run.code == 0, run.stderr[-3000:]
    hosts = run.json()["hosts"]
    assert [h["name"] for h in hosts if h["result"] != "unchanged"] == []
    assert {h["commands"] + h["uploads"] for h in hosts if h["role"] == "agent"} == {1}  # the fact script
    assert unit_states(lab_env) == before


def test_adding_4_agents_to_1_plus_32_touches_only_those_4(lab_env: LabEnv) -> None:
    before = unit_states(lab_env)
    lab_env.lab.up(servers=1, agents=AGENTS + ADDED, inventory=lab_env.inventory)
    new = [f"{LAB_NAME}-agent{i}" for i in range(AGENTS + 1, AGENTS + ADDED + 1)]
    run = lab_env.provisioner("up", "-o", "json", timeout=300)
    assert run.code == 0, run.stderr[-3000:]
    hosts = run.json()["hosts"]
    assert sorted(h["name"] for h in hosts if h["result"] != "unchanged") == sorted(new)
    after = unit_states(lab_env)
    assert {h: after[h] for h in before} == before
    nodes = json.loads(lab_env.ssh(f"{LAB_NAME}-server1", "k3s kubectl get nodes -o json"))["items"]
    assert {n["metadata"]["name"] for n in nodes} == set(lab_env.hosts())
