"""Lab (test double) state: host naming plan, state file, lab names, roots."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from provisioner_lab.paths import LabPaths, check_lab_name
from provisioner_lab.state import HostRecord, LabState, plan_new_hosts
from provisioner_lab.system import LabError


def test_plan_fresh_lab_servers_first() -> None:
    assert plan_new_hosts("lab", [], 1, 2) == [
        ("lab-server1", "server"),
        ("lab-agent1", "agent"),
        ("lab-agent2", "agent"),
    ]


def test_plan_grows_after_existing() -> None:
    existing = [
        HostRecord("lab-server1", "server", "10.231.0.11"),
        HostRecord("lab-agent1", "agent", "10.231.0.12"),
        HostRecord("lab-agent2", "agent", "10.231.0.13"),
    ]
    assert plan_new_hosts("lab", existing, 1, 3) == [("lab-agent3", "agent")]
    assert plan_new_hosts("lab", existing, 2, 2) == [("lab-server2", "server")]
    assert plan_new_hosts("lab", existing, 1, 2) == []


def test_plan_refuses_to_shrink() -> None:
    existing = [HostRecord("lab-agent1", "agent", "10.231.0.12"), HostRecord("lab-agent2", "agent", "10.231.0.13")]
    with pytest.raises(LabError, match="cannot shrink.*lab down"):
        plan_new_hosts("lab", existing, 0, 1)


def test_state_roundtrip_is_private(tmp_path: Path) -> None:
    st = LabState(name="lab", base_rootfs="/x/rootfs", hosts=[HostRecord("lab-server1", "server", "10.231.0.11")])
    path = tmp_path / "lab.json"
    st.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    back = LabState.load(path)
    assert back == st
    assert back.count("server") == 1 and back.count("agent") == 0


@pytest.mark.parametrize("name", ["lab", "standin", "a", "b2", "my-lab"])
def test_good_lab_names(name: str) -> None:
    assert check_lab_name(name) == name


@pytest.mark.parametrize("name", ["", "Lab", "-x", "x-", "1lab", "a_b", "a" * 21, "a/b"])
def test_bad_lab_names(name: str) -> None:
    with pytest.raises(ValueError):
        check_lab_name(name)


def test_paths_default_and_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("PROVISIONER_LAB_DIR", "PROVISIONER_LAB_CACHE_DIR", "PROVISIONER_LAB_RUN_DIR"):
        monkeypatch.delenv(var, raising=False)
    d = LabPaths.resolve()
    assert d.lab_dir("lab") == Path("/var/lib/provisioner-lab/lab")
    assert d.cache_root == Path("/var/cache/provisioner-lab")
    monkeypatch.setenv("PROVISIONER_LAB_DIR", os.fspath(tmp_path))
    e = LabPaths.resolve()
    assert e.lab_dir("lab") == tmp_path / "labs/lab"
    assert e.cache_root == tmp_path / "cache"
    monkeypatch.setenv("PROVISIONER_LAB_CACHE_DIR", "/srv/cache")
    assert LabPaths.resolve(tmp_path / "other").cache_root == Path("/srv/cache")
    assert LabPaths.resolve(tmp_path / "other").state_root == tmp_path / "other/labs"
