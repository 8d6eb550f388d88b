"""kubeadm with a stacked control plane of three, through the real phases on strict fake hosts:
``init --upload-certs`` with a certificate key made on the first control plane, control planes
joined one at a time before the workers with the key in their 0600 JoinConfiguration, a rerun
that changes nothing, a control plane added to a running cluster (certificates uploaded again),
and the refusals (no api_endpoint, an even number of control planes)."""

from __future__ import annotations

from pathlib import Path

import pytest
from ruamel.yaml import YAML

from provisioner import actions, kubeconfig
from provisioner.distros.kubeadm import CERT_KEY, Kubeadm
from provisioner.errors import InventoryError
from provisioner.phases import Options
from tests.unit.conftest import make_inventory
from tests.unit.fakes import KUBEADM_CERT_KEY as CERT_KEY_VALUE
from tests.unit.fakes import KUBEADM_INVENTORY, FakeKubeadmCluster
from tests.unit.fakes import KUBEADM_TOKEN as TOKEN

HA_INVENTORY = KUBEADM_INVENTORY.replace(
    "  - {name: w1,",
    "  - {name: cp2, address: 192.0.2.12, role: server}\n  - {name: cp3, address: 192.0.2.13, role: server}\n  - {name: w1,",
)
JOIN_CONFIG = "/etc/kubernetes/provisioner/kubeadm-join.yaml"


@pytest.fixture(autouse=True)
def _no_network_check(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(kubeconfig, "check", lambda config, timeout=10: kubeconfig.Check("ok", "simulated"))
    monkeypatch.chdir(tmp_path)


def _secrets_never_in_commands(cluster: FakeKubeadmCluster) -> None:
    for remote in cluster.remotes.values():
        for _, command in remote.commands:
            assert CERT_KEY_VALUE not in command and TOKEN not in command, command


def test_three_control_planes_init_with_upload_certs_then_join_one_at_a_time_before_the_worker_and_a_rerun_does_nothing(
    tmp_path: Path,
) -> None:
    inventory = make_inventory(HA_INVENTORY)
    cluster = FakeKubeadmCluster(inventory)
    outcome = actions.up(inventory, Options(timeout=3), connector=cluster.connector)
    assert outcome.ok, outcome.error
    assert cluster.events == [
        "pull images cp1",
        "certificate key cp1",
        "init cp1 --upload-certs",
        "flannel",
        "token",
        "pull images cp2",
        "join control plane cp2",
        "pull images cp3",
        "join control plane cp3",
        "join w1",
    ]
    assert {n: o.action for n, o in outcome.summary.outcomes.items()} == {"cp1": "install", "cp2": "join", "cp3": "join", "w1": "join"}
    init = cluster.remotes["cp1"].ran(r"^kubeadm init --config")
    assert init == ["kubeadm init --config /etc/kubernetes/provisioner/kubeadm-init.yaml --upload-certs --skip-certificate-key-print"]
    for name in ("cp2", "cp3"):
        remote = cluster.remotes[name]
        assert remote.modes[JOIN_CONFIG] == 0o600
        join = next(d for d in YAML(typ="safe").load_all(remote.files[JOIN_CONFIG].decode()) if d)
        assert join["controlPlane"] == {
            "localAPIEndpoint": {"advertiseAddress": inventory.host(name).address, "bindPort": 6443},
            "certificateKey": CERT_KEY_VALUE,
        }
        assert join["discovery"]["bootstrapToken"]["apiServerEndpoint"] == "192.0.2.100:6443"
        assert remote.ran(rf"^kubeadm join --config {JOIN_CONFIG}; rc=\$\?; rm -f {JOIN_CONFIG}; exit \$rc$")
    worker = next(d for d in YAML(typ="safe").load_all(cluster.remotes["w1"].files[JOIN_CONFIG].decode()) if d)
    assert "controlPlane" not in worker and CERT_KEY_VALUE not in cluster.remotes["w1"].files[JOIN_CONFIG].decode()
    config = kubeconfig.parse((tmp_path / "kube.kubeconfig").read_text())
    assert config["clusters"][0]["cluster"]["server"] == "https://192.0.2.100:6443"
    _secrets_never_in_commands(cluster)

    cluster.events.clear()
    again = actions.up(inventory, Options(timeout=3), connector=cluster.connector)
    assert again.ok, again.error
    assert cluster.events == []
    assert {o.result for o in again.summary.outcomes.values()} == {"unchanged"}


def test_control_planes_added_to_a_running_cluster_get_the_certificates_uploaded_again_under_a_new_key() -> None:
    single = make_inventory(KUBEADM_INVENTORY)
    inventory = make_inventory(HA_INVENTORY)
    cluster = FakeKubeadmCluster(inventory)
    first = actions.up(single, Options(timeout=3), connector=cluster.connector)
    assert first.ok, first.error
    assert "init cp1" in cluster.events
    cluster.events.clear()

    outcome = actions.up(inventory, Options(timeout=3), connector=cluster.connector)
    assert outcome.ok, outcome.error
    assert cluster.events == [
        "token",
        "certificate key cp1",
        "upload certs cp1",
        "pull images cp2",
        "join control plane cp2",
        "pull images cp3",
        "join control plane cp3",
    ]
    cp1 = cluster.remotes["cp1"]
    assert cp1.ran(r"^kubeadm init phase upload-certs --upload-certs --skip-certificate-key-print --config \S+; rc=\$\?; rm -f ")
    _secrets_never_in_commands(cluster)


def test_plan_shows_the_certificate_key_as_a_placeholder_and_the_control_plane_joins() -> None:
    from rich.console import Console

    from provisioner import report

    inventory = make_inventory(HA_INVENTORY)
    cluster = FakeKubeadmCluster(inventory)
    outcome = actions.plan(inventory, connector=cluster.connector)
    assert outcome.ok, outcome.error
    console = Console(record=True, width=220)
    report.plan_text(console, outcome.summary, None)
    text = console.export_text()
    assert "read <certificate key of the kubeadm-certs Secret>: kubeadm certs certificate-key" in text
    assert "kubeadm init --config /etc/kubernetes/provisioner/kubeadm-init.yaml --upload-certs --skip-certificate-key-print" in text
    assert "kubeadm join --control-plane: not part of the cluster yet; joins as a control plane (an etcd member)" in text
    assert 'certificateKey: "<certificate key of the kubeadm-certs Secret>"' in text
    assert CERT_KEY_VALUE not in text and cluster.events == []
    plans = outcome.summary.plan
    assert plans is not None
    assert CERT_KEY in plans.hosts["cp2"].needs and CERT_KEY not in plans.hosts["w1"].needs


def test_several_control_planes_without_api_endpoint_are_an_inventory_error() -> None:
    text = HA_INVENTORY.replace("  api_endpoint: 192.0.2.100\n", "")
    with pytest.raises(InventoryError) as raised:
        make_inventory(text)
    message = str(raised.value)
    assert "cluster.api_endpoint" in message and "kubeadm with 3 control planes needs cluster.api_endpoint" in message
    make_inventory(KUBEADM_INVENTORY.replace("  api_endpoint: 192.0.2.100\n", ""))  # one control plane: optional


def test_two_control_planes_are_refused_for_the_quorum_before_anything_changes_unless_allowed() -> None:
    inventory = make_inventory(HA_INVENTORY.replace("  - {name: cp3, address: 192.0.2.13, role: server}\n", ""))
    cluster = FakeKubeadmCluster(inventory)
    refused = actions.up(inventory, Options(timeout=3), connector=cluster.connector)
    assert refused.error is not None and "2 servers run etcd, which needs 2 of them up" in str(refused.error)
    assert "--allow-even-servers" in str(refused.error)
    assert cluster.events == [] and all(not r.uploads for r in cluster.remotes.values())

    allowed = actions.up(inventory, Options(timeout=3, allow_even_servers=True), connector=cluster.connector)
    assert allowed.ok, allowed.error
    assert "join control plane cp2" in cluster.events


def test_a_worker_join_config_has_no_control_plane_section_and_no_certificate_key() -> None:
    dist = Kubeadm(make_inventory(HA_INVENTORY))
    cp1, cp2, w1 = (dist.inventory.host(n) for n in ("cp1", "cp2", "w1"))
    worker = dist.join_step(w1, cp1)
    control_plane = dist.join_step(cp2, cp1)
    assert CERT_KEY not in worker.placeholders_used and CERT_KEY in control_plane.placeholders_used
    assert worker.name == "kubeadm join" and control_plane.name == "kubeadm join --control-plane"


def test_status_asks_each_control_planes_own_api_and_names_the_stopped_ones_when_etcd_lost_quorum() -> None:
    inventory = make_inventory(HA_INVENTORY)
    cluster = FakeKubeadmCluster(inventory)
    assert actions.up(inventory, Options(timeout=3), connector=cluster.connector).ok

    def connector(inv, host):  # type: ignore[no-untyped-def]
        remote = cluster.connector(inv, host)
        if host.name == "cp1":  # its API answers, but etcd has only this member up
            remote.on(r"kubectl .* get nodes -o json", exit_code=1, stderr="Error from server: etcdserver: request timed out\n")
        else:  # kubelet stopped: no API server on this control plane
            remote.on(
                r"kubectl .* get nodes -o json",
                exit_code=1,
                stderr="The connection to the server 127.0.0.1:6443 was refused - did you specify the right host or port?\n",
            )
        return remote

    outcome = actions.status(inventory, connector=connector)
    assert outcome.error is not None
    message = str(outcome.error)
    assert "etcd has lost quorum: 1 of 3 servers run the API (cp1)" in message
    assert "Start kubelet on cp2, cp3" in message
    listed = cluster.remotes["cp2"].ran(r"get nodes -o json")
    assert listed and all("--server https://127.0.0.1:6443 --tls-server-name kubernetes" in c for c in listed)
