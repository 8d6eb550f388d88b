"""TEST DOUBLE (kubeadm stand-in, not the real kubeadm).

Preflight checks (NumCPU, Mem, swap, sysctls, CRI socket, ports, files, commands in PATH,
kubelet version).

Upstream: kubernetes/kubernetes cmd/kubeadm/app/preflight/checks.go, checks_linux.go
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess

from ..k3s.util import read_host_text
from ..kubelet.cli import is_socket, socket_path, swap_on
from ..kubelet.version import STANDIN_VERSION
from .base import MIN_CPUS, MIN_MEM_MB, KubeadmError, say


class Preflight:
    def __init__(self, ignore):
        self.ignore = ignore
        self.errors, self.warnings = [], []

    def error(self, name, msg):
        if "all" in self.ignore or name.lower() in self.ignore:
            self.warnings.append((name, msg))
        else:
            self.errors.append((name, msg))

    def warn(self, name, msg):
        self.warnings.append((name, msg))

    def finish(self):
        for name, msg in self.warnings:
            say("\t[WARNING %s]: %s" % (name, msg))
        if self.errors:
            lines = "".join("\t[ERROR %s]: %s\n" % e for e in self.errors)
            raise KubeadmError(
                "[preflight] Some fatal errors occurred:\n%s[preflight] If you know "
                "what you are doing, you can make a check non-fatal with "
                "`--ignore-preflight-errors=...`" % lines,
                "preflight",
            )


def _file_check(pf, path):
    name = "FileContent-" + path.replace("/", "-")
    text = read_host_text(path, None)
    if text is None:
        pf.error(name, "%s does not exist" % path)
    elif text.strip() != "1":
        pf.error(name, "%s contents are not set to 1" % path)


def num_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def mem_mb():
    for line in read_host_text("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 0


def kubelet_version():
    try:
        out = subprocess.run(["kubelet", "--version"], capture_output=True, text=True, timeout=30)
    except OSError:
        raise KubeadmError('exec: "kubelet": executable file not found in $PATH')
    m = re.search(r"v(\d+)\.(\d+)\.(\d+)", out.stdout)
    if out.returncode != 0 or not m:
        raise KubeadmError("couldn't get kubelet version: %s" % (out.stderr.strip() or out.stdout.strip()))
    return tuple(int(x) for x in m.groups())


def exec_checks(version):
    """(command, mandatory) pairs of kubeadm's InPathChecks for Kubernetes ``version``.

    Upstream: kubernetes/kubernetes cmd/kubeadm/app/preflight/checks_linux.go addExecChecks --
    conntrack is mandatory only before 1.32.0 (kube-proxy no longer needs it, PR 126952); ip,
    iptables, mount and nsenter are mandatory; ebtables, ethtool, socat, tc and touch warn."""
    numbers = tuple(int(x) for x in re.findall(r"\d+", version)[:3])
    checks = [("conntrack", True)] if numbers < (1, 32, 0) else []
    checks += [
        ("ip", True),
        ("iptables", True),
        ("mount", True),
        ("nsenter", True),
        ("ebtables", False),
        ("ethtool", False),
        ("socat", False),
        ("tc", False),
        ("touch", False),
    ]
    return checks


def common_checks(pf, reg, control_plane):
    if os.geteuid() != 0:
        pf.error("IsPrivilegedUser", "user is not running as root")
    if control_plane:
        n = num_cpus()
        if n < MIN_CPUS:
            pf.error("NumCPU", "the number of available CPUs %d is less than the required %d" % (n, MIN_CPUS))
        m = mem_mb()
        if m < MIN_MEM_MB:
            pf.error("Mem", "the system RAM (%d MB) is less than the minimum %d MB" % (m, MIN_MEM_MB))
    sock = socket_path(reg.cri_socket)
    if not is_socket(sock):
        pf.error(
            "CRI",
            "container runtime is not running: validate CRI v1 runtime API for "
            'endpoint "%s": rpc error: code = Unavailable desc = connection error: desc = '
            '"transport: Error while dialing: dial unix %s: connect: no such file or '
            'directory"' % (reg.cri_socket, sock),
        )
    if swap_on():
        pf.warn(
            "Swap",
            "swap is supported for cgroup v2 only. The kubelet must be properly "
            "configured to use swap. Please refer to https://kubernetes.io/docs/concepts/"
            "architecture/nodes/#swap-memory, or disable swap on the node",
        )
    for path in ("/proc/sys/net/bridge/bridge-nf-call-iptables", "/proc/sys/net/ipv4/ip_forward"):
        _file_check(pf, path)
    for tool, mandatory in exec_checks(STANDIN_VERSION):
        if shutil.which(tool) is None:
            (pf.error if mandatory else pf.warn)("FileExisting-" + tool, "%s not found in system path" % tool)
    try:
        ver = kubelet_version()
        mine = tuple(int(x) for x in re.findall(r"\d+", STANDIN_VERSION)[:3])
        if ver[:2] > mine[:2]:
            pf.error(
                "KubeletVersion",
                "the kubelet version is higher than the control plane "
                "version. This is not a supported version skew and may lead to a "
                'malfunctional cluster. Kubelet version: "%s" Control plane version: "%s"' % ("%d.%d.%d" % ver, "%d.%d.%d" % mine),
            )
    except KubeadmError as e:
        pf.error("KubeletVersion", e.message)
    try:
        enabled = subprocess.run(["systemctl", "is-enabled", "kubelet.service"], capture_output=True, text=True, timeout=30).returncode == 0
    except OSError:
        enabled = False
    if not enabled:
        pf.warn("Service-Kubelet", "kubelet service is not enabled, please run 'systemctl enable kubelet.service'")


def port_free(port, host=""):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False
