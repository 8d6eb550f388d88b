"""Lab tests: the provisioner against real hosts (systemd-nspawn, real sshd and systemd) running
the k3s stand-in. Needs root; every lab started here is torn down in the fixture's teardown.

Run them with the rest (`pytest`) or alone (`pytest -m lab`); skip them with `-m "not lab"`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from provisioner_lab import Lab

REPO = Path(__file__).resolve().parents[2]
#: Commands that ``LabEnv.provisioner`` gives the lab's inventory (``-i``) unless a test passes one.
INVENTORY_COMMANDS = ("up", "plan", "status", "kubeconfig", "remove", "reset")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.lab)


@pytest.fixture(scope="session", autouse=True)
def _lab_prerequisites() -> None:
    if os.geteuid() != 0:
        pytest.fail("lab tests boot systemd-nspawn hosts and need root (skip them with -m 'not lab')")
    if shutil.which("kubectl") is None:
        pytest.fail("lab tests check the kubeconfig with a real kubectl: apt-get install kubernetes-client")


@dataclass
class Run:
    """A finished `provisioner` command."""

    code: int
    stdout: str
    stderr: str

    def json(self) -> dict:
        return json.loads(self.stdout)


@dataclass
class LabEnv:
    """A lab plus the means to run the provisioner against it the way a user would."""

    lab: Lab
    workdir: Path
    started: list[Lab] = field(default_factory=list)

    @property
    def inventory(self) -> Path:
        path = self.lab.inventory_path
        assert path is not None
        return path

    def provisioner(self, *args: str, inventory: Path | None = None, timeout: float = 300, env: dict[str, str] | None = None) -> Run:
        """Run the CLI in a subprocess from the lab's folder (kubeconfig lands there; ``$KUBECONFIG``
        is a file there too, so `--merge` and `reset` never touch this machine's own kubeconfig)."""
        command = [sys.executable, "-m", "provisioner", *args]
        if args and args[0] in INVENTORY_COMMANDS:
            command += ["-i", str(inventory or self.inventory)]
        isolated = {"XDG_STATE_HOME": str(self.workdir / "state"), "KUBECONFIG": str(self.workdir / "merged.kubeconfig"), "COLUMNS": "200"}
        full_env = {**os.environ, **isolated, **(env or {})}
        result = subprocess.run(command, cwd=self.workdir, capture_output=True, text=True, timeout=timeout, env=full_env)
        return Run(result.returncode, result.stdout, result.stderr)

    def ssh(self, host: str, command: str, *, check: bool = True) -> str:
        return self.lab.ssh(host, command, check=check).stdout

    @contextmanager
    def sampling_argv(self, hosts: tuple[str, ...] | list[str]) -> Iterator[list[str]]:
        """Collect every process's argv on ``hosts``, over and over, while the block runs."""
        seen: list[str] = []
        stop = threading.Event()

        def sample(host: str) -> None:
            while not stop.is_set():
                out = self.lab.ssh(host, "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f 2>/dev/null; echo; done", check=False)
                seen.append(out.stdout)
                time.sleep(0.05)

        threads = [threading.Thread(target=sample, args=(h,), daemon=True) for h in hosts]
        for thread in threads:
            thread.start()
        try:
            yield seen
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=30)

    @contextmanager
    def sampling_cordoned(self, server: str, kubectl: str) -> Iterator[list[int]]:
        """How many nodes are cordoned, as ``kubectl`` on ``server`` lists them every 0.3 s while
        the block runs (a failed or torn listing is skipped)."""
        cordoned: list[int] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                listed = self.lab.ssh(server, f"{kubectl} get nodes -o json", check=False)
                if listed.returncode == 0:
                    try:
                        items = json.loads(listed.stdout)["items"]
                    except ValueError:
                        continue
                    cordoned.append(sum(1 for n in items if (n.get("spec") or {}).get("unschedulable")))
                time.sleep(0.3)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            yield cordoned
        finally:
            stop.set()
            sampler.join(timeout=30)

    def hosts(self) -> list[str]:
        return [h.name for h in self.lab.hosts()]

    def unit_state(self, host: str) -> tuple[str, str]:
        """(MainPID, ActiveEnterTimestamp) of the host's k3s unit: equal before and after = not restarted."""
        unit = "k3s" if "server" in host else "k3s-agent"
        out = self.ssh(host, f"systemctl show -p MainPID -p ActiveEnterTimestamp {unit}")
        values = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        return values["MainPID"], values["ActiveEnterTimestamp"]

    def edit_inventory(self, change: object, target: Path | None = None) -> Path:
        """Load the lab's inventory, let ``change`` edit the data, write it to ``target``."""
        yaml = YAML()
        data = yaml.load(self.inventory.read_text())
        change(data)  # type: ignore[operator]
        target = target or self.workdir / "edited.yaml"
        with target.open("w") as handle:
            yaml.dump(data, handle)
        return target

    def kubectl(self, kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
        """The real Kubernetes client on this machine (Debian's kubectl)."""
        return subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), *args], capture_output=True, text=True, timeout=60)


def cluster_nodes(env: LabEnv, server: str, kubectl: str) -> dict[str, dict]:  # type: ignore[type-arg]
    """The Node objects by name, as ``kubectl`` (the admin client on ``server``) lists them."""
    items = json.loads(env.ssh(server, f"{kubectl} get nodes -o json"))["items"]
    return {n["metadata"]["name"]: n for n in items}


def node_ready(node: dict) -> bool:  # type: ignore[type-arg]
    return next(c["status"] for c in node["status"]["conditions"] if c["type"] == "Ready") == "True"


NGINX = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: nginx, namespace: default}
spec:
  replicas: 4
  selector: {matchLabels: {app: nginx}}
  template:
    metadata: {labels: {app: nginx}}
    spec:
      containers: [{name: nginx, image: nginx}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: nginx, namespace: default}
spec:
  minAvailable: MIN
  selector: {matchLabels: {app: nginx}}
"""


def apply_nginx(env: LabEnv, server: str, kubectl: str, min_available: int) -> None:
    """nginx with 4 replicas under a PDB ``minAvailable``, applied on ``server``; returns once all
    4 are available."""
    manifest = NGINX.replace("MIN", str(min_available))
    env.ssh(server, f"cat > /tmp/nginx.yaml <<'EOF'\n{manifest}\nEOF\n{kubectl} apply -f /tmp/nginx.yaml")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        deploy = json.loads(env.ssh(server, f"{kubectl} get deploy nginx -o json"))
        if (deploy.get("status") or {}).get("availableReplicas") == 4:
            return
        time.sleep(2)
    raise AssertionError("nginx did not get 4 available replicas")


def start_lab(name: str, workdir: Path, *, servers: int = 1, agents: int = 2, user: str = "root") -> LabEnv:
    lab = Lab(name)
    lab.down()  # a leftover from an interrupted earlier run
    workdir.mkdir(parents=True, exist_ok=True)
    lab.up(servers=servers, agents=agents, inventory=workdir / f"{name}.yaml", user=user)
    return LabEnv(lab, workdir)


@pytest.fixture(scope="module")
def lab_env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabEnv]:
    """A fresh lab of 1 server + 2 agents for one test module, torn down afterwards."""
    name = getattr(request.module, "LAB_NAME", "t-" + request.module.__name__.rsplit(".", 1)[-1][5:12].replace("_", ""))
    env = start_lab(name, tmp_path_factory.mktemp(name))
    try:
        yield env
    finally:
        env.lab.down()
