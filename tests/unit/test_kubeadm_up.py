"""`up` with kubeadm through the real phases, on simulated hosts that are already prepared
(packages, containerd, sysctls): init, Flannel, a fresh join token, joins, Ready, and a rerun."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner import actions, kubeconfig
from provisioner.phases import Options
from tests.unit.conftest import make_inventory
from tests.unit.fakes import KUBEADM_INVENTORY as INVENTORY
from tests.unit.fakes import KUBEADM_TOKEN as TOKEN
from tests.unit.fakes import FakeKubeadmCluster


@pytest.fixture(autouse=True)
def _no_network_check(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(kubeconfig, "check", lambda config, timeout=10: kubeconfig.Check("ok", "simulated"))
    monkeypatch.chdir(tmp_path)


def test_kubeadm_up_inits_applies_flannel_makes_a_fresh_token_then_joins_and_a_rerun_does_nothing(tmp_path: Path) -> None:
    inventory = make_inventory(INVENTORY)
    cluster = FakeKubeadmCluster(inventory)
    outcome = actions.up(inventory, Options(timeout=3), connector=cluster.connector)
    assert outcome.ok, outcome.error
    assert cluster.events == ["pull images cp1", "init cp1", "flannel", "token", "join w1"]
    assert {n: o.action for n, o in outcome.summary.outcomes.items()} == {"cp1": "install", "w1": "join"}
    assert list(outcome.summary.applied_addons) == ["Flannel v0.26.1"]
    config = kubeconfig.parse((tmp_path / "kube.kubeconfig").read_text())
    assert config["clusters"][0]["cluster"]["server"] == "https://192.0.2.100:6443"
    assert config["current-context"] == "kube"
    for remote in cluster.remotes.values():
        assert all(TOKEN not in command for _, command in remote.commands)

    cluster.events.clear()
    again = actions.up(inventory, Options(timeout=3), connector=cluster.connector)
    assert again.ok, again.error
    assert cluster.events == []
    assert {o.result for o in again.summary.outcomes.values()} == {"unchanged"}
    assert all(not r.uploads for r in cluster.remotes.values())


def test_kubeadm_plan_lists_the_steps_and_the_flannel_add_on() -> None:
    from rich.console import Console

    from provisioner import report

    inventory = make_inventory(INVENTORY)
    cluster = FakeKubeadmCluster(inventory)
    outcome = actions.plan(inventory, connector=cluster.connector)
    assert outcome.ok
    console = Console(record=True, width=200)
    report.plan_text(console, outcome.summary, None)
    text = console.export_text()
    assert "cp1 (server, 192.0.2.10): install" in text and "kubeadm init: not part of the cluster yet" in text
    assert "cluster: Flannel v0.26.1: not applied yet" in text
    assert "cluster: create a bootstrap token on cp1: workers join with a fresh, short-lived token" in text
    assert "2 cluster step(s)." in text
    assert (
        TOKEN not in text
        and "read <bootstrap token from the first control plane>, <CA hash of the first control plane>: kubeadm token create" in text
    )
    assert "run: kubeadm join --config /etc/kubernetes/provisioner/kubeadm-join.yaml" in text
    assert cluster.events == []
