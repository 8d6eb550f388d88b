"""The plan is what runs: for the same facts, the steps `plan` outputs are exactly the steps `up`
executes — per host and for the cluster — for install, join, reconfigure, restart, upgrade and
nothing, with k3s and kubeadm, on strict fake hosts (an unforeseen command fails the test)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from provisioner import actions, kubeconfig, report
from provisioner.distros import Action
from provisioner.phases import Options
from provisioner.steps import Command, HostPlan, ReadValue, Step, Upload, Wait
from provisioner.summary import RunSummary
from provisioner.testing import FakeRemote
from tests.unit.conftest import BASIC, make_inventory
from tests.unit.fakes import (
    AGENT_TOKEN_PREFIX,
    KUBEADM_INVENTORY,
    TOKEN,
    FakeK3sCluster,
    FakeKubeadmCluster,
)


@pytest.fixture(autouse=True)
def _no_network_check(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(kubeconfig, "check", lambda config, timeout=10: kubeconfig.Check("ok", "simulated"))
    monkeypatch.chdir(tmp_path)


Cluster = FakeK3sCluster | FakeKubeadmCluster


def planned_then_executed(cluster: Cluster) -> tuple[RunSummary, RunSummary]:
    """`plan`, then `up` on the same hosts (facts unchanged in between)."""
    planned = actions.plan(cluster.inventory, Options(timeout=3), connector=cluster.connector)
    assert planned.ok, planned.error
    executed = actions.up(cluster.inventory, Options(timeout=3), connector=cluster.connector)
    assert executed.ok, executed.error
    for remote in cluster.remotes.values():
        assert remote.unexpected == []
    return planned.summary, executed.summary


def described(steps: tuple[Step, ...] | list[Step]) -> list[tuple[str, list[dict[str, object]]]]:
    return [(s.name, [op.describe() for op in s.operations]) for s in steps]


def sent(steps: tuple[Step, ...]) -> tuple[list[str], list[str]]:
    """The commands and upload paths a host receives for ``steps``, in order."""
    commands = [
        op.text if isinstance(op, Command) else op.command
        for s in steps
        for op in s.operations
        if isinstance(op, Command | Wait | ReadValue)
    ]
    return commands, [op.path for s in steps for op in s.operations if isinstance(op, Upload)]


def assert_plan_is_what_ran(cluster: Cluster, planned: RunSummary, executed: RunSummary, init: str) -> None:
    assert planned.plan is not None and executed.plan is not None
    # plan's output (its JSON) is the plan up made
    assert report.plan_json(planned) == report.plan_json(executed)
    for name, host_plan in planned.plan.hosts.items():
        records = executed.outcomes[name].steps
        assert [(r.name, [{k: v for k, v in o.operation.items()} for o in r.operations]) for r in records] == described(host_plan.steps), (
            name
        )
        assert all(r.ok and all(o.exit_code == 0 for o in r.operations) for r in records)
        if name != init:  # other hosts get nothing but the fact script and their steps
            remote = cluster.remotes[name]
            commands, uploads = sent(host_plan.steps)
            assert [c for _, c in remote.commands[1:]] == commands, name
            assert remote.uploads == uploads, name
    cluster_plan = planned.plan.cluster
    ran = [s for s in cluster_plan.steps if s is not cluster_plan.join_secret or any(p.needs for p in planned.plan.hosts.values())]
    rolled: list[Step] = []  # the rolling upgrade's API steps run first, wave by wave
    for wave in planned.plan.rollout:
        rolled += [h.cordon for h in wave] + [h.drain for h in wave if h.drain is not None]
        rolled += [s for h in wave for s in (h.wait, h.uncordon)]
    ran = rolled + ran
    assert [(r.name, [dict(o.operation) for o in r.operations]) for r in executed.cluster_steps] == described(ran)


def actions_of(summary: RunSummary) -> dict[str, Action]:
    assert summary.plan is not None
    return {n: p.action for n, p in summary.plan.hosts.items()}


# --- k3s ------------------------------------------------------------------------------------------


def k3s_cluster() -> FakeK3sCluster:
    return FakeK3sCluster(make_inventory())


def k3s_up(cluster: FakeK3sCluster) -> None:
    assert actions.up(cluster.inventory, Options(timeout=3), connector=cluster.connector).ok


def k3s_fresh(cluster: FakeK3sCluster) -> None:
    pass


def k3s_converged(cluster: FakeK3sCluster) -> None:
    k3s_up(cluster)


def k3s_stopped(cluster: FakeK3sCluster) -> None:
    k3s_up(cluster)
    cluster.stop("worker2")


def k3s_reconfigured(cluster: FakeK3sCluster) -> None:
    k3s_up(cluster)
    cluster.inventory = make_inventory(
        BASIC.replace(
            "{name: worker1, address: 192.0.2.11, role: agent}", "{name: worker1, address: 192.0.2.11, role: agent, flannel_iface: eth9}"
        )
    )


def k3s_upgraded(cluster: FakeK3sCluster) -> None:
    k3s_up(cluster)
    cluster.inventory = make_inventory(BASIC.replace("v1.31.4+k3s1", "v1.32.0+k3s1"))


def k3s_reinstalled_agent(cluster: FakeK3sCluster) -> None:
    k3s_up(cluster)
    cluster.hosts["worker2"].role = None
    cluster.hosts["worker2"].active = False
    cluster.remotes["worker2"].files.clear()
    cluster.nodes["worker2"]["ready"] = False


@pytest.mark.parametrize(
    "prepare,expected",
    [
        (k3s_fresh, {"controller": Action.INSTALL, "worker1": Action.JOIN, "worker2": Action.JOIN}),
        (k3s_converged, {"controller": Action.NOTHING, "worker1": Action.NOTHING, "worker2": Action.NOTHING}),
        (k3s_stopped, {"controller": Action.NOTHING, "worker1": Action.NOTHING, "worker2": Action.RESTART}),
        (k3s_reconfigured, {"controller": Action.NOTHING, "worker1": Action.RECONFIGURE, "worker2": Action.NOTHING}),
        (k3s_upgraded, {"controller": Action.UPGRADE, "worker1": Action.UPGRADE, "worker2": Action.UPGRADE}),
        (k3s_reinstalled_agent, {"controller": Action.NOTHING, "worker1": Action.NOTHING, "worker2": Action.JOIN}),
    ],
    ids=["install-join", "nothing", "restart", "reconfigure", "upgrade", "rejoin-stale-node"],
)
def test_k3s_up_runs_exactly_the_planned_steps(prepare: Callable[[FakeK3sCluster], None], expected: dict[str, Action]) -> None:
    cluster = k3s_cluster()
    prepare(cluster)
    for remote in cluster.remotes.values():
        remote.commands.clear()
        remote.uploads.clear()
    planned, executed = planned_then_executed(cluster)
    assert actions_of(planned) == expected
    assert_plan_is_what_ran(cluster, planned, executed, "controller")


def test_k3s_new_cluster_plans_agents_with_a_placeholder_and_reads_the_token_once() -> None:
    cluster = k3s_cluster()
    planned, executed = planned_then_executed(cluster)
    assert planned.plan is not None
    assert planned.plan.cluster.join_secret is not None
    assert planned.plan.cluster.join_secret.name == "read the join tokens from controller"
    assert [r.name for r in executed.cluster_steps] == ["read the join tokens from controller"]
    assert all(TOKEN not in str(p.as_dict()) for p in planned.plan.hosts.values())
    assert AGENT_TOKEN_PREFIX.encode() in cluster.remotes["worker1"].files["/etc/rancher/k3s/config.yaml"]


def test_an_agent_installed_against_a_server_being_reinstalled_is_reconfigured_with_the_new_token() -> None:
    cluster = k3s_cluster()
    k3s_up(cluster)
    server = cluster.hosts["controller"]
    server.role, server.active = None, False  # the server was wiped; the agents still point at it
    cluster.remotes["controller"].files.clear()
    cluster.nodes.clear()
    planned, executed = planned_then_executed(cluster)
    assert actions_of(planned) == {"controller": Action.INSTALL, "worker1": Action.RECONFIGURE, "worker2": Action.RECONFIGURE}
    assert planned.plan is not None
    assert "the first server is new: it will rejoin with the new token" in planned.plan.hosts["worker1"].reasons
    assert_plan_is_what_ran(cluster, planned, executed, "controller")


# --- kubeadm ---------------------------------------------------------------------------------------


def kubeadm_cluster() -> FakeKubeadmCluster:
    cluster = FakeKubeadmCluster(make_inventory(KUBEADM_INVENTORY))
    return cluster


def kubeadm_up(cluster: FakeKubeadmCluster) -> None:
    assert actions.up(cluster.inventory, Options(timeout=3), connector=cluster.connector).ok


def kubeadm_fresh(cluster: FakeKubeadmCluster) -> None:
    pass


def kubeadm_converged(cluster: FakeKubeadmCluster) -> None:
    kubeadm_up(cluster)


def kubeadm_stopped(cluster: FakeKubeadmCluster) -> None:
    from dataclasses import replace

    kubeadm_up(cluster)
    cluster.state["w1"] = replace(cluster.state["w1"], services={"containerd": "active", "kubelet": "inactive"})


def kubeadm_reconfigured(cluster: FakeKubeadmCluster) -> None:
    kubeadm_up(cluster)
    cluster.inventory = make_inventory(KUBEADM_INVENTORY.replace("node_ip: 192.0.2.11", "node_ip: 192.0.2.111"))


def kubeadm_other_minor(cluster: FakeKubeadmCluster) -> None:
    """Upgrading kubeadm clusters is not automated: a host on another minor is left alone."""
    kubeadm_up(cluster)
    cluster.inventory = make_inventory(KUBEADM_INVENTORY.replace('version: "1.31"', 'version: "1.32"'))


@pytest.mark.parametrize(
    "prepare,expected",
    [
        (kubeadm_fresh, {"cp1": Action.INSTALL, "w1": Action.JOIN}),
        (kubeadm_converged, {"cp1": Action.NOTHING, "w1": Action.NOTHING}),
        (kubeadm_stopped, {"cp1": Action.NOTHING, "w1": Action.RESTART}),
        (kubeadm_reconfigured, {"cp1": Action.NOTHING, "w1": Action.RECONFIGURE}),
    ],
    ids=["install-join", "nothing", "restart", "reconfigure"],
)
def test_kubeadm_up_runs_exactly_the_planned_steps(prepare: Callable[[FakeKubeadmCluster], None], expected: dict[str, Action]) -> None:
    cluster = kubeadm_cluster()
    prepare(cluster)
    for remote in cluster.remotes.values():
        remote.commands.clear()
        remote.uploads.clear()
    planned, executed = planned_then_executed(cluster)
    assert actions_of(planned) == expected
    assert_plan_is_what_ran(cluster, planned, executed, "cp1")


def test_kubeadm_minor_upgrade_rolls_the_control_plane_then_the_worker_running_exactly_the_planned_steps() -> None:
    """Was: "upgrade is not automated, hosts left alone". Issue 12 automates it: the repository
    switches to the new minor, cp1 runs `kubeadm upgrade plan/apply`, then w1 `kubeadm upgrade
    node`, each followed by kubelet/kubectl and a restart, one host at a time."""
    cluster = kubeadm_cluster()
    kubeadm_other_minor(cluster)
    cluster.events.clear()
    planned, executed = planned_then_executed(cluster)
    assert planned.plan is not None
    assert actions_of(planned) == {"cp1": Action.UPGRADE, "w1": Action.UPGRADE}
    assert [[h.host.name for h in wave] for wave in planned.plan.rollout] == [["cp1"], ["w1"]]
    assert cluster.events == [
        "cordon cp1",
        "drain cp1",
        "repository key cp1",
        "kubeadm 1.32.0-1.1 cp1",
        "kubeadm upgrade plan cp1",
        "kubeadm upgrade apply cp1",
        "kubelet kubectl 1.32.0-1.1 cp1",
        "uncordon cp1",
        "cordon w1",
        "drain w1",
        "repository key w1",
        "kubeadm 1.32.0-1.1 w1",
        "kubeadm upgrade node w1",
        "kubelet kubectl 1.32.0-1.1 w1",
        "uncordon w1",
    ]
    assert_plan_is_what_ran(cluster, planned, executed, "cp1")


def test_kubeadm_join_reads_a_fresh_token_and_fills_it_only_into_the_join_file() -> None:
    cluster = kubeadm_cluster()
    planned, executed = planned_then_executed(cluster)
    assert [r.name for r in executed.cluster_steps] == ["Flannel v0.26.1", "create a bootstrap token on cp1"]
    w1: HostPlan = planned.plan.hosts["w1"]  # type: ignore[union-attr]
    assert "<bootstrap token from the first control plane>" in str(w1.steps[-1].operations[0])
    assert all("q1w2e3" not in c for r in cluster.remotes.values() for _, c in r.commands)


def test_strict_fake_hosts_fail_on_a_command_nobody_expected() -> None:
    from provisioner.testing import UnexpectedCommand

    remote = FakeRemote("h", strict=True)
    remote.on(r"^true$")
    assert remote.sudo("true").ok
    with pytest.raises(UnexpectedCommand, match="no rule for 'rm -rf /'"):
        remote.sudo("rm -rf /")
    assert remote.unexpected == ["rm -rf /"]
