"""Lab test: k3s with three servers (embedded etcd, the stand-in's) and two agents survives
losing one server and reports a lost quorum when two of three are down; `remove` of a server
then removes its etcd member.

The lab has no virtual IP or load balancer, so ``cluster.api_endpoint`` is the **third server's
address**: the kubeconfig and the agents go through it. The server stopped first is the first
server (cluster-init, the etcd leader), so the cluster must elect a new leader and keep serving
through the endpoint. What a real VIP/LB adds (surviving the loss of the endpoint's own server)
needs real machines and is not proven here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab.conftest import LabEnv, start_lab

LAB_NAME = "t-ha3"
SERVERS = tuple(f"{LAB_NAME}-server{i}" for i in (1, 2, 3))
AGENTS = (f"{LAB_NAME}-agent1", f"{LAB_NAME}-agent2")
CONFIG = "/etc/rancher/k3s/config.yaml"
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def ha(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LabEnv, Path]]:
    started = time.monotonic()
    env = start_lab(LAB_NAME, tmp_path_factory.mktemp(LAB_NAME), servers=3, agents=2)
    TIMINGS["lab up"] = time.monotonic() - started
    endpoint = next(h.address for h in env.lab.hosts() if h.name == SERVERS[2])

    def set_endpoint(data: dict) -> None:  # type: ignore[type-arg]
        data["cluster"]["api_endpoint"] = endpoint  # no VIP in the lab: one server's address

    inventory = env.edit_inventory(set_endpoint, env.workdir / "ha.yaml")
    try:
        yield env, inventory
    finally:
        env.lab.down()
        print("\nHA lab wall times:", json.dumps({k: round(v, 1) for k, v in TIMINGS.items()}))


def timed(name: str, env: LabEnv, *args: str, inventory: Path, timeout: float = 300):  # type: ignore[no-untyped-def]
    started = time.monotonic()
    run = env.provisioner(*args, inventory=inventory, timeout=timeout)
    TIMINGS[name] = time.monotonic() - started
    return run


def kubeconfig(env: LabEnv) -> Path:
    return env.workdir / f"{LAB_NAME}.kubeconfig"


def get_nodes(env: LabEnv, within: float = 30) -> dict[str, str]:
    """Node -> Ready status through the written kubeconfig (the endpoint), retried while the
    etcd leader changes (a few seconds)."""
    deadline = time.monotonic() + within
    while True:
        result = env.kubectl(kubeconfig(env), "get", "nodes", "-o", "json")
        if result.returncode == 0:
            items = json.loads(result.stdout)["items"]
            return {n["metadata"]["name"]: next(c["status"] for c in n["status"]["conditions"] if c["type"] == "Ready") for n in items}
        assert time.monotonic() < deadline, result.stderr
        time.sleep(1)


def test_three_servers_two_agents_lose_one_server_keep_the_api_and_lose_quorum_with_two(ha: tuple[LabEnv, Path]) -> None:
    env, inventory = ha
    up = timed("up", env, "up", "--timeout", "180", inventory=inventory)
    assert up.code == 0, up.stdout + up.stderr
    ready = get_nodes(env)
    assert ready == dict.fromkeys((*SERVERS, *AGENTS), "True")

    # agents hold the agent token, never the server token (read on the hosts)
    server_token = env.ssh(SERVERS[0], "cat /var/lib/rancher/k3s/server/token").strip()
    secret = server_token.split("::server:")[1]
    for agent in AGENTS:
        text = env.ssh(agent, f"cat {CONFIG} /etc/systemd/system/k3s-agent.service.env 2>/dev/null; true")
        assert "::node:" in text and secret not in text and server_token not in text
    for server in SERVERS:
        assert "agent-token:" in env.ssh(server, f"cat {CONFIG}")

    # one of three down (the first server: cluster-init and etcd leader) -> the API keeps answering
    env.ssh(SERVERS[0], "systemctl stop k3s")
    started = time.monotonic()
    nodes = get_nodes(env)
    TIMINGS["API back after losing the leader"] = time.monotonic() - started
    assert set(nodes) == {*SERVERS, *AGENTS}
    write = env.kubectl(kubeconfig(env), "create", "namespace", "ha-write")  # writes too
    assert write.returncode == 0, write.stderr
    status = timed("status, one server down", env, "status", "-o", "json", inventory=inventory, timeout=120)
    assert status.code in (0, 1), status.stderr  # 1 once server1's node is NotReady (40 s)
    assert {n["name"] for n in status.json()["nodes"]} == {*SERVERS, *AGENTS}
    assert "quorum" not in status.stderr

    # started again: it syncs from the new leader, and `up` changes nothing else
    env.ssh(SERVERS[0], "systemctl start k3s")
    units = {h: env.unit_state(h) for h in (*SERVERS[1:], *AGENTS)}
    again = timed("up after the restart", env, "up", "--timeout", "180", "-o", "json", inventory=inventory)
    assert again.code == 0, again.stdout + again.stderr
    assert {h["name"]: h["result"] for h in again.json()["hosts"]} == dict.fromkeys((*SERVERS, *AGENTS), "unchanged")
    assert {h: env.unit_state(h) for h in units} == units
    assert "ha-write" in env.ssh(SERVERS[0], "k3s kubectl get namespaces -o name")

    # two of three down: status says the quorum is lost, exit 1, quickly
    env.ssh(SERVERS[0], "systemctl stop k3s")
    env.ssh(SERVERS[1], "systemctl stop k3s")
    time.sleep(4)  # the last server notices (three missed 1 s etcd heartbeats)
    lost = timed("status, quorum lost", env, "status", inventory=inventory, timeout=120)
    assert lost.code == 1, lost.stdout + lost.stderr
    assert "etcd has lost quorum: 1 of 3 servers run the API" in lost.stderr, lost.stderr
    assert TIMINGS["status, quorum lost"] < 30
    result = env.kubectl(kubeconfig(env), "get", "nodes")
    assert result.returncode != 0 and "etcdserver: request timed out" in result.stderr

    # both back; then `remove` of a server deletes its Node, which removes its etcd member
    env.ssh(SERVERS[0], "systemctl start k3s")
    env.ssh(SERVERS[1], "systemctl start k3s")
    members = "cat /var/lib/rancher/k3s/server/db/etcd/member.json"
    assert len(json.loads(env.ssh(SERVERS[0], members))["members"]) == 3
    removed = timed("remove a server", env, "remove", "-i", str(inventory), SERVERS[1], "--drain-timeout", "60", inventory=inventory)
    assert removed.code == 0, removed.stdout + removed.stderr
    for server in (SERVERS[0], SERVERS[2]):
        left = json.loads(env.ssh(server, members))["members"]
        assert len(left) == 2 and not any(name.startswith(SERVERS[1] + "-") for name in left), left
    assert set(get_nodes(env)) == {SERVERS[0], SERVERS[2], *AGENTS}
