"""Lab (test double) CLI and API refusals that need no root and touch nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from provisioner.cli import main
from provisioner_lab import Lab, LabError


@pytest.fixture(autouse=True)
def _lab_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVISIONER_LAB_DIR", os.fspath(tmp_path))
    monkeypatch.setenv("PROVISIONER_LAB_RUN_DIR", os.fspath(tmp_path / "run"))


def test_lab_group_is_lazy_and_lists_commands() -> None:
    result = CliRunner().invoke(main, ["lab", "--help"])
    assert result.exit_code == 0
    for cmd in ("up", "down", "status"):
        assert cmd in result.output


def test_kubeadm_is_a_distribution_and_others_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    result = CliRunner().invoke(main, ["lab", "up", "--distribution", "kubeadm"])
    assert result.exit_code != 0
    assert "needs root" in result.output  # accepted as a distribution, refused for want of root
    result = CliRunner().invoke(main, ["lab", "up", "--distribution", "rke2"])
    assert result.exit_code != 0 and "rke2" in result.output


def test_up_refuses_without_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    result = CliRunner().invoke(main, ["lab", "up"])
    assert result.exit_code != 0
    assert "needs root" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_down_of_missing_lab_is_fine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    result = CliRunner().invoke(main, ["lab", "down", "--name", "nothere"])
    assert result.exit_code == 0
    assert "not there" in result.output


def test_status_without_labs() -> None:
    result = CliRunner().invoke(main, ["lab", "status"])
    assert result.exit_code == 0 and "no lab is up" in result.output
    result = CliRunner().invoke(main, ["lab", "status", "--output", "json"])
    assert result.exit_code == 0 and result.output.strip() == "[]"


def test_bad_name_is_refused() -> None:
    result = CliRunner().invoke(main, ["lab", "up", "--name", "Bad_Name"])
    assert result.exit_code != 0 and "lab name" in result.output


def test_api_paths_and_refusals(tmp_path: Path) -> None:
    lab = Lab("t1")
    assert lab.dir == tmp_path / "labs/t1"
    assert lab.key_path == tmp_path / "labs/t1/id_ed25519"
    assert lab.inventory_path is None and lab.hosts() == []
    with pytest.raises(LabError, match="use one of k3s, kubeadm"):
        lab.up(distribution="rke2")
    with pytest.raises(LabError, match="--user"):
        lab.up(user="admin")
    with pytest.raises(LabError, match="not there"):
        lab.sudo_password()
