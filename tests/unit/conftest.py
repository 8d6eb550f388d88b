from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from provisioner.inventory import Inventory, parse_inventory

BASIC = """
cluster:
  name: homelab
  version: v1.31.4+k3s1
ssh:
  user: root
hosts:
  - {name: controller, address: 192.0.2.10, role: server}
  - {name: worker1, address: 192.0.2.11, role: agent}
  - {name: worker2, address: 192.0.2.12, role: agent, node_ip: 192.0.2.12, flannel_iface: eth1}
"""


def make_inventory(text: str = BASIC, base_dir: Path | None = None) -> Inventory:
    return parse_inventory(textwrap.dedent(text), "inv.yaml", base_dir=base_dir, check_files=False)


@pytest.fixture
def inventory() -> Inventory:
    return make_inventory()


@pytest.fixture(autouse=True)
def _state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run logs of CLI tests go to a temporary state directory."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
