"""Lab (test double) network: address allocation and the machine-wide address registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from provisioner_lab.network import AddressRegistry, allocate
from provisioner_lab.system import LabError


def test_allocate_starts_at_11() -> None:
    assert allocate(3, []) == ["10.231.0.11", "10.231.0.12", "10.231.0.13"]


def test_allocate_skips_used_addresses_of_any_lab() -> None:
    used = ["10.231.0.11", "10.231.0.13", "10.231.0.14"]
    assert allocate(3, used) == ["10.231.0.12", "10.231.0.15", "10.231.0.16"]


def test_allocate_zero() -> None:
    assert allocate(0, ["10.231.0.11"]) == []


def test_allocate_refuses_when_full() -> None:
    used = [f"10.231.0.{i}" for i in range(11, 255)]
    with pytest.raises(LabError, match="no free lab address"):
        allocate(1, used)
    assert allocate(1, used[:-1]) == ["10.231.0.254"]


def _state(path: Path, hosts: list[tuple[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"hosts": [{"name": n, "role": "agent", "address": a} for n, a in hosts]}))
    return path


def test_registry_claims_and_releases(tmp_path: Path) -> None:
    reg = AddressRegistry(tmp_path / "addresses")
    a = _state(tmp_path / "a/lab.json", [("a-server1", "10.231.0.11")])
    b = _state(tmp_path / "b/lab.json", [("b-server1", "10.231.0.12")])
    reg.claim("10.231.0.11", a, "a", "a-server1")
    reg.claim("10.231.0.12", b, "b", "b-server1")
    assert set(reg.claimed()) == {"10.231.0.11", "10.231.0.12"}
    assert set(reg.owned_by_others(a)) == {"10.231.0.12"}
    with pytest.raises(LabError, match="already claimed"):
        reg.claim("10.231.0.12", a, "a", "a-agent1")
    reg.release("10.231.0.12", a)  # not a's: kept
    assert "10.231.0.12" in reg.claimed()
    reg.release("10.231.0.12", b)
    assert set(reg.claimed()) == {"10.231.0.11"}


def test_registry_drops_stale_claims(tmp_path: Path) -> None:
    reg = AddressRegistry(tmp_path / "addresses")
    gone = tmp_path / "gone/lab.json"
    moved = _state(tmp_path / "moved/lab.json", [("m-server1", "10.231.0.20")])
    reg.claim("10.231.0.11", gone, "gone", "gone-server1")  # state file never written
    reg.claim("10.231.0.12", moved, "moved", "m-server1")  # state lists another address
    assert reg.claimed() == {}
    assert list((tmp_path / "addresses").iterdir()) == []
