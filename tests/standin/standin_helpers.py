"""Helpers for the tests of the stand-in k3s (provisioner_lab/standin/k3s); fixtures are in
conftest.py next to this file.

The stand-ins run as the lab hosts run them: the executables (zipapps) built by
provisioner_lab/zipapps.py from the package's modules, here into a temporary directory once per
test session.

The stand-in is a test double of k3s that the lab installs instead of the real binary.
These tests run it on this machine, never as a systemd service and never as root-only:
every server or agent gets its own K3S_STANDIN_ROOT directory and listens on 127.0.0.1 on
a random free port. Processes are started here and stopped here by PID.

Prerequisites (Debian bookworm packages): python3-cryptography and python3-yaml for
/usr/bin/python3, and a real kubectl (``apt-get install -y kubernetes-client python3-cryptography
python3-yaml``). STANDIN_TEST_KUBECTL=/path/to/kubectl picks another kubectl. When a
prerequisite is missing the tests fail if we are root (we could have installed it) and are
skipped otherwise.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from provisioner_lab import zipapps

BUILD_DIR = Path(tempfile.mkdtemp(prefix="standin-zipapps-"))
atexit.register(shutil.rmtree, BUILD_DIR, True)
STANDIN = zipapps.build("k3s", BUILD_DIR)
INSTALL_SH = zipapps.install_script()
SYSTEM_PYTHON = "/usr/bin/python3"
VERSION = "v1.31.4+k3s1"
TEST_SECRET = "standin-test-secret-0123"
INSTALL_HINT = "apt-get install -y kubernetes-client python3-cryptography python3-yaml"

# quick timings for tests only (the defaults are 40 s / 10 s / 5 s as in k3s)
FAST_ENV = {
    "K3S_STANDIN_NODE_GRACE_SECONDS": "3",
    "K3S_STANDIN_HEARTBEAT_SECONDS": "1",
    "K3S_STANDIN_RETRY_SECONDS": "0.5",
}


def find_kubectl() -> str | None:
    for candidate in (os.environ.get("STANDIN_TEST_KUBECTL"), shutil.which("kubectl"), "/usr/bin/kubectl"):
        if candidate and os.access(candidate, os.X_OK):
            if os.path.realpath(candidate) != os.path.realpath(STANDIN):
                return candidate
    return None


def _prerequisite_problem(need_kubectl: bool) -> str | None:
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"{SYSTEM_PYTHON} is missing"
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import cryptography, yaml"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"{SYSTEM_PYTHON} lacks python3-cryptography or python3-yaml"
    if need_kubectl and find_kubectl() is None:
        return "no kubectl found"
    return None


def require_prerequisites(need_kubectl: bool = True) -> None:
    problem = _prerequisite_problem(need_kubectl)
    if problem is None:
        return
    message = f"stand-in k3s tests: {problem} (install with: {INSTALL_HINT})"
    if os.geteuid() == 0:
        pytest.fail(message + " -- we are root, so this is a setup error, not a skip")
    print(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Notify:
    """An abstract AF_UNIX datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self) -> None:
        self.name = "standin-test-" + uuid.uuid4().hex[:12]
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name)
        self.messages: list[bytes] = []

    @property
    def env(self) -> str:
        return "@" + self.name

    def poll(self, timeout: float) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self.sock.settimeout(remaining)
            try:
                self.messages.append(self.sock.recv(4096))
            except TimeoutError:
                break
        return self.messages

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(b"READY=1" in m for m in self.messages):
                return True
            self.poll(min(0.2, deadline - time.monotonic()))
        return any(b"READY=1" in m for m in self.messages)

    def close(self) -> None:
        self.sock.close()


class StandinProcess:
    """One `k3s server` or `k3s agent` run of the stand-in, started with Debian's python."""

    def __init__(self, root: Path, args: list[str], env: dict[str, str] | None = None, name: str = "k3s", binary: Path = STANDIN) -> None:
        self.root = root
        self.args = args
        self.notify = Notify()
        self.log_path = root.parent / f"{root.name}-{name}-{uuid.uuid4().hex[:6]}.log"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("K3S_", "KUBECONFIG", "NOTIFY_SOCKET"))}
        full_env.update(FAST_ENV)
        full_env.update(env or {})
        full_env["K3S_STANDIN_ROOT"] = str(root)
        full_env["NOTIFY_SOCKET"] = self.notify.env
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [SYSTEM_PYTHON, str(binary), *args], env=full_env, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 20) -> None:
        if not self.notify.wait_ready(timeout):
            self.stop()
            raise AssertionError(f"stand-in {self.args[:1]} sent no READY=1 within {timeout}s; exit={self.proc.poll()}\n{self.log()}")

    def wait_exit(self, timeout: float = 15) -> int:
        return self.proc.wait(timeout=timeout)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, sig)
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
            except ProcessLookupError:
                pass
        self._log.close()
        self.notify.close()
        return self.proc.returncode


class Server:
    """A running stand-in server and helpers to talk to it."""

    def __init__(self, root: Path, port: int, proc: StandinProcess, cache: Path, data_dir: str = "/var/lib/rancher/k3s") -> None:
        self.root, self.port, self.proc, self.cache = root, port, proc, cache
        self.url = f"https://127.0.0.1:{port}"
        self.kubeconfig = root / "etc/rancher/k3s/k3s.yaml"
        self.server_dir = root / data_dir.lstrip("/") / "server"
        self.tls = self.server_dir / "tls"

    @property
    def token(self) -> str:
        return (self.server_dir / "node-token").read_text().strip()

    def kubectl(self, *args: str, check: bool = True, timeout: float = 30, kubeconfig: Path | None = None) -> subprocess.CompletedProcess:
        kubectl = find_kubectl()
        assert kubectl, "kubectl is required"
        cmd = [kubectl, "--kubeconfig", str(kubeconfig or self.kubeconfig), "--cache-dir", str(self.cache), *args]
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        env["HOME"] = str(self.cache)
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        if check and res.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
        return res

    def kubectl_json(self, *args: str) -> dict:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def node(self, name: str) -> dict | None:
        res = self.kubectl("get", "node", name, "-o", "json", check=False)
        return json.loads(res.stdout) if res.returncode == 0 else None

    def ssl_context(self, client_cert: bool = True) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.tls / "server-ca.crt"))
        if client_cert:
            ctx.load_cert_chain(str(self.tls / "client-admin.crt"), str(self.tls / "client-admin.key"))
        return ctx

    def request(self, method: str, path: str, client_cert: bool = True, headers: dict | None = None, body: bytes | None = None):
        import http.client

        conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=10, context=self.ssl_context(client_cert))
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.getheader("Content-Type", ""), resp.read()
        finally:
            conn.close()


def wait_until(predicate, timeout: float, interval: float = 0.2, message: str = ""):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s: {message} (last={last!r})")


def node_ready_status(node: dict | None) -> str | None:
    if not node:
        return None
    for cond in node.get("status", {}).get("conditions", []):
        if cond.get("type") == "Ready":
            return cond.get("status")
    return None


def start_server(
    root: Path,
    cache: Path,
    extra_args: list[str] | None = None,
    env: dict[str, str] | None = None,
    port: int | None = None,
    data_dir: str = "/var/lib/rancher/k3s",
) -> Server:
    port = port or free_port()
    args = ["server", f"--https-listen-port={port}", "--bind-address", "127.0.0.1", *(extra_args or [])]
    proc = StandinProcess(root, args, env=env, name="server")
    proc.wait_ready()
    return Server(root, port, proc, cache, data_dir)


def assert_no_secret(text: str, *secrets: str) -> None:
    for s in secrets:
        assert s not in text, "a secret appeared in stand-in output"
