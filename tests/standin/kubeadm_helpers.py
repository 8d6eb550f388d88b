"""Helpers for the tests of the kubeadm/kubelet stand-ins (provisioner_lab/standin/kubeadm,
kubelet): "hosts" that are directories on this machine.

Each KubeadmHost is a K3S_STANDIN_ROOT directory (every absolute path the stand-ins touch is
prefixed with it) plus a bin directory put first on PATH with:

- ``systemctl``: a fake that records its arguments and, for ``start|restart|stop kubelet``,
  runs the kubelet stand-in the way kubelet.service + the kubeadm drop-in do (flags from
  ``var/lib/kubelet/kubeadm-flags.env`` and ``etc/default/kubelet``), one process per host,
  its PID in ``kubelet.pid``; every process is stopped by PID at teardown;
- ``kubelet``: runs the kubelet stand-in (kubeadm's preflight asks ``kubelet --version``).

The container runtime socket is a socket inode made with mknod; the sysctls kubeadm checks
are files under the root; each host's etcd peer port is a free port of its own. The API server binds 127.0.0.1 on a free port (apiServer.extraArgs
bind-address, localAPIEndpoint.bindPort).
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import textwrap
import time
from pathlib import Path

from standin_helpers import BUILD_DIR, FAST_ENV, SYSTEM_PYTHON, find_kubectl, free_port

from provisioner_lab import zipapps

KUBEADM = zipapps.build("kubeadm", BUILD_DIR)
KUBELET = zipapps.build("kubelet", BUILD_DIR)
K8S_VERSION = "v1.31.4"
FLANNEL_MANIFEST = Path(__file__).resolve().parent / "data" / "kube-flannel-test.yaml"

_FAKE_SYSTEMCTL = r"""#!/usr/bin/python3
# Fake systemctl for the stand-in tests: records calls; manages the kubelet stand-in of
# this test host like kubelet.service with the kubeadm drop-in would.
import os, shlex, signal, subprocess, sys, time
HOST = @HOST@
ROOT = os.path.join(HOST, "root")
with open(os.path.join(HOST, "systemctl.log"), "a") as f:
    f.write(" ".join(sys.argv[1:]) + "\n")
args = [a for a in sys.argv[1:] if not a.startswith("-")]
if not args:
    sys.exit(0)
verb, units = args[0], [u.replace(".service", "") for u in args[1:]]
if "kubelet" not in units or verb not in ("start", "restart", "stop"):
    sys.exit(0)
pidfile = os.path.join(HOST, "kubelet.pid")

def alive(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return b"kubelet" in f.read()
    except OSError:
        return False

try:
    pid = int(open(pidfile).read())
except (OSError, ValueError):
    pid = None
if verb in ("restart", "stop") and pid and alive(pid):
    os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                break
        except ChildProcessError:
            pass
        if not alive(pid):
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
if verb == "stop":
    sys.exit(0)
if verb == "start" and pid and alive(pid):
    sys.exit(0)

def env_args(path, var):
    try:
        text = open(os.path.join(ROOT, path.lstrip("/"))).read()
    except OSError:
        return []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith(var + "="):
            return shlex.split(shlex.split(line[len(var) + 1:])[0] if line[len(var) + 1:] else "")
    return []

argv = [@PYTHON@, @KUBELET@, "--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf",
        "--kubeconfig=/etc/kubernetes/kubelet.conf", "--config=/var/lib/kubelet/config.yaml"]
argv += env_args("/var/lib/kubelet/kubeadm-flags.env", "KUBELET_KUBEADM_ARGS")
argv += env_args("/etc/default/kubelet", "KUBELET_EXTRA_ARGS")
log = open(os.path.join(HOST, "kubelet.log"), "ab")
p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                     start_new_session=True)
open(pidfile, "w").write(str(p.pid))
"""


class KubeadmHost:
    """One test "host": ``<dir>/root`` (K3S_STANDIN_ROOT) and ``<dir>/bin`` (PATH)."""

    #: Commands kubeadm's preflight looks for in PATH (kubernetes/kubernetes checks_linux.go).
    PREFLIGHT_COMMANDS = ("conntrack", "ip", "iptables", "mount", "nsenter", "ebtables", "ethtool", "socat", "tc", "touch")

    def __init__(
        self,
        dirpath: Path,
        name: str,
        env: dict[str, str] | None = None,
        containerd: bool = True,
        sysctls: str = "1",
        missing: tuple[str, ...] | None = None,
    ) -> None:
        """``missing``: the preflight commands this host lacks; then its PATH is only its own
        directories (else the system's PATH, with stand-ins after it for what this machine lacks)."""
        self.dir = dirpath
        self.name = name
        self.root = dirpath / "root"
        self.bin = dirpath / "bin"
        self.cache = dirpath / "kube-cache"
        self.tools = dirpath / "tools"
        for d in (self.root, self.bin, self.cache, self.tools):
            d.mkdir(parents=True, exist_ok=True)
        self.missing = missing
        for command in self.PREFLIGHT_COMMANDS:
            if command not in (missing or ()):
                (self.tools / command).write_text("#!/bin/sh\nexit 0\n")
                (self.tools / command).chmod(0o755)
        fake = self.bin / "systemctl"
        fake.write_text(
            _FAKE_SYSTEMCTL.replace("@HOST@", repr(str(dirpath)))
            .replace("@PYTHON@", repr(SYSTEM_PYTHON))
            .replace("@KUBELET@", repr(str(KUBELET)))
        )
        fake.chmod(0o755)
        wrapper = self.bin / "kubelet"
        wrapper.write_text(f'#!/bin/sh\nexec {SYSTEM_PYTHON} {KUBELET} "$@"\n')
        wrapper.chmod(0o755)
        if containerd:
            self.make_containerd_socket()
        for path in ("proc/sys/net/bridge/bridge-nf-call-iptables", "proc/sys/net/ipv4/ip_forward"):
            self.write(path, sysctls + "\n")
        self.write("proc/swaps", "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n")
        # the etcd peer port of this host's control plane (several on one machine: one each)
        self.extra_env = {"K3S_STANDIN_ETCD_PEER_PORT": str(free_port()), **(env or {})}

    def make_containerd_socket(self) -> None:
        sock = self.root / "run/containerd/containerd.sock"
        sock.parent.mkdir(parents=True, exist_ok=True)
        if not sock.exists():
            os.mknod(sock, stat.S_IFSOCK | 0o660)

    def path(self, p: str) -> Path:
        return self.root / p.lstrip("/")

    def write(self, p: str, text: str, mode: int = 0o644) -> Path:
        path = self.path(p)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(mode)
        return path

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("K3S_", "KUBECONFIG", "NOTIFY_SOCKET", "KUBEADM_"))}
        env.update(FAST_ENV)
        path = f"{self.bin}:{self.tools}" if self.missing is not None else f"{self.bin}:{env.get('PATH', '/usr/bin:/bin')}:{self.tools}"
        env.update({"K3S_STANDIN_ROOT": str(self.root), "PATH": path, "KUBEADM_STANDIN_WAIT_SECONDS": "60"})
        env.update(self.extra_env)
        return env

    def kubeadm(self, *args: str, timeout: float = 120, preexec=None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [SYSTEM_PYTHON, str(KUBEADM), *args], env=self.env(), capture_output=True, text=True, timeout=timeout, preexec_fn=preexec
        )

    def kubelet(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run([SYSTEM_PYTHON, str(KUBELET), *args], env=self.env(), capture_output=True, text=True, timeout=timeout)

    def systemctl_calls(self) -> list[str]:
        log = self.dir / "systemctl.log"
        return log.read_text().splitlines() if log.exists() else []

    def kubelet_pid(self) -> int | None:
        try:
            pid = int((self.dir / "kubelet.pid").read_text())
        except (OSError, ValueError):
            return None
        try:
            return pid if b"kubelet" in Path(f"/proc/{pid}/cmdline").read_bytes() else None
        except OSError:
            return None

    def kubelet_log(self) -> str:
        log = self.dir / "kubelet.log"
        return log.read_text(errors="replace") if log.exists() else ""

    def stop_kubelet(self) -> None:
        pid = self.kubelet_pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.kubelet_pid() is not None:
            time.sleep(0.1)
        if self.kubelet_pid() is not None:
            os.kill(pid, signal.SIGKILL)

    def kubectl(
        self,
        *args: str,
        kubectl: str | None = None,
        check: bool = True,
        timeout: float = 60,
        kubeconfig: str = "/etc/kubernetes/admin.conf",
    ) -> subprocess.CompletedProcess:
        exe = kubectl or find_kubectl()
        assert exe, "kubectl is required"
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        env["HOME"] = str(self.cache)
        res = subprocess.run(
            [exe, "--kubeconfig", str(self.path(kubeconfig)), "--cache-dir", str(self.cache / exe.replace("/", "_")), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
        if check and res.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
        return res

    def node(self, name: str) -> dict | None:
        res = self.kubectl("get", "node", name, "-o", "json", check=False)
        return json.loads(res.stdout) if res.returncode == 0 else None


def init_config(
    name: str,
    port: int,
    version: str = "v1beta4",
    address: str = "127.0.0.1",
    node_ip: str | None = None,
    pod_subnet: str = "10.244.0.0/16",
) -> str:
    """The kubeadm-init.yaml the provisioner writes (v1beta4 or v1beta3 shapes), with the API
    bound to loopback on a free port for the test."""
    if version == "v1beta4":
        kubelet_args = f"\n    - name: node-ip\n      value: {node_ip}" if node_ip else " []"
        api_args = "\n    - name: bind-address\n      value: 127.0.0.1"
    else:
        kubelet_args = f"\n    node-ip: {node_ip}" if node_ip else " {}"
        api_args = "\n    bind-address: 127.0.0.1"
    return (
        f"apiVersion: kubeadm.k8s.io/{version}\n"
        "kind: InitConfiguration\n"
        "nodeRegistration:\n"
        f"  name: {name}\n"
        "  criSocket: unix:///run/containerd/containerd.sock\n"
        f"  kubeletExtraArgs:{kubelet_args}\n"
        "localAPIEndpoint:\n"
        f"  advertiseAddress: {address}\n"
        f"  bindPort: {port}\n"
        "---\n"
        f"apiVersion: kubeadm.k8s.io/{version}\n"
        "kind: ClusterConfiguration\n"
        f"kubernetesVersion: {K8S_VERSION}\n"
        f'controlPlaneEndpoint: "{address}:{port}"\n'
        "networking:\n"
        f"  podSubnet: {pod_subnet}\n"
        "  serviceSubnet: 10.96.0.0/12\n"
        "apiServer:\n"
        "  certSANs:\n"
        "  - api.standin.test\n"
        "  - 192.0.2.10\n"
        f"  extraArgs:{api_args}\n"
        "---\n"
        "apiVersion: kubelet.config.k8s.io/v1beta1\n"
        "kind: KubeletConfiguration\n"
        "cgroupDriver: systemd\n"
    )


def join_config(name: str, endpoint: str, token: str, ca_hash: str, version: str = "v1beta4") -> str:
    return textwrap.dedent(f"""\
        apiVersion: kubeadm.k8s.io/{version}
        kind: JoinConfiguration
        discovery:
          bootstrapToken:
            apiServerEndpoint: "{endpoint}"
            token: "{token}"
            caCertHashes: ["{ca_hash}"]
        nodeRegistration:
          name: {name}
          criSocket: unix:///run/containerd/containerd.sock
          kubeletExtraArgs: {"[]" if version == "v1beta4" else "{}"}
        """)


def parse_join_command(out: str) -> tuple[str, str, str]:
    """(endpoint, token, hash) from `kubeadm join <ep> --token <t> --discovery-token-ca-cert-hash <h>`."""
    words = out.replace("\\\n", " ").split()
    i = words.index("join")
    return words[i + 1], words[words.index("--token") + 1], words[words.index("--discovery-token-ca-cert-hash") + 1]
