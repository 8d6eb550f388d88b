"""Shared fixtures for the stand-in k3s tests. See standin_helpers.py for what they run."""

from __future__ import annotations

from pathlib import Path

import pytest
from standin_helpers import TEST_SECRET, Server, StandinProcess, require_prerequisites, start_server

SERVER_CONFIG = f"""\
token: {TEST_SECRET}
tls-san:
  - standin.test
node-name: from-config
node-label:
  - standin-test/role=server
flannel-iface: lo
disable:
  - traefik
  - servicelb
kubelet-arg:
  - max-pods=50
not-a-k3s-flag: true
"""


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """One stand-in server for the session: config.yaml with a bare token, a tls-san and an
    unknown key; --node-name on the command line overrides node-name from the config."""
    require_prerequisites()
    base = tmp_path_factory.mktemp("standin")
    root = base / "server"
    (root / "etc/rancher/k3s").mkdir(parents=True)
    (root / "etc/rancher/k3s/config.yaml").write_text(SERVER_CONFIG)
    srv = start_server(root, base / "kube-cache", ["--node-name", "standin-server", "--tls-san", "cli.standin.test"])
    yield srv
    srv.proc.stop()


@pytest.fixture
def processes():
    """Start stand-in processes; every one is stopped (by PID) at teardown."""
    started: list[StandinProcess] = []

    def start(root: Path, args: list[str], env: dict[str, str] | None = None, name: str = "k3s") -> StandinProcess:
        root.mkdir(parents=True, exist_ok=True)
        p = StandinProcess(root, args, env=env, name=name)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


@pytest.fixture
def start_agent(processes, tmp_path):
    def start(
        server: Server,
        node_name: str,
        token: str | None = None,
        args: list[str] | None = None,
        env: dict[str, str] | None = None,
        root: Path | None = None,
    ) -> StandinProcess:
        root = root or tmp_path / node_name
        full_env = {"K3S_URL": server.url, "K3S_TOKEN": token or server.token, "K3S_NODE_NAME": node_name}
        full_env.update(env or {})
        return processes(root, ["agent", *(args or [])], env=full_env, name="agent")

    return start
