"""A stand-in k3s built to claim another version reports it as the Node's kubeletVersion, and a
process keeps reporting the version it was started with until it is restarted (as a real k3s
keeps running its old code after its binary file is replaced)."""

from __future__ import annotations

import os
from pathlib import Path

from standin_helpers import Server, StandinProcess, free_port, require_prerequisites, wait_until

from provisioner_lab import zipapps

OLD, NEW = "v1.31.4+k3s1", "v1.32.0+k3s1"


def _start(root: Path, binary: Path, port: int, cache: Path) -> Server:
    args = [
        "server",
        f"--https-listen-port={port}",
        "--bind-address",
        "127.0.0.1",
        "--node-name",
        "upgraded",
        "--token",
        "version-test-secret",
    ]
    proc = StandinProcess(root, args, binary=binary, name="server")
    proc.wait_ready()
    return Server(root, port, proc, cache)


def _kubelet_version(server: Server) -> str:
    node = server.node("upgraded") or {}
    return node.get("status", {}).get("nodeInfo", {}).get("kubeletVersion", "")


def test_node_reports_the_running_binarys_version_until_restarted(tmp_path: Path) -> None:
    require_prerequisites()
    root, cache = tmp_path / "host", tmp_path / "kube-cache"
    binary = root / "usr/local/bin/k3s"
    binary.parent.mkdir(parents=True)
    binary.write_bytes(zipapps.executable("k3s", OLD))
    binary.chmod(0o755)
    port = free_port()
    server = _start(root, binary, port, cache)
    try:
        assert _kubelet_version(server) == OLD
        # the binary is replaced under the running process (an upload renames a new file in place)
        staged = binary.with_name(".k3s.new")
        staged.write_bytes(zipapps.executable("k3s", NEW))
        staged.chmod(0o755)
        os.replace(staged, binary)
        # several heartbeats later, the old process still says what it is
        heartbeat = server.node("upgraded")["status"]["conditions"]  # type: ignore[index]
        wait_until(
            lambda: server.node("upgraded")["status"]["conditions"] != heartbeat,
            10,  # type: ignore[index]
            message="a heartbeat after the binary was replaced",
        )
        assert _kubelet_version(server) == OLD
    finally:
        server.proc.stop()
    server = _start(root, binary, port, cache)
    try:
        wait_until(lambda: _kubelet_version(server) == NEW, 15, message=f"kubeletVersion {NEW} after the restart")
    finally:
        server.proc.stop()
