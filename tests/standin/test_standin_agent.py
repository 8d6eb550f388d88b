"""`k3s agent` of the stand-in: joining with the token, node passwords, readiness."""

from __future__ import annotations

import json
import re
import signal
import stat
import time

from standin_helpers import TEST_SECRET, VERSION, assert_no_secret, node_ready_status, start_server, wait_until

REJECTED = "Node password rejected, duplicate hostname or contents of '/etc/rancher/node/password' may not match server node-passwd entry"


def table_row(server, name):
    for line in server.kubectl("get", "nodes").stdout.splitlines():
        if line.split()[0] == name:
            return line.split()
    return None


def test_agent_joins_with_full_token_and_becomes_ready(server, start_agent):
    agent = start_agent(
        server,
        "agent-full",
        args=[
            "--node-label",
            "standin-test/pool=a",
            "--node-taint",
            "dedicated=test:NoSchedule",
            "--node-external-ip",
            "203.0.113.7",
            "--node-ip",
            "192.0.2.55",
        ],
    )
    agent.wait_ready()  # READY=1 only after the first registration
    wait = server.kubectl("wait", "--for=condition=Ready", "node/agent-full", "--timeout=15s")
    assert "condition met" in wait.stdout
    row = table_row(server, "agent-full")
    assert row[1:3] == ["Ready", "<none>"] and row[4] == VERSION
    node = server.node("agent-full")
    labels = node["metadata"]["labels"]
    assert labels["standin-test/pool"] == "a" and labels["kubernetes.io/hostname"] == "agent-full"
    assert not any(k.startswith("node-role.kubernetes.io/") for k in labels)
    assert {"key": "dedicated", "value": "test", "effect": "NoSchedule"} in node["spec"]["taints"]
    addrs = {(a["type"], a["address"]) for a in node["status"]["addresses"]}
    assert ("InternalIP", "192.0.2.55") in addrs and ("ExternalIP", "203.0.113.7") in addrs
    assert node["status"]["nodeInfo"]["kubeletVersion"] == VERSION
    assert node["spec"]["podCIDR"] != server.node("standin-server")["spec"]["podCIDR"]
    pw = agent.root / "etc/rancher/node/password"
    assert stat.S_IMODE(pw.stat().st_mode) == 0o600 and len(pw.read_text().strip()) >= 16
    secret = server.kubectl_json("get", "secret", "-n", "kube-system", "agent-full.node-password.k3s")
    assert pw.read_text().strip() not in json.dumps(secret)  # only a hash is stored
    assert (agent.root / "var/lib/rancher/k3s/agent/server-ca.crt").read_bytes() == (server.tls / "server-ca.crt").read_bytes()
    assert_no_secret(agent.log() + server.proc.log() + json.dumps(node), TEST_SECRET, pw.read_text().strip())


def test_agent_reads_server_and_bare_token_from_config_yaml(server, processes, tmp_path):
    root = tmp_path / "cfg-agent"
    (root / "etc/rancher/k3s").mkdir(parents=True)
    (root / "etc/rancher/k3s/config.yaml").write_text(
        f"server: {server.url}\ntoken: {TEST_SECRET}\nnode-name: agent-config\n"
        "node-label:\n  - standin-test/from=config\nflannel-iface: lo\n"
    )
    agent = processes(root, ["agent"], name="agent")
    agent.wait_ready()
    node = server.node("agent-config")
    assert node["metadata"]["labels"]["standin-test/from"] == "config"
    # no node-ip: InternalIP is the address the agent connected from
    assert {"type": "InternalIP", "address": "127.0.0.1"} in node["status"]["addresses"]
    assert node_ready_status(node) == "True"


def test_agent_refuses_a_token_with_the_wrong_ca_hash(server, start_agent):
    bad = "K10" + "0" * 64 + "::server:" + TEST_SECRET
    agent = start_agent(server, "agent-badhash", token=bad)
    assert agent.wait_exit() == 1
    log = agent.log()
    assert "token CA hash does not match the Cluster CA certificate hash" in log
    assert "0" * 64 in log and "level=fatal" in log
    assert not any(b"READY=1" in m for m in agent.notify.poll(0.1))
    assert server.node("agent-badhash") is None
    assert_no_secret(log, TEST_SECRET)


def test_agent_with_a_wrong_secret_is_unauthorized_and_never_ready(server, start_agent):
    ca_hash = server.token.split("::")[0]
    agent = start_agent(server, "agent-badsecret", token=ca_hash + "::server:not-the-secret")
    assert not agent.notify.wait_ready(2.0)
    assert agent.alive()  # keeps retrying, as k3s does
    assert "401" in agent.log()
    assert server.node("agent-badsecret") is None


def test_duplicate_node_name_with_another_password_is_rejected_until_node_deleted(server, start_agent, tmp_path):
    first = start_agent(server, "agent-dup", root=tmp_path / "host-a", args=["--node-label", "standin-test/host=a"])
    first.wait_ready()
    second = start_agent(server, "agent-dup", root=tmp_path / "host-b", args=["--node-label", "standin-test/host=b"])
    wait_until(lambda: second.log().count(REJECTED) >= 2, 10, message="repeated rejection")
    assert not any(b"READY=1" in m for m in second.notify.poll(0.1))
    assert second.alive()
    assert server.node("agent-dup")["metadata"]["labels"]["standin-test/host"] == "a"
    first.stop()
    secret_args = ("get", "secret", "-n", "kube-system", "agent-dup.node-password.k3s")
    old_secret = server.kubectl_json(*secret_args)["metadata"]["uid"]
    server.kubectl("delete", "node", "agent-dup")
    second.wait_ready(15)
    node = wait_until(lambda: server.node("agent-dup"), 10, message="node re-registered")
    assert node["metadata"]["labels"]["standin-test/host"] == "b"
    assert node_ready_status(node) == "True"
    # deleting the node dropped host a's password; host b's is stored now
    assert server.kubectl_json(*secret_args)["metadata"]["uid"] != old_secret


def test_node_turns_not_ready_when_heartbeats_stop_and_recovers(server, start_agent, tmp_path):
    agent = start_agent(server, "agent-hb", root=tmp_path / "hb")
    agent.wait_ready()
    wait_until(lambda: node_ready_status(server.node("agent-hb")) == "True", 5)
    agent.stop(signal.SIGKILL)  # no more heartbeats (grace is 3 s in tests)
    node = wait_until(
        lambda: (lambda n: n if node_ready_status(n) == "Unknown" else None)(server.node("agent-hb")), 10, message="node turns NotReady"
    )
    ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"][0]
    assert ready["reason"] == "NodeStatusUnknown"
    assert ready["message"] == "Kubelet stopped posting node status."
    assert any(t["key"] == "node.kubernetes.io/unreachable" for t in node["spec"]["taints"])
    assert table_row(server, "agent-hb")[1] == "NotReady"
    again = start_agent(server, "agent-hb", root=tmp_path / "hb")  # same host comes back
    again.wait_ready()
    wait_until(lambda: node_ready_status(server.node("agent-hb")) == "True", 5)
    assert not any(t["key"] == "node.kubernetes.io/unreachable" for t in server.node("agent-hb")["spec"].get("taints", []))


def test_deleted_node_is_registered_again_by_its_running_agent(server, start_agent):
    agent = start_agent(server, "agent-comeback")
    agent.wait_ready()
    uid = server.node("agent-comeback")["metadata"]["uid"]
    server.kubectl("delete", "node", "agent-comeback")
    node = wait_until(lambda: server.node("agent-comeback"), 10, message="re-registration")
    assert node["metadata"]["uid"] != uid
    assert "registering again" in agent.log()


def test_agent_survives_a_server_restart(tmp_path, start_agent):
    root, cache = tmp_path / "srv", tmp_path / "cache"
    srv = start_server(root, cache, ["--node-name", "restarting-server"])
    try:
        agent = start_agent(srv, "agent-survivor")
        agent.wait_ready()
        srv.proc.stop()
        time.sleep(1.5)
        assert agent.alive()
        srv = start_server(root, cache, ["--node-name", "restarting-server"], port=srv.port)
        before = server_heartbeat(srv, "agent-survivor")
        wait_until(lambda: server_heartbeat(srv, "agent-survivor") != before, 10, message="heartbeat after restart")
        assert node_ready_status(srv.node("agent-survivor")) == "True"
        assert agent.alive()
    finally:
        srv.proc.stop()


def server_heartbeat(srv, name):
    node = srv.node(name)
    for c in (node or {}).get("status", {}).get("conditions", []):
        if c["type"] == "Ready":
            return c["lastHeartbeatTime"]
    return None


def test_second_server_joins_a_cluster_init_server_and_serves_the_api(processes, start_agent, tmp_path):
    """HA join: a server with `server:` set joins a first server started with cluster-init
    (embedded etcd; joining a SQLite server is refused, see test_standin_etcd.py)."""
    from standin_helpers import Server, free_port

    first = start_server(
        tmp_path / "server-1",
        tmp_path / "cache1",
        ["--cluster-init", "--node-name", "standin-server", "--token", TEST_SECRET],
        env={"K3S_STANDIN_ETCD_PEER_PORT": str(free_port())},
    )
    server = first
    port = free_port()
    root = tmp_path / "server-2"
    proc = processes(
        root,
        ["server", "--server", server.url, f"--https-listen-port={port}", "--bind-address", "127.0.0.1", "--node-name", "standin-server-2"],
        env={"K3S_TOKEN": server.token, "K3S_STANDIN_ETCD_PEER_PORT": str(free_port())},
        name="server2",
    )
    try:
        proc.wait_ready()
        second = Server(root, port, proc, tmp_path / "cache2")
        assert (second.tls / "server-ca.crt").read_bytes() == (server.tls / "server-ca.crt").read_bytes()
        assert second.token == server.token
        names = second.kubectl("get", "nodes", "-o", "name").stdout.split()
        assert "node/standin-server" in names and "node/standin-server-2" in names
        row = wait_until(lambda: (lambda r: r if r and r[1] == "Ready" else None)(table_row(second, "standin-server-2")), 10)
        assert row[1:3] == ["Ready", "control-plane,etcd,master"]
        agent = start_agent(second, "agent-via-second")
        agent.wait_ready()
        wait_until(lambda: node_ready_status(server.node("agent-via-second")) == "True", 10)
        assert re.search(r"Joined cluster at https://127\.0\.0\.1:\d+", proc.log())
    finally:
        first.proc.stop()
