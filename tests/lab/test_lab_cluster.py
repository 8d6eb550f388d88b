"""One lab, provisioned and then changed step by step: the life of a small cluster.

The tests in this module run in order on the same lab (1 server + 2 agents, later 3 agents).
"""

from __future__ import annotations

import json
import re
import stat
import time

from tests.lab.conftest import LabEnv

LAB_NAME = "t-life"
SERVER, AGENT1, AGENT2, AGENT3 = "t-life-server1", "t-life-agent1", "t-life-agent2", "t-life-agent3"


def test_plan_on_a_fresh_lab_lists_install_and_join(lab_env: LabEnv) -> None:
    run = lab_env.provisioner("plan", "-o", "json")
    assert run.code == 0, run.stderr
    actions = {h["host"]: h["action"] for h in run.json()["hosts"]}
    assert actions == {SERVER: "install", AGENT1: "join", AGENT2: "join"}
    # plan changed nothing: k3s is still absent everywhere
    for host in (SERVER, AGENT1, AGENT2):
        assert lab_env.ssh(host, "test -e /usr/local/bin/k3s && echo yes || echo no").strip() == "no"


def test_up_builds_a_cluster_with_ready_nodes_named_as_in_the_inventory_while_the_token_stays_out_of_every_argv(lab_env: LabEnv) -> None:
    with lab_env.sampling_argv((SERVER, AGENT1, AGENT2)) as samples:
        run = lab_env.provisioner("up", "--timeout", "120")
    assert run.code == 0, run.stdout + run.stderr

    token = lab_env.ssh(SERVER, "cat /var/lib/rancher/k3s/server/node-token").strip()
    assert re.fullmatch(r"K10[0-9a-f]{64}::server:\S+", token)
    secret = token.split("::server:")[1]
    seen = "\n".join(samples)
    assert "k3s-install.sh" in seen and "k3s agent" in seen, "the sampler must have seen the installs"
    assert token not in seen and secret not in seen
    log = next(line[5:] for line in run.stderr.splitlines() if line.startswith("log: "))
    log_text = open(log).read()
    assert "k3s-install.sh" in log_text
    for text in (run.stdout, run.stderr, log_text):
        assert token not in text and secret not in text
    # the agents joined with the agent token, which stays out of every argv and log as well
    agent_token = lab_env.ssh(SERVER, "cat /var/lib/rancher/k3s/server/agent-token").strip()
    agent_secret = agent_token.split("::node:")[1]
    for text in (seen, run.stdout, run.stderr, log_text):
        assert agent_secret not in text
    for agent in (AGENT1, AGENT2):
        config = lab_env.ssh(agent, "cat /etc/rancher/k3s/config.yaml")
        assert agent_token in config and secret not in config

    nodes = json.loads(lab_env.ssh(SERVER, "k3s kubectl get nodes -o json"))["items"]
    ready = {n["metadata"]["name"]: next(c["status"] for c in n["status"]["conditions"] if c["type"] == "Ready") for n in nodes}
    assert ready == {SERVER: "True", AGENT1: "True", AGENT2: "True"}


def test_kubeconfig_is_0600_and_a_real_client_here_lists_the_nodes_with_tls_verified(lab_env: LabEnv) -> None:
    path = lab_env.workdir / "t-life.kubeconfig"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert lab_env.kubectl(path, "config", "current-context").stdout.strip() == "t-life"
    view = json.loads(lab_env.kubectl(path, "config", "view", "-o", "json").stdout)
    server_address = next(h.address for h in lab_env.lab.hosts() if h.name == SERVER)  # 10.231.0.11 in a lab of its own
    assert view["clusters"][0]["cluster"]["server"] == f"https://{server_address}:6443"
    assert "insecure-skip-tls-verify" not in json.dumps(view)
    listed = lab_env.kubectl(path, "get", "nodes", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    assert sorted(n["metadata"]["name"] for n in json.loads(listed.stdout)["items"]) == [AGENT1, AGENT2, SERVER]


def test_unchanged_rerun_restarts_no_unit_on_any_host(lab_env: LabEnv) -> None:
    before = {h: lab_env.unit_state(h) for h in (SERVER, AGENT1, AGENT2)}
    run = lab_env.provisioner("up", "-o", "json")
    assert run.code == 0, run.stderr
    assert {h["name"]: h["result"] for h in run.json()["hosts"]} == dict.fromkeys(before, "unchanged")
    assert {h: lab_env.unit_state(h) for h in before} == before


def test_plan_on_the_provisioned_lab_has_nothing_to_do(lab_env: LabEnv) -> None:
    run = lab_env.provisioner("plan")
    assert run.code == 0, run.stderr
    assert "Nothing to do." in run.stdout


def test_growing_the_lab_by_one_host_and_rerunning_changes_only_the_new_host(lab_env: LabEnv) -> None:
    before = {h: lab_env.unit_state(h) for h in (SERVER, AGENT1, AGENT2)}
    lab_env.lab.up(servers=1, agents=3, inventory=lab_env.inventory)
    run = lab_env.provisioner("up", "-o", "json", "--timeout", "120")
    assert run.code == 0, run.stderr
    results = {h["name"]: (h["action"], h["result"]) for h in run.json()["hosts"]}
    assert results == {
        SERVER: ("nothing", "unchanged"),
        AGENT1: ("nothing", "unchanged"),
        AGENT2: ("nothing", "unchanged"),
        AGENT3: ("join", "changed"),
    }
    assert {h: lab_env.unit_state(h) for h in before} == before
    assert sorted(n["name"] for n in run.json()["nodes"] if n["ready"]) == [AGENT1, AGENT2, AGENT3, SERVER]


def test_a_stopped_agent_shows_not_ready_in_status_and_up_repairs_it(lab_env: LabEnv) -> None:
    lab_env.ssh(AGENT2, "systemctl stop k3s-agent")
    deadline = time.monotonic() + 90
    while True:
        run = lab_env.provisioner("status", "-o", "json")
        state = {n["name"]: n["status"] for n in run.json()["nodes"]}
        if state[AGENT2] == "NotReady" or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert state[AGENT2] == "NotReady" and run.code == 1
    text = lab_env.provisioner("status")
    assert re.search(rf"{AGENT2}[\s│]+agent[\s│]+NotReady", text.stdout), text.stdout

    others = {h: lab_env.unit_state(h) for h in (SERVER, AGENT1, AGENT3)}
    run = lab_env.provisioner("up", "-o", "json", "--timeout", "120")
    assert run.code == 0, run.stderr
    results = {h["name"]: h["action"] for h in run.json()["hosts"]}
    assert results[AGENT2] == "restart"
    assert {h: a for h, a in results.items() if h != AGENT2} == dict.fromkeys(others, "nothing")
    assert {h: lab_env.unit_state(h) for h in others} == others
    assert lab_env.provisioner("status").code == 0
