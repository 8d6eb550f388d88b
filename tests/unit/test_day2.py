"""Day 2 on a simulated k3s cluster (strict fake hosts): `remove`, the rolling upgrade inside
`up`, and `reset` — plans, refusals, drains blocked by PodDisruptionBudgets, unreachable hosts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from provisioner import actions, kubeconfig
from provisioner.cli import main
from provisioner.disruption import DrainBlocked
from provisioner.errors import ConnectError, UsageError
from provisioner.inventory import Host, Inventory
from provisioner.phases import Options
from provisioner.phases import drain_nodes as drain_phase
from provisioner.phases.rolling_upgrade import RolloutStopped
from provisioner.phases.uninstall_hosts import UninstallSkipped
from provisioner.removal import RemovalRefused
from provisioner.testing import FakeRemote
from tests.unit.conftest import BASIC, make_inventory
from tests.unit.fakes import FakeK3sCluster

NEW = "v1.32.0+k3s1"
THREE_AGENTS = BASIC + "  - {name: worker3, address: 192.0.2.13, role: agent}\n"
HA = """
cluster:
  name: ha
  version: v1.31.4+k3s1
hosts:
  - {name: s1, address: 192.0.2.21, role: server}
  - {name: s2, address: 192.0.2.22, role: server}
  - {name: s3, address: 192.0.2.23, role: server}
  - {name: a1, address: 192.0.2.24, role: agent}
"""


@pytest.fixture(autouse=True)
def _no_network_check(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(kubeconfig, "check", lambda config, timeout=10: kubeconfig.Check("ok", "simulated"))
    monkeypatch.setattr(drain_phase, "RETRY_SECONDS", 0.05)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kube" / "config"))
    monkeypatch.chdir(tmp_path)


def built(text: str = BASIC, *, allow_even_servers: bool = False) -> FakeK3sCluster:
    cluster = FakeK3sCluster(make_inventory(text))
    outcome = actions.up(cluster.inventory, Options(timeout=3, allow_even_servers=allow_even_servers), connector=cluster.connector)
    assert outcome.ok, outcome.error
    for remote in cluster.remotes.values():
        remote.commands.clear()
    cluster.events.clear()
    cluster.cordoned_counts.clear()
    return cluster


def remove(cluster: FakeK3sCluster, *names: str, dry_run: bool = False, connector=None, **options: object) -> actions.Outcome:  # type: ignore[no-untyped-def]
    options.setdefault("timeout", 3)
    return actions.remove(
        cluster.inventory,
        Options(targets=names, **options),
        dry_run=dry_run,  # type: ignore[arg-type]
        connector=connector or cluster.connector,
    )


def sent_anywhere(cluster: FakeK3sCluster, pattern: str) -> list[str]:
    return [c for r in cluster.remotes.values() for c in r.ran(pattern)]


def web_pods(node: str, count: int) -> list[dict]:
    return [
        {
            "metadata": {
                "name": f"web-{i}",
                "namespace": "default",
                "labels": {"app": "web"},
                "ownerReferences": [{"kind": "ReplicaSet", "controller": True}],
            },
            "spec": {"nodeName": node},
        }
        for i in range(count)
    ]


def pdb(name: str, allowed: int, min_available: int) -> dict:
    return {
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"minAvailable": min_available, "selector": {"matchLabels": {"app": "web"}}},
        "status": {"disruptionsAllowed": allowed},
    }


# --- remove -------------------------------------------------------------------------------------


def test_remove_dry_run_prints_cordon_drain_delete_uninstall_and_sends_no_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = built()
    (tmp_path / "inv.yaml").write_text(BASIC)
    monkeypatch.setattr(actions, "ssh_connector", cluster.connector)
    result = CliRunner().invoke(main, ["remove", "-i", "inv.yaml", "worker1", "--dry-run"])
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    order = [
        out.index(s)
        for s in (
            "cordon worker1",
            "drain worker1 --ignore-daemonsets --timeout=30s",
            "delete node worker1",
            "/usr/local/bin/k3s-agent-uninstall.sh",
            "rm -f /etc/rancher/k3s/config.yaml",
        )
    ]
    assert order == sorted(order)
    assert "dry run: nothing was changed" in out
    assert cluster.events == [] and not sent_anywhere(cluster, r"cordon|drain|delete node|uninstall")
    assert "worker1" in cluster.nodes and cluster.hosts["worker1"].role == "agent"


def test_remove_of_an_agent_cordons_drains_deletes_then_uninstalls_and_up_rejoins_it_under_its_name() -> None:
    cluster = built()
    outcome = remove(cluster, "worker1")
    assert outcome.ok, outcome.error
    assert cluster.events == ["cordon worker1", "drain worker1", "uninstall worker1"]
    assert cluster.remotes["controller"].ran("delete node worker1")
    assert "worker1" not in cluster.nodes
    assert cluster.hosts["worker1"].role is None and "/etc/rancher/k3s/config.yaml" not in cluster.remotes["worker1"].files
    assert cluster.remotes["worker2"].commands == []  # other agents are not even contacted
    again = actions.up(cluster.inventory, Options(timeout=3), connector=cluster.connector)
    assert again.ok, again.error
    assert again.summary.outcomes["worker1"].action == "join"
    assert cluster.nodes["worker1"]["ready"] and cluster.hosts["worker1"].installs == 2


def test_remove_with_the_drain_flags_passes_them_to_kubectl_drain() -> None:
    cluster = built()
    assert remove(cluster, "worker2", drain_timeout=120, delete_emptydir_data=True, force=True).ok
    (drain,) = cluster.remotes["controller"].ran("kubectl drain")
    assert drain.endswith("drain worker2 --ignore-daemonsets --delete-emptydir-data --force --timeout=30s")


def test_unknown_names_are_refused_with_exit_2_listing_inventory_hosts_and_cluster_nodes() -> None:
    cluster = built()
    cluster.nodes["stray"] = {"ready": True, "ip": "192.0.2.99", "role": "agent", "version": "v1.31.4+k3s1"}
    outcome = remove(cluster, "worker9")
    assert isinstance(outcome.error, UsageError) and outcome.error.exit_code == 2
    assert str(outcome.error) == "unknown node(s): worker9; known: controller, worker1, worker2, stray"
    assert cluster.events == []


def test_a_node_only_in_the_cluster_is_drained_and_deleted_with_nothing_to_uninstall() -> None:
    cluster = built()
    cluster.nodes["stray"] = {"ready": False, "ip": "192.0.2.99", "role": "agent", "version": "v1.31.4+k3s1"}
    outcome = remove(cluster, "stray")
    assert outcome.ok, outcome.error
    assert cluster.events == ["cordon stray", "drain stray"] and "stray" not in cluster.nodes
    assert outcome.summary.removal is not None
    assert outcome.summary.removal.nodes[0].skipped == "not in the inventory: no host to uninstall on"


def test_the_last_server_is_refused_and_nothing_is_sent() -> None:
    cluster = built()
    outcome = remove(cluster, "controller")
    assert isinstance(outcome.error, RemovalRefused) and outcome.error.exit_code == 2
    assert "last server" in str(outcome.error)
    assert cluster.events == []


def test_with_embedded_etcd_removing_one_of_two_servers_is_refused_one_of_three_is_planned() -> None:
    two = built(HA.replace("  - {name: s3, address: 192.0.2.23, role: server}\n", ""), allow_even_servers=True)
    refused = remove(two, "s2", dry_run=True)
    assert isinstance(refused.error, RemovalRefused)
    assert "etcd has 2 members and needs 2 for quorum; 1 healthy would remain (s1)" in str(refused.error)
    three = built(HA)
    planned = remove(three, "s3", dry_run=True)
    assert planned.ok, planned.error
    assert planned.summary.removal is not None
    node = planned.summary.removal.nodes[0]
    assert node.delete is not None and node.delete.reason == "its etcd member is removed with it"
    assert [s.name for s in node.uninstall][0] == "run /usr/local/bin/k3s-uninstall.sh"
    assert isinstance(remove(three, "s2", "s3", dry_run=True).error, RemovalRefused)


def test_with_three_servers_one_not_ready_removing_another_loses_quorum_and_is_refused() -> None:
    cluster = built(HA)
    cluster.nodes["s2"]["ready"] = False
    outcome = remove(cluster, "s3", dry_run=True)
    assert isinstance(outcome.error, RemovalRefused) and "1 healthy would remain (s1)" in str(outcome.error)


def test_a_drain_blocked_by_a_pdb_times_out_with_the_pdb_named_node_cordoned_nothing_deleted_or_uninstalled() -> None:
    cluster = built()
    cluster.pods = web_pods("worker1", 2) + [
        {
            "metadata": {
                "name": "flannel-x",
                "namespace": "kube-system",
                "labels": {"app": "web"},
                "ownerReferences": [{"kind": "DaemonSet", "controller": True}],
            },
            "spec": {"nodeName": "worker1"},
        }
    ]
    cluster.pdbs = [pdb("web", 0, 4), pdb("other", 0, 1) | {"spec": {"selector": {"matchLabels": {"app": "db"}}}}]
    cluster.drain_blocked.add("worker1")
    outcome = remove(cluster, "worker1", drain_timeout=1)
    error = outcome.error
    assert isinstance(error, DrainBlocked) and error.exit_code == 1
    assert [(b.budget.name, b.budget.disruptions_allowed, b.pods) for b in error.blockers] == [
        ("web", 0, ("default/web-0", "default/web-1"))
    ]
    assert "blocked by PodDisruptionBudget default/web" in str(error) and "left cordoned" in str(error)
    assert cluster.events.count("drain worker1") >= 2  # retried until the deadline
    assert cluster.nodes["worker1"]["unschedulable"] is True
    assert not cluster.remotes["controller"].ran("delete node")
    assert cluster.hosts["worker1"].role == "agent" and "uninstall worker1" not in cluster.events


def test_the_blocked_drain_prints_the_pdb_table_and_exits_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = built()
    cluster.pods = web_pods("worker1", 2)
    cluster.pdbs = [pdb("web", 0, 4)]
    cluster.drain_blocked.add("worker1")
    (tmp_path / "inv.yaml").write_text(BASIC)
    monkeypatch.setattr(actions, "ssh_connector", cluster.connector)
    result = CliRunner().invoke(main, ["remove", "-i", "inv.yaml", "worker1", "--drain-timeout", "1"], env={"COLUMNS": "200"})
    assert result.exit_code == 1
    assert "Drain blocked by PodDisruptionBudgets" in result.stdout
    row = next(line for line in result.stdout.splitlines() if line.strip().startswith("│ web"))
    assert "default" in row and "│ 0" in row and "default/web-0, default/web-1" in row


def test_a_drain_that_pods_allow_goes_through_once_the_pdb_allows_disruptions() -> None:
    cluster = built()
    cluster.pods = web_pods("worker1", 2)
    cluster.pdbs = [pdb("web", 1, 3)]
    outcome = remove(cluster, "worker1")
    assert outcome.ok, outcome.error
    assert cluster.pods == [] and outcome.summary.blockers == ()


def unreachable(cluster: FakeK3sCluster, name: str):  # type: ignore[no-untyped-def]
    def connector(inventory: Inventory, host: Host) -> FakeRemote:
        if host.name == name:
            raise ConnectError(name, "connection timed out")
        return cluster.connector(inventory, host)

    return connector


def test_an_unreachable_host_is_drained_and_deleted_through_the_api_its_uninstall_skipped_and_exit_1() -> None:
    cluster = built()
    outcome = remove(cluster, "worker1", connector=unreachable(cluster, "worker1"))
    assert isinstance(outcome.error, UninstallSkipped) and outcome.error.exit_code == 1
    assert "uninstall skipped on worker1 (unreachable)" in str(outcome.error)
    assert cluster.events == ["cordon worker1", "drain worker1"] and "worker1" not in cluster.nodes
    assert cluster.hosts["worker1"].role == "agent"  # nothing ran there
    assert outcome.summary.unreachable == {"worker1": "worker1: connection timed out"}


def test_an_unreachable_host_with_unreachable_ok_exits_0() -> None:
    cluster = built()
    outcome = remove(cluster, "worker1", unreachable_ok=True, connector=unreachable(cluster, "worker1"))
    assert outcome.ok, outcome.error
    assert "worker1" not in cluster.nodes


def test_plan_and_up_report_nodes_not_in_the_inventory_and_never_delete_them() -> None:
    cluster = built()
    cluster.nodes["stray"] = {"ready": True, "ip": "192.0.2.99", "role": "agent", "version": "v1.31.4+k3s1"}
    planned = actions.plan(cluster.inventory, Options(timeout=3), connector=cluster.connector)
    ran = actions.up(cluster.inventory, Options(timeout=3), connector=cluster.connector)
    for outcome in (planned, ran):
        assert outcome.ok, outcome.error
        assert any(
            "node stray is in the cluster but not in inventory: remove it with `provisioner remove" in w for w in outcome.summary.warnings
        )
    assert "stray" in cluster.nodes and not sent_anywhere(cluster, "delete node")


# --- rolling upgrade ------------------------------------------------------------------------


def upgraded(cluster: FakeK3sCluster, text: str) -> Inventory:
    cluster.inventory = make_inventory(text.replace("v1.31.4+k3s1", NEW))
    return cluster.inventory


def test_a_new_version_rolls_one_host_at_a_time_server_first_each_ready_on_it_before_the_next() -> None:
    cluster = built(THREE_AGENTS)
    inventory = upgraded(cluster, THREE_AGENTS)
    outcome = actions.up(inventory, Options(timeout=3), connector=cluster.connector)
    assert outcome.ok, outcome.error
    per_host = [e for e in cluster.events]
    expected = []
    for name in ("controller", "worker1", "worker2", "worker3"):
        expected += [f"cordon {name}", f"drain {name}", f"install {name} {NEW}", f"uncordon {name}"]
    assert per_host == expected
    assert max(cluster.cordoned_counts) == 1
    assert {n["version"] for n in cluster.nodes.values()} == {NEW}
    assert not any(n.get("unschedulable") for n in cluster.nodes.values())
    assert outcome.summary.upgraded == ("controller", "worker1", "worker2", "worker3")
    cluster.events.clear()
    rerun = actions.up(inventory, Options(timeout=3), connector=cluster.connector)
    assert rerun.ok and cluster.events == [] and rerun.summary.plan is not None and rerun.summary.plan.rollout == ()


def test_agents_roll_in_batches_of_max_unavailable_and_plan_shows_the_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = built(THREE_AGENTS)
    upgraded(cluster, THREE_AGENTS)
    (tmp_path / "inv.yaml").write_text(THREE_AGENTS.replace("v1.31.4+k3s1", NEW))
    monkeypatch.setattr(actions, "ssh_connector", cluster.connector)
    result = CliRunner().invoke(main, ["plan", "-i", "inv.yaml", "--max-unavailable", "2", "-o", "json"])
    assert result.exit_code == 0, result.stderr
    waves = [[h["host"] for h in wave] for wave in json.loads(result.stdout)["rollout"]]
    assert waves == [["controller"], ["worker1", "worker2"], ["worker3"]]
    text = CliRunner().invoke(main, ["plan", "-i", "inv.yaml", "--max-unavailable", "2"]).stdout
    assert "1. controller" in text and "2. worker1, worker2" in text and "3. worker3" in text
    outcome = actions.up(cluster.inventory, Options(timeout=3, max_unavailable=2), connector=cluster.connector)
    assert outcome.ok, outcome.error
    assert max(cluster.cordoned_counts) == 2
    assert cluster.events.index("uncordon controller") < cluster.events.index("cordon worker1")
    assert cluster.events.index("uncordon worker2") < cluster.events.index("cordon worker3")


def test_a_failed_host_stops_the_rollout_left_cordoned_and_named_the_rest_untouched() -> None:
    cluster = built(THREE_AGENTS)
    inventory = upgraded(cluster, THREE_AGENTS)
    cluster.install_fails.add("worker1")
    outcome = actions.up(inventory, Options(timeout=3), connector=cluster.connector)
    error = outcome.error
    assert isinstance(error, RolloutStopped) and error.exit_code == 1
    assert error.host == "worker1" and error.untouched == ["worker2", "worker3"]
    assert "rolling upgrade stopped at worker1" in str(error) and "worker1 is left cordoned" in str(error)
    assert cluster.nodes["worker1"]["unschedulable"] is True
    assert cluster.nodes["controller"]["version"] == NEW
    for name in ("worker2", "worker3"):
        assert cluster.nodes[name]["version"] == "v1.31.4+k3s1" and not cluster.remotes[name].ran("install")
        assert not any(name in e for e in cluster.events)


def test_no_drain_cordons_and_upgrades_without_draining() -> None:
    cluster = built()
    inventory = upgraded(cluster, BASIC)
    outcome = actions.up(inventory, Options(timeout=3, no_drain=True), connector=cluster.connector)
    assert outcome.ok, outcome.error
    assert not any(e.startswith("drain") for e in cluster.events) and "cordon worker1" in cluster.events


def test_a_node_that_does_not_come_back_on_the_new_version_stops_the_rollout() -> None:
    cluster = built()
    inventory = upgraded(cluster, BASIC)
    cluster.never_ready.add("worker1")
    outcome = actions.up(inventory, Options(timeout=1), connector=cluster.connector)
    assert isinstance(outcome.error, RolloutStopped) and outcome.error.host == "worker1"
    assert "node worker1 Ready on v1.32.0+k3s1 did not become ready" in str(outcome.error)
    assert cluster.nodes["worker1"]["unschedulable"] is True and cluster.nodes["worker2"]["version"] != NEW


# --- reset --------------------------------------------------------------------------------------


def test_reset_without_yes_on_a_pipe_is_refused_with_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = built()
    (tmp_path / "inv.yaml").write_text(BASIC)
    monkeypatch.setattr(actions, "ssh_connector", cluster.connector)
    result = CliRunner().invoke(main, ["reset", "-i", "inv.yaml"], input="")
    assert result.exit_code == 2 and "stdin is not a terminal, so pass --yes" in result.stderr
    assert cluster.events == [] and cluster.hosts["worker1"].role == "agent"


def test_reset_confirmed_on_a_terminal_goes_ahead_and_a_no_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = built()
    (tmp_path / "inv.yaml").write_text(BASIC)
    monkeypatch.setattr(actions, "ssh_connector", cluster.connector)
    monkeypatch.setattr("provisioner.cli.stdin_is_terminal", lambda: True)
    monkeypatch.setattr("click.confirm", lambda *a, **k: False)
    refused = CliRunner().invoke(main, ["reset", "-i", "inv.yaml"])
    assert refused.exit_code == 2 and cluster.events == []
    monkeypatch.setattr("click.confirm", lambda *a, **k: True)
    accepted = CliRunner().invoke(main, ["reset", "-i", "inv.yaml"])
    assert accepted.exit_code == 0, accepted.stderr
    assert cluster.events == ["uninstall worker1", "uninstall worker2", "uninstall controller"] or cluster.events == [
        "uninstall worker2",
        "uninstall worker1",
        "uninstall controller",
    ]


def test_reset_uninstalls_agents_before_servers_and_takes_the_cluster_out_of_the_kubeconfigs(tmp_path: Path) -> None:
    cluster = built()
    written = tmp_path / "homelab.kubeconfig"
    assert written.exists()
    merged = tmp_path / "kube" / "config"
    merged.parent.mkdir()
    other = {"name": "other", "cluster": {"server": "https://192.0.2.200:6443"}}
    config = kubeconfig.parse(written.read_text())
    config["clusters"].append(other)
    config["contexts"].append({"name": "other", "context": {"cluster": "other", "user": "homelab"}})
    merged.write_text(kubeconfig.dump(config))
    outcome = actions.reset(cluster.inventory, Options(timeout=3), connector=cluster.connector)
    assert outcome.ok, outcome.error
    assert cluster.events[-1] == "uninstall controller" and sorted(cluster.events[:2]) == ["uninstall worker1", "uninstall worker2"]
    assert all(h.role is None for h in cluster.hosts.values())
    cleaned = dict(outcome.summary.kubeconfig_cleaned)
    assert set(cleaned) == {Path("homelab.kubeconfig"), merged}
    assert all(b is not None and b.exists() for b in cleaned.values())
    after = kubeconfig.parse(merged.read_text())
    assert [c["name"] for c in after["contexts"]] == ["other"]
    assert [c["name"] for c in after["clusters"]] == ["other"]
    assert [u["name"] for u in after["users"]] == ["homelab"]  # still used by the other context
    assert kubeconfig.parse(written.read_text())["contexts"] == []
    again = actions.up(cluster.inventory, Options(timeout=3), connector=cluster.connector)
    assert again.ok, again.error
    assert {o.action for o in again.summary.outcomes.values()} == {"install", "join"}


def test_kubeconfig_entries_of_another_server_under_the_same_name_are_kept() -> None:
    data = {
        "clusters": [{"name": "homelab", "cluster": {"server": "https://10.0.0.1:6443"}}],
        "contexts": [{"name": "homelab", "context": {"cluster": "homelab", "user": "homelab"}}],
        "users": [{"name": "homelab", "user": {}}],
        "current-context": "homelab",
    }
    assert kubeconfig.without_cluster(data, "homelab", "https://192.0.2.10:6443") is None
    gone = kubeconfig.without_cluster(data, "homelab", "https://10.0.0.1:6443")
    assert gone == {"clusters": [], "contexts": [], "users": [], "current-context": ""}


# --- kubeadm ------------------------------------------------------------------------------------


def test_kubeadm_remove_of_a_worker_drains_deletes_then_resets_cleans_and_releases_the_hold_and_it_can_rejoin() -> None:
    from tests.unit.fakes import KUBEADM_INVENTORY, FakeKubeadmCluster

    cluster = FakeKubeadmCluster(make_inventory(KUBEADM_INVENTORY))
    assert actions.up(cluster.inventory, Options(timeout=3), connector=cluster.connector).ok
    cluster.events.clear()
    outcome = actions.remove(cluster.inventory, Options(targets=("w1",), timeout=3), connector=cluster.connector)
    assert outcome.ok, outcome.error
    assert cluster.events == [
        "cordon w1",
        "drain w1",
        "delete node w1",
        "kubeadm reset w1",
        "cni cleanup w1",
        "iptables cleanup w1",
        "flags removed w1",
        "unhold w1",
    ]
    assert "w1" not in cluster.nodes and not cluster.state["w1"].kubelet_conf
    again = actions.up(cluster.inventory, Options(timeout=3), connector=cluster.connector)
    assert again.ok, again.error
    assert again.summary.outcomes["w1"].action == "join" and cluster.nodes["w1"]
    refused = actions.remove(cluster.inventory, Options(targets=("cp1",), timeout=3), connector=cluster.connector)
    assert isinstance(refused.error, RemovalRefused) and "last server" in str(refused.error)
