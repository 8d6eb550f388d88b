"""The stand-in's embedded etcd (provisioner_lab/standin/k3s/etcd.py): three servers on this
machine (127.0.0.1, their own API and peer ports) joined with the server token; every server
serves the API from its own replica, and the API answers only while a majority of the etcd
members is up."""

from __future__ import annotations

import json
from pathlib import Path

from standin_helpers import Server, StandinProcess, free_port, node_ready_status, wait_until

QUICK = {"ETCD_STANDIN_HEARTBEAT_SECONDS": "0.3"}


def start(root: Path, cache: Path, args: list[str], env: dict[str, str] | None = None, wait: bool = True) -> Server:
    port, peer = free_port(), free_port()
    argv = ["server", f"--https-listen-port={port}", "--bind-address", "127.0.0.1", *args]
    proc = StandinProcess(root, argv, env={**QUICK, "K3S_STANDIN_ETCD_PEER_PORT": str(peer), **(env or {})}, name="server")
    if wait:
        proc.wait_ready(30)
    srv = Server(root, port, proc, cache)
    srv.peer_port = peer  # type: ignore[attr-defined]
    return srv


def restart(srv: Server) -> Server:
    """The same server started again with the same ports (its data directory is kept)."""
    proc = StandinProcess(srv.root, srv.proc.args, env={**QUICK, "K3S_STANDIN_ETCD_PEER_PORT": str(srv.peer_port)}, name="server")  # type: ignore[attr-defined]
    proc.wait_ready(30)
    srv.proc = proc
    return srv


def members(srv: Server) -> dict[str, str]:
    return json.loads((srv.server_dir / "db/etcd/member.json").read_text())["members"]


def test_three_servers_keep_the_api_with_one_down_and_lose_it_with_two(processes, tmp_path):
    first = start(tmp_path / "s1", tmp_path / "c1", ["--cluster-init", "--node-name", "s1", "--token", "ha-secret-1"])
    started = [first]
    try:
        second = start(tmp_path / "s2", tmp_path / "c2", ["--server", first.url, "--node-name", "s2"], env={"K3S_TOKEN": first.token})
        started.append(second)
        third = start(tmp_path / "s3", tmp_path / "c3", ["--server", second.url, "--node-name", "s3"], env={"K3S_TOKEN": first.token})
        started.append(third)
        # every server holds the member list and the cluster CA, and serves every node itself
        wait_until(lambda: all(len(members(s)) == 3 for s in started), 10, message="three members everywhere")
        assert (third.tls / "server-ca.crt").read_bytes() == (first.tls / "server-ca.crt").read_bytes()
        for srv in started:
            names = wait_until(
                lambda srv=srv: {"node/s1", "node/s2", "node/s3"} <= set(srv.kubectl("get", "nodes", "-o", "name").stdout.split()),
                15,
                message="all nodes on every server",
            )
            assert names
        etcd_labels = third.kubectl_json("get", "node", "s2")["metadata"]
        assert etcd_labels["labels"]["node-role.kubernetes.io/etcd"] == "true"
        assert etcd_labels["annotations"]["etcd.k3s.cattle.io/node-name"] in members(first)

        # a write on a follower is visible on the others
        third.kubectl("create", "namespace", "ha-one")
        wait_until(lambda: first.kubectl("get", "namespace", "ha-one", check=False).returncode == 0, 5, message="replicated")

        # one of three down (the first server, the etcd leader): the others keep the API
        first.proc.stop()
        wait_until(lambda: third.kubectl("create", "namespace", "ha-two", check=False).returncode == 0, 15, message="new leader")
        assert "ha-two" in second.kubectl("get", "namespaces", "-o", "name").stdout
        assert third.request("GET", "/readyz")[0] == 200

        # two of three down: no quorum, answered at once with etcd's timeout error
        second.proc.stop()
        res = wait_until(
            lambda: (lambda r: r if r.returncode != 0 else None)(third.kubectl("get", "nodes", check=False, timeout=20)),
            10,
            message="no quorum",
        )
        assert "etcdserver: request timed out" in res.stderr
        status, _, body = third.request("GET", "/readyz")
        assert status == 500 and b"[-]etcd failed: reason withheld" in body

        # the first server back: quorum again, with its data synced from the new leader
        restart(first)
        wait_until(lambda: third.kubectl("get", "namespace", "ha-two", check=False).returncode == 0, 15, message="quorum back")
        wait_until(lambda: first.kubectl("get", "namespace", "ha-two", check=False).returncode == 0, 15, message="snapshot synced")

        # deleting a server's Node removes its etcd member (k3s's member controller)
        gone = third.kubectl_json("get", "node", "s2")["metadata"]["annotations"]["etcd.k3s.cattle.io/node-name"]
        third.kubectl("delete", "node", "s2")
        wait_until(lambda: gone not in members(first) and gone not in members(third), 10, message="member removed")
        assert node_ready_status(third.node("s1")) == "True"
    finally:
        for srv in started:
            srv.proc.stop()


def test_joining_a_server_without_etcd_is_refused(server, tmp_path):
    port, peer = free_port(), free_port()
    proc = StandinProcess(
        tmp_path / "s-join",
        ["server", f"--https-listen-port={port}", "--bind-address", "127.0.0.1", "--server", server.url],
        env={"K3S_TOKEN": server.token, "K3S_STANDIN_ETCD_PEER_PORT": str(peer)},
        name="server",
    )
    try:
        assert proc.wait_exit(20) == 1
        assert "does not run embedded etcd" in proc.log()
    finally:
        proc.stop()
