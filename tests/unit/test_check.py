"""`provisioner check` on simulated clusters (strict FakeRemotes): each check passing and failing,
the workload path and its cleanup, `up --check`, JSON output and exit codes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from provisioner import actions, kubeconfig
from provisioner.checks import CheckOptions, CheckResult, ChecksFailed
from provisioner.cli import main
from provisioner.phases import Options, check_workload
from tests.unit.checkfakes import GIB_KIB, FakeCheckedCluster, HostState, running_k3s, running_kubeadm
from tests.unit.conftest import BASIC, make_inventory
from tests.unit.fakes import ADMIN_KUBECONFIG, KUBEADM_INVENTORY

READ_ONLY = re.compile(r"apply|scale|delete|create|cordon|drain|patch|label|annotate|systemctl|rm -f")


@pytest.fixture(autouse=True)
def _here(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The simulated API has no HTTPS endpoint: the check from this machine is stubbed; the
    written kubeconfig is in a temporary folder; the workload polls without sleeping."""
    monkeypatch.setattr(kubeconfig, "check", lambda config, timeout=10: kubeconfig.Check("ok", "simulated, TLS verified"))
    monkeypatch.setattr(check_workload, "POLL_SECONDS", 0)
    monkeypatch.chdir(tmp_path)


def write_kubeconfig(name: str) -> Path:
    config = kubeconfig.rewrite(ADMIN_KUBECONFIG, cluster_name=name, server="https://192.0.2.10:6443")
    path = Path(f"{name}.kubeconfig")
    kubeconfig.write_file(path, config)
    return path


def k3s(**changes: object) -> FakeCheckedCluster:
    write_kubeconfig("homelab")
    return FakeCheckedCluster(running_k3s(make_inventory()), **changes)  # type: ignore[arg-type]


def kubeadm(**changes: object) -> FakeCheckedCluster:
    write_kubeconfig("kube")
    return FakeCheckedCluster(running_kubeadm(make_inventory(KUBEADM_INVENTORY)), **changes)  # type: ignore[arg-type]


def run_check(sim: FakeCheckedCluster, **check: object) -> actions.Outcome:
    timeout = check.pop("timeout", 5)
    options = Options(timeout=timeout, check=CheckOptions(**check))  # type: ignore[arg-type]
    return actions.check(sim.inventory, options, connector=sim.connector)


def rows(outcome: actions.Outcome) -> dict[str, CheckResult]:
    return {row.name: row for row in outcome.summary.checks}


def failed_names(outcome: actions.Outcome) -> list[str]:
    return [row.name for row in outcome.summary.checks if not row.ok]


# --- a healthy cluster --------------------------------------------------------------------------


def test_check_passes_on_a_healthy_k3s_cluster_with_a_row_per_check_and_changes_nothing() -> None:
    sim = k3s()
    outcome = run_check(sim)
    assert outcome.ok, outcome.error
    assert list(rows(outcome)) == [
        "nodes registered",
        "nodes Ready",
        "node versions",
        "nodes schedulable",
        "API through the kubeconfig",
        "kube-system pods",
        "hosts answer over SSH",
        "clocks",
        "headroom controller",
        "headroom worker1",
        "headroom worker2",
    ]
    assert rows(outcome)["kube-system pods"].detail == "none listed"
    assert rows(outcome)["API through the kubeconfig"].detail == "simulated, TLS verified"
    for remote in sim.remotes.values():
        assert remote.unexpected == []
        assert remote.uploads == []
        assert not [c for c in remote.ran(".") if READ_ONLY.search(c)], remote.commands


def test_check_asks_kubectl_on_the_first_server_only_and_reads_health_once_per_host() -> None:
    sim = k3s()
    assert run_check(sim).ok
    for name, remote in sim.remotes.items():
        assert len(remote.ran(r"clock=\$\(date")) == 1
        assert bool(remote.ran("kubectl")) == (name == "controller")


def test_check_passes_on_a_kubeadm_cluster_with_flannel_ready_on_every_node() -> None:
    sim = kubeadm(flannel_status={"desiredNumberScheduled": 2, "numberReady": 2})
    outcome = run_check(sim)
    assert outcome.ok, outcome.error
    assert rows(outcome)["DaemonSet kube-flannel/kube-flannel-ds"].detail == "2/2 pods ready"
    assert rows(outcome)["node versions"].ok  # "1.31" in the inventory, v1.31.4 on the nodes


# --- nodes ----------------------------------------------------------------------------------------


def test_a_stopped_agent_fails_nodes_ready_naming_it_and_the_exit_is_a_checks_failure() -> None:
    sim = k3s()
    sim.cluster.stop("worker2")  # type: ignore[union-attr]
    outcome = run_check(sim)
    assert isinstance(outcome.error, ChecksFailed) and outcome.error.exit_code == 1
    assert failed_names(outcome) == ["nodes Ready"]
    detail = rows(outcome)["nodes Ready"].detail
    assert detail.startswith("worker2 NotReady") and "Kubelet stopped posting node status" in detail
    assert "worker1" not in detail
    assert outcome.error.lines() == [f"check failed: nodes Ready: {detail}"]


def test_a_host_without_a_node_object_fails_nodes_registered() -> None:
    sim = k3s()
    del sim.cluster.nodes["worker1"]
    outcome = run_check(sim)
    assert failed_names(outcome) == ["nodes registered"]
    assert rows(outcome)["nodes registered"].detail == "no Node object for worker1"


def test_a_k3s_node_on_another_version_than_the_pinned_one_fails_node_versions() -> None:
    sim = k3s(versions={"worker1": "v1.30.8+k3s1"})
    outcome = run_check(sim)
    assert failed_names(outcome) == ["node versions"]
    assert rows(outcome)["node versions"].detail == "worker1: runs v1.30.8+k3s1, the inventory wants v1.31.4+k3s1"


def test_a_k3s_cluster_following_a_channel_is_not_judged_on_versions() -> None:
    write_kubeconfig("homelab")
    sim = FakeCheckedCluster(
        running_k3s(make_inventory(BASIC.replace("version: v1.31.4+k3s1", "channel: stable"))), versions={"worker1": "v1.30.8+k3s1"}
    )
    outcome = run_check(sim)
    assert outcome.ok, outcome.error
    assert "v1.30.8+k3s1" in rows(outcome)["node versions"].detail


def test_a_kubeadm_node_on_another_minor_fails_node_versions_and_a_patch_pin_is_exact() -> None:
    sim = kubeadm(versions={"w1": "v1.30.9"})
    outcome = run_check(sim)
    assert failed_names(outcome) == ["node versions"]
    assert rows(outcome)["node versions"].detail == "w1: runs v1.30.9, the inventory wants 1.31"

    write_kubeconfig("kube")
    pinned = FakeCheckedCluster(running_kubeadm(make_inventory(KUBEADM_INVENTORY.replace('"1.31"', '"1.31.5"'))))
    outcome = run_check(pinned)
    assert "cp1: runs v1.31.4, the inventory wants 1.31.5" in rows(outcome)["node versions"].detail


def test_a_cordoned_node_fails_unless_it_is_allowed() -> None:
    sim = k3s(cordoned={"worker1"})
    outcome = run_check(sim)
    assert failed_names(outcome) == ["nodes schedulable"]
    assert "cordoned (spec.unschedulable): worker1" in rows(outcome)["nodes schedulable"].detail

    outcome = run_check(sim, allow_cordoned=("worker1",))
    assert outcome.ok, outcome.error
    assert rows(outcome)["nodes schedulable"].detail == "cordoned as allowed: worker1"


# --- API and system pods ------------------------------------------------------------------------


def test_an_api_that_fails_tls_verification_through_the_kubeconfig_fails_the_api_check(monkeypatch: pytest.MonkeyPatch) -> None:
    detail = "TLS verification of https://192.0.2.10:6443 failed: IP address mismatch; add 192.0.2.10 to the server's tls-san"
    monkeypatch.setattr(kubeconfig, "check", lambda config, timeout=10: kubeconfig.Check("error", detail))
    outcome = run_check(k3s())
    assert failed_names(outcome) == ["API through the kubeconfig"]
    assert rows(outcome)["API through the kubeconfig"].detail == detail
    assert "nodes Ready" in rows(outcome)  # the other checks still ran


def test_the_api_check_uses_the_clusters_context_of_the_written_kubeconfig(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[object] = []
    monkeypatch.setattr(kubeconfig, "check", lambda config, timeout=10: seen.append(config) or kubeconfig.Check("ok", "fine"))
    assert run_check(k3s()).ok
    (config,) = seen
    assert config["current-context"] == "homelab"  # type: ignore[index]
    assert config["clusters"][0]["cluster"]["server"] == "https://192.0.2.10:6443"  # type: ignore[index]


def test_a_missing_kubeconfig_fails_the_api_check_naming_the_file() -> None:
    sim = k3s()
    Path("homelab.kubeconfig").unlink()
    outcome = run_check(sim)
    assert failed_names(outcome) == ["API through the kubeconfig"]
    assert "cannot read the kubeconfig homelab.kubeconfig" in rows(outcome)["API through the kubeconfig"].detail


def test_a_kubeconfig_without_the_clusters_context_fails_the_api_check(tmp_path: Path) -> None:
    sim = k3s()
    other = tmp_path / "other.kubeconfig"
    kubeconfig.write_file(other, kubeconfig.rewrite(ADMIN_KUBECONFIG, cluster_name="elsewhere", server="https://192.0.2.99:6443"))
    outcome = run_check(sim, kubeconfig=other)
    assert rows(outcome)["API through the kubeconfig"].detail == f"{other}: no context named 'homelab'"


def test_a_kube_system_pod_not_running_fails_naming_it_and_its_node() -> None:
    pods = [
        {"metadata": {"name": "coredns-1"}, "spec": {"nodeName": "controller"}, "status": {"phase": "Running"}},
        {"metadata": {"name": "helm-install-traefik-x"}, "spec": {"nodeName": "worker1"}, "status": {"phase": "Succeeded"}},
        {"metadata": {"name": "metrics-server-2"}, "spec": {"nodeName": "worker2"}, "status": {"phase": "Pending"}},
    ]
    outcome = run_check(k3s(system_pods=pods))
    assert failed_names(outcome) == ["kube-system pods"]
    assert rows(outcome)["kube-system pods"].detail == "1 of 3 not Running: metrics-server-2 Pending (worker2)"
    outcome = run_check(k3s(system_pods=pods[:2]))
    assert outcome.ok and rows(outcome)["kube-system pods"].detail == "2 Running or Succeeded"


def test_flannel_not_ready_on_every_node_fails_the_daemonset_check() -> None:
    outcome = run_check(kubeadm(flannel_status={"desiredNumberScheduled": 2, "numberReady": 1}))
    assert failed_names(outcome) == ["DaemonSet kube-flannel/kube-flannel-ds"]
    assert rows(outcome)["DaemonSet kube-flannel/kube-flannel-ds"].detail == "1/2 pods ready"


def test_a_missing_flannel_daemonset_fails_with_the_apis_answer() -> None:
    sim = kubeadm()
    sim.cluster.flannel = None  # type: ignore[union-attr]
    outcome = run_check(sim)
    assert "DaemonSet kube-flannel/kube-flannel-ds" in failed_names(outcome)
    assert "not found" in rows(outcome)["DaemonSet kube-flannel/kube-flannel-ds"].detail


# --- hosts ------------------------------------------------------------------------------------------


def test_a_host_whose_clock_is_off_by_more_than_the_bound_fails_the_clock_check_naming_it() -> None:
    sim = k3s()
    sim.hosts["worker2"] = HostState(clock_offset=5.0)
    outcome = run_check(sim)
    assert failed_names(outcome) == ["clocks"]
    detail = rows(outcome)["clocks"].detail
    assert re.match(r"worker2 is 5\.\d\d s \(± 0\.\d\d s\) ahead of (controller|worker1); the bound is 2 s", detail), detail


def test_clocks_within_the_bound_pass() -> None:
    sim = k3s()
    sim.hosts.setdefault("worker1", HostState()).clock_offset = 1.0
    outcome = run_check(sim)
    assert outcome.ok, outcome.error
    assert rows(outcome)["clocks"].detail.startswith("within 2 s of each other")


def test_low_disk_space_fails_headroom_with_the_numbers() -> None:
    sim = k3s()
    state = sim.hosts.setdefault("worker1", HostState())
    state.disks = {"/": (100 * GIB_KIB, 60 * GIB_KIB, "/"), "/var/lib": (50 * GIB_KIB, 2 * GIB_KIB, "/var/lib")}
    outcome = run_check(sim)
    assert failed_names(outcome) == ["headroom worker1"]
    assert rows(outcome)["headroom worker1"].detail == "below 10%: /var/lib 4% free (2.0 of 50.0 GiB)"
    assert rows(outcome)["headroom worker2"].detail == (
        "/ 60% free (60.0 of 100.0 GiB); /var/lib on /'s file system; memory 75% available (6.0 of 8.0 GiB)"
    )


def test_low_memory_fails_headroom_with_the_numbers() -> None:
    sim = k3s()
    state = sim.hosts.setdefault("controller", HostState())
    state.mem_available_kib = GIB_KIB // 2
    outcome = run_check(sim)
    assert failed_names(outcome) == ["headroom controller"]
    assert rows(outcome)["headroom controller"].detail == "below 10%: memory 6% available (0.5 of 8.0 GiB)"


def test_an_unreachable_host_fails_the_ssh_check_and_the_others_are_still_checked() -> None:
    sim = k3s()
    connect = sim.connector

    def flaky(inventory, host):  # type: ignore[no-untyped-def]
        if host.name == "worker2":
            from provisioner.errors import ConnectError

            raise ConnectError("worker2", "connection refused")
        return connect(inventory, host)

    options = Options(timeout=5, check=CheckOptions())
    outcome = actions.check(sim.inventory, options, connector=flaky)
    assert "hosts answer over SSH" in failed_names(outcome)
    assert "worker2" in rows(outcome)["hosts answer over SSH"].detail
    assert rows(outcome)["nodes Ready"].ok and "headroom worker1" in rows(outcome)


# --- the workload ---------------------------------------------------------------------------------


def test_workload_creates_scales_waits_checks_the_spread_and_deletes_the_namespace() -> None:
    sim = k3s()
    outcome = run_check(sim, workload=True)
    assert outcome.ok, outcome.error
    w = sim.workload
    assert w.events[:2] == ["apply", "scale 4"]
    assert w.events[-2:] == ["get pods", "delete namespace"]
    assert set(w.events[2:-2]) == {"get deployment"} and w.polls == 2
    assert re.fullmatch(r"provisioner-check-[0-9a-f]{6}", w.namespace or "")
    assert w.deleted == [w.namespace] and w.detached_deletes == []
    assert w.image == "nginx:1.27"
    deployment = w.manifest["items"][1]  # type: ignore[index]
    assert deployment["spec"]["replicas"] == 2 and deployment["metadata"]["namespace"] == w.namespace
    server = sim.remotes["controller"]
    assert server.modes[f"/tmp/{w.namespace}.json"] == 0o600
    assert f"/tmp/{w.namespace}.json" not in server.files  # removed after apply
    assert rows(outcome)["workload nginx 2 → 4"].ok
    assert rows(outcome)["workload spread"].detail == "3 nodes: controller (2), worker1 (1), worker2 (1)"
    assert rows(outcome)["workload namespace removed"].detail == w.namespace
    for name in ("worker1", "worker2"):
        assert not sim.remotes[name].ran("kubectl")


def test_workload_uses_the_image_given_for_air_gapped_clusters() -> None:
    sim = k3s()
    assert run_check(sim, workload=True, image="registry.local:5000/library/nginx:1.27").ok
    assert sim.workload.image == "registry.local:5000/library/nginx:1.27"


def test_workload_that_never_gets_4_available_replicas_fails_after_the_timeout_and_deletes_the_namespace() -> None:
    sim = k3s()
    sim.workload.stuck_at = 3
    outcome = run_check(sim, workload=True, timeout=1)
    assert failed_names(outcome) == ["workload nginx 2 → 4"]
    assert rows(outcome)["workload nginx 2 → 4"].detail.startswith("3/4 replicas available (3 ready) after 1s")
    assert sim.workload.deleted == [sim.workload.namespace]
    assert "workload spread" not in rows(outcome)


def test_workload_pods_all_on_one_node_fail_the_spread_when_two_nodes_are_schedulable() -> None:
    sim = k3s()
    sim.workload.placement = ["worker1"]
    outcome = run_check(sim, workload=True)
    assert failed_names(outcome) == ["workload spread"]
    assert rows(outcome)["workload spread"].detail == "the pods run on 1 node(s), at least 2 wanted: worker1 (4)"
    assert sim.workload.deleted == [sim.workload.namespace]


def test_workload_on_one_schedulable_worker_needs_only_that_node() -> None:
    sim = kubeadm(tainted={"cp1": "NoSchedule"})
    sim.workload.placement = ["w1"]
    outcome = run_check(sim, workload=True)
    assert outcome.ok, outcome.error
    assert rows(outcome)["workload spread"].detail == "1 nodes: w1 (4)"
    assert sim.remotes["cp1"].ran(r"kubectl --kubeconfig /etc/kubernetes/admin.conf apply -f /tmp/provisioner-check-")


def test_workload_whose_apply_fails_is_a_failed_check_and_the_namespace_is_still_deleted() -> None:
    sim = k3s()
    sim.workload.apply_error = "Error from server (Forbidden): namespaces is forbidden"
    outcome = run_check(sim, workload=True)
    assert failed_names(outcome) == ["workload"]
    assert "Forbidden" in rows(outcome)["workload"].detail
    (deleted,) = sim.workload.deleted
    assert deleted.startswith("provisioner-check-")
    assert rows(outcome)["workload namespace removed"].ok


def test_workload_interrupted_by_ctrl_c_starts_the_namespace_removal_detached_and_ends() -> None:
    sim = k3s()
    sim.workload.interrupt_on_poll = True
    with pytest.raises(KeyboardInterrupt):
        run_check(sim, workload=True)
    w = sim.workload
    assert w.detached_deletes == [w.namespace] and w.deleted == []
    (command,) = sim.remotes["controller"].ran("setsid")
    assert command.startswith("setsid -f sh -c ") and "timeout 120" in command
    assert sim.remotes["controller"].closed  # the sessions are closed on the way out


def test_workload_is_not_run_without_the_flag() -> None:
    sim = k3s()
    outcome = run_check(sim)
    assert not [n for n in rows(outcome) if n.startswith("workload")]
    assert sim.workload.events == []


# --- up --check -----------------------------------------------------------------------------------


def test_up_with_check_runs_the_checks_after_the_ready_wait() -> None:
    from tests.unit.fakes import FakeK3sCluster

    sim = FakeCheckedCluster(FakeK3sCluster(make_inventory()))
    outcome = actions.up(sim.inventory, Options(timeout=3, check=CheckOptions(workload=True)), connector=sim.connector)
    assert outcome.ok, outcome.error
    names = list(rows(outcome))
    assert names[0] == "nodes registered" and "workload spread" in names
    controller = sim.remotes["controller"]
    install = next(i for i, (_, c) in enumerate(controller.commands) if "k3s-install.sh" in c)
    health = next(i for i, (_, c) in enumerate(controller.commands) if "clock=$(date" in c)
    assert install < health


def test_up_with_check_fails_when_a_check_fails() -> None:
    from tests.unit.fakes import FakeK3sCluster

    sim = FakeCheckedCluster(FakeK3sCluster(make_inventory()), cordoned={"worker1"})
    outcome = actions.up(sim.inventory, Options(timeout=3, check=CheckOptions()), connector=sim.connector)
    assert isinstance(outcome.error, ChecksFailed)
    assert [f.name for f in outcome.error.failures] == ["nodes schedulable"]


# --- the command line -------------------------------------------------------------------------------


@pytest.fixture
def cli_cluster(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeCheckedCluster:
    (tmp_path / "inv.yaml").write_text(BASIC)
    sim = k3s()
    monkeypatch.setattr(actions, "ssh_connector", sim.connector)
    return sim


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_cli_check_json_lists_every_check_and_exits_0(cli_cluster: FakeCheckedCluster) -> None:
    code, out, _ = invoke("check", "-i", "inv.yaml", "--output", "json")
    assert code == 0
    data = json.loads(out)
    assert data["ok"] is True and data["exit_code"] == 0 and data["failed"] == []
    assert data["checks"][0] == {"name": "nodes registered", "status": "ok", "ok": True, "detail": "3/3 inventory nodes have a Node object"}
    assert {c["name"] for c in data["checks"]} >= {"clocks", "headroom worker2", "API through the kubeconfig"}


def test_cli_check_json_exits_1_naming_the_failed_check(cli_cluster: FakeCheckedCluster) -> None:
    cli_cluster.cluster.stop("worker1")  # type: ignore[union-attr]
    code, out, err = invoke("check", "-i", "inv.yaml", "-o", "json")
    assert code == 1
    data = json.loads(out)
    assert data["ok"] is False and data["exit_code"] == 1 and data["failed"] == ["nodes Ready"]
    assert data["error"]["type"] == "ChecksFailed"
    assert any(line.startswith("error: check failed: nodes Ready: worker1 NotReady") for line in err.splitlines())


def test_cli_check_text_prints_the_table_and_the_failure_line(cli_cluster: FakeCheckedCluster) -> None:
    cli_cluster.cordoned.add("worker2")
    code, out, err = invoke("check", "-i", "inv.yaml")
    assert code == 1
    assert "Checks of homelab" in out and "nodes schedulable" in out and "failed" in out
    assert "1 of 11 checks failed." in out
    assert "check failed: nodes schedulable" in err


def test_cli_check_workload_with_image_and_allowed_cordoned_node(cli_cluster: FakeCheckedCluster) -> None:
    cli_cluster.cordoned.add("worker2")
    code, out, _ = invoke(
        "check", "-i", "inv.yaml", "--workload", "--image", "mirror/nginx:1.27", "--allow-cordoned", "worker2", "-o", "json"
    )
    assert code == 0, out
    assert cli_cluster.workload.image == "mirror/nginx:1.27"
    spread = next(c for c in json.loads(out)["checks"] if c["name"] == "workload spread")
    assert spread["detail"] == "2 nodes: controller (2), worker1 (2)"


# --- the pure parts ---------------------------------------------------------------------------------


def test_health_parser_reads_the_clock_against_the_midpoint_of_the_round_trip() -> None:
    from provisioner.health import parse_health

    values = {
        "clock": "1000.5",
        "disk./": "1000 250 /",
        "disk./var/lib": "2000 100 /var/lib",
        "mem.total_kib": "4000",
        "mem.available_kib": "1000",
        "admin_kubeconfig": "yes",
    }
    health = parse_health("h", values, sent=999.0, received=1000.0)
    assert health.clock_offset == 1.0 and health.clock_uncertainty == 0.5
    assert [(d.path, d.free_percent) for d in health.disks] == [("/", 25.0), ("/var/lib", 5.0)]
    assert health.memory_percent == 25.0 and health.admin_kubeconfig


def test_a_clock_difference_within_the_measurements_uncertainty_does_not_fail() -> None:
    from provisioner.health import HostHealth, clock_check

    def host(name: str, offset: float, uncertainty: float) -> HostHealth:
        return HostHealth(name, offset, uncertainty, (), 1, 1, False)

    # 2.6 s apart, but each read is only known to ± 0.4 s: the clocks may be within 2 s
    assert clock_check({"a": host("a", 0.0, 0.4), "b": host("b", 2.6, 0.4)}, 2.0).ok
    assert not clock_check({"a": host("a", 0.0, 0.1), "b": host("b", 2.6, 0.1)}, 2.0).ok
    unread = clock_check({"a": host("a", 0.0, 0.1), "b": HostHealth("b", None, 0.1, (), 1, 1, False)}, 2.0)
    assert not unread.ok and unread.detail == "could not read the clock of b"


def test_the_workload_manifest_is_json_with_the_image_as_given() -> None:
    from provisioner.workload import manifest

    data = json.loads(manifest("provisioner-check-abc123", 'odd"image:1'))
    namespace, deployment = data["items"]
    assert namespace["kind"] == "Namespace" and namespace["metadata"]["name"] == "provisioner-check-abc123"
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == 'odd"image:1'
    assert deployment["spec"]["selector"]["matchLabels"] == {"app": "nginx"}
