"""The built wheel carries the templates, the product package and the lab package (with the
stand-ins' modules), and an installed copy finds the templates."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_wheel_contains_templates_and_stand_in_and_installed_code_finds_the_templates(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(REPO)],
        check=True,
        capture_output=True,
        text=True,
    )
    wheel = next(tmp_path.glob("provisioner-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for template in (REPO / "templates").rglob("*.j2"):
        assert f"provisioner/templates/{template.relative_to(REPO / 'templates')}" in names
    assert {
        "provisioner/cli.py",
        "provisioner_lab/cli.py",
        "provisioner_lab/zipapps.py",
        "provisioner_lab/standin/k3s-install.sh",
        "provisioner_lab/standin/k3s/cli.py",
        "provisioner_lab/standin/kubelet/cli.py",
        "provisioner_lab/standin/kubeadm/cli.py",
    } <= names
    assert not any(n.startswith("provisioner/lab") for n in names)
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[provisioner.commands]\nlab = provisioner_lab.cli:lab" in text
    assert not any(n.startswith("tests/") for n in names)

    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = subprocess.run(
        [sys.executable, "-c", "import provisioner.templates as t; print(t.templates_dir())"],
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(probe.stdout.strip()) == site / "provisioner" / "templates"
