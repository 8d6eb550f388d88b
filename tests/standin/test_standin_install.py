"""k3s-install.sh of the stand-in, run against a K3S_STANDIN_ROOT directory with a fake
`systemctl` that only records its arguments (this machine has no systemd)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest
from standin_helpers import INSTALL_SH, STANDIN, SYSTEM_PYTHON, VERSION, wait_until


class Host:
    def __init__(self, tmp: Path) -> None:
        self.root = tmp / "root"
        self.fakebin = tmp / "fakebin"
        self.calls = tmp / "systemctl.log"
        self.fakebin.mkdir()
        (self.root / "usr/local/bin").mkdir(parents=True)
        shutil.copy2(STANDIN, self.root / "usr/local/bin/k3s")
        os.chmod(self.root / "usr/local/bin/k3s", 0o755)
        fake = self.fakebin / "systemctl"
        fake.write_text(f'#!/bin/sh\necho "$*" >> "{self.calls}"\n')
        fake.chmod(0o755)

    def path(self, p: str) -> Path:
        return self.root / p.lstrip("/")

    def install(self, env: dict[str, str] | None = None, args=(), skip_download=True):
        full = {k: v for k, v in os.environ.items() if not k.startswith(("K3S_", "INSTALL_K3S_"))}
        full["PATH"] = f"{self.fakebin}:{full.get('PATH', '/usr/bin:/bin')}"
        full["K3S_STANDIN_ROOT"] = str(self.root)
        if skip_download:
            full["INSTALL_K3S_SKIP_DOWNLOAD"] = "true"
        full.update(env or {})
        return subprocess.run(["sh", str(INSTALL_SH), *args], env=full, capture_output=True, text=True, timeout=60)

    def run_script(self, name: str):
        env = dict(os.environ, PATH=f"{self.fakebin}:{os.environ.get('PATH', '/usr/bin:/bin')}")
        return subprocess.run(["sh", str(self.path(f"/usr/local/bin/{name}"))], env=env, capture_output=True, text=True, timeout=60)

    def systemctl(self) -> list[str]:
        return self.calls.read_text().splitlines() if self.calls.exists() else []

    def reset_calls(self) -> None:
        self.calls.unlink(missing_ok=True)


@pytest.fixture
def host(tmp_path):
    return Host(tmp_path)


def mode(p: Path) -> int:
    return stat.S_IMODE(p.lstat().st_mode)


def test_install_script_is_posix_sh_and_shellcheck_clean():
    assert subprocess.run(["sh", "-n", str(INSTALL_SH)]).returncode == 0
    if shutil.which("shellcheck"):
        res = subprocess.run(["shellcheck", "-s", "sh", str(INSTALL_SH)], capture_output=True, text=True)
        assert res.returncode == 0, res.stdout


def test_install_server_writes_unit_env_symlink_and_scripts(host):
    res = host.install(
        {
            "K3S_TOKEN": "install-secret",
            "K3S_NODE_NAME": "srv-1",
            "INSTALL_K3S_VERSION": VERSION,
            "INSTALL_K3S_EXEC": "server --tls-san 'lab api' --disable=traefik",
        }
    )
    assert res.returncode == 0, res.stderr
    unit = host.path("/etc/systemd/system/k3s.service")
    text = unit.read_text()
    for line in (
        "Type=notify",
        "Restart=always",
        "RestartSec=5s",
        "KillMode=process",
        "Delegate=yes",
        "TimeoutStartSec=0",
        "EnvironmentFile=-/etc/systemd/system/k3s.service.env",
        "ExecStart=/usr/local/bin/k3s \\",
        "    server \\",
        "    '--tls-san' \\",
        "    'lab api' \\",
        "    '--disable=traefik'",
    ):
        assert line in text.splitlines(), line
    assert "install-secret" not in text
    env = host.path("/etc/systemd/system/k3s.service.env")
    assert mode(env) == 0o600
    assert env.read_text().splitlines() == ["K3S_NODE_NAME=srv-1", "K3S_TOKEN=install-secret"]
    link = host.path("/usr/local/bin/kubectl")
    assert link.is_symlink() and os.readlink(link) == "k3s"
    for script in ("k3s-killall.sh", "k3s-uninstall.sh"):
        assert mode(host.path(f"/usr/local/bin/{script}")) == 0o755
    assert host.systemctl() == ["daemon-reload", "enable k3s.service", "restart k3s.service"]
    assert "install-secret" not in res.stdout + res.stderr
    leftovers = [p for p in host.root.rglob(".*") if p.is_file()]
    assert leftovers == []  # temp files were all renamed into place


def test_second_identical_run_does_not_restart_unless_forced(host):
    env = {"K3S_TOKEN": "s3cret", "INSTALL_K3S_EXEC": "server"}
    assert host.install(env).returncode == 0
    host.reset_calls()
    res = host.install(env)
    assert res.returncode == 0 and "No change detected so skipping service start" in res.stdout
    assert not any(c.startswith("restart") for c in host.systemctl())
    host.reset_calls()
    res = host.install({**env, "INSTALL_K3S_FORCE_RESTART": "true"})
    assert "restart k3s.service" in host.systemctl()


@pytest.mark.parametrize("change", ["env", "unit"])
def test_a_changed_env_or_unit_restarts(host, change):
    env = {"K3S_TOKEN": "s3cret", "INSTALL_K3S_EXEC": "server"}
    assert host.install(env).returncode == 0
    host.reset_calls()
    if change == "env":
        env["K3S_NODE_NAME"] = "renamed"
    else:
        env["INSTALL_K3S_EXEC"] = "server --tls-san x.example"
    assert host.install(env).returncode == 0
    assert host.systemctl()[-1] == "restart k3s.service"


def test_a_binary_replaced_before_the_run_is_no_change_unless_forced(host):
    """As the real install.sh: hashes are taken when the script starts, so a binary uploaded
    before it runs (the air-gap path) does not restart the service on its own."""
    env = {"K3S_TOKEN": "s3cret", "INSTALL_K3S_EXEC": "server"}
    assert host.install(env).returncode == 0
    host.reset_calls()
    with open(host.path("/usr/local/bin/k3s"), "a") as f:
        f.write("# upgraded\n")
    res = host.install(env)
    assert res.returncode == 0 and "No change detected so skipping service start" in res.stdout
    assert not any(c.startswith("restart") for c in host.systemctl())
    res = host.install({**env, "INSTALL_K3S_FORCE_RESTART": "true"})
    assert res.returncode == 0 and host.systemctl()[-1] == "restart k3s.service"


def test_install_without_skip_download_fails_clearly(host):
    res = host.install({"K3S_TOKEN": "x"}, skip_download=False)
    assert res.returncode == 1
    assert "cannot download" in res.stderr and "INSTALL_K3S_SKIP_DOWNLOAD=true" in res.stderr
    assert not host.path("/etc/systemd/system/k3s.service").exists()


def test_k3s_url_makes_an_agent_and_needs_a_token(host):
    url = "https://10.231.0.10:6443"
    res = host.install({"K3S_URL": url})
    assert res.returncode == 1 and "token" in res.stderr and "K3S_TOKEN" in res.stderr
    cfg = host.path("/etc/rancher/k3s/config.yaml")
    cfg.parent.mkdir(parents=True)
    cfg.write_text(f"server: {url}\ntoken: from-config\n")
    res = host.install({"K3S_URL": url})
    assert res.returncode == 0, res.stderr
    unit = host.path("/etc/systemd/system/k3s-agent.service").read_text()
    assert "    agent" in unit.splitlines() and "from-config" not in unit
    assert host.path("/etc/systemd/system/k3s-agent.service.env").read_text() == f"K3S_URL={url}\n"
    assert host.path("/usr/local/bin/k3s-agent-uninstall.sh").exists()
    assert "restart k3s-agent.service" in host.systemctl()


def test_agent_from_install_exec_with_config_only(host):
    res = host.install({"INSTALL_K3S_EXEC": "agent"})
    assert res.returncode == 0, res.stderr
    assert host.path("/etc/systemd/system/k3s-agent.service").exists()
    assert host.path("/etc/systemd/system/k3s-agent.service.env").read_text() == ""


def test_skip_start_and_skip_enable(host):
    res = host.install({"INSTALL_K3S_SKIP_START": "true", "K3S_TOKEN": "x"})
    assert res.returncode == 0
    assert host.systemctl() == ["daemon-reload", "enable k3s.service"]
    host.reset_calls()
    res = host.install({"INSTALL_K3S_SKIP_ENABLE": "true", "K3S_TOKEN": "x", "K3S_NODE_NAME": "other"})
    assert res.returncode == 0 and host.systemctl() == []
    assert host.path("/etc/systemd/system/k3s.service").exists()
    res = host.install({"K3S_TOKEN": "x"})  # never started before, so this run starts it
    assert host.systemctl()[-1] == "restart k3s.service"


def test_version_mismatch_is_warned_and_recorded(host):
    res = host.install({"INSTALL_K3S_VERSION": "v1.30.0+k3s1", "K3S_TOKEN": "x"})
    assert res.returncode == 0
    assert "INSTALL_K3S_VERSION=v1.30.0+k3s1" in res.stderr and VERSION in res.stderr
    state = host.path("/var/lib/rancher/k3s/standin-install/k3s.state").read_text()
    assert f"binary_version={VERSION}" in state and "requested_version=v1.30.0+k3s1" in state


def test_existing_kubectl_is_not_replaced(host):
    other = host.path("/usr/local/bin/kubectl")
    other.write_text("#!/bin/sh\n")
    res = host.install({"K3S_TOKEN": "x"})
    assert "already exists" in res.stdout and not other.is_symlink()


def test_uninstall_removes_everything_but_keeps_shared_files_for_the_other_unit(host):
    assert host.install({"K3S_TOKEN": "x"}).returncode == 0
    assert host.install({"INSTALL_K3S_EXEC": "agent"}).returncode == 0
    for d in ("/etc/rancher/node", "/var/lib/rancher/k3s/server"):
        host.path(d).mkdir(parents=True, exist_ok=True)
    res = host.run_script("k3s-agent-uninstall.sh")
    assert res.returncode == 0, res.stderr
    assert not host.path("/etc/systemd/system/k3s-agent.service").exists()
    assert not host.path("/etc/systemd/system/k3s-agent.service.env").exists()
    assert host.path("/usr/local/bin/k3s").exists()  # k3s.service still installed
    host.reset_calls()
    res = host.run_script("k3s-uninstall.sh")
    assert res.returncode == 0, res.stderr
    for p in (
        "/etc/systemd/system/k3s.service",
        "/etc/systemd/system/k3s.service.env",
        "/usr/local/bin/kubectl",
        "/usr/local/bin/k3s",
        "/usr/local/bin/k3s-killall.sh",
        "/usr/local/bin/k3s-uninstall.sh",
        "/etc/rancher/k3s",
        "/etc/rancher/node",
        "/var/lib/rancher/k3s",
    ):
        assert not host.path(p).exists() and not host.path(p).is_symlink(), p
    calls = host.systemctl()
    assert "stop k3s.service" in calls and "disable k3s.service" in calls


def test_killall_stops_units_and_stand_in_processes(host):
    assert host.install({"K3S_TOKEN": "x"}).returncode == 0
    host.reset_calls()
    env = {k: v for k, v in os.environ.items() if not k.startswith("K3S_")}
    env.update(K3S_STANDIN_ROOT=str(host.root), K3S_STANDIN_RETRY_SECONDS="0.5")
    # an agent of this fake host, retrying against a closed port
    proc = subprocess.Popen(
        [SYSTEM_PYTHON, str(host.path("/usr/local/bin/k3s")), "agent", "--server", "https://127.0.0.1:9", "--token", "x"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)
        assert proc.poll() is None
        res = host.run_script("k3s-killall.sh")
        assert res.returncode == 0, res.stderr
        wait_until(lambda: proc.poll() is not None, 5, message="stand-in process stopped")
        assert "stop k3s.service" in host.systemctl()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
