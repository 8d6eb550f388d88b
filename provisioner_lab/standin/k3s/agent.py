"""TEST DOUBLE (k3s stand-in, not the real k3s).

`k3s agent`: joins a server with the token, registers its Node and heartbeats.

Upstream: k3s-io/k3s pkg/cli/agent/agent.go, pkg/agent/run.go
"""

from __future__ import annotations

import http.client
import http.server
import os

from .config import resolve_token
from .nodeloop import NodeClient, NodeLoop, load_node_password, resolve_node_name
from .nodes import node_registration
from .util import DEFAULT_DATA_DIR, Fatal, atomic_write, env_float, hp, log, sd_notify
from .version import STANDIN_NOTE, STANDIN_VERSION


def run_agent(cfg, node_args, stop):
    url = cfg.get("server") or ""
    token = resolve_token(cfg)
    if not url:
        raise Fatal("--server is required (set K3S_URL, --server or 'server:' in /etc/rancher/k3s/config.yaml)")
    if not token:
        raise Fatal("--token is required (set K3S_TOKEN, K3S_TOKEN_FILE, --token or 'token:' in /etc/rancher/k3s/config.yaml)")
    client = NodeClient(url, token)
    node_name = resolve_node_name(cfg)
    password = load_node_password()
    agent_dir = hp(os.path.join(cfg.get("data-dir") or DEFAULT_DATA_DIR, "agent"))
    retry = env_float("K3S_STANDIN_RETRY_SECONDS", 5.0)
    log("info", "Starting stand-in k3s agent %s (%s) for node %s, server %s" % (STANDIN_VERSION, STANDIN_NOTE, node_name, url))
    while not stop.is_set():
        try:
            ca = client.fetch_cacerts()
            break
        except (OSError, http.client.HTTPException) as e:
            log("info", "Waiting to retrieve agent configuration; server is not ready: %s" % e)
            stop.wait(retry)
    else:
        return 0
    client.trust(ca)
    atomic_write(os.path.join(agent_dir, "server-ca.crt"), ca, 0o644)

    def reg_fn(local_ip):
        return node_registration(node_name, "agent", cfg, node_args, local_ip or "127.0.0.1")

    def ready():
        sd_notify("READY=1")
        log("info", "k3s agent is up and running")

    NodeLoop(client, reg_fn, password, stop, on_first_ready=ready).run()
    log("info", "Stand-in k3s agent stopped")
    return 0
