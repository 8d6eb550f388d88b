"""TEST LAB TOOLING (not product code): a private libvirtd + virtlogd for the Vagrant lab.

These machines do not run systemd as PID 1, so nothing starts libvirt's daemons; this module starts
them by hand and stops them by PID. libvirtd runs in its own mount namespace where its own config
directory is bind-mounted over /etc/libvirt: the qemu.conf there (qemu as root, no per-domain
namespaces or cgroups) is used only by this libvirtd, and the domains, networks and pools it
defines are written there too — nothing of the machine's own /etc/libvirt is read or changed
(its NAT ``default`` network is never started). Running qemu as root also stops libvirt from
probing QEMU's capabilities again on every call (~40 s per VM definition otherwise).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from provisioner_lab.vagrantlab._run import VagrantLabError, run

URI = "qemu:///system"
SOCKET = Path("/run/libvirt/libvirt-sock")
PACKAGES: tuple[str, ...] = (
    "qemu-system-x86",
    "qemu-utils",
    "libvirt-daemon-system",
    "libvirt-clients",
    "dnsmasq-base",
    "iptables",
    "vagrant",
    "vagrant-libvirt",
)

QEMU_CONF = """\
# Written by provisioner_lab.vagrantlab for its private libvirtd only.
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
namespaces = [ ]
cgroup_controllers = [ ]
"""


@dataclass
class Libvirtd:
    """libvirtd and virtlogd started from ``state`` (config, logs, the storage pool live there)."""

    state: Path
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def config(self) -> Path:
        return self.state / "etc"

    @property
    def pool(self) -> Path:
        return self.state / "pool"

    def start(self, timeout: float = 60) -> None:
        """Start virtlogd and libvirtd and define the ``default`` storage pool in ``state/pool``.

        Refuses when a libvirtd already answers on the system socket (someone else's).
        """
        if _answers():
            raise VagrantLabError(f"a libvirtd already answers on {SOCKET}; stop it first (this lab starts its own)")
        for sub in ("qemu/networks/autostart", "storage/autostart", "secrets", "nwfilter"):
            (self.config / sub).mkdir(parents=True, exist_ok=True)
        self.pool.mkdir(parents=True, exist_ok=True)
        logs = self.state / "logs"
        logs.mkdir(exist_ok=True)
        (self.config / "qemu.conf").write_text(QEMU_CONF)
        (self.config / "libvirtd.conf").write_text(
            f'unix_sock_group = "root"\nunix_sock_rw_perms = "0700"\nauth_unix_rw = "none"\nlog_outputs = "3:file:{logs}/libvirtd.log"\n'
        )
        (self.config / "virtlogd.conf").write_text(f'log_outputs = "3:file:{logs}/virtlogd.log"\n')
        for name in ("virtlogd", "libvirtd"):
            script = f'mount --bind "$1" /etc/libvirt && exec {name} --config "$1/{name}.conf"'
            proc = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=(logs / f"{name}.out").open("ab"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            self.pids[name] = proc.pid
            if name == "virtlogd":
                _wait_for(lambda: Path("/run/libvirt/virtlogd-sock").exists() or proc.poll() is not None, timeout)  # noqa: B023 - called within this iteration
        try:
            deadline = time.monotonic() + timeout
            while not _answers():
                if time.monotonic() > deadline or not _alive(self.pids["libvirtd"]):
                    raise VagrantLabError(f"libvirtd did not start; see {logs}")
                time.sleep(0.5)
            virsh("pool-define-as", "default", "dir", "--target", str(self.pool))
            virsh("pool-start", "default")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Destroy what is still running in libvirt (domains, networks, the pool), then stop
        libvirtd and virtlogd by their PIDs. Already done: no PIDs left."""
        if "libvirtd" in self.pids and _answers():
            for domain in _names("list", "--name"):
                virsh("destroy", domain, check=False)
            for network in _names("net-list", "--name"):
                virsh("net-destroy", network, check=False)
            virsh("pool-destroy", "default", check=False)
        for name in ("libvirtd", "virtlogd"):
            pid = self.pids.pop(name, None)
            if pid is not None:
                _terminate(pid)


def virsh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(["virsh", "-c", URI, *args], timeout=120, check=check)


def _names(*args: str) -> list[str]:
    proc = virsh(*args, check=False)
    return [line.strip() for line in proc.stdout.splitlines() if line.strip()] if proc.returncode == 0 else []


def _answers() -> bool:
    if not SOCKET.exists():
        return False
    return run(["virsh", "-c", URI, "version"], timeout=30, check=False).returncode == 0


def _alive(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return Path(f"/proc/{pid}").exists()
    return done == 0


def _wait_for(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not condition():
        time.sleep(0.2)


def _terminate(pid: int, timeout: float = 30) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; reaps our child."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
        time.sleep(0.2)
