"""The `up` action on a simulated k3s cluster: which commands reach which host, and when."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from provisioner import actions, kubeconfig, runlog
from provisioner.distros import k3s
from provisioner.errors import HostsFailed, HostValidationError, NotReadyError
from provisioner.phases import Options
from tests.unit.conftest import BASIC, make_inventory
from tests.unit.fakes import AGENT_TOKEN_PREFIX, TOKEN, FakeK3sCluster

INSTALLER = "k3s-install.sh"


@pytest.fixture(autouse=True)
def _no_network_check(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The simulated API has no HTTPS endpoint: the final check from this machine is stubbed,
    and kubeconfigs are written in a temporary folder."""
    monkeypatch.setattr(kubeconfig, "check", lambda config, timeout=10: kubeconfig.Check("ok", "simulated"))
    monkeypatch.chdir(tmp_path)


def up(cluster: FakeK3sCluster, inventory=None, **options: object) -> actions.Outcome:  # type: ignore[no-untyped-def]
    options.setdefault("timeout", 3)
    return actions.up(inventory or cluster.inventory, Options(**options), connector=cluster.connector)  # type: ignore[arg-type]


def test_fresh_cluster_installs_the_server_then_joins_agents_and_writes_the_kubeconfig(tmp_path: Path) -> None:
    cluster = FakeK3sCluster(make_inventory())
    outcome = up(cluster)
    assert outcome.ok, outcome.error
    ctrl = cluster.remotes["controller"]
    assert ctrl.ran(INSTALLER) and "INSTALL_K3S_EXEC=server" in ctrl.ran(INSTALLER)[0]
    for agent in ("worker1", "worker2"):
        remote = cluster.remotes[agent]
        assert "INSTALL_K3S_EXEC=agent" in remote.ran(INSTALLER)[0]
        assert remote.uploads == ["/etc/rancher/k3s/config.yaml"]
        assert remote.modes["/etc/rancher/k3s/config.yaml"] == 0o600
        assert AGENT_TOKEN_PREFIX.encode() in remote.files["/etc/rancher/k3s/config.yaml"]
        assert TOKEN.encode() not in remote.files["/etc/rancher/k3s/config.yaml"]  # agents never hold the server token
    assert {n: o.result for n, o in outcome.summary.outcomes.items()} == dict.fromkeys(("controller", "worker1", "worker2"), "changed")
    written = tmp_path / "homelab.kubeconfig"
    config = kubeconfig.parse(written.read_text())
    assert config["clusters"][0]["cluster"]["server"] == "https://192.0.2.10:6443"
    assert config["current-context"] == "homelab"
    assert [n.name for n in outcome.summary.nodes or []] == ["controller", "worker1", "worker2"]


def test_the_join_token_never_appears_in_any_command_line() -> None:
    cluster = FakeK3sCluster(make_inventory())
    assert up(cluster).ok
    secret_part = TOKEN.split("::server:")[1]
    for command in cluster.all_commands():
        assert TOKEN not in command and secret_part not in command


def test_the_token_is_masked_in_the_run_log_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file ``runlog`` writes, read back as it is: the agents' installer here prints its config
    (with the token) on stderr, which the log records, so only the redaction keeps it out."""
    cluster = FakeK3sCluster(make_inventory())
    install = cluster._install

    def chatty_install(sim, remote, command):  # type: ignore[no-untyped-def]
        code, out, err = install(sim, remote, command)
        return code, out, err + "[DEBUG] config: " + remote.files[k3s.CONFIG].decode().replace("\n", " ")

    monkeypatch.setattr(cluster, "_install", chatty_install)
    path = runlog.start("up", tmp_path / "run.log")
    try:
        assert up(cluster).ok
    finally:
        runlog.stop()
    text = path.read_text()
    assert "node-token" in text
    logged = [line for line in text.splitlines() if "[DEBUG] config:" in line]
    with_token = [line for line in logged if "token:" in line]
    assert len(logged) == 3 and len(with_token) >= 2 and all('token: "***"' in line for line in with_token), logged
    assert TOKEN not in text and TOKEN.split("::server:")[1] not in text


def test_unchanged_rerun_installs_nothing_restarts_nothing_and_uploads_nothing() -> None:
    cluster = FakeK3sCluster(make_inventory())
    assert up(cluster).ok
    before = {n: (h.installs, h.restarts) for n, h in cluster.hosts.items()}
    outcome = up(cluster)
    assert outcome.ok, outcome.error
    assert {n: (h.installs, h.restarts) for n, h in cluster.hosts.items()} == before
    for name, remote in cluster.remotes.items():
        assert remote.uploads == [], name
        assert not remote.ran(INSTALLER)
    assert len(cluster.remotes["worker1"].commands) == 1  # the fact script only
    assert {o.result for o in outcome.summary.outcomes.values()} == {"unchanged"}


def test_a_new_agent_in_the_inventory_is_the_only_host_touched() -> None:
    cluster = FakeK3sCluster(make_inventory())
    assert up(cluster).ok
    grown = make_inventory(BASIC + "  - {name: worker3, address: 192.0.2.13, role: agent}\n")
    cluster.inventory = grown
    cluster.hosts.update(FakeK3sCluster(grown).hosts | {n: h for n, h in cluster.hosts.items()})
    outcome = up(cluster, grown)
    assert outcome.ok, outcome.error
    touched = {n for n, r in cluster.remotes.items() if r.ran(INSTALLER) or r.uploads or r.ran("restart")}
    assert touched == {"worker3"}
    assert outcome.summary.outcomes["worker3"].action == "join"
    assert sorted(n.name for n in outcome.summary.nodes or []) == ["controller", "worker1", "worker2", "worker3"]


def test_a_stopped_agent_is_restarted_and_only_it() -> None:
    cluster = FakeK3sCluster(make_inventory())
    assert up(cluster).ok
    cluster.stop("worker2")
    outcome = up(cluster)
    assert outcome.ok, outcome.error
    assert outcome.summary.outcomes["worker2"].action == "restart"
    assert cluster.hosts["worker2"].restarts == 1
    assert cluster.hosts["worker1"].restarts == 0 and cluster.hosts["controller"].restarts == 0


def test_a_stale_node_object_is_deleted_before_the_host_joins() -> None:
    cluster = FakeK3sCluster(make_inventory())
    assert up(cluster).ok
    # worker2 is reinstalled from scratch: k3s gone, but its Node object is still in the cluster.
    cluster.hosts["worker2"].role = None
    cluster.hosts["worker2"].active = False
    cluster.remotes["worker2"].files.clear()
    cluster.nodes["worker2"]["ready"] = False
    outcome = up(cluster)
    assert outcome.ok, outcome.error
    ctrl = cluster.remotes["controller"]
    deletes = ctrl.ran(r"delete node worker2")
    assert len(deletes) == 1
    worker2_install = cluster.remotes["worker2"].ran(INSTALLER)
    assert worker2_install
    assert outcome.summary.outcomes["worker2"].action == "join"


def test_nodes_that_never_become_ready_fail_the_run_with_their_conditions() -> None:
    cluster = FakeK3sCluster(make_inventory(), never_ready={"worker2"})
    outcome = up(cluster, timeout=1)
    assert isinstance(outcome.error, NotReadyError)
    assert outcome.error.exit_code != 0
    rows = outcome.error.not_ready
    assert [r["name"] for r in rows] == ["worker2"]  # type: ignore[index]
    assert rows[0]["reason"] == "NodeStatusUnknown"  # type: ignore[index]


def test_a_host_without_systemd_stops_the_run_before_anything_changes() -> None:
    cluster = FakeK3sCluster(make_inventory())
    cluster.hosts["worker1"].systemd = False
    outcome = up(cluster)
    assert isinstance(outcome.error, HostValidationError)
    assert outcome.error.lines() == ["worker1: systemd is not running; k3s is installed as a systemd service"]
    assert not any(r.ran(INSTALLER) or r.uploads for r in cluster.remotes.values())


def test_sudo_that_does_not_give_root_is_refused() -> None:
    cluster = FakeK3sCluster(make_inventory())
    cluster.hosts["worker2"].sudo_user = "ubuntu"
    outcome = up(cluster)
    assert isinstance(outcome.error, HostValidationError)
    assert "worker2: commands run with sudo ran as 'ubuntu', not root" in outcome.error.lines()


def test_a_host_running_the_other_role_is_refused() -> None:
    cluster = FakeK3sCluster(make_inventory())
    cluster.hosts["worker1"].role = "server"
    cluster.hosts["worker1"].version = "v1.31.4+k3s1"
    outcome = up(cluster)
    assert isinstance(outcome.error, HostValidationError)
    assert "worker1: runs k3s as server but the inventory says agent" in outcome.error.lines()[0]


def test_an_unreachable_host_stops_the_run_before_anything_changes() -> None:
    from provisioner.errors import ConnectError

    cluster = FakeK3sCluster(make_inventory())

    def connector(inventory, host):  # type: ignore[no-untyped-def]
        if host.name == "worker2":
            raise ConnectError(host.name, "authentication failed for root@192.0.2.12:22 with key /k")
        return cluster.connector(inventory, host)

    outcome = actions.up(cluster.inventory, Options(timeout=3), connector=connector)
    assert isinstance(outcome.error, HostsFailed)
    assert outcome.error.lines() == ["worker2: authentication failed for root@192.0.2.12:22 with key /k"]
    assert not any(r.ran(INSTALLER) or r.uploads for r in cluster.remotes.values())


def test_an_agent_that_fails_to_install_is_reported_while_the_others_join() -> None:
    cluster = FakeK3sCluster(make_inventory())
    original = cluster.connector

    def connector(inventory, host):  # type: ignore[no-untyped-def]
        remote = original(inventory, host)
        if host.name == "worker1":
            remote.on(INSTALLER, exit_code=1, stderr="[ERROR] Failed to start k3s-agent\n")
        return remote

    outcome = actions.up(cluster.inventory, Options(timeout=3), connector=connector)
    assert isinstance(outcome.error, HostsFailed)
    assert list(outcome.error.failures) == ["worker1"]
    assert "journalctl -u k3s-agent" in outcome.error.lines()[0]
    assert outcome.summary.outcomes["worker2"].result == "changed"
    assert "worker2" in [n.name for n in outcome.summary.nodes or []]


def test_plan_changes_nothing_and_reports_install_and_join() -> None:
    cluster = FakeK3sCluster(make_inventory())
    outcome = actions.plan(cluster.inventory, connector=cluster.connector)
    assert outcome.ok
    assert {n: p.action.value for n, p in outcome.summary.plan.hosts.items()} == {
        "controller": "install",
        "worker1": "join",
        "worker2": "join",
    }
    assert not any(r.ran(INSTALLER) or r.uploads for r in cluster.remotes.values())
    assert all(len(r.commands) == 1 for r in cluster.remotes.values())


def test_plan_on_a_converged_cluster_has_nothing_to_do() -> None:
    cluster = FakeK3sCluster(make_inventory())
    assert up(cluster).ok
    outcome = actions.plan(cluster.inventory, connector=cluster.connector)
    assert {p.action.value for p in outcome.summary.plan.hosts.values()} == {"nothing"}


def test_status_lists_nodes_from_the_first_server_only() -> None:
    cluster = FakeK3sCluster(make_inventory())
    assert up(cluster).ok
    cluster.remotes.clear()
    outcome = actions.status(cluster.inventory, connector=cluster.connector)
    assert outcome.ok
    assert list(cluster.remotes) == ["controller"]
    assert [(n.name, n.is_ready) for n in outcome.summary.nodes or []] == [("controller", True), ("worker1", True), ("worker2", True)]


def test_merge_option_writes_into_the_given_kubeconfig(tmp_path: Path) -> None:
    cluster = FakeK3sCluster(make_inventory())
    target = tmp_path / "kube" / "config"
    outcome = up(cluster, merge=True, kubeconfig_out=target, context_name="home")
    assert outcome.ok, outcome.error
    config = kubeconfig.parse(target.read_text())
    assert config["current-context"] == "home"
    assert not (tmp_path / "homelab.kubeconfig").exists()


def test_outcome_json_is_serialisable() -> None:
    from provisioner import report

    cluster = FakeK3sCluster(make_inventory())
    outcome = up(cluster)
    data = report.up_json(outcome.summary)
    assert json.loads(json.dumps(data))["hosts"][0]["name"] == "controller"


def test_a_changed_host_setting_reconfigures_that_host_only() -> None:
    cluster = FakeK3sCluster(make_inventory())
    assert up(cluster).ok
    changed = make_inventory(
        BASIC.replace(
            "{name: worker1, address: 192.0.2.11, role: agent}", "{name: worker1, address: 192.0.2.11, role: agent, flannel_iface: eth9}"
        )
    )
    cluster.inventory = changed
    outcome = up(cluster, changed)
    assert outcome.ok, outcome.error
    assert {n: o.action for n, o in outcome.summary.outcomes.items()} == {
        "controller": "nothing",
        "worker1": "reconfigure",
        "worker2": "nothing",
    }
    assert b'flannel-iface: "eth9"' in cluster.remotes["worker1"].files["/etc/rancher/k3s/config.yaml"]
    assert cluster.hosts["worker1"].restarts == 1
    assert not cluster.remotes["worker1"].ran(INSTALLER)
    assert cluster.hosts["worker2"].restarts == 0 and cluster.hosts["controller"].restarts == 0
