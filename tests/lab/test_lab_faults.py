"""Lab tests of faults mid-run: a joining agent whose network is cut, an agent whose config
directory is full. Each needs a lab of its own (the fault is not undone)."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

from tests.lab.conftest import start_lab

CONFIG = "/etc/rancher/k3s/config.yaml"


def cut_network(host: str) -> None:
    """Take the host's port on the lab bridge down (the host side of its veth, a lab interface):
    its packets vanish without a reset, as with a pulled cable."""
    port = f"vb-{host}"
    assert Path(f"/sys/class/net/{port}").exists(), f"{port} is not on this machine"
    subprocess.run(["ip", "link", "set", port, "down"], check=True)


def test_a_network_cut_while_an_agent_joins_fails_that_agent_within_the_bound_and_the_others_finish(tmp_path: Path) -> None:
    env = start_lab("t-cut", tmp_path)
    try:
        victim = "t-cut-agent2"
        cut_at: list[float] = []

        def cut_when_its_config_arrives() -> None:
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                if env.lab.ssh(victim, f"test -e {CONFIG}", check=False).returncode == 0:
                    cut_network(victim)
                    cut_at.append(time.monotonic())
                    return
                time.sleep(0.2)

        watcher = threading.Thread(target=cut_when_its_config_arrives, daemon=True)
        watcher.start()
        run = env.provisioner("up", "--timeout", "60", timeout=400)
        ended = time.monotonic()
        watcher.join(timeout=5)
        assert cut_at, "the agent's config never arrived: the cut did not happen mid-join\n" + run.stdout + run.stderr
        print(f"up ended {ended - cut_at[0]:.1f}s after the cut")
        assert ended - cut_at[0] < 120, f"up ended {ended - cut_at[0]:.0f}s after the cut"
        assert run.code == 1, run.stdout + run.stderr
        assert "internal error" not in run.stderr and "Error(" not in run.stdout + run.stderr
        rows = {line.split("│")[1].strip(): line for line in run.stdout.splitlines() if line.count("│") > 3}
        # the cut is seen by the dead-peer bound, as a lost connection or as an SFTP request unanswered
        said = run.stdout + run.stderr
        assert "failed" in rows[victim] and ("SSH connection lost" in said or "did not answer within" in said), run.stdout
        for other in ("t-cut-server1", "t-cut-agent1"):
            assert "failed" not in rows[other], rows[other]
        assert env.ssh("t-cut-agent1", "systemctl is-active k3s-agent").strip() == "active"
    finally:
        env.lab.down()


def test_a_full_config_directory_keeps_the_old_config_and_the_running_agent_and_names_the_full_disk(tmp_path: Path) -> None:
    env = start_lab("t-full", tmp_path, agents=1)
    try:
        agent = "t-full-agent1"
        first = env.provisioner("up", "--timeout", "120")
        assert first.code == 0, first.stdout + first.stderr
        before = env.ssh(agent, f"cat {CONFIG}")
        # a 64 KiB tmpfs over the config directory, holding the current config, filled up
        env.ssh(
            agent,
            f"cp -a {CONFIG} /root/config.yaml && mount -t tmpfs -o size=64k,mode=0755 tmpfs /etc/rancher/k3s"
            f" && cp -a /root/config.yaml {CONFIG} && (dd if=/dev/zero of=/etc/rancher/k3s/filler bs=4k || true)",
        )
        assert env.ssh(agent, "df -Pk /etc/rancher/k3s | awk 'NR==2 {print $4}'").strip() == "0"
        address = next(h.address for h in env.lab.hosts() if h.name == agent)

        def set_node_ip(data: dict) -> None:
            for host in data["hosts"]:
                if host["name"] == agent:
                    host["node_ip"] = address  # a config change: a reconfigure is planned

        run = env.provisioner("up", "--timeout", "60", inventory=env.edit_inventory(set_node_ip))
        assert run.code == 1, run.stdout + run.stderr
        out = run.stdout + run.stderr
        # refused before anything changes, from the free space the facts measured (the upload
        # itself is all-or-nothing too: tests/unit/test_transfer.py fails it at every step)
        assert f"{agent}: not enough free space for /etc/rancher/k3s (filesystem /etc/rancher/k3s)" in out, out
        assert "internal error" not in out
        assert env.ssh(agent, f"cat {CONFIG}") == before
        assert env.ssh(agent, "ls -A /etc/rancher/k3s").split() == ["config.yaml", "filler"]
        assert env.ssh(agent, "systemctl is-active k3s-agent").strip() == "active"
    finally:
        env.lab.down()
