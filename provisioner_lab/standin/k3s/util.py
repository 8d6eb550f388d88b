"""TEST DOUBLE (k3s stand-in, not the real k3s).

Small helpers: host paths ($K3S_STANDIN_ROOT), time stamps, logrus-style logging with secrets
masked, atomic writes, sd_notify, host facts (hostname, os-release, machine-id, memory).

Upstream: k3s-io/k3s pkg/cli/cmds/log.go (logrus text lines), pkg/util/file.go; systemd sd_notify(3)
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import socket
import sys
import tempfile
import threading

from .version import GO_VERSION, STANDIN_VERSION

DEFAULT_DATA_DIR = "/var/lib/rancher/k3s"


DEFAULT_CONFIG = "/etc/rancher/k3s/config.yaml"


DEFAULT_KUBECONFIG = "/etc/rancher/k3s/k3s.yaml"


NODE_PASSWORD_FILE = "/etc/rancher/node/password"


REAL_KUBECTL = "/usr/bin/kubectl"


NODE_PASSWORD_REJECTED = (
    "Node password rejected, duplicate hostname or contents of "
    "'/etc/rancher/node/password' may not match server node-passwd entry, "
    "try enabling a unique node name with the --with-node-id flag"
)


MASK = "********"


def hp(path):
    """Host path: prefix absolute paths with $K3S_STANDIN_ROOT (test hook)."""
    root = os.environ.get("K3S_STANDIN_ROOT", "")
    if root and path and os.path.isabs(path):
        return os.path.join(root, path.lstrip("/"))
    return path


def read_host_text(path, default=""):
    """Read a host information file, preferring the K3S_STANDIN_ROOT copy."""
    for candidate in (hp(path), path):
        try:
            with open(candidate, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            continue
    return default


def env_float(name, default):
    try:
        value = float(os.environ.get(name, ""))
        return value if value > 0 else default
    except ValueError:
        return default


def utcnow():
    return datetime.datetime.now(datetime.UTC)


def ts(dt=None):
    return (dt or utcnow()).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_ts(value):
    try:
        return datetime.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    except (TypeError, ValueError):
        return None


_SECRETS = set()
_LOG_LOCK = threading.Lock()
#: Debug logging on (--debug, config `debug: true`; the kubelet's --v>=4, kubeadm's --v>=5).
DEBUG = False
#: Another program's line format (the kubelet and kubeadm stand-ins log klog-style lines).
_WRITER = None


def set_log_writer(writer):
    """Send every later ``log`` line to ``writer(level, msg)`` instead of k3s's logrus format."""
    global _WRITER
    _WRITER = writer


def add_secret(value):
    if value and len(value) >= 4:
        _SECRETS.add(value)


def mask(text):
    for s in sorted(_SECRETS, key=len, reverse=True):
        text = text.replace(s, MASK)
    return text


def log(level, msg):
    if _WRITER is not None:
        _WRITER(level, msg)
        return
    if level == "debug" and not DEBUG:
        return
    now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    msg = mask(str(msg)).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    line = 'time="%s" level=%s msg="%s"\n' % (now, level, msg)
    with _LOG_LOCK:
        try:
            sys.stderr.write(line)
            sys.stderr.flush()
        except (OSError, ValueError):
            pass


class Fatal(Exception):
    """Exit 1 after logging level=fatal, as k3s does."""


def atomic_write(path, data, mode=0o644):
    if isinstance(data, str):
        data = data.encode()
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", dir=directory)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def read_file(path, default=None):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return default


def sd_notify(state):
    """Send a datagram to systemd's $NOTIFY_SOCKET (Type=notify)."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(addr)
            s.sendall(state.encode())
        return True
    except OSError as e:
        log("warning", "failed to notify systemd: %s" % e)
        return False


def go_arch():
    m = platform.machine().lower()
    return {
        "x86_64": "amd64",
        "amd64": "amd64",
        "aarch64": "arm64",
        "arm64": "arm64",
        "armv7l": "arm",
        "armv6l": "arm",
        "s390x": "s390x",
        "ppc64le": "ppc64le",
        "riscv64": "riscv64",
    }.get(m, m)


def hostname():
    return socket.gethostname().split(".")[0] if socket.gethostname() else "localhost"


def os_image():
    for line in read_host_text("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"').strip("'")
    return "Linux"


def machine_id():
    mid = read_host_text("/etc/machine-id").strip()
    return mid or "0" * 32


def mem_total_ki():
    for line in read_host_text("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return line.split()[1] + "Ki"
    return "0Ki"


def version_info(git_version=None):
    git_version = git_version or STANDIN_VERSION
    m = re.match(r"v(\d+)\.(\d+)", git_version)
    major, minor = (m.group(1), m.group(2)) if m else ("1", "0")
    return {
        "major": major,
        "minor": minor,
        "gitVersion": git_version,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2024-12-01T00:00:00Z",
        "goVersion": GO_VERSION,
        "compiler": "gc",
        "platform": "linux/%s" % go_arch(),
    }
