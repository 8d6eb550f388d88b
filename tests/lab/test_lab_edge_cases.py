"""Lab tests that each need a lab of their own: cloned hostnames, a second API address, a bad key."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.lab.conftest import start_lab


def test_two_hosts_with_the_same_hostname_both_join_under_their_inventory_names(tmp_path: Path) -> None:
    env = start_lab("t-clone", tmp_path)
    try:
        for host in ("t-clone-agent1", "t-clone-agent2"):
            env.ssh(host, "hostnamectl set-hostname cloned-vm")
        assert {env.ssh(h, "hostname").strip() for h in ("t-clone-agent1", "t-clone-agent2")} == {"cloned-vm"}
        run = env.provisioner("up", "-o", "json", "--timeout", "120")
        assert run.code == 0, run.stdout + run.stderr
        assert sorted(n["name"] for n in run.json()["nodes"] if n["ready"]) == ["t-clone-agent1", "t-clone-agent2", "t-clone-server1"]
    finally:
        env.lab.down()


def test_api_endpoint_on_a_second_server_address_is_in_the_kubeconfig_and_verifies(tmp_path: Path) -> None:
    env = start_lab("t-vip", tmp_path, agents=1)
    try:
        server = next(h for h in env.lab.hosts() if h.role == "server")
        used = {h.address for h in env.lab.hosts()}
        vip = next(f"10.231.0.{n}" for n in range(250, 200, -1) if f"10.231.0.{n}" not in used)
        env.ssh(server.name, f"ip addr add {vip}/24 dev host0")
        inventory = env.edit_inventory(lambda data: data["cluster"].__setitem__("api_endpoint", vip))
        run = env.provisioner("up", "--timeout", "120", inventory=inventory)
        assert run.code == 0, run.stdout + run.stderr
        assert "TLS verified" in run.stdout
        kubeconfig = tmp_path / "t-vip.kubeconfig"
        view = json.loads(env.kubectl(kubeconfig, "config", "view", "-o", "json").stdout)
        assert view["clusters"][0]["cluster"]["server"] == f"https://{vip}:6443"
        listed = env.kubectl(kubeconfig, "get", "nodes")
        assert listed.returncode == 0, listed.stderr
        assert "t-vip-agent1" in listed.stdout
        # the agent joined through the endpoint, too
        assert f"https://{vip}:6443" in env.ssh("t-vip-agent1", "cat /etc/rancher/k3s/config.yaml")
        # an address added after the certificate was made is not covered: a client must refuse it
        other = next(f"10.231.0.{n}" for n in range(200, 150, -1) if f"10.231.0.{n}" not in used | {vip})
        env.ssh(server.name, f"ip addr add {other}/24 dev host0")
        moved = tmp_path / "moved.kubeconfig"
        moved.write_text(kubeconfig.read_text().replace(f"https://{vip}:6443", f"https://{other}:6443"))
        refused = env.kubectl(moved, "get", "nodes")
        assert refused.returncode != 0 and "x509" in refused.stderr, refused.stderr
    finally:
        env.lab.down()


def test_a_wrong_private_key_for_one_host_fails_naming_it_and_changes_no_host(tmp_path: Path) -> None:
    env = start_lab("t-key", tmp_path)
    try:
        wrong = tmp_path / "wrong_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong)], check=True)

        def break_agent2(data: dict) -> None:
            for host in data["hosts"]:
                if host["name"] == "t-key-agent2":
                    host["ssh"] = {"private_key": str(wrong)}

        inventory = env.edit_inventory(break_agent2)
        run = env.provisioner("up", inventory=inventory)
        assert run.code != 0
        errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and errors[0].startswith("error: t-key-agent2: authentication failed"), run.stderr
        assert str(wrong) in errors[0]
        for host in ("t-key-server1", "t-key-agent1", "t-key-agent2"):
            assert env.ssh(host, "ls /etc/rancher /usr/local/bin/k3s 2>&1 || true").count("No such file") == 2, host
    finally:
        env.lab.down()


def test_a_non_root_user_with_a_sudo_password_provisions_the_cluster_without_the_password_in_any_argv(tmp_path: Path) -> None:
    env = start_lab("t-sudo", tmp_path, agents=1, user="lab")
    try:
        password = env.lab.sudo_password()
        hosts = ("t-sudo-server1", "t-sudo-agent1")
        # sudo on these hosts really asks for the password
        assert env.lab.ssh(hosts[0], "sudo -n true", user="lab", check=False).returncode != 0
        without = env.provisioner("up")
        assert without.code == 2 and "PROVISIONER_SUDO_PASSWORD is not set" in without.stderr

        with env.sampling_argv(hosts) as seen:
            run = env.provisioner("up", "-o", "json", "--timeout", "120", env={"PROVISIONER_SUDO_PASSWORD": password})
        assert run.code == 0, run.stdout + run.stderr
        assert sorted(n["name"] for n in run.json()["nodes"] if n["ready"]) == sorted(hosts)
        text = "\n".join(seen)
        assert "sudo -S" in text, "the sampler must have seen sudo running"
        assert password not in text
        log = run.json()["log"]
        assert password not in Path(log).read_text() and password not in run.stdout + run.stderr
        # files written through sudo are root's, 0600, and nothing is left in the staging area
        assert env.ssh(hosts[1], "stat -c '%U %a' /etc/rancher/k3s/config.yaml").strip() == "root 600"
        assert env.ssh(hosts[1], "ls /tmp | grep -c provisioner || true").strip() == "0"
    finally:
        env.lab.down()
