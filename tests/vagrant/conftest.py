"""Vagrant lab tests: real VMs from the project's Vagrantfile, booted by vagrant-libvirt under
QEMU's software emulation (TCG; KVM is not usable on these machines), from a box this project
builds (scripts/vagrant-box). Needs root; a private libvirtd is started for the session and stopped
by PID at the end, and every VM is destroyed in teardown, even when a test fails.

Run alone with `pytest -m vagrant`; skip with `-m "not vagrant"`. Heavy: ~10 min of 2 cores. Marked
`lab` too (it boots hosts like the lab tests), so `-m "not lab"` leaves it out as well.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from provisioner_lab.vagrantlab import box as vagrant_box
from provisioner_lab.vagrantlab.libvirt import Libvirtd

REPO = Path(__file__).resolve().parents[2]
#: Timings of this session's steps, printed at the end (for docs/benchmarks.md).
TIMINGS: dict[str, float] = {}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.vagrant)
            item.add_marker(pytest.mark.lab)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TIMINGS:
        terminalreporter.write_line("vagrant lab timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in TIMINGS.items()))


@pytest.fixture(scope="session")
def _prerequisites() -> None:
    if os.geteuid() != 0:
        pytest.fail("vagrant tests build a box and start libvirtd: they need root (skip them with -m 'not vagrant')")
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86 is not installed (scripts/test installs it where Debian packages are reachable)")
    for tool in ("vagrant", "virsh", "libvirtd", "kubectl", "debootstrap", "grub-mkimage"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: scripts/test installs the Debian packages the vagrant tests need")


@pytest.fixture(scope="session")
def built_box(_prerequisites: None) -> vagrant_box.Box:
    started = time.monotonic()
    built = vagrant_box.build(echo=print)
    TIMINGS["box (build or cache)"] = time.monotonic() - started
    return built


@pytest.fixture(scope="session")
def libvirtd(_prerequisites: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Libvirtd]:
    daemon = Libvirtd(tmp_path_factory.mktemp("libvirt"))
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    def json(self) -> dict:
        return json.loads(self.stdout)


@dataclass
class VagrantLab:
    """A folder with a copy of the project's Vagrantfile and the means to drive it as a user would."""

    folder: Path
    env: dict[str, str]
    log: Path
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def inventory(self) -> Path:
        return self.folder / "inventories/vagrant.yaml"

    def vagrant(self, *args: str, workers: int = 2, timeout: float = 1200) -> Run:
        env = dict(self.env, WORKERS=str(workers))
        result = subprocess.run(
            ["vagrant", *args], cwd=self.folder, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
        with self.log.open("a") as f:
            f.write(f"$ WORKERS={workers} vagrant {' '.join(args)}  # exit {result.returncode}\n{result.stdout}{result.stderr}\n")
        return Run(result.returncode, result.stdout, result.stderr)

    def provisioner(self, *args: str, timeout: float = 900) -> Run:
        result = subprocess.run(
            [sys.executable, "-m", "provisioner", *args],
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        return Run(result.returncode, result.stdout, result.stderr)

    def kubectl(self, *args: str) -> Run:
        result = subprocess.run(
            ["kubectl", "--kubeconfig", str(self.folder / "vagrant.kubeconfig"), *args],
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        return Run(result.returncode, result.stdout, result.stderr)

    def timed(self, name: str, started: float) -> None:
        self.timings[name] = TIMINGS[name] = time.monotonic() - started


@pytest.fixture(scope="session")
def vagrant_lab(built_box: vagrant_box.Box, libvirtd: Libvirtd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VagrantLab]:
    folder = tmp_path_factory.mktemp("vagrant-lab")
    shutil.copy(REPO / "Vagrantfile", folder / "Vagrantfile")
    home = vagrant_box.CACHE / "vagrant-home"  # boxes added once stay between runs
    env = dict(
        {k: v for k, v in os.environ.items() if k not in ("WORKERS", "VAGRANT_CWD", "VAGRANT_DOTFILE_PATH")},
        VAGRANT_HOME=str(home),
        VAGRANT_DEFAULT_PROVIDER="libvirt",
        VAGRANT_CHECKPOINT_DISABLE="1",
        VAGRANT_BOX_UPDATE_CHECK_DISABLE="1",
        BOX=built_box.name,
        BOX_URL=built_box.url,
        LIBVIRT_DRIVER="qemu",
        XDG_STATE_HOME=str(folder / "state"),
        COLUMNS="200",
    )
    lab = VagrantLab(folder, env, folder / "vagrant.log")
    try:
        yield lab
    finally:
        destroyed = lab.vagrant("destroy", "-f", workers=3, timeout=600)
        if destroyed.code != 0:
            print(f"vagrant destroy -f failed: {destroyed.stderr[-2000:]}")
        _prune_boxes(home, keep=built_box.name)


def _prune_boxes(home: Path, keep: str) -> None:
    """Remove boxes of older recipes from Vagrant's box store (they are ~1 GB each)."""
    boxes = home / "boxes"
    for entry in boxes.iterdir() if boxes.is_dir() else ():
        if entry.name.startswith("provisioner-") and entry.name != keep:
            shutil.rmtree(entry, ignore_errors=True)
